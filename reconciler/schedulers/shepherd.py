"""Shepherds: one long-lived process per local slot that starts that slot's jobs.

Starting each job through a fresh wrapper (`local-job.sh`) costs a fork of the engine and two
execs (the wrapper's shell, then the script's). A shepherd (`shepherd_main.py`) is started once
per slot; for each job the engine writes the job's paths to its stdin and the shepherd
posix_spawns `SHELL SCRIPT` — the script's shell is the job process and the leader of its process
group, as under the wrapper — names its output files `<instance>.<pid>.out`/`.err` by that pid,
reports the pid (the job id), and records the end in the exit file as the wrapper does. A job
costs one vfork and one exec, none of it in the engine.

Crash safety is the wrapper's: the shepherd runs in a session of its own, so it and its jobs
outlive the engine; it records a job's end before it reaps the job, and exits on EOF (the engine
ended or died) after the job it runs, never starting one the engine did not hand it (the engine
writes a job only to an idle shepherd). Cancel and walltime kill the job's process group; the
engine writes why (`timeout N`, `cancelled N`) before it kills, and a shepherd never overwrites
that record with the signal's exit code.

After a restart a job is recognised by its process: leader of its own process group, child of a
shepherd of this workspace, and named — pid, submission, exit file — by that shepherd's state
file (`job_state`). Not by its command line or open files: a script may `exec` another program
or point its own output elsewhere (a shell does so for every redirected builtin).
Paths travel as NUL-terminated fields: data, any byte but NUL.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from reconciler.schedulers.base import Job, SchedulerError, SubmitError

MAIN = Path(__file__).with_name("shepherd_main.py")
REPORT_TIMEOUT = 30.0  # seconds for a shepherd to report a start (one posix_spawn)


def usable() -> bool:
    """Can jobs go through shepherds here (else each through the wrapper)?"""
    return bool(sys.executable) and hasattr(os, "posix_spawn") and MAIN.is_file()


def argv(root: Path) -> list[str]:
    return [sys.executable, "-I", "-S", str(MAIN), "--workspace", str(root)]


def is_shepherd(cmdline: list[str], root: Path) -> bool:
    """A shepherd of this workspace (or a job process it forked, not yet exec'd)."""
    return (
        len(cmdline) >= 3
        and cmdline[-2:] == ["--workspace", str(root)]
        and Path(cmdline[-3]).name == MAIN.name
    )


@dataclass(eq=False)
class Shepherd:
    proc: subprocess.Popen[bytes]
    jobs: int  # write end of its stdin
    reports: int  # read end of its stdout
    busy: str | None = None  # the job it runs (its name), None when idle
    pid: int = 0  # that job's pid
    lines: list[str] = field(default_factory=list)  # reports read, not yet taken
    partial: bytes = b""

    def close(self) -> None:
        for fd in (self.jobs, self.reports):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.jobs = self.reports = -1

    def read(self, timeout: float | None = None) -> bool:
        """Read what it reported; False at EOF (or nothing within `timeout`)."""
        if timeout is not None:
            ready, _, _ = select.select([self.reports], [], [], timeout)
            if not ready:
                return False
        try:
            chunk = os.read(self.reports, 4096)
        except OSError:
            return False
        *done, self.partial = (self.partial + chunk).decode(errors="replace").split("\n")
        self.lines += done
        self.partial = self.partial.encode()
        return bool(chunk)

    def take(self, word: str) -> str | None:
        for i, line in enumerate(self.lines):
            if line.startswith(word + " "):
                del self.lines[i]
                return line[len(word) + 1 :]
        return None

    def ended(self) -> bool:
        """(Reaper thread) Its report pipe is readable: did its job end, or it die?"""
        if self.read():
            return self.ended_already()
        with contextlib.suppress(OSError):
            os.close(self.jobs)  # dead: the flock drops it when its job is released
        self.jobs = -1
        return True

    def ended_already(self) -> bool:
        """Was the end of its job reported (and read with an earlier report)?"""
        if f"ended {self.pid}" not in self.lines:
            return False
        self.lines.remove(f"ended {self.pid}")
        return True

    def __del__(self) -> None:  # an adapter dropped without close(): let the shepherd go
        self.close()


class Gone(SubmitError):
    """The shepherd was gone before it took the job: nothing started, another may take it."""


class Flock:
    """This engine's shepherds. The adapter calls it under its lock, except `start`, which
    only the engine thread calls."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shepherds: list[Shepherd] = []

    def pids(self) -> set[int]:
        return {s.proc.pid for s in self.shepherds}

    def take_idle(self, name: str) -> Shepherd:
        """An idle shepherd (started if none is), marked busy with job `name`."""
        for s in list(self.shepherds):
            if s.busy is None and s.proc.poll() is not None:
                self.drop(s)  # it died between jobs
            elif s.busy is None and s.jobs >= 0:
                s.busy = name
                return s
        s = self._spawn()
        s.busy = name
        self.shepherds.append(s)
        return s

    def of(self, name: str) -> Shepherd | None:
        return next((s for s in self.shepherds if s.busy == name), None)

    def release(self, name: str) -> None:
        s = self.of(name)
        if s is not None:
            s.busy = None
            if s.jobs < 0:  # closed: it exits now
                self.drop(s)

    def drop(self, s: Shepherd) -> None:
        """Forget a shepherd; it exits on EOF once its job (if any) ends."""
        s.close()
        with contextlib.suppress(ValueError):
            self.shepherds.remove(s)

    def close(self) -> None:
        for s in list(self.shepherds):
            if s.busy is None:
                self.drop(s)
            elif s.jobs >= 0:
                os.close(s.jobs)  # EOF: it exits after its job, whose end is still reported
                s.jobs = -1

    def _spawn(self) -> Shepherd:
        jobs_r, jobs_w = os.pipe()
        reports_r, reports_w = os.pipe()
        try:
            proc = subprocess.Popen(  # an argument list, never a shell string
                argv(self.root),
                cwd=self.root,
                stdin=jobs_r,
                stdout=reports_w,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # outlives the engine, as its jobs do
                close_fds=True,
            )
        except OSError as e:
            os.close(jobs_w)
            os.close(reports_r)
            raise SubmitError(f"cannot start a job shepherd: {e}") from e
        finally:
            os.close(jobs_r)
            os.close(reports_w)
        return Shepherd(proc, jobs_w, reports_r)


def encode(job: Job) -> bytes:
    fields = (job.workdir, job.exit_file, job.submission, job.shell, job.script, job.stem)
    texts = [os.fsencode(str(f)) for f in fields]
    if any(b"\0" in t for t in texts):
        raise SubmitError(f"a path or the shell of {job.name} holds a NUL byte")
    return b"".join(t + b"\0" for t in texts)


def start(flock: Flock, s: Shepherd, job: Job) -> int:
    """Have an idle shepherd start `job`; its pid. SubmitError if it surely did not start,
    SchedulerError if it may have (the engine then finds it by its process)."""
    data = encode(job)
    try:
        os.write(s.jobs, data)  # an idle shepherd's pipe is empty: it takes all at once
    except OSError as e:  # the shepherd is gone: nothing was started
        flock.drop(s)
        raise Gone(f"the job shepherd is gone: {e}") from e
    while (started := s.take("started")) is None:
        if (failed := s.take("failed")) is not None:
            raise SubmitError(failed)
        if not s.read(REPORT_TIMEOUT):
            flock.drop(s)
            raise SchedulerError(f"the job shepherd did not report the start of {job.name}")
    s.pid = int(started)
    return s.pid


# -- recognising a job by its process ------------------------------------------------------


class Seen(Enum):
    NO = "no"
    YES = "yes"
    STARTING = "starting"  # forked by a shepherd, not yet the script's shell (or never will be)
    RECORDING = "recording"  # exited; its shepherd is writing the exit record, then reaps it


def cmdline(pid: int | str) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, session) from /proc/PID/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()  # after the command name, which may hold anything
    if len(fields) < 4:
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def job_state(pid: int, job: Job, root: Path, ours: set[int]) -> Seen:
    """Is `pid` a job process of a shepherd of this workspace — not one of `ours` — for `job`?"""
    st = proc_stat(pid)
    if st is None:
        return Seen.NO
    state, ppid, pgrp, session = st
    if pgrp != pid or session in ours or not is_shepherd(cmdline(ppid), root):
        return Seen.NO
    if state == "Z":  # its shepherd records its end now, then reaps it
        return Seen.RECORDING
    named = read_state(root, ppid)
    if named is None or named[0] != pid:  # spawned; its shepherd has not said whose it is yet
        return Seen.STARTING
    return Seen.YES if named[1:] == (str(job.submission), str(job.exit_file)) else Seen.NO


def state_file(root: Path, shepherd_pid: int) -> Path:
    return root / ".reconciler" / "shepherds" / str(shepherd_pid)


def read_state(root: Path, shepherd_pid: int) -> tuple[int, str, str] | None:
    """(job pid, submission, exit file) from a shepherd's state file; None if it has none yet."""
    try:
        raw = state_file(root, shepherd_pid).read_bytes()
    except OSError:
        return None
    parts = raw.split(b"\0")
    if len(parts) != 4 or parts[3] or not parts[0].isdigit():  # absent, or caught mid-write
        return None
    return int(parts[0]), os.fsdecode(parts[1]), os.fsdecode(parts[2])


def unsettled(root: Path, ours: set[int]) -> bool:
    """Is an earlier engine's shepherd of this workspace between jobs: idle (about to start the
    job that engine handed it just before it died, or to exit), starting a job it has not named
    yet, or recording one that ended? Each lasts a moment."""
    shepherds: set[int] = set()
    leaders: dict[int, list[tuple[int, str]]] = {}  # parent -> its group-leader children
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        st = proc_stat(pid)
        if st is None or st[3] in ours:
            continue
        if is_shepherd(cmdline(pid), root):
            if st[3] != pid:
                return True  # a forked job process, not started yet
            shepherds.add(pid)
        elif st[2] == pid:
            leaders.setdefault(st[1], []).append((pid, st[0]))
    for s in shepherds:
        named = read_state(root, s)
        running = [p for p, state in leaders.get(s, []) if state != "Z"]
        if not running or named is None or named[0] not in running:
            return True
    return False
