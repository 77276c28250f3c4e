"""Flux script goldens: Maestro 1.2.1's header for flux 0.49 (`#MAESTRO-INFO` lines, `#`,
`#flux:` directives, walltime always in seconds) and the `flux run` launcher."""

from __future__ import annotations

from pathlib import Path

from sched_helpers import scripts

from reconciler.schedulers.flux import FluxAdapter, flux_seconds, urgency
from reconciler.spec.build import load_study_text

PROBE = """
description: {name: probe, description: header probe}
batch: {type: flux, host: tioga, bank: mybank, queue: pbatch}
study:
  - name: sim
    description: full resource request
    run:
      cmd: $(LAUNCHER) ./sim
      nodes: 2
      procs: 8
      cores per task: 4
      gpus: 1
      walltime: "01:30:00"
"""


def adapter_for(spec: str, tmp: Path) -> FluxAdapter:
    return FluxAdapter(tmp, batch=load_study_text(spec).batch, flux_version="0.49.0")


def test_maestro_probe_script(tmp_path: Path) -> None:
    ((script, _),) = scripts(adapter_for(PROBE, tmp_path), PROBE).values()
    assert script == (
        "#!/bin/bash\n"
        "#MAESTRO-INFO (flux adapter version) 0.49.0\n"
        "#MAESTRO-INFO (flux version) 0.49.0\n"
        "#\n"
        "#flux: -N 2\n"
        "#flux: -n 8\n"
        "#flux: -t 5400.0s\n"
        "#flux: -q pbatch\n"
        "#flux: --bank=mybank\n"
        '#flux: --job-name="sim"\n'
        "#flux: --output=sim.{{id}}.out\n"
        "#flux: --error=sim.{{id}}.err\n"
        "\n"
        "flux run -N 2 -n 8 -c 4 -g 1 ./sim\n"
    )


def test_exclusive_allocation_drops_procs_and_adds_the_flag(tmp_path: Path) -> None:
    # A plain `exclusive: true` is Maestro's older syntax: the allocation's alone.
    spec = PROBE.replace('walltime: "01:30:00"', "walltime: 90\n      exclusive: true")
    ((script, _),) = scripts(adapter_for(spec, tmp_path), spec).values()
    lines = script.splitlines()
    assert "#flux: -n 8" not in lines and "#flux: -t 5400s" in lines
    assert lines[-3] == "#flux: --exclusive"
    assert lines[-1] == "flux run -N 2 -n 8 -c 4 -g 1 ./sim"


def test_exclusive_launcher_drops_cores_and_gpus(tmp_path: Path) -> None:
    spec = PROBE.replace(
        'walltime: "01:30:00"', "walltime: 90\n      exclusive: {allocation: false, launcher: true}"
    )
    ((script, _),) = scripts(adapter_for(spec, tmp_path), spec).values()
    lines = script.splitlines()
    assert "#flux: -n 8" in lines and "#flux: --exclusive" not in lines
    assert lines[-1] == "flux run -N 2 -n 8 --exclusive ./sim"  # exclusive drops -c/-g


def test_batch_exclusive_defaults_come_from_the_args_groups(tmp_path: Path) -> None:
    # Maestro pops `x`/`exclusive` from allocation_args/launcher_args as the batch's default.
    spec = PROBE.replace(
        "queue: pbatch}", "queue: pbatch, allocation_args: {x: null}, launcher_args: {x: null}}"
    )
    ((script, _),) = scripts(adapter_for(spec, tmp_path), spec).values()
    lines = script.splitlines()
    assert "#flux: --exclusive" in lines and not any(ln.startswith("#flux: -x") for ln in lines)
    assert lines[-1] == "flux run -N 2 -n 8 --exclusive ./sim"


def test_conversions() -> None:
    assert flux_seconds(None) == "0"
    assert flux_seconds("30") == "1800"
    assert flux_seconds("00:00:30") == "30.0"
    assert urgency("HIGH") == 24 and urgency("held") == 0 and urgency(0.5) == 16
