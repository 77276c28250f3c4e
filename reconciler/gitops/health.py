"""A study's health (Argo CD's axis): Healthy, Progressing, Degraded, Suspended or Missing."""

from __future__ import annotations

from reconciler.gitops.reconcile import StudyPlan
from reconciler.plan.states import BLOCKING, IN_FLIGHT, State
from reconciler.record.store import Store, is_workspace

FAILING = {str(s) for s in BLOCKING | {State.CANCELLED}}
MOVING = {str(s) for s in IN_FLIGHT | {State.INITIALIZED}}


def health(p: StudyPlan) -> str:
    """Suspended if the spec says so; Degraded if its spec is invalid at the revision or an
    instance failed; Progressing while anything waits or runs; Missing if it was never applied
    or a finished instance's directory is gone; else Healthy."""
    if p.suspended:
        return "Suspended"
    if p.error is not None:
        return "Degraded"
    if p.record is None:
        return "Missing"
    if FAILING & set(p.counts):
        return "Degraded"
    if MOVING & set(p.counts):
        return "Progressing"
    if missing_outputs(p):
        return "Missing"
    return "Healthy"


def missing_outputs(p: StudyPlan) -> list[str]:
    """Instances the record says finished whose workspace directory is gone (drift)."""
    if not is_workspace(p.workspace):
        return []
    store = Store.open(p.workspace)
    try:
        rows = store.instances()
    finally:
        store.close()
    return [r.name for r in rows
            if r.state == State.FINISHED and not (p.workspace / r.workspace).is_dir()]  # fmt: skip
