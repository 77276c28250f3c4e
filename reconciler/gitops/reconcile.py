"""Plan and apply a revision of a repo of specs: every study's workspace converges to it.

Desired state: the specs at a revision. Recorded state: each study's workspace record, under
the studies root (`<repo>/.reconciler/studies/<study>`) or where the operator allowed
(gitops/placement.py), and every workspace an apply ever made (gitops/registry.py). A study
whose spec is invalid at the revision is left exactly as it was (Degraded, with the error
recorded); one whose spec disappeared has its in-flight instances cancelled. One study's
trouble — a bad name, a workspace it may not have, a damaged record — is that study's error:
every other study is planned and applied as usual.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from git.exc import GitCommandError

from reconciler import deps
from reconciler.engine import api
from reconciler.engine.lock import LockHeld
from reconciler.engine.reshape import held, plan_for, reshape
from reconciler.engine.setup import RunSettings, SetupError, create_workspace
from reconciler.gitops import recorded
from reconciler.gitops.claims import claim
from reconciler.gitops.placement import PlacementError, Places, allowances
from reconciler.gitops.provenance import ProvenanceError
from reconciler.gitops.registry import Registry, RegistryError
from reconciler.gitops.repo import RepoError, SpecSource, ensure_excluded
from reconciler.gitops.repolock import repo_lock
from reconciler.gitops.settle import commit_exists, provenance_note, settle
from reconciler.gitops.studyplan import StudyPlan
from reconciler.plan.actions import Action, Kind, Plan
from reconciler.plan.states import IN_FLIGHT, State
from reconciler.record.store import RecordError, Store, is_workspace
from reconciler.spec import SpecError, Study
from reconciler.spec.size import MAX_INSTANCES

# What one study's apply can meet that is that study's trouble, not the command's: reported as
# a one-line "not applied" for it while the others go on.
STUDY_ERRORS: tuple[type[BaseException], ...] = (
    SetupError, PlacementError, RecordError, RegistryError, sqlite3.Error, OSError, LockHeld,
    deps.DependencyError, ProvenanceError, SpecError, GitCommandError,
)  # fmt: skip
STATE_DIR = Path(".reconciler")
WAITING = {str(s) for s in IN_FLIGHT | {State.INITIALIZED}}


class Reconciler:
    """A repo of specs, the root its study workspaces live under, and the operator's
    allowances for workspaces elsewhere."""

    def __init__(
        self,
        repo: str | os.PathLike[str] = ".",
        *,
        specs: str = "specs",
        root: str | os.PathLike[str] | None = None,
        worktree: bool = False,
        allow: Sequence[str | os.PathLike[str]] = (),
        max_instances: int = MAX_INSTANCES,
    ) -> None:
        self.source = SpecSource(
            repo, specs_dir=specs, worktree=worktree, max_instances=max_instances
        )
        top = self.source.root
        self.state_dir = top / STATE_DIR
        self.root = Path(root) if root is not None else self.state_dir / "studies"
        self.root = (Path.cwd() / self.root).resolve()
        self.cache = self.state_dir / "cache"
        self.registry = Registry(self.state_dir)
        self.allow = tuple(Path(a) for a in allow)

    def lock(
        self,
        command: str,
        *,
        timeout: float,
        on_wait: Callable[[dict[str, Any]], None] | None = None,
    ) -> AbstractContextManager[None]:
        """The repository's apply lock (gitops/repolock.py): held by `apply` and by each pass
        of the watcher while they plan and change records."""
        if not self.source.repo.bare:  # the lock file must not show as untracked
            ensure_excluded(self.source.repo, f"/{STATE_DIR}/")
        return repo_lock(self.state_dir, command, timeout=timeout, on_wait=on_wait)

    def places(self) -> Places:
        """The root and the allowances now (git config is read again: the operator may have
        changed it while a watcher runs)."""
        return Places(self.root, self.source.root, allowances(self.source.repo, self.source.root,
                                                              self.allow))  # fmt: skip

    # -- planning --------------------------------------------------------------------------

    def plan(
        self, revision: str | None = None, *, heal: bool = False
    ) -> tuple[str | None, list[StudyPlan]]:
        """Every study of the revision, and every workspace the repo knows that no spec claims
        any more, planned. `heal` reruns missing instances (apply --self-heal)."""
        rev = self.source.read(revision, unique=False)
        places = self.places()
        try:
            entries = self.registry.entries()
        except RegistryError as e:
            raise RepoError(str(e)) from None
        plans = claim(rev.specs, places, entries)
        for sp in plans:
            self._plan_one(sp, heal)
        claimed = {p.workspace for p in plans if p.workspace is not None}
        names = {e.workspace: e.study for e in entries}
        for ws in self.known_workspaces():
            if ws not in claimed:
                plans.append(self._plan_gone(ws, names.get(ws)))
        return rev.sha, plans

    def known_workspaces(self) -> list[Path]:
        """Every workspace the registry lists, and every one under the root."""
        found: dict[Path, None] = {}
        with contextlib.suppress(RegistryError):  # plan() reports it; this serves the watcher
            found.update({e.workspace: None for e in self.registry.entries()})
        if self.root.is_dir():
            found.update({ws: None for ws in sorted(self.root.iterdir()) if is_workspace(ws)})
        return [ws for ws in found if is_workspace(ws)]

    def workspace_of(self, name: str, study: Study | None = None) -> Path:
        """Where study `name` is (or would be): its last applied workspace, else its place by
        the rules, else its default place (for display and `history`; checks nothing)."""
        known = None
        with contextlib.suppress(RegistryError):
            known = self.registry.workspace_of(name)
        if known is not None:
            return known
        places = self.places()
        custom = study.reconcile.workspace if study is not None else None
        if custom:
            with contextlib.suppress(PlacementError):
                return places.place(name, custom)
        return places.default(name)

    def _plan_one(self, sp: StudyPlan, heal: bool) -> None:
        view = recorded.read(sp.workspace, sp.name) if sp.workspace else recorded.View()
        sp.record, sp.counts, sp.missing = view.record, view.counts, view.missing
        if view.error is not None:
            sp.error = sp.error or view.error
        sp.warning = self._vanished(sp.record)
        if sp.error is not None:
            return
        f = sp.spec
        assert f is not None and f.study is not None
        try:
            sp.shas = deps.resolve_git_dependencies(f.study, self.cache)
            study = f.load(sp.shas) if sp.shas else f.study  # pins change fingerprints
        except (deps.DependencyError, SpecError) as e:
            sp.error = str(e)
            return
        sp.study = study
        sp.plan = plan_for(
            study, sp.record, view.recorded, sp.shas, tries=study.reconcile.retries + 1,
            missing=sp.missing, heal=heal or study.reconcile.self_heal,
        )  # fmt: skip

    def _vanished(self, record: dict[str, Any] | None) -> str | None:
        rev = (record or {}).get("last_applied_revision")
        if not rev or rev == "worktree" or commit_exists(self.source.repo, rev):
            return None
        return (
            f"the applied revision {rev[:12]} is no longer in the repository (history "
            "rewritten?): its provenance cannot be written; applying the current tip records "
            "it again"
        )

    def _plan_gone(self, ws: Path, name: str | None) -> StudyPlan:
        view = recorded.read(ws)
        name = (view.record or {}).get("name") or name or ws.name
        sp = StudyPlan(name, ws, None, record=view.record, counts=view.counts,
                       missing=view.missing, error=view.error)  # fmt: skip
        if view.error is not None:
            return sp
        plan = Plan(name)
        for r in view.recorded.values():
            kind = Kind.CANCEL if str(r.state) in WAITING else Kind.KEEP
            plan.actions.append(Action(kind, r.name, r.step, "spec removed from the repo"))
        sp.plan = plan
        return sp

    # -- applying --------------------------------------------------------------------------

    def apply(self, sp: StudyPlan, sha: str | None, *, start: bool = True) -> str:
        """Converge one study to the revision; returns a one-line outcome for people. The
        caller holds the repository lock (gitops/repolock.py). With `start` False no engine is
        started (the caller runs them, e.g. `apply --wait`)."""
        rev = sha or "worktree"
        if sp.error is not None or sp.workspace is None:
            self.refuse(sp, rev, sp.error or "no workspace")
            return f"not applied: {sp.error}"
        ws = sp.workspace
        self.settle(sp)  # an earlier apply's study that ended since: record it first
        if not self.source.repo.bare:  # outputs must never end up committed
            ensure_excluded(self.source.repo, f"/{STATE_DIR}/")
        if sp.spec is None:  # the spec is gone: cancel what still runs, keep the rest
            cancels = [a.instance for a in sp.plan.by_kind(Kind.CANCEL)] if sp.plan else []
            if cancels:
                with held(ws):
                    store = Store.open(ws)
                    store.apply({n: {"cancel": 1} for n in cancels})
                    store.close()
                self._start(ws, start)
            n = len(cancels)
            return f"spec removed: {n} in-flight instance{'' if n == 1 else 's'} cancelled"
        if sp.study is None or sp.plan is None:
            return "not applied: invalid spec"
        if sp.suspended:
            return "suspended (reconcile.suspend): nothing submitted"
        study, text, blob = sp.study, sp.spec.text or "", sp.spec.blob
        record = sp.record
        if record is not None and not sp.plan.work and _unchanged(record, rev, blob, sp.shas):
            return self._in_sync(sp, rev, start)
        specroot = self.source.root / Path(sp.spec.path).parent
        try:
            locations = self._locations(study, sp, specroot, text)
        except (deps.DependencyError, SetupError) as e:
            self.refuse(sp, rev, str(e))
            return f"not applied: {e}"
        revision = {"last_attempted_revision": rev, "last_applied_revision": rev,
                    "spec_blob": blob}  # fmt: skip
        outcome = "applied"
        if record is not None and not sp.plan.work:
            # Only the revision moved (another study's commit): record it, leave the engine be.
            store = Store.open(ws)
            store.update_study(control=False, last_error=None, spec_text=text,
                               dependency_shas=json.dumps(sp.shas, sort_keys=True),
                               **revision)  # fmt: skip
        elif record is None:
            create_workspace(
                study, ws, RunSettings(throttle=study.reconcile.throttle),
                cwd=self.source.root, spec_text=text, locations=locations,
                dependency_shas=sp.shas,
            )  # fmt: skip
            store = Store.open(ws)
            store.update_study(dependency_shas=json.dumps(sp.shas, sort_keys=True), **revision)
        else:
            with held(ws):
                reshape(ws, study, sp.plan, spec_text=text, locations=locations,
                        revision=revision, dependency_shas=sp.shas)  # fmt: skip
            store = Store.open(ws)
        try:
            store.add_revision(rev, applied=True, detail=json.dumps(sp.plan.counts(),
                                                                    sort_keys=True))  # fmt: skip
            counts = store.counts()
            if not sp.plan.work and not WAITING & set(counts) and api.engine_holder(ws) is None:
                store.end_revision(counts)  # nothing will run: the outcome is known now
                outcome = "ended"
        finally:
            store.close()
        self.registry.add(ws, study.name, sp.spec.path)
        provenance_note(self.source, ws, study, sha, blob, sp.shas, outcome)
        if sp.plan.work or WAITING & set(counts):
            self._start(ws, start)
        return "applied"

    def _in_sync(self, sp: StudyPlan, rev: str, start: bool) -> str:
        """Applied at this revision already and nothing to do: no history row, no note (the
        note may say FINISHED by now and must keep saying it)."""
        assert sp.workspace is not None and sp.record is not None and sp.spec is not None
        if sp.record.get("last_attempted_revision") != rev or sp.record.get("last_error"):
            store = Store.open(sp.workspace)  # an attempt of another revision was refused
            try:
                store.update_study(control=False, last_attempted_revision=rev, last_error=None)
            finally:
                store.close()
        self.registry.add(sp.workspace, sp.name, sp.spec.path)
        if WAITING & set(recorded.counts(sp.workspace)):
            self._start(sp.workspace, start)  # work left and perhaps no engine: carry on
        return "in sync: nothing to do"

    def _locations(self, study: Study, sp: StudyPlan, specroot: Path, text: str) -> dict[str, str]:
        assert sp.workspace is not None
        locations = {"OUTPUT_PATH": str(sp.workspace), "SPECROOT": str(specroot)}
        found = deps.check_paths(study, specroot, text=text, locations=locations)
        locations.update({k: str(v) for k, v in found.items()})
        got = deps.acquire_git_dependencies(study, sp.shas, self.cache, locations)
        locations.update({k: str(a.path) for k, a in got.items()})
        return locations

    def refuse(self, sp: StudyPlan, rev: str, error: str) -> None:
        """An invalid revision changes nothing but the record of having tried it (when the
        study has a record that can be written)."""
        if sp.record is None or sp.workspace is None:
            return
        store = Store.open(sp.workspace)
        try:
            store.update_study(control=False, last_attempted_revision=rev, last_error=error)
            store.add_revision(rev, applied=False, detail=error)
        finally:
            store.close()

    def settle(self, sp: StudyPlan) -> bool:
        """Record how the study's last applied revision ended, once (gitops/settle.py)."""
        return settle(self.source, sp)

    def _start(self, ws: Path, start: bool) -> None:
        if start and api.engine_holder(ws) is None:  # a running engine re-reads the record
            api.start_background(ws)

    def finish(
        self,
        sp: StudyPlan,
        poll: float = 0.5,
        on_pass: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        """`apply --wait`: run the study's engine here until it ends (or wait for the one that
        runs it), then record the outcome. Called without the repository lock. `on_pass` sees
        the counts by state as the study moves (progress)."""
        ws = sp.workspace
        if ws is None or not is_workspace(ws):
            return
        ran = False
        while WAITING & set(counts := recorded.counts(ws)):
            if api.engine_holder(ws) is None:
                if ran:
                    break  # it stopped with work left (it says why in the record)
                try:
                    api.run_engine(ws, on_pass=on_pass)
                    ran = True
                    continue
                except LockHeld:  # one started meanwhile: wait for it
                    pass
            if on_pass is not None:
                on_pass(counts)
            time.sleep(poll)
        while api.engine_holder(ws) is not None:  # it records its last pass, then exits
            time.sleep(poll)
        sp.record = sp.record or {}  # it exists now
        self.settle(sp)


# -- helpers ---------------------------------------------------------------------------------


def _unchanged(record: dict[str, Any], rev: str, blob: str, shas: dict[str, str]) -> bool:
    """The study was applied at `rev` from this very spec and dependency SHAs."""
    return (
        record.get("last_applied_revision") == rev
        and record.get("spec_blob") == blob
        and (record.get("dependency_shas") or {}) == shas
    )


__all__ = ["STATE_DIR", "STUDY_ERRORS", "Reconciler", "StudyPlan"]
