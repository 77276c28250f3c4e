"""Script and output file names as Maestro 1.2.1 writes them, sanitised as directories are."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.cli.app import app
from reconciler.cli.maestro import normalize_maestro_argv
from reconciler.record.outputs import output_files
from reconciler.record.store import Store

pytestmark = pytest.mark.timeout(60)

SAMPLES = Path(__file__).resolve().parents[1] / "conformance" / "maestro" / "samples"
SPACED = """\
description: {name: bye, description: d}
study:
  - name: say-bye
    description: d
    run:
      cmd: echo "$(FAREWELL)"; echo to-err >&2
      restart: echo again
global.parameters:
  FAREWELL: {values: ["See you later…", "Adiós"], label: FAREWELL.%%}
"""


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, normalize_maestro_argv(list(args)))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_local_names_are_sanitised_like_the_directory(here: Path) -> None:
    (here / "s.yaml").write_text(SPACED)
    code, out, err = cli("run", "s.yaml", "-fg", "-y", "-o", "ws")
    assert code == 0, out + err
    folder = here / "ws" / "say-bye" / "FAREWELL.See_you_later"
    store = Store.open(here / "ws")
    try:
        row = next(r for r in store.instances() if r.workspace.endswith("See_you_later"))
    finally:
        store.close()
    assert row.name == "say-bye_FAREWELL.See you later…"  # the instance keeps its name
    files = {p.name for p in folder.iterdir()}
    stem = "say-bye_FAREWELL.See_you_later"
    assert files == {
        f"{stem}.sh",
        f"{stem}.restart.sh",
        f"{stem}.{row.job_id}.out",
        f"{stem}.{row.job_id}.err",
        f"{stem}.exit",
    }
    out, err = output_files(here / "ws", row)
    assert out.read_text() == "See you later…\n" and err.read_text() == "to-err\n"
    with open(here / "ws" / "status.csv") as f:
        names = {r["Step Name"] for r in csv.DictReader(f)}
    assert "say-bye_FAREWELL.See you later…" in names  # status.csv: Maestro's step names
    assert (here / "ws" / "say-bye" / "FAREWELL.Adis" / "say-bye_FAREWELL.Adis.sh").is_file()


def test_a_slurm_study_names_every_script_slurm_sh(here: Path) -> None:
    # --dry: scripts written, nothing submitted (no Slurm account or partition needed).
    spec = SAMPLES / "hello_world" / "hello_bye_parameterized_slurm.yaml"
    code, out, err = cli("run", str(spec), "--dry", "-o", "ws")
    assert code == 0, out + err
    scripts = sorted(
        str(p.relative_to(here / "ws"))
        for p in (here / "ws").rglob("*.sh")
        if ".reconciler" not in p.parts
    )
    assert len(scripts) == 8 and all(s.endswith(".slurm.sh") for s in scripts)
    hello = here / "ws" / "hello_world" / "GREETING.Hello.NAME.Pam"
    text = (hello / "hello_world_GREETING.Hello.NAME.Pam.slurm.sh").read_text()
    assert text.startswith("#!/bin/bash\n#SBATCH --partition=pdebug\n")
    assert 'srun -n 1 echo "Hello, Pam!"' in text  # Maestro's: no -N, no -c
    bye = here / "ws" / "bye_world" / "GREETING.Hello.NAME.Pam"
    assert (
        'srun -n 1 echo "Bye, World!"'
        in (bye / "bye_world_GREETING.Hello.NAME.Pam.slurm.sh").read_text()
    )


def test_a_step_that_runs_here_in_a_slurm_study_is_named_slurm_sh_too(here: Path) -> None:
    (here / "s.yaml").write_text(
        "description: {name: mixed, description: d}\n"
        "batch: {type: slurm, host: h, bank: b, queue: q}\n"
        "study:\n"
        "  - name: prep\n    description: runs on this host\n"
        "    run: {cmd: echo prep, restart: echo again}\n"
    )
    assert cli("run", "s.yaml", "--dry", "-o", "ws")[0] == 0
    prep = here / "ws" / "prep"
    assert (prep / "prep.slurm.sh").read_text() == "#!/bin/bash\n\necho prep\n"
    assert (prep / "prep.restart.slurm.sh").read_text() == "#!/bin/bash\n\necho again\n"


def test_a_workspace_with_the_old_script_names_still_runs(here: Path) -> None:
    """Scripts written by an earlier version (`<raw instance>.sh`) are found on resume."""
    (here / "s.yaml").write_text(SPACED)
    assert cli("run", "s.yaml", "--dry", "-o", "ws")[0] == 0
    folder = here / "ws" / "say-bye" / "FAREWELL.See_you_later"
    (folder / "say-bye_FAREWELL.See_you_later.sh").rename(
        folder / "say-bye_FAREWELL.See you later….sh"
    )
    code, out, err = cli("resume", "ws", "--fg")
    assert code == 0, out + err
    assert "See you later…" in (next(folder.glob("*.out"))).read_text()
