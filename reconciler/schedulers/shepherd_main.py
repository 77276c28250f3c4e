"""The shepherd process: starts one local slot's jobs, one at a time, and records how each ended.

Run by the local adapter as `python -I -S shepherd_main.py --workspace ROOT` in a session of its
own (it outlives the engine). Standard library only: it starts in a few milliseconds, once per
slot, and imports nothing of reconciler's.

stdin: jobs, each 6 NUL-terminated fields, WORKDIR EXIT_FILE SUBMISSION SHELL SCRIPT STEM.
For each it starts `SHELL SCRIPT` in WORKDIR — stdin /dev/null, stdout and stderr to
STEM.<pid>.out and STEM.<pid>.err (Maestro's local names: one pair per attempt), the leader of a
new process group: what the wrapper local-job.sh runs — and reports `started PID` on stdout. The
pid is known only once the job exists, so the files are opened first as STEM.starting.out/.err
(by the shepherd: a symlink there is refused, never written through) and renamed to their pid
names right after the spawn, before the start is recorded or reported: whoever knows the job id
finds its output by name. A job that cannot start (no such shell, an output file not writable)
ends at once with 127, as in a shell, and is reported `failed WHY`. When a job ends it writes
`<rc> <submission>` to EXIT_FILE — unless the engine already wrote there why it killed the job
(`timeout N`, `cancelled N`, written before the kill) — and only then reaps it and reports
`ended PID`: while a job's pid exists its end may not be recorded yet; once it is gone, it is.
EOF on stdin (the engine ended or died) ends the shepherd, after the job it runs.

Whose job it runs is in its state file, `.reconciler/shepherds/<its pid>`: `PID\0SUBMISSION\0
EXIT_FILE\0`, PID ten digits wide. It is written before the job starts, with PID 0, and the pid
is written over those digits once the job has started, before it is reported: an overwrite in
place needs no new disk space, so a job starts only if it will be known. A job whose state
cannot be written (disk full) is not started: it fails with 127. After a restart the engine
knows a job process by this file (a job may `exec` another program, or point its output
elsewhere, so neither its command line nor its open files name it for sure). The file goes
when the shepherd ends.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys

FIELDS = 6
# Ignored by Python and inherited across exec: a job gets them at their default, as from a shell.
_DEFAULT_SIGNALS = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGPIPE", "SIGXFSZ", "SIGXFZ")) if s
)
# Fresh files for each attempt (a crashed start's leftovers are truncated); O_NOFOLLOW: never
# through a symlink an earlier step planted. CLOEXEC: the job gets them as its 1 and 2 (dup2).
_OUTPUT = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_nofollow(path: str | bytes, flags: int, mode: int) -> int:
    """wsfile.open_nofollow's rule, repeated here (this process imports nothing of ours): the
    last component is never followed; a symlink there is removed and a regular file made."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, mode)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
    os.unlink(path)
    return os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)


class _Jobs:
    def __init__(self) -> None:
        self.buf = b""

    def next(self) -> list[bytes] | None:
        """The next job's fields, None at EOF (a partial job at EOF is dropped: never started)."""
        while True:
            parts = self.buf.split(b"\0", FIELDS)
            if len(parts) > FIELDS:
                self.buf = parts[FIELDS]
                return parts[:FIELDS]
            chunk = os.read(0, 65536)
            if not chunk:
                return None
            self.buf += chunk


def _report(line: str) -> None:
    with contextlib.suppress(OSError):  # the engine is gone: the exit record is what counts
        os.write(1, line.encode() + b"\n")


def _record(exit_file: bytes, submission: bytes, rc: int) -> None:
    try:
        with open(exit_file, "rb") as f:
            parts = f.read(64).split()
        if len(parts) == 2 and parts[1] == submission:
            return  # the engine recorded why it killed this very submission
    except OSError:
        pass
    try:
        fd = _open_nofollow(exit_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.write(fd, b"%d %s\n" % (rc, submission))  # one small write, as the wrapper's
        finally:
            os.close(fd)
    except OSError:
        pass  # unrecordable (disk full, directory gone): the engine will call it LOST


def _start(fields: list[bytes]) -> int | str:
    """Start the job; its pid, or why it could not start. Its output is at STEM.<pid>.out/.err."""
    workdir, _exit, _sub, shell, script, stem = fields
    temps = (stem + b".starting.out", stem + b".starting.err")
    fds: list[int] = []
    try:
        os.chdir(workdir)
        for path in temps:
            if os.path.islink(path):  # planted by an earlier step: drop the link, not its target
                os.unlink(path)
            fds.append(os.open(path, _OUTPUT, 0o666))
        spawn = os.posix_spawn if b"/" in shell else os.posix_spawnp
        pid = spawn(
            shell,
            [shell, script],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fds[0], 1),
                (os.POSIX_SPAWN_DUP2, fds[1], 2),
            ],
            setpgroup=0,  # a process group of its own: cancel and walltime kill it whole
            setsigdef=_DEFAULT_SIGNALS,
            setsigmask=(),
        )
    except OSError as e:
        for path in temps[: len(fds)]:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return f"cannot start {os.fsdecode(shell)} {os.fsdecode(script)}: {e.strerror or e}"
    finally:
        for fd in fds:
            os.close(fd)
    for path, stream in zip(temps, (b"out", b"err"), strict=True):
        # A rename keeps the open file: the job writes on, under its attempt's name. (A pid
        # reused by the same instance's earlier attempt would replace that attempt's file,
        # as Maestro's would; it is that rare.) Left under the temporary name if this fails.
        with contextlib.suppress(OSError):
            os.rename(path, b"%s.%d.%s" % (stem, pid, stream))
    return pid


PID_WIDTH = 10  # digits: any Linux pid (pid_max ≤ 2^22), so the pid fits over the zeros


def _intend(path: str, submission: bytes, exit_file: bytes) -> int:
    """Write the state of a job about to start (pid 0); the open file. Raises OSError."""
    fd = _open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = b"0" * PID_WIDTH + b"\0%s\0%s\0" % (submission, exit_file)
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {path}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _started(fd: int, pid: int) -> None:
    """Write the started job's pid over the zeros (same length: no new space needed)."""
    try:  # one small write in place: a reader that sees it half-done waits and reads again
        os.pwrite(fd, b"%0*d" % (PID_WIDTH, pid), 0)
    except OSError:
        pass  # cannot happen short of an I/O error; then the job is not recognised after a restart
    finally:
        os.close(fd)


def main() -> None:
    # Started in the workspace root (its --workspace may be relative; jobs chdir elsewhere).
    state_dir = os.path.join(os.getcwd(), ".reconciler", "shepherds")
    with contextlib.suppress(OSError):
        os.makedirs(state_dir, exist_ok=True)
    state = os.path.join(state_dir, str(os.getpid()))
    with contextlib.suppress(OSError):
        os.unlink(state)  # a dead shepherd's that had this pid: it names none of our jobs
    try:
        _serve(state)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(state)


def _serve(state: str) -> None:
    jobs = _Jobs()
    while (fields := jobs.next()) is not None:
        exit_file, submission = fields[1], fields[2]
        try:
            fd = _intend(state, submission, exit_file)
        except OSError as e:
            _record(exit_file, submission, 127)
            why = f"cannot record the start of {os.fsdecode(fields[4])}: {e}"
            _report("failed " + why.replace("\n", " "))
            continue
        started = _start(fields)
        if isinstance(started, str):
            os.close(fd)
            _record(exit_file, submission, 127)
            _report("failed " + started.replace("\n", " "))
            continue
        _started(fd, started)
        _report(f"started {started}")
        info = os.waitid(os.P_PID, started, os.WEXITED | os.WNOWAIT)  # ended, not yet reaped
        if info is not None:  # (always, without WNOHANG)
            exited = info.si_code == os.CLD_EXITED
            _record(exit_file, submission, info.si_status if exited else 128 + info.si_status)
        os.waitpid(started, 0)
        _report(f"ended {started}")


if __name__ == "__main__":
    if sys.argv[1:2] != ["--workspace"]:
        sys.exit("usage: shepherd_main.py --workspace ROOT")
    main()
