"""`reconciler watch` as a real process on real temporary repos, driven by committing.

Every step appends to a counter file outside the workspace, so "ran once", "reran only what
changed" and "ran nothing twice" are counted, not assumed. Waits are bounded polls on outcomes
(states in the record, lines in the log); no test asserts on how long anything took. Every test
kills its watchers in a finalizer and cancels what its studies still run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from git_helpers import SWEEP, rc, runs

from reconciler.engine.api import engine_holder
from reconciler.engine.lock import holder_if_locked

pytestmark = pytest.mark.timeout(240)

SPEC = SWEEP
SLOW_A = SPEC.replace("echo $(N) > a.txt", "sleep 3; echo $(N) > a.txt")
STEP_D = """  - name: d
    description: added later, independent
    run: {cmd: "echo d >> $(SPECROOT)/../runs_d"}
"""
SLOW = """\
description: {name: slow, description: a long job}
study:
  - name: long
    description: runs until cancelled
    run: {cmd: "echo started >> $(SPECROOT)/../runs_long; sleep 120"}
"""
WAIT = 90.0  # the most any single wait may take before the test fails


# -- helpers ---------------------------------------------------------------------------------


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True,
        env=None if env is None else {**os.environ, **env},
    ).stdout.strip()  # fmt: skip


def commit(repo: Path, text: str | None, message: str, name: str = "sweep.yaml") -> str:
    path = repo / "specs" / name
    if text is None:
        git(repo, "rm", "-q", str(path.relative_to(repo)))
    else:
        path.write_text(text)
        git(repo, "add", "-A", "specs")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def ws(repo: Path, study: str = "sweep") -> Path:
    return repo / ".reconciler" / "studies" / study


def query(repo: Path, sql: str, study: str = "sweep") -> list[tuple]:
    db = ws(repo, study) / ".reconciler" / "record.db"
    if not db.exists():
        return []
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the schema is being created
        return []
    finally:
        con.close()


def states(repo: Path, study: str = "sweep") -> dict[str, str]:
    return dict(query(repo, "SELECT name, state FROM instance", study))


def applied(repo: Path, study: str = "sweep") -> str | None:
    rows = query(repo, "SELECT last_applied_revision FROM study", study)
    return rows[0][0] if rows else None


def wait_until(what: str, check: Callable[[], object], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for: {what}"
        time.sleep(0.1)


def ended_at(repo: Path, sha: str, n: int, study: str = "sweep") -> Callable[[], bool]:
    """The study is applied at `sha`, its n instances finished, and its engine has exited."""

    def check() -> bool:
        s = states(repo, study)
        return (
            applied(repo, study) == sha
            and len(s) == n
            and set(s.values()) == {"FINISHED"}
            and engine_holder(ws(repo, study)) is None
        )

    return check


class Watch:
    """One `reconciler watch` process on a repo; its log is `.reconciler/watch.log`."""

    def __init__(self, repo: Path, out: Path, *args: str, env: dict[str, str] | None = None):
        self.repo = repo
        self.out = out
        with open(out, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "watch", *args], cwd=repo, stdout=fh,
                stderr=subprocess.STDOUT, env=None if env is None else {**os.environ, **env},
            )  # fmt: skip

    @property
    def log(self) -> str:
        f = self.repo / ".reconciler" / "watch.log"
        return f.read_text() if f.exists() else ""

    def wait_log(self, text: str, count: int = 1) -> None:
        def check() -> bool:
            assert self.proc.poll() is None, f"watcher exited: {self.out.read_text()}"
            return self.log.count(text) >= count

        wait_until(f"{count} × {text!r} in the watch log", check)

    def ready(self) -> Watch:
        """After the first pass, with the file watch in place."""
        self.wait_log("watching", count=self.log.count("watching") + 1)
        return self

    def passes(self, sha: str, count: int) -> None:
        """Wait for `count` more resync passes at `sha`."""
        line = f"resync pass at {sha[:12]}"
        self.wait_log(line, self.log.count(line) + count)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    (r / "specs").mkdir(parents=True)
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.email", "test@example.org")
    git(r, "config", "user.name", "test")
    (r / "specs" / "README").write_text("studies\n")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "init")
    return r


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Watch]]:
    """Start watchers; afterwards kill every one still alive and cancel what studies run."""
    started: list[Watch] = []

    def _start(repo: Path, *args: str, env: dict[str, str] | None = None) -> Watch:
        w = Watch(repo, tmp_path / f"watch-{len(started)}.out", *args, env=env)
        started.append(w)
        return w

    yield _start
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
        w.proc.wait(timeout=30)
    for repo in {w.repo for w in started}:
        root = repo / ".reconciler" / "studies"
        for study in sorted(root.iterdir()) if root.is_dir() else []:
            if (study / ".reconciler" / "record.db").exists():
                rc(repo, "cancel", "-y", str(study), timeout=120)


# -- tests -----------------------------------------------------------------------------------


def test_a_new_spec_runs_to_finished_and_an_edit_reruns_only_what_changed(repo, start):
    w = start(repo, "--interval", "2").ready()
    first = commit(repo, SPEC, "sweep")
    wait_until("the sweep to finish", ended_at(repo, first, 7))
    assert sorted(runs(repo, "a")) == ["1", "2", "3"] and runs(repo, "c") == ["c"]
    w.wait_log(f"sweep: applied {first[:12]} (7 create)")

    edited = SPEC.replace("cat $(a.workspace)/a.txt", "cat $(a.workspace)/a.txt; true")
    second = commit(repo, edited, "change b")
    wait_until("the edit to finish", ended_at(repo, second, 7))
    w.wait_log(f"sweep: applied {second[:12]} (4 rerun)")
    assert sorted(runs(repo, "a")) == ["1", "2", "3"]  # a did not run again
    assert sorted(runs(repo, "b")) == ["1", "1", "2", "2", "3", "3"]
    assert runs(repo, "c") == ["c", "c"]
    # The ended run is settled: outcome in history and the FINISHED note on the commit.
    w.wait_log("sweep: ended: 7 FINISHED", count=2)
    note = git(repo, "notes", "--ref", "reconciler", "show", second)
    assert f"revision: {second}" in note and "outcome: FINISHED" in note
    hist = json.loads(rc(repo, "history", "sweep", "--json", timeout=120).stdout)
    assert [(h["revision"], h["applied"]) for h in hist] == [(first, 1), (second, 1)]
    assert "?? .reconciler/" not in git(repo, "status", "--porcelain")


def test_a_commit_is_applied_on_the_file_event_long_before_the_resync(repo, start):
    w = start(repo, "--interval", "3600").ready()
    sha = commit(repo, SPEC, "sweep")
    wait_until("the sweep to finish", ended_at(repo, sha, 7))
    assert f"event pass at {sha[:12]}" in w.log
    assert f"resync pass at {sha[:12]}" not in w.log


def test_only_the_tracked_branch_is_executed(repo, start):
    git(repo, "checkout", "-q", "-b", "feature")
    w = start(repo, "--branch", "main", "--interval", "1").ready()
    on_feature = commit(repo, SPEC, "sweep on a feature branch")
    w.passes(git(repo, "rev-parse", "main"), 2)
    assert not ws(repo).exists() and runs(repo, "a") == []
    assert on_feature[:12] not in w.log
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "feature")
    wait_until("the merged sweep to finish", ended_at(repo, on_feature, 7))


def test_an_invalid_commit_leaves_the_previous_run_alone_and_is_reported(repo, start):
    w = start(repo, "--interval", "1").ready()
    good = commit(repo, SPEC, "sweep")
    wait_until("the sweep to finish", ended_at(repo, good, 7))
    bad = commit(repo, SPEC.replace("depends: [a]", "depends: [nope]"), "typo")
    w.wait_log("specs/sweep.yaml:8:")
    w.passes(bad, 3)
    assert w.log.count(f"sweep: {bad[:12]} not applied") == 1  # once, however many passes
    assert "specs/sweep.yaml:8:" in w.log
    assert (
        f"ERROR   sweep: {bad[:12]} not applied, the last applied revision ({good[:12]})" in w.log
    )
    assert "no step is named 'nope'" in w.log
    assert sorted(runs(repo, "a")) == ["1", "2", "3"] and runs(repo, "c") == ["c"]
    assert set(states(repo).values()) == {"FINISHED"}

    s = json.loads(rc(repo, "status", "--repo", ".", "--json", timeout=120).stdout)["studies"][0]
    assert s["health"] == "Degraded"
    assert (s["applied_revision"], s["attempted_revision"]) == (good, bad)
    assert "specs/sweep.yaml:8:" in s["error"] and "nope" in s["error"]
    hist = json.loads(rc(repo, "history", "sweep", "--json", timeout=120).stdout)
    assert [(h["revision"], h["applied"]) for h in hist] == [(good, 1), (bad, 0)]

    fixed = commit(repo, SPEC, "fix the typo")  # the same content as `good`: nothing reruns
    wait_until("the fix to be applied", ended_at(repo, fixed, 7))
    assert sorted(runs(repo, "a")) == ["1", "2", "3"] and runs(repo, "c") == ["c"]


def test_once_applies_and_reports_an_invalid_spec_with_exit_2(repo, start):
    commit(repo, SPEC, "sweep")
    other = SPEC.replace("depends: [a]", "depends: [nope]").replace("name: sweep", "name: other")
    commit(repo, other, "typo", name="other.yaml")
    p = rc(repo, "watch", "--once", timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "specs/other.yaml:8:" in p.stderr  # the error, with file:line, on the terminal
    assert applied(repo) == git(repo, "rev-parse", "HEAD")  # the valid study was applied
    wait_until("the sweep to finish", lambda: set(states(repo).values()) == {"FINISHED"})


def test_kill_9_and_restart_loses_nothing_and_runs_nothing_twice(repo, start):
    w = start(repo, "--interval", "1").ready()
    first = commit(repo, SLOW_A, "slow a")
    wait_until("a running", lambda: "RUNNING" in states(repo).values())
    w.proc.send_signal(signal.SIGKILL)
    w.proc.wait(timeout=30)
    assert engine_holder(ws(repo)) is not None  # the engine did not die with the watcher
    assert applied(repo) == first

    # A commit while no watcher runs: the restarted one applies it.
    later = commit(repo, SLOW_A.replace("global.parameters:", STEP_D + "global.parameters:"),
                   "add d")  # fmt: skip
    start(repo, "--interval", "1").ready()
    wait_until("everything to finish", ended_at(repo, later, 8))
    assert sorted(runs(repo, "a")) == ["1", "2", "3"]
    assert sorted(runs(repo, "b")) == ["1", "2", "3"]
    assert runs(repo, "c") == ["c"] and runs(repo, "d") == ["d"]
    assert {n for (n,) in query(repo, "SELECT attempts FROM instance")} == {1}


def test_a_restarted_watcher_restarts_a_lost_engine(repo, start):
    w = start(repo, "--interval", "1").ready()
    sha = commit(repo, SLOW_A, "slow a")
    wait_until("a running", lambda: "RUNNING" in states(repo).values())
    holder = engine_holder(ws(repo))
    assert holder is not None
    w.proc.send_signal(signal.SIGKILL)
    os.kill(int(holder["pid"]), signal.SIGKILL)  # the engine is lost as well
    w.proc.wait(timeout=30)
    wait_until("the engine's lock to be free", lambda: engine_holder(ws(repo)) is None)

    w2 = start(repo, "--interval", "1").ready()
    w2.wait_log("work left and no engine running")
    wait_until("everything to finish", ended_at(repo, sha, 7))
    assert sorted(runs(repo, "a")) == ["1", "2", "3"]
    assert sorted(runs(repo, "b")) == ["1", "2", "3"] and runs(repo, "c") == ["c"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_it_cleanly_and_leaves_engines_and_jobs_running(repo, start, sig):
    w = start(repo, "--interval", "2").ready()
    commit(repo, SLOW, "slow", name="slow.yaml")
    wait_until("the long job running", lambda: states(repo, "slow") == {"long": "RUNNING"})
    holder = engine_holder(ws(repo, "slow"))
    assert holder is not None
    w.proc.send_signal(sig)
    assert w.proc.wait(timeout=60) == 0
    assert f"{sig.name} received" in w.log
    assert "stopped; engines and their jobs keep running" in w.log
    assert holder_if_locked(repo / ".reconciler" / "watch.lock") is None
    assert engine_holder(ws(repo, "slow")) == holder  # the same engine, still running
    assert states(repo, "slow") == {"long": "RUNNING"}
    assert runs(repo, "long") == ["started"]


def test_a_second_watcher_is_refused_naming_the_first(repo, start):
    w = start(repo, "--interval", "2", "--json-logs").ready()
    p = rc(repo, "watch", "--once", timeout=120)
    assert p.returncode == 2
    assert "another watcher already follows" in p.stderr and f"pid {w.proc.pid}" in p.stderr
    assert "Traceback" not in p.stderr
    assert w.proc.poll() is None
    lines = [json.loads(ln) for ln in w.log.splitlines()]  # --json-logs: JSON lines
    assert any(ln["message"].startswith("watching main") for ln in lines)
    assert {"time", "level", "message"} <= set(lines[0])


def test_a_removed_spec_cancels_its_in_flight_jobs_and_keeps_outputs(repo, start):
    w = start(repo, "--interval", "1").ready()
    commit(repo, SLOW, "slow", name="slow.yaml")
    sha = commit(repo, SPEC, "sweep")
    wait_until("the long job running", lambda: states(repo, "slow") == {"long": "RUNNING"})
    wait_until("the sweep to finish", ended_at(repo, sha, 7))
    commit(repo, None, "drop slow", name="slow.yaml")
    wait_until("the long job cancelled", lambda: states(repo, "slow") == {"long": "CANCELLED"})
    w.wait_log("slow: spec removed: 1 in-flight instance cancelled")
    assert (ws(repo, "slow") / "long").is_dir()  # outputs stay (no prune)
    assert runs(repo, "long") == ["started"]
    assert sorted(runs(repo, "a")) == ["1", "2", "3"] and runs(repo, "c") == ["c"]


def test_fetch_follows_the_remote_branch(repo, start, tmp_path):
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    git(other, "config", "user.email", "test@example.org")
    git(other, "config", "user.name", "test")
    local_main = git(repo, "rev-parse", "main")

    w = start(repo, "--fetch", "--interval", "1").ready()
    pushed = commit(other, SPEC, "sweep, pushed from elsewhere")
    git(other, "push", "-q", "origin", "main")
    wait_until("the pushed sweep to finish", ended_at(repo, pushed, 7))
    assert git(repo, "rev-parse", "main") == local_main  # the local branch was not touched
    assert "refs/remotes/origin/main" in w.log


def _gpg_home() -> Iterator[Path | None]:
    if shutil.which("gpg") is None:
        yield None
        return
    home = Path(tempfile.mkdtemp(prefix="gpg-"))  # short: the agent's socket path has a limit
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    made = subprocess.run(
        ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
         "--quick-gen-key", "Test Signer <signer@example.org>", "ed25519", "sign", "never"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    try:
        yield home if made.returncode == 0 else None
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def gnupg() -> Iterator[Path | None]:
    yield from _gpg_home()


def test_require_signed_refuses_an_unsigned_commit(repo, start, gnupg):
    env = {"GNUPGHOME": str(gnupg)} if gnupg else None
    unsigned = commit(repo, SPEC, "unsigned sweep")
    w = start(repo, "--require-signed", "--interval", "1", env=env).ready()
    assert f"commit {unsigned} is refused (--require-signed)" in w.log
    w.passes(unsigned, 2)
    assert w.log.count(f"commit {unsigned} is refused") == 1
    assert not ws(repo).exists() and runs(repo, "a") == []  # nothing of it ran
    if gnupg is None:
        pytest.skip("gpg is not installed: only the refusal path was tested")

    fpr = next(
        ln.split(":")[9]
        for ln in subprocess.run(
            ["gpg", "--list-secret-keys", "--with-colons"], env={**os.environ, **env},
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()
        if ln.startswith("fpr:")
    )  # fmt: skip
    git(repo, "config", "user.signingkey", fpr)
    (repo / "specs" / "README").write_text("signed\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-S", "-qm", "signed", env=env)
    signed = git(repo, "rev-parse", "HEAD")
    wait_until("the signed commit to finish", ended_at(repo, signed, 7))
    assert sorted(runs(repo, "a")) == ["1", "2", "3"]
