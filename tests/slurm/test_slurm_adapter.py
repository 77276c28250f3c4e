"""The Slurm adapter against a real Slurm: sbatch, squeue, sacct and scancel, no stand-ins.

Waits are bounded polls on states, never timing thresholds. The TIMEOUT job is submitted first
(module fixture) and checked last, so its minute-long limit overlaps the other tests.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.plan.states import State
from reconciler.record.outputs import find_outputs
from reconciler.schedulers.base import Job, Observation
from reconciler.schedulers.slurm import SlurmAdapter
from reconciler.spec.instance import Resources
from reconciler.spec.model import Batch
from reconciler.spec.names import safe_name, script_name

ENDED = {State.FINISHED, State.FAILED, State.TIMEDOUT, State.CANCELLED, State.HWFAILURE}


def make_adapter(root: Path, **kw: object) -> SlurmAdapter:
    adapter = SlurmAdapter(root, batch=Batch(type="slurm"), study="slurmtest", **kw)  # type: ignore[arg-type]
    adapter.prepare(root)
    return adapter


def make_job(adapter: SlurmAdapter, name: str, cmd: str, **res: object) -> Job:
    d = adapter.root / name
    d.mkdir(parents=True, exist_ok=True)
    script = d / script_name(name, "slurm")
    resources = Resources(**{"nodes": 1, "procs": 1, **res})  # type: ignore[arg-type]
    script.write_text(
        adapter.render_script(cmd, resources, name=name, shell="/bin/bash", description=name)
    )
    return Job(name=name, workdir=d, script=script, stem=d / safe_name(name),
               exit_file=d / f"{name}.exit",
               submission=1)  # fmt: skip


def output(job: Job, stream: str = "out") -> str:
    """What Slurm wrote for the job (`<job-name>.out`), found as status and logs find it."""
    out, err = find_outputs(job.workdir, job.name, job.job_id)
    path = out if stream == "out" else err
    return path.read_text() if path.is_file() else ""


def submit(adapter: SlurmAdapter, job: Job) -> Job:
    return replace(job, job_id=adapter.submit(job))


def poll_until(
    adapter: SlurmAdapter,
    jobs: Sequence[Job],
    done: Callable[[dict[str, Observation]], bool],
    deadline: float = 120.0,
) -> tuple[dict[str, Observation], dict[str, list[State]]]:
    """Poll until `done(observations)`; also returns each job's sequence of distinct states."""
    history: dict[str, list[State]] = {j.name: [] for j in jobs}
    end = time.monotonic() + deadline
    while True:
        seen = adapter.poll(jobs)
        for name, obs in seen.items():
            if not history[name] or history[name][-1] is not obs.state:
                history[name].append(obs.state)
        if done(seen):
            return seen, history
        if time.monotonic() > end:
            pytest.fail(f"no end state within {deadline:g} s: {history}")
        time.sleep(0.3)


def ended(*names: str) -> Callable[[dict[str, Observation]], bool]:
    return lambda seen: all(n in seen and seen[n].state in ENDED for n in names)


@pytest.fixture(scope="module", autouse=True)
def timeout_job(tmp_path_factory: pytest.TempPathFactory, slurm: None) -> Iterator[tuple]:
    """A job over its one-minute limit, started before the other tests (Slurm's minimum
    limit is a minute and it checks limits about every 30 s: measured 88 s here)."""
    root = tmp_path_factory.mktemp("timeout")
    adapter = make_adapter(root)
    job = submit(adapter, make_job(adapter, "overtime", "sleep 600", walltime="00:00:01"))
    yield adapter, job
    adapter.cancel([job])


@pytest.fixture
def adapter(tmp_path: Path) -> SlurmAdapter:
    return make_adapter(tmp_path)


@pytest.fixture
def counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], dict[str, int]]:
    """Put wrappers around the real squeue/sacct/scancel first on PATH; returns a counter."""
    bindir, log = tmp_path / "bin", tmp_path / "calls.log"
    bindir.mkdir()
    for tool in ("squeue", "sacct", "scancel"):
        real = shutil.which(tool)
        assert real is not None, tool
        wrapper = bindir / tool
        wrapper.write_text(f'#!/bin/bash\necho {tool} >> "{log}"\nexec "{real}" "$@"\n')
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")

    def counts() -> dict[str, int]:
        lines = log.read_text().split() if log.exists() else []
        log.unlink(missing_ok=True)
        return {t: lines.count(t) for t in ("squeue", "sacct", "scancel")}

    return counts


def gate(adapter: SlurmAdapter, name: str) -> str:
    """A command that runs until a file `go` appears in the job's directory, then exits 0."""
    return f"while [ ! -e {adapter.root / name / 'go'} ]; do sleep 0.2; done; echo done"


def test_script_is_submitted_and_runs_in_the_instance_directory(adapter: SlurmAdapter) -> None:
    job = submit(adapter, make_job(adapter, "hello", "pwd; echo hello from $SLURM_JOB_ID"))
    seen, _ = poll_until(adapter, [job], ended("hello"))
    assert seen["hello"] == Observation(State.FINISHED, 0, seen["hello"].end_time)
    text = output(job)
    assert str(job.workdir) in text and f"hello from {job.job_id}" in text


def test_pending_running_finished(adapter: SlurmAdapter) -> None:
    """`first` holds the whole node, so `second` must queue behind it: PENDING, then RUNNING
    once `first` is released, then FINISHED once it is released itself."""
    first = submit(adapter, make_job(adapter, "first", gate(adapter, "first"), exclusive=True))
    second = submit(adapter, make_job(adapter, "second", gate(adapter, "second"), exclusive=True))
    poll_until(adapter, [first, second], lambda s: s.get("first", Observation(State.LOST)).state
               is State.RUNNING)  # fmt: skip
    seen = adapter.poll([second])
    assert seen["second"].state is State.PENDING
    (first.workdir / "go").touch()
    poll_until(adapter, [second], lambda s: s["second"].state is State.RUNNING)
    (second.workdir / "go").touch()
    seen, history = poll_until(adapter, [first, second], ended("first", "second"))
    assert seen["first"].state is State.FINISHED and seen["second"].state is State.FINISHED
    assert history["second"][-2:] == [State.RUNNING, State.FINISHED]


def test_failed_job_reports_its_exit_code(adapter: SlurmAdapter) -> None:
    job = submit(adapter, make_job(adapter, "fails", "echo oops >&2; exit 7"))
    seen, _ = poll_until(adapter, [job], ended("fails"))
    assert (seen["fails"].state, seen["fails"].exit_code) == (State.FAILED, 7)
    assert "oops" in output(job, "err")


def test_cancel_running_and_queued_with_one_scancel(
    adapter: SlurmAdapter, counted: Callable[[], dict[str, int]]
) -> None:
    running = submit(adapter, make_job(adapter, "hog", "sleep 600", exclusive=True))
    queued = submit(adapter, make_job(adapter, "waiter", "sleep 600", exclusive=True))
    poll_until(adapter, [running], lambda s: s["hog"].state is State.RUNNING)
    assert adapter.poll([queued])["waiter"].state is State.PENDING
    counted()
    adapter.cancel([running, queued])
    assert counted()["scancel"] == 1
    seen, _ = poll_until(adapter, [running, queued], ended("hog", "waiter"))
    assert seen["hog"].state is State.CANCELLED and seen["waiter"].state is State.CANCELLED


def test_find_recovers_a_lost_id_by_its_tag(adapter: SlurmAdapter) -> None:
    job = submit(adapter, make_job(adapter, "orphan", "sleep 600"))
    try:
        assert adapter.find(replace(job, job_id=None)) == job.job_id
        # Another submission number is another try: the tag tells them apart.
        assert adapter.find(replace(job, job_id=None, submission=2)) is None
        other = make_adapter(adapter.root / "elsewhere")
        assert other.find(replace(job, job_id=None, workdir=other.root / "orphan")) is None
    finally:
        adapter.cancel([job])


def test_one_squeue_and_at_most_one_sacct_per_poll(
    adapter: SlurmAdapter, counted: Callable[[], dict[str, int]]
) -> None:
    jobs = [submit(adapter, make_job(adapter, f"many{i}", "true")) for i in range(6)]
    poll_until(adapter, jobs, ended(*(j.name for j in jobs)))
    counted()
    seen = adapter.poll(jobs)
    assert counted() == {"squeue": 1, "sacct": 0, "scancel": 0}
    assert {o.state for o in seen.values()} == {State.FINISHED}
    # An id neither squeue nor sacct knows: one history call, no observation before the grace
    # period, LOST after it.
    ghost = replace(jobs[0], name="ghost", job_id="987654321")
    seen = adapter.poll([*jobs, ghost])
    calls = counted()
    assert calls["squeue"] == 1 and calls["sacct"] <= 1
    assert "ghost" not in seen
    adapter.lost_grace = 0.0
    seen = adapter.poll([*jobs, ghost])
    assert seen["ghost"].state is State.LOST
    assert counted()["squeue"] == 1


def test_sacct_history_when_accounting_is_on(adapter: SlurmAdapter) -> None:
    job = submit(adapter, make_job(adapter, "archived", "exit 4"))
    poll_until(adapter, [job], ended("archived"))
    end = time.monotonic() + 60
    while True:
        found = adapter.history([str(job.job_id)])
        if adapter.accounting is False:
            assert found == {}  # a cluster without slurmdbd: squeue alone, no error
            return
        obs = found.get(str(job.job_id))
        # slurmdbd may first hold the job as pending/running, then its end state, and (seen on a
        # loaded machine) the end state a moment before its exit code.
        if obs is not None and obs.state in ENDED and obs.exit_code:
            break
        assert time.monotonic() < end, "sacct never recorded the job"
        time.sleep(0.5)
    assert (found[str(job.job_id)].state, found[str(job.job_id)].exit_code) == (State.FAILED, 4)


def test_timeout_maps_to_timedout(timeout_job: tuple) -> None:
    adapter, job = timeout_job
    seen, _ = poll_until(adapter, [job], ended("overtime"), deadline=300)
    assert seen["overtime"].state is State.TIMEDOUT
    assert "overtime" in subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", str(job.job_id), "-o", "%j"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
