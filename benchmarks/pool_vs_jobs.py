"""Benchmark: 2,000 trivial instances on a worker pool vs one Slurm job each, same local Slurm.

Contenders, in one run on the same spec (a step with `procs: 1`, so without a pool every
instance is its own `sbatch` job):
  - one job per instance: `reconciler run --fg -y -s 1`;
  - a pool: the same spec plus `batch.pool` (2 allocations x 2 workers x 2 cores, started by
    dask-jobqueue inside Slurm jobs), `reconciler run --fg -y -s 1`.
Wall time covers everything: getting the allocations, starting workers, and giving them back.
Needs a running Slurm (`scripts/slurm/start-local-slurm.sh`) and `pip install -e '.[pool]'`.

    python3 benchmarks/pool_vs_jobs.py [--n 2000] [--queue debug]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import timed

POOL = """  pool:
    steps: [t]
    allocations: 2
    workers: 2
    cores: 2
    memory: 500MB
    walltime: "00:30:00"
    idle: 10
"""


def spec(n: int, queue: str, pool: bool) -> str:
    values = ", ".join(str(i) for i in range(n))
    return (
        "description: {name: pool_bench, description: trivial instances}\n"
        f"batch:\n  type: slurm\n  queue: {queue}\n"
        + (POOL if pool else "")
        + "study:\n  - name: t\n    description: d\n"
        "    run: {cmd: 'echo $(P) > out.txt', procs: 1}\n"
        f"global.parameters:\n  P: {{values: [{values}], label: P.%%}}\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--queue", default="debug")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        times = {}
        for pool in (True, False):
            f = tmp / f"bench-{'pool' if pool else 'jobs'}.yaml"
            f.write_text(spec(args.n, args.queue, pool))
            argv = [sys.executable, "-m", "reconciler", "run", "--fg", "-y", "-s", "1",
                    "-o", str(tmp / f.stem), str(f)]  # fmt: skip
            times[pool] = timed(argv, tmp)[0]
        a, b = times[True], times[False]
        print(f"{args.n} trivial instances on the local Slurm, one run each:")
        print(f"  pool (2 allocations x 2 workers)   {a:7.2f} s")
        print(f"  one Slurm job per instance         {b:7.2f} s")
        print(f"  pool / jobs                        {a / b:7.3f}")


if __name__ == "__main__":
    main()
