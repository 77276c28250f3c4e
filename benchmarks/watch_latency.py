"""Benchmark: commit-to-first-submit latency of `reconciler watch` with default settings.

A temporary repo, one `reconciler watch` process (default interval and debounce), and a series
of commits: the first adds a new study, every later one adds a parameter value (one new
instance). Before each commit the study has ended and its engine has exited, so every commit
pays for planning, applying and starting an engine. The latency of a commit is the time from
just before `git commit` starts to the first `submitted` event in the study's record
(`.reconciler/record.db`, table `event`). Goal: median ≤ 2 s.

    python3 benchmarks/watch_latency.py [--commits 9]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = "latency"


def spec(values: int) -> str:
    vals = ", ".join(str(i) for i in range(values))
    return (
        f"description: {{name: {STUDY}, description: commit to first submit}}\n"
        "study:\n  - name: t\n    description: one trivial step\n"
        "    run: {cmd: 'echo $(P) > out.txt'}\n"
        f"global.parameters:\n  P: {{values: [{vals}], label: P.%%}}\n"
    )


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def first_submit_after(db: Path, t0: float) -> float | None:
    if not db.exists():
        return None
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute(
            "SELECT min(time) FROM event WHERE kind = 'submitted' AND time >= ?", (t0,)
        ).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    finally:
        con.close()
    return row[0] if row and row[0] is not None else None


def idle(db: Path) -> bool:
    """The study has ended (no instance waits or runs) and its engine has exited."""
    from reconciler.engine.api import engine_holder

    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        busy = con.execute(
            "SELECT count(*) FROM instance WHERE state NOT IN "
            "('FINISHED', 'FAILED', 'CANCELLED', 'BLOCKED', 'TIMEDOUT', 'LOST', 'HWFAILURE')"
        ).fetchone()[0]
    finally:
        con.close()
    return busy == 0 and engine_holder(db.parent.parent) is None


def wait_for(what: str, check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    sys.exit(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="watch-latency-") as tmp:
        repo = Path(tmp) / "repo"
        (repo / "specs").mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "config", "user.email", "bench@example.org")
        git(repo, "config", "user.name", "bench")
        (repo / "specs" / "README").write_text("studies\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "init")
        log = repo / ".reconciler" / "watch.log"
        watcher = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "watch"], cwd=repo,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        db = repo / ".reconciler" / "studies" / STUDY / ".reconciler" / "record.db"
        latencies: list[float] = []
        try:
            wait_for("the watcher", lambda: log.exists() and "watching" in log.read_text())
            for i in range(args.commits):
                (repo / "specs" / "latency.yaml").write_text(spec(i + 1))
                git(repo, "add", "-A")
                t0 = time.time()
                git(repo, "commit", "-qm", f"{i + 1} values")
                t1 = wait_for(f"commit {i + 1}'s first submit",
                              lambda t0=t0: first_submit_after(db, t0))  # fmt: skip
                latencies.append(t1 - t0)
                print(f"commit {i + 1:2d} ({'new study' if i == 0 else 'one more value'}): "
                      f"{t1 - t0:.2f} s", flush=True)  # fmt: skip
                wait_for("the study to end", lambda: idle(db))
        finally:
            watcher.send_signal(signal.SIGTERM)
            watcher.wait(timeout=30)
        print(
            f"commit → first submit, {len(latencies)} commits: median "
            f"{statistics.median(latencies):.2f} s, min {min(latencies):.2f} s, max "
            f"{max(latencies):.2f} s (goal ≤ 2 s median); {os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    main()
