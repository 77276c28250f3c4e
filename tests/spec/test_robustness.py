"""Property tests: any input either loads into a consistent Study or raises SpecError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.spec import SpecError, Study, load_study, load_study_text

NAMES = st.sampled_from(["a", "b", "c", "build", "run-1", "post.x", "a b", "a/b", "..", "Y", ""])
PARAM_NAMES = st.sampled_from(["X", "Y", "SIZE", "N", "n", "a"])
VALUES = st.one_of(st.integers(-3, 30), st.sampled_from(["a", "b", "a/b", "a b", "a_b", "..", ""]))
TOKENS = st.sampled_from(
    [
        "$(X)",
        "$(Y)",
        "$(SIZE)",
        "$(X.label)",
        "$(N.name)",
        "$(V)",
        "$(NOPE)",
        "$(a.workspace)",
        "$(b.workspace)",
        "$(WORKSPACE)",
        "$(OUTPUT_PATH)",
        "$(SPECROOT)",
        "$(LAUNCHER)",
        "$(LAUNCHER)[2n, 3p]",
        "$(LAUNCHER)[1,1]",
        "'$(Q)'",
        "echo",
        "$(",
        ")",
    ]
)

FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _quote(s: object) -> str:
    return "'" + str(s).replace("'", "''") + "'"


@st.composite
def specs(draw: st.DrawFn) -> str:
    steps = draw(st.lists(NAMES, min_size=1, max_size=5))
    lines = ["description: {name: fuzz, description: fuzzed}"]
    if draw(st.booleans()):
        v = draw(st.sampled_from(["1", "$(X)", "$(V)", "x"]))
        lines += ["env:", "  variables:", f"    V: {_quote(v)}"]
    lines.append("study:")
    for name in steps:
        cmd = " ".join(draw(st.lists(TOKENS, max_size=4))) or "true"
        deps = draw(st.lists(st.sampled_from([*steps, "zz", "a_*", "b_*"]), max_size=3))
        lines += [
            f"- name: {_quote(name)}",
            "  description: d",
            "  run:",
            f"    cmd: {_quote(cmd)}",
        ]
        if deps:
            lines.append(f"    depends: [{', '.join(_quote(d) for d in deps)}]")
        if draw(st.booleans()):
            procs = draw(st.sampled_from(["1", "4", "0", "$(X)", "$(V)", "x"]))
            lines.append(f"    procs: {procs}")
        if draw(st.booleans()):
            lines.append(f"    nodes: {draw(st.sampled_from(['1', '2', '$(SIZE)']))}")
    names = draw(st.lists(PARAM_NAMES, max_size=3, unique=True))
    if names:
        lines.append("global.parameters:")
        for p in names:
            values = draw(st.lists(VALUES, min_size=0, max_size=4))
            label = draw(st.sampled_from([f"{p}.%%", p, "%%", f"{p}/%%"]))
            lines += [
                f"  {_quote(p)}:",
                f"    values: [{', '.join(_quote(v) for v in values)}]",
                f"    label: {_quote(label)}",
            ]
    return "\n".join(lines) + "\n"


@st.composite
def clean_specs(draw: st.DrawFn) -> str:
    """Mostly valid specs: unique safe names, parents declared anywhere, equal-length params."""
    count = draw(st.integers(1, 6))
    names = [f"s{k}" for k in range(count)]
    order = draw(st.permutations(names))
    rows = draw(st.integers(1, 4))
    pnames = draw(st.lists(st.sampled_from(["X", "Y", "SIZE"]), max_size=3, unique=True))
    lines = ["description: {name: fuzz, description: fuzzed}", "study:"]
    for name in order:
        k = names.index(name)
        parents = draw(st.lists(st.sampled_from(names[:k]), max_size=2, unique=True)) if k else []
        deps = [p + ("_*" if draw(st.booleans()) else "") for p in parents]
        used = draw(st.lists(st.sampled_from(pnames), max_size=2, unique=True)) if pnames else []
        refs = [f"$({p}.workspace)" for p in parents if draw(st.booleans())]
        cmd = " ".join(["echo", *(f"$({p})" for p in used), *refs])
        lines += [f"- name: {name}", "  description: d", "  run:", f"    cmd: '{cmd}'"]
        if deps:
            lines.append(f"    depends: [{', '.join(deps)}]")
    if pnames:
        lines.append("global.parameters:")
        for p in pnames:
            values = draw(st.lists(st.integers(0, 3), min_size=rows, max_size=rows))
            lines += [f"  {p}:", f"    values: {values}", f"    label: {p}.%%"]
    return "\n".join(lines) + "\n"


@FAST
@given(clean_specs())
def test_clean_random_specs_load(text: str) -> None:
    study = load_study_text(text, "fuzz.yaml")
    _consistent(study)
    steps = {i.step for i in study.instances}
    assert steps == set(study.step_graph.nodes)


def _consistent(study: Study) -> None:
    names = [i.name for i in study.instances]
    assert len(names) == len(set(names))
    assert len({i.workspace for i in study.instances}) == len(names)
    seen: set[str] = set()
    for i in study.instances:
        assert set(i.depends) <= seen, "instances must come in topological order"
        assert ".." not in i.workspace.split("/")
        assert not i.workspace.startswith("/")
        seen.add(i.name)
    assert set(study.graph.nodes) == seen


def _load(text: str) -> None:
    try:
        study = load_study_text(text, "fuzz.yaml")
    except SpecError as e:
        assert e.diagnostics
        assert all(str(d).startswith("fuzz.yaml") for d in e.diagnostics)
        return
    _consistent(study)


@FAST
@given(specs())
def test_random_specs_load_or_raise_spec_error(text: str) -> None:
    _load(text)


YAMLISH = st.text(
    alphabet=st.sampled_from(list("abcXY:-[]{}&*!|>'\"#%@`$(). \n\t,?0123456789")), max_size=200
)


@FAST
@given(YAMLISH)
def test_random_yaml_like_text(text: str) -> None:
    _load(text)


@FAST
@given(st.text(max_size=300))
def test_random_unicode_text(text: str) -> None:
    _load(text)


@FAST
@given(st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    try:
        study = load_study(path)
    except SpecError as e:
        assert e.diagnostics
        return
    _consistent(study)


@FAST
@given(specs(), st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_random_specs_with_corrupted_bytes(tmp_path: Path, text: str, at: int, junk: bytes) -> None:
    raw = text.encode()
    at = min(at, len(raw))
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw[:at] + junk + raw[at:])
    try:
        load_study(path)
    except SpecError as e:
        assert e.diagnostics
