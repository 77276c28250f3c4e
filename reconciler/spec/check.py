"""Checks Maestro does not make (or makes too late): names, steps, dependencies, parameters.

Each check reports into a Collector with the position of the offending key or value, and
every check runs, so a user sees all the errors of a file at once.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import networkx as nx

from reconciler.spec.diagnostics import Collector
from reconciler.spec.giturl import refusal, refusal_message
from reconciler.spec.load import Positions
from reconciler.spec.model import Spec
from reconciler.spec.names import name_problem, safe_name
from reconciler.spec.pgen import ParameterSet

# A step name becomes a directory and part of file names: no separators, nothing hidden.
STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")  # what $(name.workspace) can name
FUNNEL = "_*"


@dataclass(frozen=True)
class Edge:
    parent: str
    funnel: bool


def check_study_name(spec: Spec, pos: Positions, out: Collector) -> None:
    """The study's name follows spec/names.py (the one rule for every command)."""
    problem = name_problem(spec.description.name)
    if problem is not None:
        out.error(problem, pos.value(("description", "name")))


def check_step_names(spec: Spec, pos: Positions, out: Collector) -> dict[str, int]:
    """Valid, unique step names → their index in `study`."""
    first: dict[str, int] = {}
    for i, step in enumerate(spec.study):

        def where(i: int = i) -> tuple[int, int] | None:
            return pos.value(("study", i, "name"))

        if not STEP_NAME.match(step.name) or step.name.endswith(".workspace"):
            out.error(
                f"step name '{step.name}' cannot be used as a directory name: use letters, "
                "digits and - _ ., starting with a letter or digit",
                where,
            )
        if step.name in first:
            line = (pos.value(("study", first[step.name], "name")) or (0, 0))[0]
            out.error(
                f"duplicate step name '{step.name}' (first defined on line {line}); Maestro "
                "would silently drop this step",
                where,
            )
        else:
            first[step.name] = i
    return first


def step_edges(
    spec: Spec, index: dict[str, int], pos: Positions, out: Collector
) -> dict[str, list[Edge]]:
    """Each step's parents, checking that every `depends` entry names a step."""
    edges: dict[str, list[Edge]] = {}
    for i, step in enumerate(spec.study):
        if index.get(step.name) != i:
            continue  # a duplicate, already reported
        seen: set[str] = set()
        parents: list[Edge] = []
        for j, dep in enumerate(step.run.depends):

            def where(i: int = i, j: int = j) -> tuple[int, int] | None:
                return pos.value(("study", i, "run", "depends", j))

            funnel = dep.endswith(FUNNEL)
            parent = dep[: -len(FUNNEL)] if funnel else dep
            if dep in seen:
                out.error(f"step '{step.name}' lists '{dep}' twice in depends", where)
                continue
            seen.add(dep)
            if parent not in index:
                hint = _close_match(parent, index)
                out.error(
                    f"step '{step.name}' depends on '{dep}', but no step is named '{parent}'"
                    + (f" (did you mean '{hint}'?)" if hint else ""),
                    where,
                )
                continue
            parents.append(Edge(parent, funnel))
        edges[step.name] = parents
    return edges


def step_graph(
    spec: Spec, edges: dict[str, list[Edge]], pos: Positions, out: Collector
) -> nx.DiGraph | None:
    """The step DAG; a cycle is an error that names every step on it."""
    g = nx.DiGraph()
    order = {s.name: i for i, s in reversed(list(enumerate(spec.study)))}
    g.add_nodes_from(edges)
    for child, parents in edges.items():
        for e in parents:
            g.add_edge(e.parent, child, funnel=e.funnel)
    if nx.is_directed_acyclic_graph(g):
        return g
    reported: set[frozenset[str]] = set()
    for cycle in nx.simple_cycles(g):
        key = frozenset(cycle)
        if key in reported:
            continue
        reported.add(key)
        start = min(cycle, key=lambda n: order.get(n, 0))
        k = cycle.index(start)
        ring = cycle[k:] + cycle[:k] + [start]
        where = pos.value(("study", order[start], "run", "depends"))
        out.error("dependency cycle: " + " → ".join(ring), where)
        if len(reported) >= 10:
            break
    return None


def check_parameters(params: ParameterSet, pos: Positions, out: Collector) -> None:
    """Equal lengths; labels that are safe directory names and tell values apart."""
    lengths = {k: len(v) for k, v in params.values.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        out.error(
            "every parameter must have the same number of values (rows are zipped, not "
            f"crossed): {listed}",
            pos.key(("global.parameters",)),
        )
    for name, labels in params.labels.items():

        def where(name: str = name) -> tuple[int, int] | None:
            return pos.value(("global.parameters", name, "label")) or pos.key(
                ("global.parameters", name)
            )

        owner: dict[str, str] = {}
        for value, label in zip(params.values[name], labels, strict=False):
            if "/" in label or label in (".", "..") or "\x00" in label:
                out.error(
                    f"parameter {name}: value {value!r} gives label '{label}', which would "
                    "escape its workspace directory ('/' and '..' are not allowed)",
                    where,
                )
                continue
            disk = safe_name(label)
            if disk in (".", ".."):  # e.g. '..!' loses its '!' and would name the step's parent
                out.error(
                    f"parameter {name}: value {value!r} gives label '{label}', which becomes the "
                    f"directory name '{disk}' and would escape its workspace directory",
                    where,
                )
                continue
            if not disk:
                out.error(
                    f"parameter {name}: label '{label}' has no character usable in a directory "
                    "name",
                    where,
                )
                continue
            other = owner.setdefault(disk, str(value))
            if other != str(value):
                out.error(
                    f"parameter {name}: values {other!r} and {str(value)!r} both get the "
                    f"directory name '{disk}'; a label must tell values apart "
                    "(put '%%' where the value goes)",
                    where,
                )


def check_git_urls(spec: Spec, pos: Positions, out: Collector) -> None:
    """A git dependency's URL must be one git may fetch without running anything else."""
    for i, dep in enumerate(spec.env.dependencies.git):
        why = refusal(dep.url)
        if why is not None:
            out.error(
                refusal_message(dep.url, why, dep.name),
                lambda i=i: pos.value(("env", "dependencies", "git", i, "url")),
            )


def _close_match(name: str, choices: dict[str, int]) -> str | None:
    found = difflib.get_close_matches(name, list(choices), n=1)
    return found[0] if found else None
