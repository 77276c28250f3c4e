"""Slurm script goldens: line for line what Maestro 1.2.1 writes for the same spec
(maestro-facts §5, a `--dry` run of its probe spec), including the --ntasks rule."""

from __future__ import annotations

from pathlib import Path

from sched_helpers import scripts

from reconciler.schedulers.slurm import SlurmAdapter
from reconciler.spec.build import load_study_text

PROBE = """
description: {name: probe, description: header probe}
batch: {type: slurm, host: rzhound, bank: mybank, queue: pbatch, reservation: myres, qos: low}
study:
  - name: sim
    description: full resource request
    run:
      cmd: $(LAUNCHER) ./sim --size $(SIZE)
      restart: $(LAUNCHER)[2n, 4p] ./sim --size $(SIZE) --restart
      nodes: 2
      procs: 8
      cores per task: 4
      gpus: 1
      walltime: "01:30:00"
      exclusive: true
      qos: high
global.parameters:
  SIZE: {values: [10], label: SIZE.%%}
"""

HEADER = """#!/bin/bash
#SBATCH --nodes=2
#SBATCH --partition=pbatch
#SBATCH --account=mybank
#SBATCH --time=01:30:00
#SBATCH --job-name="sim_SIZE.10"
#SBATCH --output="sim_SIZE.10.out"
#SBATCH --error="sim_SIZE.10.err"
#SBATCH --comment "full resource request"
#SBATCH --reservation="myres"
#SBATCH --gres=gpu:1
#SBATCH --exclusive
#SBATCH --qos=high
"""


def adapter_for(spec: str, tmp: Path) -> SlurmAdapter:
    return SlurmAdapter(tmp, batch=load_study_text(spec).batch, study="probe")


def test_maestro_probe_script_and_restart(tmp_path: Path) -> None:
    script, restart = scripts(adapter_for(PROBE, tmp_path), PROBE)["sim_SIZE.10"]
    assert script == HEADER + "\nsrun -n 8 -N 2 -c 4 ./sim --size 10\n"
    # The restart script gets the same header; its token asks for 2 nodes, 4 processes.
    assert restart == HEADER + "\nsrun -n 4 -N 2 -c 4 ./sim --size 10 --restart\n"


def _one(spec: str, tmp: Path) -> str:
    ((script, _),) = scripts(adapter_for(spec, tmp), spec).values()
    return script


SMALL = """
description: {{name: s, description: d}}
batch: {{type: slurm, host: h, bank: b, queue: q{batch}}}
study:
  - name: a
    description: step a
    run: {{cmd: "$(LAUNCHER) hostname", {run}}}
"""


def test_ntasks_only_when_batch_has_procs_or_nobody_sets_nodes(tmp_path: Path) -> None:
    # launcher_tokens.yaml: batch nodes 1, step procs -> no --ntasks
    text = _one(SMALL.format(batch=", nodes: 1", run="procs: 4"), tmp_path)
    assert "--ntasks" not in text and "#SBATCH --nodes=1\n" in text
    # step nodes and procs, nothing in batch -> no --ntasks (the probe above)
    assert "--ntasks" not in _one(SMALL.format(batch="", run="nodes: 2, procs: 4"), tmp_path)
    # procs only -> --ntasks, no --nodes
    text = _one(SMALL.format(batch="", run="procs: 4"), tmp_path)
    assert "#SBATCH --ntasks=4\n" in text and "--nodes" not in text
    # procs in the batch block -> --ntasks even with nodes (the step's procs win)
    text = _one(SMALL.format(batch=", procs: 2", run="nodes: 1, procs: 4"), tmp_path)
    assert text.splitlines()[-3] == "#SBATCH --ntasks=4"


def test_exact_small_script(tmp_path: Path) -> None:
    assert _one(SMALL.format(batch="", run="procs: 4, walltime: 30"), tmp_path) == (
        "#!/bin/bash\n"
        "#SBATCH --partition=q\n"
        "#SBATCH --account=b\n"
        "#SBATCH --time=30\n"
        '#SBATCH --job-name="a"\n'
        '#SBATCH --output="a.out"\n'
        '#SBATCH --error="a.err"\n'
        '#SBATCH --comment "step a"\n'
        "#SBATCH --ntasks=4\n"
        "\n"
        "srun -n 4 hostname\n"  # Maestro: no -N without nodes, no -c without cores per task
    )


def test_launcher_token_forms(tmp_path: Path) -> None:
    spec = SMALL.format(
        batch="",
        run='nodes: 4, procs: 16, "cores per task": 2, '
        'restart: "$(LAUNCHER)[1,2] a; $(LAUNCHER)[2n, 8p] b"',
    )
    ((_, restart),) = scripts(adapter_for(spec, tmp_path), spec).values()
    assert restart is not None
    assert restart.splitlines()[-1] == ("srun -n 2 -N 1 -c 2 a; srun -n 8 -N 2 -c 2 b")


def test_step_without_nodes_or_procs_has_only_a_shebang(tmp_path: Path) -> None:
    spec = SMALL.format(batch="", run="walltime: 5").replace("$(LAUNCHER) ", "")
    assert _one(spec, tmp_path) == "#!/bin/bash\n\nhostname\n"
