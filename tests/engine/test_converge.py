"""The converge loop with the local adapter: real processes, assertions on order and counts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from engine_helpers import lines, rows, wait_for

from reconciler.engine import api
from reconciler.engine.converge import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, Engine
from reconciler.plan.states import State
from reconciler.record.store import Store

pytestmark = pytest.mark.timeout(60)


def test_chain_of_20_runs_in_dependency_order(study_dir, tmp_path: Path) -> None:
    steps = []
    for i in range(20):
        dep = f"\n    depends: [s{i - 1}]" if i else ""
        steps.append(
            f"- name: s{i}\n  description: d\n  run:\n    cmd: echo s{i} >> "
            f"$(SPECROOT)/order.txt{dep}"
        )
    root = study_dir("\n".join(steps))
    outcome = api.run_engine(root)
    assert outcome.code == EXIT_OK
    assert lines(tmp_path / "order.txt") == [f"s{i}" for i in range(20)]
    assert {r.state for r in rows(root).values()} == {State.FINISHED}


def test_independent_instances_overlap(study_dir, tmp_path: Path) -> None:
    root = study_dir(
        """
        - name: p
          description: d
          run:
            cmd: |
              echo "start $(date +%s.%N)" >> $(SPECROOT)/$(X).log
              sleep 0.5
              echo "end $(date +%s.%N)" >> $(SPECROOT)/$(X).log
        """,
        "X:\n  values: [1, 2, 3]\n  label: X.%%",
        slots=3,
    )
    assert api.run_engine(root).code == EXIT_OK
    stamps = {x: dict(line.split() for line in lines(tmp_path / f"{x}.log")) for x in "123"}
    starts = [float(s["start"]) for s in stamps.values()]
    ends = [float(s["end"]) for s in stamps.values()]
    assert max(starts) < min(ends)  # every instance started before any of them ended


@pytest.mark.parametrize(("attempts", "state"), [(3, State.FINISHED), (2, State.FAILED)])
def test_failed_instances_are_retried_per_attempts(study_dir, tmp_path, attempts, state) -> None:
    root = study_dir(
        """
        - name: flaky
          description: fails twice
          run:
            cmd: |
              echo x >> $(SPECROOT)/tries.txt
              test "$(wc -l < $(SPECROOT)/tries.txt)" -ge 3
        - name: after
          description: d
          run:
            cmd: echo after >> $(SPECROOT)/after.txt
            depends: [flaky]
        """,
        attempts=attempts,
    )
    outcome = api.run_engine(root)
    r = rows(root)
    assert r["flaky"].state is state
    assert r["flaky"].attempts == attempts
    assert len(lines(tmp_path / "tries.txt")) == attempts
    if state is State.FINISHED:
        assert outcome.code == EXIT_OK and lines(tmp_path / "after.txt") == ["after"]
    else:
        assert outcome.code == EXIT_FAILED and r["after"].state is State.BLOCKED
        assert r["flaky"].exit_code == 1


def test_timeout_runs_the_restart_script(study_dir, tmp_path: Path) -> None:
    root = study_dir(
        """
        - name: slow
          description: d
          run:
            cmd: echo main >> $(SPECROOT)/runs.txt; sleep 30
            restart: echo restart >> $(SPECROOT)/runs.txt
            walltime: "00:00:01"
        - name: plain
          description: times out, no restart
          run:
            cmd: sleep 30
            walltime: "00:00:01"
        - name: child
          description: d
          run:
            cmd: echo child
            depends: [plain]
        """,
        rlimit=1,
    )
    outcome = api.run_engine(root)
    r = rows(root)
    assert lines(tmp_path / "runs.txt") == ["main", "restart"]
    assert r["slow"].state is State.FINISHED and r["slow"].restarts == 1
    assert r["plain"].state is State.TIMEDOUT
    assert r["child"].state is State.BLOCKED
    assert outcome.code == EXIT_FAILED


def test_throttle_caps_instances_in_flight(study_dir, tmp_path: Path) -> None:
    root = study_dir(
        """
        - name: t
          description: d
          run:
            cmd: |
              echo "+1" >> $(SPECROOT)/flight.txt
              echo "instance $(X)"
              sleep 0.2
              echo "-1" >> $(SPECROOT)/flight.txt
        """,
        "X:\n  values: [1, 2, 3, 4, 5, 6]\n  label: X.%%",
        throttle=2,
        slots=4,
    )
    assert api.run_engine(root).code == EXIT_OK
    level = peak = 0
    for step in lines(tmp_path / "flight.txt"):
        level += int(step)
        peak = max(peak, level)
    assert len(lines(tmp_path / "flight.txt")) == 12
    assert peak <= 2


def test_failure_blocks_descendants_and_funnel_other_branches_go_on(study_dir) -> None:
    root = study_dir(
        """
        - name: a
          description: d
          run:
            cmd: test $(X) -ne 2
        - name: b
          description: d
          run:
            cmd: echo $(X)
            depends: [a]
        - name: c
          description: funnel
          run:
            cmd: echo all
            depends: [b_*]
        - name: d
          description: independent
          run:
            cmd: echo free
        """,
        "X:\n  values: [1, 2, 3]\n  label: X.%%",
    )
    outcome = api.run_engine(root)
    r = {n: row.state for n, row in rows(root).items()}
    assert r["a_X.2"] is State.FAILED
    assert r["b_X.2"] is State.BLOCKED
    assert r["b_X.1"] is State.FINISHED and r["b_X.3"] is State.FINISHED
    assert r["c"] is State.BLOCKED
    assert r["d"] is State.FINISHED
    assert outcome.code == EXIT_FAILED


def test_cancel_kills_running_and_skips_descendants(study_dir, tmp_path: Path) -> None:
    root = study_dir(
        """
        - name: long
          description: d
          run:
            cmd: echo $$ > $(SPECROOT)/pid.txt; sleep 30
        - name: next
          description: d
          run:
            cmd: echo ran >> $(SPECROOT)/next.txt
            depends: [long]
        """
    )
    result: list[api.Outcome] = []
    t = threading.Thread(target=lambda: result.append(api.run_engine(root)))
    t.start()
    wait_for(lambda: rows(root)["long"].state is State.RUNNING and (tmp_path / "pid.txt").exists())
    assert api.cancel(root) == 2
    t.join(timeout=20)
    assert result and result[0].code == EXIT_CANCELLED
    r = rows(root)
    assert r["long"].state is State.CANCELLED and r["next"].state is State.CANCELLED
    assert not (tmp_path / "next.txt").exists()
    pid = int((tmp_path / "pid.txt").read_text())
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


def test_cancel_with_no_engine_records_cancelled(study_dir) -> None:
    root = study_dir("- name: a\n  description: d\n  run:\n    cmd: echo a")
    assert api.cancel(root) == 1
    assert rows(root)["a"].state is State.CANCELLED
    assert api.run_engine(root).code == EXIT_CANCELLED


def test_second_engine_is_refused_naming_the_holder(study_dir) -> None:
    root = study_dir("- name: a\n  description: d\n  run:\n    cmd: echo a")
    from reconciler.engine.lock import EngineLock, LockHeld

    with EngineLock(root / ".reconciler" / "engine.lock"):
        with pytest.raises(LockHeld) as e:
            api.run_engine(root)
        assert f"pid {__import__('os').getpid()}" in str(e.value)
    assert api.run_engine(root).code == EXIT_OK


def test_update_accepts_zero(study_dir) -> None:
    root = study_dir("- name: a\n  description: d\n  run:\n    cmd: echo a", throttle=3)
    now = api.update(root, throttle=0, rlimit=0, sleep=None)
    assert now["throttle"] == 0 and now["rlimit"] == 0


def test_unconfirmed_submit_is_submitted_once(study_dir, tmp_path: Path) -> None:
    """Intent recorded, engine died before the process started: it runs once, one attempt."""
    root = study_dir("- name: a\n  description: d\n  run:\n    cmd: echo a >> $(SPECROOT)/n.txt")
    store = Store.open(root)
    store.apply({"a": {"state": State.PENDING, "attempts": 1, "submit_time": 1.0}})
    store.close()
    assert api.run_engine(root).code == EXIT_OK
    assert lines(tmp_path / "n.txt") == ["a"]
    assert rows(root)["a"].attempts == 1


def test_confirmations_held_by_a_dead_engine_are_recovered(study_dir, tmp_path: Path) -> None:
    """A pass commits its intent before it starts anything; the job ids it got are held for the
    next pass's transaction. An engine that dies holding them loses nothing: the next engine
    finds the running jobs (or their exit records) and runs nothing twice."""
    root = study_dir(
        "- name: a\n  description: d\n  run:\n    cmd: echo $(X) >> $(SPECROOT)/n.txt; sleep 0.3",
        "X:\n  values: [1, 2, 3]\n  label: X.%%",
        slots=2,
    )
    engine = Engine(root, slots=2)
    engine.run_pass(settle=False)
    held = [name for name, cols in engine.changes.items() if cols.get("job_id")]
    assert len(held) == 2  # two slots: two jobs started, their ids not committed yet
    engine.store.close()  # the engine "dies" here: what it held is gone
    recorded = rows(root)
    assert all(recorded[n].state is State.PENDING and not recorded[n].job_id for n in held)
    assert api.run_engine(root).code == EXIT_OK
    assert sorted(lines(tmp_path / "n.txt")) == ["1", "2", "3"]  # each once
    after = rows(root)
    assert all(r.attempts == 1 and r.job_id for r in after.values())
    store = Store.open(root)
    try:
        found = {e.instance for e in store.events() if e.kind == "found"}
    finally:
        store.close()
    ended_early = {n for n in held if n not in found}  # ended before the new engine looked
    assert found | ended_early == set(held)


def test_confirmations_reach_the_record_while_jobs_run(study_dir, tmp_path: Path) -> None:
    """Held confirmations are committed within CONFIRM_DELAY when no job ends meanwhile: a
    long job shows its job id and RUNNING in the record (for `status`) while it runs."""
    root = study_dir("- name: a\n  description: d\n  run:\n    cmd: sleep 30")
    result: list[api.Outcome] = []
    t = threading.Thread(target=lambda: result.append(api.run_engine(root)))
    t.start()
    try:
        wait_for(lambda: rows(root)["a"].state is State.RUNNING and bool(rows(root)["a"].job_id))
    finally:
        api.cancel(root)
        t.join(timeout=20)
    assert result and result[0].code == EXIT_CANCELLED
