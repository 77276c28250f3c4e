"""Issue #8, bad input: every malformed spec is one clear message at FILE:LINE:COL, exit 2, and
nothing is created — not in the current directory, and not in the record of a running study.

The corpus is `bad_specs/` (one realistic mistake per file) plus a few specs written at test
time because they are binary or huge; `bad_specs/EXPECTED.yaml` holds, for each, the line:col
and a phrase of the first error.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.engine.api import engine_holder
from reconciler.spec import SpecError, load_study

pytestmark = pytest.mark.timeout(180)  # a hang guard, not a performance budget

CORPUS = Path(__file__).parent / "bad_specs"
EXPECTED = YAML(typ="safe", pure=True).load((CORPUS / "EXPECTED.yaml").read_text())


# ---- specs written at test time ----------------------------------------------------------

HEAD = "description:\n  name: generated\n  description: written by the test\n"
STEP = "study:\n- name: run\n  description: run it\n  run:\n    cmd: ./app\n"


def _latin1_description() -> bytes:
    # An editor set to Latin-1: 'é' is the single byte 0xe9, at line 2, column 12.
    text = "description:\n  name: caf\xe9-study\n  description: r\xe9sum\xe9 of runs\n" + STEP
    return text.encode("latin-1")


def _utf16_with_bom() -> bytes:
    return (HEAD + STEP).encode("utf-16")  # Windows "Unicode": BOM ff fe, then NULs


def _over_16_mib() -> bytes:
    # A spec with a run log accidentally appended to it.
    return (HEAD + STEP + "# " + "log line\n# " * (2 * 1024 * 1024) + "\n").encode()


def _pasted_10mb_table() -> bytes:
    # 10.8 MB: a data table pasted into a block scalar, then a typo'd key after it.
    rows = "".join("      " + f"{i:07d} " * 12 + "\n" for i in range(105_000))
    text = (
        HEAD
        + "study:\n- name: plot\n  description: plot the table\n  run:\n    cmd: |\n"
        + rows
        + '    walltme: "01:00:00"\n'
    )
    return text.encode()


def _nesting_200_block() -> bytes:
    lines = [HEAD, STEP, "reconcile:\n"]
    lines += ["  " * (i + 1) + f"level{i}:\n" for i in range(200)]
    lines.append("  " * 201 + "leaf: 1\n")
    return "".join(lines).encode()


def _nul_filled_tail() -> bytes:
    # A file whose tail a crash left zero-filled: NULs start at line 9, column 1.
    return (HEAD + STEP).encode() + b"\x00" * 64


GENERATORS: dict[str, Callable[[], bytes]] = {
    "latin1_description": _latin1_description,
    "utf16_with_bom": _utf16_with_bom,
    "over_16_mib": _over_16_mib,
    "pasted_10mb_table": _pasted_10mb_table,
    "nesting_200_block": _nesting_200_block,
    "nul_filled_tail": _nul_filled_tail,
}


# ---- the corpus --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    line: int
    col: int
    says: str
    also: str | None
    xfail: str | None
    generated: bool

    def marks(self) -> list[pytest.MarkDecorator]:
        if self.xfail is None:
            return []
        return [pytest.mark.xfail(strict=True, reason=" ".join(self.xfail.split()))]


def _cases() -> list[Case]:
    out: list[Case] = []
    for section, generated in (("files", False), ("generated", True)):
        for name, e in EXPECTED[section].items():
            line, col = (int(x) for x in e["at"].split(":"))
            out.append(Case(name, line, col, e["says"], e.get("also"), e.get("xfail"), generated))
    return out


CASES = _cases()


def _params(cases: list[Case]) -> list[object]:
    return [pytest.param(c, id=c.name, marks=c.marks()) for c in cases]


def test_corpus_and_expectations_match() -> None:
    on_disk = {p.name for p in CORPUS.glob("*.yaml")} - {"EXPECTED.yaml"}
    listed = {c.name for c in CASES if not c.generated}
    assert on_disk == listed, "every spec in bad_specs/ needs an EXPECTED.yaml entry and back"
    assert set(GENERATORS) == {c.name for c in CASES if c.generated}
    assert len(CASES) >= 45
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.yaml", n) for n in on_disk)


@pytest.fixture(scope="session")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generated-specs")


def spec_path(case: Case, generated_dir: Path) -> Path:
    if not case.generated:
        return CORPUS / case.name
    path = generated_dir / f"{case.name}.yaml"
    if not path.exists():
        path.write_bytes(GENERATORS[case.name]())
    return path


# ---- (a) load_study ----------------------------------------------------------------------


@pytest.mark.parametrize("case", _params(CASES))
def test_load_study_rejects_with_position_and_message(
    case: Case, generated_dir: Path, figures: object
) -> None:
    path = spec_path(case, generated_dir)
    figures.bad_input(case.name)  # type: ignore[attr-defined]
    with pytest.raises(SpecError) as info:
        load_study(path)
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    assert errors, "a SpecError must carry at least one error"
    assert all(d.file == str(path) for d in errors)
    figures.bad_input_rejected(case.name, exact=False)  # type: ignore[attr-defined]
    first = errors[0]
    assert (first.line, first.col) == (case.line, case.col), str(first)
    assert case.says in first.message, str(first)
    assert "\n" not in first.message, "one message, one line"
    if case.also is not None:
        assert any(case.also in d.message for d in errors), str(info.value)
    figures.bad_input_rejected(case.name, exact=True)  # type: ignore[attr-defined]


# ---- (b) as a user runs it ---------------------------------------------------------------


def _reconciler(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **env},
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


@dataclass(frozen=True)
class CliRun:
    path: Path
    cwd: Path
    proc: subprocess.CompletedProcess[str]
    left_behind: list[str]  # what the cwd holds afterwards


def _cli_args(command: str, path: Path) -> list[str]:
    return ["validate", str(path)] if command == "validate" else ["run", "-fg", "-y", str(path)]


@pytest.fixture(scope="session")
def cli_runs(
    request: pytest.FixtureRequest, generated_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], CliRun]:
    """Every selected CLI case, each a real `python -m reconciler` in its own empty cwd, two at a
    time (each costs a Python start-up; the tests below then only look at the results)."""
    wanted: list[tuple[str, Case]] = []
    for item in request.session.items:
        command = CLI_TESTS.get(getattr(item, "originalname", ""))
        callspec = getattr(item, "callspec", None)
        if command and callspec is not None:
            wanted.append((command, callspec.params["case"]))
    for _, case in wanted:
        spec_path(case, generated_dir)  # write generated specs once, before the threads start
    base = tmp_path_factory.mktemp("cli")

    def one(job: tuple[str, Case]) -> tuple[tuple[str, str], CliRun]:
        command, case = job
        path = spec_path(case, generated_dir)
        cwd = base / f"{command}-{case.name}"
        cwd.mkdir()
        proc = _reconciler(_cli_args(command, path), cwd)
        return (command, case.name), CliRun(path, cwd, proc, sorted(os.listdir(cwd)))

    wanted.sort(key=lambda j: not j[1].generated)  # the big generated ones first
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, wanted))


def _check_cli(
    command: str, case: Case, runs: dict[tuple[str, str], CliRun], figures: object
) -> None:
    figures.cli(command)  # type: ignore[attr-defined]
    r = runs[(command, case.name)]
    proc = r.proc
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert r.left_behind == [], "a rejected spec must not create anything"
    assert re.search(re.escape(str(r.path)) + r":\d+:\d+: ", proc.stderr), proc.stderr
    figures.cli(command, clean=True)  # type: ignore[attr-defined]
    # The first error, where the user sees it (xfail cases: see test (a) for what is off).
    if case.xfail is None:
        assert f"{r.path}:{case.line}:{case.col}: " in proc.stderr, proc.stderr
        assert case.says in proc.stderr, proc.stderr


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_validate_exits_2_and_creates_nothing(
    case: Case, cli_runs: dict[tuple[str, str], CliRun], figures: object
) -> None:
    _check_cli("validate", case, cli_runs, figures)


# A representative dozen for `run` (validate above covers every case): one or more of each
# kind — YAML syntax, types, unknown keys, parameters, tokens, cycles, names — and the hostile
# documents (alias bomb, nesting, non-UTF-8, NUL, oversized, 10 MB).
RUN_SUBSET = {
    "01_tab_indentation.yaml",
    "13_nodes_as_word.yaml",
    "26_parameters_without_global.yaml",
    "32_parameter_lengths_differ.yaml",
    "42_workspace_of_non_ancestor.yaml",
    "48_two_step_cycle.yaml",
    "56_step_name_dotdot.yaml",
    "61_alias_bomb.yaml",
    "62_nesting_200_levels.yaml",
    "latin1_description",
    "nul_filled_tail",
    "over_16_mib",
    "pasted_10mb_table",
}


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name) for c in CASES if c.name in RUN_SUBSET]
)
def test_run_exits_2_and_creates_nothing(
    case: Case, cli_runs: dict[tuple[str, str], CliRun], figures: object
) -> None:
    _check_cli("run", case, cli_runs, figures)


CLI_TESTS = {
    "test_validate_exits_2_and_creates_nothing": "validate",
    "test_run_exits_2_and_creates_nothing": "run",
}


def test_run_subset_names_exist() -> None:
    assert {c.name for c in CASES} >= RUN_SUBSET


# ---- (c) the record of a running study is untouched --------------------------------------

GATED = """\
description:
  name: steady
  description: a study whose one step waits for a gate file
study:
- name: wait
  description: wait until the test opens the gate (at most a minute)
  run:
    cmd: |
      for i in $( seq 600 ); do [ -e "$(SPECROOT)/gate" ] && break; sleep 0.1; done
      echo done
"""

# The same study after a bad edit: a dependency cycle.
BROKEN = """\
description:
  name: steady
  description: the same study after a bad edit
study:
- name: wait
  description: wait
  run:
    cmd: echo wait
    depends: [report]
- name: report
  description: report
  run:
    cmd: echo report
    depends: [wait]
"""


def _instance_dump(db: Path) -> list[str]:
    """The instance table as SQL text (every row and column), read without writing."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT * FROM instance ORDER BY name").fetchall()
        cols = [c[0] for c in conn.execute("SELECT * FROM instance LIMIT 0").description]
        spec = conn.execute("SELECT spec_text FROM study").fetchone()[0]
    finally:
        conn.close()
    return [repr(cols), *(repr(r) for r in rows), spec]


def _state(db: Path) -> str | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT state FROM instance WHERE name = 'wait'").fetchone()
    finally:
        conn.close()
    return None if row is None else row[0]


def _wait_for(what: str, ok: Callable[[], bool], limit: float = 90.0) -> None:
    """Poll until `ok()` (a hang guard: the limit only turns a hang into a failure)."""
    end = time.monotonic() + limit
    while not ok():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_bad_spec_leaves_the_record_of_a_running_study_untouched(
    tmp_path: Path, figures: object
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    good, bad = specs / "steady.yaml", specs / "broken.yaml"
    good.write_text(GATED)
    bad.write_text(BROKEN)
    work = tmp_path / "work"
    work.mkdir()
    root = work / "steady"
    db = root / ".reconciler" / "record.db"
    started = _reconciler(["run", str(good), "-y", "-o", str(root)], work)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        _wait_for("the step to run", lambda: db.exists() and _state(db) == "RUNNING")
        before = _instance_dump(db)
        listing = sorted(os.listdir(work))
        for args in (
            ["run", str(bad), "-y", "-o", str(root)],
            ["run", str(bad), "-y"],
            ["run", "-fg", "-y", "-o", str(root), str(bad)],
            ["validate", str(bad)],
        ):
            figures.cli("run/validate against a running study")  # type: ignore[attr-defined]
            proc = _reconciler(args, work)
            assert proc.returncode == 2, proc.stdout + proc.stderr
            assert "Traceback" not in proc.stderr
            assert f"{bad}:9:14: dependency cycle: wait → report → wait" in proc.stderr
            figures.cli("run/validate against a running study", clean=True)  # type: ignore[attr-defined]
        assert _state(db) == "RUNNING", "the gate is closed: nothing can have ended the step"
        assert _instance_dump(db) == before
        assert sorted(os.listdir(work)) == listing, "`run BAD -y` made a workspace"
    finally:
        (specs / "gate").touch()
    _wait_for("the study to finish", lambda: _state(db) == "FINISHED")
    _wait_for("the engine to exit", lambda: engine_holder(root) is None)


# ---- found while writing these tests -----------------------------------------------------

LONG_LABELS = (
    "description:\n  name: alloys\n  description: a materials sweep with descriptive labels\n"
    "study:\n- name: simulate\n  description: one alloy, process, load and mesh\n  run:\n"
    "    cmd: ./sim $(ALLOY) $(PROCESS) $(LOAD) $(MESH) $(MODEL)\n"
    "global.parameters:\n"
    "  ALLOY: {values: [Ti-6Al-4V_extra_low_interstitial_grade23], label: ALLOY.%%}\n"
    "  PROCESS: {values: [annealed_then_hot_isostatic_pressed_1000C], label: PROCESS.%%}\n"
    "  LOAD: {values: [uniaxial_tension_strain_rate_1e-3_per_second], label: LOAD.%%}\n"
    "  MESH: {values: [hexahedral_second_order_refined_three_times], label: MESH.%%}\n"
    "  MODEL: {values: [crystal_plasticity_with_kinematic_hardening], label: MODEL.%%}\n"
)


def test_instance_names_too_long_for_a_file_name(tmp_path: Path) -> None:
    spec = tmp_path / "alloys.yaml"
    spec.write_text(LONG_LABELS)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = _reconciler(["run", "-fg", "-y", str(spec)], cwd)
    assert "Traceback" not in proc.stderr, proc.stderr[-400:]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(re.escape(str(spec)) + r":\d+:\d+: ", proc.stderr), proc.stderr
    assert list(cwd.iterdir()) == []


def test_reused_anchor_is_reported_in_our_words(tmp_path: Path) -> None:
    spec = tmp_path / "anchors.yaml"
    spec.write_text(
        "description:\n  name: &n anchors\n  description: &n reused anchor name\n"
        "study:\n- name: a\n  description: x\n  run:\n    cmd: echo\n"
    )
    proc = _reconciler(["validate", str(spec)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "composer.py" not in proc.stderr, proc.stderr
