"""LSF script goldens: Maestro 1.2.1's `#BSUB` header and `jsrun` launcher (maestro-facts §5:
`-nnodes 2 / -q / -G / -W 00:30 / -J / -o name.%J.out / -e name.%J.err`, and
`jsrun --nrs 8 -b packed:1 -g 1 -a 1 -r 4 -c 2`)."""

from __future__ import annotations

from pathlib import Path

from sched_helpers import scripts

from reconciler.schedulers.lsf import LSFAdapter, lsf_walltime
from reconciler.spec.build import load_study_text

PROBE = """
description: {name: probe, description: header probe}
batch: {type: lsf, host: lassen, bank: mybank, queue: pbatch}
study:
  - name: sim
    description: full resource request
    run:
      cmd: $(LAUNCHER) ./sim
      restart: $(LAUNCHER)[1n, 4p] ./sim --restart
      nodes: 2
      procs: 8
      gpus: 1
      tasks per rs: 1
      rs per node: 4
      cpus per rs: 2
      bind: packed:1
      walltime: "00:29:30"
"""

HEADER = """#!/bin/bash
#BSUB -nnodes 2
#BSUB -q pbatch
#BSUB -G mybank
#BSUB -W 00:30
#BSUB -J sim
#BSUB -o sim.%J.out
#BSUB -e sim.%J.err
"""


def test_maestro_probe_script_and_restart(tmp_path: Path) -> None:
    adapter = LSFAdapter(tmp_path, batch=load_study_text(PROBE).batch)
    script, restart = scripts(adapter, PROBE)["sim"]
    assert script == HEADER + "\njsrun --nrs 8 -b packed:1 -g 1 -a 1 -r 4 -c 2 ./sim\n"
    assert restart == HEADER + "\njsrun --nrs 4 -b packed:1 -g 1 -a 1 -r 4 -c 2 ./sim --restart\n"


def test_reservation_sits_between_output_and_error_and_defaults(tmp_path: Path) -> None:
    spec = """
description: {name: p, description: d}
batch: {type: lsf, host: h, bank: b, queue: q, reservation: res1}
study:
  - name: ab
    description: d
    run: {cmd: "$(LAUNCHER) x", procs: 2}
"""
    adapter = LSFAdapter(tmp_path, batch=load_study_text(spec).batch)
    ((script, _),) = scripts(adapter, spec).values()
    assert script.splitlines()[1:] == [
        "#BSUB -nnodes 1",
        "#BSUB -q q",
        "#BSUB -G b",
        "#BSUB -J ab",
        "#BSUB -o ab.%J.out",
        "#BSUB -U res1",
        "#BSUB -e ab.%J.err",
        "",
        "jsrun --nrs 2 -b rs -a 1 -r 1 -c 1 x",
    ]


def test_walltime_to_hours_and_minutes() -> None:
    assert lsf_walltime("01:30:00") == "01:30"
    assert lsf_walltime("00:59:01") == "01:00"  # seconds round up to a minute
    assert lsf_walltime("90") == "90"  # minutes, verbatim
    assert lsf_walltime("2:30") == "2:30"
