"""Take an existing workspace to a new desired study, as a plan says (GitOps `apply`).

Runs while holding the engine lock, so no engine changes the record underneath. Running jobs
are left alone (their scripts are never rewritten); what reruns has its previous outputs moved
to `.reconciler/history/<time>/<workspace>`, never deleted. The engine started afterwards
re-reads everything (level-triggered), so an apply interrupted halfway is finished by the next.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from reconciler.engine.setup import (
    RunSettings,
    instance_row,
    render_scripts,
    write_instance_scripts,
    write_study_files,
)
from reconciler.plan.actions import Kind, Plan
from reconciler.plan.states import State
from reconciler.record import workspace as wsmod
from reconciler.record.store import Store
from reconciler.record.workspace import Workspace
from reconciler.schedulers import get_adapter
from reconciler.spec.instance import Study

HISTORY = Path(".reconciler") / "history"


@dataclass(frozen=True)
class Applied:
    """What an apply did, by action kind (for provenance and messages)."""

    counts: dict[str, int]
    archived: list[str]


def reshape(
    root: Path,
    study: Study,
    plan: Plan,
    *,
    spec_text: str,
    locations: Mapping[str, str],
    revision: dict[str, str | None],
    dependency_shas: Mapping[str, str],
) -> Applied:
    """Apply `plan` to the workspace at `root`. The caller holds the engine lock."""
    ws = Workspace(root)
    store = Store.open(root)
    try:
        rows = {r.name: r for r in store.instances()}
        adapter = get_adapter(study.batch.type, root, batch=study.batch, study=study.name)
        fresh = {a.instance for a in plan.actions if a.kind in (Kind.CREATE, Kind.RERUN)}
        placed = render_scripts(study, locations, adapter, only=fresh)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        archived: list[str] = []
        for a in plan.by_kind(Kind.RERUN):
            row = rows.get(a.instance)
            if row is not None and _archive(root, row.workspace, stamp):
                archived.append(row.workspace)
        gone = [a.instance for a in plan.actions if a.kind in (Kind.RERUN, Kind.PRUNE)]
        store.remove_instances(gone, detail="apply")
        if plan.prune_outputs:
            for a in plan.by_kind(Kind.PRUNE):
                row = rows[a.instance]
                _remove_outputs(root, row.workspace)
        order = {inst.name: i for i, inst in enumerate(study.instances)}
        write_instance_scripts(ws, placed)
        store.add_instances(instance_row(p, order[p.instance.name]) for p in placed)
        changes: dict[str, dict[str, object]] = {}
        for a in plan.by_kind(Kind.RETRY):
            changes[a.instance] = {"state": State.INITIALIZED, "not_before": None,
                                   "use_restart": 0}  # fmt: skip
        for a in plan.by_kind(Kind.CANCEL):
            changes[a.instance] = {"cancel": 1}  # the engine kills it and marks it CANCELLED
        store.apply(changes)
        # meta/ and batch.info describe the whole desired study, kept instances included
        everything = render_scripts(study, locations, adapter)
        write_study_files(study, ws, everything, spec_text, RunSettings())
        store.update_study(
            spec_text=spec_text,
            adapter=adapter.name,
            shell=study.batch.shell,
            locations=_json(locations),
            dependency_shas=_json(dependency_shas),
            attempts=study.reconcile.retries + 1,
            backoff=study.reconcile.backoff,
            throttle=study.reconcile.throttle,
            last_error=None,
            **revision,
        )
        wsmod.write_status_csv(ws, store.instances())
        return Applied(plan.counts(), archived)
    finally:
        store.close()


def _json(data: Mapping[str, str]) -> str:
    return json.dumps(dict(data), sort_keys=True)


def _inside(root: Path, workspace: str) -> Path | None:
    """The instance directory, if it really is one inside the root (never through a link)."""
    path = root / workspace
    here = root
    for part in Path(workspace).parts:
        here = here / part
        if here.is_symlink():
            return None
    return path if path.is_dir() else None


def _archive(root: Path, workspace: str, stamp: str) -> bool:
    """Move an instance's previous outputs into the history (a rename: nothing is copied)."""
    src = _inside(root, workspace)
    if src is None or not any(src.iterdir()):
        return False
    dest = root / HISTORY / stamp / workspace
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # two applies in one second: keep both
        dest = dest.with_name(f"{dest.name}.{time.monotonic_ns()}")
    src.rename(dest)
    return True


def _remove_outputs(root: Path, workspace: str) -> None:
    path = _inside(root, workspace)
    if path is not None:
        shutil.rmtree(path)
