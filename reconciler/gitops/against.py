"""`plan --against REF`: what merging would do, as if REF had been applied and had finished.

For a pull request comment: the desired state is REV (the branch), the recorded state is
simulated from REF (the target branch) — every instance of REF finished, with REF's
fingerprints — so the plan lists exactly what the merge would rerun, add or remove.
"""

from __future__ import annotations

from reconciler import deps
from reconciler.gitops.reconcile import Reconciler, StudyPlan
from reconciler.plan.actions import Action, Kind, Plan, Recorded, make_plan
from reconciler.plan.diff import spec_changes
from reconciler.plan.states import State
from reconciler.spec import SpecError, Study


def _finished(study: Study) -> dict[str, Recorded]:
    return {
        i.name: Recorded(i.name, i.step, i.fingerprint, State.FINISHED, 1, i.depends)
        for i in study.instances
    }


def plan_against(
    rec: Reconciler, rev: str | None, against: str
) -> tuple[str | None, list[StudyPlan]]:
    base = {f.name: f for f in rec.source.read(against).specs}
    head = rec.source.read(rev)
    plans: list[StudyPlan] = []
    for f in head.specs:
        name = f.name or f.path
        sp = StudyPlan(name, rec.workspace_of(name, f.study), f)
        plans.append(sp)
        if f.study is None:
            sp.error = str(f.error) if f.error else f"{f.path}: cannot be read"
            continue
        try:
            sp.shas = deps.resolve_git_dependencies(f.study, rec.cache)
            sp.study = f.load(sp.shas)
            old = base.get(name)
            old_study = old.load(sp.shas) if old is not None and old.study is not None else None
        except (deps.DependencyError, SpecError) as e:
            sp.error = str(e)
            continue
        recorded = _finished(old_study) if old_study is not None else {}
        changes = spec_changes(old_study.spec if old_study else None, sp.study.spec)
        sp.plan = make_plan(sp.study, recorded, changes, tries=sp.study.reconcile.retries + 1)
    named = {p.name for p in plans}
    for name, f in base.items():
        if name in named or f.study is None:
            continue
        gone = Plan(str(name))
        gone.actions = [Action(Kind.PRUNE, i.name, i.step, "spec removed")
                        for i in f.study.instances]  # fmt: skip
        plans.append(StudyPlan(str(name), rec.workspace_of(str(name), f.study), None, plan=gone))
    return head.sha, plans
