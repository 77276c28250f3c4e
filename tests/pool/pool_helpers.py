"""Helpers the pool tests import: pooled sweep specs, and reading what ran."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from reconciler.record.store import InstanceRow, Store


def sweep_spec(
    directory: Path,
    n: int,
    *,
    pool: str,
    cmd: str = "sleep 0",
    batch: str = "type: local",
    extra_steps: str = "",
) -> Path:
    """A spec with `n` instances of `sim` (each logs `start X` / `end X` to count.txt) on the pool,
    and a funnel `total` after them (not pooled)."""
    values = ", ".join(str(i) for i in range(1, n + 1))
    text = f"""description: {{name: pooled, description: pool test}}
batch:
  {batch}
  pool:
{_indent(pool, 4)}
global.parameters:
  X: {{values: [{values}], label: X.%%}}
study:
  - name: sim
    description: one small task
    run:
      cmd: |
        echo start $(X) >> $(SPECROOT)/count.txt
        {cmd}
        echo end $(X) >> $(SPECROOT)/count.txt
  - name: total
    description: funnel
    run:
      cmd: grep -c ^end $(SPECROOT)/count.txt
      depends: [sim_*]
{extra_steps}"""
    spec = directory / "spec.yaml"
    spec.write_text(text)
    return spec


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.strip().splitlines())


def counts(directory: Path) -> dict[str, int]:
    """How many times each `start X` / `end X` line was written."""
    out: dict[str, int] = {}
    path = directory / "count.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        out[line] = out.get(line, 0) + 1
    return out


def rows(root: Path) -> dict[str, InstanceRow]:
    store = Store.open(root)
    try:
        return {r.name: r for r in store.instances()}
    finally:
        store.close()


def events(root: Path, kind: str) -> list[tuple[str | None, str]]:
    import sqlite3

    db = sqlite3.connect(root / ".reconciler" / "record.db")
    try:
        return list(
            db.execute("SELECT instance, detail FROM event WHERE kind = ? ORDER BY id", (kind,))
        )
    finally:
        db.close()


def reconciler(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def pool_state(root: Path) -> dict | None:
    try:
        return json.loads((root / ".reconciler" / "pool.json").read_text())
    except (OSError, ValueError):
        return None


def wait_for(cond: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
