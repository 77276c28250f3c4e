"""logs, honest verbs, --json of run and cancel, Maestro's global options, help and completion —
each on real studies run by the local adapter."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from everyday import FAILED, cli, run_failing

from reconciler.engine.api import engine_holder

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_failing(tmp_path_factory.mktemp("failing"))[0]


def _spec(tmp: Path, cmd: str, name: str = "one") -> Path:
    spec = tmp / f"{name}.yaml"
    spec.write_text(
        f"description: {{name: {name}, description: d}}\n"
        f"study:\n  - name: step\n    description: d\n    run:\n      cmd: {json.dumps(cmd)}\n"
    )
    return spec


def _events(ws: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(ws / ".reconciler" / "record.db") as db:
        return list(db.execute("SELECT kind, detail FROM event ORDER BY id"))


# -- logs --------------------------------------------------------------------------------------


def test_logs_prints_stdout_and_stderr(failing: Path) -> None:
    code, out, _ = cli("logs", str(failing), FAILED)
    assert (code, out) == (0, "simulating size 30\n")
    code, out, _ = cli("logs", str(failing), FAILED, "--err")
    assert (code, out) == (0, "reading mesh\nmesh has 0 cells\n")


def test_logs_user_errors(failing: Path) -> None:
    code, _, err = cli("logs", str(failing), "simulate-the-thing-at-this-size_SIZE.3")
    assert code == 2 and "did you mean 'simulate-the-thing-at-this-size_SIZE.30'" in err
    code, _, err = cli("logs", str(failing), "report")  # BLOCKED: never ran
    assert code == 2 and "error:" in err and "does not exist" in err and "BLOCKED" in err
    code, _, err = cli("logs", str(failing), FAILED, "--attempt", "2")
    assert code == 2 and "1 attempt;" in err
    code, _, err = cli("logs", str(failing.parent / "nope"), FAILED)
    assert code == 2 and "nope does not exist" in err


def test_logs_of_each_attempt(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "echo try; echo oops >&2; exit 1")
    code, _, _ = cli("run", str(spec), "--fg", "-y", "-a", "2", "-o", str(tmp_path / "ws"))
    assert code == 2
    code, out, err = cli("logs", str(tmp_path / "ws"), "step", "--attempt", "1", "--err")
    assert code == 0 and "oops" in out
    assert "write one file" not in err  # each attempt has its own step.<pid>.err (Maestro's)
    code, out, _ = cli("logs", str(tmp_path / "ws"), "step", "--attempt", "2")
    assert code == 0 and out == "try\n"  # the second attempt's stdout alone
    assert len(list((tmp_path / "ws" / "step").glob("step.*.err"))) == 2
    assert cli("logs", str(tmp_path / "ws"), "step", "--attempt", "3")[0] == 2


def test_logs_follow_prints_a_running_instance_until_it_ends(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "for i in 1 2 3 4; do echo line$i; sleep 0.5; done")
    ws = tmp_path / "ws"
    assert cli("run", str(spec), "-y", "-o", str(ws))[0] == 0  # a background engine
    deadline = time.monotonic() + 30
    while not any((ws / "step").glob("step.*.out")):  # running: it has started writing
        assert time.monotonic() < deadline
        time.sleep(0.05)
    argv = [sys.executable, "-m", "reconciler", "logs", str(ws), "step", "-f"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "line1\nline2\nline3\nline4\n"
    status = json.loads(cli("status", str(ws), "--json")[1])
    assert status[0]["state"] == "FINISHED"  # -f returned because the instance ended


# -- honest verbs ------------------------------------------------------------------------------


def test_verbs_on_an_ended_study_say_so_and_change_nothing(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "echo hi")
    ws = tmp_path / "ws"
    assert cli("run", str(spec), "--fg", "-y", "-o", str(ws))[0] == 0
    before = _events(ws)
    code, out, _ = cli("cancel", str(ws), "-y")
    assert code == 0 and "nothing to cancel: the study ended FINISHED" in out
    code, out, _ = cli("resume", str(ws))
    assert code == 0 and "nothing to resume: the study ended FINISHED" in out
    assert "Engine started" not in out and engine_holder(ws) is None
    code, out, _ = cli("update", str(ws), "--throttle", "3")
    assert code == 0 and "nothing to update: the study ended FINISHED" in out
    assert _events(ws) == before  # no cancel flag, no engine, no setting changed
    code, out, _ = cli("cancel", str(ws), "-y", "--json")
    assert code == 0 and json.loads(out) == [{
        "workspace": str(ws), "cancelled": 0, "nothing_to_cancel": True,
        "message": "nothing to cancel: the study ended FINISHED"}]  # fmt: skip


def test_verbs_on_a_failed_study_name_its_end(failing: Path) -> None:
    code, out, _ = cli("cancel", str(failing), "-y")
    assert code == 0
    assert "nothing to cancel: the study ended: 5 FINISHED, 1 FAILED, 1 BLOCKED" in out
    code, out, _ = cli("resume", str(failing))
    assert code == 0 and "nothing to resume: the study ended: 5 FINISHED" in out
    code, out, _ = cli("resume", str(failing), "-fg")  # --fg: the study's exit code
    assert code == 2 and "nothing to resume" in out and engine_holder(failing) is None


def test_cancel_counts_only_what_has_not_ended(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "sleep 30")
    ws = tmp_path / "ws"
    assert cli("run", str(spec), "-y", "-o", str(ws))[0] == 0
    deadline = time.monotonic() + 30
    while engine_holder(ws) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    code, out, _ = cli("cancel", str(ws), "-y", "--json")
    assert code == 0
    (entry,) = json.loads(out)
    assert entry["cancelled"] == 1 and entry["nothing_to_cancel"] is False
    assert entry["message"] == "cancelling 1 instance that had not ended"


# -- --json of run -----------------------------------------------------------------------------


def test_run_json(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "echo bad >&2; exit 4")
    code, out, err = cli("run", str(spec), "--fg", "-y", "--json", "-o", str(tmp_path / "ws"))
    assert code == 2
    data = json.loads(out)  # stdout is the JSON alone; messages went to stderr
    assert "Study ended" in err
    assert data["study"] == "one" and data["workspace"] == str(tmp_path / "ws")
    assert data["resumed"] is False and data["dry"] is False and data["foreground"] is True
    assert data["exit_code"] == 2 and data["counts"] == {"FAILED": 1}
    (bad,) = data["failures"]["instances"]
    assert bad["exit_code"] == 4 and bad["stderr_tail"] == ["bad"]
    assert bad["stderr"].endswith(f"/step/step.{bad['job_id']}.err")  # step.<pid>.err
    code, out, _ = cli("run", str(spec), "--dry", "--json", "-o", str(tmp_path / "dry"))
    assert code == 0 and json.loads(out)["set_up"] is True


# -- Maestro's global options ------------------------------------------------------------------


def test_debug_level_and_logpath(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "echo hi")
    log = tmp_path / "reconciler.log"
    argv = [sys.executable, "-m", "reconciler", "-d", "1", "-l", str(log), "-c",
            "run", str(spec), "-fg", "-y", "-o", str(tmp_path / "ws")]  # fmt: skip
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert "DEBUG step: submitted" in p.stderr and "INFO study-ended" in p.stderr
    assert "DEBUG step: submitted" in log.read_text()
    argv = [sys.executable, "-m", "reconciler", "run", str(spec), "-fg", "-y", "-o",
            str(tmp_path / "ws2")]  # fmt: skip
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert quiet.returncode == 0 and "submitted" not in quiet.stderr  # no -d: no log lines
    assert cli("-d", "6", "status", str(tmp_path / "ws"))[0] == 2


def test_a_background_engine_logs_at_the_level_it_was_started_with(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "echo hi")
    ws = tmp_path / "ws"
    argv = [sys.executable, "-m", "reconciler", "-d", "1", "run", str(spec), "-y", "-o", str(ws)]
    assert subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0
    log = ws / "logs" / "one.log"
    deadline = time.monotonic() + 30
    while "study-ended" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "DEBUG step: submitted" in log.read_text()


# -- help, errors, completion ------------------------------------------------------------------

COMMANDS = ("validate", "expand", "graph", "schema", "run", "status", "cancel", "resume",
            "update", "logs", "plan", "apply", "history", "reproduce", "watch")  # fmt: skip


def test_help_reads_well() -> None:
    env = {"COLUMNS": "100"}
    code, top, _ = cli("--help", env=env)
    assert code == 0 and "<bool>" not in top
    for name in COMMANDS:
        code, out, _ = cli(name, "--help", env=env)
        assert code == 0, name
        usage = next(ln for ln in out.splitlines() if "Usage:" in ln)
        assert "<bool>" not in out and "{" not in usage, name
        summary = next(ln for ln in top.splitlines() if ln.startswith(f"│ {name} "))
        assert summary.rstrip(" │").endswith("."), summary  # a whole sentence on one line
    usage = cli("run", "--help", env=env)[1]
    assert "Usage: reconciler run [OPTIONS] SPEC" in usage


def test_user_errors_say_error(tmp_path: Path) -> None:
    for args in (("run",), ("run", str(tmp_path / "missing.yaml")), ("status", "--layout", "x"),
                 ("expand", str(tmp_path / "missing.yaml")), ("nope",),
                 ("plan", "--repo", str(tmp_path / "missing"))):  # fmt: skip
        code, _, err = cli(*args)
        assert code == 2 and "error:" in err and "Traceback" not in err, (args, err)
    assert "missing.yaml does not exist" in cli("run", str(tmp_path / "missing.yaml"))[2]
    assert "missing does not exist" in cli("plan", "--repo", str(tmp_path / "missing"))[2]


def test_shell_completion() -> None:
    code, out, _ = cli("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert code == 0 and "_RECONCILER_COMPLETE" in out and "complete" in out
    env = {**os.environ, "_RECONCILER_COMPLETE": "complete_bash", "COMP_WORDS": "reconciler sta",
           "COMP_CWORD": "1"}  # fmt: skip
    code, out, _ = cli(env=env)
    assert code == 0 and out.split() == ["status"]
    env |= {"COMP_WORDS": "reconciler status --layout ", "COMP_CWORD": "3"}
    assert cli(env=env)[1].split() == ["fit", "wide", "flat", "narrow", "legacy"]
