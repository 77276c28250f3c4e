"""The watcher's logs: stdlib `logging` to the terminal and to `<repo>/.reconciler/watch.log`.

On a terminal the lines go through rich; otherwise (systemd, a pipe) they are plain text. With
`json_logs` both the terminal and the file get one JSON object per line, for log collectors:
`{"time", "level", "message", "study"?, "revision"?}`. The file keeps everything down to DEBUG
(one line per reconcile pass); the terminal shows INFO and up.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path

from reconciler.spec.printable import printable

LOGGER = "reconciler.watch"
FIELDS = ("study", "revision")  # extras that log calls pass and the JSON lines carry
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 3


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "message": printable(record.getMessage()),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class Printable(logging.Formatter):
    """Lines as the format says, with what came from specs (names, errors) made printable:
    no terminal escapes, no GitHub workflow commands in a CI log (spec/printable.py)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


PLAIN = Printable("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")


def configure(log_file: Path, *, json_logs: bool = False, verbose: bool = False) -> logging.Logger:
    """Set up the watcher's logger (idempotent: earlier handlers are replaced)."""
    log = logging.getLogger(LOGGER)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.setLevel(logging.DEBUG)
    log.propagate = False

    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
    )
    to_file.setFormatter(JsonLines() if json_logs else PLAIN)
    to_file.setLevel(logging.DEBUG)
    log.addHandler(to_file)

    terminal: logging.Handler
    if json_logs or not sys.stderr.isatty():
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setFormatter(JsonLines() if json_logs else PLAIN)
    else:
        from rich.logging import RichHandler

        terminal = RichHandler(show_path=False, markup=False, rich_tracebacks=False)
        terminal.setFormatter(Printable("%(message)s"))
    terminal.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.addHandler(terminal)
    return log


def close() -> None:
    log = logging.getLogger(LOGGER)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
