"""The PBS adapter through stand-in qsub/qstat/qdel (tests/fakes: OpenPBS / PBS Professional
output, `qstat -x -f -F json`). Maestro has no PBS; the header is ours."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sched_helpers import Fakes, ended, gate, make_job, output, poll_until, state_is, submit

from reconciler.plan.states import State
from reconciler.schedulers.pbs import PBSAdapter
from reconciler.spec.model import Batch


@pytest.fixture
def pbs(tmp_path: Path, fakes: Fakes) -> PBSAdapter:
    adapter = PBSAdapter(tmp_path / "ws", batch=Batch(type="pbs", queue="workq"), study="s")
    adapter.prepare(adapter.root)
    return adapter


def test_queued_running_finished_in_the_instance_directory(pbs: PBSAdapter, fakes: Fakes) -> None:
    fakes.hold()
    job = submit(pbs, make_job(pbs, "sim", f"pwd; {gate(pbs, 'sim')}"))
    assert job.job_id is not None and job.job_id.endswith(".fakepbs")
    assert pbs.poll([job])["sim"].state is State.PENDING
    fakes.release()
    poll_until(pbs, [job], state_is("sim", State.RUNNING))
    (job.workdir / "go").touch()
    seen, _ = poll_until(pbs, [job], ended("sim"))
    assert (seen["sim"].state, seen["sim"].exit_code) == (State.FINISHED, 0)
    # PBS starts jobs in $HOME; the script's `cd $PBS_O_WORKDIR` puts it in the instance dir.
    assert output(job).splitlines()[0] == str(job.workdir)


def test_exit_status_and_one_qstat_per_poll(pbs: PBSAdapter, fakes: Fakes) -> None:
    jobs = [submit(pbs, make_job(pbs, f"j{i}", f"exit {i}")) for i in range(3)]
    seen, _ = poll_until(pbs, jobs, ended(*(j.name for j in jobs)))
    assert [(seen[j.name].state, seen[j.name].exit_code) for j in jobs] == [
        (State.FINISHED, 0), (State.FAILED, 1), (State.FAILED, 2)]  # fmt: skip
    fakes.calls()
    pbs.poll(jobs)
    assert [c[0] for c in fakes.calls()] == ["qstat"]


def test_cancel_queued_and_running_with_one_qdel(pbs: PBSAdapter, fakes: Fakes) -> None:
    running = submit(pbs, make_job(pbs, "run", "sleep 600"))
    poll_until(pbs, [running], state_is("run", State.RUNNING))
    fakes.hold()
    queued = submit(pbs, make_job(pbs, "queued", "sleep 600"))
    fakes.calls()
    pbs.cancel([running, queued])
    assert [c[0] for c in fakes.calls()] == ["qdel"]
    seen, _ = poll_until(pbs, [running, queued], ended("run", "queued"))
    assert seen["run"].state is State.CANCELLED and seen["queued"].state is State.CANCELLED


def test_walltime_is_timedout(pbs: PBSAdapter, fakes: Fakes) -> None:
    job = submit(pbs, make_job(pbs, "long", "sleep 600", walltime="00:01:00"))
    seen, _ = poll_until(pbs, [job], ended("long"))
    assert seen["long"].state is State.TIMEDOUT


def test_find_by_tag_variable(pbs: PBSAdapter, fakes: Fakes) -> None:
    job = submit(pbs, make_job(pbs, "lost", "sleep 600"))
    assert pbs.find(replace(job, job_id=None)) == job.job_id
    assert pbs.find(replace(job, job_id=None, submission=2)) is None


def test_unknown_id_is_lost_only_after_grace(pbs: PBSAdapter, fakes: Fakes) -> None:
    job = submit(pbs, make_job(pbs, "x", "true"))
    ghost = replace(job, name="ghost", job_id="9999.fakepbs")
    assert "ghost" not in pbs.poll([job, ghost])
    pbs.lost_grace = 0
    assert pbs.poll([ghost])["ghost"].state is State.LOST
