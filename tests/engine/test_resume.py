"""kill -9 of a background engine, then resume: nothing lost, nothing run twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_helpers import lines, rows, wait_for

from reconciler.engine import api
from reconciler.engine.converge import EXIT_OK
from reconciler.engine.lock import read_holder
from reconciler.plan.states import IN_FLIGHT, State
from reconciler.record.outputs import output_files

pytestmark = pytest.mark.timeout(60)

STUDY = """
- name: a
  description: d
  run:
    cmd: |
      echo $(X) > /dev/null
      echo a_$(X) >> $(SPECROOT)/count.txt
      sleep 0.4
- name: b
  description: d
  run:
    cmd: echo b_$(X) >> $(SPECROOT)/count.txt; sleep 0.2
    depends: [a]
- name: c
  description: funnel
  run:
    cmd: echo c >> $(SPECROOT)/count.txt
    depends: [b_*]
"""
PARAMS = "X:\n  values: [1, 2, 3, 4]\n  label: X.%%"


def _kill_engine(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)  # our child (start_background): reap it so its lock is gone


def test_kill9_mid_study_then_resume_runs_everything_exactly_once(study_dir, tmp_path) -> None:
    root = study_dir(STUDY, PARAMS, slots=2)
    pid = api.start_background(root, slots=2)
    # Kill when some instances finished and others are still running.
    wait_for(
        lambda: (
            any(r.state is State.FINISHED for r in rows(root).values())
            and any(r.state in IN_FLIGHT for r in rows(root).values())
        )
    )
    _kill_engine(pid)
    assert api.engine_holder(root) is None
    before = rows(root)
    assert any(r.state in IN_FLIGHT for r in before.values())
    outcome = api.run_engine(root)
    assert outcome.code == EXIT_OK
    ran = lines(tmp_path / "count.txt")
    expected = [f"a_{x}" for x in "1234"] + [f"b_{x}" for x in "1234"] + ["c"]
    assert sorted(ran) == sorted(expected)  # every instance exactly once
    after = rows(root)
    assert all(r.state is State.FINISHED for r in after.values())
    assert all(r.attempts == 1 for r in after.values())
    for name, r in before.items():  # what had finished kept its job id
        if r.state is State.FINISHED:
            assert after[name].job_id == r.job_id


def test_job_killed_while_no_engine_watches_is_retried(study_dir, tmp_path: Path) -> None:
    root = study_dir(
        """
        - name: a
          description: first run hangs until killed, the retry passes
          run:
            cmd: |
              echo run >> $(SPECROOT)/runs.txt
              echo "attempt $$"
              if [ ! -e $(SPECROOT)/marker ]; then touch $(SPECROOT)/marker; sleep 30; fi
        """,
        attempts=2,
    )
    pid = api.start_background(root)
    wait_for(lambda: (tmp_path / "marker").exists() and rows(root)["a"].job_id is not None)
    _kill_engine(pid)
    job = int(rows(root)["a"].job_id or 0)
    os.killpg(job, signal.SIGKILL)  # the job dies while no engine watches
    wait_for(lambda: not Path(f"/proc/{job}").exists() or _zombie(job))
    assert api.run_engine(root).code == EXIT_OK
    r = rows(root)["a"]
    assert r.state is State.FINISHED and r.attempts == 2
    assert lines(tmp_path / "runs.txt") == ["run", "run"]
    # Each attempt kept its own output, Maestro's `<instance>.<pid>.out`; the latest is found
    # by the job id the record holds.
    assert (root / "a" / f"a.{job}.out").read_text() == f"attempt {job}\n"
    out, err = output_files(root, r)
    assert out == root / "a" / f"a.{r.job_id}.out" and r.job_id != str(job)
    assert out.read_text() == f"attempt {r.job_id}\n"
    assert err == root / "a" / f"a.{r.job_id}.err" and err.is_file()
    # An earlier attempt's, by its job id (what `logs --attempt 1` shows).
    assert output_files(root, r, str(job))[0].read_text() == f"attempt {job}\n"


def test_running_job_is_reattached_and_its_exit_recorded(study_dir, tmp_path: Path) -> None:
    root = study_dir(
        """
        - name: a
          description: d
          run:
            cmd: |
              echo before; echo $$ > $(SPECROOT)/pid
              until [ -e $(SPECROOT)/go ]; do sleep 0.05; done
              echo after; echo done >> $(SPECROOT)/runs.txt
        """
    )
    pid = api.start_background(root)
    wait_for(lambda: (tmp_path / "pid").exists() and rows(root)["a"].job_id is not None)
    _kill_engine(pid)
    job_id = rows(root)["a"].job_id
    # While no engine runs, the running job's output is found by its recorded job id.
    running, _ = output_files(root, rows(root)["a"])
    assert running == root / "a" / f"a.{job_id}.out"
    assert running.read_text() == "before\n"
    (tmp_path / "go").touch()
    assert api.run_engine(root).code == EXIT_OK
    r = rows(root)["a"]
    assert r.job_id == job_id and r.attempts == 1
    assert lines(tmp_path / "runs.txt") == ["done"]
    assert output_files(root, r)[0].read_text() == "before\nafter\n"


def test_second_background_engine_is_refused(study_dir) -> None:
    root = study_dir("- name: a\n  description: d\n  run:\n    cmd: sleep 30")
    pid = api.start_background(root)
    try:
        wait_for(lambda: read_holder(root / ".reconciler" / "engine.lock").get("pid") == pid)
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler.engine", str(root)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 2
        assert f"pid {pid}" in proc.stderr and "another engine" in proc.stderr
    finally:
        api.cancel(root)
        os.waitpid(pid, 0)


def test_a_wake_signal_right_after_the_lock_is_taken_does_not_kill_the_engine(study_dir) -> None:
    """`cancel` sends SIGUSR1 as soon as the lock file names an engine, which is before the
    engine's loop handles the signal: the engine must live through it (its default action
    would kill it, exit -10)."""
    root = study_dir("- name: a\n  description: d\n  run:\n    cmd: sleep 30")
    lock = root / ".reconciler" / "engine.lock"
    pid = api.start_background(root)
    wait_for(lambda: read_holder(lock).get("pid") == pid)
    status = None
    while status is None and rows(root)["a"].state is not State.RUNNING:
        os.kill(pid, signal.SIGUSR1)  # from the first moment on, until the job runs
        ended, st = os.waitpid(pid, os.WNOHANG)
        status = st if ended else None
        time.sleep(0.005)
    if status is None:
        api.cancel(root)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3  # cancelled, not killed by the signal (-10)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True
