"""plan / apply / status --repo / history on real temporary git repos, as a user runs them.

Every step appends a line to a counter file outside the workspace, so "reran only what
changed" is counted, not assumed.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from git_helpers import SWEEP, rc, runs

pytestmark = pytest.mark.timeout(180)

SPEC = SWEEP


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, text: str, message: str, name: str = "sweep.yaml") -> str:
    (repo / "specs").mkdir(exist_ok=True)
    (repo / "specs" / name).write_text(text)
    git(repo, "add", "-A", "specs")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.email", "test@example.org")
    git(r, "config", "user.name", "test")
    (r / "README").write_text("studies\n")
    git(r, "add", "README")
    git(r, "commit", "-qm", "init")
    return r


def plan_json(repo: Path, *args: str) -> tuple[int, dict]:
    p = rc(repo, "plan", "--json", *args)
    return p.returncode, json.loads(p.stdout)


def actions(plan: dict) -> dict[str, tuple[str, str]]:
    return {a["instance"]: (a["action"], a["reason"]) for a in plan["studies"][0]["actions"]}


def test_apply_then_a_changed_cmd_reruns_only_that_step_and_its_descendants(repo: Path) -> None:
    commit(repo, SPEC, "sweep")
    code, plan = plan_json(repo)
    assert code == 1 and plan["studies"][0]["counts"]["create"] == 7
    r = rc(repo, "apply", "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(runs(repo, "a")) == ["1", "2", "3"] and runs(repo, "c") == ["c"]
    assert rc(repo, "plan").returncode == 0  # Synced: nothing to do

    commit(repo, SPEC.replace("cat $(a.workspace)/a.txt", "cat $(a.workspace)/a.txt; true"),
           "change b")  # fmt: skip
    code, plan = plan_json(repo)
    assert code == 1
    assert actions(plan) == {
        "b_N.1": ("rerun", "run.cmd of step 'b' changed"),
        "b_N.2": ("rerun", "run.cmd of step 'b' changed"),
        "b_N.3": ("rerun", "run.cmd of step 'b' changed"),
        "c": ("rerun", "upstream 'b' reran"),
    }
    r = rc(repo, "apply", "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(runs(repo, "a")) == ["1", "2", "3"]  # a did not run again
    assert sorted(runs(repo, "b")) == ["1", "1", "2", "2", "3", "3"]
    assert runs(repo, "c") == ["c", "c"]
    ws = repo / ".reconciler" / "studies" / "sweep"
    history = list((ws / ".reconciler" / "history").glob("*/b/N.1"))
    assert history, "the rerun instance's previous outputs were not kept"
    assert ".reconciler" in (repo / ".git" / "info" / "exclude").read_text()
    assert "?? .reconciler/" not in git(repo, "status", "--porcelain")


def test_a_new_parameter_value_runs_only_new_instances(repo: Path) -> None:
    commit(repo, SPEC, "sweep")
    assert rc(repo, "apply", "--wait").returncode == 0
    commit(repo, SPEC.replace("values: [1, 2, 3]", "values: [1, 2, 3, 4]"), "add 4")
    _, plan = plan_json(repo)
    acts = actions(plan)
    assert acts["a_N.4"] == ("create", "parameter N gained value 4")
    assert acts["b_N.4"] == ("create", "parameter N gained value 4")
    assert acts["c"][0] == "rerun"
    assert rc(repo, "apply", "--wait").returncode == 0
    assert sorted(runs(repo, "a")) == ["1", "2", "3", "4"]
    assert sorted(runs(repo, "b")) == ["1", "2", "3", "4"]


def test_an_invalid_commit_leaves_the_last_applied_revision(repo: Path) -> None:
    good = commit(repo, SPEC, "sweep")
    assert rc(repo, "apply", "--wait").returncode == 0
    bad = commit(repo, SPEC.replace("depends: [a]", "depends: [nope]"), "typo")
    p = rc(repo, "plan")
    assert p.returncode == 2
    assert "specs/sweep.yaml:8:" in p.stderr and "nope" in p.stderr
    a = rc(repo, "apply")
    assert a.returncode == 2 and "not applied" in a.stdout
    s = json.loads(rc(repo, "status", "--repo", ".", "--json").stdout)["studies"][0]
    assert s["health"] == "Degraded"
    assert s["applied_revision"] == good and s["attempted_revision"] == bad
    assert "nope" in s["error"]
    assert sorted(runs(repo, "a")) == ["1", "2", "3"]  # nothing ran again
    hist = json.loads(rc(repo, "history", "sweep", "--json").stdout)
    assert [(h["revision"], h["applied"]) for h in hist] == [(good, 1), (bad, 0)]


def test_removing_a_step_while_it_runs_cancels_it(repo: Path) -> None:
    slow = SPEC.replace(
        '"echo c >> $(SPECROOT)/../runs_c"', '"echo c >> $(SPECROOT)/../runs_c; sleep 60"'
    )
    commit(repo, slow, "slow c")
    assert rc(repo, "apply").returncode == 0  # background engine
    ws = repo / ".reconciler" / "studies" / "sweep"

    def state(name: str) -> str | None:
        out = rc(repo, "status", str(ws), "--json").stdout
        return {i["name"]: i["state"] for i in json.loads(out)}.get(name)

    deadline = time.monotonic() + 60
    while state("c") != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    without_c = slow.split("  - name: c")[0] + "global.parameters:" + slow.split(
        "global.parameters:")[1]  # fmt: skip
    commit(repo, without_c, "drop c")
    _, plan = plan_json(repo)
    assert actions(plan) == {"c": ("cancel", "step 'c' removed")}
    assert rc(repo, "apply").returncode == 0
    deadline = time.monotonic() + 60
    while state("c") != "CANCELLED":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert sorted(runs(repo, "a")) == ["1", "2", "3"]  # the rest was left alone


def test_notes_are_written_and_readable_with_plain_git(repo: Path) -> None:
    sha = commit(repo, SPEC, "sweep")
    assert rc(repo, "apply", "--wait").returncode == 0
    note = git(repo, "notes", "--ref", "reconciler", "show", sha)
    assert "study: sweep" in note and f"revision: {sha}" in note
    assert "outcome: FINISHED" in note and "fingerprint:" in note


def test_reproduce_an_older_commit_matches_its_fingerprints(repo: Path, tmp_path: Path) -> None:
    old = commit(repo, SPEC, "sweep")
    assert rc(repo, "apply", "--wait").returncode == 0
    commit(repo, SPEC.replace("cat $(a.workspace)/a.txt", "cat $(a.workspace)/a.txt; true"), "b")
    assert rc(repo, "apply", "--wait").returncode == 0
    out = tmp_path / "again"
    r = rc(repo, "reproduce", old, "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "7 of 7 fingerprints identical" in r.stdout and "7 FINISHED" in r.stdout
    assert (out / "c").is_dir()
    r = rc(repo, "reproduce", old, "-o", str(out))  # never into an existing directory
    assert r.returncode == 2 and "exists" in r.stderr


def test_a_study_that_ends_in_the_background_gets_its_note(repo: Path) -> None:
    sha = commit(repo, SPEC, "sweep")
    assert rc(repo, "apply").returncode == 0  # background engine
    ws = repo / ".reconciler" / "studies" / "sweep"
    from reconciler.engine.api import engine_holder

    deadline = time.monotonic() + 60
    while engine_holder(ws) is not None or len(runs(repo, "c")) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "outcome: applied" in git(repo, "notes", "--ref", "reconciler", "show", sha)
    status = json.loads(rc(repo, "status", "--repo", ".", "--json").stdout)["studies"][0]
    assert status["health"] == "Healthy"
    assert "outcome: FINISHED" in git(repo, "notes", "--ref", "reconciler", "show", sha)
    hist = json.loads(rc(repo, "history", "sweep", "--json").stdout)
    assert hist[-1]["outcome"] == {"FINISHED": 7} and hist[-1]["applied"] is True


def test_a_finished_instance_whose_directory_is_gone_is_missing(repo: Path) -> None:
    import shutil

    commit(repo, SPEC, "sweep")
    assert rc(repo, "apply", "--wait").returncode == 0
    shutil.rmtree(repo / ".reconciler" / "studies" / "sweep" / "b" / "N.2")
    s = json.loads(rc(repo, "status", "--repo", ".", "--json").stdout)["studies"][0]
    # Drift is OutOfSync, as in Argo CD: the live state is no longer what was applied.
    assert (s["sync"], s["health"]) == ("OutOfSync", "Missing")
