"""Whole studies on the real local Slurm, driven as a user drives them: `reconciler run`,
`status`, `cancel`, `resume`, and a `kill -9` of the engine in between."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.engine.api import engine_holder

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("slurm")]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "conformance" / "maestro" / "samples" / "hello_world"


def reconciler(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
    )  # fmt: skip


def states(out: Path, cwd: Path) -> dict[str, dict]:
    r = reconciler("status", str(out), "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return {i["name"]: i for i in json.loads(r.stdout)}


def wait_for(cond, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.5)


def local_copy(sample: Path, dest: Path) -> Path:
    """Maestro's sample, pointed at this cluster's partition (and no foreign account)."""
    text = sample.read_text().replace("pdebug", "debug")
    text = "\n".join(ln for ln in text.splitlines() if not ln.strip().startswith("bank"))
    dest.write_text(text + "\n")
    return dest


def test_maestro_slurm_sample_runs_to_finished(tmp_path: Path) -> None:
    spec = local_copy(SAMPLES / "hello_bye_parameterized_slurm.yaml", tmp_path / "hb.yaml")
    out = tmp_path / "out"
    r = reconciler("run", str(spec), "-fg", "-y", "-s", "1", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    found = states(out, tmp_path)
    assert len(found) == 8
    assert {i["state"] for i in found.values()} == {"FINISHED"}
    assert all(i["job_id"].isdigit() for i in found.values())  # real Slurm job ids
    hello = out / "hello_world" / "GREETING.Hello.NAME.Pam"
    assert (hello / "Hello_Pam.txt").read_text() == "Hello, Pam!\n"
    script = (hello / "hello_world_GREETING.Hello.NAME.Pam.slurm.sh").read_text()
    assert "#SBATCH --partition=debug" in script
    assert "srun -n 1 echo" in script  # Maestro's: procs 1, no nodes, no cores per task


def test_sweep_with_funnel_and_a_failure(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "description: {name: slurm_sweep, description: d}\n"
        "batch: {type: slurm, queue: debug}\n"
        "study:\n"
        "  - name: sim\n    description: d\n"
        "    run: {cmd: 'test $(N) -ne 2 || exit 7; echo $(N) > r.txt', procs: 1}\n"
        "  - name: post\n    description: d\n"
        "    run: {cmd: 'cat $(sim.workspace)/r.txt', depends: [sim], procs: 1}\n"
        "  - name: agg\n    description: d\n"
        "    run: {cmd: 'cat $(sim.workspace)/*/r.txt', depends: [post_*], procs: 1}\n"
        "global.parameters:\n  N: {values: [1, 2, 3], label: N.%%}\n"
    )
    out = tmp_path / "out"
    r = reconciler("run", str(spec), "-fg", "-y", "-s", "1", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr  # some failed or blocked
    found = states(out, tmp_path)
    assert (found["sim_N.2"]["state"], found["sim_N.2"]["exit_code"]) == ("FAILED", 7)
    assert found["post_N.2"]["state"] == "BLOCKED"
    assert found["agg"]["state"] == "BLOCKED"  # a funnel with a failed parent
    assert {found[n]["state"] for n in ("sim_N.1", "sim_N.3", "post_N.1", "post_N.3")} == {
        "FINISHED"
    }


def _sleepers(tmp_path: Path, n: int, seconds: int, exclusive: bool) -> Path:
    spec = tmp_path / "sleep.yaml"
    excl = ", exclusive: true" if exclusive else ""
    spec.write_text(
        "description: {name: sleepers, description: d}\n"
        "batch: {type: slurm, queue: debug}\n"
        "study:\n"
        "  - name: nap\n    description: d\n"
        f"    run: {{cmd: 'echo ran >> $(SPECROOT)/count_$(N); sleep {seconds}', "
        f"procs: 1{excl}}}\n"
        f"global.parameters:\n  N: {{values: {list(range(n))}, label: N.%%}}\n"
    )
    return spec


def test_cancel_of_queued_and_running_jobs(tmp_path: Path) -> None:
    # exclusive jobs on a one-node cluster: one runs, the others wait in the queue
    spec = _sleepers(tmp_path, 3, 120, exclusive=True)
    out = tmp_path / "out"
    r = reconciler("run", str(spec), "-y", "-s", "1", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: {i["state"] for i in states(out, tmp_path).values()} >= {"RUNNING"})
    job_ids = [i["job_id"] for i in states(out, tmp_path).values()]
    r = reconciler("cancel", str(out), "-y", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: {i["state"] for i in states(out, tmp_path).values()} == {"CANCELLED"})

    def in_queue() -> set[str]:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                             check=False).stdout  # fmt: skip
        return set(out.split()) & {j for j in job_ids if j}

    wait_for(lambda: not in_queue(), 60)  # gone from Slurm too, queued and running alike


def test_kill_9_of_the_engine_then_resume_runs_each_once(tmp_path: Path) -> None:
    spec = _sleepers(tmp_path, 6, 3, exclusive=False)
    out = tmp_path / "out"
    r = reconciler("run", str(spec), "-y", "-s", "1", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: any(i["job_id"] for i in states(out, tmp_path).values()))
    holder = engine_holder(out)
    assert holder is not None
    os.kill(int(holder["pid"]), signal.SIGKILL)  # jobs queued and running stay in Slurm
    wait_for(lambda: engine_holder(out) is None, 30)
    r = reconciler("resume", str(out), "--fg", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    found = states(out, tmp_path)
    assert {i["state"] for i in found.values()} == {"FINISHED"}
    for n in range(6):  # every instance ran exactly once
        assert (tmp_path / f"count_{n}").read_text() == "ran\n"


def test_walltime_timeout_runs_the_restart_command(tmp_path: Path) -> None:
    # Slurm's smallest limit is a minute (it checks every ~30 s): this test waits ~1.5 min.
    spec = tmp_path / "t.yaml"
    spec.write_text(
        "description: {name: overtime, description: d}\n"
        "batch: {type: slurm, queue: debug}\n"
        "study:\n"
        "  - name: long\n    description: d\n"
        "    run:\n"
        "      cmd: 'echo first >> $(SPECROOT)/tries; sleep 600'\n"
        "      restart: 'echo restart >> $(SPECROOT)/tries'\n"
        "      walltime: '00:01:00'\n"
        "      procs: 1\n"
    )
    out = tmp_path / "out"
    r = reconciler("run", str(spec), "-fg", "-y", "-s", "2", "-r", "1", "-o", str(out),
                   cwd=tmp_path, timeout=280)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "tries").read_text() == "first\nrestart\n"
    found = states(out, tmp_path)["long"]
    assert found["state"] == "FINISHED"
    assert (out / "long" / "long.restart.slurm.sh").read_text().startswith("#!/bin/bash\n#SBATCH")
