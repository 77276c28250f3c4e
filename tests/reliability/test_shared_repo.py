"""GitOps in a shared repo (issue #14): a careful user and a hostile committer, on real git
repositories in tmp_path, through real `reconciler` processes.

Classes: 1 containment, 2 names, 3 isolation, 7 provenance that stays true, 8 removed specs,
9 drift and self-heal. Each case records itself in the "GitOps in a shared repo" figure
(conftest.py) only after every assertion held. Waits are bounded polls on outcomes (hang
guards); nothing asserts on time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.engine.api import engine_holder
from reconciler.engine.lock import EngineLock

pytestmark = pytest.mark.timeout(300)  # hang guards only
IS_ROOT = os.geteuid() == 0
WAIT = 120.0


# ---- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No user or system git config (an allowWorkspace there would change the outcome)."""
    empty = tmp_path_factory.mktemp("gitconfig") / "config"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def rc(repo: Path, *args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], cwd=repo, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def no_trace(p: subprocess.CompletedProcess[str]) -> str:
    both = p.stdout + p.stderr
    assert "Traceback" not in both, both[-3000:]
    return both


def spec(name: str, cmd: str | None = None, extra: str = "") -> str:
    """A one-step spec; the step appends to a counter file next to the specs directory."""
    run = cmd or f"echo run >> $(SPECROOT)/../count_{abs(hash(name))}"
    return (
        f"description:\n  name: {json.dumps(name)}\n  description: d\n"
        f"study:\n  - name: s\n    description: one step\n    run:\n      cmd: {json.dumps(run)}\n"
        + extra
    )


def counted(repo: Path, name: str) -> int:
    f = repo / f"count_{abs(hash(name))}"
    return len(f.read_text().splitlines()) if f.exists() else 0


def commit(repo: Path, files: dict[str, str | None], message: str = "change") -> str:
    for rel, text in files.items():
        path = repo / "specs" / rel
        if text is None:
            git(repo, "rm", "-q", str(path.relative_to(repo)))
        else:
            path.write_text(text)
    git(repo, "add", "-A", "specs")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    r = tmp_path / "repo"
    (r / "specs").mkdir(parents=True)
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.email", "test@example.org")
    git(r, "config", "user.name", "test")
    (r / "specs" / "README").write_text("studies\n")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "init")
    yield r
    for ws in _workspaces(tmp_path):  # stop what still runs
        if engine_holder(ws) is not None:
            rc(r, "cancel", "-y", str(ws), timeout=120)


def _workspaces(base: Path) -> list[Path]:
    return [p.parent.parent for p in base.rglob(".reconciler/record.db")]


def studies(repo: Path) -> Path:
    return repo / ".reconciler" / "studies"


def states(ws: Path) -> dict[str, str]:
    db = ws / ".reconciler" / "record.db"
    if not db.exists():
        return {}
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return dict(con.execute("SELECT name, state FROM instance").fetchall())
    except sqlite3.DatabaseError:
        return {}
    finally:
        con.close()


def wait_until(what: str, check: Callable[[], object], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for: {what}"
        time.sleep(0.1)


def repo_status(repo: Path, *args: str) -> dict[str, dict[str, Any]]:
    p = rc(repo, "status", "--repo", ".", "--json", *args)
    no_trace(p)
    assert p.returncode == 0, p.stderr
    return {s["study"]: s for s in json.loads(p.stdout)["studies"]}


def plan_json(repo: Path, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    p = rc(repo, "plan", "--json", *args)
    no_trace(p)
    return p.returncode, {s["study"]: s for s in json.loads(p.stdout)["studies"]}


def outside_files(repo: Path) -> set[str]:
    """Files the studies may have written outside the studies root (repo and its parent)."""
    found = set()
    for base in (repo, repo.parent):
        for name in ("status.csv", "batch.info", "meta", "logs", "s", ".reconciler/record.db"):
            if (base / name).exists():
                found.add(str(base / name))
    return found


@pytest.fixture
def case(figures: Any) -> Iterator[Callable[[str, str], Callable[[], None]]]:
    """`done = case("1 containment", "name ../..")` ... `done()` once every assertion held."""

    def start(cls: str, name: str) -> Callable[[], None]:
        figures.shared(cls, name)
        return lambda: figures.shared_ok(cls, name)

    yield start


# ---- 1. containment ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../../x", "../..", "/ABS", ".."])
def test_a_name_that_walks_out_stays_inside_the_studies_root(repo, case, name) -> None:
    target = repo.parent / "abs-target"
    done = case("1 containment", f"study named {name.lower()}")
    name = str(target) if name == "/ABS" else name
    commit(repo, {"a.yaml": spec(name)})
    p = rc(repo, "apply", "--wait")
    no_trace(p)
    assert p.returncode == 0, p.stdout + p.stderr
    assert outside_files(repo) == set() and not target.exists()
    inside = _workspaces(studies(repo))
    assert len(inside) == 1 and inside[0].parent == studies(repo), inside
    assert counted(repo, name) == 1
    done()


def test_a_workspace_outside_the_root_needs_the_operator(repo, tmp_path, case) -> None:
    done = case("1 containment", "reconcile.workspace outside the root")
    elsewhere = tmp_path / "scratch"
    far = spec("far", extra=f"reconcile: {{workspace: {elsewhere / 'far'}}}\n")
    commit(repo, {"far.yaml": far, "near.yaml": spec("near")})
    p = rc(repo, "apply", "--wait")
    both = no_trace(p)
    assert p.returncode == 2
    assert "specs/far.yaml" in both and "--allow-workspace" in both
    assert not elsewhere.exists() and counted(repo, "far") == 0
    assert counted(repo, "near") == 1  # the other study is applied as usual
    s = repo_status(repo)
    assert s["far"]["health"] == "Degraded" and "not inside the studies root" in s["far"]["error"]

    p = rc(repo, "apply", "--wait", "--allow-workspace", str(elsewhere))  # the operator's word
    no_trace(p)
    assert p.returncode == 0, p.stdout + p.stderr
    assert states(elsewhere / "far") == {"s": "FINISHED"} and counted(repo, "far") == 1
    done()


def test_git_config_allowance_is_the_operators_and_no_commit_carries_it(
    repo, tmp_path, case
) -> None:
    done = case("1 containment", "allowance in the repository's git config")
    elsewhere = tmp_path / "scratch"
    far = spec("far", extra=f"reconcile: {{workspace: {elsewhere / 'far'}}}\n")
    # A committed .gitconfig-like file proves nothing: only git's own config counts.
    commit(repo, {"far.yaml": far, "gitconfig": f"[reconciler]\nallowWorkspace = {elsewhere}\n"})
    assert rc(repo, "apply", "--wait").returncode == 2 and not elsewhere.exists()
    git(repo, "config", "--add", "reconciler.allowWorkspace", str(elsewhere))
    p = rc(repo, "apply", "--wait")
    no_trace(p)
    assert p.returncode == 0, p.stdout + p.stderr
    assert states(elsewhere / "far") == {"s": "FINISHED"}
    assert repo_status(repo)["far"]["health"] == "Healthy"
    done()


def test_a_workspace_on_an_existing_directory_is_refused_and_left_alone(repo, case) -> None:
    done = case("1 containment", "reconcile.workspace on an existing directory")
    studies(repo).mkdir(parents=True)
    lookalike = studies(repo) / "old"  # inside the root: no allowance needed
    lookalike.mkdir()
    (lookalike / "notes.txt").write_text("not a workspace\n")
    (lookalike / "status.csv").write_text("mine\n")
    commit(repo, {"b.yaml": spec("b", extra="reconcile: {workspace: .reconciler/studies/old}\n")})
    p = rc(repo, "apply", "--wait")
    assert p.returncode == 2
    assert f"{lookalike} exists and is not a reconciler workspace" in no_trace(p)
    assert sorted(p.name for p in lookalike.iterdir()) == ["notes.txt", "status.csv"]
    assert (lookalike / "status.csv").read_text() == "mine\n" and counted(repo, "b") == 0

    precious = repo / "data"  # outside the root, in a place the operator allows
    precious.mkdir()
    (precious / "results.csv").write_text("keep me\n")
    commit(repo, {"a.yaml": spec("a", extra="reconcile: {workspace: data}\n")})
    p = rc(repo, "apply", "--wait", "--allow-workspace", str(repo))
    assert p.returncode == 2
    assert f"{precious} exists and is not a reconciler workspace" in no_trace(p)
    assert [p.name for p in precious.iterdir()] == ["results.csv"] and counted(repo, "a") == 0
    done()


def test_a_spec_naming_another_studys_workspace_is_refused(repo, case) -> None:
    done = case("1 containment", "reconcile.workspace on another study's workspace")
    commit(repo, {"victim.yaml": spec("victim", cmd="sleep 120")})
    assert rc(repo, "apply").returncode == 0
    ws = studies(repo) / "victim"
    wait_until("the victim's job running", lambda: states(ws) == {"s": "RUNNING"})
    thief = spec("thief", extra="reconcile: {workspace: .reconciler/studies/victim}\n")
    commit(repo, {"thief.yaml": thief})
    p = rc(repo, "apply")
    both = no_trace(p)
    assert p.returncode == 2
    assert f"{ws} is the workspace of study 'victim', not 'thief'" in both
    assert states(ws) == {"s": "RUNNING"}  # not cancelled, not taken over
    hist = json.loads(rc(repo, "history", "victim", "--json").stdout)
    assert [h["applied"] for h in hist] == [1, 1]  # its own applies only, nothing refused
    s = repo_status(repo)
    assert s["victim"]["health"] == "Progressing" and s["victim"]["error"] is None
    assert s["thief"]["health"] == "Degraded"
    done()


def test_two_specs_resolving_to_one_workspace_name_both_and_apply_neither(repo, case) -> None:
    done = case("1 containment", "two specs, one workspace")
    commit(repo, {
        "one.yaml": spec("one", extra="reconcile: {workspace: .reconciler/studies/shared}\n"),
        "two.yaml": spec("two", extra="reconcile: {workspace: .reconciler/studies/shared}\n"),
        "same-a.yaml": spec("same"),
        "same-b.yaml": spec("same", cmd="echo other"),
        "fine.yaml": spec("fine"),
    })  # fmt: skip
    code, plans = plan_json(repo)
    assert code == 2
    for study in ("one", "two"):
        assert "specs/one.yaml" in plans[study]["error"]
        assert "specs/two.yaml" in plans[study]["error"]
    assert "specs/same-a.yaml and specs/same-b.yaml name the same study" in plans["same"]["error"]
    assert plans["fine"]["error"] is None
    p = rc(repo, "apply", "--wait")
    no_trace(p)
    assert p.returncode == 2
    assert not (studies(repo) / "shared").exists() and not (studies(repo) / "same").exists()
    assert counted(repo, "one") == counted(repo, "two") == counted(repo, "same") == 0
    assert counted(repo, "fine") == 1  # the others apply as usual
    done()


# ---- 2. names ------------------------------------------------------------------------------


NAMES = {
    "300 characters": ("x" * 300, "is 300 bytes long"),
    "NUL": ("a\0b", "U+0000"),
    "newline": ("a\nb", "U+000A"),
    "bidi override": ("a\u202eb", "U+202E"),
    "tab": ("a\tb", "U+0009"),
}


@pytest.mark.parametrize("key", list(NAMES))
def test_validate_refuses_a_bad_study_name_at_file_line(tmp_path, case, key) -> None:
    done = case("2 names", f"validate: {key}")
    name, says = NAMES[key]
    f = tmp_path / "s.yaml"
    f.write_text(spec(name))
    p = rc(tmp_path, "validate", str(f))
    no_trace(p)
    assert p.returncode == 2
    assert f"{f}:2:9: description.name" in p.stderr and says in p.stderr
    done()


def test_a_name_that_fits_with_its_suffixes_is_accepted_everywhere(repo, tmp_path, case) -> None:
    done = case("2 names", "239-byte name: run and apply")
    name = "n" * 239  # + "_YYYYmmdd-HHMMSS" = 255
    f = tmp_path / "s.yaml"
    f.write_text(spec(name, cmd="echo ok"))
    p = rc(tmp_path, "run", str(f), "-y", "-fg")
    no_trace(p)
    assert p.returncode == 0, p.stdout + p.stderr
    commit(repo, {"long.yaml": spec(name)})
    p = rc(repo, "apply", "--wait")
    no_trace(p)
    assert p.returncode == 0 and counted(repo, name) == 1
    f.write_text(spec(name + "n"))
    assert rc(tmp_path, "validate", str(f)).returncode == 2
    done()


def test_nfc_and_nfd_spellings_are_one_study(repo, case) -> None:
    done = case("2 names", "café in NFC and NFD")
    commit(repo, {"nfc.yaml": spec("caf\u00e9"), "nfd.yaml": spec("cafe\u0301")})
    code, plans = plan_json(repo)
    assert code == 2 and list(plans) == ["caf\u00e9"]
    assert "specs/nfc.yaml and specs/nfd.yaml name the same study" in plans["caf\u00e9"]["error"]
    assert no_trace(rc(repo, "apply")) and counted(repo, "caf\u00e9") == 0
    done()


def test_a_300_character_name_breaks_nothing_but_its_own_spec(repo, tmp_path, case) -> None:
    done = case("2 names", "300-character name: apply, status --repo, watch")
    commit(repo, {"long.yaml": spec("y" * 300), "ok.yaml": spec("ok")})
    p = rc(repo, "apply", "--wait")
    both = no_trace(p)
    assert p.returncode == 2 and "specs/long.yaml:2:9:" in both and "is 300 bytes long" in both
    assert counted(repo, "ok") == 1
    s = repo_status(repo)
    assert s["specs/long.yaml"]["health"] == "Degraded" and s["ok"]["health"] == "Healthy"
    commit(repo, {"ok.yaml": spec("ok", cmd="echo again >> $(SPECROOT)/../again")})
    p = rc(repo, "watch", "--once")
    no_trace(p)
    assert p.returncode == 2 and "is 300 bytes long" in p.stderr
    wait_until("ok rerun by the watcher", lambda: (repo / "again").exists())
    done()


# ---- 3. isolation --------------------------------------------------------------------------


def _damage(ws: Path, how: str) -> None:
    db = ws / ".reconciler" / "record.db"
    if how == "truncated":
        with open(db, "r+b") as fh:
            fh.truncate(100)
    else:  # garbage over the tables' pages
        data = bytearray(db.read_bytes())
        for i in range(1024, len(data), 7):
            data[i] = (data[i] * 31 + 17) % 256
        db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["damaged", "truncated"])
def test_a_broken_record_is_that_studys_trouble_only(repo, case, how) -> None:
    done = case("3 isolation", f"{how} record.db: plan, apply, status --repo")
    commit(repo, {"bad.yaml": spec("bad"), "good.yaml": spec("good")})
    assert rc(repo, "apply", "--wait").returncode == 0
    _damage(studies(repo) / "bad", how)
    commit(repo, {"good.yaml": spec("good", cmd="echo 2 >> $(SPECROOT)/../good2")})
    code, plans = plan_json(repo)
    assert code == 2
    assert "record" in plans["bad"]["error"] and "\n" not in plans["bad"]["error"]
    assert [a["action"] for a in plans["good"]["actions"]] == ["rerun"]
    p = rc(repo, "apply", "--wait")
    both = no_trace(p)
    assert p.returncode == 2 and "bad: not applied:" in both
    assert (repo / "good2").read_text() == "2\n"
    s = repo_status(repo)
    assert s["bad"]["health"] == "Degraded" and "record" in s["bad"]["error"]
    assert s["good"]["health"] == "Healthy"
    done()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    mounted: list[Path] = []

    def mount(where: Path) -> None:
        if not IS_ROOT:
            pytest.skip("a read-only record needs a tmpfs remounted ro (root)")
        where.mkdir(parents=True)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)],
                           capture_output=True, text=True, check=False)  # fmt: skip
        if p.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        mounted.append(where)

    yield mount
    for where in mounted:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_read_only_record_is_that_studys_trouble_only(repo, case, tmpfs) -> None:
    done = case("3 isolation", "read-only record.db: plan, apply, status --repo")
    tmpfs(studies(repo) / "frozen")
    commit(repo, {"frozen.yaml": spec("frozen"), "good.yaml": spec("good")})
    assert rc(repo, "apply", "--wait").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(studies(repo) / "frozen")], check=True)
    commit(repo, {
        "good.yaml": spec("good", cmd="echo 2 >> $(SPECROOT)/../good2"),
        "frozen.yaml": spec("frozen", cmd="echo 2"),
    })  # fmt: skip
    code, plans = plan_json(repo)
    assert code == 2 and "read-only" in plans["frozen"]["error"]
    p = rc(repo, "apply", "--wait")
    no_trace(p)
    assert p.returncode == 2 and (repo / "good2").read_text() == "2\n"
    s = repo_status(repo)
    assert s["frozen"]["health"] == "Degraded" and "read-only" in s["frozen"]["error"]
    assert s["good"]["health"] == "Healthy"
    done()


def test_a_vanished_applied_commit_is_that_studys_trouble_only(repo, case) -> None:
    done = case("3 isolation", "applied commit gone (history rewritten)")
    first = commit(repo, {"a.yaml": spec("a"), "b.yaml": spec("b")})
    assert rc(repo, "apply").returncode == 0  # engines in the background: not settled yet
    wait_until("both ended", lambda: all(
        engine_holder(studies(repo) / n) is None and states(studies(repo) / n) == {"s": "FINISHED"}
        for n in "ab"))  # fmt: skip
    (repo / "specs" / "b.yaml").write_text(spec("b", cmd="echo rewritten"))
    git(repo, "commit", "-qam", "rewritten", "--amend")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    assert subprocess.run(["git", "cat-file", "-e", first], cwd=repo).returncode != 0
    s = repo_status(repo)
    assert s["a"]["health"] == "Degraded" and "no longer in the repository" in s["a"]["error"]
    p = rc(repo, "apply", "--wait")
    no_trace(p)
    assert p.returncode == 0, p.stdout + p.stderr
    s = repo_status(repo)
    assert {s["a"]["health"], s["b"]["health"]} == {"Healthy"}
    assert s["a"]["applied_revision"] == git(repo, "rev-parse", "HEAD")
    done()


def test_a_spec_too_broken_to_name_its_study_cancels_nothing(repo, case) -> None:
    done = case("3 isolation", "a YAML syntax error in a running study's spec")
    commit(repo, {"campaign-1.yaml": spec("slow", cmd="sleep 120")})
    assert rc(repo, "apply").returncode == 0
    ws = studies(repo) / "slow"
    wait_until("slow running", lambda: states(ws) == {"s": "RUNNING"})
    commit(repo, {"campaign-1.yaml": spec("slow", cmd="sleep 120") + "oops: [\n"})
    code, plans = plan_json(repo)
    assert code == 2 and list(plans) == ["slow"]  # the registry knows which study it was
    assert "specs/campaign-1.yaml" in plans["slow"]["error"] and plans["slow"]["actions"] == []
    p = rc(repo, "apply")
    assert p.returncode == 2 and "slow: not applied" in no_trace(p)
    assert states(ws) == {"s": "RUNNING"}  # not taken for a removed study: nothing cancelled
    s = repo_status(repo)["slow"]
    assert s["health"] == "Degraded" and "specs/campaign-1.yaml" in s["error"]
    done()


class Watch:
    def __init__(self, repo: Path, out: Path) -> None:
        self.repo = repo
        self.out = out
        with open(out, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "watch", "--interval", "1"], cwd=repo,
                stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip

    @property
    def log(self) -> str:
        f = self.repo / ".reconciler" / "watch.log"
        return f.read_text() if f.exists() else ""

    def wait_log(self, text: str, count: int = 1) -> None:
        def check() -> bool:
            assert self.proc.poll() is None, f"the watcher exited: {self.out.read_text()}"
            return self.log.count(text) >= count

        wait_until(f"{text!r} in the watch log", check)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


@pytest.fixture
def watchers(tmp_path: Path) -> Iterator[Callable[[Path], Watch]]:
    started: list[Watch] = []

    def start(repo: Path) -> Watch:
        started.append(Watch(repo, tmp_path / f"watch{len(started)}.out"))
        return started[-1]

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
        w.proc.wait(timeout=30)


def test_the_watcher_outlives_a_corrupted_record_and_applies_the_others(
    repo, case, watchers
) -> None:
    done = case("3 isolation", "watcher: corrupted record.db, another study applied")
    commit(repo, {"bad.yaml": spec("bad"), "good.yaml": spec("good")})
    assert rc(repo, "apply", "--wait").returncode == 0
    _damage(studies(repo) / "bad", "damaged")
    w = watchers(repo)
    w.wait_log("watching")
    second = commit(repo, {"good.yaml": spec("good", cmd="echo 2 >> $(SPECROOT)/../good2"),
                           "bad.yaml": spec("bad", cmd="echo 2")})  # fmt: skip
    w.wait_log(f"good: applied {second[:12]}")
    wait_until("good rerun", lambda: (repo / "good2").exists())
    w.wait_log(f"resync pass at {second[:12]}", 3)  # it keeps going, pass after pass
    assert w.log.count("bad.yaml") + w.log.count("bad:") >= 1
    assert w.log.count("the record") >= 1 and "Traceback" not in w.log
    assert w.proc.poll() is None
    w.stop()
    assert w.proc.returncode == 0

    again = watchers(repo)  # a restart does not die on the same record either
    third = commit(repo, {"good.yaml": spec("good", cmd="echo 3 >> $(SPECROOT)/../good3")})
    again.wait_log(f"good: applied {third[:12]}")
    wait_until("good rerun again", lambda: (repo / "good3").exists())
    again.wait_log(f"resync pass at {third[:12]}", 2)
    assert again.proc.poll() is None and "Traceback" not in again.log
    done()


# ---- 7. provenance that stays true ---------------------------------------------------------


def test_an_unchanged_reapply_writes_no_history_and_keeps_the_outcome(repo, case) -> None:
    done = case("7 provenance", "unchanged re-apply of a finished study")
    sha = commit(repo, {"a.yaml": spec("a")})
    assert rc(repo, "apply", "--wait").returncode == 0
    note = git(repo, "notes", "--ref", "reconciler", "show", sha)
    assert "outcome: FINISHED" in note
    history = json.loads(rc(repo, "history", "a", "--json").stdout)
    for args in (("apply",), ("apply", "--wait")):
        p = rc(repo, *args)
        no_trace(p)
        assert p.returncode == 0 and "a: in sync: nothing to do" in p.stdout
    assert json.loads(rc(repo, "history", "a", "--json").stdout) == history
    assert git(repo, "notes", "--ref", "reconciler", "show", sha) == note
    assert counted(repo, "a") == 1
    done()


def test_concurrent_applies_serialise_on_the_repository_lock(repo, case) -> None:
    done = case("7 provenance", "three concurrent applies")
    commit(repo, {f"{n}.yaml": spec(n) for n in "abcd"})
    procs = [
        subprocess.Popen([sys.executable, "-m", "reconciler", "apply", "--wait"], cwd=repo,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    outs = [p.communicate(timeout=200) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert "Traceback" not in out + err and "SetupError" not in out + err, out + err
        assert p.returncode == 0, out + err
    for n in "abcd":
        assert counted(repo, n) == 1  # each ran once
        hist = json.loads(rc(repo, "history", n, "--json").stdout)
        assert [h["applied"] for h in hist] == [1]  # one apply recorded, not three
    done()


def test_an_apply_waits_for_the_lock_naming_its_holder_or_gives_up(repo, case) -> None:
    done = case("7 provenance", "apply waits for the repository lock, names the holder")
    commit(repo, {"a.yaml": spec("a")})
    lock = EngineLock(repo / ".reconciler" / "apply.lock", {"command": "apply"}).acquire()
    try:
        p = rc(repo, "apply", "--lock-timeout", "1")
        no_trace(p)
        assert p.returncode == 2 and f"pid {os.getpid()}" in p.stderr
        assert "nothing was applied" in p.stderr and counted(repo, "a") == 0
        waiting = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "apply", "--wait"], cwd=repo,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert waiting.stderr is not None
        line = waiting.stderr.readline()  # it says whom it waits for, then waits
        assert "waiting:" in line and f"pid {os.getpid()}" in line, line
        assert waiting.poll() is None and counted(repo, "a") == 0
    finally:
        lock.release()
    out, err = waiting.communicate(timeout=200)
    assert waiting.returncode == 0 and "a: applied" in out, out + err
    assert counted(repo, "a") == 1
    done()


def test_a_watcher_pass_waits_for_an_apply_holding_the_lock(repo, case, watchers) -> None:
    done = case("7 provenance", "the watcher waits for the repository lock, names the holder")
    sha = commit(repo, {"a.yaml": spec("a")})
    lock = EngineLock(repo / ".reconciler" / "apply.lock", {"command": "apply"}).acquire()
    try:
        w = watchers(repo)
        w.wait_log(f"`reconciler apply` (pid {os.getpid()}")
        assert counted(repo, "a") == 0 and "a: applied" not in w.log
    finally:
        lock.release()
    w.wait_log(f"a: applied {sha[:12]}")
    wait_until("a ran", lambda: counted(repo, "a") == 1)
    w.stop()
    assert w.proc.returncode == 0
    done()


# ---- 8. removed specs ----------------------------------------------------------------------


def test_removing_the_spec_of_a_study_outside_the_root_cancels_it(repo, tmp_path, case) -> None:
    done = case("8 removed specs", "workspace outside the root, spec deleted")
    elsewhere = tmp_path / "scratch"
    git(repo, "config", "--add", "reconciler.allowWorkspace", str(elsewhere))
    far = spec("far", cmd="sleep 120", extra=f"reconcile: {{workspace: {elsewhere / 'far'}}}\n")
    commit(repo, {"far.yaml": far, "near.yaml": spec("near")})
    assert rc(repo, "apply").returncode == 0
    ws = elsewhere / "far"
    wait_until("far running", lambda: states(ws) == {"s": "RUNNING"})
    commit(repo, {"far.yaml": None}, "drop far")
    code, plans = plan_json(repo)
    assert code == 1 and plans["far"]["workspace"] == str(ws)
    assert plans["far"]["actions"] == [
        {"action": "cancel", "instance": "s", "step": "s", "reason": "spec removed from the repo"}
    ]
    p = rc(repo, "apply")
    no_trace(p)
    assert "far: spec removed: 1 in-flight instance cancelled" in p.stdout
    wait_until("far cancelled", lambda: states(ws) == {"s": "CANCELLED"})
    registry = json.loads((repo / ".reconciler" / "registry.json").read_text())
    assert registry["workspaces"][str(ws)]["study"] == "far"
    assert repo_status(repo)["far"]["workspace"] == str(ws)
    done()


# ---- 9. drift and self-heal ----------------------------------------------------------------

SWEEP = """\
description: {name: sweep, description: d}
study:
  - name: a
    description: first
    run: {cmd: "echo $(N) >> $(SPECROOT)/../runs_a; echo $(N) > a.txt"}
  - name: b
    description: second
    run: {cmd: "echo $(N) >> $(SPECROOT)/../runs_b; cat $(a.workspace)/a.txt", depends: [a]}
global.parameters:
  N: {values: [1, 2, 3], label: "N.%%"}
"""


def runs(repo: Path, step: str) -> list[str]:
    f = repo / f"runs_{step}"
    return sorted(f.read_text().split()) if f.exists() else []


def test_drift_is_planned_with_the_command_that_heals_it(repo, case) -> None:
    done = case("9 self-heal", "apply --self-heal reruns missing instances and descendants")
    commit(repo, {"sweep.yaml": SWEEP})
    assert rc(repo, "apply", "--wait").returncode == 0
    shutil.rmtree(studies(repo) / "sweep" / "a" / "N.2")
    p = rc(repo, "plan")
    no_trace(p)
    assert p.returncode == 1
    assert "missing" in p.stdout and "a_N.2" in p.stdout and "apply --self-heal" in p.stdout
    code, plans = plan_json(repo)
    acts = {a["instance"]: a["action"] for a in plans["sweep"]["actions"]}
    assert code == 1 and acts == {"a_N.2": "missing"}
    assert rc(repo, "apply", "--wait").returncode == 0  # without self-heal: left as it is
    assert runs(repo, "a") == ["1", "2", "3"] and not (studies(repo) / "sweep/a/N.2").exists()

    _, plans = plan_json(repo, "--self-heal")
    acts = {a["instance"]: a["action"] for a in plans["sweep"]["actions"]}
    assert acts == {"a_N.2": "rerun", "b_N.2": "rerun"}
    p = rc(repo, "apply", "--self-heal", "--wait")
    no_trace(p)
    assert p.returncode == 0, p.stdout + p.stderr
    assert runs(repo, "a") == ["1", "2", "2", "3"] and runs(repo, "b") == ["1", "2", "2", "3"]
    assert (studies(repo) / "sweep/a/N.2/a.txt").read_text() == "2\n"
    assert rc(repo, "plan").returncode == 0
    assert repo_status(repo)["sweep"]["health"] == "Healthy"
    done()


def test_self_heal_in_the_spec_heals_on_every_apply(repo, case, watchers) -> None:
    done = case("9 self-heal", "reconcile.self_heal: the watcher heals")
    sha = commit(repo, {"sweep.yaml": SWEEP + "reconcile: {self_heal: true}\n"})
    assert rc(repo, "apply", "--wait").returncode == 0
    shutil.rmtree(studies(repo) / "sweep" / "b" / "N.3")
    w = watchers(repo)
    w.wait_log(f"sweep: applied {sha[:12]} (1 rerun)")
    wait_until("b_N.3 healed", lambda: runs(repo, "b") == ["1", "2", "3", "3"])
    assert runs(repo, "a") == ["1", "2", "3"]
    w.stop()
    done()
