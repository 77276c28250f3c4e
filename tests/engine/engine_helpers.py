"""Helpers the engine tests import (a module of its own: `conftest` names clash across folders)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from reconciler.record.store import InstanceRow, Store


def rows(root: Path) -> dict[str, InstanceRow]:
    store = Store.open(root)
    try:
        return {r.name: r for r in store.instances()}
    finally:
        store.close()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)
