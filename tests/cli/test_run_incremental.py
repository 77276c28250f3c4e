"""`run SPEC -o DIR` on an existing workspace of the same study: an unchanged spec resumes; a
changed one shows the plan, asks (or -y), and converges as `apply` does — only changed instances
and their descendants rerun, their old outputs archived."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.cli.app import app
from reconciler.cli.maestro import normalize_maestro_argv
from reconciler.engine import api
from reconciler.record.store import Store

pytestmark = pytest.mark.timeout(90)
REPO = Path(__file__).resolve().parents[2]

V1 = """\
description: {name: inc, description: incremental run}
study:
  - name: gen
    description: d
    run: {cmd: "echo gen >> $(SPECROOT)/log.txt; echo g > g.txt"}
  - name: sim
    description: d
    run: {cmd: "echo sim_$(N) >> $(SPECROOT)/log.txt; echo $(N) > n.txt", depends: [gen]}
  - name: post
    description: d
    run: {cmd: "echo post >> $(SPECROOT)/log.txt", depends: [sim_*]}
global.parameters:
  N: {values: [1, 2], label: N.%%}
"""


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, normalize_maestro_argv(list(args)))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(V1)
    assert cli("run", "study.yaml", "-fg", "-y", "-o", "ws")[0] == 0
    return tmp_path


def log(here: Path) -> list[str]:
    return (here / "log.txt").read_text().splitlines()


def record(root: Path) -> tuple[str, dict[str, tuple[str, str | None]]]:
    store = Store.open(root)
    try:
        rows = {r.name: (str(r.state), r.job_id) for r in store.instances()}
        return store.study()["spec_text"], rows
    finally:
        store.close()


def edit(here: Path, old: str, new: str) -> None:
    spec = here / "study.yaml"
    spec.write_text(spec.read_text().replace(old, new))


def test_an_unchanged_spec_resumes(here: Path) -> None:
    before = record(here / "ws")
    code, out, _ = cli("run", "study.yaml", "-fg", "-o", "ws")
    assert code == 0 and "Resuming the existing workspace" in out
    assert record(here / "ws") == before
    assert sorted(log(here)) == ["gen", "post", "sim_1", "sim_2"]  # nothing ran again


def test_a_changed_spec_without_a_terminal_needs_y(here: Path) -> None:
    before = record(here / "ws")
    edit(here, "echo post", "echo POST")
    code, out, err = cli("run", "study.yaml", "-fg", "-o", "ws")
    assert code == 2
    assert "rerun" in out and "post" in out and "run.cmd of step 'post' changed" in out
    assert "pass -y" in err and "nothing was changed" in err
    assert record(here / "ws") == before and len(log(here)) == 4


def test_only_changed_instances_and_their_descendants_rerun(here: Path) -> None:
    edit(here, "echo sim_$(N)", "echo SIM_$(N)")
    code, out, err = cli("run", "study.yaml", "-fg", "-y", "-o", "ws")
    assert code == 0, out + err
    flat = " ".join(out.split())
    assert "run.cmd of step 'sim' changed" in flat and "upstream 'sim' reran" in flat
    assert "gen" not in [line.split()[1] for line in out.splitlines() if "│ rerun" in line]
    assert sorted(log(here)[4 : 3 + 3]) == ["SIM_1", "SIM_2"] and log(here)[6:] == ["post"]
    spec_text, rows = record(here / "ws")
    assert spec_text == (here / "study.yaml").read_text()
    assert {state for state, _ in rows.values()} == {"FINISHED"}
    # The old outputs of what reran were moved to the history, not deleted.
    history = next((here / "ws" / ".reconciler" / "history").iterdir())
    assert (history / "sim" / "N.1" / "n.txt").read_text() == "1\n"
    assert (history / "post").is_dir() and not (history / "gen").exists()
    assert (here / "ws" / "gen" / "g.txt").read_text() == "g\n"  # kept, not rerun


def test_a_new_parameter_value_creates_and_reruns_the_funnel(here: Path) -> None:
    edit(here, "values: [1, 2]", "values: [1, 2, 3]")
    code, out, err = cli("run", "study.yaml", "-fg", "-y", "-o", "ws")
    assert code == 0, out + err
    assert "create" in out and "parameter N gained value 3" in " ".join(out.split())
    assert sorted(log(here)[4:]) == ["post", "sim_3"]


def test_dry_shows_the_plan_and_changes_nothing(here: Path) -> None:
    before = record(here / "ws")
    edit(here, "echo post", "echo POST")
    code, out, _ = cli("run", "study.yaml", "--dry", "-o", "ws")
    assert code == 0 and "rerun" in out and "nothing was changed" in out
    assert record(here / "ws") == before and len(log(here)) == 4


def _at_a_terminal(here: Path, answer: bytes) -> subprocess.CompletedProcess[str]:
    """`run` with a terminal on stdin, the answer typed ahead."""
    leader, follower = pty.openpty()
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "run", "study.yaml", "-fg", "-o", "ws"],
        stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=here, env=env,
        text=True,
    )  # fmt: skip
    os.close(follower)
    os.write(leader, answer)
    try:
        out, err = proc.communicate(timeout=80)
    finally:
        os.close(leader)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_at_a_terminal_it_asks(here: Path) -> None:
    edit(here, "echo post", "echo POST")
    before = record(here / "ws")
    no = _at_a_terminal(here, b"n\n")
    assert no.returncode == 0 and "Apply this plan" in no.stdout
    assert "Nothing was changed" in no.stdout and record(here / "ws") == before
    yes = _at_a_terminal(here, b"y\n")
    assert yes.returncode == 0, yes.stdout + yes.stderr
    assert log(here)[4:] == ["POST"]


def test_a_running_study_is_converged_and_nothing_runs_twice(here: Path) -> None:
    gate = here / "go"
    wait = f"until [ -e {gate} ]; do sleep 0.05; done"
    slow = V1.replace("echo $(N) > n.txt", f"echo $(N) > n.txt; {wait}")
    (here / "study.yaml").write_text(slow)
    code, _, err = cli("run", "study.yaml", "-y", "-o", "ws2")  # in the background
    assert code == 0, err
    root = here / "ws2"
    deadline = time.monotonic() + 30
    while not {"sim_1", "sim_2"} <= set(log(here)[4:]):  # both sims of ws2 are running
        assert time.monotonic() < deadline, "the sims did not start"
        time.sleep(0.05)
    edit(here, "echo post", "echo POST")  # downstream of the running sims only
    first = api.engine_holder(root)
    assert first is not None
    code, out, err = cli("run", "study.yaml", "-y", "-o", "ws2")  # stops it, converges, relaunches
    assert code == 0, out + err
    assert "run.cmd of step 'post' changed" in " ".join(out.split())
    gate.touch()  # the sims, never stopped, end now
    while True:
        holder = api.engine_holder(root)
        _, rows = record(root)
        if holder is None and {state for state, _ in rows.values()} == {"FINISHED"}:
            break
        assert time.monotonic() < deadline + 60, f"the study did not end: {rows}"
        time.sleep(0.1)
    ran = log(here)[4:]  # what ws2 ran: each sim once, then the edited post
    assert sorted(ran[:3]) == ["gen", "sim_1", "sim_2"] and ran[3:] == ["POST"]
