"""What a pool worker runs for one instance: the Dask task function, and its exactly-once guards.

Imported by Dask workers (inside allocations), which run the same installed reconciler. It does
what the local adapter's wrapper does — cwd = the instance directory,
stdout/stderr appended to the instance's `.out`/`.err`, `<rc> <submission>` written to its
`.exit` when the script ends — plus two guards, because Dask may run a task again after a worker
dies (a task that was running there, or one that finished and whose result was still held):

1. the exit record: a submission that already has one is never run again;
2. a claim file, `<name>.exit.<submission>.claim`, created with O_EXCL before the script starts:
   a second execution of the same submission finds it and does not run the script. The first
   execution ran on a worker that died (or is dying), so it records `hwfailure <submission>`
   and the engine's retry policy decides, under a new submission number (a new claim). The
   adapter takes the claim itself, with the word `cancelled`, to cancel a task not yet started.

Exit records are published with `link(2)`, which fails if the record exists: the first writer
wins, so a late writer (an orphan of a dead worker, a cancel racing the end) cannot replace the
decision the engine may already have read.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from reconciler import wsfile
from reconciler.schedulers import base

_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT

KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of an instance's process group
EVENT_TOPIC = "reconciler-pool"  # workers log an event here when an instance ended

_lock = threading.Lock()
_running: dict[str, subprocess.Popen[bytes]] = {}  # task key -> the script's process (leader)
_cancelled: set[str] = set()


def claim_path(exit_file: Path, submission: int) -> Path:
    return exit_file.with_name(f"{exit_file.name}.{submission}.claim")


def exit_record(exit_file: Path, submission: int) -> tuple[str, float] | None:
    """(what, mtime) of this submission's exit record: an exit code, `timeout`, `cancelled` or
    `hwfailure`; None if there is none (or it is a previous submission's, or torn)."""
    try:
        text = exit_file.read_text()
        end = exit_file.stat().st_mtime
    except OSError:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[1] != str(submission):
        return None
    return parts[0], end


def publish_exit(exit_file: Path, what: str, submission: int) -> bool:
    """Write `<what> <submission>` as this submission's exit record unless it has one already.
    True if this call wrote it. A previous submission's record is replaced."""
    writer = f"{os.getpid()}.{threading.get_ident()}"
    tmp = exit_file.with_name(f"{exit_file.name}.{submission}.{writer}")
    fd = wsfile.open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # never via a link
    with os.fdopen(fd, "w") as f:
        f.write(f"{what} {submission}\n")
    try:
        for _ in range(3):
            try:
                os.link(tmp, exit_file)
                return True
            except FileExistsError:
                if exit_record(exit_file, submission) is not None:
                    return False  # the first writer won
                with contextlib.suppress(FileNotFoundError):  # an older submission's record
                    os.unlink(exit_file)
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def read_claim(path: Path) -> list[str] | None:
    """The claim's fields: `<submission> <host> <worker> [<pgid>]`, or `cancelled ...`; None if
    there is no claim ([] if it was just created and is still empty)."""
    try:
        return path.read_text().split()
    except OSError:
        return None


def kill_group(pgid: int, grace: float = KILL_GRACE) -> None:
    """SIGTERM a process group, then SIGKILL it after `grace` seconds (without blocking)."""
    base.kill_group(pgid, grace)


def stale_group(fields: list[str] | None) -> int | None:
    """The process group a claim names, if it ran on this host and is still alive (an orphan of a
    worker that died: its script would otherwise overlap the retry)."""
    if not fields or len(fields) < 4 or fields[1] != socket.gethostname():
        return None
    try:
        pgid = int(fields[3])
        os.killpg(pgid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return None
    return pgid


def note(err: str, text: str) -> None:
    """A line in the instance's .err saying what the pool did (the user reads it there)."""
    with contextlib.suppress(OSError), open(err, "a") as f:
        f.write(f"reconciler pool: {text}\n")


def _worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _ended(key: str) -> None:
    """Tell the engine (subscribed to EVENT_TOPIC) that an instance ended: it wakes at once."""
    worker = _worker()
    if worker is not None:
        with contextlib.suppress(Exception):
            worker.log_event(EVENT_TOPIC, {"key": key})


def run_instance(job: dict[str, Any]) -> str:
    """The Dask task: run one submission of one instance at most once. Returns what happened
    (the engine reads the exit record, not this value; futures are never held)."""
    key = job["key"]
    exit_file = Path(job["exit_file"])
    n = int(job["submission"])
    if exit_record(exit_file, n) is not None:
        return "recorded"  # ran to its end before (Dask re-running a finished task)
    claim = claim_path(exit_file, n)
    worker = _worker()
    name = getattr(worker, "name", None)
    who = "-" if name is None else str(name).replace(" ", "_")
    try:
        fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return _claimed_before(job, claim)
    except OSError as e:
        note(job["err"], f"cannot start submission {n}: {e}")
        publish_exit(exit_file, "127", n)
        _ended(key)
        return "127"
    try:
        proc = _start(job, fd, n, who)
    finally:
        os.close(fd)
    if proc is None:
        publish_exit(exit_file, "127", n)
        _ended(key)
        return "127"
    with _lock:
        _running[key] = proc
        cancelled = key in _cancelled
    if cancelled:  # a cancel reached this worker between the claim and the start
        kill_group(proc.pid)
    what = _wait(proc, job.get("walltime"))
    with _lock:
        _running.pop(key, None)
        if key in _cancelled:
            _cancelled.discard(key)
            what = "cancelled"
    if what.startswith("-"):  # killed by a signal that was not ours
        w = _worker()
        status = str(getattr(w, "status", "running"))
        if w is not None and "running" not in status:
            note(job["err"], f"worker {who} shut down while running submission {n}")
            what = "hwfailure"  # the worker (its allocation) is going away: not the script's fault
        else:
            what = str(128 - int(what))
    publish_exit(exit_file, what, n)
    _ended(key)
    return what


def _start(job: dict[str, Any], fd: int, n: int, who: str) -> subprocess.Popen[bytes] | None:
    """Start the script in its own process group; complete the claim with its pgid."""
    host = socket.gethostname()
    try:
        # Appended to, never through a link planted since the submit (wsfile.py).
        out = os.fdopen(wsfile.open_nofollow(job["out"], _APPEND), "ab")
    except OSError as e:
        os.write(fd, f"{n} {host} {who}\n".encode())
        note(job["err"], f"cannot open {job['out']}: {e}")
        return None
    try:
        err = os.fdopen(wsfile.open_nofollow(job["err"], _APPEND), "ab")
    except OSError as e:
        out.close()
        os.write(fd, f"{n} {host} {who}\n".encode())
        note(job["err"], f"cannot open {job['err']}: {e}")
        return None
    try:
        proc = subprocess.Popen(  # an argument list, never a shell string
            [job["shell"], job["script"]],
            cwd=job["workdir"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own group: cancel and walltime kill it whole
            close_fds=True,
        )
    except OSError as e:
        os.write(fd, f"{n} {host} {who}\n".encode())
        note(job["err"], f"cannot start {job['script']}: {e}")
        return None
    finally:
        out.close()
        err.close()
    os.write(fd, f"{n} {host} {who} {proc.pid}\n".encode())
    return proc


def _wait(proc: subprocess.Popen[bytes], walltime: float | None) -> str:
    try:
        rc = proc.wait(timeout=walltime)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.wait()
        return "timeout"
    return str(rc)


def _claimed_before(job: dict[str, Any], claim: Path) -> str:
    """This submission was claimed already: cancelled before it started, or started by a worker
    that died. Never run it again; make sure it has an exit record."""
    exit_file, n = Path(job["exit_file"]), int(job["submission"])
    fields = read_claim(claim)
    if fields and fields[0] == "cancelled":
        publish_exit(exit_file, "cancelled", n)
        return "cancelled"
    pgid = stale_group(fields)
    if pgid is not None:
        kill_group(pgid)
    if publish_exit(exit_file, "hwfailure", n):
        where = "" if not fields or len(fields) < 3 else f" on {fields[2]} ({fields[1]})"
        note(job["err"], f"submission {n} started{where} and its worker died; not run again")
    _ended(job["key"])
    return "hwfailure"


def cancel_keys(keys: list[str]) -> list[str]:
    """Run on every worker (Client.run): kill the scripts of these tasks that run here. Their
    tasks then record `cancelled`. Returns the keys found here."""
    found = []
    with _lock:
        for key in keys:
            _cancelled.add(key)
            proc = _running.get(key)
            if proc is not None:
                found.append(key)
                kill_group(proc.pid)
        # Forget cancel requests for tasks that never reach this worker.
        if len(_cancelled) > 10000:
            _cancelled.intersection_update(_running)
    return found


def allocation_id() -> str | None:
    """The scheduler job this worker runs in (Client.run on every worker, for `status`)."""
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID"):
        if os.environ.get(var):
            return os.environ[var]
    return None


def task_states(keys: list[str], dask_scheduler: Any = None) -> dict[str, str]:
    """Run on the scheduler (Client.run_on_scheduler): the state of each of these tasks it still
    knows (`released`, `waiting`, `queued`, `processing`, `memory`, `erred`...)."""
    tasks = dask_scheduler.tasks
    return {k: str(tasks[k].state) for k in keys if k in tasks}
