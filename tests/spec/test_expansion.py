"""Expansion: instance names, workspaces and edges exactly as Maestro 1.2 stages a study."""

from __future__ import annotations

import random
from collections.abc import Callable

from spec_helpers import params, step, study

from reconciler.spec import Study, load_study_text

Load = Callable[..., Study]

# The probe of maestro-facts §2: X=[1,1,2], Y=[a,b,c].
PROBE_STEPS = [
    step("sx", cmd="echo $(X)"),
    step("sy", cmd="echo $(Y)", depends="[sx]"),
    step("fan", cmd="echo $(Y)", depends="[sx_*]"),
    step("agg", cmd="echo done", depends="[sy_*]"),
    step("solo", cmd="echo solo"),
]
PROBE_PARAMS = params(X=("[1, 1, 2]", "X.%%"), Y=("[a, b, c]", "Y.%%"))


def probe(load: Load) -> Study:
    return load(study(*PROBE_STEPS, after=PROBE_PARAMS))


def table(s: Study) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {i.name: (i.workspace, i.depends) for i in s.instances}


def test_duplicate_rows_collapse(load: Load) -> None:
    t = table(probe(load))
    assert t["sx_X.1"] == ("sx/X.1", ())
    assert t["sx_X.2"] == ("sx/X.2", ())
    assert [n for n in t if n.startswith("sx")] == ["sx_X.1", "sx_X.2"]


def test_dependent_inherits_parameters_and_matches_its_parent(load: Load) -> None:
    t = table(probe(load))
    assert t["sy_X.1.Y.a"] == ("sy/X.1.Y.a", ("sx_X.1",))
    assert t["sy_X.1.Y.b"] == ("sy/X.1.Y.b", ("sx_X.1",))
    assert t["sy_X.2.Y.c"] == ("sy/X.2.Y.c", ("sx_X.2",))
    assert len([n for n in t if n.startswith("sy")]) == 3


def test_funnel_waits_on_every_parent_and_keeps_its_own_parameters(load: Load) -> None:
    t = table(probe(load))
    for v in "abc":
        assert t[f"fan_Y.{v}"] == (f"fan/Y.{v}", ("sx_X.1", "sx_X.2"))
    assert len([n for n in t if n.startswith("fan")]) == 3


def test_funnel_without_parameters_runs_once_after_all(load: Load) -> None:
    t = table(probe(load))
    assert t["agg"] == ("agg", ("sy_X.1.Y.a", "sy_X.1.Y.b", "sy_X.2.Y.c"))


def test_step_without_parameters_runs_once_in_its_own_directory(load: Load) -> None:
    s = probe(load)
    solo = s.by_name()["solo"]
    assert (solo.workspace, solo.depends, solo.params) == ("solo", (), {})


def test_probe_instance_count_and_graph(load: Load) -> None:
    s = probe(load)
    assert len(s.instances) == 2 + 3 + 3 + 1 + 1
    assert set(s.graph.nodes) == {i.name for i in s.instances}
    assert set(s.graph.edges) == {(p, i.name) for i in s.instances for p in i.depends}
    assert set(s.step_graph.edges) == {("sx", "sy"), ("sx", "fan"), ("sy", "agg")}
    assert s.step_graph.edges["sx", "fan"]["funnel"] is True


def test_instances_are_in_topological_order(load: Load) -> None:
    s = probe(load)
    seen: set[str] = set()
    for i in s.instances:
        assert set(i.depends) <= seen
        seen.add(i.name)


def test_instance_parameters(load: Load) -> None:
    s = probe(load).by_name()
    assert s["sx_X.2"].params == {"X": 2}
    assert s["sy_X.1.Y.b"].params == {"X": 1, "Y": "b"}
    assert s["fan_Y.c"].params == {"Y": "c"}
    assert s["sy_X.2.Y.c"].cmd == "echo c"


def test_step_inheriting_parameters_without_using_any(load: Load) -> None:
    s = load(
        study(
            step("hello", cmd="echo $(GREETING) $(NAME)"),
            step("bye", cmd="echo bye", depends="[hello]"),
            after=params(
                NAME=("[Pam, Jim, Dwight]", "NAME.%%"),
                GREETING=("[Hello, Ciao, Hey]", "GREETING.%%"),
            ),
        )
    )
    bye = [i for i in s.instances if i.step == "bye"]
    assert [i.name for i in bye] == [
        "bye_GREETING.Hello.NAME.Pam",
        "bye_GREETING.Ciao.NAME.Jim",
        "bye_GREETING.Hey.NAME.Dwight",
    ]
    assert [i.depends for i in bye] == [
        ("hello_GREETING.Hello.NAME.Pam",),
        ("hello_GREETING.Ciao.NAME.Jim",),
        ("hello_GREETING.Hey.NAME.Dwight",),
    ]
    assert all(i.cmd == "echo bye" for i in bye)


def test_names_sort_parameter_names_not_their_order_in_the_spec(load: Load) -> None:
    s = load(
        study(step("a", cmd="echo $(Z) $(A)"), after=params(Z=("[1]", "Z.%%"), A=("[2]", "A.%%")))
    )
    assert s.instances[0].name == "a_A.2.Z.1"
    assert s.instances[0].workspace == "a/A.2.Z.1"


def test_workspace_reference_adds_the_referenced_steps_parameters(load: Load) -> None:
    s = load(
        study(
            step("sx", cmd="echo $(X)"),
            step("solo"),
            step("ref", cmd="ls $(sx.workspace)", depends="[solo, sx]"),
            after=params(X=("[1, 2]", "X.%%")),
        )
    )
    ref = [i for i in s.instances if i.step == "ref"]
    assert [(i.name, i.cmd, i.depends) for i in ref] == [
        ("ref_X.1", "ls $(OUTPUT_PATH)/sx/X.1", ("solo", "sx_X.1")),
        ("ref_X.2", "ls $(OUTPUT_PATH)/sx/X.2", ("solo", "sx_X.2")),
    ]


def test_workspace_reference_through_a_funnel_is_the_step_root(load: Load) -> None:
    s = load(
        study(
            step("sx", cmd="echo $(X)"),
            step("post", cmd="ls $(sx.workspace)", depends="[sx_*]"),
            after=params(X=("[1, 2]", "X.%%")),
        )
    )
    post = s.by_name()["post"]
    assert post.cmd == "ls $(OUTPUT_PATH)/sx"
    assert post.depends == ("sx_X.1", "sx_X.2")


def test_workspace_reference_to_an_unparameterised_step(load: Load) -> None:
    s = load(
        study(
            step("build"),
            step("run", cmd="$(build.workspace)/a.out $(X)", depends="[build]"),
            after=params(X=("[1, 2]", "X.%%")),
        )
    )
    assert [i.cmd for i in s.instances if i.step == "run"] == [
        "$(OUTPUT_PATH)/build/a.out 1",
        "$(OUTPUT_PATH)/build/a.out 2",
    ]


def test_parameter_in_description_counts_as_used(load: Load) -> None:
    text = study(
        "- name: a\n  description: size $(X)\n  run:\n    cmd: echo\n",
        after=params(X=("[1, 2]", "X.%%")),
    )
    s = load(text)
    assert [i.name for i in s.instances] == ["a_X.1", "a_X.2"]
    assert s.instances[1].description == "size 2"


def test_chain_after_a_funnel_does_not_inherit_the_funnels_parents(load: Load) -> None:
    s = load(
        study(
            step("a", cmd="echo $(X)"),
            step("b", depends="[a_*]"),
            step("c", depends="[b]"),
            after=params(X=("[1, 2]", "X.%%")),
        )
    )
    assert [i.name for i in s.instances] == ["a_X.1", "a_X.2", "b", "c"]
    assert s.by_name()["c"].depends == ("b",)


def test_diamond(load: Load) -> None:
    s = load(
        study(
            step("top", cmd="echo $(X)"),
            step("left", depends="[top]"),
            step("right", cmd="echo $(Y)", depends="[top]"),
            step("bottom", depends="[left, right]"),
            after=params(X=("[1, 2]", "X.%%"), Y=("[a, b]", "Y.%%")),
        )
    )
    b = s.by_name()
    assert b["bottom_X.1.Y.a"].depends == ("left_X.1", "right_X.1.Y.a")
    assert b["bottom_X.2.Y.b"].depends == ("left_X.2", "right_X.2.Y.b")


def test_hello_bye_parameterized_names_and_workspaces(load: Load) -> None:
    text = """\
description:
    name: hello_bye_world
    description: A study that says hello and bye to multiple people.
env:
    variables:
        OUTPUT_PATH: ./sample_output/hello_world
    labels:
        OUT_FORMAT: $(GREETING)_$(NAME).txt
study:
    - name: hello_world
      description: Say hello to someone!
      run:
          cmd: |
            echo "$(GREETING), $(NAME)!" > $(OUT_FORMAT)
    - name: bye_world
      description: Say bye to someone!
      run:
          cmd: |
            echo "Bye, World!" > bye.txt
          depends: [hello_world]
global.parameters:
    NAME:
        values: [Pam, Jim, Michael, Dwight]
        label: NAME.%%
    GREETING:
        values: [Hello, Ciao, Hey, Hi]
        label: GREETING.%%
"""
    s = load(text)
    b = s.by_name()
    first = b["hello_world_GREETING.Hello.NAME.Pam"]
    assert first.workspace == "hello_world/GREETING.Hello.NAME.Pam"
    assert first.cmd == 'echo "Hello, Pam!" > Hello_Pam.txt\n'
    assert b["bye_world_GREETING.Hi.NAME.Dwight"].workspace == "bye_world/GREETING.Hi.NAME.Dwight"
    bye = b["bye_world_GREETING.Hi.NAME.Dwight"]
    assert bye.depends == ("hello_world_GREETING.Hi.NAME.Dwight",)
    assert len(s.instances) == 8


def test_label_sanitising_follows_maestro(load: Load) -> None:
    s = load(study(step("a", cmd="echo '$(X)'"), after=params(X=("['a b', 'c#d']", "X.%%"))))
    assert [(i.name, i.workspace) for i in s.instances] == [
        ("a_X.a b", "a/X.a_b"),
        ("a_X.c#d", "a/X.cd"),
    ]


# ---- steps in any order -----------------------------------------------------------------


def _shape(s: Study) -> set[tuple[str, str, tuple[str, ...], str]]:
    return {(i.name, i.workspace, i.depends, i.fingerprint) for i in s.instances}


def test_steps_in_any_order_give_the_same_instances() -> None:
    ordered = study(*PROBE_STEPS, after=PROBE_PARAMS)
    reference = load_study_text(ordered)
    rng = random.Random(7)
    for _ in range(10):
        shuffled = PROBE_STEPS[:]
        rng.shuffle(shuffled)
        s = load_study_text(study(*shuffled, after=PROBE_PARAMS))
        assert _shape(s) == _shape(reference)
        index = {i.name: k for k, i in enumerate(s.instances)}
        assert all(index[p] < index[i.name] for i in s.instances for p in i.depends)


def test_reversed_chain() -> None:
    forward = study(step("a"), step("b", depends="[a]"), step("c", depends="[b]"))
    backward = study(step("c", depends="[b]"), step("b", depends="[a]"), step("a"))
    assert [i.name for i in load_study_text(backward).instances] == ["a", "b", "c"]
    assert _shape(load_study_text(backward)) == _shape(load_study_text(forward))


def test_topological_spec_keeps_its_order() -> None:
    s = load_study_text(study(step("z"), step("y"), step("x", depends="[z]")))
    assert [i.name for i in s.instances] == ["z", "y", "x"]
