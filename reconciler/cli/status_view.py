"""Rendering of `status`: Maestro's columns as a rich table, a summary by state, and JSON."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from reconciler.engine.api import engine_holder
from reconciler.plan.states import IN_FLIGHT, State
from reconciler.record.store import InstanceRow, RecordError, Store
from reconciler.record.workspace import STATUS_COLUMNS, status_row
from reconciler.schedulers.pool import read_state

JSON_KEYS = (
    "name",
    "step",
    "workspace",
    "state",
    "job_id",
    "attempts",
    "exit_code",
    "submit_time",
    "start_time",
    "end_time",
    "params",
)
STATE_STYLE = {
    State.FINISHED: "green",
    State.RUNNING: "cyan",
    State.PENDING: "blue",
    State.QUEUED: "blue",
    State.FAILED: "red",
    State.TIMEDOUT: "red",
    State.HWFAILURE: "red",
    State.LOST: "red",
    State.BLOCKED: "yellow",
    State.CANCELLED: "magenta",
    State.INITIALIZED: "dim",
}


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t).isoformat(timespec="seconds")


def instance_json(r: InstanceRow) -> dict[str, Any]:
    return {
        "name": r.name,
        "step": r.step,
        "workspace": r.workspace,
        "state": str(r.state),
        "job_id": r.job_id,
        "attempts": r.attempts,
        "exit_code": r.exit_code,
        "submit_time": _iso(r.submit_time),
        "start_time": _iso(r.start_time),
        "end_time": _iso(r.end_time),
        "params": r.params,
    }


def read_rows(root: Path) -> tuple[dict[str, Any], list[InstanceRow]]:
    """(study row, instance rows) of a workspace. Raises RecordError."""
    store = Store.open(root)
    try:
        return store.study(), store.instances()
    finally:
        store.close()


def summary(rows: list[InstanceRow]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    order = list(State)
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    return f"{len(rows)} instances: " + (", ".join(parts) if parts else "none")


def engine_line(root: Path, rows: list[InstanceRow]) -> str:
    holder = engine_holder(root)
    if holder is not None:
        return f"engine running (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"
    if any(r.state in IN_FLIGHT or r.state is State.INITIALIZED for r in rows):
        return "no engine running: `reconciler resume` carries the study on"
    return "study ended"


def table(root: Path, study: dict[str, Any], rows: list[InstanceRow]) -> Table:
    t = Table(title=f"{study['name']} — {root}", title_justify="left", show_lines=False)
    for col in STATUS_COLUMNS:
        t.add_column(col, overflow="fold", no_wrap=col not in ("Params", "Workspace"))
    now = time.time()
    for r in rows:
        cells = status_row(r, now)
        cells[3] = Text(cells[3], style=STATE_STYLE.get(r.state, ""))  # type: ignore[call-overload]
        t.add_row(*cells)
    return t


PLAIN_OVER = 500  # rows; rich's table layout costs ~1 ms a row, too slow for 10,000


def plain_table(rows: list[InstanceRow]) -> str:
    """Fixed-width columns (Maestro's legacy layout) for big studies."""
    now = time.time()
    cells = [list(STATUS_COLUMNS)] + [status_row(r, now) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(STATUS_COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def active(root: Path) -> bool:
    try:
        _, rows = read_rows(root)
    except RecordError:
        return False
    return engine_holder(root) is not None and any(
        r.state in IN_FLIGHT or r.state is State.INITIALIZED for r in rows
    )


def pool_json(root: Path) -> dict[str, Any] | None:
    """The workspace's running worker pool: address, workers, allocation jobs (None: none)."""
    state = read_state(root)
    if state is None:
        return None
    keys = (
        "address",
        "cluster",
        "max_workers",
        "workers",
        "allocations",
        "tasks",
        "updated",
        "error",
    )
    return {k: state.get(k) for k in keys} | {"waiting": state.get("allocations_waiting", [])}


def pool_table(root: Path) -> Group | None:
    """Pool workers next to the instances: where each runs, how busy, in which allocation."""
    pool = pool_json(root)
    if pool is None:
        return None
    workers = pool["workers"] or []
    busy = sum(w["busy"] for w in workers)
    title = (
        f"Pool workers — {len(workers)} workers, {busy} busy (cap {pool['max_workers']}), "
        f"{pool['tasks']} tasks on {pool['address']}"
    )
    if pool.get("error"):
        title += f"\nno worker could start: {pool['error']}"
    if pool["waiting"]:
        title += f"; allocations waiting to start: {', '.join(pool['waiting'])}"
    t = Table()
    for col in ("Worker", "Host", "Allocation", "Busy", "Assigned", "Resources"):
        t.add_column(col, no_wrap=True)
    for w in workers:
        res = " ".join(f"{k}={v:g}" for k, v in sorted(w.get("resources", {}).items()))
        t.add_row(
            w["name"],
            w["host"],
            w.get("allocation") or "--",
            f"{w['busy']}/{w['threads']}",
            str(w.get("assigned", w["busy"])),
            res,
        )
    return Group(Text(title), t)
