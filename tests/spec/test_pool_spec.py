"""`batch.pool`: validated like every other key, at the line of the mistake; specs without it
load exactly as before."""

from __future__ import annotations

import pytest

from reconciler.spec.instance import Resources
from reconciler.spec.pool import Pool, demand

HEAD = """\
description: {name: p, description: d}
batch:
  type: %s
  pool:
%s
study:
  - name: sim
    description: s
    run:
      cmd: echo hi
%s
  - name: post
    description: t
    run: {cmd: echo done, depends: [sim]}
"""


def text(pool: str, batch: str = "local", run: str = "") -> str:
    body = "\n".join("    " + line for line in pool.strip().splitlines())
    extra = "\n".join("      " + line for line in run.strip().splitlines())
    return HEAD % (batch, body, extra)


def test_a_spec_without_a_pool_has_none(load) -> None:
    study = load(text("steps: sim").replace("  pool:\n    steps: sim\n", ""))
    assert study.spec.batch.pool is None
    assert not study.warnings


def test_pool_keys_are_typed_and_defaulted(load) -> None:
    study = load(text("steps: sim\nworkers: 3\ncores: 2\nmemory: 1.5GiB\ngpus: 1"))
    pool = study.spec.batch.pool
    assert pool.steps == ["sim"]  # one name is a list of one
    assert (pool.workers, pool.cores, pool.memory, pool.gpus) == (3, 2, "1.5GiB", 1)
    assert pool.where("local") == "local" and pool.max_workers("local") == 3
    assert not study.warnings  # `pool` is a known batch key


def test_cluster_defaults_to_the_batch_type_where_dask_jobqueue_has_it(load) -> None:
    pool = load(text("steps: sim\nallocations: 4\nworkers: 2", batch="slurm")).spec.batch.pool
    assert pool.where("slurm") == "slurm"
    assert pool.max_workers("slurm") == 8  # allocations x workers is the cap
    assert Pool(steps=["a"]).where("lsf") == "lsf"
    assert Pool(steps=["a"], cluster="local").where("slurm") == "local"


@pytest.mark.parametrize(
    ("pool", "batch", "line", "words"),
    [
        ("steps: sim\nworkrs: 2", "local", 6, "workrs"),
        ("steps: sim\nmemory: lots", "local", 6, "not a size"),
        ("steps: sim\nnodes: 2", "slurm", 6, "one node"),
        ("steps: sim\nworkers: 0", "local", 6, "must be ≥ 1"),
        ("steps: sim\nwalltime: soon", "slurm", 6, "walltime"),
        ("steps: sim\nqueue: gpu", "local", 4, "local pool has no allocations"),
        ("steps: sim", "flux", 4, "no Flux cluster"),
        ("steps: sim\naddress: tcp://h:8786\nworkers: 2", "local", 5, "remove workers"),
        ("steps: sim\naddress: h:8786", "local", 6, "not a Dask scheduler address"),
        ("steps: [sim, sum]", "local", 5, "'sum' matches no step"),
        ("steps: []", "local", 5, "must not be empty"),
    ],
)
def test_a_bad_pool_is_an_error_at_its_line(reject, pool, batch, line, words) -> None:
    errors = reject(text(pool, batch))
    assert any(words in e.message and e.line == line for e in errors), [str(e) for e in errors]


@pytest.mark.parametrize(
    ("run", "words", "line"),
    [
        ("gpus: 1", "needs 1 GPUs; pool workers have 0", 12),
        ("procs: 4", "needs 4 cores; pool workers have 2", 12),
        ("nodes: 2", "asks for 2 nodes", 12),
    ],
)
def test_a_pooled_instance_that_can_never_fit_a_worker_is_an_error(
    reject, run, words, line
) -> None:
    errors = reject(text("steps: sim\ncores: 2", run=run))
    assert any(words in e.message and e.line == line for e in errors), [str(e) for e in errors]


def test_steps_take_patterns_and_only_those_steps_are_pooled(load) -> None:
    pool = load(text("steps: ['si*']")).spec.batch.pool
    assert pool.uses("sim") and not pool.uses("post")


def test_a_pooled_instance_takes_its_procs_and_gpus_as_worker_resources() -> None:
    assert demand(Resources()) == {"CPU": 1}
    assert demand(Resources(procs=2, cores_per_task=2, gpus=1)) == {"CPU": 4, "GPU": 1}
