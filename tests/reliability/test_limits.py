"""Issue #14, limits before work: a spec over a cap is refused before the work it asks for.

- the instance count comes from the parameters, before expansion: a 350 KB spec asking for ten
  million instances (or billions of dependencies) is refused at FILE:LINE, and `--max-instances`
  (or RECONCILER_MAX_INSTANCES) moves the cap in every command that reads specs;
- the YAML caps hold while parsing: a 15 MiB flat list and a 100,000-level nesting are refused
  without building the document (the nesting used to crash the C parser: SIGSEGV);
- a path that is not a regular file (a FIFO, /dev/zero, a directory) is refused before a byte
  is read, by every command that reads a spec.

Memory is checked (peak RSS of the process), never time: the hang guard is the timeout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from shared_repo import commit, git_env, make_repo, reconciler, spec

pytestmark = pytest.mark.timeout(300)  # a hang guard, not a performance budget

GIB = 1024  # MB


def _sweep(values: int, steps: int, *, funnel: bool = False) -> str:
    """`steps` steps that each use P (`values` values): values × steps instances."""
    vals = ", ".join(str(i) for i in range(values))
    lines = ["description: {name: huge, description: asks for many instances}", "study:"]
    for s in range(steps):
        lines.append(f"  - {{name: s{s}, description: d, run: {{cmd: 'echo $(P)'}}}}")
    if funnel:  # swept itself, and waiting on every instance of s0: values² dependencies
        lines += ["  - name: all", "    description: d", "    run:",
                  "      cmd: 'echo $(P)'", "      depends: [s0_*]"]  # fmt: skip
    lines += ["global.parameters:", f"  P: {{values: [{vals}], label: 'P.%%'}}"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return git_env(tmp_path / "home")


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_ten_million_instances_refused_before_expansion(tmp_path: Path, env, figures) -> None:
    figures.shared("4 limits", "10^7 instances (validate)")
    text = _sweep(50_000, 200)
    f = tmp_path / "huge.yaml"
    f.write_text(text)
    assert 300_000 < f.stat().st_size < 400_000
    r = reconciler("validate", f, cwd=tmp_path, env=env)
    assert r.clean_error, r.both
    line = _line_of(text, "name: s0,")
    assert f"{f}:{line}:" in r.err
    assert "10,000,000 instances, more than the limit of 2,000,000" in r.err
    assert "--max-instances" in r.err
    assert r.rss_mb < GIB, f"peak memory {r.rss_mb:.0f} MB"  # 6.4 GB when it expanded
    figures.shared_ok("4 limits", "10^7 instances (validate)")


def test_a_swept_funnel_of_a_big_sweep_is_refused(tmp_path: Path, env, figures) -> None:
    figures.shared("4 limits", "2.5·10^9 dependencies")
    text = _sweep(50_000, 1, funnel=True)
    f = tmp_path / "edges.yaml"
    f.write_text(text)
    r = reconciler("expand", "--json", f, cwd=tmp_path, env=env)
    assert r.clean_error, r.both
    assert r.out == ""
    assert "2,500,000,000" in r.err and "step 'all'" in r.err
    assert f"{f}:{_line_of(text, 'depends:')}:" in r.err
    assert r.rss_mb < GIB
    figures.shared_ok("4 limits", "2.5·10^9 dependencies")


def test_the_limit_moves_with_the_option_and_the_environment(tmp_path: Path, env, figures):
    figures.shared("4 limits", "--max-instances / RECONCILER_MAX_INSTANCES")
    f = tmp_path / "mid.yaml"
    f.write_text(_sweep(1000, 3))  # 3,000 instances
    low = reconciler("validate", "--max-instances", "2999", f, cwd=tmp_path, env=env)
    assert low.clean_error and "3,000 instances, more than the limit of 2,999" in low.err
    ok = reconciler("validate", "--max-instances", "3000", f, cwd=tmp_path, env=env)
    assert ok.code == 0, ok.both
    assert "3,000 instances" in ok.out
    by_env = reconciler("expand", f, cwd=tmp_path, env={**env, "RECONCILER_MAX_INSTANCES": "10"})
    assert by_env.clean_error and "the limit of 10 " in by_env.err
    bad = reconciler("validate", f, cwd=tmp_path, env={**env, "RECONCILER_MAX_INSTANCES": "lots"})
    assert bad.code == 2 and "Traceback" not in bad.both
    figures.shared_ok("4 limits", "--max-instances / RECONCILER_MAX_INSTANCES")


def test_run_refuses_before_creating_anything(tmp_path: Path, env, figures) -> None:
    figures.shared("4 limits", "run over the limit")
    f = tmp_path / "mid.yaml"
    f.write_text(_sweep(1000, 3))
    out = tmp_path / "ws"
    r = reconciler("run", "-y", "--max-instances", "100", "-o", out, f, cwd=tmp_path, env=env)
    assert r.clean_error, r.both
    assert "more than the limit of 100" in r.err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "mid.yaml"]
    figures.shared_ok("4 limits", "run over the limit")


def test_gitops_commands_take_the_same_limit(tmp_path: Path, env, figures) -> None:
    """plan, apply and watch read specs from git: over the limit is an invalid spec there (the
    study is not applied), and --max-instances raises the limit for them too."""
    figures.shared("4 limits", "plan/apply/watch over the limit")
    repo = make_repo(tmp_path / "repo")
    commit(repo, {"specs/mid.yaml": _sweep(1000, 3), "specs/small.yaml": spec("small")})
    root = tmp_path / "studies"
    common = ("--repo", repo.working_tree_dir, "--root", root)
    plan = reconciler("plan", *common, "--max-instances", "100", cwd=tmp_path, env=env)
    assert plan.code == 2 and "Traceback" not in plan.both
    assert "specs/mid.yaml:3:" in plan.both and "more than the limit of 100" in plan.both
    apply = reconciler("apply", *common, "--max-instances", "100", cwd=tmp_path, env=env)
    assert apply.code == 2 and "Traceback" not in apply.both
    assert re.search(r"huge.*not applied", apply.both)
    assert not (root / "huge").exists()
    watch = reconciler("watch", *common, "--once", "--max-instances", "100", cwd=tmp_path,
                       env=env)  # fmt: skip
    assert watch.code == 2 and "Traceback" not in watch.both
    assert not (root / "huge").exists()
    raised = reconciler("plan", *common, "--max-instances", "3000", cwd=tmp_path, env=env)
    assert raised.code == 1, raised.both  # changes to apply: both studies are new
    assert "s2_P.999" in raised.out and "invalid" not in raised.both
    figures.shared_ok("4 limits", "plan/apply/watch over the limit")


def test_a_15_mib_flat_list_is_refused_while_parsing(tmp_path: Path, env, figures) -> None:
    figures.shared("4 limits", "15 MiB flat list")
    f = tmp_path / "flat.yaml"
    f.write_text("- 1\n" * (15 * 1024 * 1024 // 4))
    r = reconciler("validate", f, cwd=tmp_path, env=env)
    assert r.clean_error, r.both
    assert f"{f}:1:1: the document has more than 1,000,000 values" in r.err
    assert r.rss_mb < GIB, f"peak memory {r.rss_mb:.0f} MB"  # 5.8 GB when it was built first
    figures.shared_ok("4 limits", "15 MiB flat list")


def test_deep_nesting_is_refused_not_a_crash(tmp_path: Path, env, figures) -> None:
    figures.shared("4 limits", "100,000 levels of [")
    f = tmp_path / "deep.yaml"
    f.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    r = reconciler("validate", f, cwd=tmp_path, env=env)
    assert r.code == 2, f"exit {r.code} (-11 is the C parser's stack overflow)"
    assert "nested more than 100 levels deep" in r.err
    figures.shared_ok("4 limits", "100,000 levels of [")


@pytest.mark.parametrize("command", ["validate", "expand", "graph", "run"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_a_path_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, env, figures, command: str, kind: str
) -> None:
    case = f"{command} {kind}"
    figures.shared("4 limits", case)
    if kind == "fifo":
        path = tmp_path / "pipe.yaml"
        os.mkfifo(path)  # nobody ever writes: reading it would wait forever
        says = "it is a FIFO (named pipe), not a regular file"
    elif kind == "dev-zero":
        path = Path("/dev/zero")  # reading it never ends
        says = "it is a device, not a regular file"
    else:
        path = tmp_path / "specs.yaml"
        path.mkdir()
        says = "it is a directory, not a regular file"
    args = [command, path] if command != "run" else [command, "-y", "-o", tmp_path / "ws", path]
    r = reconciler(*args, cwd=tmp_path, env=env, timeout=60)
    assert r.clean_error, r.both
    if command == "validate" and kind == "directory":  # validate DIR reads the specs in it
        assert f"no spec files (*.yaml, *.yml) found under {path}" in r.err
    else:
        assert f"{path}: cannot read the spec: {says}" in r.err
    assert not (tmp_path / "ws").exists()
    figures.shared_ok("4 limits", case)


def test_worktree_mode_refuses_a_fifo_in_the_specs_directory(tmp_path: Path, env, figures):
    figures.shared("4 limits", "plan --worktree with a FIFO spec")
    repo = make_repo(tmp_path / "repo")
    commit(repo, {"specs/ok.yaml": spec("ok")})
    os.mkfifo(tmp_path / "repo" / "specs" / "pipe.yaml")
    r = reconciler("plan", "--repo", tmp_path / "repo", "--worktree", cwd=tmp_path, env=env,
                   timeout=60)  # fmt: skip
    assert r.code == 2 and "Traceback" not in r.both
    assert "specs/pipe.yaml: cannot read the spec: it is a FIFO" in r.both
    assert re.search(r"ok.*(create|nothing)", r.both, re.S)  # the other spec is planned
    figures.shared_ok("4 limits", "plan --worktree with a FIFO spec")
