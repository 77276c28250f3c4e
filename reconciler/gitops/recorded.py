"""A study's record as the GitOps layer reads it: one study's damaged record is that study's
problem, never an exception that stops the others.

A record that cannot be read (truncated, damaged, on a filesystem SQLite cannot open) comes back
as a one-line `error`; a record of another study, or none, as no record at all. The instances
the record says FINISHED but whose directory is gone (drift) are listed here, so the plan gets
them as an input and stays pure.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.plan.actions import Recorded
from reconciler.plan.states import State
from reconciler.record.store import InstanceRow, RecordError, Store, is_workspace


@dataclass
class View:
    record: dict[str, Any] | None = None  # the study row; None: no record of this study here
    recorded: dict[str, Recorded] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # instances by state
    missing: list[str] = field(default_factory=list)  # FINISHED, directory gone
    error: str | None = None  # why the record cannot be read (one line)


def one_line(error: BaseException | str) -> str:
    """An error as one line (SQLite and OS errors sometimes carry newlines)."""
    return " ".join(str(error).split())


def read(ws: Path, name: str | None = None) -> View:
    """The record in `ws` if it is study `name`'s (any study's when `name` is None)."""
    try:
        if not is_workspace(ws):
            return View()
        store = Store.open(ws)
        try:
            study = store.study()
            if name is not None and study["name"] != name:
                return View()
            rows = store.instances()
        finally:
            store.close()
        missing = [r.name for r in rows if r.state is State.FINISHED and _gone(ws, r)]
    except RecordError as e:
        return View(error=one_line(e))
    except (sqlite3.Error, OSError, ValueError) as e:  # ValueError: a row JSON cannot decode
        return View(error=f"{ws}: the record cannot be read ({one_line(e)}); nothing was changed")
    recorded = {
        r.name: Recorded(r.name, r.step, r.fingerprint, State(r.state), r.attempts, r.depends)
        for r in rows
    }
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r.state)] = counts.get(str(r.state), 0) + 1
    return View(study, recorded, counts, missing)


def _gone(ws: Path, row: InstanceRow) -> bool:
    return not (ws / row.workspace).is_dir()


def counts(ws: Path) -> dict[str, int]:
    """Instances by state now ({} when the record cannot be read)."""
    try:
        store = Store.open(ws)
    except (RecordError, sqlite3.Error, OSError):
        return {}
    try:
        return store.counts()
    except sqlite3.Error:
        return {}
    finally:
        store.close()


__all__ = ["View", "counts", "one_line", "read"]
