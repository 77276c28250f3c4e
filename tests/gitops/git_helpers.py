"""Helpers for tests on real git repositories made in tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import git


def make_repo(path: Path, *, bare: bool = False, branch: str = "main") -> git.Repo:
    repo = git.Repo.init(path, bare=bare, initial_branch=branch)
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test User")
        cw.set_value("user", "email", "test@example.com")
    return repo


def commit(repo: git.Repo, files: dict[str, str | None], message: str = "change") -> str:
    """Write (or, for None, delete) files in the work tree and commit them; the new SHA."""
    root = Path(repo.working_tree_dir or "")
    for rel, text in files.items():
        path = root / rel
        if text is None:
            repo.index.remove([rel], working_tree=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        repo.index.add([rel])
    return repo.index.commit(message).hexsha


def spec(name: str, *, env: str = "", cmd: str = "echo hi", extra: str = "") -> str:
    """A small valid spec; `env` is the indented body of the env: block."""
    env_block = f"env:\n{env}\n" if env else ""
    return (
        f"description:\n  name: {name}\n  description: a test study\n"
        f"{env_block}"
        f"study:\n  - name: step\n    description: one step\n    run:\n      cmd: {cmd}\n"
        f"{extra}"
    )


# A three-step sweep whose steps count their runs in files next to the specs directory, so
# "ran once" and "reran only what changed" are counted (tests of apply and of watch share it).
SWEEP = """\
description: {name: sweep, description: d}
study:
  - name: a
    description: first
    run: {cmd: "echo $(N) >> $(SPECROOT)/../runs_a; echo $(N) > a.txt"}
  - name: b
    description: second
    run: {cmd: "echo $(N) >> $(SPECROOT)/../runs_b; cat $(a.workspace)/a.txt", depends: [a]}
  - name: c
    description: funnel
    run: {cmd: "echo c >> $(SPECROOT)/../runs_c", depends: [b_*]}
global.parameters:
  N: {values: [1, 2, 3], label: "N.%%"}
"""


def rc(repo: Path, *args: str, timeout: float = 170) -> subprocess.CompletedProcess[str]:
    """`reconciler ARGS` run in `repo`, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], cwd=repo, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def runs(repo: Path, step: str) -> list[str]:
    """What the counting sweep's `step` wrote to runs_<step> (one word a run)."""
    f = repo / f"runs_{step}"
    return f.read_text().split() if f.exists() else []
