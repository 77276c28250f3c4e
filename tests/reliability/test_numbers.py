"""Issue #14, numbers: every time option is finite and bounded, every count fits the record.

- `run -s/--sleeptime`, `update --sleep` and `watch --interval` refuse inf, nan, 1e300, a
  negative value and anything over a day with `error:` naming the option, exit 2, nothing made;
- counts (`-a`, `-t`, `-r`, `--slots`, `update --throttle/--rlimit`) too large for the record
  are refused the same way instead of an OverflowError from SQLite;
- the spec's own numbers: a walltime over 365 days (or with 400 digits), `reconcile.backoff:
  .inf`, `reconcile.retries` of 10^23 are errors at FILE:LINE;
- the engine protects itself: a record that somehow holds `sleep = inf` (an older version wrote
  it, or a person did) is clamped with a warning instead of an OverflowError on every resume.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from shared_repo import REPO, commit, git_env, make_repo, reconciler, spec

from reconciler.engine.api import engine_holder

pytestmark = pytest.mark.timeout(300)  # a hang guard

FAKES = REPO / "tests" / "fakes"
BAD_SECONDS = ["inf", "-inf", "nan", "1e300", "86401", "-1"]
HUGE = "100000000000000000000000"  # 10^23: past SQLite's 64-bit integers


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return git_env(tmp_path / "home")


@pytest.fixture
def one(tmp_path: Path) -> Path:
    f = tmp_path / "one.yaml"
    f.write_text(spec("one"))
    return f


def _refused(r, option: str) -> bool:  # type: ignore[no-untyped-def]
    return (
        r.code == 2
        and "Traceback" not in r.both
        and r.err.startswith("error: ")
        and f"{option} must be a number of seconds" in r.err
        and "at most 86400 (one day)" in r.err
    )


@pytest.mark.parametrize("value", BAD_SECONDS)
@pytest.mark.parametrize("flag", ["-s", "--sleeptime"])
def test_run_sleeptime_must_be_finite_and_bounded(
    tmp_path: Path, env, one: Path, figures, flag: str, value: str
) -> None:
    figures.shared("11 numbers", f"run {flag} {value}")
    r = reconciler("run", "-y", "--dry", "-o", tmp_path / "ws", flag, value, one, cwd=tmp_path,
                   env=env)  # fmt: skip
    assert _refused(r, "--sleeptime"), r.both
    assert not (tmp_path / "ws").exists()
    figures.shared_ok("11 numbers", f"run {flag} {value}")


def test_the_bounds_themselves_are_accepted(tmp_path: Path, env, one: Path) -> None:
    for value in ("0", "86400", "0.5"):
        ws = tmp_path / f"ws{value}"
        r = reconciler("run", "-y", "--dry", "-o", ws, "-s", value, one, cwd=tmp_path, env=env)
        assert r.code == 0, r.both
        u = reconciler("update", "--sleep", value, ws, cwd=tmp_path, env=env)
        assert u.code == 0, u.both


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_update_sleep_must_be_finite_and_bounded(
    tmp_path: Path, env, one: Path, figures, value: str
) -> None:
    figures.shared("11 numbers", f"update --sleep {value}")
    ws = tmp_path / "ws"
    assert reconciler("run", "-y", "--dry", "-o", ws, one, cwd=tmp_path, env=env).code == 0
    r = reconciler("update", "--sleep", value, ws, cwd=tmp_path, env=env)
    assert _refused(r, "--sleep"), r.both
    with sqlite3.connect(ws / ".reconciler" / "record.db") as db:
        assert db.execute("SELECT sleep FROM study").fetchone()[0] == 60  # untouched
    figures.shared_ok("11 numbers", f"update --sleep {value}")


@pytest.mark.parametrize("value", [*BAD_SECONDS, "0"])
def test_watch_interval_must_be_finite_and_bounded(
    tmp_path: Path, env, figures, value: str
) -> None:
    figures.shared("11 numbers", f"watch --interval {value}")
    repo = make_repo(tmp_path / "repo")
    commit(repo, {"specs/one.yaml": spec("one")})
    r = reconciler("watch", "--repo", tmp_path / "repo", "--once", "--interval", value,
                   cwd=tmp_path, env=env)  # fmt: skip
    assert r.code == 2 and "Traceback" not in r.both, r.both
    assert r.err.startswith("error: --interval must be a number of seconds, more than 0")
    assert not (tmp_path / "repo" / ".reconciler").exists()  # nothing applied, no watcher ran
    figures.shared_ok("11 numbers", f"watch --interval {value}")


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "-1"])
def test_apply_lock_timeout_must_be_finite_and_bounded(
    tmp_path: Path, env, figures, value: str
) -> None:
    figures.shared("11 numbers", f"apply --lock-timeout {value}")
    repo = make_repo(tmp_path / "repo")
    commit(repo, {"specs/one.yaml": spec("one")})
    r = reconciler("apply", "--repo", tmp_path / "repo", "--lock-timeout", value, cwd=tmp_path,
                   env=env)  # fmt: skip
    assert _refused(r, "--lock-timeout"), r.both
    assert not (tmp_path / "repo" / ".reconciler" / "studies").exists()  # nothing applied
    figures.shared_ok("11 numbers", f"apply --lock-timeout {value}")


@pytest.mark.parametrize(
    ("command", "flag"),
    [("run", "-a"), ("run", "-t"), ("run", "-r"), ("run", "--slots"),
     ("update", "--throttle"), ("update", "--rlimit")],
)  # fmt: skip
def test_counts_too_large_for_the_record_are_refused(
    tmp_path: Path, env, one: Path, figures, command: str, flag: str
) -> None:
    figures.shared("11 numbers", f"{command} {flag} 10^23")
    ws = tmp_path / "ws"
    if command == "update":
        assert reconciler("run", "-y", "--dry", "-o", ws, one, cwd=tmp_path, env=env).code == 0
        r = reconciler("update", flag, HUGE, ws, cwd=tmp_path, env=env)
    else:
        r = reconciler("run", "-y", "--dry", "-o", ws, flag, HUGE, one, cwd=tmp_path, env=env)
        assert not ws.exists()
    assert r.code == 2 and "Traceback" not in r.both, r.both
    assert "1000000" in r.both.replace(",", "")  # the range it must be in
    figures.shared_ok("11 numbers", f"{command} {flag} 10^23")


SPEC_NUMBERS = {
    "walltime of 400 digits": ("    run: {cmd: echo, walltime: '" + "9" * 400 + "'}\n",
                               "is longer than 365 days", 5),
    "walltime of 40,000 hours": ("    run: {cmd: echo, walltime: '40000:00:00'}\n",
                                 "is longer than 365 days", 5),
    "reconcile.backoff .inf": ("    run: {cmd: echo}\nreconcile: {backoff: .inf}\n",
                               "reconcile.backoff must be a number of seconds from 0 to 86400", 6),
    "reconcile.backoff .nan": ("    run: {cmd: echo}\nreconcile: {backoff: .nan}\n",
                               "reconcile.backoff must be a number of seconds from 0 to 86400", 6),
    "reconcile.retries 10^23": (f"    run: {{cmd: echo}}\nreconcile: {{retries: {HUGE}}}\n",
                                "reconcile.retries must be an integer from 0 to 1000", 6),
    "reconcile.throttle 10^23": (f"    run: {{cmd: echo}}\nreconcile: {{throttle: {HUGE}}}\n",
                                 "reconcile.throttle must be an integer from 0", 6),
}  # fmt: skip


@pytest.mark.parametrize("case", SPEC_NUMBERS)
def test_numbers_in_the_spec_are_bounded(tmp_path: Path, env, figures, case: str) -> None:
    figures.shared("11 numbers", f"spec {case}")
    tail, says, line = SPEC_NUMBERS[case]
    f = tmp_path / "n.yaml"
    f.write_text("description: {name: n, description: d}\nstudy:\n  - name: a\n"
                 "    description: d\n" + tail)  # fmt: skip
    for command in ("validate", "run"):
        args = [command, f] if command == "validate" else [command, "-y", "-o", tmp_path / "w", f]
        r = reconciler(*args, cwd=tmp_path, env=env)
        assert r.code == 2 and "Traceback" not in r.both, r.both
        assert f"{f}:{line}:" in r.err and says in r.err, r.err
    assert not (tmp_path / "w").exists()
    figures.shared_ok("11 numbers", f"spec {case}")


@pytest.fixture
def lsf_env(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """The LSF stand-in (tests/fakes) first on PATH: a scheduler adapter, which sleeps `sleep`
    seconds between polls."""
    state = tmp_path / "fakesched.json"
    out = {**env, "FAKESCHED_STATE": str(state), "PATH": f"{FAKES}:{env['PATH']}"}
    yield out
    if state.exists():  # no stand-in job outlives its test
        for jid, job in json.loads(state.read_text())["jobs"].items():
            if job["state"] in ("pending", "running"):
                subprocess.run([str(FAKES / "bkill"), jid], env=out, capture_output=True)


def _wait_for(what: str, check, timeout: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout  # a hang guard, not a measurement
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


@pytest.mark.parametrize("stored", ["inf", "1e300", "-5", "soon"])  # (SQLite stores NaN as NULL)
def test_engine_clamps_a_stored_sleep_instead_of_dying(
    tmp_path: Path, lsf_env: dict[str, str], figures, stored: str
) -> None:
    figures.shared("11 numbers", f"record holds sleep={stored}")
    f = tmp_path / "lsf.yaml"
    f.write_text(spec("lsf", "echo done", extra="batch: {type: lsf, queue: normal}\n"))
    ws = tmp_path / "ws"
    r = reconciler("run", "-y", "--dry", "-o", ws, f, cwd=tmp_path, env=lsf_env)
    assert r.code == 0, r.both
    db = ws / ".reconciler" / "record.db"
    with sqlite3.connect(db) as conn:  # what an older version (or a person) may have stored
        value = stored if stored == "soon" else float(stored)  # a REAL column takes text too
        conn.execute("UPDATE study SET sleep = ?", (value,))
    assert reconciler("resume", ws, cwd=tmp_path, env=lsf_env).code == 0  # a detached engine
    clamped = "SELECT detail FROM event WHERE kind = 'setting-clamped'"
    _wait_for("the engine to clamp the sleep", lambda: _query(db, clamped))
    (detail,) = _query(db, clamped)[0]
    assert "sleep" in str(detail)
    # Clamped to a day (or the 60 s default): the engine waits, alive, until it is woken.
    assert reconciler("update", "--sleep", "0.2", ws, cwd=tmp_path, env=lsf_env).code == 0
    state = "SELECT state FROM instance"
    _wait_for("the study to finish", lambda: _query(db, state) == [("FINISHED",)])
    _wait_for("the engine to exit", lambda: engine_holder(ws) is None)
    log = next((ws / "logs").glob("*.log")).read_text()
    assert "warning:" in log and "OverflowError" not in log and "Traceback" not in log, log
    figures.shared_ok("11 numbers", f"record holds sleep={stored}")
