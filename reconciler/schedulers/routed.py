"""Two adapters behind one: a study's pooled steps go to its pool, the others to `batch.type`.

The engine sees one adapter. Each call is split by the jobs' steps and the answers merged; room
is kept per adapter, so a full pool never holds back the other steps and the other way round.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from reconciler.plan.states import State
from reconciler.schedulers.base import Adapter, Job, Observation
from reconciler.schedulers.pool import PoolAdapter
from reconciler.spec.instance import Resources


class Routed(Adapter):
    def __init__(self, other: Adapter, pool: PoolAdapter) -> None:
        self.other = other
        self.pool = pool
        self.name = other.name  # the record's adapter: what runs the steps not in the pool
        self.poll_interval = other.poll_interval
        if other.poll_interval is None:  # one wait for both: a pool event wakes the other's
            pool.on_event = other.wake
        self._room: dict[bool, int | None] = {False: None, True: None}
        # A polling adapter is asked once per its period, not on every pool event.
        self._period = 0.0
        self._next_poll = 0.0

    def for_step(self, step: str) -> Adapter:
        return self.pool if self.pool.pool.uses(step) else self.other

    def _split(self, jobs: Sequence[Job]) -> tuple[list[Job], list[Job]]:
        pooled = [j for j in jobs if self.pool.pool.uses(j.step)]
        return [j for j in jobs if not self.pool.pool.uses(j.step)], pooled

    # Scripts are rendered through for_step(); these serve callers that ask the study's adapter.
    def render_script(
        self, cmd: str, resources: Resources, *, name: str, shell: str, description: str = ""
    ) -> str:
        return self.other.render_script(
            cmd, resources, name=name, shell=shell, description=description
        )

    def render_launcher(self, text: str, resources: Resources) -> str:
        return self.other.render_launcher(text, resources)

    def prepare(self, root: Path) -> None:
        self.other.prepare(root)
        self.pool.prepare(root)

    def capacity(self) -> int | None:
        self._room = {False: self.other.capacity(), True: self.pool.capacity()}
        if None in self._room.values():
            return None
        return sum(n or 0 for n in self._room.values())

    def submitted(self, step: str) -> State:
        return self.for_step(step).submitted(step)

    def admit(self, step: str) -> bool:
        lane = self.pool.pool.uses(step)
        room = self._room[lane]
        if room is None:
            return True
        if room <= 0:
            return False
        self._room[lane] = room - 1
        return True

    def submit(self, job: Job) -> str:
        return self.for_step(job.step).submit(job)

    def poll(self, jobs: Sequence[Job]) -> dict[str, Observation]:
        other, pooled = self._split(jobs)
        seen: dict[str, Observation] = {}
        now = time.monotonic()
        if other and (self.other.poll_interval is None or now >= self._next_poll):
            seen = self.other.poll(other)
            self._next_poll = now + self._period
        if pooled:
            seen.update(self.pool.poll(pooled))
        return seen

    def cancel(self, jobs: Sequence[Job]) -> None:
        other, pooled = self._split(jobs)
        if other:
            self.other.cancel(other)
        if pooled:
            self.pool.cancel(pooled)

    def find(self, job: Job) -> str | None:
        return self.for_step(job.step).find(job)

    def wait(self, timeout: float) -> bool:
        self._period = timeout
        return (self.other if self.other.poll_interval is None else self.pool).wait(timeout)

    def wake(self) -> None:
        self.other.wake()
        self.pool.wake()

    def close(self) -> None:
        self.pool.close()
        self.other.close()

    def finish(self) -> None:
        self.pool.finish()
        self.other.finish()
