"""Benchmark: validate and expand a generated spec of 10,000 instances.

Prints the median wall time and peak memory of whole `reconciler expand --json` processes (what a
user waits for), and of the in-process load → validate → expand call alone.
Goal on a 2-core machine: ≤ 1 s and ≤ 150 MB.

    python3 benchmarks/spec_expand.py [--instances 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import timed


def make_spec(instances: int) -> str:
    """Two parameterised steps (a, b depending on its a) and a funnel: 2n + 1 instances."""
    n = instances // 2  # 2n + 1 ≥ instances
    values = ", ".join(str(i) for i in range(n))
    return f"""
description: {{name: bench, description: generated benchmark study}}
env:
  variables: {{SCALE: "3"}}
  labels: {{OUT: "out.$(P).txt"}}
study:
  - name: a
    description: first
    run: {{cmd: "echo $(P) $(SCALE) > $(OUT)"}}
  - name: b
    description: second
    run: {{cmd: "cat $(a.workspace)/$(OUT) > b.txt", depends: [a]}}
  - name: c
    description: funnel
    run: {{cmd: "cat $(b.workspace)/*/b.txt | wc -l", depends: [b_*]}}
global.parameters:
  P: {{values: [{values}], label: "P.%%"}}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench.yaml"
        spec.write_text(make_spec(args.instances))
        code = (
            "import sys, time; t=time.perf_counter();"
            "from reconciler.spec import load_study; s=load_study(sys.argv[1]);"
            "print(len(s.instances), time.perf_counter()-t)"
        )
        count, inproc = subprocess.check_output(
            [sys.executable, "-c", code, str(spec)], text=True
        ).split()
        figures = {
            "expand --json (whole process)": [
                sys.executable,
                "-m",
                "reconciler",
                "expand",
                "--json",
                str(spec),
            ],
            "validate (whole process)": [sys.executable, "-m", "reconciler", "validate", str(spec)],
        }
        print(f"spec with {count} instances; {args.runs} runs each; cores: {os.cpu_count()}")
        print(f"  load+validate+expand in process (one run): {float(inproc):.3f} s")
        for name, argv in figures.items():
            runs = [timed(argv) for _ in range(args.runs)]
            walls = sorted(w for w, _ in runs)
            rss = max(m for _, m in runs)
            print(
                f"  {name}: median {statistics.median(walls):.3f} s "
                f"(min {walls[0]:.3f}, max {walls[-1]:.3f}); peak RSS {rss:.0f} MB"
            )


if __name__ == "__main__":
    main()
