"""One study at one revision: what is desired, what is recorded, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.gitops.repo import SpecFile
from reconciler.plan.actions import Plan
from reconciler.spec import Study


@dataclass
class StudyPlan:
    """One study at one revision: what is desired, what is recorded, and what to do."""

    name: str
    workspace: Path | None  # None: no place can be told (a spec too broken to name its study)
    spec: SpecFile | None  # None: the spec is gone from the revision
    study: Study | None = None
    plan: Plan | None = None
    error: str | None = None  # why nothing is applied for this study
    shas: dict[str, str] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # the study row, when its workspace has a record
    counts: dict[str, int] = field(default_factory=dict)  # instances by state
    missing: list[str] = field(default_factory=list)  # finished, directory gone (drift)
    warning: str | None = None  # trouble that does not stop an apply (one line)

    @property
    def sync(self) -> str:
        if self.error is not None or self.plan is None:
            return "Unknown" if self.record is None else "OutOfSync"
        return self.plan.sync

    @property
    def suspended(self) -> bool:
        return self.study is not None and self.study.reconcile.suspend


__all__ = ["StudyPlan"]
