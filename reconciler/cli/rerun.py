"""`run`'s dependencies and its run on an existing workspace of the same study.

Dependencies: path dependencies are checked first, then git dependencies are fetched into the
user's cache and pinned to a commit (the same module as GitOps: `reconciler.deps`), and the
study is loaded again with the pins, so that fingerprints name the commits as they do in GitOps.
The checkout itself is part of setting the workspace up (`engine.setup`).

An existing workspace whose spec changed is not resumed as it was (Maestro would rerun the
whole study into a new directory, or delete this one): the plan is shown as `plan` shows it,
the user confirms (or passes -y), and the workspace converges to the new spec the way `apply`
does it — the same `engine.reshape.plan_for` and `reshape`. Only changed instances and their
descendants rerun; their old outputs move to `.reconciler/history/`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from reconciler.cli.common import err, fail, load_or_exit, out, u
from reconciler.cli.planview import plan_table, summary
from reconciler.engine import api
from reconciler.engine.lock import LockHeld
from reconciler.engine.setup import (
    RunSettings,
    SetupError,
    acquire_dependencies,
    resolve_locations,
)
from reconciler.record.store import Store
from reconciler.spec import Study

if TYPE_CHECKING:
    from reconciler.plan.actions import Plan


def pin_dependencies(study: Study, root: Path, cwd: Path) -> dict[str, str]:
    """Path dependencies checked, then git dependencies fetched and pinned: {name: SHA}.

    Nothing is cloned before every path dependency is known to exist. Exits 2 with the reason
    on any problem (a missing path, a refused or unreachable URL, an unknown ref).
    """
    deps = study.spec.env.dependencies
    if not (deps.paths or deps.git):
        return {}
    try:
        resolve_locations(study, root, cwd)  # path dependencies first
    except SetupError as e:
        fail(str(e))
    if not deps.git:
        return {}
    try:
        from reconciler.deps import DependencyError, default_cache_dir, resolve_git_dependencies
    except ImportError as e:  # GitPython without a git on PATH
        fail(f"git dependencies need git on PATH: {' '.join(str(e).split())[:200]}")
    try:
        return resolve_git_dependencies(study, default_cache_dir())
    except DependencyError as e:
        fail(str(e))


def pinned(
    study: Study,
    spec: Path,
    pgen: Path | None,
    pargs: list[str] | None,
    hashws: bool,
    shas: dict[str, str],
    max_instances: int,
) -> Study:
    """The study again, with its git dependencies' commits in every fingerprint."""
    if not shas:
        return study
    # A second expansion (and --pgen run): fingerprints need the pins, known only after the
    # first load told us what to fetch. Warnings were reported by the first.
    return load_or_exit(spec, pgen, pargs, hashws=hashws, dependency_shas=shas, warn=False,
                        max_instances=max_instances)  # fmt: skip


def unchanged(root: Path, spec_text: str, pgen: dict[str, Any] | None) -> bool:
    """Is the workspace's recorded spec (and --pgen) this one? Then `run` simply resumes."""
    store = Store.open(root)
    try:
        record = store.study()
    finally:
        store.close()
    recorded_pgen = json.loads(record["pgen"]) if record["pgen"] else None
    return bool(record["spec_text"] == spec_text and recorded_pgen == pgen)


def converge(
    root: Path,
    study: Study,
    shas: dict[str, str],
    *,
    spec_text: str,
    spec_path: Path,
    cwd: Path,
    settings: dict[str, float],
    run_settings: RunSettings,
    autoyes: bool,
    dry: bool,
    ask_on_stderr: bool = False,
) -> bool:
    """Show the plan that takes the workspace to `study`, ask, and apply it. True when the
    workspace is at `study` now (the engine may run it); False when nothing was changed (--dry,
    or the user said no). Exits 2 without a terminal to ask on and without -y."""
    # Here, not at the top: planning brings deepdiff, which a plain `run` need not import.
    from reconciler.engine.reshape import held, plan_for, reshape
    from reconciler.gitops import recorded

    view = recorded.read(root, study.name)  # the record as apply reads it (drift included)
    if view.error is not None:
        fail(view.error)
    tries = max(int(settings["attempts"]), study.reconcile.retries + 1)
    plan = plan_for(study, view.record, view.recorded, shas, tries=tries, missing=view.missing,
                    heal=study.reconcile.self_heal)  # fmt: skip
    if not plan.work:
        # Nothing of the results depends on the edit (a comment, a description): the record
        # takes the new spec, the engine (if one runs) is left alone, as `apply` does. (Drift,
        # a finished instance whose directory is gone, is work only with reconcile.self_heal.)
        store = Store.open(root)
        store.update_study(control=False, spec_text=spec_text, spec_path=str(spec_path),
                           dependency_shas=json.dumps(shas, sort_keys=True))  # fmt: skip
        store.close()
        api.update(root, **settings)
        out.print(f"The spec changed, but no instance of {u(root)} is affected; resuming it.")
        return True
    _show(plan, root)
    if dry:
        out.print("Dry run: nothing was changed. Run without --dry to apply the plan.")
        return False
    if not autoyes:
        if not sys.stdin.isatty():
            fail(
                f"the spec of {root} changed and the plan above reruns instances; pass -y to "
                "apply it without being asked (nothing was changed)."
            )
        if not typer.confirm(f"Apply this plan to {root}?", default=False, err=ask_on_stderr):
            out.print("Nothing was changed.")
            return False
    try:
        locations = resolve_locations(study, root, cwd)
        # Checked out before a running engine is stopped (as apply does): a checkout that fails
        # leaves the study running as it was.
        acquire_dependencies(study, shas, locations, cwd)
        with held(root):
            applied = reshape(root, study, plan, spec_text=spec_text, locations=locations,
                              revision={}, dependency_shas=shas,
                              settings={**settings, "backoff": study.reconcile.backoff,
                                        "attempts": tries},
                              run_settings=run_settings)  # fmt: skip
            store = Store.open(root)
            store.update_study(control=False, spec_path=str(spec_path))
            store.close()
    except (SetupError, LockHeld) as e:
        fail(str(e))
    moved = f"; previous outputs of {len(applied.archived)} in .reconciler/history/"
    out.print(f"Applied to {u(root)}: {summary(applied.counts)}{moved if applied.archived else ''}")
    return True


def _show(plan: Plan, root: Path) -> None:
    err.print(
        f"The spec differs from the one {root} was set up with; converging it to the new one:"
    )
    out.print(plan_table(f"{plan.study}: {plan.sync}", plan.changes))


__all__ = ["converge", "pin_dependencies", "pinned", "unchanged"]
