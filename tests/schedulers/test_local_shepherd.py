"""The local adapter's shepherds, with real processes: what a job process is, what it inherits,
and what happens to it when the engine dies (it finishes, records its end, is found again)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sched_helpers import output, until_ended

from reconciler.plan.states import State
from reconciler.schedulers import shepherd
from reconciler.schedulers.base import Job, SubmitError
from reconciler.schedulers.local import WRAPPER_NAME, LocalAdapter, read_exit
from reconciler.spec.names import safe_name, script_name

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[2]


def _job(root: Path, name: str, body: str, *, shell: str = "/bin/bash", **kw: object) -> Job:
    wd = root / "step" / name
    wd.mkdir(parents=True, exist_ok=True)
    script = wd / script_name(name)
    script.write_text(f"#!{shell}\n{body}\n")
    return Job(name=name, workdir=wd, script=script, stem=wd / safe_name(name),
               exit_file=wd / f"{name}.exit", submission=1,
               shell=shell, **kw)  # type: ignore[arg-type]  # fmt: skip


def _adapter(root: Path) -> LocalAdapter:
    a = LocalAdapter(root, slots=2)
    a.prepare(root)
    return a


def _until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def test_a_job_is_its_scripts_shell_leading_its_own_group(tmp_path: Path) -> None:
    a = _adapter(tmp_path)
    j = _job(tmp_path, "j", 'ls /proc/$$/fd > fds.txt; echo "$0"; exec sleep 30')
    pid = int(a.submit(j))
    j = replace(j, job_id=str(pid))
    _until(lambda: (j.workdir / "fds.txt").exists() and output(j), "the job started")
    # The script's shell, then what it exec'd (the exec may still be under way at first).
    _until(lambda: shepherd.cmdline(pid) == ["sleep", "30"], "the job exec'd sleep")
    _, ppid, pgrp, session = _stat(pid)[:4]
    assert int(pgrp) == pid  # leads its process group: cancel and walltime kill it whole
    parent = shepherd.cmdline(ppid)
    assert shepherd.is_shepherd(parent, tmp_path) and int(session) == int(ppid)  # own session
    assert output(j) == f"{j.script}\n"  # $0 is the script, as with `bash script`
    # Nothing but stdin, stdout and stderr (and bash's own descriptor for its script) is open:
    # the shepherd's pipes to the engine are not the job's.
    assert set((j.workdir / "fds.txt").read_text().split()) <= {"0", "1", "2", "255"}
    assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
    a.cancel([j])
    assert until_ended(a, j) is State.CANCELLED
    assert j.exit_file.read_text().split() == ["cancelled", "1"]  # not the signal's 143


def test_the_job_gets_the_engines_environment_and_default_signals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_TEST_VALUE", "a b\nc")
    a = _adapter(tmp_path)  # shepherds start with the engine's environment at their start
    body = 'printf "%s" "$RECONCILER_TEST_VALUE" > value.txt\nyes | head -n 1 > /dev/null\n'
    body += 'echo "${PIPESTATUS[0]}" > pipestatus.txt'  # 141: `yes` got SIGPIPE, not ignored
    j = _job(tmp_path, "env", body)
    j = replace(j, job_id=a.submit(j))
    assert until_ended(a, j) is State.FINISHED
    assert (j.workdir / "value.txt").read_text() == "a b\nc"
    assert (j.workdir / "pipestatus.txt").read_text().strip() == "141"


def test_a_killed_job_keeps_the_engines_reason(tmp_path: Path) -> None:
    """Walltime: the engine records `timeout` before it kills; a job that traps SIGTERM and
    exits 0 is still TIMEDOUT (its shepherd does not overwrite the engine's record)."""
    a = _adapter(tmp_path)
    j = _job(tmp_path, "t", "trap 'exit 0' TERM; echo up; sleep 30 & wait", walltime=0.5)
    j = replace(j, job_id=a.submit(j))
    assert until_ended(a, j) is State.TIMEDOUT
    assert j.exit_file.read_text().split() == ["timeout", "1"]


def test_a_shell_that_cannot_run_is_a_failed_submit_with_127(tmp_path: Path) -> None:
    a = _adapter(tmp_path)
    j = _job(tmp_path, "n", "true", shell=str(tmp_path / "no-such-shell"))
    with pytest.raises(SubmitError, match="no-such-shell"):
        a.submit(j)
    assert j.exit_file.read_text().split() == ["127", "1"]
    ok = _job(tmp_path, "ok", "exit 5")  # the shepherd goes on with the next job
    ok = replace(ok, job_id=a.submit(ok))
    assert until_ended(a, ok) is State.FAILED and read_exit(ok).exit_code == 5  # type: ignore[union-attr]


def test_a_job_whose_start_cannot_be_recorded_does_not_start(tmp_path: Path) -> None:
    """A shepherd names its job in its state file before it starts it: where it cannot (here
    the state directory is a file; on a full disk, the same), the job is not started — it
    would be unknown to an engine restarted meanwhile, and could be started twice."""
    a = _adapter(tmp_path)
    (tmp_path / ".reconciler" / "shepherds").write_text("in the way\n")
    j = _job(tmp_path, "n", "touch ran")
    with pytest.raises(SubmitError, match="cannot record the start"):
        a.submit(j)
    assert not (j.workdir / "ran").exists()
    assert j.exit_file.read_text().split() == ["127", "1"]


def test_paths_with_spaces_and_newlines_are_data(tmp_path: Path) -> None:
    root = tmp_path / "a root\nwith $(touch pwned) 'quotes'"
    root.mkdir()
    a = _adapter(root)
    j = _job(root, "odd name", "echo here")
    j = replace(j, job_id=a.submit(j))
    assert until_ended(a, j) is State.FINISHED
    assert output(j) == "here\n" and not (Path.cwd() / "pwned").exists()
    assert not any(p.name == "pwned" for p in tmp_path.rglob("*"))


ENGINE = """
import sys, time
from pathlib import Path
from reconciler.schedulers.base import Job
from reconciler.schedulers.local import LocalAdapter
root, wd = Path(sys.argv[1]), Path(sys.argv[2])
a = LocalAdapter(root, slots=1)
a.prepare(root)
j = Job(name="d", workdir=wd, script=wd / "d.sh", stem=wd / "d", exit_file=wd / "d.exit",
        submission=3)
print(a.submit(j), flush=True)
time.sleep(60)
"""


def _engine_that_dies(root: Path, job: Job) -> int:
    """Submit `job` from another process, then kill -9 that process; the job's pid."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", ENGINE, str(root), str(job.workdir)],
        stdout=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return pid


def test_the_engine_dies_the_job_finishes_records_and_is_found_again(tmp_path: Path) -> None:
    j = _job(tmp_path, "d", "until [ -e go ]; do sleep 0.05; done; echo done; exit 7")
    j = replace(j, submission=3)
    pid = _engine_that_dies(tmp_path, j)
    a = _adapter(tmp_path)  # a new engine
    assert a.find(j) == str(pid)  # id never recorded: found by its process
    j = replace(j, job_id=str(pid))
    assert a.poll([j])["d"].state is State.RUNNING  # re-attached
    (j.workdir / "go").touch()
    assert until_ended(a, j) is State.FAILED
    assert j.exit_file.read_text().split() == ["7", "3"]  # recorded by the orphaned shepherd
    assert output(j) == "done\n"
    # Its shepherd saw EOF and went away after the job: nothing of that engine is left.
    _until(lambda: not any(
        shepherd.is_shepherd(shepherd.cmdline(p.name), tmp_path)
        for p in Path("/proc").iterdir() if p.name.isdigit()
    ), "the dead engine's shepherd exited")  # fmt: skip


def test_a_job_that_execs_with_its_output_elsewhere_is_found_again(tmp_path: Path) -> None:
    """A job is known by its shepherd's state file, not by its command line or open files: a
    script that points its own output elsewhere and `exec`s another program is still found and
    re-attached by a new engine, not called LOST and run again."""
    wait = "until [ -e go ]; do sleep 0.05; done; exit 0"
    j = _job(tmp_path, "d", f"exec >log.txt 2>&1; exec /bin/sh -c '{wait}'")
    j = replace(j, submission=3)  # what the dying engine submits
    pid = _engine_that_dies(tmp_path, j)
    _until(lambda: shepherd.cmdline(pid)[:1] == ["/bin/sh"], "the job exec'd")
    a = _adapter(tmp_path)  # a new engine
    assert a.find(j) == str(pid)
    j = replace(j, job_id=str(pid))
    assert a.poll([j])["d"].state is State.RUNNING  # re-attached
    (j.workdir / "go").touch()
    assert until_ended(a, j) is State.FINISHED


def test_a_job_that_ends_while_no_engine_runs_is_read_from_its_record(tmp_path: Path) -> None:
    j = _job(tmp_path, "d", "exit 0")
    pid = _engine_that_dies(tmp_path, replace(j, submission=3))
    j = replace(j, submission=3, job_id=str(pid))
    _until(lambda: read_exit(j) is not None, "the job recorded its end")
    assert _adapter(tmp_path).poll([j])["d"].state is State.FINISHED


def test_jobs_of_the_older_wrapper_are_still_recognised(tmp_path: Path) -> None:
    """Workspaces started by earlier versions: jobs run by local-job.sh, under sh with OUT ERR
    (`<instance>.out`, before outputs were named by pid) or (older still) under bash without
    them, are re-attached and cancelled."""
    a = _adapter(tmp_path)
    wrapper = tmp_path / ".reconciler" / WRAPPER_NAME
    for shell, extra in (("/bin/sh", True), ("/bin/bash", False)):
        if not extra:  # the oldest wrapper: no OUT ERR, output redirected by the engine
            wrapper.write_text('"$3" "$4"\nrc=$?\nprintf \'%s %s\\n\' "$rc" "$2" > "$1"\n')
        j = _job(tmp_path, f"w{len(extra * 'x')}", "sleep 30")
        args = [shell, str(wrapper), str(j.exit_file), "1", j.shell, str(j.script)]
        if extra:
            args += [str(j.workdir / f"{j.name}.out"), str(j.workdir / f"{j.name}.err")]
        proc = subprocess.Popen(args, cwd=j.workdir, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        j = replace(j, job_id=str(proc.pid))
        assert a.find(replace(j, job_id=None)) == str(proc.pid)
        assert a.poll([j])[j.name].state is State.RUNNING
        a.cancel([j])
        proc.wait()
        assert until_ended(a, j) is State.CANCELLED


def test_without_shepherds_jobs_go_through_the_wrapper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shepherd, "usable", lambda: False)
    a = _adapter(tmp_path)
    j = _job(tmp_path, "w", "echo out; exit 4")
    pid = a.submit(j)
    assert shepherd.cmdline(pid)[:2] in (
        [],
        ["/bin/sh", str(tmp_path / ".reconciler" / WRAPPER_NAME)],
    )
    j = replace(j, job_id=pid)
    assert until_ended(a, j) is State.FAILED and output(j) == "out\n"
    c = _job(tmp_path, "c", "sleep 30")
    c = replace(c, job_id=a.submit(c))
    a.cancel([c])
    assert until_ended(a, c) is State.CANCELLED


def test_a_shepherd_killed_between_jobs_is_replaced(tmp_path: Path) -> None:
    a = LocalAdapter(tmp_path, slots=1)
    a.prepare(tmp_path)
    first = _job(tmp_path, "first", "true")
    first = replace(first, job_id=a.submit(first))
    assert until_ended(a, first) is State.FINISHED
    assert a._flock is not None
    (dead,) = a._flock.shepherds
    old = dead.proc.pid
    os.kill(old, signal.SIGKILL)
    dead.proc.wait()
    second = _job(tmp_path, "second", "echo again")
    second = replace(second, job_id=a.submit(second))
    assert until_ended(a, second) is State.FINISHED and output(second) == "again\n"
    assert old not in a._flock.pids()
