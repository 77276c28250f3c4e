"""PBS script goldens. Maestro has no PBS adapter; this is reconciler's own header."""

from __future__ import annotations

from pathlib import Path

from sched_helpers import scripts

from reconciler.schedulers.pbs import PBSAdapter
from reconciler.spec.build import load_study_text

PROBE = """
description: {name: probe, description: header probe}
batch: {type: pbs, host: aws, bank: mybank, queue: workq}
study:
  - name: sim
    description: full resource request
    run:
      cmd: $(LAUNCHER) ./sim --size $(SIZE)
      restart: $(LAUNCHER)[1n, 2p] ./sim --restart
      nodes: 2
      procs: 8
      cores per task: 4
      gpus: 1
      walltime: "01:30:00"
      exclusive: true
global.parameters:
  SIZE: {values: [10], label: SIZE.%%}
"""

HEADER = """#!/bin/bash
#PBS -N sim_SIZE.10
#PBS -l select=2:ncpus=16:mpiprocs=4:ngpus=1
#PBS -l walltime=01:30:00
#PBS -q workq
#PBS -A mybank
#PBS -o sim_SIZE.10.out
#PBS -e sim_SIZE.10.err
#PBS -l place=scatter:excl

cd "${PBS_O_WORKDIR:-.}"
"""


def test_probe_script_and_restart(tmp_path: Path) -> None:
    adapter = PBSAdapter(tmp_path, batch=load_study_text(PROBE).batch)
    script, restart = scripts(adapter, PROBE)["sim_SIZE.10"]
    assert script == HEADER + "\nmpiexec -n 8 ./sim --size 10\n"
    assert restart == HEADER + "\nmpiexec -n 2 ./sim --restart\n"


def test_reservation_is_the_queue_and_minutes_walltime(tmp_path: Path) -> None:
    spec = PROBE.replace('walltime: "01:30:00"', "walltime: 90\n      reservation: R123")
    ((script, _),) = scripts(PBSAdapter(tmp_path, batch=load_study_text(spec).batch), spec).values()
    assert "#PBS -q R123" in script.splitlines() and "#PBS -l walltime=01:30:00" in script
