"""File names from instance names, as Maestro 1.2.1 forms them (spec/names.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reconciler.spec import Diagnostic, Study
from reconciler.spec.names import (
    exit_name,
    job_name,
    local_output,
    safe_name,
    script_name,
)

Load = Callable[..., Study]
Reject = Callable[..., list[Diagnostic]]

FAREWELL = "say-bye_FAREWELL.See you later…"  # a label with a space and a non-ASCII character


@pytest.mark.parametrize(
    ("batch", "script", "restart"),
    [
        # maestrowf 1.2.1: LocalScriptAdapter ".sh", SlurmScriptAdapter ".slurm.sh",
        # LSFScriptAdapter "lsf.sh", FluxScriptAdapter "flux.sh"; PBS is ours.
        ("local", "hello_N.1.sh", "hello_N.1.restart.sh"),
        ("slurm", "hello_N.1.slurm.sh", "hello_N.1.restart.slurm.sh"),
        ("lsf", "hello_N.1.lsf.sh", "hello_N.1.restart.lsf.sh"),
        ("flux", "hello_N.1.flux.sh", "hello_N.1.restart.flux.sh"),
        ("pbs", "hello_N.1.pbs.sh", "hello_N.1.restart.pbs.sh"),
    ],
)
def test_script_names_follow_the_batch_type(batch: str, script: str, restart: str) -> None:
    assert script_name("hello_N.1", batch) == script
    assert script_name("hello_N.1", batch, restart=True) == restart


def test_every_file_name_is_sanitised_as_the_directory_is() -> None:
    # Maestro's make_safe_path: keep [A-Za-z0-9-_.() ], then spaces become '_'.
    assert safe_name("FAREWELL.See you later…") == "FAREWELL.See_you_later"
    assert script_name(FAREWELL) == "say-bye_FAREWELL.See_you_later.sh"
    assert script_name(FAREWELL, "slurm", restart=True) == (
        "say-bye_FAREWELL.See_you_later.restart.slurm.sh"
    )
    assert local_output(FAREWELL, 4242) == "say-bye_FAREWELL.See_you_later.4242.out"
    assert local_output(FAREWELL, 4242, "err") == "say-bye_FAREWELL.See_you_later.4242.err"
    assert exit_name(FAREWELL) == "say-bye_FAREWELL.See_you_later.exit"
    # The scheduler job name is Maestro's: spaces become '_', nothing else changes.
    assert job_name(FAREWELL) == "say-bye_FAREWELL.See_you_later…"


def test_a_spaced_label_names_directory_and_script_alike(load: Load) -> None:
    study = load(
        """
        description: {name: bye, description: d}
        study:
          - name: say-bye
            description: d
            run: {cmd: echo $(FAREWELL)}
        global.parameters:
          FAREWELL: {values: ["See you later…"], label: FAREWELL.%%}
        """
    )
    (inst,) = study.instances
    assert inst.name == FAREWELL
    assert inst.workspace == "say-bye/FAREWELL.See_you_later"
    assert script_name(inst.name) == "say-bye_FAREWELL.See_you_later.sh"


def test_an_instance_name_too_long_for_its_slurm_restart_script(load: Load, reject: Reject) -> None:
    # `<instance>.restart.slurm.sh` must fit in 255 bytes; a local study's names may be longer.
    text = """
        description: {{name: long, description: d}}
        batch: {{type: {batch}, host: h, bank: b, queue: q}}
        study:
          - name: s
            description: d
            run: {{cmd: echo $(P), procs: 1}}
        global.parameters:
          P: {{values: [{value}], label: P.%%}}
        """
    value = "x" * (255 - len("s_P.") - len(".restart.sh"))  # fits `.restart.sh` exactly
    assert load(text.format(batch="local", value=value)).instances
    (error,) = reject(text.format(batch="slurm", value=value))
    assert "<instance>.restart.slurm.sh" in error.message
