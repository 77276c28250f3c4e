"""What the everyday-terminal tests share: specs that fail on purpose, and the CLI runner."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from reconciler.cli.app import app
from reconciler.cli.maestro import normalize_maestro_argv

# Long step names (they must wrap at 80 columns) and one instance that fails on purpose with
# two lines on stderr; its funnel is then BLOCKED.
FAILING = """\
description:
  name: mesh study
  description: a sweep where one size fails on purpose
study:
  - name: make-input
    description: writes the input of one size
    run:
      cmd: echo "size $(SIZE)" > input.txt
  - name: simulate-the-thing-at-this-size
    description: fails for SIZE 30
    run:
      cmd: |
        echo "simulating size $(SIZE)"
        if [ $(SIZE) -eq 30 ]; then echo "reading mesh" >&2; echo "mesh has 0 cells" >&2; exit 3; fi
        cat $(make-input.workspace)/input.txt
      depends: [make-input]
  - name: report
    description: funnel
    run:
      cmd: echo done
      depends: [simulate-the-thing-at-this-size_*]
global.parameters:
  SIZE:
    values: [10, 20, 30]
    label: SIZE.%%
"""
FAILED = "simulate-the-thing-at-this-size_SIZE.30"
STATES = ("INITIALIZED", "PENDING", "QUEUED", "RUNNING", "FINISHED", "FAILED", "TIMEDOUT",
          "CANCELLED", "HWFAILURE", "BLOCKED", "LOST")  # fmt: skip
ANSI = re.compile(r"\x1b\[")


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`reconciler ARGS` in this process (typer's runner), as a user types it."""
    result = CliRunner().invoke(app, normalize_maestro_argv(list(args)), env=env,
                                prog_name="reconciler")  # fmt: skip
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def run_failing(tmp: Path, name: str = "ws") -> tuple[Path, str]:
    """Run FAILING to its end (real local jobs); (workspace, what `run --fg` printed)."""
    spec = tmp / "mesh.yaml"
    spec.write_text(FAILING)
    code, out, err = cli("run", str(spec), "--fg", "-y", "-o", str(tmp / name))
    assert code == 2, out + err
    return tmp / name, out
