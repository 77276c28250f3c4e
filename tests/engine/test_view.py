"""The engine's incremental index picks exactly what a full scan of the rows would pick."""

from __future__ import annotations

import random

import pytest

from reconciler.engine.view import View
from reconciler.plan.states import BLOCKING, IN_FLIGHT, State
from reconciler.record.store import InstanceRow


def _dag(rng: random.Random, n: int) -> list[InstanceRow]:
    rows = []
    for i in range(n):
        parents = rng.sample(range(i), k=min(i, rng.randint(0, 3)))
        deps = tuple(f"r{p}" for p in sorted(parents))
        rows.append(
            InstanceRow(
                name=f"r{i}", step="s", workspace=f"s/{i}", depends=deps, fingerprint="f", ord=i
            )
        )
    return rows


def _scan_ready(rows: list[InstanceRow], now: float) -> list[InstanceRow]:
    by = {r.name: r for r in rows}
    return [
        r
        for r in rows
        if r.state is State.INITIALIZED
        and not r.cancel
        and (r.not_before is None or r.not_before <= now)
        and all(by[p].state is State.FINISHED for p in r.depends)
    ]


def _move(view: View, r: InstanceRow, **cols: object) -> None:
    old = r.state
    for k, v in cols.items():
        setattr(r, k, v)
    view.moved(r, old)


def _propagate(view: View) -> None:  # the engine's rule, driven by the view's order
    by = {r.name: r for r in view.rows}
    for r in view.propagation_order():
        parents = [by[p] for p in r.depends]
        if any(p.state in BLOCKING for p in parents):
            _move(view, r, state=State.BLOCKED)
        elif any(p.state is State.CANCELLED for p in parents):
            _move(view, r, state=State.CANCELLED)


def _scan_blocked(rows: list[InstanceRow]) -> bool:
    """True if a full sweep would still block or cancel something."""
    by = {r.name: r for r in rows}
    return any(
        r.state is State.INITIALIZED
        and any(by[p].state in BLOCKING | {State.CANCELLED} for p in r.depends)
        for r in rows
    )


@pytest.mark.parametrize("seed", range(40))
def test_incremental_view_matches_full_scans(seed: int) -> None:
    rng = random.Random(seed)
    rows = _dag(rng, rng.randint(5, 60))
    view = View(rows)
    now = 1000.0
    for _ in range(400):
        _propagate(view)
        assert not _scan_blocked(rows)
        room = rng.randint(0, 4)
        expected = _scan_ready(rows, now)[:room]
        assert view.take_ready(room, now) == expected
        for r in expected:
            _move(view, r, state=State.RUNNING, not_before=None)
        running = [r for r in rows if r.state in IN_FLIGHT]
        assert sorted(view.in_flight) == [rows.index(r) for r in running]
        if running and rng.random() < 0.7:
            r = rng.choice(running)
            end = rng.choices(
                [State.FINISHED, State.FAILED, State.CANCELLED, State.INITIALIZED],
                weights=[8, 1, 1, 1],
            )[0]
            backoff = now + rng.choice([0.0, 5.0]) if end is State.INITIALIZED else None
            _move(view, r, state=end, not_before=backoff or None)
        now += 1.0
        counts = {}
        for r in rows:
            counts[r.state] = counts.get(r.state, 0) + 1
        assert view.state_counts() == counts
        if not view.pending():
            break
