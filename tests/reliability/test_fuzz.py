"""Issue #8, property-based fuzzing of load → validate → expand.

Unlike tests/spec/test_robustness.py (flat random text and single-line specs), these strategies
build *structured* specs: real keys of every block mixed with near-miss and junk keys, values of
every YAML type, cmd lines made of real tokens ($(X), $(X.label), $(a.workspace), $(LAUNCHER)[..],
quoted and broken ones), depends lists with cycles, funnels and dangling names, and parameter
tables with colliding labels and unequal lengths. The documents are dumped as block YAML (so
errors have real positions), and a second strategy mutates them line by line.

The property: `load_study_text` returns a consistent Study or raises SpecError — nothing else.
Runs are derandomized (same examples on every machine); the conftest prints how many ran.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.spec import SpecError, Study, load_study_text

pytestmark = pytest.mark.timeout(300)  # a hang guard

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---- vocabulary ---------------------------------------------------------------------------

STEP_NAMES = ["a", "b", "c", "build", "run-1", "post.x", "s(1)", "a b", "a/b", "..", "x.workspace"]
PARAM_NAMES = ["X", "Y", "SIZE", "N", "V", "a"]
VAR_NAMES = ["V", "W", "X", "OUTPUT_PATH", "SPECROOT", "LAUNCHER"]
JUNK_KEYS = ["", "bogus", "cmdd", "Name", "parameters", "run ", "depend", "lable", "1", "<<"]

# Values that exercise the label rules. Deliberately absent: values made only of dots and
# characters the directory-name filter strips (e.g. "..!"), which hit the known bug covered
# by test_hostile.py::test_label_that_sanitises_to_dot_dot (an xfail) — here they would only
# fail every run for the same reason.
PARAM_VALUES = st.one_of(
    st.integers(-3, 40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["a", "b", "a b", "a_b", "C", "C++", "..", ".", "a/b", "x y", "é", ""]),
    st.sampled_from(["$(X)", "1e3", "-1", "true", "yes", "~", "%%", "a.b", "(x)"]),
)
LABELS = st.sampled_from(["X.%%", "%%", "X", "X/%%", "%%.x", "L.%%.%%", "", "/%%", "%%/..", "é%%"])

TOKENS = st.sampled_from(
    [
        "echo",
        "$(X)",
        "$(Y)",
        "$(SIZE)",
        "$(X.label)",
        "$(N.name)",
        "$(V)",
        "$(W)",
        "$(NOPE)",
        "$(date)",
        "$( date )",
        "`date`",
        "$(a.workspace)",
        "$(b.workspace)",
        "$(c.workspace)",
        "$(zz.workspace)",
        "$(WORKSPACE)",
        "$(OUTPUT_PATH)",
        "$(SPECROOT)",
        "$(LAUNCHER)",
        "$(LAUNCHER)[2n, 4p]",
        "$(LAUNCHER)[1p]",
        "$(LAUNCHER)[0n]",
        "$(LAUNCHER)[junk]",
        "'$(Q)'",
        '"$(Q)"',
        "$(",
        "$()",
        ")",
        ";",
        "|",
        "&&",
        "\n",
        "#",
    ]
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    st.sampled_from(["$(X)", "$(V)", "01:00:00", "1-00:00:00", "90", "two", "HIGH", "local"]),
)
ANY = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "x", 1]), inner, max_size=3),
    ),
    max_leaves=6,
)


class Chaos:
    """How broken one example is: a third are clean (junk-free, so they reach expansion), the
    rest get junk values and keys with a drawn probability."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.junk = draw(st.sampled_from([0, 0, 3, 15]))  # percent
        self.drop = draw(st.sampled_from([0, 0, 2, 8]))

    def chance(self, percent: float) -> bool:
        # Hypothesis shrinks integers towards 0: make 0 mean "keep the real thing".
        return self.draw(st.integers(0, 999)) >= 1000 - 10 * percent

    def maybe(self, value: Any, scale: float = 1.0) -> Any:
        """Usually `value`; sometimes a value of another type altogether."""
        if self.junk and self.chance(self.junk * scale):
            return self.draw(ANY)
        return value

    def keyed(self, mapping: dict[Any, Any]) -> dict[Any, Any]:
        """Drop some keys, add some junk ones (real vocabulary mixed with junk)."""
        if not (self.junk or self.drop):
            return mapping
        out = {k: v for k, v in mapping.items() if not self.chance(self.drop)}
        if self.chance(self.junk):
            out[self.draw(st.sampled_from(JUNK_KEYS))] = self.draw(ANY)
        return out


@st.composite
def run_blocks(draw: st.DrawFn, steps: list[str], chaos: Chaos) -> dict[Any, Any]:
    cmd = " ".join(draw(st.lists(TOKENS, min_size=1, max_size=6)))
    run: dict[Any, Any] = {"cmd": chaos.maybe(cmd)}
    parents = draw(st.lists(st.sampled_from([*steps, "zz", "biuld"]), max_size=3))
    if parents or draw(st.booleans()):
        depends = [p + ("_*" if draw(st.integers(0, 3)) == 0 else "") for p in parents]
        run["depends"] = chaos.maybe(depends)
    optional = {
        "nodes": st.sampled_from([1, 2, 0, -1, "$(N)", "$(V)", "two", None]),
        "procs": st.sampled_from([1, 4, 8, 0, "$(SIZE)", "$(X)", "x"]),
        "gpus": st.sampled_from([0, 1, -1, "$(V)"]),
        "cores per task": st.sampled_from([1, 2, "$(V)"]),
        "walltime": st.sampled_from(["01:00:00", "1h", 90, -1, "$(V)", "1-00:00:00", ""]),
        "restart": st.sampled_from(["echo again $(X)", "$(NOPE)", None]),
        "exclusive": st.sampled_from([True, False, "$(V)", "always", {"allocation": True}]),
        "priority": st.sampled_from(["HIGH", "low", "urgent", 0.5, 2]),
        "qos": st.sampled_from(["normal", "$(V)"]),
        "pre": st.sampled_from(["echo pre", None]),
    }
    for key, values in optional.items():
        if draw(st.integers(0, 4)) == 0:
            run[key] = draw(values)
    return chaos.keyed(run)


@st.composite
def spec_data(draw: st.DrawFn) -> dict[Any, Any]:
    chaos = Chaos(draw)
    steps = draw(st.lists(st.sampled_from(STEP_NAMES), min_size=1, max_size=5))
    doc: dict[Any, Any] = {
        "description": chaos.maybe(
            {
                "name": draw(st.sampled_from(["fuzz", "fuzz", "fuzz", "fuzz", "", "a/b"])),
                "description": "fuzzed",
            }
        )
    }
    if draw(st.booleans()):
        variables = {
            k: draw(st.sampled_from(["1", "2", "$(X)", "$(V)", "$(W)", "x", "", 3, None]))
            for k in draw(st.lists(st.sampled_from(VAR_NAMES), max_size=3, unique=True))
        }
        env: dict[Any, Any] = {"variables": chaos.maybe(variables)}
        if draw(st.integers(0, 3)) == 0:
            env["labels"] = {"X": "lab"}
        if draw(st.integers(0, 3)) == 0:
            env["dependencies"] = {"paths": [{"name": "X", "path": "."}]}
        doc["env"] = chaos.keyed(env)
    if draw(st.integers(0, 3)) == 0:
        doc["batch"] = chaos.keyed(
            {
                "type": draw(st.sampled_from(["local", "local", "slurm", "flux", "sge", 1])),
                "queue": "q",
            }
        )
    study = []
    for name in steps:
        step = {"name": chaos.maybe(name, 0.5), "description": "d"}
        step["run"] = chaos.maybe(draw(run_blocks(steps, chaos)), 0.5)
        study.append(chaos.keyed(step))
    doc["study"] = chaos.maybe(study, 0.5)
    pnames = draw(st.lists(st.sampled_from(PARAM_NAMES), max_size=3, unique=True))
    if pnames:
        rows = draw(st.integers(1, 4))
        table: dict[Any, Any] = {}
        for p in pnames:
            n = rows if draw(st.integers(0, 5)) else draw(st.integers(0, 5))  # unequal lengths
            values = draw(st.lists(PARAM_VALUES, min_size=n, max_size=n))
            table[p] = chaos.keyed({"values": chaos.maybe(values, 0.5), "label": draw(LABELS)})
        doc["global.parameters"] = chaos.maybe(table, 0.5)
    if draw(st.integers(0, 4)) == 0:
        doc["reconcile"] = chaos.keyed({"retries": draw(st.sampled_from([0, 2, 2, 5, -1, "x"]))})
    return chaos.keyed(doc)


_DUMPER = YAML(typ="safe", pure=True)
_DUMPER.default_flow_style = False


def dump(data: Any) -> str:
    buf = io.StringIO()
    _DUMPER.dump(data, buf)
    return buf.getvalue()


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    """A structured spec, then line-level edits a hand or a bad merge makes."""
    lines = dump(draw(spec_data())).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        edit = draw(
            st.sampled_from(["drop", "dup", "indent", "dedent", "tab", "anchor", "alias", "insert"])
        )
        line = lines[i]
        if edit == "drop":
            del lines[i]
        elif edit == "dup":
            lines.insert(i, line)
        elif edit == "indent":
            lines[i] = "  " + line
        elif edit == "dedent":
            lines[i] = line[2:] if line.startswith("  ") else line
        elif edit == "tab":
            lines[i] = "\t" + line.lstrip(" ")
        elif edit == "anchor" and ":" in line and not line.rstrip().endswith(":"):
            key, _, value = line.partition(":")
            lines[i] = f"{key}: &a{value}"
        elif edit == "alias" and ":" in line:
            key, _, _ = line.partition(":")
            lines[i] = f"{key}: *a"
        else:
            lines.insert(i, draw(st.sampled_from(["<<: *a", "- *a", "x: [", "'", "---", "? y"])))
    return "\n".join(lines) + "\n"


# ---- the property -------------------------------------------------------------------------


def consistent(study: Study) -> None:
    names = [i.name for i in study.instances]
    assert len(names) == len(set(names)), "instance names must be unique"
    workspaces = [i.workspace for i in study.instances]
    assert len(workspaces) == len(set(workspaces)), "instance workspaces must be unique"
    seen: set[str] = set()
    for inst in study.instances:
        parts = inst.workspace.split("/")
        assert not inst.workspace.startswith("/"), inst.workspace
        assert ".." not in parts and "." not in parts and "" not in parts, inst.workspace
        assert parts[0] == inst.step, "an instance lives under its step's directory"
        assert set(inst.depends) <= seen, "depends must point to earlier instances"
        assert study.graph.has_node(inst.name)
        for parent in inst.depends:
            assert study.graph.has_edge(parent, inst.name)
        seen.add(inst.name)
    assert set(study.graph.nodes) == seen
    assert {i.step for i in study.instances} == set(study.step_graph.nodes)


def check(text: str, test: str, figures: Any) -> None:
    try:
        study = load_study_text(text, "fuzz.yaml")
    except SpecError as e:
        errors = [d for d in e.diagnostics if d.severity == "error"]
        assert errors, "a SpecError must carry an error"
        assert all(str(d).startswith("fuzz.yaml") for d in errors)
        figures.fuzz_example(test)
        return
    consistent(study)
    figures.fuzz_example(test, loaded=True)


@settings(FUZZ, max_examples=400)
@given(data=spec_data())
def test_structured_specs_load_or_raise_spec_error(data: dict[Any, Any], figures: Any) -> None:
    check(dump(data), "structured", figures)


@FUZZ
@given(text=mutated_texts())
def test_mutated_specs_load_or_raise_spec_error(text: str, figures: Any) -> None:
    check(text, "mutated", figures)


@st.composite
def valid_data(draw: st.DrawFn) -> dict[Any, Any]:
    """Mostly-valid DAGs (parents always earlier, equal-length parameters) so that plenty of
    examples reach expansion: funnels, workspace references, labels, launcher tokens."""
    count = draw(st.integers(1, 6))
    names = [f"s{k}" for k in range(count)]
    pnames = draw(st.lists(st.sampled_from(["X", "Y", "SIZE"]), max_size=3, unique=True))
    rows = draw(st.integers(1, 4))
    study = []
    for k, name in enumerate(names):
        parents = draw(st.lists(st.sampled_from(names[:k]), max_size=2, unique=True)) if k else []
        used = draw(st.lists(st.sampled_from(pnames), max_size=2, unique=True)) if pnames else []
        refs = [f"$({p}.workspace)" for p in parents if draw(st.booleans())]
        tokens = [f"$({p})" for p in used] + [f"$({p}.label)" for p in used[:1]]
        launcher = draw(st.sampled_from(["", "$(LAUNCHER)[1p]", "$(LAUNCHER)"]))
        run: dict[str, Any] = {"cmd": " ".join(["echo", launcher, *tokens, *refs])}
        if launcher:
            run["procs"] = 2
        if parents:
            run["depends"] = [p + ("_*" if draw(st.booleans()) else "") for p in parents]
        study.append({"name": name, "description": "d", "run": run})
    doc: dict[str, Any] = {"description": {"name": "fuzz", "description": "d"}, "study": study}
    if pnames:
        doc["global.parameters"] = {
            p: {
                "values": draw(st.lists(PARAM_VALUES, min_size=rows, max_size=rows)),
                "label": draw(st.sampled_from([f"{p}.%%", "%%", f"{p}-%%"])),
            }
            for p in pnames
        }
    return doc


@FUZZ
@given(data=valid_data())
def test_mostly_valid_specs_expand_consistently(data: dict[str, Any], figures: Any) -> None:
    check(dump(data), "mostly-valid", figures)
