"""How big a study would be, counted from its parameters before anything is expanded.

Expansion makes one instance per distinct label row of the parameters a step uses (see
expand.py), and a funnel step depends on every instance of its parent. Both counts follow from
the parameter table and `StepPlan.used` alone, so a spec asking for ten million instances is
refused in the time it takes to count label rows, not after building them.

Limits, all proportional to `max_instances` (default 2,000,000):
- instances: at most `max_instances`;
- dependencies between instances: at most EDGES_PER_INSTANCE × `max_instances` (a swept step
  that funnels a big sweep multiplies them);
- counting work: at most CELLS_PER_INSTANCE × (`max_instances` + the cells of the parameter
  table) label cells looked at, however many steps use different sets of parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.spec.check import Edge
from reconciler.spec.diagnostics import Collector
from reconciler.spec.load import Positions
from reconciler.spec.model import Spec
from reconciler.spec.pgen import ParameterSet

MAX_INSTANCES = 2_000_000
EDGES_PER_INSTANCE = 10
CELLS_PER_INSTANCE = 10

Combos = dict[tuple[str, ...], int]  # distinct label tuple -> the first row that has it


def combos(params: ParameterSet, used: tuple[str, ...]) -> Combos:
    """Maestro's collapse of duplicate label rows, in first-seen order (C-speed builtins: this
    runs once per distinct set of used parameters, over every row)."""
    if not used:
        return {(): -1}
    keys = list(zip(*(params.labels[p] for p in used), strict=True))
    first = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True))
    if len(first) == len(keys):  # no duplicate rows (the usual case)
        return dict(zip(keys, range(len(keys)), strict=True))
    return {k: first[k] for k in dict.fromkeys(keys)}


@dataclass
class Size:
    """What expansion would make: instances per step, dependencies, and the combos counted."""

    per_step: dict[str, int] = field(default_factory=dict)
    edges: dict[str, int] = field(default_factory=dict)  # dependencies of each step's instances
    combos: dict[tuple[str, ...], Combos] = field(default_factory=dict)  # by used parameters
    over_work: bool = False  # counting stopped: too many label cells to look at
    rows: int = 0  # rows of the parameter table
    budget: int = 0  # label cells counting may look at

    @property
    def instances(self) -> int:
        return sum(self.per_step.values())

    @property
    def dependencies(self) -> int:
        return sum(self.edges.values())


def measure(
    params: ParameterSet,
    used: dict[str, tuple[str, ...]],
    edges: dict[str, list[Edge]],
    order: list[str],
    max_instances: int,
) -> Size:
    """Count instances and dependencies step by step (in topological `order`). Steps that use
    the same parameters share one count; counting stops only when the work budget is spent."""
    rows = params.rows
    size = Size(rows=rows, budget=work_budget(params, max_instances))
    work = 0
    for name in order:
        key = used[name]
        found = size.combos.get(key)
        if found is None:
            work += rows * len(key)
            if work > size.budget:
                size.over_work = True
                return size
            found = size.combos[key] = combos(params, key)
        n = len(found)
        size.per_step[name] = n
        size.edges[name] = sum(
            n * size.per_step[e.parent] if e.funnel else n for e in edges.get(name, [])
        )
    return size


def check(
    spec: Spec,
    pos: Positions,
    out: Collector,
    size: Size,
    max_instances: int,
) -> None:
    """One error, at the step that contributes most, if the study is over a limit."""
    index = {s.name: i for i, s in enumerate(spec.study)}
    hint = (
        "nothing was expanded. If the study really is this big, raise the limit with "
        "--max-instances N (or the environment variable RECONCILER_MAX_INSTANCES)"
    )
    if size.over_work:
        last = next(reversed(size.per_step), spec.study[0].name)
        out.error(
            f"counting this study's instances would look at more than "
            f"{size.budget:,} parameter labels (its steps use many "
            f"different sets of parameters over {size.rows:,} rows); {hint}",
            lambda: pos.value(("study", index.get(last, 0), "name")),
        )
        return
    if size.instances > max_instances:
        big = max(size.per_step, key=lambda s: size.per_step[s])
        out.error(
            f"the study would expand to {size.instances:,} instances, more than the limit of "
            f"{max_instances:,} (step '{big}' alone has {size.per_step[big]:,}); {hint}",
            lambda: pos.value(("study", index[big], "name")),
        )
        return
    limit = edge_limit(max_instances)
    if size.dependencies > limit:
        big = max(size.edges, key=lambda s: size.edges[s])
        out.error(
            f"the study's instances would depend on each other {size.dependencies:,} times, "
            f"more than the limit of {limit:,} ({EDGES_PER_INSTANCE} per instance allowed): "
            f"the {size.per_step[big]:,} instances of step '{big}' have {size.edges[big]:,} "
            f"dependencies (a funnel of a big sweep in a step that is itself swept?); {hint}",
            lambda: pos.value(("study", index[big], "run", "depends")),
        )


def work_budget(params: ParameterSet, max_instances: int) -> int:
    return CELLS_PER_INSTANCE * (max_instances + params.rows * max(1, len(params.values)))


def edge_limit(max_instances: int) -> int:
    return EDGES_PER_INSTANCE * max_instances


__all__ = ["MAX_INSTANCES", "Size", "check", "combos", "edge_limit", "measure"]
