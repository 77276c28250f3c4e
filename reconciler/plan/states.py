"""Instance states (design.md): Maestro's names plus BLOCKED and LOST.

Shared by the record, the adapters and the engine, so it lives in the lowest layer that does no IO.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    INITIALIZED = "INITIALIZED"  # waiting on dependencies (or on a retry's backoff)
    PENDING = "PENDING"  # submit intended / submitted, not yet seen by the scheduler
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    TIMEDOUT = "TIMEDOUT"
    CANCELLED = "CANCELLED"
    HWFAILURE = "HWFAILURE"
    BLOCKED = "BLOCKED"  # an upstream instance failed; not run
    LOST = "LOST"  # the scheduler no longer knows the job and it left no exit code


IN_FLIGHT = frozenset({State.PENDING, State.QUEUED, State.RUNNING})
# States an observation may end in; the policies decide whether they stay final.
ENDED = frozenset(
    {State.FINISHED, State.FAILED, State.TIMEDOUT, State.CANCELLED, State.HWFAILURE, State.LOST}
)
# Once recorded, the engine never moves these (only a new plan/rerun does).
TERMINAL = ENDED | {State.BLOCKED}
# Upstream states that mean a child can never run in this study.
BLOCKING = frozenset({State.FAILED, State.TIMEDOUT, State.HWFAILURE, State.LOST, State.BLOCKED})
