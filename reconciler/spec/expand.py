"""Expansion: a valid Spec → instances, exactly as Maestro stages a study.

Rules (maestro-facts.md §2): parameter rows are zipped; a step is expanded by the parameters it
uses directly, through its non-funnel ancestors, or through the `$(s.workspace)` it references;
duplicate label rows collapse; dependents depend only on the matching parent instance; a funnel
(`depends: [s_*]`) waits on every instance of `s`. Unlike Maestro, variable chains of any depth
resolve, and a token that resolves to nothing is an error instead of a shell command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from reconciler.spec import launcher, size
from reconciler.spec.check import Edge
from reconciler.spec.diagnostics import Collector
from reconciler.spec.fingerprint import fingerprint
from reconciler.spec.instance import Instance, Resources
from reconciler.spec.load import Positions
from reconciler.spec.model import Exclusive, Spec, Step
from reconciler.spec.names import NAME_MAX, longest_suffix, safe_name
from reconciler.spec.pgen import ParameterSet
from reconciler.spec.size import Combos
from reconciler.spec.tokens import (
    LAUNCHER,
    OUTPUT_PATH,
    SPECROOT,
    TOKEN,
    WORKSPACE,
    in_spans,
    param_of,
    single_quoted,
    workspace_ref,
)
from reconciler.spec.walltime import walltime_seconds

# run: keys that are text the step's tokens may appear in (besides the counts below).
TEXT_KEYS = ("cmd", "restart", "pre", "post", "walltime", "bind", "bind_gpus", "reservation", "qos")
COUNT_KEYS = (
    "nodes",
    "procs",
    "gpus",
    "cores_per_task",
    "tasks_per_rs",
    "rs_per_node",
    "cpus_per_rs",
)


RESOURCE_TEXTS = (*COUNT_KEYS, "walltime", "bind", "bind_gpus", "reservation", "qos", "exclusive")


@dataclass
class Context:
    """Everything expansion needs besides the spec itself."""

    spec: Spec
    pos: Positions
    params: ParameterSet
    edges: dict[str, list[Edge]]
    steps: nx.DiGraph
    out: Collector
    dependency_shas: dict[str, str]
    hashws: bool = False  # Maestro's --hashws: `<step>/<step>_instance_<k>` directories


def _run_pos(
    ctx: Context, step_index: int, key: str, text: str | None = None, needle: str | None = None
) -> tuple[int, int] | None:
    """Where a run key is written; with `needle`, where that text is inside its value."""
    alias = {"cores_per_task": "cores per task", "bind_gpus": "bind gpus"}.get(key, key)
    path = ("study", step_index, "run", alias)
    if text and needle:
        return ctx.pos.within(path, text, needle)
    return ctx.pos.value(path)


# ---- variables ----------------------------------------------------------------------------


def resolve_variables(ctx: Context) -> dict[str, str]:
    """Variables and labels with chains of any depth resolved; cycles are errors.

    Tokens that are not variables (parameters, locations, dependencies, workspaces, the
    launcher) are left for the later passes.
    """
    env = ctx.spec.env
    raw: dict[str, str] = {}
    where: dict[str, tuple[str, ...]] = {}
    for block in ("variables", "labels"):
        for k, v in getattr(env, block).items():
            if k == OUTPUT_PATH and block == "variables":
                continue  # the study root's parent, not a text macro (see instance.py)
            raw[k] = str(v)  # a name defined twice is reported by check_names_unique
            where[k] = ("env", block, k)
    resolved: dict[str, str] = {}
    visiting: list[str] = []

    def resolve(name: str) -> str:
        if name in resolved:
            return resolved[name]
        if name in visiting:
            ring = [*visiting[visiting.index(name) :], name]
            ctx.out.error(
                "variable cycle: " + " → ".join(f"$({n})" for n in ring),
                ctx.pos.value(where[name]),
            )
            resolved[name] = raw[name]
            return raw[name]
        visiting.append(name)
        text = TOKEN.sub(
            lambda m: resolve(m.group(1)) if m.group(1) in raw else m.group(0), raw[name]
        )
        visiting.pop()
        resolved[name] = text
        return text

    for name in raw:
        resolve(name)
    return resolved


def known_names(ctx: Context) -> tuple[set[str], set[str]]:
    """(dependency names, every other top-level name) for the unresolved-token check."""
    deps = {d.name for d in ctx.spec.env.dependencies.paths}
    deps |= {d.name for d in ctx.spec.env.dependencies.git}
    return deps, {OUTPUT_PATH, SPECROOT, WORKSPACE, LAUNCHER}


def check_names_unique(ctx: Context) -> None:
    """Variable, label, dependency and parameter names share one namespace."""
    env = ctx.spec.env
    owner: dict[str, str] = {}
    entries: list[tuple[str, str, tuple[str | int, ...]]] = []
    entries += [(k, "variable", ("env", "variables", k)) for k in env.variables]
    entries += [(k, "label", ("env", "labels", k)) for k in env.labels]
    for kind in ("paths", "git"):
        for i, d in enumerate(getattr(env.dependencies, kind)):
            entries.append((d.name, "dependency", ("env", "dependencies", kind, i)))
    entries += [(k, "parameter", ("global.parameters", k)) for k in ctx.params.values]
    for name, kind, path in entries:
        if name in owner:
            where = ctx.pos.key(path) if kind != "dependency" else ctx.pos.value(path)
            ctx.out.error(
                f"the {kind} name '{name}' is already taken by a {owner[name]}; variable, "
                "label, dependency and parameter names must all be unique",
                where,
            )
        else:
            owner[name] = kind


# ---- steps --------------------------------------------------------------------------------


def _step_texts(step: Step) -> dict[str, str]:
    texts = {"description": step.description}
    for key in TEXT_KEYS + COUNT_KEYS:
        v = getattr(step.run, key)
        if isinstance(v, str):
            texts[key] = v
        elif key == "walltime" and isinstance(v, int):
            texts[key] = str(v)
    if isinstance(step.run.exclusive, str):
        texts["exclusive"] = step.run.exclusive
    return texts


def _substitute_vars(text: str, variables: dict[str, str]) -> str:
    return TOKEN.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


@dataclass
class StepPlan:
    index: int
    step: Step
    texts: dict[str, str]  # after variable substitution
    direct: set[str]  # parameters used in its own text
    workspace_refs: set[str]
    used: tuple[str, ...] = ()
    close: frozenset[str] = frozenset()  # ancestors reached without crossing a funnel


def plan_steps(ctx: Context, variables: dict[str, str], order: list[str]) -> dict[str, StepPlan]:
    """Per step: texts with variables in, the parameters it uses, unresolved-token errors."""
    index = {s.name: i for i, s in enumerate(ctx.spec.study)}
    deps, builtins = known_names(ctx)
    pnames = set(ctx.params.values)
    plans: dict[str, StepPlan] = {}
    for name in order:
        i = index[name]
        step = ctx.spec.study[i]
        texts = {k: _substitute_vars(v, variables) for k, v in _step_texts(step).items()}
        direct: set[str] = set()
        refs: set[str] = set()
        for key, text in texts.items():
            quoted = single_quoted(text) if key in ("cmd", "restart") and "'" in text else []
            for m in TOKEN.finditer(text):
                tok = m.group(1)
                p = param_of(tok, pnames)
                if p:
                    direct.add(p)
                    continue
                if tok in builtins or tok in deps or tok in variables:
                    continue  # (a variable still here is on a cycle, reported already)
                ref = workspace_ref(tok)
                if ref is not None and key in ("cmd", "restart", "description"):
                    refs.add(ref)
                    continue
                if quoted and in_spans(m.start(), quoted):
                    continue  # bash will not expand it either
                _unresolved(ctx, i, key, _step_texts(step).get(key, text), tok, name)
        plans[name] = StepPlan(i, step, texts, direct, refs)
    return plans


def _unresolved(ctx: Context, i: int, key: str, raw: str, tok: str, step: str) -> None:
    hint = ""
    if tok.lower() == tok and "." not in tok:
        hint = f" (for shell command substitution write '$( {tok} )' or backticks)"
    elif not ctx.params.values:
        hint = " (if a parameter generator provides it, pass it with --pgen)"
    where = (
        ctx.pos.value(("study", i, "description"))
        if key == "description"
        else _run_pos(ctx, i, key, raw, f"$({tok})")
    )
    ctx.out.error(
        f"$({tok}) in {key.replace('_', ' ')} of step '{step}' is not a variable, label, "
        f"parameter, dependency or step workspace{hint}",
        where,
    )


def used_parameters(ctx: Context, plans: dict[str, StepPlan], order: list[str]) -> None:
    """Maestro's used_params: own ∪ non-funnel parents' ∪ referenced workspaces' (non-funnel)."""
    for name in order:
        plan = plans[name]
        used = set(plan.direct)
        for e in ctx.edges.get(name, []):
            if not e.funnel:
                used |= set(plans[e.parent].used)
        close = plan.close = frozenset(_nonfunnel_ancestors(ctx, name))
        anc = nx.ancestors(ctx.steps, name)
        for ref in sorted(plan.workspace_refs):
            if ref in close:
                used |= set(plans[ref].used)
            elif ref not in anc:
                where = _run_pos(ctx, plan.index, "cmd", plan.step.run.cmd, f"$({ref}.workspace)")
                if ref not in plans:
                    msg = f"$({ref}.workspace) in step '{name}' names no step"
                else:
                    msg = (
                        f"step '{name}' uses $({ref}.workspace) but does not depend on '{ref}' "
                        f"(directly or through its ancestors), so '{ref}' may not have run yet; "
                        f"add '{ref}' to its depends"
                    )
                ctx.out.error(msg, where)
        plan.used = tuple(sorted(used))


def _nonfunnel_ancestors(ctx: Context, name: str) -> set[str]:
    seen: set[str] = set()
    stack = [name]
    while stack:
        for e in ctx.edges.get(stack.pop(), []):
            if not e.funnel and e.parent not in seen:
                seen.add(e.parent)
                stack.append(e.parent)
    return seen


# ---- instances ----------------------------------------------------------------------------


@dataclass
class Expanded:
    instances: list[Instance]
    graph: nx.DiGraph


def expand(
    ctx: Context,
    plans: dict[str, StepPlan],
    order: list[str],
    counted: dict[tuple[str, ...], Combos] | None = None,
) -> Expanded:
    """Every instance, in `order`. `counted`: the label rows `size.measure` already found."""
    params = ctx.params
    counted = counted if counted is not None else {}
    shell = ctx.spec.batch.shell
    deps = _dependency_identity(ctx)
    # step -> {label key -> instance}, and the representative row of each instance
    by_key: dict[str, dict[tuple[str, ...], Instance]] = {}
    instances: list[Instance] = []
    edges: list[tuple[str, str]] = []
    suffix = longest_suffix(ctx.spec.batch.type)  # the longest file name an instance gets
    for name in order:
        plan = plans[name]
        used = plan.used
        combos = counted.get(used)
        if combos is None:
            combos = counted[used] = size.combos(params, used)
        mine: dict[tuple[str, ...], Instance] = {}
        reported: set[str] = set()
        # Resources usually do not vary by instance: compute once per distinct input.
        resource_cache: dict[tuple[str | None, ...], Resources] = {}
        for k, (key, row) in enumerate(combos.items()):
            label = ".".join(key)
            iname = f"{name}_{label}" if used else name
            ws = f"{name}/{safe_name(label)}" if used else name
            if used and ctx.hashws:
                ws = f"{name}/{name}_instance_{k}"
            if len(safe_name(iname).encode()) + len(suffix) > NAME_MAX and "long" not in reported:
                reported.add("long")  # once per step
                ctx.out.error(
                    f"step '{name}': instance name '{iname[:60]}…' is {len(iname.encode())} "
                    f"bytes; its files ('<instance>{suffix}') must fit in {NAME_MAX}: "
                    "use shorter labels",
                    ctx.pos.value(("study", plan.index, "name")),
                )
            values = {p: params.values[p][row] for p in used}
            parents = _parents(ctx, name, row, plans, by_key)
            texts = _render(ctx, plan, row, ws, plans, by_key)
            rkey = tuple(texts.get(k) for k in RESOURCE_TEXTS)
            resources = resource_cache.get(rkey)
            if resources is None:
                resources = resource_cache[rkey] = _resources(ctx, plan, texts, reported)
            for problem in launcher.check(texts.get("cmd", ""), resources):
                if problem not in reported:
                    reported.add(problem)
                    ctx.out.error(f"step '{name}': {problem}", _run_pos(ctx, plan.index, "cmd"))
            fp = fingerprint(
                step=name,
                cmd=texts["cmd"],
                restart=texts.get("restart"),
                resources=resources.to_json(),
                params={params.names.get(p, p): str(v) for p, v in values.items()},
                shell=shell,
                # only what this instance's commands use: moving one dependency must not
                # rerun steps that never touch it (their parents' fingerprints carry the rest)
                dependencies={
                    n: v
                    for n, v in deps.items()
                    if f"$({n})" in texts["cmd"] or f"$({n})" in texts.get("restart", "")
                },
                parents=sorted(p.fingerprint for p in parents),
            )
            inst = Instance(
                name=iname,
                step=name,
                workspace=ws,
                depends=tuple(p.name for p in parents),
                params=values,
                cmd=texts["cmd"],
                restart=texts.get("restart"),
                resources=resources,
                fingerprint=fp,
                description=texts.get("description", ""),
            )
            mine[key] = inst
            instances.append(inst)
            edges.extend((p.name, iname) for p in parents)
        by_key[name] = mine
    g = nx.DiGraph()
    g.add_nodes_from(i.name for i in instances)
    g.add_edges_from(edges)
    return Expanded(instances, g)


def _project(used: tuple[str, ...], row: int, params: ParameterSet) -> tuple[str, ...]:
    return tuple(params.labels[p][row] for p in used) if used else ()


def _parents(
    ctx: Context,
    name: str,
    row: int,
    plans: dict[str, StepPlan],
    by_key: dict[str, dict[tuple[str, ...], Instance]],
) -> list[Instance]:
    out: list[Instance] = []
    for e in ctx.edges.get(name, []):
        if e.funnel:
            out.extend(by_key[e.parent].values())
        else:
            out.append(by_key[e.parent][_project(plans[e.parent].used, row, ctx.params)])
    return out


def _render(
    ctx: Context,
    plan: StepPlan,
    row: int,
    ws: str,
    plans: dict[str, StepPlan],
    by_key: dict[str, dict[tuple[str, ...], Instance]],
) -> dict[str, str]:
    params = ctx.params
    pnames = params.values
    close = plan.close

    def sub(m: Any) -> str:
        tok = m.group(1)
        if tok in pnames:
            return str(pnames[tok][row])
        base, _, attr = tok.rpartition(".")
        if base in pnames and attr == "label":
            return params.labels[base][row]
        if base in pnames and attr == "name":
            return params.names.get(base, base)
        if tok == WORKSPACE:
            return f"$({OUTPUT_PATH})/{ws}"
        ref = workspace_ref(tok)
        if ref is not None and ref in by_key:
            if ref in close:
                target = by_key[ref][_project(plans[ref].used, row, params)]
                return f"$({OUTPUT_PATH})/{target.workspace}"
            return f"$({OUTPUT_PATH})/{ref}"  # through a funnel: the step's root directory
        return m.group(0)

    return {k: TOKEN.sub(sub, v) if "$(" in v else v for k, v in plan.texts.items()}


def _resources(
    ctx: Context, plan: StepPlan, texts: dict[str, str], reported: set[str]
) -> Resources:
    run = plan.step.run
    batch = ctx.spec.batch
    counts: dict[str, int | None] = {}
    for key in COUNT_KEYS:
        v = getattr(run, key)
        if isinstance(v, str):
            rendered = texts.get(key, v)
            try:
                v = int(rendered)
            except ValueError:
                msg = (
                    f"{key.replace('_', ' ')} of step '{plan.step.name}' is '{rendered}' "
                    "after substitution, not an integer"
                )
                if msg not in reported:
                    reported.add(msg)
                    ctx.out.error(msg, _run_pos(ctx, plan.index, key))
                v = None
            else:
                low = 0 if key == "gpus" else 1
                if v < low:
                    msg = (
                        f"{key.replace('_', ' ')} of step '{plan.step.name}' is {v} after "
                        f"substitution; it must be ≥ {low}"
                    )
                    if msg not in reported:
                        reported.add(msg)
                        ctx.out.error(msg, _run_pos(ctx, plan.index, key))
        counts[key] = v
    walltime = texts.get("walltime")
    try:
        walltime_seconds(walltime)
    except ValueError as e:
        if str(e) not in reported:
            reported.add(str(e))
            ctx.out.error(f"step '{plan.step.name}': {e}", _run_pos(ctx, plan.index, "walltime"))
    exclusive: bool | dict[str, bool] | None
    if isinstance(run.exclusive, Exclusive):
        exclusive = run.exclusive.model_dump()
    elif isinstance(run.exclusive, str):
        exclusive = texts.get("exclusive", "").strip().lower() in ("true", "1", "yes", "on")
    else:
        exclusive = run.exclusive
    return Resources(
        walltime=walltime,
        bind=texts.get("bind"),
        bind_gpus=texts.get("bind_gpus"),
        reservation=texts.get("reservation") or batch.reservation,
        exclusive=exclusive,
        nested=run.nested,
        waitable=run.waitable,
        priority=run.priority,
        qos=texts.get("qos") or batch.qos,
        **counts,  # type: ignore[arg-type]
    )


def _dependency_identity(ctx: Context) -> dict[str, str]:
    """What identifies each env dependency: a pinned SHA if known, else its declaration."""
    ident: dict[str, str] = {}
    for d in ctx.spec.env.dependencies.paths:
        ident[d.name] = f"path:{d.path}"
    for g in ctx.spec.env.dependencies.git:
        sha = ctx.dependency_shas.get(g.name)
        ident[g.name] = f"git:{sha}" if sha else f"git:{g.url}@{g.hash or g.tag or g.branch or ''}"
    return ident
