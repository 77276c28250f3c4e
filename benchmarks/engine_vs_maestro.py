"""Benchmark: reconciler's local engine beside Maestro 1.2.1 and the spawn floor, in one run.

Contenders on the same spec (n instances of `a`, n of `b` each depending on its `a`, and a
funnel `c`):
  - reconciler `run --fg -y -o DIR`
  - Maestro 1.2.1 `run -fg -y -s 1 -o DIR` (installed by this script into its own venv)
  - the spawn floor: the same 2n+1 commands through `xargs -P<cores> bash -c`
and a chain of 20 trivial steps end to end (reconciler vs Maestro -s 1), plus the engine's peak
memory on a 10,000-instance study.

    python3 benchmarks/engine_vs_maestro.py [--n 1000] [--runs 3] [--skip-maestro] [--big 10000]
                                            [--dir DIR]

Every contender runs in a fresh directory under DIR (default: the system's temporary
directory); `--dir /dev/shm` takes the disk's write-back stalls out of the figures. Besides wall
time it prints the CPU seconds the machine spent during each run (so run nothing else): on a
machine whose cores are all busy, wall time is about CPU time / cores, so they show what each
contender costs.

Goals on a 2-core machine: reconciler ≤ 1.3 × floor and ≤ 0.5 × Maestro; chain ≤ 1 s;
engine memory on 10,000 instances ≤ 200 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable
from pathlib import Path

from common import Usage, measure

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reconciler-bench"


def sweep_spec(n: int) -> str:
    values = ", ".join(str(i) for i in range(n))
    return f"""
description: {{name: bench, description: a to b to funnel c}}
study:
  - name: a
    description: a
    run: {{cmd: "echo $(P) > a.txt"}}
  - name: b
    description: b
    run: {{cmd: "cat $(a.workspace)/a.txt > b.txt", depends: [a]}}
  - name: c
    description: funnel
    run: {{cmd: "cat $(b.workspace)/*/b.txt | wc -l > c.txt", depends: [b_*]}}
global.parameters:
  P: {{values: [{values}], label: "P.%%"}}
"""


def chain_spec(length: int) -> str:
    steps = []
    for i in range(length):
        dep = f", depends: [s{i - 1}]" if i else ""
        steps.append(
            f"  - name: s{i}\n    description: link {i}\n"
            f'    run: {{cmd: "echo {i} > out.txt"{dep}}}\n'
        )
    return "description: {name: chain, description: a chain}\nstudy:\n" + "".join(steps)


def maestro() -> Path:
    env_dir = CACHE / "maestro-1.2.1"
    exe = env_dir / "bin" / "maestro"
    if not exe.exists():
        print("installing maestrowf 1.2.1 into", env_dir, flush=True)
        venv.create(env_dir, with_pip=True)
        subprocess.check_call([env_dir / "bin" / "pip", "install", "-q", "maestrowf==1.2.1"])
    return exe


def floor_argv(spec: Path, work: Path) -> list[str]:
    """The same commands, no DAG: every instance's cmd through xargs -P<cores>."""
    from reconciler.spec import load_study

    study = load_study(spec)
    lines = []
    for inst in study.instances:
        ws = work / inst.workspace
        ws.mkdir(parents=True, exist_ok=True)
        cmd = inst.render(inst.cmd, {"OUTPUT_PATH": str(work), "SPECROOT": str(spec.parent)})
        lines.append(f"cd {ws} && {cmd.strip()}")
    listing = work / "commands.txt"
    listing.write_text("\0".join(lines))
    return ["xargs", "-0", "-a", str(listing), f"-P{os.cpu_count()}", "-n1", "bash", "-c"]


def median_of(runs: int, make: Callable[[int], Usage]) -> Usage:
    """Median wall and CPU, largest peak memory."""
    results = [make(i) for i in range(runs)]
    return Usage(
        statistics.median(u.wall for u in results),
        max(u.rss_mb for u in results),
        statistics.median(u.cpu for u in results),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-maestro", action="store_true")
    ap.add_argument("--big", type=int, default=10_000, help="instances for the memory figure")
    ap.add_argument("--dir", type=Path, default=None, help="where the runs write (default: TMPDIR)")
    args = ap.parse_args()
    me = [sys.executable, "-m", "reconciler"]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp_s:
        tmp = Path(tmp_s)
        spec = tmp / "sweep.yaml"
        spec.write_text(sweep_spec(args.n))
        chain = tmp / "chain.yaml"
        chain.write_text(chain_spec(20))

        def fresh(name: str, i: int) -> Path:
            d = tmp / f"{name}{i}"
            shutil.rmtree(d, ignore_errors=True)
            return d

        total = 2 * args.n + 1
        print(f"sweep: {total} instances, {args.runs} runs each, {os.cpu_count()} cores, in {tmp}")
        rec = median_of(
            args.runs,
            lambda i: measure([*me, "run", "--fg", "-y", "-o", str(fresh("r", i)), str(spec)], tmp),
        )
        print(
            f"  reconciler run --fg        median {rec.wall:7.2f} s   CPU {rec.cpu:5.2f} s"
            f"   peak RSS {rec.rss_mb:5.0f} MB"
        )

        def floor_run(i: int) -> Usage:
            work = fresh("f", i)
            work.mkdir()
            return measure(floor_argv(spec, work), tmp)

        flo = median_of(args.runs, floor_run)
        print(f"  spawn floor (xargs -P)     median {flo.wall:7.2f} s   CPU {flo.cpu:5.2f} s")
        print(f"  reconciler / floor         {rec.wall / flo.wall:.2f}  (goal ≤ 1.3)")
        if not args.skip_maestro:
            exe = maestro()
            env_path = f"{exe.parent}:{os.environ['PATH']}"
            os.environ["PATH"] = env_path  # Maestro's `run` finds its `conductor` on PATH
            mae = median_of(
                args.runs,
                lambda i: measure(
                    [str(exe), "run", "-fg", "-y", "-s", "1", "-o", str(fresh("m", i)), str(spec)],
                    tmp,
                ),
            )
            print(
                f"  maestro run -fg -s 1       median {mae.wall:7.2f} s   CPU {mae.cpu:5.2f} s"
                f"   peak RSS {mae.rss_mb:5.0f} MB"
            )
            print(f"  reconciler / maestro       {rec.wall / mae.wall:.2f}  (goal ≤ 0.5)")

        print("chain of 20 trivial steps")
        rc = median_of(
            args.runs,
            lambda i: measure(
                [*me, "run", "--fg", "-y", "-o", str(fresh("rc", i)), str(chain)], tmp
            ),
        )
        print(f"  reconciler run --fg        median {rc.wall:7.2f} s   (goal ≤ 1 s)")
        if not args.skip_maestro:
            mc = median_of(
                1,
                lambda i: measure(
                    [
                        str(maestro()),
                        "run",
                        "-fg",
                        "-y",
                        "-s",
                        "1",
                        "-o",
                        str(fresh("mc", i)),
                        str(chain),
                    ],
                    tmp,
                ),
            )
            print(f"  maestro run -fg -s 1       {mc.wall:7.2f} s   (one run)")

        if args.big:
            big = tmp / "big.yaml"
            big.write_text(sweep_spec(args.big // 2))
            u = measure([*me, "run", "--fg", "-y", "-o", str(fresh("big", 0)), str(big)], tmp)
            print(
                f"{args.big // 2 * 2 + 1} instances: wall {u.wall:.1f} s, "
                f"engine peak RSS {u.rss_mb:.0f} MB (goal ≤ 200 MB)"
            )


if __name__ == "__main__":
    main()
