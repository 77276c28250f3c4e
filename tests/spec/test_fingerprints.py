"""Fingerprints: same content → same hash anywhere; any change that decides a result → new hash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from spec_helpers import params, step, study

from reconciler.spec import Study, load_study, load_study_text
from reconciler.spec.fingerprint import VERSION

Load = Callable[..., Study]

BASE_STEPS = (
    step("build", cmd="make"),
    step("run", cmd="./sim $(SIZE)", depends="[build]", more="    procs: 2\n"),
    step("post", cmd="ls $(run.workspace)", depends="[run_*]"),
    step("other", cmd="echo unrelated"),
)
BASE_PARAMS = params(SIZE=("[10, 20]", "SIZE.%%"))


def fps(text: str) -> dict[str, str]:
    return {i.name: i.fingerprint for i in load_study_text(text).instances}


BASE = fps(study(*BASE_STEPS, after=BASE_PARAMS))


def changed(after: dict[str, str]) -> set[str]:
    return {n for n in BASE if after.get(n) != BASE[n]}


def test_stable_across_loads() -> None:
    assert fps(study(*BASE_STEPS, after=BASE_PARAMS)) == BASE


def test_golden_value() -> None:
    # Only a deliberate change of the fingerprint's inputs (with a VERSION bump) may change this:
    # records of finished studies compare against fingerprints computed by earlier processes.
    assert VERSION == 1
    assert fps(study(step("a", cmd="echo hi"))) == {"a": "33f3cd7334b81c5c986a03c99bdb69cb"}


def test_stable_across_spec_file_location(tmp_path: Path) -> None:
    text = study(step("a", cmd="cp $(SPECROOT)/x $(OUTPUT_PATH)/y"), *BASE_STEPS, after=BASE_PARAMS)
    one = tmp_path / "one" / "study.yaml"
    two = tmp_path / "elsewhere" / "deeper" / "renamed.yml"
    for p in (one, two):
        p.parent.mkdir(parents=True)
        p.write_text(text)
    a = {i.name: i.fingerprint for i in load_study(one).instances}
    b = {i.name: i.fingerprint for i in load_study(two).instances}
    assert a == b


def test_unchanged_by_output_path() -> None:
    text = study(
        *BASE_STEPS,
        before="env:\n  variables:\n    OUTPUT_PATH: /somewhere/else\n",
        after=BASE_PARAMS,
    )
    assert fps(text) == BASE


def test_unchanged_by_step_or_study_description() -> None:
    steps = [
        s.replace("description: step run", "description: reworded entirely") for s in BASE_STEPS
    ]
    text = study(*steps, after=BASE_PARAMS).replace("a test study", "a better description")
    assert fps(text) == BASE


def test_cmd_change_reruns_the_step_and_its_descendants() -> None:
    steps = list(BASE_STEPS)
    steps[0] = step("build", cmd="make -j4")
    assert changed(fps(study(*steps, after=BASE_PARAMS))) == {
        "build",
        "run_SIZE.10",
        "run_SIZE.20",
        "post",
    }


def test_parameter_value_change_reruns_only_that_branch() -> None:
    after = fps(study(*BASE_STEPS, after=params(SIZE=("[10, 30]", "SIZE.%%"))))
    assert "run_SIZE.30" in after
    assert changed(after) == {"run_SIZE.20", "post"}
    assert after["run_SIZE.10"] == BASE["run_SIZE.10"]


def test_resource_change() -> None:
    steps = list(BASE_STEPS)
    steps[1] = step("run", cmd="./sim $(SIZE)", depends="[build]", more="    procs: 4\n")
    assert changed(fps(study(*steps, after=BASE_PARAMS))) == {"run_SIZE.10", "run_SIZE.20", "post"}


def test_restart_change() -> None:
    steps = list(BASE_STEPS)
    steps[3] = step("other", cmd="echo unrelated", more="    restart: echo again\n")
    assert changed(fps(study(*steps, after=BASE_PARAMS))) == {"other"}


def test_variable_change_reaches_the_cmd() -> None:
    old = fps(study(step("a", cmd="echo $(V)"), step("b"), before="env:\n  variables:\n    V: 1\n"))
    new = fps(study(step("a", cmd="echo $(V)"), step("b"), before="env:\n  variables:\n    V: 2\n"))
    assert old["a"] != new["a"]
    assert old["b"] == new["b"]


def test_parent_change_propagates_through_a_chain() -> None:
    def chain(first: str) -> dict[str, str]:
        return fps(
            study(
                step("a", cmd=first), step("b", depends="[a]"), step("c", depends="[b]"), step("d")
            )
        )

    old, new = chain("echo 1"), chain("echo 2")
    assert {n for n in old if old[n] != new[n]} == {"a", "b", "c"}


def test_adding_a_dependency_changes_the_child() -> None:
    old = fps(study(step("a"), step("b")))
    new = fps(study(step("a"), step("b", depends="[a]")))
    assert old["a"] == new["a"]
    assert old["b"] != new["b"]


def test_fingerprints_differ_between_instances_of_a_step() -> None:
    assert BASE["run_SIZE.10"] != BASE["run_SIZE.20"]
    assert len(set(BASE.values())) == len(BASE)


def test_git_dependency_sha_is_part_of_the_fingerprint() -> None:
    before = (
        "env:\n  dependencies:\n    git:\n      - name: SRC\n        path: /deps\n"
        "        url: https://example.org/src.git\n"
    )
    text = study(step("a", cmd="make -C $(SRC)"), step("b"), before=before)
    one = load_study_text(text, dependency_shas={"SRC": "1" * 40}).by_name()
    two = load_study_text(text, dependency_shas={"SRC": "2" * 40}).by_name()
    assert one["a"].fingerprint != two["a"].fingerprint
