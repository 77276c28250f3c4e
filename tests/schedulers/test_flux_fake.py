"""The Flux adapter through a stand-in `flux` CLI (tests/fakes/flux: batch, submit, jobs,
cancel, version with flux-core 0.49's output)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sched_helpers import Fakes, ended, gate, make_job, poll_until, state_is, submit

from reconciler.plan.states import State
from reconciler.schedulers.flux import FluxAdapter
from reconciler.spec.model import Batch


@pytest.fixture
def flux(tmp_path: Path, fakes: Fakes) -> FluxAdapter:
    adapter = FluxAdapter(tmp_path / "ws", batch=Batch(type="flux"), study="s")
    adapter.prepare(adapter.root)
    return adapter


def test_batch_pending_running_completed(flux: FluxAdapter, fakes: Fakes) -> None:
    fakes.hold()
    job = submit(flux, make_job(flux, "sim", f"$(LAUNCHER) true; {gate(flux, 'sim')}"))
    assert job.job_id is not None and job.job_id.startswith("ƒ")
    assert fakes.calls()[-1][:2] == ["flux", "batch"]
    assert flux.poll([job])["sim"].state is State.QUEUED
    fakes.release()
    poll_until(flux, [job], state_is("sim", State.RUNNING))
    (job.workdir / "go").touch()
    seen, _ = poll_until(flux, [job], ended("sim"))
    assert (seen["sim"].state, seen["sim"].exit_code) == (State.FINISHED, 0)
    assert "released" in (job.workdir / f"sim.{job.job_id}.out").read_text()


def test_failed_return_code_and_one_flux_jobs_per_poll(flux: FluxAdapter, fakes: Fakes) -> None:
    jobs = [submit(flux, make_job(flux, f"j{i}", f"exit {i}")) for i in range(3)]
    seen, _ = poll_until(flux, jobs, ended(*(j.name for j in jobs)))
    assert [(seen[j.name].state, seen[j.name].exit_code) for j in jobs] == [
        (State.FINISHED, 0), (State.FAILED, 1), (State.FAILED, 2)]  # fmt: skip
    fakes.calls()
    flux.poll(jobs)
    assert [c[:2] for c in fakes.calls()] == [["flux", "jobs"]]


def test_cancel_queued_and_running_with_one_flux_cancel(flux: FluxAdapter, fakes: Fakes) -> None:
    running = submit(flux, make_job(flux, "run", "sleep 600"))
    poll_until(flux, [running], state_is("run", State.RUNNING))
    fakes.hold()
    queued = submit(flux, make_job(flux, "queued", "sleep 600"))
    fakes.calls()
    flux.cancel([running, queued])
    assert [c[:2] for c in fakes.calls()] == [["flux", "cancel"]]
    seen, _ = poll_until(flux, [running, queued], ended("run", "queued"))
    assert seen["run"].state is State.CANCELLED and seen["queued"].state is State.CANCELLED


def test_walltime_is_timedout(flux: FluxAdapter, fakes: Fakes) -> None:
    job = submit(flux, make_job(flux, "long", "sleep 600", walltime="1"))  # -t 60s
    seen, _ = poll_until(flux, [job], ended("long"))
    assert seen["long"].state is State.TIMEDOUT


def test_not_nested_uses_flux_submit_with_header_options(flux: FluxAdapter, fakes: Fakes) -> None:
    job = submit(flux, make_job(flux, "flat", "echo flat", nested=False, priority="HIGH",
                                waitable=True))  # fmt: skip
    call = fakes.calls()[-1]
    assert call[:2] == ["flux", "submit"] and "--urgency=24" in call
    assert "--flags=waitable" in call and call[-2:] == ["/bin/bash", str(job.script)]
    seen, _ = poll_until(flux, [job], ended("flat"))
    assert seen["flat"].state is State.FINISHED
    assert fakes.jobs()[str(job.job_id)]["urgency"] == 24


def test_unknown_id_is_lost_only_after_grace(flux: FluxAdapter, fakes: Fakes) -> None:
    job = submit(flux, make_job(flux, "x", "true"))
    ghost = replace(job, name="ghost", job_id="ƒ9zzzz")
    assert "ghost" not in flux.poll([job, ghost])
    flux.lost_grace = 0
    assert flux.poll([ghost])["ghost"].state is State.LOST
