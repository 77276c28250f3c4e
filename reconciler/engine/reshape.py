"""Plan an existing workspace against a new desired study, and take it there (GitOps `apply`,
and `run` on a workspace whose spec changed: one code path for both).

`plan_for` compares a workspace's record (its applied spec, dependency pins and instance
fingerprints, as the caller read them) with the desired study: `plan.make_plan`, with the
reasons of `plan.diff`. `reshape` applies the plan while holding the engine lock (`held`), so
no engine changes the record underneath.
Running jobs are left alone (their scripts are never rewritten); what reruns has its previous
outputs moved to `.reconciler/history/<time>/<workspace>`, never deleted. The engine started
afterwards re-reads everything (level-triggered), so an apply interrupted halfway is finished by
the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler import wsfile
from reconciler.engine import api
from reconciler.engine.lock import EngineLock, LockHeld
from reconciler.engine.setup import (
    RunSettings,
    dependencies,
    instance_row,
    render_scripts,
    write_instance_scripts,
    write_study_files,
)
from reconciler.plan.actions import Kind, Plan, Recorded, make_plan
from reconciler.plan.diff import spec_changes
from reconciler.plan.states import State
from reconciler.record import workspace as wsmod
from reconciler.record.store import Store
from reconciler.record.workspace import Workspace
from reconciler.schedulers import get_adapter
from reconciler.spec.diagnostics import Collector
from reconciler.spec.instance import Study
from reconciler.spec.load import load_text
from reconciler.spec.model import Spec

HISTORY = Path(".reconciler") / "history"
STOP_WAIT = 30.0  # seconds to wait for a running engine to let go of a study


# -- planning --------------------------------------------------------------------------------


def applied_spec(record: Mapping[str, Any] | None) -> Spec | None:
    """The spec the workspace was last applied with (None if it cannot be read any more)."""
    if record is None:
        return None
    # Only the model is compared (deepdiff): no need to expand the old study again.
    loaded = load_text(record["spec_text"], "applied.yaml", Collector("applied.yaml"))
    return loaded.spec if loaded is not None else None


def plan_for(
    study: Study,
    record: Mapping[str, Any] | None,
    recorded: Mapping[str, Recorded],
    shas: Mapping[str, str],
    *,
    tries: int,
    missing: Collection[str] = (),
    heal: bool = False,
) -> Plan:
    """What takes the recorded workspace to `study` (pinned to `shas`), with a reason each:
    the applied spec and pins against the desired ones (plan.diff), instances by fingerprint
    (plan.make_plan; `missing`, `heal`: drift, see there)."""
    old_shas = (record or {}).get("dependency_shas") or {}
    changes = spec_changes(applied_spec(record), study.spec, old_shas, shas)
    return make_plan(study, recorded, changes, tries=tries, missing=missing, heal=heal)


@contextmanager
def held(root: Path, wait: float = STOP_WAIT) -> Iterator[None]:
    """Hold the study's engine lock, asking a running engine on this host to step aside.

    The engine is crash-safe by design (jobs run in their own sessions, state is recorded before
    every action), so stopping it with SIGTERM loses nothing; the caller starts one afterwards.
    """
    holder = api.engine_holder(root)
    if holder is not None and holder.get("pid") and holder.get("host") == os.uname().nodename:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(holder["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + wait
    while True:
        try:
            lock = EngineLock(Workspace(root).lock_file).acquire()
            break
        except LockHeld:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield
    finally:
        lock.release()


# -- applying --------------------------------------------------------------------------------


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
    settings: Mapping[str, Any] | None = None,
    run_settings: RunSettings | None = None,
) -> Applied:
    """Apply `plan` to the workspace at `root`. The caller holds the engine lock.

    `settings` (throttle, attempts, backoff, ...) default to the spec's `reconcile:` block, as
    GitOps applies them; `run` passes its command line's. `run_settings` feed `meta/` (hashws,
    pgen) as at set-up.
    """
    if settings is None:
        settings = {
            "attempts": study.reconcile.retries + 1,
            "backoff": study.reconcile.backoff,
            "throttle": study.reconcile.throttle,
        }
    store = Store.open(root)
    try:
        scripts = store.study()["scripts_dir"]
        ws = Workspace(root, Path(scripts) if scripts else None, study.batch.type)
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
        write_study_files(study, ws, everything, spec_text, run_settings or RunSettings(),
                          dependencies(study, dependency_shas, locations))  # fmt: skip
        store.update_study(
            spec_text=spec_text,
            adapter=adapter.name,
            shell=study.batch.shell,
            locations=_json(locations),
            dependency_shas=_json(dependency_shas),
            last_error=None,
            **settings,
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
    wsfile.mkdirs(root, dest.parent.relative_to(root))  # real directories, never a planted link
    if os.path.lexists(dest):  # two applies in one second: keep both
        dest = dest.with_name(f"{dest.name}.{time.monotonic_ns()}")
    src.rename(dest)
    return True


def _remove_outputs(root: Path, workspace: str) -> None:
    path = _inside(root, workspace)
    if path is not None:
        shutil.rmtree(path)
