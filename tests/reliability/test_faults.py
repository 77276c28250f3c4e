"""Issue #8, crash and fault tests: real processes, real filesystems, real schedulers.

Each fault must end in a clear error (exit 2, one paragraph, no traceback) or a recovery, never
in a silent wrong state, and what the record holds is never lost:

- a read-only workspace (a tmpfs remounted `ro`: root ignores file modes; `chmod -R a-w` when
  not root);
- a full disk (a 1 MiB tmpfs filled up) before a resume and while the engine runs;
- an instance directory deleted before the instance runs, and after the study finished;
- a corrupted or missing record (truncated, overwritten header, garbage in a table, deleted);
- a scheduler status command that hangs, prints garbage or fails, through the engine: the real
  Slurm's `squeue` and the LSF stand-in's `bjobs` (tests/fakes) wrapped by a script first on PATH
  that misbehaves a few times, then hands over to the real command;
- Slurm chaos: the engine of a 20-instance Slurm study `kill -9`ed 5 times at random (seeded)
  moments and resumed each time.

Counter files outside the workspace (and outside any small filesystem) prove how many times each
instance ran. Every mount is undone in a finalizer, failure or not. (The first run of these tests
found eleven tracebacks — kept as strict xfails until they were fixed; docs/reliability.md lists
them. A fault that shows a new one belongs here as a strict xfail naming the bug.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.engine.api import engine_holder
from reconciler.record.store import Store, record_path

pytestmark = pytest.mark.timeout(300)  # hang guards only; no assertion depends on time

REPO = Path(__file__).resolve().parents[2]
FAKES = REPO / "tests" / "fakes"
IS_ROOT = os.geteuid() == 0


# ---- helpers ------------------------------------------------------------------------------


def rc(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def popen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def assert_clean_error(proc: subprocess.CompletedProcess[str], *names: str) -> None:
    """Exit 2, one paragraph starting with `error:` on stderr, no traceback; names in it."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both[-2000:]
    assert proc.returncode == 2, both[-2000:]
    text = proc.stderr.strip()
    assert text.startswith("error:"), text
    assert text.count("error:") == 1 and "\n\n" not in text, text
    for name in names:
        assert name in text, text


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout  # a hang guard, not a timing assertion
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def counts(count: Path) -> dict[str, int]:
    """How many times each counter file was appended to (one line per run)."""
    if not count.is_dir():
        return {}
    return {p.name: len(p.read_text().splitlines()) for p in sorted(count.iterdir())}


def rows(root: Path) -> dict[str, dict[str, object]]:
    store = Store.open(root)
    try:
        return {r.name: {"state": str(r.state), "attempts": r.attempts} for r in store.instances()}
    finally:
        store.close()


def events(root: Path) -> list[tuple[str | None, str, str]]:
    db = sqlite3.connect(f"file:{record_path(root)}?mode=ro", uri=True)
    try:
        return list(db.execute("SELECT instance, kind, detail FROM event ORDER BY id"))
    finally:
        db.close()


def integrity(root: Path) -> str:
    db = sqlite3.connect(record_path(root))
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sweep_spec(path: Path, count: Path, n: int = 3, extra: str = "") -> Path:
    """A small local sweep: a_P.k appends to COUNT/a_k; b_P.k (after a_P.k) to COUNT/b_k."""
    count.mkdir(exist_ok=True)
    path.write_text(
        "description: {name: faults, description: fault injection}\n"
        "study:\n"
        "  - name: a\n    description: first\n"
        f'    run: {{cmd: "echo a >> {count}/a_$(P){extra}"}}\n'
        "  - name: b\n    description: second\n"
        f'    run: {{cmd: "echo b >> {count}/b_$(P)", depends: [a]}}\n'
        f"global.parameters:\n  P: {{values: {list(range(1, n + 1))}, label: P.%%}}\n"
    )
    return path


def all_once(count: Path, n: int) -> None:
    assert counts(count) == {f"{s}_{k}": 1 for s in "ab" for k in range(1, n + 1)}


# ---- filesystems: a small tmpfs, remountable read-only; unmounted whatever happens ----------


class Mounts:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.mounted: list[Path] = []
        self.chmodded: list[Path] = []

    def tmpfs(self, size: str) -> Path:
        if not IS_ROOT:
            pytest.skip("mounting a tmpfs needs root (this fault test runs as root in CI)")
        where = self.base / f"fs{len(self.mounted)}"
        where.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {proc.stderr.strip()}")
        self.mounted.append(where)
        return where

    def read_only(self, where: Path) -> None:
        """Make `where` (a tmpfs from `tmpfs()` as root, any directory otherwise) read-only."""
        if IS_ROOT:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        else:  # root would ignore file modes; a user does not
            for p in [where, *where.rglob("*")]:
                if not p.is_symlink():
                    p.chmod(stat.S_IMODE(p.stat().st_mode) & ~0o222)
            self.chmodded.append(where)

    def writable(self, where: Path) -> None:
        if IS_ROOT:
            subprocess.run(["mount", "-o", "remount,rw", str(where)], check=True)
        else:
            for p in [where, *where.rglob("*")]:
                if not p.is_symlink():
                    p.chmod(stat.S_IMODE(p.stat().st_mode) | 0o200)
            self.chmodded.remove(where)

    def cleanup(self) -> None:
        for where in self.chmodded:
            with contextlib.suppress(OSError):
                self.writable(where)
        for where in reversed(self.mounted):
            proc = subprocess.run(["umount", str(where)], capture_output=True, check=False)
            if proc.returncode != 0:  # something still has a file open in it: detach it
                subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Mounts]:
    m = Mounts(tmp_path)
    try:
        yield m
    finally:
        m.cleanup()


def fill(fs: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = fs / "filler"
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(block)
    for i in range(10_000):  # the last few blocks' worth of inodes and small files, too
        try:
            (fs / f"filler.{i}").write_bytes(b"x")
        except OSError:
            break
    return filler


def free(fs: Path) -> None:
    for p in fs.glob("filler*"):
        p.unlink()


def a_workspace(mounts: Mounts, tmp_path: Path, *, size: str = "4m") -> tuple[Path, Path, Path]:
    """A study set up (--dry: nothing run yet) on a small filesystem of its own."""
    fs = mounts.tmpfs(size) if IS_ROOT else tmp_path / "fs"
    fs.mkdir(exist_ok=True)
    count = tmp_path / "count"
    spec = sweep_spec(tmp_path / "faults.yaml", count)
    ws = fs / "ws"
    r = rc("run", str(spec), "-y", "--dry", "-o", str(ws), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    return fs, ws, spec


# ---- read-only workspace ------------------------------------------------------------------


def test_read_only_workspace_is_a_clear_error_and_the_record_is_unchanged(
    mounts: Mounts, tmp_path: Path, figures
) -> None:  # type: ignore[no-untyped-def]
    figures.fault("read-only workspace: run/resume/status/cancel")
    fs, ws, spec = a_workspace(mounts, tmp_path)
    before = digest(record_path(ws))
    mounts.read_only(fs)
    for args in (
        ("run", str(spec), "-y", "-fg", "-o", str(ws)),
        ("run", str(spec), "-y", "-o", str(ws)),
        ("resume", str(ws), "-fg"),
        ("resume", str(ws)),
        ("cancel", "-y", str(ws)),
    ):
        r = rc(*args, cwd=tmp_path)
        assert_clean_error(r, str(ws))
    # Reading is allowed to work; today it cannot (SQLite's WAL mode needs to create the -shm
    # file), and says so as a clean error naming the record.
    r = rc("status", "--json", str(ws), cwd=tmp_path)
    if r.returncode == 0:
        assert {i["state"] for i in json.loads(r.stdout)} == {"INITIALIZED"}
    else:
        assert_clean_error(r, str(ws))
    assert counts(tmp_path / "count") == {}  # nothing ran
    mounts.writable(fs)
    assert digest(record_path(ws)) == before
    r = rc("resume", str(ws), "-fg", cwd=tmp_path)  # writable again: the study just runs
    assert r.returncode == 0, r.stdout + r.stderr
    assert {v["state"] for v in rows(ws).values()} == {"FINISHED"}
    all_once(tmp_path / "count", 3)
    figures.fault_handled("read-only workspace: run/resume/status/cancel")


def test_read_only_workspace_message_names_the_cause(mounts: Mounts, tmp_path: Path) -> None:
    fs, ws, _ = a_workspace(mounts, tmp_path)
    mounts.read_only(fs)
    r = rc("resume", str(ws), "-fg", cwd=tmp_path)
    assert_clean_error(r, str(ws))
    assert "read-only" in r.stderr.lower() and "backup" not in r.stderr, r.stderr


def test_run_into_a_read_only_directory_is_a_clear_error(
    mounts: Mounts, tmp_path: Path, figures
) -> None:  # type: ignore[no-untyped-def]
    figures.fault("read-only filesystem: run -o NEW")
    fs = mounts.tmpfs("4m") if IS_ROOT else tmp_path / "fs"
    fs.mkdir(exist_ok=True)
    spec = sweep_spec(tmp_path / "faults.yaml", tmp_path / "count")
    mounts.read_only(fs)
    r = rc("run", str(spec), "-y", "-fg", "-o", str(fs / "new"), cwd=tmp_path)
    assert not (fs / "new").exists()
    assert counts(tmp_path / "count") == {}
    assert_clean_error(r, str(fs / "new"))
    figures.fault_handled("read-only filesystem: run -o NEW")


# ---- disk full ----------------------------------------------------------------------------


def test_disk_full_before_resume_then_freed_finishes_once(
    mounts: Mounts, tmp_path: Path, figures
) -> None:  # type: ignore[no-untyped-def]
    figures.fault("disk full: resume")
    if not IS_ROOT:
        pytest.skip("a full disk needs a small tmpfs, which needs root")
    fs, ws, _ = a_workspace(mounts, tmp_path, size="1m")
    fill(fs)
    r = rc("resume", str(ws), "-fg", cwd=tmp_path)
    if r.returncode != 0:  # a clear error (or, acceptable too, it ran: checked below)
        assert_clean_error(r, str(ws))
    free(fs)
    assert integrity(ws) == "ok"
    r = rc("resume", str(ws), "-fg", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {v["state"] for v in rows(ws).values()} == {"FINISHED"}
    all_once(tmp_path / "count", 3)
    figures.fault_handled("disk full: resume")


def test_run_onto_a_full_disk_is_a_clear_error(mounts: Mounts, tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    figures.fault("disk full: run -o NEW")
    fs = mounts.tmpfs("1m")
    spec = sweep_spec(tmp_path / "faults.yaml", tmp_path / "count")
    fill(fs)
    r = rc("run", str(spec), "-y", "-fg", "-o", str(fs / "new"), cwd=tmp_path)
    assert not (fs / "new").exists()  # never half a workspace
    assert counts(tmp_path / "count") == {}
    assert_clean_error(r, str(fs / "new"))
    figures.fault_handled("disk full: run -o NEW")


class FullDisk:
    """Two `a` instances run (held by a gate file) when the disk fills up under the engine."""

    def __init__(self, mounts: Mounts, tmp_path: Path) -> None:
        self.fs = mounts.tmpfs("1m")
        self.count = tmp_path / "count"
        self.gate = tmp_path / "go"
        wait = f"; while [ ! -e {self.gate} ]; do sleep 0.05; done"
        spec = sweep_spec(tmp_path / "faults.yaml", self.count, n=2, extra=wait)
        self.ws = self.fs / "ws"
        self.engine = popen(
            "run", str(spec), "-y", "-fg", "--slots", "2", "-o", str(self.ws), cwd=tmp_path
        )
        self.stopped: subprocess.CompletedProcess[str] | None = None  # the engine's exit
        try:
            wait_for(lambda: len(counts(self.count)) == 2, "both a instances started")
            fill(self.fs)
            try:  # the engine writes status.csv and the record every pass: it meets ENOSPC
                out, err = self.engine.communicate(timeout=30)
                self.stopped = subprocess.CompletedProcess(
                    self.engine.args, self.engine.returncode, out, err
                )
            except subprocess.TimeoutExpired:  # still alive: fine, as long as it ends right
                pass
        except BaseException:
            self.end()
            raise

    def release(self) -> None:
        """Free the space, then let the jobs end (they can write their exit records)."""
        free(self.fs)
        self.gate.touch()

    def end(self) -> None:
        self.gate.touch()
        if self.engine.poll() is None:
            try:
                self.engine.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                self.engine.kill()
                self.engine.communicate()


def test_disk_full_while_the_engine_runs_loses_nothing_and_resume_finishes(
    mounts: Mounts, tmp_path: Path, figures
) -> None:  # type: ignore[no-untyped-def]
    figures.fault("disk full: while the engine runs")
    full = FullDisk(mounts, tmp_path)
    ws = full.ws
    try:
        if full.stopped is not None:  # the engine stopped: what it had recorded is all there
            assert full.stopped.returncode != 0
            free(full.fs)
            assert integrity(ws) == "ok"
            states = rows(ws)
            # In flight: RUNNING, or still PENDING if the disk filled before the job ids the
            # engine held were committed (resume finds the jobs: each runs once, below).
            assert {states[f"a_P.{k}"]["state"] for k in (1, 2)} <= {"RUNNING", "PENDING"}, states
            assert {states[f"b_P.{k}"]["state"] for k in (1, 2)} == {"INITIALIZED"}, states
        full.release()
    finally:
        full.end()
    wait_for(lambda: engine_holder(ws) is None, "the engine ended")
    r = rc("resume", str(ws), "-fg", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {v["state"] for v in rows(ws).values()} == {"FINISHED"}
    assert {v["attempts"] for v in rows(ws).values()} == {1}
    all_once(full.count, 2)
    assert integrity(ws) == "ok"
    figures.fault_handled("disk full: while the engine runs")


def test_disk_full_engine_stops_with_a_clear_error(mounts: Mounts, tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    figures.fault("disk full: the engine's message")
    full = FullDisk(mounts, tmp_path)
    full.release()
    full.end()
    assert full.stopped is not None, "the engine carried on through a full disk"
    assert_clean_error(full.stopped, "space")
    figures.fault_handled("disk full: the engine's message")


# ---- a deleted instance directory ---------------------------------------------------------


def test_instance_directory_deleted_before_it_runs_fails_with_a_clear_event(
    tmp_path: Path, figures
) -> None:  # type: ignore[no-untyped-def]
    """What happens: the instance is not run and not recreated; it is FAILED, with a
    `submit-failed` event naming the directory, and its dependants are BLOCKED."""
    figures.fault("instance directory deleted before it runs")
    count = tmp_path / "count"
    gate = tmp_path / "go"
    spec = sweep_spec(
        tmp_path / "faults.yaml", count, n=2, extra=f"; while [ ! -e {gate} ]; do sleep 0.05; done"
    )
    ws = tmp_path / "ws"
    engine = popen("run", str(spec), "-y", "-fg", "--slots", "4", "-o", str(ws), cwd=tmp_path)
    try:
        wait_for(lambda: len(counts(count)) == 2, "both a instances started")
        shutil.rmtree(ws / "b" / "P.1")  # b_P.1 waits on a_P.1: it has not run yet
        gate.touch()
        out, err = engine.communicate(timeout=120)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()
    assert engine.returncode == 2, out + err  # some instance failed
    assert "Traceback" not in out + err
    states = rows(ws)
    assert states["b_P.1"]["state"] == "FAILED", states
    assert states["b_P.2"]["state"] == "FINISHED", states
    assert counts(count) == {"a_1": 1, "a_2": 1, "b_2": 1}  # b_P.1 never ran
    failed = [e for e in events(ws) if e[0] == "b_P.1" and e[1] == "submit-failed"]
    assert failed and str(ws / "b" / "P.1") in failed[0][2], events(ws)
    r = rc("resume", str(ws), "-fg", cwd=tmp_path)  # nothing is rerun behind the user's back
    assert r.returncode == 2, r.stdout + r.stderr
    assert counts(count) == {"a_1": 1, "a_2": 1, "b_2": 1}
    figures.fault_handled("instance directory deleted before it runs")


def test_instance_directory_deleted_after_the_study_finished(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    """`status` keeps showing the recorded outcome (it did finish; `status --repo` in GitOps
    mode reports the study as Missing), nothing crashes, and nothing runs again."""
    figures.fault("instance directory deleted after the study finished")
    count = tmp_path / "count"
    spec = sweep_spec(tmp_path / "faults.yaml", count)
    ws = tmp_path / "ws"
    r = rc("run", str(spec), "-y", "-fg", "-o", str(ws), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    before = rows(ws)
    shutil.rmtree(ws / "a" / "P.2")
    for args in (("status", str(ws)), ("status", "--json", str(ws))):
        r = rc(*args, cwd=tmp_path)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    shown = {i["name"]: i["state"] for i in json.loads(r.stdout)}
    assert shown == {k: v["state"] for k, v in before.items()}
    r = rc("resume", str(ws), "-fg", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert rows(ws) == before
    all_once(count, 3)
    figures.fault_handled("instance directory deleted after the study finished")


# ---- a corrupted or missing record --------------------------------------------------------


def _garbage_in_table(table: str) -> Callable[[Path], None]:
    def corrupt(db: Path) -> None:
        con = sqlite3.connect(db)
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        (root_page,) = con.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)
        ).fetchone()
        con.close()
        rng = random.Random(f"{table}-2026")  # reproducible bytes
        with open(db, "r+b") as f:  # the second half of the page: where SQLite puts the cells
            f.seek((root_page - 1) * page_size + page_size // 2)
            f.write(rng.randbytes(page_size // 2))

    return corrupt


def _truncate(keep: float) -> Callable[[Path], None]:
    def corrupt(db: Path) -> None:
        os.truncate(db, int(db.stat().st_size * keep))

    return corrupt


def _overwrite_header(db: Path) -> None:
    with open(db, "r+b") as f:
        f.write(b"this is not an SQLite database!!")


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncated to 0 bytes": _truncate(0),
    "truncated to half": _truncate(0.5),
    "header overwritten": _overwrite_header,
    "deleted": lambda db: db.unlink(),
    "garbage in the study table": _garbage_in_table("study"),
    "garbage in the instance table": _garbage_in_table("instance"),
}
COMMANDS = {
    "status": ("status", "{ws}"),
    "status --json": ("status", "--json", "{ws}"),
    "resume -fg": ("resume", "-fg", "{ws}"),
    "cancel": ("cancel", "-y", "{ws}"),
    "run -o": ("run", "{spec}", "-y", "-fg", "-o", "{ws}"),
}
CASES = [
    pytest.param(corruption, command, id=f"{corruption}-{command}")
    for corruption in CORRUPTIONS
    for command in COMMANDS
]


@pytest.mark.parametrize(("corruption", "command"), CASES)
def test_corrupted_record_is_a_clear_error_and_runs_nothing(
    corruption: str, command: str, tmp_path: Path, figures
) -> None:  # type: ignore[no-untyped-def]
    name = f"record {corruption}: {command}"
    figures.fault(name)
    count = tmp_path / "count"
    spec = sweep_spec(tmp_path / "faults.yaml", count)
    ws = tmp_path / "ws"
    r = rc("run", str(spec), "-y", "--dry", "-o", str(ws), cwd=tmp_path)  # all still to run
    assert r.returncode == 0, r.stdout + r.stderr
    CORRUPTIONS[corruption](record_path(ws))
    args = [a.format(ws=ws, spec=spec) for a in COMMANDS[command]]
    r = rc(*args, cwd=tmp_path)
    assert counts(count) == {}  # never start running things again
    assert list((ws / "a" / "P.1").glob("*.out")) == []
    assert_clean_error(r, str(ws))
    figures.fault_handled(name)


# ---- a scheduler command that hangs, prints garbage or fails ------------------------------

MISBEHAVE = {
    "garbage": "echo '%%% this is not the table you asked for %%%'; echo '|||'; exit 0",
    "binary": "printf 'garbage \\xff\\xfe\\x00 not UTF-8\\n'; exit 0",
    "error": "echo 'error: slurm_load_jobs error: Socket timed out on send/recv operation' >&2;"
    " exit 1",
    "hang": "exec sleep 100000",  # the adapter's 60 s timeout ends it
}
TIMES = {"hang": 1}  # calls that misbehave before the command recovers (a hang costs 60 s)


def flaky(bindir: Path, tool: str, real: str, mode: str) -> Path:
    """`tool` first on PATH: its first few calls misbehave, then it runs the real one.
    Returns the file counting its calls."""
    bindir.mkdir(exist_ok=True)
    calls = bindir / f"{tool}.calls"
    script = bindir / tool
    script.write_text(
        "#!/bin/bash\n"
        f'n=$(( $(cat "{calls}" 2>/dev/null || echo 0) + 1 )); echo "$n" > "{calls}"\n'
        f'if [ "$n" -le {TIMES.get(mode, 3)} ]; then {MISBEHAVE[mode]}; fi\n'
        f'exec "{real}" "$@"\n'
    )
    script.chmod(0o755)
    return calls


def batch_spec(path: Path, count: Path, batch: str, n: int, *, sleep: float = 1) -> Path:
    count.mkdir(exist_ok=True)
    path.write_text(
        "description: {name: flaky_sched, description: a scheduler that misbehaves}\n"
        f"batch: {batch}\n"
        "study:\n"
        "  - name: a\n    description: first\n"
        f'    run: {{cmd: "echo a >> {count}/a_$(P); sleep {sleep}", procs: 1}}\n'
        "  - name: b\n    description: second\n"
        f'    run: {{cmd: "echo b >> {count}/b_$(P)", depends: [a], procs: 1}}\n'
        f"global.parameters:\n  P: {{values: {list(range(1, n + 1))}, label: P.%%}}\n"
    )
    return path


def _through_the_engine(tmp_path: Path, env: dict[str, str], batch: str, tool: str,
                        calls: Path, mode: str, n: int = 3) -> Path:  # fmt: skip
    count = tmp_path / "count"
    spec = batch_spec(tmp_path / "flaky.yaml", count, batch, n)
    ws = tmp_path / "ws"
    r = rc("run", str(spec), "-y", "-fg", "-s", "1", "-o", str(ws), cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert int(calls.read_text()) > TIMES.get(mode, 3)  # it misbehaved, then answered
    errors = [e for e in events(ws) if e[1] == "scheduler-error"]
    assert errors and all(tool in e[2] for e in errors), errors
    fine = {"submitted", "ended:FINISHED rc=0"}
    odd = [e for e in events(ws) if e[0] and e[1] not in fine and f"{e[1]}:{e[2]}" not in fine]
    assert odd == [], odd  # no LOST, no failure, no retry, no resubmission: states were kept
    assert {v["state"] for v in rows(ws).values()} == {"FINISHED"}
    assert {v["attempts"] for v in rows(ws).values()} == {1}
    all_once(count, n)
    return ws


@pytest.fixture
def lsf_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    state = tmp_path / "fakesched.json"
    env = {**os.environ, "FAKESCHED_STATE": str(state)}
    env["PATH"] = f"{tmp_path / 'bin'}:{FAKES}:{env['PATH']}"
    yield env
    if state.exists():  # no stand-in job outlives its test
        for jid, job in json.loads(state.read_text())["jobs"].items():
            if job["state"] in ("pending", "running"):
                subprocess.run([str(FAKES / "bkill"), jid], env=env, capture_output=True)


@pytest.mark.parametrize("mode", ["garbage", "binary", "hang"])
def test_lsf_status_command_misbehaves_through_the_engine(
    mode: str, tmp_path: Path, lsf_env: dict[str, str], figures
) -> None:  # type: ignore[no-untyped-def]
    figures.fault(f"bjobs (LSF stand-in) {mode}")
    calls = flaky(tmp_path / "bin", "bjobs", str(FAKES / "bjobs"), mode)
    _through_the_engine(tmp_path, lsf_env, "{type: lsf, queue: normal}", "bjobs", calls, mode)
    figures.fault_handled(f"bjobs (LSF stand-in) {mode}")


def _slurm_problem() -> str | None:
    if shutil.which("sbatch") is None:
        return "Slurm is not installed (no sbatch); as root run scripts/slurm/start-local-slurm.sh"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                               timeout=20).stdout.split()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"Slurm does not answer: {e}"
    if "is UP" not in ping.stdout:
        return "no slurmctld answers; start scripts/slurm/start-local-slurm.sh"
    if not {"idle", "mixed", "allocated"} & set(nodes):
        return "Slurm is up but its node is not usable"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    """A usable Slurm, or a skip (a failure in CI, where .ci/run starts one)."""
    problem = _slurm_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {problem}", pytrace=False)
        pytest.skip(problem)


def _scancel_study(ws: Path) -> None:
    with contextlib.suppress(Exception):
        ids = [r.job_id for r in Store.open(ws).instances() if r.job_id]
        if ids:
            subprocess.run(["scancel", "--quiet", *ids], capture_output=True, timeout=30)


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
@pytest.mark.parametrize("mode", ["garbage", "error"])
def test_squeue_misbehaves_through_the_engine(mode: str, tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    figures.fault(f"squeue (real Slurm) {mode}")
    real = shutil.which("squeue")
    assert real is not None
    calls = flaky(tmp_path / "bin", "squeue", real, mode)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    try:
        _through_the_engine(tmp_path, env, "{type: slurm, queue: debug}", "squeue", calls, mode)
    finally:
        _scancel_study(tmp_path / "ws")
    figures.fault_handled(f"squeue (real Slurm) {mode}")


# ---- Slurm chaos: kill -9 the engine of a Slurm study, resume, again ----------------------

SLURM_KILLS = 5
SLURM_N = 10  # a×10 + b×10 = 20 instances


def _started(r: subprocess.CompletedProcess[str], ws: Path) -> None:
    """Wait until the background engine `run`/`resume` just spawned holds the study (or has
    already ended): only then is it the one the next kill aims at."""
    m = re.search(r"pid (\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    pid = int(m.group(1))
    wait_for(
        lambda: (engine_holder(ws) or {}).get("pid") == pid or not Path(f"/proc/{pid}").exists(),
        "the engine started",
    )


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_slurm_chaos_five_kills_lose_nothing_and_run_nothing_twice(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20261125)  # reproducible moments
    count = tmp_path / "count"
    spec = batch_spec(
        tmp_path / "chaos.yaml", count, "{type: slurm, queue: debug}", SLURM_N, sleep=8
    )
    ws = tmp_path / "ws"
    kills = 0
    try:
        r = rc("run", str(spec), "-y", "-s", "1", "-o", str(ws), cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        _started(r, ws)
        for _ in range(SLURM_KILLS):
            time.sleep(rng.uniform(0.2, 1.5))
            holder = engine_holder(ws)
            if holder is None:  # it finished: nothing left to kill
                break
            os.kill(int(holder["pid"]), signal.SIGKILL)
            kills += 1
            wait_for(lambda: engine_holder(ws) is None, "the killed engine let go")
            r = rc("resume", str(ws), cwd=tmp_path)
            assert r.returncode == 0, r.stdout + r.stderr
            _started(r, ws)
        wait_for(lambda: engine_holder(ws) is None, "the last engine finished", timeout=240)
        r = rc("resume", str(ws), "-fg", cwd=tmp_path)  # nothing left: exits at once
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        holder = engine_holder(ws) if ws.exists() else None
        if holder and holder.get("pid"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(holder["pid"]), signal.SIGKILL)
        _scancel_study(ws)
    figures.chaos(kills)
    found = rows(ws)
    assert len(found) == 2 * SLURM_N
    assert {v["state"] for v in found.values()} == {"FINISHED"}, found
    assert {v["attempts"] for v in found.values()} == {1}, found
    all_once(count, SLURM_N)
    figures.exactly_once(len(found))
    assert integrity(ws) == "ok"
    assert kills == SLURM_KILLS, f"only {kills} kills landed while the study ran"
