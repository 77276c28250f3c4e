"""Benchmark: 200 trivial instances through the local Slurm, reconciler beside a bare loop.

Contenders, in one run on the same Slurm:
  - reconciler `run --fg -y -s 1` of a 200-instance sweep (one job per instance);
  - a bare loop: the same 200 scripts submitted with `sbatch --parsable`, then `squeue`
    every second until none is left (what a careful shell script does).
Goal: reconciler ≤ 1.2 × the bare loop. Needs a running Slurm
(`scripts/slurm/start-local-slurm.sh`).

    python3 benchmarks/slurm_vs_sbatch.py [--n 200] [--runs 3] [--queue debug]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import timed


def spec(n: int, queue: str) -> str:
    values = ", ".join(str(i) for i in range(n))
    return (
        "description: {name: slurm_bench, description: trivial jobs}\n"
        f"batch: {{type: slurm, queue: {queue}}}\n"
        "study:\n  - name: t\n    description: d\n"
        "    run: {cmd: 'echo $(P) > out.txt', procs: 1}\n"
        f"global.parameters:\n  P: {{values: [{values}], label: P.%%}}\n"
    )


def bare_loop(n: int, queue: str, work: Path) -> float:
    start = time.perf_counter()
    ids = []
    for i in range(n):
        d = work / f"j{i}"
        d.mkdir(parents=True)
        script = d / "job.sh"
        script.write_text(f"#!/bin/bash\n#SBATCH --partition={queue}\n#SBATCH --ntasks=1\n"
                          f"echo {i} > out.txt\n")  # fmt: skip
        out = subprocess.check_output(["sbatch", "--parsable", str(script)], cwd=d, text=True)
        ids.append(out.strip().split(";")[0])
    while True:
        left = subprocess.check_output(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)],
                                       text=True).split()  # fmt: skip
        if not left:
            break
        time.sleep(1)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--queue", default="debug")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        f = tmp / "bench.yaml"
        f.write_text(spec(args.n, args.queue))
        ours, bare = [], []
        for i in range(args.runs):  # interleaved, so drift hits both alike
            argv = [sys.executable, "-m", "reconciler", "run", "--fg", "-y", "-s", "1",
                    "-o", str(tmp / f"r{i}"), str(f)]  # fmt: skip
            ours.append(timed(argv, tmp)[0])
            bare.append(bare_loop(args.n, args.queue, tmp / f"b{i}"))
        a, b = statistics.median(ours), statistics.median(bare)
        print(f"{args.n} trivial jobs on the local Slurm, {args.runs} runs each (medians):")
        print(f"  reconciler run --fg -s 1     {a:6.2f} s")
        print(f"  sbatch loop + squeue (1 s)   {b:6.2f} s")
        print(f"  ratio                        {a / b:6.2f}  (goal ≤ 1.2)")


if __name__ == "__main__":
    main()
