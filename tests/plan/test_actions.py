"""The plan: every difference becomes the right action with a reason a person understands."""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.plan.actions import Kind, Plan, Recorded, make_plan
from reconciler.plan.diff import spec_changes
from reconciler.plan.states import State
from reconciler.spec import Study, load_study_text

BASE = """\
description: {name: s, description: d}
study:
  - name: a
    description: first
    run: {cmd: "echo $(N) > a.txt"}
  - name: b
    description: second
    run: {cmd: "cat $(a.workspace)/a.txt", depends: [a]}
  - name: c
    description: funnel
    run: {cmd: "echo done", depends: [b_*]}
global.parameters:
  N: {values: [1, 2, 3], label: "N.%%"}
"""


def study(text: str = BASE) -> Study:
    return load_study_text(text, "s.yaml")


def record(s: Study, state: State = State.FINISHED, **states: State) -> dict[str, Recorded]:
    return {
        i.name: Recorded(i.name, i.step, i.fingerprint, states.get(i.name, state), 1, i.depends)
        for i in s.instances
    }


def plan(new: Study, old: Study | None, rec: Mapping[str, Recorded], tries: int = 1) -> Plan:
    return make_plan(new, rec, spec_changes(old.spec if old else None, new.spec), tries=tries)


def kinds(p: Plan) -> dict[str, tuple[str, str]]:
    return {a.instance: (str(a.kind), a.reason) for a in p.actions}


def test_first_apply_creates_everything() -> None:
    s = study()
    p = plan(s, None, {})
    assert {a.kind for a in p.actions} == {Kind.CREATE}
    assert len(p.actions) == 7
    assert p.sync == "OutOfSync"


def test_same_spec_is_synced_and_keeps_everything() -> None:
    s = study()
    p = plan(s, s, record(s))
    assert {a.kind for a in p.actions} == {Kind.KEEP}
    assert p.sync == "Synced"
    assert not p.changes


def test_cmd_change_reruns_that_step_and_its_descendants_only() -> None:
    old = study()
    new = study(BASE.replace('"cat $(a.workspace)/a.txt"', '"cat $(a.workspace)/a.txt; true"'))
    k = kinds(plan(new, old, record(old)))
    assert k["a_N.1"] == ("keep", "finished")
    assert k["b_N.2"] == ("rerun", "run.cmd of step 'b' changed")
    assert k["c"] == ("rerun", "upstream 'b' reran")
    assert sum(1 for v in k.values() if v[0] == "rerun") == 4


def test_parameter_value_added_creates_only_new_instances() -> None:
    old = study()
    new = study(BASE.replace("values: [1, 2, 3]", "values: [1, 2, 3, 4]"))
    k = kinds(plan(new, old, record(old)))
    assert k["a_N.4"] == ("create", "parameter N gained value 4")
    assert k["b_N.4"] == ("create", "parameter N gained value 4")
    assert k["a_N.1"][0] == k["b_N.3"][0] == "keep"
    assert k["c"] == ("rerun", "upstream 'b' reran")


def test_removed_step_cancels_in_flight_and_prunes_finished() -> None:
    old = study()
    new = study(
        BASE.replace(
            """  - name: c
    description: funnel
    run: {cmd: "echo done", depends: [b_*]}
""",
            "",
        )
    )
    rec = record(old, **{"c": State.RUNNING})
    k = kinds(plan(new, old, rec))
    assert k["c"] == ("cancel", "step 'c' removed")
    rec = record(old)
    p = plan(new, old, rec)
    assert kinds(p)["c"] == ("prune", "step 'c' removed")
    assert p.prune_outputs is False


def test_parameter_value_removed_prunes_its_instances() -> None:
    old = study()
    new = study(BASE.replace("values: [1, 2, 3]", "values: [1, 2]"))
    k = kinds(plan(new, old, record(old)))
    assert k["a_N.3"] == ("prune", "parameter N lost value 3")
    assert k["c"][0] == "rerun"  # the funnel's inputs changed


def test_failed_instance_with_tries_left_is_retried_and_unblocks_its_children() -> None:
    s = study()
    rec = record(s, **{"a_N.2": State.FAILED, "b_N.2": State.BLOCKED, "c": State.BLOCKED})
    k = kinds(plan(s, s, rec, tries=3))
    assert k["a_N.2"] == ("retry", "FAILED, attempt 2 of 3")
    assert k["b_N.2"] == ("retry", "upstream 'a' runs again")
    assert k["c"] == ("retry", "upstream 'b' runs again")
    p = plan(s, s, rec, tries=3)
    assert p.sync == "Synced"  # a retry converges to the same revision


def test_failed_instance_without_tries_left_is_kept() -> None:
    s = study()
    rec = record(s, **{"a_N.2": State.FAILED, "b_N.2": State.BLOCKED, "c": State.BLOCKED})
    k = kinds(plan(s, s, rec, tries=1))
    assert k["a_N.2"] == ("keep", "FAILED; no attempts left (1 of 1)")
    assert k["b_N.2"] == ("keep", "blocked")


def test_reordering_steps_and_rewording_descriptions_change_nothing() -> None:
    old = study()
    steps = BASE.split("study:\n")[1].split("global.parameters:")[0]
    blocks = steps.split("  - name: ")[1:]
    reordered = BASE.replace(steps, "".join("  - name: " + b for b in reversed(blocks)))
    new = study(reordered.replace("description: first", "description: the first one"))
    p = plan(new, old, record(old))
    assert p.sync == "Synced"
    assert not p.changes


def test_variable_change_names_the_variable() -> None:
    text = BASE.replace("study:\n", "env:\n  variables: {X: one}\nstudy:\n", 1).replace(
        '"echo $(N) > a.txt"', '"echo $(N) $(X) > a.txt"'
    )
    old = study(text)
    new = study(text.replace("X: one", "X: two"))
    k = kinds(plan(new, old, record(old)))
    assert k["a_N.1"] == ("rerun", "variable X changed")
    assert k["b_N.1"] == ("rerun", "upstream 'a' reran")


def test_moved_git_dependency_reruns_only_its_users() -> None:
    text = BASE.replace(
        "study:\n",
        """env:
  dependencies:
    git:
      - {name: SRC, path: $(OUTPUT_PATH), url: "https://example.org/src.git", branch: main}
study:
""",
        1,
    ).replace('"echo done"', '"ls $(SRC)"')
    old = load_study_text(text, "s.yaml", dependency_shas={"SRC": "a" * 40})
    new = load_study_text(text, "s.yaml", dependency_shas={"SRC": "b" * 40})
    changes = spec_changes(old.spec, new.spec, {"SRC": "a" * 40}, {"SRC": "b" * 40})
    k = kinds(make_plan(new, record(old), changes))
    assert k["c"] == ("rerun", "git dependency 'SRC' moved to bbbbbbb")
    assert k["a_N.1"][0] == "keep"


def test_in_flight_instances_are_kept() -> None:
    s = study()
    k = kinds(plan(s, s, record(s, State.RUNNING)))
    assert k["a_N.1"] == ("keep", "in progress (RUNNING)")


# -- drift and self-heal: the set of missing instances is an input (the plan does no IO) ----


def test_a_missing_finished_instance_is_reported_as_drift_without_self_heal() -> None:
    s = study()
    p = make_plan(s, record(s), missing={"a_N.2"})
    k = kinds(p)
    assert k["a_N.2"] == ("missing", "finished, but its directory is gone (drift)")
    assert {v[0] for n, v in k.items() if n != "a_N.2"} == {"keep"}  # descendants left alone
    assert p.sync == "OutOfSync"
    assert [a.instance for a in p.changes] == ["a_N.2"] and not p.work  # nothing to apply


def test_self_heal_reruns_a_missing_instance_and_its_descendants_only() -> None:
    s = study()
    k = kinds(make_plan(s, record(s), missing={"a_N.2"}, heal=True))
    assert k["a_N.2"] == ("rerun", "finished, but its directory is gone: rerun (self-heal)")
    assert k["b_N.2"] == ("rerun", "upstream 'a' reran (self-heal)")
    assert k["c"] == ("rerun", "upstream 'b' reran (self-heal)")
    assert {k[n][0] for n in ("a_N.1", "a_N.3", "b_N.1", "b_N.3")} == {"keep"}


def test_missing_names_only_matter_for_finished_instances() -> None:
    s = study()
    rec = record(s, **{"a_N.1": State.FAILED, "b_N.1": State.BLOCKED, "c": State.BLOCKED})
    k = kinds(make_plan(s, rec, missing={"a_N.1", "c"}, heal=True))
    assert k["a_N.1"][0] == "keep" and k["c"][0] == "keep"  # out of tries: not drift
