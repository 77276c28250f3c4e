"""One apply at a time per repository: an flock on `.reconciler/apply.lock`.

`apply` plans and changes records while holding it, so two applies (or an apply and the
watcher's pass) never plan from the same record and both write it — the second one waits,
saying who it waits for, and then plans from what the first one left. Like the engine lock it
dies with its process, `kill -9` included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.engine.lock import EngineLock, LockHeld

FILE = "apply.lock"
POLL = 0.2  # seconds between tries while another holder works


class RepoLocked(Exception):
    """The lock did not come free in time (one paragraph naming the holder)."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S") if started else "?"
    return (
        f"`reconciler {holder.get('command', '?')}` (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {when})"
    )


@contextmanager
def repo_lock(
    state_dir: Path,
    command: str,
    *,
    timeout: float,
    on_wait: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[None]:
    """Hold the repository's apply lock; wait up to `timeout` seconds (0: do not wait) for it,
    calling `on_wait(holder)` once when it is taken. Raises RepoLocked."""
    path = state_dir / FILE
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            lock = EngineLock(path, {"role": "apply", "command": command}).acquire()
            break
        except LockHeld as e:
            if time.monotonic() >= deadline:
                raise RepoLocked(
                    f"{describe(e.holder)} holds the repository lock {path}"
                    + (f" and did not let go within {timeout:g} s" if timeout else "")
                    + "; nothing was applied. Try again when it is done (--lock-timeout waits "
                    "longer).",
                    e.holder,
                ) from None
            if not told and on_wait is not None:
                on_wait(e.holder)
                told = True
            time.sleep(POLL)
    try:
        yield
    finally:
        lock.release()


__all__ = ["FILE", "RepoLocked", "describe", "repo_lock"]
