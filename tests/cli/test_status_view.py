"""`status` as people read it: tables that fit 80 and 120 columns, a summary of big studies,
failed instances with the end of their stderr, Maestro's layouts, and JSON with clean types.
Every study here ran for real on the local adapter; some instances fail on purpose."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from everyday import ANSI, FAILED, STATES, cli, run_failing

from reconciler.cli.status import SUMMARY_OVER

pytestmark = pytest.mark.timeout(120)

MAESTRO_CSV = (
    Path(__file__).resolve().parents[1]
    / "conformance" / "maestro" / "tests" / "status" / "hello_bye_world.csv"
)  # fmt: skip


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return run_failing(tmp_path_factory.mktemp("failing"))


def _rows(out: str) -> list[str]:
    """Table lines that carry an instance's state."""
    return [ln for ln in out.splitlines() if any(f" {s} " in f" {ln} " for s in STATES)]


def _names(table: str) -> list[str]:
    """Instance names of a table, their wrapped pieces joined (a row, then lines that continue
    its name only)."""
    names: list[str] = []
    body = table.split("───")[-1].splitlines()[1:]
    for ln in body:
        if ln in _rows(ln):
            names.append(ln.split()[0])
        elif ln.strip() and names:
            names[-1] += ln.strip()
    return names


@pytest.mark.parametrize("columns", [80, 120])
def test_the_table_fits_and_every_state_is_whole(failing: tuple[Path, str], columns: int) -> None:
    ws, _ = failing
    code, out, _ = cli("status", str(ws), env={"COLUMNS": str(columns)})
    assert code == 0
    too_wide = [ln for ln in out.splitlines() if len(ln) > columns and "/" not in ln]
    assert not too_wide, too_wide  # (a long path in the failure report may wrap: it is text)
    table = out.split("7 instances:")[0]
    rows = _rows(table)
    assert len(rows) == 7, table
    states = sorted(next(s for s in STATES if f" {s} " in f" {r} ") for r in rows)
    assert states == ["BLOCKED", "FAILED"] + ["FINISHED"] * 5
    # the long names wrap at 80 instead of squeezing the state column, and stay whole at 120
    assert FAILED in _names(table) and len(_names(table)) == 7
    if columns == 80:
        assert FAILED not in table
        assert "Start Time" not in table
    else:
        assert FAILED in table and "Start Time" in table and "Exit" in table
    assert "7 instances: 5 FINISHED, 1 FAILED, 1 BLOCKED — study ended" in out


def test_status_names_the_failure_its_exit_code_and_stderr(failing: tuple[Path, str]) -> None:
    ws, _ = failing
    code, out, _ = cli("status", str(ws), env={"COLUMNS": "120"})
    assert code == 0
    report = out[out.index("1 instance failed and blocked 1 more:") :]
    (err_file,) = (ws / "simulate-the-thing-at-this-size" / "SIZE.30").glob(f"{FAILED}.*.err")
    assert f"{FAILED}: FAILED, exit code 3, 1 attempt" in report
    assert f"stderr: {err_file}" in report
    assert report.index("reading mesh") < report.index("mesh has 0 cells")


def test_run_fg_ends_with_the_same_report(failing: tuple[Path, str]) -> None:
    _, out = failing
    assert "Study ended: 5 FINISHED, 1 FAILED, 1 BLOCKED" in out
    assert f"{FAILED}: FAILED, exit code 3, 1 attempt" in out and "mesh has 0 cells" in out


@pytest.mark.parametrize("columns", [80, 120])
def test_layouts(failing: tuple[Path, str], columns: int) -> None:
    ws, _ = failing
    env = {"COLUMNS": str(columns)}
    code, narrow, _ = cli("status", str(ws), "--layout", "narrow", env=env)
    assert code == 0 and narrow.count("  state ") == 7
    assert max(len(ln) for ln in narrow.splitlines() if "/" not in ln) <= columns
    code, legacy, _ = cli("status", str(ws), "--layout", "legacy", env=env)
    assert code == 0 and legacy.startswith("=")
    assert "Number Restarts" in legacy and "Params" not in legacy  # Maestro's legacy columns
    code, wide, _ = cli("status", str(ws), "--layout", "wide", env=env)
    assert code == 0 and "Submit Time" in wide and "Params" in wide and FAILED in wide
    assert cli("status", str(ws), "--layout", "flat", env=env)[1] == wide  # Maestro's name


def test_disable_theme_prints_no_escape_codes(failing: tuple[Path, str]) -> None:
    ws, _ = failing
    env = {**os.environ, "COLUMNS": "120", "FORCE_COLOR": "1", "TERM": "xterm-256color"}

    def status(*args: str) -> str:  # a real process: FORCE_COLOR is read when it starts
        argv = [sys.executable, "-m", "reconciler", "status", str(ws), *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout

    assert ANSI.search(status())
    out = status("--disable-theme", "--disable-pager")
    assert not ANSI.search(out) and "FAILED" in out


def test_json_has_clean_types(failing: tuple[Path, str]) -> None:
    ws, _ = failing
    code, out, _ = cli("status", str(ws), "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    bad = rows[FAILED]
    assert bad["state"] == "FAILED" and bad["exit_code"] == 3 and bad["attempts"] == 1
    assert bad["params"] == {"SIZE": 30}
    for key in ("submit_time", "start_time", "end_time"):
        assert datetime.fromisoformat(bad[key]).tzinfo is not None  # ISO 8601 with its offset
    assert rows["report"]["start_time"] is None and rows["report"]["exit_code"] is None
    code, out, _ = cli("status", str(ws), "--json", "--state", "failed")
    assert [r["name"] for r in json.loads(out)] == [FAILED]


def test_unknown_state_or_missing_directory_is_a_user_error(tmp_path: Path) -> None:
    code, _, err = cli("status", str(tmp_path / "nope"))
    assert code == 2 and "error:" in err and "does not exist" in err
    code, _, err = cli("status", str(tmp_path))
    assert code == 2 and "error:" in err and "status.csv" in err
    code, _, err = cli("status", str(tmp_path), "--state", "DONE")
    assert code == 2 and "not a state" in err


# -- a study too big to list -------------------------------------------------------------------

BIG = f"""\
description: {{name: big sweep, description: more instances than a screen}}
study:
  - name: compute
    description: fails for P = 7 and P = 123
    run: {{cmd: "if [ $(P) = 7 ] || [ $(P) = 123 ]; then echo boom $(P) >&2; exit 5; fi"}}
  - name: total
    description: funnel
    run: {{cmd: "echo all", depends: [compute_*]}}
global.parameters:
  P: {{values: [{", ".join(str(i) for i in range(SUMMARY_OVER + 20))}], label: "P.%%"}}
"""


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("big")
    (tmp / "big.yaml").write_text(BIG)
    code, out, err = cli("run", str(tmp / "big.yaml"), "--fg", "-y", "-o", str(tmp / "ws"))
    assert code == 2, out + err
    return tmp / "ws"


@pytest.mark.parametrize("columns", [80, 120])
def test_a_big_study_is_summarised(big: Path, columns: int) -> None:
    code, out, _ = cli("status", str(big), env={"COLUMNS": str(columns)})
    assert code == 0
    assert (
        f"{SUMMARY_OVER + 21} instances: {SUMMARY_OVER + 18} FINISHED, 2 FAILED, 1 BLOCKED" in out
    )
    assert "compute_P.0 " not in out  # no row per instance
    assert "2 instances failed and blocked 1 more:" in out
    assert "compute_P.7: FAILED, exit code 5" in out and "boom 123" in out
    steps = [ln.split() for ln in out.splitlines() if ln.strip().startswith(("compute", "total"))]
    assert ["compute", f"{SUMMARY_OVER + 20}", f"{SUMMARY_OVER + 18}", "2", "0"] in steps
    assert "--all" in out
    assert max(len(ln) for ln in out.splitlines() if "/" not in ln) <= columns


def test_all_filters_and_json_of_a_big_study(big: Path) -> None:
    code, out, _ = cli("status", str(big), "--all", env={"COLUMNS": "120"})
    assert code == 0 and len(_rows(out)) >= SUMMARY_OVER + 21
    code, out, _ = cli("status", str(big), "--state", "FAILED", env={"COLUMNS": "80"})
    assert code == 0 and [r.split()[0] for r in _rows(out.split("instances shown")[0])] == [
        "compute_P.7", "compute_P.123"]  # fmt: skip
    code, out, _ = cli("status", str(big), "--step", "total", env={"COLUMNS": "80"})
    assert code == 0 and len(_rows(out.split("instance shown")[0])) == 1 and "BLOCKED" in out
    code, out, _ = cli("status", str(big), "--json")
    assert code == 0 and len(json.loads(out)) == SUMMARY_OVER + 21


# -- a workspace Maestro made ------------------------------------------------------------------


def test_a_maestro_workspace_is_shown_read_only(tmp_path: Path) -> None:
    ws = tmp_path / "hello_bye_world_20210517-224522"
    ws.mkdir()
    shutil.copy(MAESTRO_CSV, ws / "status.csv")
    (ws / "meta").mkdir()
    before = sorted(p.name for p in ws.rglob("*"))
    code, out, _ = cli("status", str(ws), env={"COLUMNS": "80"})
    assert code == 0, out
    assert "Maestro workspace" in out and "read-only" in out
    assert "9 instances: 9 FINISHED" in out and len(_rows(out.split("9 instances")[0])) == 9
    code, out, _ = cli("status", str(ws), "--json")
    rows = json.loads(out)
    assert rows[0]["name"] == "hello_world_GREETING.Hello.NAME.Pam"
    assert rows[0]["step"] == "hello_world" and rows[0]["job_id"] == "36260"
    assert rows[0]["params"] == {"NAME": "Pam", "GREETING": "Hello"}
    assert datetime.fromisoformat(rows[0]["start_time"]).year == 2021
    assert sorted(p.name for p in ws.rglob("*")) == before  # nothing written


def test_one_of_ours_that_lost_its_record_is_an_error_not_maestros(failing) -> None:
    ws, _ = failing
    lost = ws.parent / "lost"
    shutil.copytree(ws, lost)
    (lost / ".reconciler" / "record.db").unlink()
    code, _, err = cli("status", str(lost))
    assert code == 2 and "error:" in err and "record.db" in err
