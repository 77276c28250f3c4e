"""GitOps commands as people use them daily: apply --wait's progress and outcome, --json with
clean types (apply, history, reproduce), logs of a GitOps study, `watch --once` in sync, the
watcher naming failures, and ISO times in provenance notes. Real repos, real local jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import git
import pytest
from git_helpers import commit, make_repo, rc

from reconciler.engine.api import engine_holder
from reconciler.gitops.provenance import read_entry, write_note

pytestmark = pytest.mark.timeout(180)

FAILING = """\
description: {name: mesh, description: one size fails on purpose}
study:
  - name: solve
    description: fails for SIZE 30
    run: {cmd: "echo solving $(SIZE); if [ $(SIZE) -eq 30 ]; then echo 'no mesh' >&2; exit 3; fi"}
  - name: total
    description: funnel
    run: {cmd: "echo all", depends: [solve_*]}
global.parameters:
  SIZE: {values: [10, 20, 30], label: "SIZE.%%"}
"""
FINE = """\
description: {name: fine, description: all good}
study:
  - name: hello
    description: d
    run: {cmd: "echo hello $(N)"}
global.parameters:
  N: {values: [1, 2], label: "N.%%"}
"""


@pytest.fixture
def repo(tmp_path: Path) -> tuple[git.Repo, Path, str]:
    r = make_repo(tmp_path / "studies")
    sha = commit(r, {"specs/mesh.yaml": FAILING, "specs/fine.yaml": FINE}, "two studies")
    return r, Path(r.working_tree_dir or ""), sha


def _iso(text: str | None) -> datetime:
    assert text is not None
    t = datetime.fromisoformat(text)
    assert t.tzinfo is not None
    return t


def test_apply_wait_shows_progress_then_outcomes_and_failures(repo) -> None:
    _, top, _ = repo
    p = rc(top, "apply", "--wait")  # piped: plain progress lines
    assert p.returncode == 2, p.stdout + p.stderr
    out = p.stdout
    assert "mesh: 0 of 4 ended" in out or "mesh: 1 of 4 ended" in out or "of 4 ended" in out
    assert "mesh: applied" in out and "fine: applied" in out
    tail = out[out.index("ended") :]
    assert "mesh ended Degraded: 2 FINISHED, 1 FAILED, 1 BLOCKED" in tail
    assert "solve_SIZE.30: FAILED, exit code 3, 1 attempt" in tail and "no mesh" in tail
    assert "fine ended Healthy: 2 FINISHED" in tail


def test_apply_json(repo) -> None:
    _, top, sha = repo
    p = rc(top, "apply", "--wait", "--json")
    assert p.returncode == 2
    data = json.loads(p.stdout)  # the JSON alone: progress and messages went to stderr
    assert data["revision"] == sha and data["waited"] is True and data["pushed"] is False
    mesh, fine = sorted(data["studies"], key=lambda s: s["study"] != "mesh")
    assert mesh["applied"] is True and mesh["health"] == "Degraded"
    assert mesh["counts"] == {"FINISHED": 2, "FAILED": 1, "BLOCKED": 1}
    assert mesh["failures"]["failed"] == 1 and mesh["failures"]["blocked"] == 1
    (bad,) = mesh["failures"]["instances"]
    assert bad["name"] == "solve_SIZE.30" and bad["exit_code"] == 3
    assert bad["stderr_tail"] == ["no mesh"] and Path(bad["stderr"]).is_file()
    assert fine["health"] == "Healthy" and fine["failures"]["instances"] == []


def test_history_json_has_clean_types(repo) -> None:
    r, top, sha = repo
    assert rc(top, "apply", "--wait").returncode == 2
    bad_sha = commit(r, {"specs/mesh.yaml": FAILING.replace("study:", "stdy:")}, "broken")
    assert rc(top, "apply").returncode == 2  # refused: the last applied revision stays
    p = rc(top, "history", "mesh", "--json")
    assert p.returncode == 0
    first, refused = json.loads(p.stdout)
    assert first["revision"] == sha and first["applied"] is True
    assert first["detail"]["create"] == 4 and isinstance(first["detail"], dict)
    assert first["outcome"] == {"BLOCKED": 1, "FAILED": 1, "FINISHED": 2}
    assert _iso(first["ended"]) >= _iso(first["attempted"])
    assert refused["revision"] == bad_sha and refused["applied"] is False
    assert "stdy" in refused["detail"]["error"] and refused["outcome"] is None
    argv = [sys.executable, "-m", "reconciler", "history", "mesh"]
    table = subprocess.run(argv, cwd=top, capture_output=True, text=True, check=True,
                           env={**os.environ, "COLUMNS": "80"}).stdout  # fmt: skip
    assert max(len(ln) for ln in table.splitlines()) <= 80
    words = " ".join(table.split())
    assert "2 FINISHED, 1 FAILED, 1 BLOCKED" in words and "refused:" in words, table
    assert "{" not in table  # no raw JSON for people


def test_reproduce_json(repo, tmp_path: Path) -> None:
    r, top, sha = repo
    commit(r, {"specs/mesh.yaml": None}, "one study only")
    assert rc(top, "apply", "--wait", "--rev", sha).returncode == 2
    p = rc(top, "reproduce", sha, "--study", "fine", "-o", str(tmp_path / "again"), "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["study"] == "fine" and data["identical"] is True and data["finished"] is True
    assert data["matched"] == 2 and data["differ"] == [] and data["unrecorded"] == []
    assert data["counts"] == {"FINISHED": 2}


def test_logs_of_a_gitops_study(repo) -> None:
    _, top, _ = repo
    assert rc(top, "apply", "--wait").returncode == 2
    p = rc(top, "logs", "--repo", ".", "mesh", "solve_SIZE.30", "--err")
    assert (p.returncode, p.stdout) == (0, "no mesh\n"), p.stderr
    p = rc(top, "logs", "--repo", ".", "mesh", "solve_SIZE.10")
    assert (p.returncode, p.stdout) == (0, "solving 10\n")
    p = rc(top, "logs", "--repo", ".", "nope", "solve_SIZE.10")
    assert p.returncode == 2 and "no study 'nope'" in p.stderr


def test_watch_once_says_in_sync_and_names_failures_when_a_study_ends(repo) -> None:
    _, top, sha = repo
    first = rc(top, "watch", "--once")  # applies both; engines run in the background
    assert first.returncode == 0, first.stderr
    assert "in sync" not in first.stderr
    for ws in (top / ".reconciler" / "studies").iterdir():
        deadline = time.monotonic() + 60
        while engine_holder(ws) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    second = rc(top, "watch", "--once")  # records the ends, names the failure
    assert second.returncode == 0, second.stderr
    assert "mesh: ended" in second.stderr
    assert "solve_SIZE.30: FAILED, exit code 3" in second.stderr and "no mesh" in second.stderr
    assert f"in sync: main at {sha[:12]}, nothing to apply" in second.stderr
    log = (top / ".reconciler" / "watch.log").read_text()
    assert "solve_SIZE.30: FAILED, exit code 3" in log


def test_provenance_times_are_iso_and_old_epoch_notes_still_read(repo) -> None:
    r, top, sha = repo
    assert rc(top, "apply", "--wait").returncode == 2
    entry = read_entry(r, sha, "fine")
    assert entry is not None
    for inst in entry["instances"]:
        for key in ("submit_time", "start_time", "end_time"):
            _iso(inst[key])
    older = commit(r, {"notes.txt": "x"}, "another commit")
    old = {"study": "old", "instances": [{"name": "a", "submit_time": 1700000000.5,
                                          "start_time": 1700000001, "end_time": None}]}  # fmt: skip
    write_note(r, older, old)  # as a note written before times were ISO
    (inst,) = read_entry(r, older, "old")["instances"]  # type: ignore[index]
    assert inst["submit_time"] == "2023-11-14T22:13:20+00:00"
    assert inst["start_time"] == "2023-11-14T22:13:21+00:00" and inst["end_time"] is None
