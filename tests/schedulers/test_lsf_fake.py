"""The LSF adapter through stand-in bsub/bjobs/bkill (tests/fakes): the adapter's real code
path, real processes, LSF 10.1's output formats."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sched_helpers import Fakes, ended, gate, make_job, poll_until, state_is, submit

from reconciler.plan.states import State
from reconciler.schedulers.batch import SchedulerError
from reconciler.schedulers.lsf import LSFAdapter
from reconciler.spec.model import Batch


@pytest.fixture
def lsf(tmp_path: Path, fakes: Fakes) -> LSFAdapter:
    adapter = LSFAdapter(tmp_path / "ws", batch=Batch(type="lsf", queue="pbatch"), study="s")
    adapter.prepare(adapter.root)
    return adapter


def test_pending_running_done_with_output(lsf: LSFAdapter, fakes: Fakes) -> None:
    fakes.hold()
    job = submit(lsf, make_job(lsf, "sim", f"echo out; {gate(lsf, 'sim')}"))
    assert fakes.calls()[0][:3] == ["bsub", "-cwd", str(job.workdir)]
    assert lsf.poll([job])["sim"].state is State.PENDING
    fakes.release()
    poll_until(lsf, [job], state_is("sim", State.RUNNING))
    (job.workdir / "go").touch()
    seen, _ = poll_until(lsf, [job], ended("sim"))
    assert seen["sim"].state is State.FINISHED and seen["sim"].exit_code == 0
    # Maestro's -o "<name>.%J.out": LSF puts the job id in the file name.
    assert "out" in (job.workdir / f"sim.{job.job_id}.out").read_text()


def test_exit_code_and_one_bjobs_per_poll(lsf: LSFAdapter, fakes: Fakes) -> None:
    jobs = [submit(lsf, make_job(lsf, f"j{i}", f"exit {i}")) for i in range(4)]
    seen, _ = poll_until(lsf, jobs, ended(*(j.name for j in jobs)))
    assert [(seen[j.name].state, seen[j.name].exit_code) for j in jobs] == [
        (State.FINISHED, 0), (State.FAILED, 1), (State.FAILED, 2), (State.FAILED, 3)]  # fmt: skip
    fakes.calls()
    lsf.poll(jobs)
    assert [c[0] for c in fakes.calls()] == ["bjobs"]


def test_cancel_queued_and_running_with_one_bkill(lsf: LSFAdapter, fakes: Fakes) -> None:
    running = submit(lsf, make_job(lsf, "run", "sleep 600"))
    poll_until(lsf, [running], state_is("run", State.RUNNING))
    fakes.hold()
    queued = submit(lsf, make_job(lsf, "queued", "sleep 600"))
    fakes.calls()
    lsf.cancel([running, queued])
    assert [c[0] for c in fakes.calls()] == ["bkill"]
    seen, _ = poll_until(lsf, [running, queued], ended("run", "queued"))
    assert seen["run"].state is State.CANCELLED and seen["queued"].state is State.CANCELLED


def test_run_limit_is_timedout(lsf: LSFAdapter, fakes: Fakes) -> None:
    job = submit(lsf, make_job(lsf, "long", "sleep 600", walltime="00:00:30"))  # -W 00:01
    seen, _ = poll_until(lsf, [job], ended("long"))
    assert seen["long"].state is State.TIMEDOUT


def test_find_by_description_tag(lsf: LSFAdapter, fakes: Fakes) -> None:
    job = submit(lsf, make_job(lsf, "lost", "sleep 600"))
    assert lsf.find(replace(job, job_id=None)) == job.job_id
    assert lsf.find(replace(job, job_id=None, submission=2)) is None


def test_unknown_id_is_lost_after_grace(lsf: LSFAdapter, fakes: Fakes) -> None:
    job = submit(lsf, make_job(lsf, "gone", "true"))
    ghost = replace(job, name="ghost", job_id="424242")
    seen = lsf.poll([job, ghost])
    assert "ghost" not in seen  # within the grace period: no observation, no guess
    lsf.lost_grace = 0
    assert lsf.poll([ghost])["ghost"].state is State.LOST


def test_step_without_nodes_or_procs_runs_here(lsf: LSFAdapter, fakes: Fakes) -> None:
    job = make_job(lsf, "plain", "echo local", nodes=None, procs=None)
    assert job.script.read_text() == "#!/bin/bash\n\necho local\n"
    job = submit(lsf, job)
    assert job.job_id is not None and job.job_id.startswith("local:")
    seen, _ = poll_until(lsf, [job], ended("plain"))
    assert seen["plain"].state is State.FINISHED
    assert fakes.calls() == []  # no LSF command at all


def _tool(tmp_path: Path, name: str, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "broken"
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text(f"#!/bin/bash\n{body}\n")
    (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")


def test_garbage_output_is_an_error_not_a_state(
    lsf: LSFAdapter, fakes: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = submit(lsf, make_job(lsf, "g", "true"))
    _tool(tmp_path, "bjobs", f"echo '{job.job_id}|WEIRD|-|-'", monkeypatch)
    with pytest.raises(SchedulerError, match="unknown job state 'WEIRD'"):
        lsf.poll([job])
    _tool(tmp_path, "bjobs", "echo 'this is not a table'", monkeypatch)
    with pytest.raises(SchedulerError, match="cannot read"):
        lsf.poll([job])


def test_a_hanging_command_times_out_with_a_clear_error(
    lsf: LSFAdapter, fakes: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = submit(lsf, make_job(lsf, "h", "true"))
    _tool(tmp_path, "bjobs", "exec sleep 30", monkeypatch)
    lsf.timeout = 0.5
    with pytest.raises(SchedulerError, match=r"did not answer within 0\.5 s"):
        lsf.poll([job])


def test_missing_command_is_a_submit_error(
    lsf: LSFAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.schedulers.base import SubmitError

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SubmitError, match="'bsub' is not installed"):
        lsf.submit(make_job(lsf, "m", "true"))
