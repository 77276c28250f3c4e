"""What the benchmark scripts share: timing a whole process from outside."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def timed(argv: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of `argv`; exits if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        sys.exit(f"failed ({code}): {' '.join(argv)}\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # KiB → MiB
