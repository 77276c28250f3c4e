"""The pool's settings as dask-jobqueue cluster arguments, and the job scripts they make (read,
never submitted: the Slurm tests run real ones; PBS and LSF exist here only as stand-ins)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reconciler.schedulers.pooldaemon import cluster_kwargs
from reconciler.spec.pool import Pool

pytest.importorskip("dask_jobqueue")


def config(cluster: str, **pool: object) -> dict:
    p = Pool(steps=["sim"], cluster=cluster, **pool)  # type: ignore[arg-type]
    return {
        "study": "sweep",
        "pool": {**p.model_dump(mode="json"), "cluster": cluster},
        "queue": "pbatch",
        "bank": "proj",
        "walltime_seconds": 5400,
    }


def test_a_local_pool_listens_on_localhost_with_its_resources(tmp_path: Path) -> None:
    cfg = config("local", workers=3, cores=2, gpus=1)
    cfg.update(queue=None, bank=None, walltime_seconds=None)
    name, kw = cluster_kwargs(cfg, tmp_path)
    assert name == "LocalCluster"
    assert kw["host"] == "127.0.0.1"
    assert kw["threads_per_worker"] == 2 and kw["n_workers"] == 0  # adapt() starts them
    assert kw["resources"] == {"CPU": 2, "GPU": 1}


@pytest.mark.parametrize(
    ("cluster", "cls", "lines"),
    [
        (
            "slurm",
            "SLURMCluster",
            [
                "#SBATCH -p pbatch",
                "#SBATCH -A proj",
                "#SBATCH -t 01:30:00",
                "--gres=gpu:4",
                "#SBATCH --mem=8G",
                "--resources CPU=3,GPU=2",
                "--nworkers 2",
            ],
        ),
        (
            "pbs",
            "PBSCluster",
            [
                "#PBS -q pbatch",
                "#PBS -A proj",
                "#PBS -l walltime=01:30:00",
                "#PBS -l ngpus=4",
                "--resources CPU=3,GPU=2",
            ],
        ),
        (
            "lsf",
            "LSFCluster",
            [
                "#BSUB -q pbatch",
                '#BSUB -P "proj"',
                "#BSUB -W 01:30",
                '#BSUB -gpu "num=4"',
                "--resources CPU=3,GPU=2",
            ],
        ),
    ],
)
def test_allocation_job_scripts_carry_the_pool_settings(
    tmp_path: Path, cluster: str, cls: str, lines: list[str]
) -> None:
    import dask_jobqueue

    name, kw = cluster_kwargs(config(cluster, workers=2, cores=3, gpus=2, memory="4GB"), tmp_path)
    assert name == cls
    with getattr(dask_jobqueue, cls)(**kw) as made:  # a scheduler starts; no job is submitted
        script = made.job_script()
    for line in lines:
        assert line in script, f"{line!r} not in:\n{script}"
    assert sys.executable in script  # workers run this Python, which has reconciler


def test_a_pool_without_its_packages_is_refused_before_anything_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from reconciler.engine.setup import RunSettings, SetupError, create_workspace
    from reconciler.spec import load_study

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cryptography" else real(name)
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "description: {name: p, description: d}\n"
        "batch: {pool: {steps: [a]}}\n"
        "study:\n  - {name: a, description: d, run: {cmd: echo}}\n"
    )
    with pytest.raises(SetupError, match=r"needs cryptography.*reconciler\[pool\]"):
        create_workspace(load_study(spec), tmp_path / "ws", RunSettings(), cwd=tmp_path)
    assert not (tmp_path / "ws").exists()
