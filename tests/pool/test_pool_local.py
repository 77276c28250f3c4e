"""A pool of real Dask workers (LocalCluster) runs pooled steps: exactly once, across worker and
engine deaths. Every test counts how often each instance's script ran."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pool_helpers import counts, events, pool_state, reconciler, rows, sweep_spec, wait_for

from reconciler.engine import api
from reconciler.engine.converge import EXIT_OK
from reconciler.engine.setup import RunSettings, create_workspace
from reconciler.plan.states import IN_FLIGHT, State
from reconciler.record.outputs import output_files
from reconciler.record.workspace import Workspace
from reconciler.spec import load_study

pytest.importorskip("distributed")
pytestmark = pytest.mark.timeout(600)


def test_500_instance_sweep_runs_each_once_on_the_pool(tmp_path: Path) -> None:
    spec = sweep_spec(tmp_path, 500, pool="steps: [sim]\nworkers: 2\ncores: 2\nidle: 5")
    proc = reconciler("run", str(spec), "-o", str(tmp_path / "ws"), "--fg", "-y", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = counts(tmp_path)
    assert len(seen) == 1000  # start and end of 500 instances
    assert set(seen.values()) == {1}  # each exactly once
    root = tmp_path / "ws"
    recorded = rows(root)
    assert all(r.state is State.FINISHED and r.attempts == 1 for r in recorded.values())
    assert recorded["sim_X.7"].job_id == "sim_X.7#1"  # a pool task key, not a pid
    total, _ = output_files(root, recorded["total"])  # <instance>.<pid>.out: local
    assert total.read_text().strip() == "500"
    # The funnel was not pooled: the local adapter ran it (its job id is a pid).
    assert recorded["total"].job_id.isdigit()
    # The study ended, so its pool was shut down.
    wait_for(lambda: pool_state(root) is None, timeout=60)


def test_status_shows_the_pool_workers_next_to_the_instances(tmp_path: Path) -> None:
    spec = sweep_spec(tmp_path, 6, pool="steps: sim\nworkers: 2\ncores: 1\nidle: 5", cmd="sleep 3")
    root = tmp_path / "ws"
    proc = reconciler("run", str(spec), "-o", str(root), "-y", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    def two_busy_workers() -> bool:
        state = pool_state(root)
        return bool(state) and sum(w["busy"] for w in state["workers"]) == 2

    wait_for(two_busy_workers)
    shown = reconciler("status", str(root), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Pool workers" in shown.stdout
    assert "2 workers, 2 busy" in shown.stdout
    as_json = reconciler("status", str(root), "--pool", "--json", cwd=tmp_path)
    pool = json.loads(as_json.stdout)
    assert len(pool["workers"]) == 2
    assert {w["busy"] for w in pool["workers"]} == {1}
    # The pool's scheduler takes only clients with its certificate (it runs what they send).
    assert pool["address"].startswith("tls://127.0.0.1:")
    tls = root / ".reconciler" / "pool-tls"
    assert (tls.stat().st_mode & 0o777) == 0o700
    assert all((f.stat().st_mode & 0o777) == 0o600 for f in tls.iterdir())
    from distributed import Client

    with pytest.raises((OSError, TimeoutError)):
        Client(pool["address"].replace("tls://", "tcp://"), timeout="5s")
    wait_for(lambda: api.engine_holder(root) is None)  # the study ends
    assert all(r.state is State.FINISHED for r in rows(root).values())


def test_a_killed_worker_has_its_instance_retried_and_recorded(tmp_path: Path) -> None:
    spec = sweep_spec(tmp_path, 4, pool="steps: [sim]\nworkers: 2\ncores: 1\nidle: 5")
    text = spec.read_text().replace("study:\n", "reconcile:\n  retries: 1\nstudy:\n")
    # Instance 1 sleeps long enough for us to kill its worker; the others are quick.
    wait = "if [ $(X) = 1 ] && [ ! -e $(SPECROOT)/killed ]; then sleep 60; fi"
    text = text.replace("sleep 0", wait)
    spec.write_text(text)
    root = tmp_path / "ws"
    assert reconciler("run", str(spec), "-o", str(root), "-y", cwd=tmp_path).returncode == 0
    claim = root / "sim" / "X.1" / "sim_X.1.exit.1.claim"
    wait_for(lambda: claim.exists() and len(claim.read_text().split()) == 4)
    script_pid = int(claim.read_text().split()[3])
    worker_pid = int(Path(f"/proc/{script_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    (tmp_path / "killed").touch()  # the retry runs through
    os.kill(worker_pid, signal.SIGKILL)  # the Dask worker process that runs instance 1
    wait_for(lambda: api.engine_holder(root) is None)  # the background engine's study ends
    r = rows(root)["sim_X.1"]
    assert r.state is State.FINISHED and r.attempts == 2
    retried = [d for who, d in events(root, "retry") if who == "sim_X.1"]
    assert retried == ["HWFAILURE"]
    seen = counts(tmp_path)
    assert seen["start 1"] == 2 and seen["end 1"] == 1  # the killed run never ended
    assert all(seen[f"{w} {x}"] == 1 for w in ("start", "end") for x in (2, 3, 4))
    _, err = output_files(root, r)  # a pooled instance's <instance>.err
    assert err == root / "sim" / "X.1" / "sim_X.1.err" and "worker" in err.read_text()


def test_kill_9_of_the_engine_then_resume_reconnects_and_runs_each_once(tmp_path: Path) -> None:
    spec = sweep_spec(
        tmp_path, 40, pool="steps: [sim]\nworkers: 2\ncores: 2\nidle: 30", cmd="sleep 0.2"
    )
    root = tmp_path / "ws"
    create_workspace(load_study(spec), root, RunSettings(), cwd=tmp_path)
    pid = api.start_background(root)

    def midway() -> bool:
        now = rows(root).values()
        return any(r.state is State.FINISHED for r in now) and any(
            r.state in IN_FLIGHT for r in now
        )

    wait_for(midway)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pool_before = pool_state(root)
    assert pool_before is not None  # the pool outlives its engine
    outcome = api.run_engine(root)
    assert outcome.code == EXIT_OK
    seen = counts(tmp_path)
    assert len(seen) == 80 and set(seen.values()) == {1}
    assert all(r.attempts == 1 for r in rows(root).values())
    started = [d for _, d in events(root, "engine-started")]
    assert len(started) == 2


def _dask(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", *args], stdout=f, stderr=f, start_new_session=True
        )


def test_gpu_instances_wait_for_a_gpu_worker_of_a_scheduler_we_connect_to(
    tmp_path: Path,
) -> None:
    """`address:` pools use someone else's Dask scheduler. Its only worker has no GPU: CPU
    instances run, the GPU one waits; a worker with a (declared, fake) GPU joins and runs it."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        _dask(
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            ":0",
            log=tmp_path / "scheduler.log",
        )
    ]
    try:
        procs.append(_worker(address, "cpu-only", "CPU=2", tmp_path))
        gpu_step = """  - name: render
    description: needs a GPU
    run:
      cmd: echo render >> $(SPECROOT)/count.txt
      gpus: 1
"""
        spec = sweep_spec(
            tmp_path, 4, pool=f"steps: [sim, render]\naddress: {address}", extra_steps=gpu_step
        )
        root = tmp_path / "ws"
        proc = reconciler("run", str(spec), "-o", str(root), "-y", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        wait_for(lambda: rows(root)["total"].state is State.FINISHED)
        render = rows(root)["render"]
        assert render.state is State.QUEUED  # no worker can take it
        script = Workspace(root).script(render.name, render.workspace).read_text()
        assert "echo render" in script and "GPU=1" in script
        procs.append(_worker(address, "gpu-worker", "CPU=1 GPU=1", tmp_path))
        wait_for(lambda: api.engine_holder(root) is None)
        assert rows(root)["render"].state is State.FINISHED
        claim = (root / "render" / "render.exit.1.claim").read_text().split()
        assert claim[2] == "gpu-worker"  # the record of where it ran
        assert counts(tmp_path)["render"] == 1
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)


def _worker(address: str, name: str, resources: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    return _dask(
        "distributed.cli.dask_worker",
        address,
        "--name",
        name,
        "--nthreads",
        "2",
        "--resources",
        resources,
        "--no-dashboard",
        "--no-nanny",
        log=tmp_path / f"{name}.log",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
