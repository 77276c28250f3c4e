"""One thread that waits for many local jobs: their pidfds in one epoll, plus their deadlines.

A thread per job costs a thread start on the submit path (the engine waits for it to be
scheduled, which on a busy machine is most of a millisecond) and a stack per running job. One
reaper serves them all: a pidfd turns readable when its process exits (child or not, reaped or
not), so the same loop covers the engine's own children (reaped here) and the jobs it re-attached
after a restart. The thread exits once nothing has been left to watch for `LINGER` seconds and
starts again on the next job, so idle adapters (tests make many) hold no thread, while a busy one
does not pay a thread start (a wait for the scheduler) each time its last job ends.

A job started by a shepherd is watched through the shepherd's report pipe instead (`add_pipe`):
its end counts once the shepherd says it recorded it, which is after the process exited.

Linux ≥ 5.3 only (pidfd_open); `Reaper.add` returns False elsewhere and the caller falls back.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

LINGER = 1.0  # seconds an idle reaper thread waits for a new job before it exits


@dataclass(slots=True)
class _Watched:
    key: str
    pid: int
    proc: subprocess.Popen[bytes] | None  # our child: reaped here
    deadline: float | None
    overdue: bool = False
    ended: Callable[[], bool] | None = None  # a pipe: readable; has the job ended? (else a pidfd)


class Reaper:
    def __init__(self, ended: Callable[[str], None], overdue: Callable[[str, int], None]) -> None:
        """`ended(key)` runs on the reaper thread once the process is gone (and reaped);
        `overdue(key, pid)` once when its deadline passes (the caller kills it; `ended` follows)."""
        self._ended = ended
        self._overdue = overdue
        self._lock = threading.Lock()
        self._fds: dict[int, _Watched] = {}
        self._epoll: select.epoll | None = None
        self._kick = -1  # eventfd: a new deadline may be earlier than the one being waited for

    def add(
        self,
        key: str,
        pid: int,
        proc: subprocess.Popen[bytes] | None,
        deadline: float | None,
    ) -> bool:
        """Watch `pid`; False if pidfds are unavailable here. Raises ProcessLookupError if the
        process is already gone (never for an unreaped child)."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise
        except (OSError, AttributeError):
            return False
        with self._lock:
            self._watch(fd, _Watched(key, pid, proc, deadline))
        return True

    def add_pipe(
        self, key: str, fd: int, pid: int, deadline: float | None, ended: Callable[[], bool]
    ) -> None:
        """Watch job `pid` through `fd` (not closed here): each time it is readable, `ended()`
        says whether the job ended."""
        with self._lock:
            self._watch(fd, _Watched(key, pid, None, deadline, ended=ended))

    def _watch(self, fd: int, w: _Watched) -> None:
        if self._epoll is None:  # (re)start the thread with a fresh epoll
            self._epoll = select.epoll()
            if self._kick < 0:
                self._kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._epoll.register(self._kick, select.EPOLLIN)
            threading.Thread(
                target=self._loop, args=(self._epoll,), daemon=True, name="reaper"
            ).start()
        self._fds[fd] = w
        self._epoll.register(fd, select.EPOLLIN)
        if w.deadline is not None:
            os.eventfd_write(self._kick, 1)

    def _loop(self, ep: select.epoll) -> None:
        idle_since: float | None = None
        while True:
            with self._lock:
                if self._fds:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= LINGER:
                    # Nothing left for a while: stop; the next add starts a new thread.
                    self._epoll = None
                    ep.close()
                    return
                deadlines = [
                    w.deadline
                    for w in self._fds.values()
                    if w.deadline is not None and not w.overdue
                ]
            # At most an hour at a time: epoll refuses (OverflowError) a wait past ~24.8 days,
            # and a long walltime is reached as well by waking up and looking again.
            timeout = min(max(0.0, min(deadlines) - time.time()), 3600.0) if deadlines else -1
            if idle_since is not None:  # idle: an add registers its pidfd in `ep`, which wakes us
                timeout = LINGER
            for fd, _ in ep.poll(timeout):
                if fd == self._kick:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(self._kick)
                    continue
                with self._lock:
                    w = self._fds.get(fd)
                if w is None or (w.ended is not None and not w.ended()):
                    continue
                with self._lock:
                    self._fds.pop(fd, None)
                ep.unregister(fd)
                if w.ended is None:
                    os.close(fd)  # our pidfd (a pipe is its shepherd's)
                if w.proc is not None:
                    w.proc.wait()  # exited: reaps at once
                self._ended(w.key)
            now = time.time()
            with self._lock:
                late = [
                    w
                    for w in self._fds.values()
                    if w.deadline is not None and not w.overdue and w.deadline <= now
                ]
                for w in late:
                    w.overdue = True
            for w in late:
                self._overdue(w.key, w.pid)
