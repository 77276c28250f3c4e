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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.plan.states import State
from reconciler.record.store import InstanceRow

RETRYABLE = frozenset({State.FAILED, State.LOST, State.HWFAILURE})
MAX_WAIT = 86_400.0  # one day: the longest sleep or backoff wait an engine takes


def clamp_seconds(name: str, value: Any, default: float) -> tuple[float, str | None]:
    """A time setting from the record as the engine may use it, and why it was changed.

    The command line and the spec refuse anything else, but a record written by an older
    version (or by hand) may hold `inf`, `nan` or 1e300: time.sleep(inf) raises OverflowError,
    which would stop the engine on every resume. Such a value is clamped, with a warning.
    """
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default, f"{name} {value!r} is not a number of seconds; using {default:g}"
    if math.isnan(seconds):
        return default, f"{name} is NaN; using {default:g}"
    if seconds < 0:
        return 0.0, f"{name} {seconds:g} is negative; using 0"
    if seconds > MAX_WAIT:
        return MAX_WAIT, f"{name} {seconds:g} is more than a day; using {MAX_WAIT:g}"
    return seconds, None


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
            backoff=clamp_seconds("backoff", s.get("backoff", 0.0), 0.0)[0],
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
                # 2.0 ** 63 at most: an int power of 2 past ~1024 overflows a float.
                wait = min(self.backoff * 2.0 ** min(max(0, tries - 1), 63), MAX_WAIT)
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
