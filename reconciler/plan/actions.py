"""The plan: desired instances × the record → actions, each with a reason a person understands.

create  a desired instance the record has never seen
keep    recorded with the same fingerprint and nothing to do (finished, in flight, or out of tries)
rerun   its fingerprint changed, or something upstream runs again: old outputs go to history
retry   same fingerprint: ended FAILED/TIMEDOUT/LOST/HWFAILURE with tries left, or blocked by
        an upstream instance that runs again
cancel  in flight but gone from the spec
prune   ended and gone from the spec (outputs removed only when `reconcile.prune` is on)
missing finished, but its directory is gone (drift); nothing is done unless self-heal is on,
        and then it reruns (with its descendants) instead

Pure: the caller reads the record and the specs; this module only decides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from reconciler.plan.diff import Change
from reconciler.plan.states import IN_FLIGHT, State
from reconciler.spec.instance import Instance, Study

RETRYABLE = frozenset({State.FAILED, State.TIMEDOUT, State.LOST, State.HWFAILURE})
WAITING = IN_FLIGHT | {State.INITIALIZED}


class Kind(StrEnum):
    CREATE = "create"
    KEEP = "keep"
    RERUN = "rerun"
    RETRY = "retry"
    CANCEL = "cancel"
    PRUNE = "prune"
    MISSING = "missing"


# Kinds that make a study OutOfSync (a retry converges to the same revision: still Synced).
# Drift (missing) does too, as in Argo CD: the live state no longer is what was applied.
SYNC_KINDS = frozenset({Kind.CREATE, Kind.RERUN, Kind.CANCEL, Kind.PRUNE, Kind.MISSING})

# Kinds after which an instance produces new outputs: its descendants must run again.
RUNS = frozenset({Kind.CREATE, Kind.RERUN, Kind.RETRY})


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the record says of one instance (the planner's view of a record row)."""

    name: str
    step: str
    fingerprint: str
    state: State
    attempts: int = 0
    depends: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    instance: str
    step: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {
            "action": str(self.kind),
            "instance": self.instance,
            "step": self.step,
            "reason": self.reason,
        }


@dataclass
class Plan:
    study: str
    actions: list[Action] = field(default_factory=list)
    prune_outputs: bool = False

    def counts(self) -> dict[str, int]:
        c = Counter(str(a.kind) for a in self.actions)
        return {str(k): c.get(str(k), 0) for k in Kind}

    @property
    def changes(self) -> list[Action]:
        """Everything but keeps: what a person reviews (drift included)."""
        return [a for a in self.actions if a.kind is not Kind.KEEP]

    @property
    def work(self) -> list[Action]:
        """What an apply acts on: the changes without drift it only reports."""
        return [a for a in self.actions if a.kind not in (Kind.KEEP, Kind.MISSING)]

    @property
    def in_sync(self) -> bool:
        return not any(a.kind in SYNC_KINDS for a in self.actions)

    @property
    def sync(self) -> str:
        return "Synced" if self.in_sync else "OutOfSync"

    def by_kind(self, kind: Kind) -> list[Action]:
        return [a for a in self.actions if a.kind is kind]


def make_plan(
    desired: Study,
    recorded: Mapping[str, Recorded],
    changes: Sequence[Change] = (),
    *,
    tries: int = 1,
    missing: Collection[str] = frozenset(),
    heal: bool = False,
) -> Plan:
    """Decide what to do with every desired and every recorded instance.

    `tries` is how many submissions an instance may have (1 + retries); `changes` explain
    fingerprint differences (see diff.spec_changes). `missing` names the recorded FINISHED
    instances whose directory is gone (the caller looks; this module does no IO): with `heal`
    they rerun with their descendants, else each is reported as `missing`.
    """
    plan = Plan(desired.name, prune_outputs=desired.reconcile.prune)
    kinds: dict[str, Kind] = {}
    steps_of = {i.name: i.step for i in desired.instances}
    for inst in desired.instances:  # topological order: parents are decided first
        rec = recorded.get(inst.name)
        kind, reason = _decide(inst, rec, kinds, steps_of, changes, tries)
        if kind is Kind.KEEP and inst.name in missing and rec and rec.state is State.FINISHED:
            kind, reason = _drift(heal)
        kinds[inst.name] = kind
        plan.actions.append(Action(kind, inst.name, inst.step, reason))
    for name, rec in recorded.items():
        if name in kinds:
            continue
        why = _gone_reason(rec, changes)
        if rec.state in WAITING:
            plan.actions.append(Action(Kind.CANCEL, name, rec.step, why))
        else:
            plan.actions.append(Action(Kind.PRUNE, name, rec.step, why))
    return plan


def _decide(
    inst: Instance,
    rec: Recorded | None,
    kinds: Mapping[str, Kind],
    steps_of: Mapping[str, str],
    changes: Sequence[Change],
    tries: int,
) -> tuple[Kind, str]:
    upstream = [p for p in inst.depends if kinds.get(p) in RUNS]
    if rec is None:
        return Kind.CREATE, _new_reason(inst, changes)
    if rec.fingerprint != inst.fingerprint:
        return Kind.RERUN, _rerun_reason(inst, upstream, steps_of, changes)
    healed = [p for p in upstream if kinds[p] is Kind.RERUN]
    if healed and rec.state is State.FINISHED:
        # Same content under a parent that reruns: only self-heal does that (any other rerun
        # changes the parent's fingerprint, and so this one's). Its outputs go to history.
        return Kind.RERUN, _upstream(healed, steps_of) + " (self-heal)"
    if upstream:  # same content, but a parent runs again (a retry): this one waits for it
        return Kind.RETRY, _upstream(upstream, steps_of, "runs again")
    state = rec.state
    if state is State.FINISHED:
        return Kind.KEEP, "finished"
    if state in WAITING:
        return Kind.KEEP, f"in progress ({state})"
    if state in RETRYABLE:
        if rec.attempts < tries:
            return Kind.RETRY, f"{state}, attempt {rec.attempts + 1} of {tries}"
        return Kind.KEEP, f"{state}; no attempts left ({rec.attempts} of {tries})"
    return Kind.KEEP, str(state).lower()


def _drift(heal: bool) -> tuple[Kind, str]:
    if heal:
        return Kind.RERUN, "finished, but its directory is gone: rerun (self-heal)"
    return Kind.MISSING, "finished, but its directory is gone (drift)"


def _upstream(parents: Sequence[str], steps_of: Mapping[str, str], verb: str = "reran") -> str:
    steps = sorted({steps_of.get(p, p) for p in parents})
    return "upstream " + ", ".join(f"'{s}'" for s in steps) + " " + verb


def _new_reason(inst: Instance, changes: Sequence[Change]) -> str:
    for c in changes:
        if c.step == inst.step and len(c.path) == 2:
            return c.text  # "step 'x' added"
    for c in changes:
        gained = len(c.path) == 4 and c.path[0] == "global.parameters" and c.path[2] == "values"
        name = c.path[1] if gained else None
        if gained and name in inst.params and str(inst.params[name]) == str(c.after):
            return c.text
    return "new instance"


def _rerun_reason(
    inst: Instance, upstream: Sequence[str], steps_of: Mapping[str, str], changes: Sequence[Change]
) -> str:
    own = [c.text for c in changes if c.step == inst.step and not c.text.startswith("description")]
    if own:
        return "; ".join(own)
    if upstream:
        return _upstream(upstream, steps_of)
    env = [c.text for c in changes if c.step is None]
    if env:
        return "; ".join(env[:3]) + (f" (and {len(env) - 3} more)" if len(env) > 3 else "")
    return "fingerprint changed"


def _gone_reason(rec: Recorded, changes: Sequence[Change]) -> str:
    for c in changes:
        if c.step == rec.step and len(c.path) == 2:
            return c.text  # "step 'x' removed"
    lost = [c.text for c in changes if c.after is None and c.path[0] == "global.parameters"]
    return lost[0] if lost else "gone from the spec"
