"""Pool workers inside real Slurm allocations (dask-jobqueue's SLURMCluster): a 500-instance
sweep runs each instance once; an allocation that ends mid-task has its instances retried."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pool"))
from pool_helpers import (
    counts,
    events,
    pool_state,
    reconciler,
    rows,
    sweep_spec,
    wait_for,
)

from reconciler.engine import api
from reconciler.plan.states import State

pytest.importorskip("dask_jobqueue")
pytestmark = pytest.mark.timeout(900)

POOL = """steps: [sim]
allocations: 2
workers: 2
cores: 2
memory: 500MB
walltime: "00:20:00"
idle: 20"""


def _squeue_names() -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%j"], capture_output=True, text=True, timeout=60, check=False
    )
    return out.stdout.split()


def test_500_instance_sweep_on_workers_in_slurm_allocations(tmp_path: Path) -> None:
    spec = sweep_spec(tmp_path, 500, pool=POOL, batch="type: slurm\n  queue: debug")
    root = tmp_path / "ws"
    proc = reconciler("run", str(spec), "-o", str(root), "--fg", "-y", "-s", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = counts(tmp_path)
    assert len(seen) == 1000 and set(seen.values()) == {1}  # every instance exactly once
    recorded = rows(root)
    assert all(r.state is State.FINISHED and r.attempts == 1 for r in recorded.values())
    workers = {
        (root / "sim" / f"X.{x}" / f"sim_X.{x}.exit.1.claim").read_text().split()[2]
        for x in range(1, 501)
    }
    assert all(w.startswith("SLURMCluster-") for w in workers)  # ran inside allocations
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-o", "JobName%40", "-S", "now-1hour"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "pool-pooled" in sacct.stdout
    # The study ended: the pool closed and gave its allocations back.
    wait_for(lambda: pool_state(root) is None and "pool-pooled" not in _squeue_names(), 120)


def test_an_allocation_that_ends_mid_task_has_its_instances_retried(tmp_path: Path) -> None:
    pool = POOL.replace("allocations: 2", "allocations: 1")
    spec = sweep_spec(
        tmp_path,
        6,
        pool=pool,
        batch="type: slurm\n  queue: debug",
        cmd="[ -e $(SPECROOT)/ended ] || sleep 60",
    )
    spec.write_text(spec.read_text().replace("study:\n", "reconcile:\n  retries: 1\nstudy:\n"))
    root = tmp_path / "ws"
    proc = reconciler("run", str(spec), "-o", str(root), "-y", "-s", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    def started() -> set[str]:  # instances a worker has started (their claim names the pgid)
        claims = root.glob("sim/*/*.exit.1.claim")
        return {c.name.split(".exit")[0] for c in claims if len(c.read_text().split()) == 4}

    wait_for(lambda: len(started()) == 4, 300)  # 1 allocation x 2 workers x 2 cores, all busy
    running = started()
    jobs = (pool_state(root) or {}).get("allocations", [])
    assert len(jobs) == 1
    subprocess.run(["scancel", jobs[0]], check=True, timeout=60)
    (tmp_path / "ended").touch()  # from now on the instances finish at once
    wait_for(lambda: api.engine_holder(root) is None, 600)
    recorded = rows(root)
    assert all(r.state is State.FINISHED for r in recorded.values())
    retried = {who for who, detail in events(root, "retry") if detail == "HWFAILURE"}
    assert retried and retried <= running  # only what ran in the ended allocation
    seen = counts(tmp_path)
    assert all(seen[f"end {x}"] == 1 for x in range(1, 7))
    for name in retried:
        assert recorded[name].attempts == 2
