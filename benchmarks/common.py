"""What the benchmark scripts share: timing a whole process from outside."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Usage:
    wall: float  # seconds
    rss_mb: float  # peak resident memory of the largest process
    cpu: float  # user + system seconds of the whole machine meanwhile (run nothing else)


def machine_cpu() -> float:
    """CPU seconds the machine has spent busy since boot (all processes, /proc/stat). Counting
    the machine, not the process tree: detached helpers (shepherds, daemons) are no one's
    waited-for child, so rusage would leave them and their jobs out."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def measure(argv: list[str], cwd: Path | None = None) -> Usage:
    """One run of `argv` from outside; exits if it fails."""
    # stderr to a file, not a pipe: a chatty program (Maestro's -fg logs there) would fill a pipe
    # read only at the end, block, and be timed asleep.
    with tempfile.TemporaryFile() as err_file:
        cpu = machine_cpu()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err_file)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        cpu = machine_cpu() - cpu
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err_file.seek(0)
            err = err_file.read().decode(errors="replace")
            sys.exit(f"failed ({code}): {' '.join(argv)}\n{err[-2000:]}")
    return Usage(wall, usage.ru_maxrss / 1024, cpu)  # KiB → MiB


def timed(argv: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of `argv`; exits if it fails."""
    u = measure(argv, cwd)
    return u.wall, u.rss_mb
