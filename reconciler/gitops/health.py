"""A study's health (Argo CD's axis): Healthy, Progressing, Degraded, Suspended or Missing."""

from __future__ import annotations

from reconciler.gitops.reconcile import StudyPlan
from reconciler.plan.states import BLOCKING, IN_FLIGHT, State

FAILING = {str(s) for s in BLOCKING | {State.CANCELLED}}
MOVING = {str(s) for s in IN_FLIGHT | {State.INITIALIZED}}


def health(p: StudyPlan) -> str:
    """Suspended if the spec says so; Degraded if nothing can be applied for it (invalid spec,
    a workspace it may not have, a record that cannot be read) or an instance failed;
    Progressing while anything waits or runs; Missing if it was never applied or a finished
    instance's directory is gone; Degraded when its provenance cannot be written; else
    Healthy."""
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
    if p.missing:
        return "Missing"
    if p.warning is not None:
        return "Degraded"
    return "Healthy"


def missing_outputs(p: StudyPlan) -> list[str]:
    """Instances the record says finished whose workspace directory is gone (drift), as read
    when the study was planned (gitops/recorded.py)."""
    return list(p.missing)
