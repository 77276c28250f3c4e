"""One engine per workspace: an exclusive `flock` on `<root>/.reconciler/engine.lock`.

The lock dies with its process (kill -9 included), so there is no stale-lock cleanup. The holder
writes who it is into the file, for the message the second engine prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler import wsfile


class LockHeld(Exception):
    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        super().__init__(self.message())

    def message(self) -> str:
        h = self.holder
        started = h.get("started")
        when = datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S") if started else "?"
        return (
            f"another engine is already running this study (pid {h.get('pid', '?')} on "
            f"{h.get('host', '?')}, started {when}); it holds {self.path}. Use `status` to watch "
            "it or `cancel` to stop it."
        )


@dataclass
class EngineLock:
    path: Path
    info: dict[str, Any] | None = None  # extra holder facts (e.g. how to wake it)
    fd: int | None = None

    def acquire(self) -> EngineLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The holder's facts are written into it: never through a link left in its place.
        fd = wsfile.open_nofollow(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        # A few tries: `status` probes the lock for microseconds (holder_if_locked), and that
        # must not make a starting engine believe another one runs.
        for attempt in range(10):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 9:
                    os.close(fd)
                    raise LockHeld(self.path, read_holder(self.path)) from None
                time.sleep(0.02)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        info.update(self.info or {})
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> EngineLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text() or "{}"))
    except (OSError, ValueError):
        return {}


def holder_if_locked(path: Path) -> dict[str, Any] | None:
    """Who runs the engine now, or None if nobody does (probes the lock without keeping it)."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or {"pid": None}
    finally:
        os.close(fd)  # also drops the shared lock if we got it
    return None
