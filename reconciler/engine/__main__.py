"""`python -m reconciler.engine ROOT [--slots N]`: the background engine of one workspace.

Started detached by `run`/`resume`; exits 0 (all finished), 2 (failed/blocked, or refused: another
engine holds the lock), 3 (cancelled).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from reconciler.engine.api import EngineStopped, LockHeld, run_engine
from reconciler.record import eventlog
from reconciler.record.store import RecordError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.engine")
    parser.add_argument("root", type=Path)
    parser.add_argument("--slots", type=int, default=None)
    args = parser.parse_args(argv)
    eventlog.configure_from_env()  # -d/-l given to the command that started this engine
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} engine started on {args.root}", flush=True)
    try:
        outcome = run_engine(args.root.resolve(), slots=args.slots)
    except (LockHeld, RecordError, EngineStopped) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts.items()))
    print(f"{stamp} engine ended (exit {outcome.code}): {summary}", flush=True)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
