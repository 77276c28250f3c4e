"""The local adapter with real processes: exit records, streaming, walltime, re-attach, cancel."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sched_helpers import output, until_ended

from reconciler.plan.states import State
from reconciler.schedulers.base import Job
from reconciler.schedulers.local import LocalAdapter
from reconciler.spec.names import safe_name, script_name
from reconciler.spec.walltime import walltime_seconds

pytestmark = pytest.mark.timeout(60)


def _job(
    tmp_path: Path, name: str, body: str, walltime: float | None = None, submission: int = 1
) -> Job:
    wd = tmp_path / name
    wd.mkdir(exist_ok=True)
    script = wd / script_name(name)
    script.write_text(f"#!/bin/bash\n{body}\n")
    return Job(
        name=name,
        workdir=wd,
        script=script,
        stem=wd / safe_name(name),
        exit_file=wd / f"{name}.exit",
        submission=submission,
        walltime=walltime,
    )


def _adapter(tmp_path: Path, slots: int = 4) -> LocalAdapter:
    a = LocalAdapter(tmp_path, slots=slots)
    a.prepare(tmp_path)
    return a


def _with_id(job: Job, job_id: str, start: float | None = None) -> Job:
    from dataclasses import replace

    return replace(job, job_id=job_id, start_time=start)


def test_exit_codes_and_streamed_output(tmp_path: Path) -> None:
    a = _adapter(tmp_path)
    ok = _job(tmp_path, "ok", "echo early; echo oops >&2; sleep 0.5; echo late")
    bad = _job(tmp_path, "bad", "exit 3")
    ok_id, bad_id = a.submit(ok), a.submit(bad)
    ok, bad = _with_id(ok, ok_id), _with_id(bad, bad_id)
    # Output reaches the file while the job still runs (not buffered until the end).
    deadline = time.monotonic() + 10
    while "early" not in output(ok):  # the shepherd opens it
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert a.poll([ok])["ok"].state is State.RUNNING
    assert until_ended(a, ok) is State.FINISHED
    assert until_ended(a, bad) is State.FAILED
    assert a.poll([bad])["bad"].exit_code == 3
    assert output(ok) == "early\nlate\n" and output(ok, "err") == "oops\n"
    # Maestro's local names: <instance>.<pid>.out/.err, the pid being the job id.
    assert (ok.workdir / f"ok.{ok_id}.out").read_text() == "early\nlate\n"
    assert (ok.workdir / f"ok.{ok_id}.err").read_text() == "oops\n"
    assert ok.exit_file.read_text().split() == ["0", "1"]


def test_slots_are_the_capacity(tmp_path: Path) -> None:
    a = _adapter(tmp_path, slots=2)
    assert a.capacity() == 2
    j = _job(tmp_path, "s", "sleep 0.3")
    j = _with_id(j, a.submit(j))
    assert a.capacity() == 1
    until_ended(a, j)
    deadline = time.monotonic() + 5
    while a.capacity() != 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_walltime_kills_the_group_as_timedout(tmp_path: Path) -> None:
    a = _adapter(tmp_path)
    j = _job(tmp_path, "slow", "sleep 30 & echo $! > child.pid; wait", walltime=0.5)
    j = _with_id(j, a.submit(j))
    assert until_ended(a, j) is State.TIMEDOUT
    child = int((j.workdir / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and "Z" not in _stat(child):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]
    except OSError:
        return "Z"


def test_reattach_from_a_fresh_adapter(tmp_path: Path) -> None:
    first = _adapter(tmp_path)
    j = _job(tmp_path, "r", "sleep 0.6; exit 4")
    j = _with_id(j, first.submit(j), time.time())
    second = _adapter(tmp_path)  # as if the engine restarted
    assert second.poll([j])["r"].state is State.RUNNING
    assert until_ended(second, j) is State.FAILED
    assert second.poll([j])["r"].exit_code == 4


def test_a_foreign_pid_is_not_ours_and_a_stale_record_is_not_read(tmp_path: Path) -> None:
    a = _adapter(tmp_path)
    j = _with_id(_job(tmp_path, "x", "true", submission=2), str(os.getpid()))
    j.exit_file.write_text("0 1\n")  # submission 1's record, not this one's
    assert a.poll([j])["x"].state is State.LOST


def test_a_job_that_ends_while_it_is_looked_for_is_read_not_lost(tmp_path: Path) -> None:
    """After a restart: the first read finds no exit record, then the job ends (its record
    written, its process gone) before the process check. Its end is read, not called LOST."""
    first = _adapter(tmp_path)
    j = _job(tmp_path, "e", "read -r _ < ./go; exit 3")  # runs until released
    os.mkfifo(j.workdir / "go")
    j = _with_id(j, first.submit(j), time.time())
    second = _adapter(tmp_path)  # as if the engine restarted
    looked = second._ours

    def ends_meanwhile(pid: int, job: Job, **kw: bool) -> bool:
        with open(j.workdir / "go", "w") as fifo:  # release the job...
            fifo.write("go\n")
        while Path(f"/proc/{pid}").exists():  # ...until its process is gone (its end is
            time.sleep(0.01)  # recorded before that)
        return looked(pid, job, **kw)

    second._ours = ends_meanwhile  # type: ignore[method-assign]
    obs = second.poll([j])["e"]
    assert obs.state is State.FAILED and obs.exit_code == 3


def test_cancel_and_find(tmp_path: Path) -> None:
    a = _adapter(tmp_path)
    j = _job(tmp_path, "c", "sleep 30")
    job_id = a.submit(j)
    assert a.find(j) == job_id
    j = _with_id(j, job_id)
    a.cancel([j])
    assert until_ended(a, j) is State.CANCELLED


def test_walltime_formats() -> None:
    assert walltime_seconds("00:00:01") == 1
    assert walltime_seconds("01:30:00") == 5400
    assert walltime_seconds("90") == 5400  # an int means minutes
    assert walltime_seconds("2:30") == 150
    assert walltime_seconds("1-02:00:00") == 93600
    assert walltime_seconds(None) is None
    with pytest.raises(ValueError, match="walltime"):
        walltime_seconds("soon")
