"""Retry, restart and throttle: what happens after an instance's job ends, and how many may start.

- retry: FAILED, LOST and HWFAILURE go back to submission while tries remain. Tries per instance =
  max(`--attempts`, spec `reconcile.retries` + 1); the wait before try k+1 is
  `backoff * 2**(k-1)` seconds (spec `reconcile.backoff`, default 0).
- restart: TIMEDOUT with a `restart:` script is resubmitted with that script while
  `restarts < rlimit` (0 = unlimited, Maestro's convention). Without one it stays TIMEDOUT.
- throttle: at most `throttle` instances in flight (0 = no limit), and never more than the
  adapter's own capacity (the local adapter's slots).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.plan.states import State
from reconciler.record.store import InstanceRow

RETRYABLE = frozenset({State.FAILED, State.LOST, State.HWFAILURE})


@dataclass(frozen=True, slots=True)
class Policy:
    attempts: int = 1
    backoff: float = 0.0
    rlimit: int = 1
    throttle: int = 0

    @classmethod
    def from_settings(cls, s: Mapping[str, Any]) -> Policy:
        return cls(
            attempts=max(1, int(s.get("attempts", 1))),
            backoff=max(0.0, float(s.get("backoff", 0.0))),
            rlimit=max(0, int(s.get("rlimit", 1))),
            throttle=max(0, int(s.get("throttle", 0))),
        )

    def after_end(self, row: InstanceRow, ended: State, now: float) -> tuple[dict[str, Any], str]:
        """Record changes for an instance whose job just ended, and the event kind."""
        if (
            ended is State.TIMEDOUT
            and row.has_restart
            and (self.rlimit == 0 or row.restarts < self.rlimit)
        ):
            return {
                "state": State.INITIALIZED,
                "use_restart": 1,
                "restarts": row.restarts + 1,
                "not_before": None,
            }, "restart"
        if ended in RETRYABLE:
            tries = row.attempts - row.restarts
            if tries < self.attempts:
                wait = self.backoff * 2 ** max(0, tries - 1)
                return {
                    "state": State.INITIALIZED,
                    "use_restart": 0,
                    "not_before": now + wait if wait else None,
                }, "retry"
        return {"state": ended}, "ended"

    def launchable(self, in_flight: int, capacity: int | None) -> int:
        """How many ready instances may be submitted now."""
        n = capacity if capacity is not None else 1 << 30
        if self.throttle > 0:
            n = min(n, self.throttle - in_flight)
        return max(0, n)
