"""Shared helpers for the scheduler tests: instance jobs on disk, and bounded polling."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.plan.states import State
from reconciler.record.outputs import find_outputs
from reconciler.schedulers.base import Adapter, Job, Observation
from reconciler.schedulers.batch import BatchAdapter
from reconciler.spec.instance import Resources
from reconciler.spec.names import safe_name, script_name

FAKES = Path(__file__).resolve().parents[1] / "fakes"
ENDED = {State.FINISHED, State.FAILED, State.TIMEDOUT, State.CANCELLED, State.HWFAILURE}


def make_job(adapter: BatchAdapter, name: str, cmd: str, submission: int = 1, **res: object) -> Job:
    """Write the instance script (launcher tokens rendered) and return its Job."""
    d = adapter.root / name
    d.mkdir(parents=True, exist_ok=True)
    script = d / script_name(name, adapter.name)
    resources = Resources(**{"nodes": 1, "procs": 1, **res})  # type: ignore[arg-type]
    body = adapter.render_launcher(cmd, resources)
    script.write_text(
        adapter.render_script(body, resources, name=name, shell="/bin/bash", description=name)
    )
    return Job(name=name, workdir=d, script=script, stem=d / safe_name(name),
               exit_file=d / f"{name}.exit",
               submission=submission)  # fmt: skip


def output(job: Job, stream: str = "out") -> str:
    """The latest attempt's output of `job` ("" if none), found as status and logs find it."""
    out, err = find_outputs(job.workdir, job.name, job.job_id)
    path = out if stream == "out" else err
    return path.read_text() if path.is_file() else ""


def submit(adapter: Adapter, job: Job) -> Job:
    return replace(job, job_id=adapter.submit(job))


def poll_until(
    adapter: Adapter,
    jobs: Sequence[Job],
    done: Callable[[dict[str, Observation]], bool],
    deadline: float = 60.0,
) -> tuple[dict[str, Observation], dict[str, list[State]]]:
    """Poll until `done(observations)` (bounded); also each job's sequence of distinct states."""
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
            pytest.fail(f"not done within {deadline:g} s: {history}")
        time.sleep(0.1)


def ended(*names: str) -> Callable[[dict[str, Observation]], bool]:
    return lambda seen: all(n in seen and seen[n].state in ENDED for n in names)


def state_is(name: str, state: State) -> Callable[[dict[str, Observation]], bool]:
    return lambda seen: name in seen and seen[name].state is state


def gate(adapter: BatchAdapter, name: str) -> str:
    """A command that runs until a file `go` appears in the job's directory, then exits 0."""
    return f"while [ ! -e {adapter.root / name / 'go'} ]; do sleep 0.05; done; echo released"


class Fakes:
    """The stand-in CLIs on PATH, their state file, a hold switch and a call log."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.state = tmp / "fakesched.json"
        self.log = tmp / "fakesched.log"
        monkeypatch.setenv("PATH", f"{FAKES}:{__import__('os').environ['PATH']}")
        monkeypatch.setenv("FAKESCHED_STATE", str(self.state))
        monkeypatch.setenv("FAKESCHED_LOG", str(self.log))
        monkeypatch.setenv("FAKESCHED_TIME_SCALE", "0.02")  # a 1-minute limit lasts 1.2 s

    def hold(self) -> None:
        Path(f"{self.state}.hold").touch()

    def release(self) -> None:
        Path(f"{self.state}.hold").unlink(missing_ok=True)

    def calls(self) -> list[list[str]]:
        """The commands run since the last call (tool name first), then forget them."""
        if not self.log.exists():
            return []
        lines = [json.loads(x) for x in self.log.read_text().splitlines() if x]
        self.log.unlink()
        return lines

    def cleanup(self) -> None:
        """Cancel every stand-in job still queued or running (none outlives its test)."""
        import importlib.util

        spec = importlib.util.spec_from_file_location("fakesched", FAKES / "fakesched.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if self.state.exists():
            for jid, job in self.jobs().items():
                if job["state"] in ("pending", "running"):
                    mod.cancel(jid)
        self.release()

    def jobs(self) -> dict[str, dict]:
        return json.loads(self.state.read_text())["jobs"]


def scripts(adapter: BatchAdapter, spec_text: str) -> dict[str, tuple[str, str | None]]:
    """Each instance's (script, restart script) as the adapter writes them for a spec text,
    going through the real loader and expansion."""
    from reconciler.spec.build import load_study_text

    study = load_study_text(spec_text)
    out: dict[str, tuple[str, str | None]] = {}
    for inst in study.instances:

        def text(cmd: str, inst=inst) -> str:  # type: ignore[no-untyped-def]
            body = adapter.render_launcher(cmd, inst.resources)
            return adapter.render_script(
                body,
                inst.resources,
                name=inst.name,
                shell=study.batch.shell,
                description=inst.description,
            )

        out[inst.name] = (text(inst.cmd), text(inst.restart) if inst.restart else None)
    return out


def until_ended(a: Adapter, job: Job, timeout: float = 30.0) -> State:
    """Poll `job` (waiting on the adapter between polls) until it is no longer RUNNING."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obs = a.poll([job])[job.name]
        if obs.state is not State.RUNNING:
            return obs.state
        a.wait(0.5)
    raise AssertionError(f"{job.name} did not end")
