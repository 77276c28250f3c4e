"""The engine's in-memory view of the record, indexed so a pass costs what changed, not n.

The engine is the only writer of instance rows while it holds the workspace lock; other processes
(`cancel`, `update`) only flag rows and bump settings, and any such write is seen through SQLite's
`data_version` and answered with a full re-read and `rebuild()`. Between those, every change the
engine makes goes through `moved()`, which keeps these indexes exact:

- counts per state (progress, "is the study done"),
- the in-flight rows (what to observe),
- per row, how many parents have not FINISHED (a row is ready when that reaches 0),
- a heap of ready candidates in topological order (what to launch, same order as a full scan),
- the rows waiting on a retry backoff (`not_before`),
- the rows that turned BLOCKING/CANCELLED since the last propagation (what to propagate from).

Indexes are keyed by the row's position in `rows` (topological order), so heaps order like a scan.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from reconciler.plan.states import BLOCKING, IN_FLIGHT, TERMINAL, State
from reconciler.record.store import InstanceRow

_SPREADS = BLOCKING | {State.CANCELLED}  # parent states that end an INITIALIZED child


class View:
    def __init__(self, rows: list[InstanceRow]) -> None:
        self.rows = rows  # topological (ord) order
        self.index = {r.name: i for i, r in enumerate(rows)}
        self.parents: list[list[int]] = [[self.index[p] for p in r.depends] for r in rows]
        self.children: list[list[int]] = [[] for _ in rows]
        for i, ps in enumerate(self.parents):
            for p in ps:
                self.children[p].append(i)
        self.rebuild()

    def rebuild(self) -> None:
        """Recompute every index from the rows (start, and after another process wrote)."""
        rows = self.rows
        self.counts: dict[State, int] = {}
        self.in_flight: dict[int, InstanceRow] = {}
        self.delayed: dict[int, InstanceRow] = {}
        self.unfinished = [0] * len(rows)
        self.ready: list[int] = []
        self.flagged: list[int] = []  # cancel requested, not ended yet
        self.spread: set[int] = set()
        self.full_sweep = True  # propagate over every row once
        for i, r in enumerate(rows):
            self.counts[r.state] = self.counts.get(r.state, 0) + 1
            if r.state in IN_FLIGHT:
                self.in_flight[i] = r
            if r.cancel and r.state not in TERMINAL:
                self.flagged.append(i)
            done = State.FINISHED
            self.unfinished[i] = sum(1 for p in self.parents[i] if rows[p].state is not done)
            self._waiting(i, r)

    def _waiting(self, i: int, r: InstanceRow) -> None:
        """Index an INITIALIZED row: backoff-delayed, or a candidate once its parents are done."""
        if r.state is not State.INITIALIZED:
            self.delayed.pop(i, None)
            return
        if r.not_before is not None:
            self.delayed[i] = r
        else:
            self.delayed.pop(i, None)
        if self.unfinished[i] == 0:
            heapq.heappush(self.ready, i)

    def moved(self, r: InstanceRow, old: State) -> None:
        """`r.state` (or its backoff) changed from `old`: update the indexes."""
        i = self.index[r.name]
        new = r.state
        if new is not old:
            self.counts[old] -= 1
            self.counts[new] = self.counts.get(new, 0) + 1
            if new in IN_FLIGHT:
                self.in_flight[i] = r
            else:
                self.in_flight.pop(i, None)
            if (new is State.FINISHED) != (old is State.FINISHED):
                step = -1 if new is State.FINISHED else 1
                for c in self.children[i]:
                    self.unfinished[c] += step
                    if self.unfinished[c] == 0 and self.rows[c].state is State.INITIALIZED:
                        heapq.heappush(self.ready, c)
            if new in _SPREADS:
                self.spread.add(i)
        self._waiting(i, r)

    def state_counts(self) -> dict[str, int]:
        return {s: n for s, n in self.counts.items() if n}

    def pending(self) -> bool:
        """Anything left to run or to watch."""
        return bool(self.counts.get(State.INITIALIZED, 0) or self.in_flight)

    def take_flagged(self) -> list[InstanceRow]:
        out = [self.rows[i] for i in self.flagged if self.rows[i].state not in TERMINAL]
        self.flagged = []
        return out

    def propagation_order(self) -> Iterator[InstanceRow]:
        """INITIALIZED rows that may have a BLOCKING/CANCELLED parent, in topological order.
        Rows handed out may change state while iterating; their children are then visited too."""
        if self.full_sweep:
            self.full_sweep = False
            self.spread.clear()
            for r in self.rows:  # topological order: one sweep reaches every descendant
                if r.state is State.INITIALIZED:
                    yield r
            self.spread.clear()
            return
        heap: list[int] = []
        seen: set[int] = set()
        while self.spread:
            for s in self.spread:
                for c in self.children[s]:
                    if c not in seen:
                        seen.add(c)
                        heapq.heappush(heap, c)
            self.spread.clear()
            while heap:
                c = heapq.heappop(heap)
                if self.rows[c].state is State.INITIALIZED:
                    yield self.rows[c]
                    for g in self.children[c] if c in self.spread else ():
                        if g not in seen:
                            seen.add(g)
                            heapq.heappush(heap, g)
                    self.spread.discard(c)

    def take_ready(
        self, room: int, now: float, fits: Callable[[InstanceRow], bool] | None = None
    ) -> list[InstanceRow]:
        """Up to `room` launchable rows in topological order (INITIALIZED, all parents FINISHED,
        no cancel request, backoff over). Stale heap entries are dropped as they surface. A row
        `fits` refuses (its adapter is full) stays ready for a later pass."""
        due = [i for i, r in self.delayed.items() if r.not_before is None or r.not_before <= now]
        for i in due:  # backoff over: a plain candidate now (pushed once, not once per pass)
            del self.delayed[i]
            if self.unfinished[i] == 0:
                heapq.heappush(self.ready, i)
        out: list[InstanceRow] = []
        refused: list[int] = []
        last = -1
        while self.ready and len(out) < room:
            i = heapq.heappop(self.ready)
            if i == last:
                continue  # pushed twice
            last = i
            r = self.rows[i]
            if r.state is not State.INITIALIZED or r.cancel or self.unfinished[i]:
                continue
            if r.not_before is not None and r.not_before > now:
                continue  # still in `delayed`: pushed again when due
            if fits is not None and not fits(r):
                refused.append(i)
                continue
            out.append(r)
        for i in refused:
            heapq.heappush(self.ready, i)
        return out

    def next_backoff(self) -> float | None:
        """The earliest `not_before` of an INITIALIZED row, if any."""
        times = [r.not_before for r in self.delayed.values() if r.not_before is not None]
        return min(times) if times else None
