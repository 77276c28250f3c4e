"""What the CLI calls: run an engine (here or detached), cancel, update, probe who runs a study."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reconciler import wsfile
from reconciler.engine.converge import Engine, Outcome
from reconciler.engine.lock import EngineLock, LockHeld, holder_if_locked
from reconciler.record.store import Event, Store
from reconciler.record.workspace import Workspace
from reconciler.schedulers import base

__all__ = [
    "EngineStopped",
    "LockHeld",
    "Outcome",
    "cancel",
    "engine_holder",
    "run_engine",
    "start_background",
    "update",
]


def run_engine(
    root: Path,
    *,
    slots: int | None = None,
    launch: bool = True,
    once: bool = False,
    on_pass: Callable[[dict[str, int]], None] | None = None,
) -> Outcome:
    """Hold the workspace lock and converge the study here. Raises LockHeld."""
    ws = Workspace(root)
    # Only an engine on the main thread can take SIGUSR1; others must never be sent one (the
    # default action would kill their process).
    wake = threading.current_thread() is threading.main_thread()
    if wake:
        # `cancel`/`update` signal as soon as the lock names this engine, which is before
        # Engine.run handles SIGUSR1: until then a no-op handler (the request is in the record,
        # which the first pass reads) keeps the default action from killing the engine. A
        # Python handler, not SIG_IGN: an ignored signal would stay ignored in the jobs it starts.
        previous = signal.signal(signal.SIGUSR1, lambda _signum, _frame: None)
    try:
        return _run_locked(ws, root, slots, launch, once, on_pass, wake)
    finally:
        if wake:
            signal.signal(signal.SIGUSR1, previous)


def _run_locked(
    ws: Workspace,
    root: Path,
    slots: int | None,
    launch: bool,
    once: bool,
    on_pass: Callable[[dict[str, int]], None] | None,
    wake: bool,
) -> Outcome:
    with EngineLock(ws.lock_file, {"wake": "SIGUSR1"} if wake else None):
        engine = Engine(root, slots=slots, on_pass=on_pass)
        if launch:
            engine.store.update_study(
                control=False,
                engine_pid=os.getpid(),
                engine_host=socket.gethostname(),
                engine_started=time.time(),
            )
        try:
            return engine.run(launch=launch, once=once, wake_signal=wake)
        except (OSError, sqlite3.OperationalError) as e:
            # A full or read-only disk: every transaction so far is intact (WAL), running jobs
            # go on, and `resume` carries on once the disk is writable again.
            why = getattr(e, "strerror", None) or str(e)
            raise EngineStopped(
                f"the engine of {root} stopped: {why}. The record is intact and running jobs "
                f"go on; free space (or make the disk writable) and `reconciler resume {root}`."
            ) from e
        finally:
            engine.store.close()


class EngineStopped(Exception):
    """The engine cannot write (disk full, read-only): a clear message, the record intact."""


def engine_holder(root: Path) -> dict[str, Any] | None:
    """The running engine of a workspace ({pid, host, started}), or None."""
    return holder_if_locked(Workspace(root).lock_file)


def start_background(root: Path, *, slots: int | None = None) -> int:
    """Detach an engine in a new session (it outlives this command); returns its pid."""
    store = Store.open(root)
    name = store.study()["name"]
    store.close()
    ws = Workspace(root)
    args = [sys.executable, "-m", "reconciler.engine", str(root)]
    if slots:
        args += ["--slots", str(slots)]
    # Never through a link a step left at logs/ or at the log itself (wsfile.py).
    with os.fdopen(wsfile.append(root, ws.engine_log(name)), "ab") as log:
        proc = base.spawn(args, cwd=root, stdout=log, stderr=log)
    return proc.pid


def _wake(root: Path) -> bool:
    """Signal the running engine (same host only) so it acts now; False if none runs."""
    holder = engine_holder(root)
    if holder is None:
        return False
    pid = holder.get("pid")
    if pid and holder.get("wake") == "SIGUSR1" and holder.get("host") == socket.gethostname():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(pid), signal.SIGUSR1)
    return True


def cancel(root: Path, steps: Sequence[str] | None = None) -> int:
    """Flag instances for cancellation. A running engine acts at once; with no engine, one
    pass runs here (kills jobs still running, records CANCELLED) and launches nothing.
    Returns the number of instances flagged."""
    store = Store.open(root)
    try:
        n = store.request_cancel(list(steps) if steps else None)
    finally:
        store.close()
    if not _wake(root):
        with contextlib.suppress(LockHeld):  # an engine started meanwhile: it will act
            run_engine(root, launch=False, once=True)
    return n


def update(root: Path, **settings: float | None) -> dict[str, float]:
    """Change throttle/rlimit/sleep (0 is a valid value) and wake the engine."""
    values = {k: v for k, v in settings.items() if v is not None}
    store = Store.open(root)
    try:
        if values:
            store.update_study(**values)
            store.log([Event("settings-updated", detail=repr(values))])
        current = store.settings()
    finally:
        store.close()
    _wake(root)
    return current
