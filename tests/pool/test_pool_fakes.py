"""Pools whose workers start in PBS or LSF jobs, through the stand-in CLIs (tests/fakes): the
same dask-jobqueue PBSCluster/LSFCluster a real site would use calls `qsub`/`bsub` exactly as it
calls the real ones; the stand-in runs each job script on this host."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pool_helpers import counts, reconciler, rows, sweep_spec

from reconciler.plan.states import State

pytest.importorskip("dask_jobqueue")
pytestmark = pytest.mark.timeout(300)
FAKES = Path(__file__).resolve().parents[1] / "fakes"


@pytest.mark.parametrize(("batch", "cluster"), [("pbs", "PBSCluster"), ("lsf", "LSFCluster")])
def test_a_sweep_on_workers_in_scheduler_jobs_runs_each_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: str, cluster: str
) -> None:
    state = tmp_path / "sched.json"
    monkeypatch.setenv("PATH", f"{FAKES}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKESCHED_STATE", str(state))
    pool = "steps: sim\nallocations: 2\nworkers: 1\ncores: 2\nmemory: 500MB\nidle: 10"
    spec = sweep_spec(tmp_path, 20, pool=pool, batch=f"type: {batch}\n  queue: workq")
    root = tmp_path / "ws"
    proc = reconciler("run", str(spec), "-o", str(root), "-y", "--fg", "-s", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(r.state is State.FINISHED for r in rows(root).values())
    seen = counts(tmp_path)
    assert len(seen) == 40 and set(seen.values()) == {1}
    jobs = json.loads(state.read_text())["jobs"]
    assert jobs and all(j["name"] == "pool-pooled" for j in jobs.values())  # allocations
    assert len(jobs) <= 2  # the cap
    workers = {
        (root / "sim" / f"X.{x}" / f"sim_X.{x}.exit.1.claim").read_text().split()[2]
        for x in range(1, 21)
    }
    assert all(w.startswith(f"{cluster}-") for w in workers)
