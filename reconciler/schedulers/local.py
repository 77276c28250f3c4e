"""The local adapter: instance scripts in parallel on this host, up to N slots.

Each job is `SHELL SCRIPT`, started in the instance directory by its slot's shepherd
(`shepherd.py`), a process that outlives the engine: the script's stdout and stderr go straight
to `<instance>.<pid>.out`/`.err` — Maestro's local names, so each attempt keeps its own files —
and when it ends the shepherd writes `<rc> <submission>` to the exit file, so the end of a job is
known even if the engine was dead then. The job id is the script's pid (the leader of the job's
process group); the output files are named by it before the shepherd reports the start, so
whoever knows the job id knows where its output is (`Workspace.outputs`).

Without shepherds (no posix_spawn) each job runs `/bin/sh local-job.sh EXIT_FILE SUBMISSION SHELL
SCRIPT STEM` in its own session instead, a wrapper that does the same and whose pid ($$, the job
id) names its output files; jobs started so by this or an older version are still recognised
after a restart. The wrapper is POSIX sh (dash: half of bash's start-up) and creates the output
files itself, off the engine's serial path. Its one `printf >` (like the shepherd's one write) is
a single small write; a reader that catches it half-done sees no second field or a truncated
submission number, which `read_exit` rejects, so a torn record is never taken for an exit code.

One reaper thread watches every job (a shepherd's report pipe, or a pidfd, in one epoll:
`reaper.py`) and enforces walltimes; where pidfds are missing (Linux < 5.3) a thread per wrapper
job does the same. Every end writes to a self-pipe that `wait` selects on, so the engine reacts
to a job's end at once instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from reconciler import wsfile
from reconciler.plan.states import State
from reconciler.schedulers import base, shepherd
from reconciler.schedulers.base import Adapter, Job, Observation, SubmitError
from reconciler.schedulers.reaper import Reaper
from reconciler.schedulers.shepherd import Seen
from reconciler.spec.instance import Resources

WRAPPER_NAME = "local-job.sh"
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of a job's process group
WRAPPER_SHELL = "/bin/sh"
_WRAPPER = """#!/bin/sh
# reconciler local job wrapper: run one instance script, then record how it ended.
# usage: local-job.sh EXIT_FILE SUBMISSION SHELL SCRIPT STEM   (cwd: the instance directory)
# Output goes to STEM.<pid>.out/.err, Maestro's names; the pid ($$) is the job id.
out="$5.$$.out" err="$5.$$.err"
[ -L "$out" ] && rm -f "$out"  # never write through a link an earlier step planted
[ -L "$err" ] && rm -f "$err"
if ! command exec >>"$out" 2>>"$err"; then
  printf '127 %s\\n' "$2" > "$1"
  exit 127
fi
"$3" "$4"
rc=$?
printf '%s %s\\n' "$rc" "$2" > "$1"
exit "$rc"
"""
# Jobs started by an earlier reconciler ran the wrapper under bash without output arguments, or
# under sh with OUT ERR (`<instance>.out`); both are still recognised (re-attached, cancelled)
# when a workspace is resumed across an upgrade.
_LEGACY_WRAPPER_SHELL = "/bin/bash"
# How long a restarted engine waits for an earlier engine's shepherds to start or record what it
# handed them before it died. They take microseconds; this bounds a wedged (stopped) one, and is
# long because giving up early could start a job again that a slow shepherd then starts too.
SETTLE = 30.0
REAP_WAIT = 2.0  # the reaper thread's wait for a shepherd to reap a job it records (then: poll)


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
    # Renamed over the record, never written through a link a job left there (wsfile.py).
    wsfile.write(job.exit_file.parent, job.exit_file, f"{what} {job.submission}\n")


_cmdline = shepherd.cmdline


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
        self._jobs: dict[str, Job] = {}  # job name -> the submission the reaper watches
        self._reaper = Reaper(self._reaped, self._overdue)
        self._flock = shepherd.Flock(root) if shepherd.usable() else None

    # -- scripts ---------------------------------------------------------------------------

    def render_script(
        self, cmd: str, resources: Resources, *, name: str, shell: str, description: str = ""
    ) -> str:
        return f"#!{shell}\n\n{cmd}\n"

    def prepare(self, root: Path) -> None:
        self.wrapper.parent.mkdir(parents=True, exist_ok=True)
        if not self.wrapper.is_file() or self.wrapper.read_text() != _WRAPPER:
            wsfile.write(root, self.wrapper, _WRAPPER, mode=0o755)

    def _args(self, job: Job) -> list[str]:
        return [*self._legacy_args(job, WRAPPER_SHELL), str(job.stem)]

    def _previous_args(self, job: Job) -> list[str]:
        raw = job.workdir / job.name  # before output files were named by pid and sanitised
        return [*self._legacy_args(job, WRAPPER_SHELL), f"{raw}.out", f"{raw}.err"]

    def _legacy_args(self, job: Job, wrapper_shell: str = _LEGACY_WRAPPER_SHELL) -> list[str]:
        return [
            wrapper_shell,
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
        base.secure_paths(self.root, job)
        with contextlib.suppress(FileNotFoundError):
            job.exit_file.unlink()  # a previous submission's record must not be read as ours
        if self._flock is not None:
            return self._submit_to_shepherd(job, self._flock)
        try:  # the wrapper opens its output files (a failure there is exit code 127)
            proc = base.spawn(
                self._args(job),
                cwd=job.workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError as e:
            raise SubmitError(f"cannot start {job.script}: {e}") from e
        self._watch(job, proc.pid, time.time(), proc)
        return str(proc.pid)

    def _submit_to_shepherd(self, job: Job, flock: shepherd.Flock) -> str:
        for tries_left in (1, 0):  # a shepherd that died idle is replaced once
            with self._lock:
                s = flock.take_idle(job.name)
            try:  # the shepherd opens the job's output files
                pid = shepherd.start(flock, s, job)
                break
            except shepherd.Gone:
                with self._lock:
                    flock.release(job.name)
                if not tries_left:
                    raise
            except BaseException:
                with self._lock:
                    flock.release(job.name)
                raise
        with self._lock:
            self._live[job.name] = pid
            self._kill_reason.pop(job.name, None)
            self._jobs[job.name] = job
        deadline = None if job.walltime is None else time.time() + job.walltime
        if s.ended_already():  # read with its start: the pipe may never turn readable again
            self._reaped(job.name)
        else:
            self._reaper.add_pipe(job.name, s.reports, pid, deadline, s.ended)
        return str(pid)

    def poll(self, jobs: Sequence[Job]) -> dict[str, Observation]:
        seen: dict[str, Observation] = {}
        for job in jobs:
            # Watched first, exit record second: a watcher stops watching only after the record
            # is written, so "watched, no record yet" means running and "not watched, no record"
            # means not ours. (The other order could read no record, then see the job end and
            # its watcher go, and call a finished job LOST.)
            with self._lock:
                watched = job.name in self._live
            if watched:  # its exit record, if it has one yet, is read once it is not watched
                seen[job.name] = Observation(State.RUNNING)
                continue
            ended = read_exit(job)
            if ended is not None:
                seen[job.name] = ended
            elif job.job_id and self._ours(int(job.job_id), job, by_id=True):
                # Re-attach: a job started by an earlier engine that is still running.
                self._watch(job, int(job.job_id), job.start_time or time.time(), None)
                seen[job.name] = Observation(State.RUNNING)
            else:
                # Not (or no longer) running. A job records its end before its process goes, so
                # one that ended after the first read has its record now: read it again.
                ended = read_exit(job)
                seen[job.name] = ended or Observation(State.LOST, None, time.time())
        return seen

    def cancel(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            with self._lock:
                watched = job.name in self._live
                self._kill_reason[job.name] = "cancelled"
            if job.job_id and (watched or self._ours(int(job.job_id), job, by_id=True)):
                self._terminate(int(job.job_id), job)
                if not watched:
                    _write_exit(job, "cancelled")

    def find(self, job: Job) -> str | None:
        """Scan /proc for this submission's process: a shepherd's job that its shepherd's state
        file names, or a wrapper (whose args name the exit file and number)."""
        ours = self._shepherd_sessions()
        deadline = time.monotonic() + SETTLE
        while shepherd.unsettled(self.root, ours) and time.monotonic() < deadline:
            time.sleep(0.005)  # an earlier engine's shepherd is about to start a job, or exit
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._ours(int(entry.name), job, ours=ours):
                return entry.name
        return None

    def wait(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._wake_r], [], [], max(0.0, timeout))
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 4096):  # drain: many ends, one engine pass
                    pass
        return bool(ready)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe already means "wake up"
            os.write(self._wake_w, b"!")

    def close(self) -> None:
        """Shepherds exit once their job ends (EOF); the jobs go on, their ends recorded."""
        if self._flock is not None:
            with self._lock:
                self._flock.close()

    # The wake pipe stays open: watcher threads of still-running jobs may write to it at any
    # time, and writing to a closed (then reused) descriptor could hit another file.

    # -- internals -------------------------------------------------------------------------

    def _shepherd_sessions(self) -> set[int]:
        """This adapter's shepherds (each leads its session): their jobs are not an earlier
        engine's."""
        if self._flock is None:
            return set()
        with self._lock:
            return self._flock.pids()

    def _ours(
        self, pid: int, job: Job, *, by_id: bool = False, ours: set[int] | None = None
    ) -> bool:
        """Is `pid` this submission's process? (pids are reused; the wrapper's args, or the
        shepherd's state file, tell.) `by_id`: the pid is the job id recorded for it (a job
        that just exited, its end being recorded by its shepherd, is then taken for it: it is
        watched, and ends at once). `ours`: `_shepherd_sessions()`, when a caller has it."""
        with self._lock:
            watcher = next((n for n, p in self._live.items() if p == pid), None)
        if watcher is not None:  # one of this adapter's jobs: the one it was started for
            return watcher == job.name
        cmdline = _cmdline(pid)
        if cmdline in (self._args(job), self._previous_args(job), self._legacy_args(job)):
            return True
        if ours is None:
            ours = self._shepherd_sessions()
        deadline = time.monotonic() + SETTLE
        while (seen := shepherd.job_state(pid, job, self.root, ours)) is Seen.STARTING:
            if time.monotonic() >= deadline:  # wedged: never call LOST what may still run
                return by_id
            time.sleep(0.002)
        return seen is Seen.YES or (by_id and seen is Seen.RECORDING)

    def _watch(self, job: Job, pid: int, started: float, proc: object | None) -> None:
        with self._lock:
            self._live[job.name] = pid
            self._kill_reason.pop(job.name, None)
            self._jobs[job.name] = job
        deadline = None if job.walltime is None else started + job.walltime
        child = proc if isinstance(proc, base.Process) else None
        try:
            if self._reaper.add(job.name, pid, child, deadline):
                return
        except ProcessLookupError:  # a re-attached job that ended meanwhile: nothing to watch
            self._reaped(job.name)
            return
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
            self._jobs.pop(job.name, None)
        self.wake()

    def _reaped(self, name: str) -> None:
        """The reaper saw job `name` end (its process is gone; a shepherd's job: recorded)."""
        with self._lock:
            job = self._jobs.get(name)
            pid = self._live.get(name)
            reason = self._kill_reason.pop(name, None)
        if pid is not None:
            _until_reaped(pid)  # an earlier engine's shepherd records a job, then reaps it
        if job is not None and reason is not None:
            _write_exit(job, reason)  # the wrapper died with its group: record why
        with self._lock:  # only now: a poll must never see "not watched and no exit record"
            self._live.pop(name, None)
            self._jobs.pop(name, None)
            if self._flock is not None:
                self._flock.release(name)  # its shepherd takes the next job
        self.wake()

    def _overdue(self, name: str, pid: int) -> None:
        """Walltime reached: kill the group; `_reaped` records TIMEDOUT when it is gone."""
        with self._lock:
            self._kill_reason.setdefault(name, "timeout")
            job = self._jobs.get(name)
        if job is not None:
            self._terminate(pid, job)

    def _terminate(self, pid: int, job: Job) -> None:
        with self._lock:
            reason = self._kill_reason.get(job.name)
        if reason is not None:  # before the kill: a shepherd keeps it, not the signal's rc
            _write_exit(job, reason)
        base.kill_group(pid, KILL_GRACE)


def _until_reaped(pid: int) -> None:
    """Wait (briefly) while `pid` is a zombie: its parent is still recording its end."""
    deadline = time.monotonic() + REAP_WAIT
    while time.monotonic() < deadline:
        st = shepherd.proc_stat(pid)
        if st is None or st[0] != "Z":
            return
        time.sleep(0.001)


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
