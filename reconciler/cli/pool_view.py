"""The worker pool beside a study's instances: `status --pool` and the pool table of `status`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from reconciler.schedulers.pool import read_state


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
