"""Benchmark: `reconciler status` of a 100,001-instance study.

Sets up the study with `run --dry` (the spec of spec_expand.py: a sweep `a`, `b` depending on
its `a`, and a funnel), then gives the record a finished run's look — every instance FINISHED
with times and job ids, one in 997 FAILED (with an exit code), one in 4,999 RUNNING — and
times whole `reconciler status` processes (what a user waits for), output to a file:

- `status DIR` (the default: a summary, since the study is big),
- `status DIR --state FAILED` (the failed rows),
- `status DIR --json` (every instance),
- `status DIR --all` (every row, fitted to 120 columns).

Goal on a 2-core machine: `status DIR` ≤ 3 s.

    python3 benchmarks/status_100k.py [--instances 100000] [--runs 5] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import timed
from spec_expand import make_spec


def fake_run(ws: Path) -> dict[str, int]:
    """Give the record the states and times of a run that mostly finished."""
    db = sqlite3.connect(ws / ".reconciler" / "record.db")
    now = time.time() - 3600
    with db:
        db.execute(
            "UPDATE instance SET state = 'FINISHED', exit_code = 0, attempts = 1, "
            "submit_time = ? + ord * 0.01, start_time = ? + ord * 0.01 + 0.5, "
            "end_time = ? + ord * 0.01 + 2.5, job_id = CAST(100000 + ord AS TEXT)",
            (now, now, now),
        )
        db.execute("UPDATE instance SET state = 'FAILED', exit_code = 1 WHERE ord % 997 = 5")
        db.execute(
            "UPDATE instance SET state = 'RUNNING', exit_code = NULL, end_time = NULL "
            "WHERE ord % 4999 = 7"
        )
    counts = dict(db.execute("SELECT state, count(*) FROM instance GROUP BY state").fetchall())
    db.close()
    return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="where to make the study")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        spec = Path(tmp) / "bench.yaml"
        spec.write_text(make_spec(args.instances))
        ws = Path(tmp) / "ws"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "reconciler", "run", str(spec), "--dry", "-y", "-o", str(ws)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        setup = time.perf_counter() - start
        counts = fake_run(ws)
        total = sum(counts.values())
        print(f"study of {total:,} instances ({counts}); set up in {setup:.1f} s; "
              f"{args.runs} runs each; cores: {os.cpu_count()}")  # fmt: skip
        base = [sys.executable, "-m", "reconciler", "status", str(ws)]
        figures = {
            "status DIR (summary)": base,
            "status DIR --state FAILED": [*base, "--state", "FAILED"],
            "status DIR --json": [*base, "--json"],
            "status DIR --all (120 columns)": [*base, "--all"],
        }
        os.environ["COLUMNS"] = "120"
        for name, argv in figures.items():
            runs = [timed(argv) for _ in range(args.runs)]
            walls = sorted(w for w, _ in runs)
            rss = max(m for _, m in runs)
            print(f"  {name}: median {statistics.median(walls):.2f} s "
                  f"(min {walls[0]:.2f}, max {walls[-1]:.2f}), peak {rss:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
