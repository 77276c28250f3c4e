"""The record's events as log lines: Maestro's `-d/--debug_lvl`, `-l/--logpath`, `-c`.

Every event written to a record (a submission, an instance's end, a cancel, a scheduler error)
is also a record of the Python logger `reconciler`: the study's own events at INFO, an
instance's at DEBUG, trouble at WARNING. Nothing is printed unless logging is configured — by
the global options of the `reconciler` command, which also hand the level and the path to
background engines through the environment (`RECONCILER_DEBUG_LVL`, `RECONCILER_LOGPATH`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

LOGGER = logging.getLogger("reconciler")
LOGGER.addHandler(logging.NullHandler())  # a library logs nothing until asked to
LEVEL_ENV = "RECONCILER_DEBUG_LVL"
PATH_ENV = "RECONCILER_LOGPATH"
# Maestro's scale: 1 debug, 2 info (its default), 3 warning, 4 error, 5 critical.
LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR,
          5: logging.CRITICAL}  # fmt: skip
TROUBLE = frozenset({"scheduler-error", "submit-failed", "submit-unconfirmed"})
FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _Event(Protocol):
    kind: str
    instance: str | None
    detail: str


def emit(events: Iterable[_Event]) -> None:
    """Log events (cheap when nobody listens: a cached level check each)."""
    for e in events:
        level = (
            logging.WARNING
            if e.kind in TROUBLE
            else logging.INFO
            if e.instance is None
            else logging.DEBUG
        )
        if LOGGER.isEnabledFor(level):
            who = f"{e.instance}: " if e.instance else ""
            LOGGER.log(level, "%s%s%s", who, e.kind, f" {e.detail}" if e.detail else "")


def configure(debug_lvl: int, logpath: Path | None, *, to_stderr: bool = True) -> None:
    """Log at Maestro's level `debug_lvl` to stderr and, with `logpath`, to that file; the
    same settings reach the engines this process starts (their environment)."""
    level = LEVELS[debug_lvl]
    for h in list(LOGGER.handlers):
        if not isinstance(h, logging.NullHandler):
            LOGGER.removeHandler(h)
            h.close()
    LOGGER.setLevel(level)
    fmt = logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = []
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    if logpath is not None:
        handlers.append(logging.FileHandler(logpath, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        LOGGER.addHandler(h)
    os.environ[LEVEL_ENV] = str(debug_lvl)
    if logpath is not None:
        os.environ[PATH_ENV] = str(logpath.resolve())


def configure_from_env() -> None:
    """A background engine: log as the command that started it was told to (stderr is the
    engine's log file, logs/<study>.log)."""
    raw = os.environ.get(LEVEL_ENV, "")
    if raw.isdigit() and int(raw) in LEVELS:
        path = os.environ.get(PATH_ENV)
        configure(int(raw), Path(path) if path else None)


__all__ = ["LEVELS", "LOGGER", "configure", "configure_from_env", "emit"]
