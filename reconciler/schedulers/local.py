"""The local adapter: instance scripts in parallel on this host, up to N slots.

Each job runs `bash local-job.sh EXIT_FILE SUBMISSION SHELL SCRIPT` in its own session, with stdout
and stderr going straight to the instance's files. The wrapper writes `<rc> <submission>` to the
exit file when the script ends, so the end of a job is known even if the engine was dead then.
The job id is the wrapper's pid (the process group leader).

One thread per job waits for it (children via waitpid, re-attached processes via a pidfd) and
enforces the walltime; every end writes to a self-pipe that `wait` selects on, so the engine
reacts to a child's exit at once instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from reconciler.plan.states import State
from reconciler.schedulers import base
from reconciler.schedulers.base import Adapter, Job, Observation, SubmitError
from reconciler.spec.instance import Resources

WRAPPER_NAME = "local-job.sh"
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of a job's process group
_WRAPPER = """#!/bin/bash
# reconciler local job wrapper: run one instance script, then record how it ended.
# usage: local-job.sh EXIT_FILE SUBMISSION SHELL SCRIPT   (cwd: the instance directory)
"$3" "$4"
rc=$?
printf '%s %s\\n' "$rc" "$2" > "$1.tmp" && mv -f "$1.tmp" "$1"
exit "$rc"
"""


def read_exit(job: Job) -> Observation | None:
    """The exit record of this very submission, if there is one."""
    try:
        text = job.exit_file.read_text()
        end = job.exit_file.stat().st_mtime
    except OSError:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[1] != str(job.submission):
        return None  # a previous submission's record (or a torn write)
    code = parts[0]
    if code == "timeout":
        return Observation(State.TIMEDOUT, None, end)
    if code == "cancelled":
        return Observation(State.CANCELLED, None, end)
    try:
        rc = int(code)
    except ValueError:
        return None
    return Observation(State.FINISHED if rc == 0 else State.FAILED, rc, end)


def _write_exit(job: Job, what: str) -> None:
    tmp = job.exit_file.with_name(job.exit_file.name + ".tmp")
    tmp.write_text(f"{what} {job.submission}\n")
    os.replace(tmp, job.exit_file)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


class LocalAdapter(Adapter):
    name = "local"
    poll_interval = None

    def __init__(self, root: Path, slots: int | None = None) -> None:
        self.root = root
        self.wrapper = root / ".reconciler" / WRAPPER_NAME
        self.slots = slots or os.cpu_count() or 1
        # Self-pipe: watchers and wake() write a byte, wait() selects on it. os.write is
        # async-signal-safe, so wake() may be called from a signal handler (a Queue may not).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()
        self._live: dict[str, int] = {}  # job name -> pid, while a watcher thread runs
        self._kill_reason: dict[str, str] = {}  # job name -> "timeout" | "cancelled"

    # -- scripts ---------------------------------------------------------------------------

    def render_script(self, cmd: str, resources: Resources, *, name: str, shell: str) -> str:
        return f"#!{shell}\n\n{cmd}\n"

    def prepare(self, root: Path) -> None:
        self.wrapper.parent.mkdir(parents=True, exist_ok=True)
        if not self.wrapper.is_file() or self.wrapper.read_text() != _WRAPPER:
            tmp = self.wrapper.with_name(WRAPPER_NAME + ".tmp")
            tmp.write_text(_WRAPPER)
            tmp.chmod(0o755)
            os.replace(tmp, self.wrapper)

    def _args(self, job: Job) -> list[str]:
        return [
            "/bin/bash",
            str(self.wrapper),
            str(job.exit_file),
            str(job.submission),
            job.shell,
            str(job.script),
        ]

    # -- submit / observe / cancel ---------------------------------------------------------

    def capacity(self) -> int | None:
        with self._lock:
            return max(0, self.slots - len(self._live))

    def submit(self, job: Job) -> str:
        with contextlib.suppress(FileNotFoundError):
            job.exit_file.unlink()  # a previous submission's record must not be read as ours
        try:
            with open(job.out, "ab") as out, open(job.err, "ab") as err:
                proc = base.spawn(self._args(job), cwd=job.workdir, stdout=out, stderr=err)
        except OSError as e:
            raise SubmitError(f"cannot start {job.script}: {e}") from e
        self._watch(job, proc.pid, time.time(), proc)
        return str(proc.pid)

    def poll(self, jobs: Sequence[Job]) -> dict[str, Observation]:
        seen: dict[str, Observation] = {}
        for job in jobs:
            ended = read_exit(job)
            if ended is not None:
                seen[job.name] = ended
                continue
            with self._lock:
                watched = job.name in self._live
            if watched:
                seen[job.name] = Observation(State.RUNNING)
            elif job.job_id and self._ours(int(job.job_id), job):
                # Re-attach: a job started by an earlier engine that is still running.
                self._watch(job, int(job.job_id), job.start_time or time.time(), None)
                seen[job.name] = Observation(State.RUNNING)
            else:
                seen[job.name] = Observation(State.LOST, None, time.time())
        return seen

    def cancel(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            with self._lock:
                watched = job.name in self._live
                self._kill_reason[job.name] = "cancelled"
            if job.job_id and (watched or self._ours(int(job.job_id), job)):
                self._terminate(int(job.job_id), job)
                if not watched:
                    _write_exit(job, "cancelled")

    def find(self, job: Job) -> str | None:
        """Scan /proc for this submission's wrapper (its args name the exit file and number)."""
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._ours(int(entry.name), job):
                return entry.name
        return None

    def wait(self, timeout: float) -> None:
        ready, _, _ = select.select([self._wake_r], [], [], max(0.0, timeout))
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 4096):  # drain: many ends, one engine pass
                    pass

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe already means "wake up"
            os.write(self._wake_w, b"!")

    # No close(): watcher threads of still-running jobs may write to the pipe at any time, and
    # writing to a closed (then reused) descriptor could hit another file. Two fds per adapter.

    # -- internals -------------------------------------------------------------------------

    def _ours(self, pid: int, job: Job) -> bool:
        """Is `pid` this submission's wrapper? (pids are reused; the cmdline tells.)"""
        return _cmdline(pid) == self._args(job)

    def _watch(self, job: Job, pid: int, started: float, proc: object | None) -> None:
        with self._lock:
            self._live[job.name] = pid
            self._kill_reason.pop(job.name, None)
        deadline = None if job.walltime is None else started + job.walltime
        t = threading.Thread(
            target=self._watcher,
            args=(job, pid, deadline, proc),
            daemon=True,
            name=f"job-{job.name}",
        )
        t.start()

    def _watcher(self, job: Job, pid: int, deadline: float | None, proc: object | None) -> None:
        exited = _wait_pid(pid, proc, deadline)
        if not exited:  # walltime reached
            with self._lock:
                self._kill_reason.setdefault(job.name, "timeout")
            self._terminate(pid, job)
            _wait_pid(pid, proc, None)
        with self._lock:
            reason = self._kill_reason.pop(job.name, None)
        if reason is not None:
            _write_exit(job, reason)  # the wrapper died with its group: record why
        with self._lock:  # only now: a poll must never see "not watched and no exit record"
            self._live.pop(job.name, None)
        self.wake()

    def _terminate(self, pid: int, job: Job) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)

        def escalate() -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

        timer = threading.Timer(KILL_GRACE, escalate)
        timer.daemon = True
        timer.start()


def _wait_pid(pid: int, proc: object | None, deadline: float | None) -> bool:
    """Wait for a process to end; False if `deadline` came first."""
    timeout = None if deadline is None else max(0.0, deadline - time.time())
    if isinstance(proc, base.Process):  # our child: waitpid (also reaps it)
        return base.wait_child(proc, timeout)
    try:  # someone else's child (an earlier engine's): a pidfd turns readable at exit
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:
        fd = None
    if fd is not None:
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            return bool(ready)
        finally:
            os.close(fd)
    while True:  # no pidfd (old kernel): poll
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if deadline is not None and time.time() >= deadline:
            return False
        time.sleep(0.05)
