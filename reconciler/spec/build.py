"""One call from spec text to a Study: load → check → expand, all errors of a file at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import networkx as nx

from reconciler.spec import check, expand, pool, size
from reconciler.spec.diagnostics import Collector, SpecError
from reconciler.spec.instance import Study
from reconciler.spec.load import Loaded, decode, load_text, read_spec_bytes
from reconciler.spec.pgen import ParameterSet, PgenError, from_spec, run_pgen
from reconciler.spec.size import MAX_INSTANCES


def load_study(
    path: str | os.PathLike[str],
    *,
    pgen: str | os.PathLike[str] | None = None,
    pargs: Mapping[str, str] | None = None,
    dependency_shas: Mapping[str, str] | None = None,
    hashws: bool = False,
    max_instances: int | None = MAX_INSTANCES,
) -> Study:
    """Read, validate and expand the spec at `path`. Raises SpecError with every problem.

    A study that would have more than `max_instances` instances is refused before it is
    expanded (see size.py); None means no limit (for a spec a record already accepted)."""
    file = os.fspath(path)
    out = Collector(file)
    raw = read_spec_bytes(file, out)
    text = decode(raw, out) if raw is not None else None
    out.raise_if_errors()
    assert text is not None
    params: ParameterSet | None = None
    if pgen is not None:
        loaded = load_text(text, file, out)
        if loaded is None:
            out.raise_if_errors()
            raise AssertionError("unreachable")
        params = _run_pgen(Path(pgen), loaded, Path(file), pargs or {}, out)
        return build_study(
            loaded, file, out, params=params, dependency_shas=dependency_shas, hashws=hashws,
            max_instances=max_instances, text=text,
        )  # fmt: skip
    return load_study_text(
        text, file, out=out, dependency_shas=dependency_shas, hashws=hashws,
        max_instances=max_instances,
    )  # fmt: skip


def load_study_text(
    text: str,
    file: str = "<spec>",
    *,
    out: Collector | None = None,
    params: ParameterSet | None = None,
    dependency_shas: Mapping[str, str] | None = None,
    hashws: bool = False,
    max_instances: int | None = MAX_INSTANCES,
) -> Study:
    """Spec text → Study (for specs read from git blobs, tests and fuzzing)."""
    out = out or Collector(file)
    loaded = load_text(text, file, out)
    if loaded is None:  # no model to check further; otherwise keep collecting
        out.raise_if_errors()
        raise AssertionError("unreachable")
    return build_study(
        loaded, file, out, params=params, dependency_shas=dependency_shas, hashws=hashws,
        max_instances=max_instances, text=text,
    )  # fmt: skip


def _run_pgen(
    pgen: Path, loaded: Loaded, spec_file: Path, pargs: Mapping[str, str], out: Collector
) -> ParameterSet:
    variables = {k: v for k, v in loaded.spec.env.variables.items()}
    kwargs = {
        **pargs,
        "OUTPUT_PATH": str(variables.get("OUTPUT_PATH", os.getcwd())),
        "SPECROOT": str(spec_file.resolve().parent),
    }
    if loaded.spec.parameters:
        out.warn(
            "global.parameters is ignored because --pgen provides the parameters",
            loaded.positions.key(("global.parameters",)),
        )
    try:
        return run_pgen(pgen, variables, kwargs)
    except PgenError as e:
        out.error(str(e))
        out.raise_if_errors()
        raise AssertionError("unreachable") from e


def build_study(
    loaded: Loaded,
    file: str,
    out: Collector,
    *,
    params: ParameterSet | None = None,
    dependency_shas: Mapping[str, str] | None = None,
    hashws: bool = False,
    max_instances: int | None = MAX_INSTANCES,
    text: str | None = None,
) -> Study:
    spec, pos = loaded.spec, loaded.positions
    params = params if params is not None else from_spec(spec.parameters)
    _warn_unused(loaded, out)
    check.check_study_name(spec, pos, out)
    index = check.check_step_names(spec, pos, out)
    edges = check.step_edges(spec, index, pos, out)
    steps = check.step_graph(spec, edges, pos, out)
    check.check_parameters(params, pos, out)
    check.check_git_urls(spec, pos, out)
    pool.check_pool(spec, pos, out)
    ctx = expand.Context(
        spec, pos, params, edges, steps or nx.DiGraph(), out, dict(dependency_shas or {}), hashws
    )
    expand.check_names_unique(ctx)
    variables = expand.resolve_variables(ctx)
    if steps is None:  # no order to expand in; report what else we found
        out.raise_if_errors()
        raise AssertionError("unreachable")
    # Spec order where it is already topological (stable for users), else sorted by networkx.
    rank = {s.name: i for i, s in enumerate(spec.study)}
    order = list(nx.lexicographical_topological_sort(steps, key=lambda n: rank[n]))
    plans = expand.plan_steps(ctx, variables, order)
    expand.used_parameters(ctx, plans, order)
    out.raise_if_errors()  # expansion needs names, edges and tokens that make sense
    if max_instances is None:  # a record's own spec: it was counted when it was applied
        counted = None
    else:
        used = {name: plan.used for name, plan in plans.items()}
        measured = size.measure(params, used, ctx.edges, order, max_instances)
        size.check(spec, pos, out, measured, max_instances)
        out.raise_if_errors()  # before a single instance is made
        counted = measured.combos
    expanded = expand.expand(ctx, plans, order, counted)
    pool.check_fit(spec, expanded.instances, pos, out)
    out.raise_if_errors()
    return Study(
        spec=spec,
        path=file,
        instances=expanded.instances,
        graph=expanded.graph,
        step_graph=steps,
        warnings=[str(d) for d in out.warnings],
        text=text,
    )


def _warn_unused(loaded: Loaded, out: Collector) -> None:
    """Keys Maestro accepts but never acts on: accepted, with a word to the author."""
    spec, pos = loaded.spec, loaded.positions
    for i, step in enumerate(spec.study):
        for key in ("pre", "post"):
            if getattr(step.run, key) is not None:
                out.warn(
                    f"run.{key} of step '{step.name}' is accepted for Maestro compatibility "
                    "but not run (Maestro ignores it too)",
                    pos.key(("study", i, "run", key)),
                )
    if spec.env.sources:
        out.warn(
            "env.sources is accepted for Maestro compatibility but not applied",
            pos.key(("env", "sources")),
        )
    if spec.env.dependencies.spack:
        out.warn(
            "env.dependencies.spack is accepted for Maestro compatibility but not implemented",
            pos.key(("env", "dependencies", "spack")),
        )


def validate_text(text: str, file: str) -> list[str]:
    """Warnings of a valid spec; raises SpecError otherwise. Used by `validate`."""
    return load_study_text(text, file).warnings


__all__ = ["SpecError", "build_study", "load_study", "load_study_text", "validate_text"]
