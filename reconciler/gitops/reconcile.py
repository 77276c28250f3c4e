"""Plan and apply a revision of a repo of specs: every study's workspace converges to it.

Desired state: the specs at a revision. Recorded state: each study's workspace record under
the studies root (`<repo>/.reconciler/studies/<study>` unless `reconcile.workspace` says
otherwise). A study whose spec is invalid at the revision is left exactly as it was (Degraded,
with the error recorded); one whose spec disappeared has its in-flight instances cancelled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.engine import api
from reconciler.engine.lock import EngineLock, LockHeld
from reconciler.engine.reshape import reshape
from reconciler.engine.setup import RunSettings, SetupError, create_workspace
from reconciler.gitops import deps, provenance
from reconciler.gitops.repo import SpecFile, SpecSource, ensure_excluded
from reconciler.plan.actions import Action, Kind, Plan, Recorded, make_plan
from reconciler.plan.diff import spec_changes
from reconciler.plan.states import IN_FLIGHT, State
from reconciler.record.store import Store, is_workspace
from reconciler.record.workspace import Workspace
from reconciler.spec import SpecError, Study, load_study_text
from reconciler.spec.diagnostics import Collector
from reconciler.spec.load import load_text

STATE_DIR = Path(".reconciler")
STOP_WAIT = 30.0  # seconds an apply waits for a running engine to let go of a study


@dataclass
class StudyPlan:
    """One study at one revision: what is desired, what is recorded, and what to do."""

    name: str
    workspace: Path
    spec: SpecFile | None  # None: the spec is gone from the revision
    study: Study | None = None
    plan: Plan | None = None
    error: str | None = None
    shas: dict[str, str] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # the study row, when the workspace exists
    counts: dict[str, int] = field(default_factory=dict)  # instances by state

    @property
    def sync(self) -> str:
        if self.error is not None or self.plan is None:
            return "Unknown" if self.record is None else "OutOfSync"
        return self.plan.sync

    @property
    def suspended(self) -> bool:
        return self.study is not None and self.study.reconcile.suspend


class Reconciler:
    """A repo of specs and the root its study workspaces live under."""

    def __init__(
        self,
        repo: str | os.PathLike[str] = ".",
        *,
        specs: str = "specs",
        root: str | os.PathLike[str] | None = None,
        worktree: bool = False,
    ) -> None:
        self.source = SpecSource(repo, specs_dir=specs, worktree=worktree)
        top = self.source.root
        self.root = Path(root) if root is not None else top / STATE_DIR / "studies"
        if not self.root.is_absolute():
            self.root = (Path.cwd() / self.root).resolve()
        self.cache = top / STATE_DIR / "cache"

    # -- planning --------------------------------------------------------------------------

    def plan(self, revision: str | None = None) -> tuple[str | None, list[StudyPlan]]:
        """Every study of the revision (and every recorded one no longer in it), planned."""
        rev = self.source.read(revision)
        plans = [self._plan_one(f, rev.sha) for f in rev.specs]
        named = {p.name for p in plans}
        if self.root.is_dir():
            for ws in sorted(self.root.iterdir()):
                if ws.name not in named and is_workspace(ws):
                    plans.append(self._plan_gone(ws))
        return rev.sha, plans

    def workspace_of(self, name: str, study: Study | None) -> Path:
        custom = study.reconcile.workspace if study is not None else None
        if custom:
            path = Path(custom)
            return path if path.is_absolute() else self.source.root / path
        return self.root / name

    def _plan_one(self, f: SpecFile, sha: str | None) -> StudyPlan:
        name = f.name or Path(f.path).stem
        sp = StudyPlan(name, self.workspace_of(name, f.study), f)
        sp.record, recorded = _read_record(sp.workspace)
        sp.counts = _counts(recorded)
        if f.error is not None or f.study is None:
            sp.error = str(f.error) if f.error else f"{f.path}: cannot be read"
            return sp
        try:
            sp.shas = deps.resolve_git_dependencies(f.study, self.cache)
            study = f.load(sp.shas) if sp.shas else f.study  # pins change fingerprints
        except (deps.DependencyError, SpecError) as e:
            sp.error = str(e)
            return sp
        sp.study = study
        applied = _applied_spec(sp.record)
        old_shas = (sp.record or {}).get("dependency_shas") or {}
        changes = spec_changes(applied, study.spec, old_shas, sp.shas)
        sp.plan = make_plan(study, recorded, changes, tries=study.reconcile.retries + 1)
        return sp

    def _plan_gone(self, ws: Path) -> StudyPlan:
        record, recorded = _read_record(ws)
        name = (record or {}).get("name", ws.name)
        sp = StudyPlan(name, ws, None, record=record, counts=_counts(recorded))
        plan = Plan(name)
        for r in recorded.values():
            kind = Kind.CANCEL if r.state in IN_FLIGHT | {State.INITIALIZED} else Kind.KEEP
            plan.actions.append(Action(kind, r.name, r.step, "spec removed from the repo"))
        sp.plan = plan
        return sp

    # -- applying --------------------------------------------------------------------------

    def apply(self, sp: StudyPlan, sha: str | None, *, wait: bool = False) -> str:
        """Converge one study to the revision; returns a one-line outcome for people."""
        rev = sha or "worktree"
        self.settle(sp)  # an earlier apply's study that ended since: record it first
        if not self.source.repo.bare:  # outputs must never end up committed
            ensure_excluded(self.source.repo, f"/{STATE_DIR}/")
        if sp.spec is None:  # the spec is gone: cancel what still runs, keep the rest
            cancels = [a.instance for a in sp.plan.by_kind(Kind.CANCEL)] if sp.plan else []
            if cancels:
                with _held(sp.workspace):
                    store = Store.open(sp.workspace)
                    store.apply({n: {"cancel": 1} for n in cancels})
                    store.close()
                self._start(sp.workspace, wait)
            return f"spec removed: {len(cancels)} in-flight instances cancelled"
        if sp.error is not None or sp.study is None:
            self.refuse(sp, rev, sp.error or "invalid spec")
            return f"not applied: {sp.error}"
        if sp.suspended:
            return "suspended (reconcile.suspend): nothing submitted"
        study, text = sp.study, sp.spec.text or ""
        specroot = self.source.root / Path(sp.spec.path).parent
        try:
            locations = self._locations(study, sp, specroot, text)
        except (deps.DependencyError, SetupError) as e:
            self.refuse(sp, rev, str(e))
            return f"not applied: {e}"
        revision = {"last_attempted_revision": rev, "last_applied_revision": rev,
                    "spec_blob": sp.spec.blob}  # fmt: skip
        if sp.record is not None and sp.plan is not None and not sp.plan.changes:
            # Only the revision moved (another study's commit): record it, leave the engine be.
            store = Store.open(sp.workspace)
            store.update_study(control=False, last_error=None, spec_text=text,
                               dependency_shas=json.dumps(sp.shas, sort_keys=True),
                               **revision)  # fmt: skip
        elif sp.record is None:
            create_workspace(
                study, sp.workspace, RunSettings(throttle=study.reconcile.throttle),
                cwd=self.source.root, spec_text=text, locations=locations,
            )  # fmt: skip
            store = Store.open(sp.workspace)
            store.update_study(dependency_shas=json.dumps(sp.shas, sort_keys=True), **revision)
        else:
            assert sp.plan is not None
            with _held(sp.workspace):
                reshape(sp.workspace, study, sp.plan, spec_text=text, locations=locations,
                        revision=revision, dependency_shas=sp.shas)  # fmt: skip
            store = Store.open(sp.workspace)
        store.add_revision(rev, applied=True, detail=json.dumps(
            sp.plan.counts() if sp.plan else {}, sort_keys=True))  # fmt: skip
        store.close()
        provenance_note(self.source, sp.workspace, study, sha, sp.spec.blob, sp.shas, "applied")
        self._start(sp.workspace, wait)
        if wait:
            sp.record = {}  # it exists now
            self.settle(sp)
        return "applied"

    def settle(self, sp: StudyPlan) -> bool:
        """If the study ended since its last apply, record that once: the revision's outcome and
        a provenance note on the applied commit. True when something was recorded."""
        if sp.record is None or api.engine_holder(sp.workspace) is not None:
            return False
        store = Store.open(sp.workspace)
        try:
            revs = [r for r in store.revisions() if r["applied"]]
            counts = store.counts()
            if not revs or revs[-1]["ended"] is not None:
                return False
            if set(counts) & {str(s) for s in IN_FLIGHT | {State.INITIALIZED}}:
                return False
            store.end_revision(counts)
            record = store.study()
        finally:
            store.close()
        rev = revs[-1]["revision"]
        if rev == "worktree":
            return True
        try:
            applied = load_study_text(
                record["spec_text"], sp.spec.path if sp.spec else f"{sp.name}.yaml",
                dependency_shas=record["dependency_shas"],
            )  # fmt: skip
        except SpecError:
            return True
        provenance_note(self.source, sp.workspace, applied, rev, record["spec_blob"] or "",
                        record["dependency_shas"], "ended")  # fmt: skip
        return True

    def _locations(self, study: Study, sp: StudyPlan, specroot: Path, text: str) -> dict[str, str]:
        locations = {"OUTPUT_PATH": str(sp.workspace), "SPECROOT": str(specroot)}
        found = deps.check_paths(study, specroot, text=text, locations=locations)
        locations.update({k: str(v) for k, v in found.items()})
        got = deps.acquire_git_dependencies(study, sp.shas, self.cache, locations)
        locations.update({k: str(a.path) for k, a in got.items()})
        return locations

    def refuse(self, sp: StudyPlan, rev: str, error: str) -> None:
        """An invalid revision changes nothing but the record of having tried it."""
        if sp.record is None:
            return
        store = Store.open(sp.workspace)
        try:
            store.update_study(control=False, last_attempted_revision=rev, last_error=error)
            store.add_revision(rev, applied=False, detail=error)
        finally:
            store.close()

    def _start(self, ws: Path, wait: bool) -> None:
        if api.engine_holder(ws) is not None:
            return  # an engine that kept running re-reads the record on its own
        if wait:
            api.run_engine(ws)
        else:
            api.start_background(ws)


# -- helpers ---------------------------------------------------------------------------------


def _read_record(ws: Path) -> tuple[dict[str, Any] | None, dict[str, Recorded]]:
    if not is_workspace(ws):
        return None, {}
    store = Store.open(ws)
    try:
        rows = {
            r.name: Recorded(r.name, r.step, r.fingerprint, State(r.state), r.attempts, r.depends)
            for r in store.instances()
        }
        return store.study(), rows
    finally:
        store.close()


def _applied_spec(record: dict[str, Any] | None) -> Any:
    """The spec the workspace was last applied with (None if it cannot be read any more)."""
    if record is None:
        return None
    # Only the model is compared (deepdiff): no need to expand the old study again.
    loaded = load_text(record["spec_text"], "applied.yaml", Collector("applied.yaml"))
    return loaded.spec if loaded is not None else None


def _counts(recorded: dict[str, Recorded]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in recorded.values():
        out[str(r.state)] = out.get(str(r.state), 0) + 1
    return out


@contextmanager
def _held(ws: Path) -> Iterator[None]:
    """Hold the study's engine lock, asking a running engine on this host to step aside.

    The engine is crash-safe by design (jobs run in their own sessions, state is recorded before
    every action), so stopping it with SIGTERM loses nothing; it is restarted after the apply.
    """
    holder = api.engine_holder(ws)
    if holder is not None and holder.get("pid") and holder.get("host") == os.uname().nodename:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(holder["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    while True:
        try:
            lock = EngineLock(Workspace(ws).lock_file).acquire()
            break
        except LockHeld:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield
    finally:
        lock.release()


def provenance_note(
    source: SpecSource,
    ws: Path,
    study: Study,
    sha: str | None,
    blob: str,
    shas: dict[str, str],
    outcome: str,
) -> None:
    """Write this study's entry of the commit's note (not for work-tree revisions)."""
    if sha is None:
        return
    store = Store.open(ws)
    try:
        rows = [
            {
                "name": r.name,
                "job_id": r.job_id,
                "state": str(r.state),
                "exit_code": r.exit_code,
                "attempts": r.attempts,
                "submit_time": r.submit_time,
                "start_time": r.start_time,
                "end_time": r.end_time,
            }
            for r in store.instances()
        ]
        scheduler = store.study()["adapter"]
        if outcome == "ended":
            counts = store.counts()
            outcome = (
                "FINISHED"
                if set(counts) <= {"FINISHED"}
                else "ended: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            )
    finally:
        store.close()
    entry = provenance.snapshot(study, sha, blob, shas, rows, scheduler, outcome)
    provenance.write_note(source.repo, sha, entry)
