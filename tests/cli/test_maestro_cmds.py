"""run / status / cancel / resume / update as a user types them (typer's runner, real engines)."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.cli.app import app
from reconciler.cli.maestro import normalize_maestro_argv
from reconciler.engine.api import engine_holder

pytestmark = pytest.mark.timeout(60)

SPEC = """\
description:
  name: cli study
  description: test
env:
  variables:
    OUTPUT_PATH: ./studies
study:
  - name: hello
    description: d
    run:
      cmd: echo hello_$(N) >> $(SPECROOT)/count.txt
  - name: fails
    description: d
    run:
      cmd: exit $(RC)
global.parameters:
  N:
    values: [1, 2]
    label: N.%%
  RC:
    values: [0, 0]
    label: RC.%%
"""


def cli(*args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(app, normalize_maestro_argv(list(args)))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "study.yaml"
    path.write_text(SPEC)
    return path


def _count(tmp_path: Path) -> list[str]:
    f = tmp_path / "count.txt"
    return f.read_text().splitlines() if f.exists() else []


def test_normalize_fg() -> None:
    assert normalize_maestro_argv(["run", "s.yaml", "-fg"]) == ["run", "s.yaml", "--fg"]
    assert normalize_maestro_argv(["run", "--", "-fg"]) == ["run", "--", "-fg"]


def test_run_fg_then_status(spec: Path, tmp_path: Path) -> None:
    code, out, _ = cli("run", str(spec), "-fg", "-o", "ws")
    assert code == 0, out
    root = tmp_path / "ws"
    assert sorted(_count(tmp_path)) == ["hello_1", "hello_2"]
    with open(root / "status.csv") as f:
        header = next(csv.reader(f))
    assert header == [
        "Step Name",
        "Job ID",
        "Workspace",
        "State",
        "Run Time",
        "Elapsed Time",
        "Start Time",
        "Submit Time",
        "End Time",
        "Number Restarts",
        "Params",
    ]
    code, out, _ = cli("status", str(root), "--json")
    assert code == 0
    data = json.loads(out)
    assert len(data) == 3  # hello ×2 (N), fails ×1 (RC rows 0, 0 collapse)
    assert all(
        set(d)
        == {
            "name",
            "step",
            "workspace",
            "state",
            "job_id",
            "attempts",
            "exit_code",
            "submit_time",
            "start_time",
            "end_time",
            "params",
        }
        for d in data
    )
    assert {d["state"] for d in data} == {"FINISHED"}
    code, out, _ = cli("status", str(root))
    assert code == 0 and "3 instances: 3 FINISHED" in out and "hello_N.1" in out
    # the spec copy and the layout Maestro users expect
    assert (root / "study.yaml").read_text() == SPEC
    for p in (
        "batch.info",
        "meta/parameters.yaml",
        "meta/metadata.yaml",
        "meta/environment.yaml",
        "hello/N.1/hello_N.1.sh",
    ):
        assert (root / p).exists(), p


def test_default_root_is_under_output_path(spec: Path, tmp_path: Path) -> None:
    code, _, _ = cli("run", str(spec), "--dry")
    assert code == 0
    (root,) = (tmp_path / "studies").iterdir()
    assert root.name.startswith("cli_study_")


def test_fg_exit_code_2_on_failure(spec: Path, tmp_path: Path) -> None:
    spec.write_text(SPEC.replace("values: [0, 0]", "values: [0, 1]"))
    code, _, _ = cli("run", str(spec), "--fg", "-o", "ws")
    assert code == 2


def test_dry_writes_scripts_and_runs_nothing(spec: Path, tmp_path: Path) -> None:
    code, _, _ = cli("run", str(spec), "--dry", "-o", "ws")
    assert code == 0
    root = tmp_path / "ws"
    assert len(list(root.glob("*/*/*.sh"))) == 3
    assert not list(root.glob("*/*/*.out")) and _count(tmp_path) == []
    code, out, _ = cli("status", str(root), "--json")
    assert {d["state"] for d in json.loads(out)} == {"INITIALIZED"}
    code, _, _ = cli("resume", str(root), "--fg")  # a dry workspace can be run later
    assert code == 0 and len(_count(tmp_path)) == 2


def test_out_onto_existing_workspace_resumes_and_never_deletes(spec: Path, tmp_path: Path) -> None:
    assert cli("run", str(spec), "-fg", "-o", "ws")[0] == 0
    keep = tmp_path / "ws" / "my-notes.txt"
    keep.write_text("mine")
    code, out, _ = cli("run", str(spec), "-fg", "-o", "ws", "-y")
    assert code == 0 and "Resuming" in out
    assert keep.read_text() == "mine"
    assert len(_count(tmp_path)) == 2  # nothing that finished ran again


def test_out_onto_foreign_directory_is_refused(spec: Path, tmp_path: Path) -> None:
    other = tmp_path / "ws"
    other.mkdir()
    (other / "data.txt").write_text("precious")
    code, _, err = cli("run", str(spec), "-o", "ws", "-y")
    assert code == 2 and "not a reconciler workspace" in err
    assert (other / "data.txt").read_text() == "precious"
    assert sorted(p.name for p in other.iterdir()) == ["data.txt"]


def test_out_onto_another_studys_workspace_is_refused(spec: Path, tmp_path: Path) -> None:
    assert cli("run", str(spec), "--dry", "-o", "ws")[0] == 0
    spec.write_text(SPEC.replace("name: cli study", "name: another"))
    code, _, err = cli("run", str(spec), "-o", "ws", "-y")
    assert code == 2 and "cli study" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SPEC.replace("cmd: exit $(RC)", "cmd: exit $(NOPE)"), "NOPE"),
        (
            SPEC.replace(
                "env:\n",
                "env:\n  dependencies:\n    paths:\n      - name: D\n        path: ./missing\n",
            ),
            "missing",
        ),
    ],
)
def test_user_errors_exit_2_and_create_nothing(spec: Path, tmp_path: Path, text, message) -> None:
    spec.write_text(text)
    code, _, err = cli("run", str(spec), "-y")
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "studies").exists()


def test_option_errors(spec: Path, tmp_path: Path) -> None:
    assert cli("run", str(spec), "-y", "-n")[0] == 2
    assert cli("status", str(tmp_path))[0] == 2
    assert cli("update", str(tmp_path), "--throttle", "1")[0] == 2
    assert cli("run", str(spec), "--dry", "-o", "ws")[0] == 0
    assert cli("update", str(tmp_path / "ws"))[0] == 2
    code, _, err = cli("cancel", str(tmp_path / "ws"), "--step", "nope", "-y")
    assert code == 2 and "nope" in err


def test_update_accepts_zero(spec: Path, tmp_path: Path) -> None:
    assert cli("run", str(spec), "--dry", "-o", "ws", "-t", "5")[0] == 0
    code, out, _ = cli("update", str(tmp_path / "ws"), "--throttle", "0", "--rlimit", "0")
    assert code == 0 and "throttle=0" in out and "rlimit=0" in out


def test_background_run_then_cancel(spec: Path, tmp_path: Path) -> None:
    spec.write_text(SPEC.replace("echo hello_$(N) >> $(SPECROOT)/count.txt", "sleep 30; echo $(N)"))
    code, out, _ = cli("run", str(spec), "-o", "ws", "-y")
    assert code == 0 and "background" in out
    root = tmp_path / "ws"
    deadline = time.monotonic() + 20
    while engine_holder(root) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = engine_holder(root)["pid"]  # type: ignore[index]
    code, _, _ = cli("cancel", str(root), "-y")
    assert code == 0
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    data = json.loads(cli("status", str(root), "--json")[1])
    assert {d["state"] for d in data} == {"CANCELLED"}
