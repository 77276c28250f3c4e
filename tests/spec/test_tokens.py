"""Every token form: variables, labels, dependencies, parameters, locations, the launcher."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from spec_helpers import params, step, study

from reconciler.spec import Resources, Study
from reconciler.spec.launcher import LauncherError, render_launcher

Load = Callable[..., Study]


def cmd_of(s: Study, name: str | None = None) -> str:
    return s.by_name()[name].cmd if name else s.instances[0].cmd


def test_variable(load: Load) -> None:
    s = load(
        study(step("a", cmd="echo $(GREETING)"), before="env:\n  variables:\n    GREETING: hello\n")
    )
    assert cmd_of(s) == "echo hello"


def test_numeric_variable_renders_as_text(load: Load) -> None:
    s = load(
        study(step("a", cmd="echo $(N) $(F)"), before="env:\n  variables:\n    N: 10\n    F: 0.5\n")
    )
    assert cmd_of(s) == "echo 10 0.5"


def test_label_is_a_macro_over_parameters(load: Load) -> None:
    s = load(
        study(
            step("a", cmd="echo hi > $(OUT_FORMAT)"),
            before="env:\n  labels:\n    OUT_FORMAT: $(GREETING)_$(NAME).txt\n",
            after=params(NAME=("[Pam, Jim]", "NAME.%%"), GREETING=("[Hello, Ciao]", "GREETING.%%")),
        )
    )
    assert [i.cmd for i in s.instances] == ["echo hi > Hello_Pam.txt", "echo hi > Ciao_Jim.txt"]
    assert [i.name for i in s.instances] == [
        "a_GREETING.Hello.NAME.Pam",
        "a_GREETING.Ciao.NAME.Jim",
    ]


def test_label_with_parameter_labels(load: Load) -> None:
    s = load(
        study(
            step("a", cmd="echo > $(outfile)"),
            before="env:\n  labels:\n    outfile: $(SIZE.label).$(ITER.label).log\n",
            after=params(SIZE=("[10]", "SIZE.%%"), ITER=("[5]", "ITER.%%")),
        )
    )
    assert cmd_of(s) == "echo > SIZE.10.ITER.5.log"


def test_chain_of_depth_four(load: Load) -> None:
    before = (
        "env:\n  variables:\n    A: alpha\n    B: $(A)-beta\n    C: $(B)-gamma\n"
        "  labels:\n    D: $(C)-$(X)\n"
    )
    s = load(study(step("a", cmd="echo $(D)"), before=before, after=params(X=("[1]", "X.%%"))))
    assert cmd_of(s) == "echo alpha-beta-gamma-1"


def test_chain_declared_in_reverse_order(load: Load) -> None:
    before = "env:\n  variables:\n    C: $(B)-c\n    B: $(A)-b\n    A: a\n"
    assert cmd_of(load(study(step("a", cmd="echo $(C)"), before=before))) == "echo a-b-c"


def test_parameter_value_label_and_name(load: Load) -> None:
    s = load(
        study(step("a", cmd="'echo $(X) $(X.label) $(X.name)'"), after=params(X=("[1, 2]", "X.%%")))
    )
    assert [i.cmd for i in s.instances] == ["echo 1 X.1 X", "echo 2 X.2 X"]


def test_output_path_and_specroot_stay_symbolic_until_rendered(load: Load) -> None:
    s = load(
        study(
            step("a", cmd="cp $(SPECROOT)/in.txt $(OUTPUT_PATH)/out.txt"),
            before="env:\n  variables:\n    OUTPUT_PATH: ./out\n",
        )
    )
    i = s.instances[0]
    assert i.cmd == "cp $(SPECROOT)/in.txt $(OUTPUT_PATH)/out.txt"
    rendered = i.render(i.cmd, {"SPECROOT": "/specs", "OUTPUT_PATH": "/runs/t"})
    assert rendered == "cp /specs/in.txt /runs/t/out.txt"


def test_render_leaves_unknown_tokens_alone(load: Load) -> None:
    s = load(study(step("a", cmd="\"sed 's/$(CXX)/g++/' $(OUTPUT_PATH)/Makefile\"")))
    i = s.instances[0]
    assert i.render(i.cmd, {"OUTPUT_PATH": "/o"}) == "sed 's/$(CXX)/g++/' /o/Makefile"


def test_own_workspace(load: Load) -> None:
    s = load(study(step("a", cmd="cd $(WORKSPACE) && echo $(X)"), after=params(X=("[1]", "X.%%"))))
    i = s.instances[0]
    assert i.cmd == "cd $(OUTPUT_PATH)/a/X.1 && echo 1"
    assert i.render(i.cmd, {"OUTPUT_PATH": "/o"}) == "cd /o/a/X.1 && echo 1"


def test_other_steps_workspace(load: Load) -> None:
    s = load(
        study(
            step("make-lulesh"),
            step("run", cmd="$(make-lulesh.workspace)/lulesh", depends="[make-lulesh]"),
        )
    )
    assert cmd_of(s, "run") == "$(OUTPUT_PATH)/make-lulesh/lulesh"


def test_dependency_tokens_stay_symbolic_until_rendered(load: Load) -> None:
    before = (
        "env:\n  dependencies:\n    paths:\n      - name: INPUTS\n        path: /data\n"
        "    git:\n      - name: LULESH\n        path: $(OUTPUT_PATH)\n"
        "        url: https://github.com/LLNL/LULESH.git\n        tag: 2.0.3\n"
    )
    s = load(study(step("a", cmd="cd $(LULESH) && ls $(INPUTS)"), before=before))
    i = s.instances[0]
    assert i.cmd == "cd $(LULESH) && ls $(INPUTS)"
    got = i.render(i.cmd, {"LULESH": "/o/LULESH", "INPUTS": "/data"})
    assert got == "cd /o/LULESH && ls /data"


def test_restart_gets_the_same_tokens(load: Load) -> None:
    more = "    restart: ./sim --resume $(X) $(WORKSPACE)\n"
    s = load(study(step("a", cmd="./sim $(X)", more=more), after=params(X=("[1]", "X.%%"))))
    assert s.instances[0].restart == "./sim --resume 1 $(OUTPUT_PATH)/a/X.1"


def test_numeric_fields_from_variables(load: Load) -> None:
    more = "    nodes: $(N)\n    procs: $(P)\n    gpus: $(G)\n    walltime: $(W)\n"
    s = load(
        study(
            step("a", more=more),
            before="env:\n  variables:\n    N: 2\n    P: '8'\n    G: 0\n    W: '01:30:00'\n",
        )
    )
    r = s.instances[0].resources
    assert (r.nodes, r.procs, r.gpus, r.walltime) == (2, 8, 0, "01:30:00")


def test_numeric_fields_from_parameters(load: Load) -> None:
    s = load(
        study(step("a", cmd="./sim", more="    procs: $(P)\n"), after=params(P=("[1, 4]", "P.%%")))
    )
    assert [(i.name, i.resources.procs) for i in s.instances] == [("a_P.1", 1), ("a_P.4", 4)]


def test_batch_reservation_and_qos_are_defaults(load: Load) -> None:
    s = load(
        study(
            step("a", more="    nodes: 1\n"),
            step("b", more="    qos: high\n"),
            before="batch:\n  type: slurm\n  queue: q\n  reservation: r\n  qos: low\n",
        )
    )
    b = s.by_name()
    assert (b["a"].resources.reservation, b["a"].resources.qos) == ("r", "low")
    assert b["b"].resources.qos == "high"


# ---- $(LAUNCHER) ------------------------------------------------------------------------

SLURM = Resources(nodes=2, procs=8, cores_per_task=4)


@pytest.mark.parametrize(
    ("text", "slurm"),
    [
        ("$(LAUNCHER) ./sim", "srun -n 8 -N 2 -c 4 ./sim"),
        ("$(LAUNCHER)[2n, 4p] ./sim", "srun -n 4 -N 2 -c 4 ./sim"),
        ("$(LAUNCHER)[4p, 1n] ./sim", "srun -n 4 -N 1 -c 4 ./sim"),
        ("$(LAUNCHER)[4p] ./sim", "srun -n 4 -c 4 ./sim"),  # Maestro: no -N unless named
        ("$(LAUNCHER)[1,2] ./sim", "srun -n 2 -N 1 -c 4 ./sim"),
        ("$(LAUNCHER)[2, 8] ./sim", "srun -n 8 -N 2 -c 4 ./sim"),
    ],
)
def test_launcher_forms_render_for_slurm(text: str, slurm: str) -> None:
    assert render_launcher(text, SLURM, "slurm") == slurm


@pytest.mark.parametrize(
    "text",
    [
        "$(LAUNCHER) ./sim",
        "$(LAUNCHER)[2n, 4p] ./sim",
        "$(LAUNCHER)[4p] ./sim",
        "$(LAUNCHER)[1,2] ./sim",
    ],
)
def test_launcher_renders_to_nothing_locally(text: str) -> None:
    assert render_launcher(text, SLURM, "local").strip() == "./sim"


def test_launcher_without_cores_per_task_has_no_c() -> None:
    # Maestro 1.2.1 (`srun -n 2 -N 2 amdahl`): -c only when `cores per task` is set.
    assert render_launcher("$(LAUNCHER) x", Resources(nodes=1, procs=2), "slurm") == (
        "srun -n 2 -N 1 x"
    )


def test_launcher_with_only_procs() -> None:
    assert render_launcher("$(LAUNCHER) x", Resources(procs=3), "slurm") == "srun -n 3 x"


def test_launcher_with_only_nodes_leaves_out_n() -> None:
    # Maestro writes `srun -n  -N 2` (an empty count srun rejects); srun's default is a task
    # per node.
    assert render_launcher("$(LAUNCHER) x", Resources(nodes=2), "slurm") == "srun -N 2 x"


def test_launcher_unknown_adapter() -> None:
    with pytest.raises(LauncherError):
        render_launcher("$(LAUNCHER) x", SLURM, "nonesuch")


def test_launcher_token_stays_in_the_instance_cmd(load: Load) -> None:
    s = load(
        study(
            step(
                "a",
                cmd="'$(LAUNCHER)[2n, 4p] ./sim'",
                more="    nodes: 2\n    procs: 8\n    cores per task: 4\n",
            )
        )
    )
    i = s.instances[0]
    assert i.cmd == "$(LAUNCHER)[2n, 4p] ./sim"
    assert i.resources.scheduled
    assert render_launcher(i.cmd, i.resources, "slurm") == "srun -n 4 -N 2 -c 4 ./sim"


def test_legacy_launcher_from_a_spec(load: Load) -> None:
    cmd = "|\n      $(LAUNCHER)[1,1] echo one\n      $(LAUNCHER)[1,1] echo two"
    s = load(study(step("a", cmd=cmd, more="    nodes: 2\n    procs: 2\n")))
    i = s.instances[0]
    assert render_launcher(i.cmd, i.resources, "slurm") == (
        "srun -n 1 -N 1 echo one\nsrun -n 1 -N 1 echo two\n"
    )


def test_step_without_nodes_or_procs_is_not_scheduled(load: Load) -> None:
    assert not load(study(step("a"))).instances[0].resources.scheduled
