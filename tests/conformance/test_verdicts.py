"""Maestro's own spec corpus: our accept/reject verdict matches maestrowf 1.2.1's on every file,
and each rejection says the same thing in our words, on the right line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.spec import SpecError, load_study

HERE = Path(__file__).parent
CORPUS = HERE / "maestro"
PGEN = HERE / "batched_pgen.py"
PARGS = {"CSV": str(HERE / "batched_params.csv")}
BATCHED = "samples/how_to_guide/batched_parameters/batched_parameters_demo.yaml"


@dataclass(frozen=True)
class Verdict:
    path: str
    ok: bool
    maestro_message: str


def verdicts() -> list[Verdict]:
    out = []
    for line in (CORPUS / "EXPECTED_LOAD_RESULTS.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        status, rest = line.split(maxsplit=1)
        path, _, message = rest.partition(" | ")
        out.append(Verdict(path.strip(), status == "OK", message.strip()))
    return out


VERDICTS = verdicts()

# Maestro's message → the phrases ours must contain, and the line of the mistake.
REJECTIONS: dict[str, tuple[tuple[str, ...], int]] = {
    "tests/specification/test_specs/duplicate_dependency.yml": (
        ("dependency name 'LULESH'", "already taken"),
        14,
    ),
    "tests/specification/test_specs/empty_variables.yml": (("OUTPUT_PATH", "null"), 7),
    "tests/specification/test_specs/error_parameterized.yml": (
        ("GREETING2.label", "must be a string"),
        34,
    ),
    "tests/specification/test_specs/extra_study_params.yml": (
        ("unknown key 'bad'", "study step 'hello_world'"),
        13,
    ),
    "tests/specification/test_specs/missing_step.yml": (("study", "non-empty list of steps"), 10),
    "tests/specification/test_specs/missing_step_desc.yml": (
        ("'description' is missing", "study step 'hello_world'"),
        11,
    ),
}


def load(path: str):
    if path == BATCHED:
        return load_study(CORPUS / path, pgen=PGEN, pargs=PARGS)
    return load_study(CORPUS / path)


def test_corpus_is_complete() -> None:
    assert len(VERDICTS) == 29
    assert (CORPUS / "LICENSE.maestrowf").is_file()
    for v in VERDICTS:
        assert (CORPUS / v.path).is_file(), v.path
    assert {v.path for v in VERDICTS if not v.ok} == set(REJECTIONS)


@pytest.mark.parametrize("v", VERDICTS, ids=lambda v: v.path)
def test_verdict_matches_maestro(v: Verdict) -> None:
    if v.ok:
        study = load(v.path)
        assert study.instances
        return
    with pytest.raises(SpecError):
        load(v.path)


@pytest.mark.parametrize("path", sorted(REJECTIONS))
def test_rejection_says_the_same_thing(path: str) -> None:
    phrases, _ = REJECTIONS[path]
    with pytest.raises(SpecError) as info:
        load_study(CORPUS / path)
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    assert len(errors) == 1, str(info.value)
    for phrase in phrases:
        assert phrase in errors[0].message
    assert str(errors[0]).startswith(f"{CORPUS / path}:")


@pytest.mark.parametrize("path", sorted(REJECTIONS))
def test_rejection_is_on_the_right_line(path: str) -> None:
    _, line = REJECTIONS[path]
    with pytest.raises(SpecError) as info:
        load_study(CORPUS / path)
    assert [d.line for d in info.value.diagnostics if d.severity == "error"] == [line]


def test_batched_parameters_needs_its_pgen() -> None:
    with pytest.raises(SpecError) as info:
        load_study(CORPUS / BATCHED)
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    assert {e.message.split()[0] for e in errors} == {"$(PARAM1)", "$(PARAM2)", "$(PARAM3)"}
    assert all("--pgen" in e.message for e in errors)


def test_batched_parameters_with_a_pgen_gives_maestros_five_instances() -> None:
    study = load_study(CORPUS / BATCHED, pgen=PGEN, pargs=PARGS)
    assert len(study.instances) == 5  # measured with maestrowf 1.2.1 and its sample pgen
    first = study.instances[0]
    assert first.name == "echo-params_PARAM1.1.PARAM2.a.PARAM3.0.1"
    assert first.workspace == "echo-params/PARAM1.1.PARAM2.a.PARAM3.0.1"
    assert first.cmd.strip() == 'echo "PARAM1: 1;  PARAM2: a;  PARAM3: 0.1"'


def test_batched_pgen_csv_relative_to_the_spec(tmp_path: Path) -> None:
    spec = tmp_path / "demo.yaml"
    spec.write_text((CORPUS / BATCHED).read_text())
    (tmp_path / "rows.csv").write_text("PARAM1,PARAM2,PARAM3\n1,2,3\n4,5,6\n")
    study = load_study(spec, pgen=PGEN, pargs={"CSV": "rows.csv"})
    assert [i.name for i in study.instances] == [
        "echo-params_PARAM1.1.PARAM2.2.PARAM3.3",
        "echo-params_PARAM1.4.PARAM2.5.PARAM3.6",
    ]


# Instance counts of accepted samples (hello_bye_parameterized measured with Maestro: 8).
COUNTS = {
    "samples/hello_world/hello_world.yaml": 1,
    "samples/hello_world/hello_bye_parameterized.yaml": 8,
    "samples/hello_world/hello_bye_world.yaml": 2,
}


@pytest.mark.parametrize(("path", "count"), sorted(COUNTS.items()))
def test_sample_instance_counts(path: str, count: int) -> None:
    assert len(load_study(CORPUS / path).instances) == count


def test_lulesh_sample_expansion() -> None:
    study = load_study(CORPUS / "samples/lulesh/lulesh_sample1_unix.yaml")
    by = study.by_name()
    run = by["run-lulesh_ITER.10.SIZE.10"]
    assert run.workspace == "run-lulesh/ITER.10.SIZE.10"
    assert run.depends == ("make-lulesh",)
    assert run.cmd == "$(LULESH)/lulesh2.0 -s 10 -i 10 -p > SIZE.10.ITER.10.log\n"
    # Makefile syntax inside sed's single quotes is left alone, as Maestro leaves it.
    assert "'s/^CXX = $(MPICXX)/CXX = $(SERCXX)/'" in by["make-lulesh"].cmd
    post = by["post-process-lulesh"]
    assert "$(OUTPUT_PATH)/run-lulesh" in post.cmd
    assert len(post.depends) == 9
