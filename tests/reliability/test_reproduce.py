"""Issue #14, reproduce from any clone: a fresh clone with the notes fetched reproduces a run,
a dependency that cannot be fetched is named and leaves nothing behind (so the retry works),
and a shallow clone says which revision is missing instead of a traceback.

The setup is what a team does: one clone applies and pushes the commit and its notes to a
shared bare repository; someone else clones that, fetches the notes, and reproduces.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from shared_repo import commit, dependency_remote, git, git_env, make_repo, reconciler

pytestmark = pytest.mark.timeout(300)  # a hang guard

NOTES = "refs/notes/*:refs/notes/*"


def _spec(dep_url: str, greeting: str) -> str:
    return (
        "description: {name: repro, description: reproduce me}\n"
        "env:\n  dependencies:\n    git:\n"
        # inside the output directory: a failed reproduce must not leave it half made
        f"      - {{name: LIB, path: $(OUTPUT_PATH)/deps, url: '{dep_url}'}}\n"
        "study:\n  - name: use\n    description: d\n"
        f"    run: {{cmd: 'cat $(LIB)/README; echo {greeting}'}}\n"
    )


@pytest.fixture
def team(tmp_path: Path) -> dict[str, object]:
    """origin.git (shared), lib.git (a dependency), and two applied commits with their notes
    pushed to origin."""
    env = git_env(tmp_path / "home")
    lib, lib_url = dependency_remote(tmp_path, "lib")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(origin), env=env)
    work = make_repo(tmp_path / "work")
    old = commit(work, {"specs/repro.yaml": _spec(lib_url, "hello")}, "first")
    assert reconciler("apply", "--repo", tmp_path / "work", "--wait", cwd=tmp_path,
                      env=env).code == 0  # fmt: skip
    new = commit(work, {"specs/repro.yaml": _spec(lib_url, "again")}, "second")
    assert reconciler("apply", "--repo", tmp_path / "work", "--wait", cwd=tmp_path,
                      env=env).code == 0  # fmt: skip
    work.create_remote("origin", str(origin))
    git(tmp_path / "work", "push", "--quiet", "origin", "main", env=env)
    git(tmp_path / "work", "push", "--quiet", "origin", "refs/notes/reconciler", env=env)
    return {"env": env, "origin": origin, "lib": lib, "old": old, "new": new}


def _clone(tmp_path: Path, team: dict[str, object], name: str, *args: str) -> Path:
    env = team["env"]
    dest = tmp_path / name
    git(tmp_path, "clone", "--quiet", *args, Path(str(team["origin"])).as_uri(), str(dest),
        env=env)  # type: ignore[arg-type]  # fmt: skip
    git(dest, "fetch", "--quiet", "origin", NOTES, env=env)  # type: ignore[arg-type]
    return dest


def test_a_fresh_clone_reproduces(tmp_path: Path, team, figures) -> None:
    figures.shared("6 reproduce", "fresh clone")
    clone = _clone(tmp_path, team, "clone")
    assert not (clone / ".reconciler").exists()  # no cache, no studies: a stranger's clone
    out = tmp_path / "out"
    r = reconciler("reproduce", team["old"], "-o", out, "--repo", clone, cwd=tmp_path,
                   env=team["env"])  # fmt: skip
    assert r.code == 0, r.both
    assert "1 of 1 fingerprints identical" in r.out and "1 FINISHED" in r.out
    assert "lib v1" in next(out.rglob("use*.out")).read_text()
    assert git(clone, "status", "--porcelain", env=team["env"]) == ""  # the cache is excluded
    figures.shared_ok("6 reproduce", "fresh clone")


def test_an_unreachable_dependency_is_named_and_leaves_nothing(tmp_path: Path, team, figures):
    figures.shared("6 reproduce", "dependency gone, then back")
    clone = _clone(tmp_path, team, "clone")
    lib = Path(str(team["lib"]))
    hidden = lib.with_name("lib-moved.git")
    lib.rename(hidden)  # the dependency's server is down
    out = tmp_path / "out"
    args = ("reproduce", team["new"], "-o", out, "--repo", clone)
    r = reconciler(*args, cwd=tmp_path, env=team["env"])
    assert r.code == 2 and "Traceback" not in r.both, r.both
    assert "git dependency 'LIB'" in r.err
    assert not out.exists()  # nothing half made...
    hidden.rename(lib)
    again = reconciler(*args, cwd=tmp_path, env=team["env"])
    assert again.code == 0, again.both  # ...so the same command works once the server is back
    figures.shared_ok("6 reproduce", "dependency gone, then back")


def test_a_rewritten_dependency_history_is_named(tmp_path: Path, team, figures) -> None:
    figures.shared("6 reproduce", "recorded dependency commit gone")
    lib = Path(str(team["lib"]))
    shutil.rmtree(lib)  # the dependency's history was rewritten: the recorded commit is gone
    _, _ = dependency_remote(tmp_path / "rewritten", "lib")
    shutil.copytree(tmp_path / "rewritten" / "lib.git", lib)
    clone = _clone(tmp_path, team, "clone")
    out = tmp_path / "out"
    r = reconciler("reproduce", team["new"], "-o", out, "--repo", clone, cwd=tmp_path,
                   env=team["env"])  # fmt: skip
    assert r.code == 2 and "Traceback" not in r.both, r.both
    assert "git dependency 'LIB'" in r.err and "recorded commit" in r.err
    assert not out.exists()
    figures.shared_ok("6 reproduce", "recorded dependency commit gone")


@pytest.mark.parametrize(
    "args",
    [("plan", "--rev", "HEAD~1"), ("plan", "--against", "HEAD~1"), ("plan", "--rev", "OLD"),
     ("reproduce", "HEAD~1", "-o", "OUT"), ("reproduce", "OLD", "-o", "OUT")],
    ids=["plan --rev HEAD~1", "plan --against HEAD~1", "plan --rev SHA", "reproduce HEAD~1",
         "reproduce SHA"],
)  # fmt: skip
def test_a_shallow_clone_names_the_missing_revision(
    tmp_path: Path, team, figures, args: tuple[str, ...]
) -> None:
    case = "shallow: " + " ".join(args)
    figures.shared("6 reproduce", case)
    clone = _clone(tmp_path, team, "shallow", "--depth", "1")
    out = tmp_path / "out"
    argv = [str(team["old"]) if a == "OLD" else str(out) if a == "OUT" else a for a in args]
    r = reconciler(*argv, "--repo", clone, cwd=tmp_path, env=team["env"])
    assert r.code == 2 and "Traceback" not in r.both, r.both
    assert "is not a commit of" in r.err and "this clone is shallow" in r.err
    assert not out.exists()
    figures.shared_ok("6 reproduce", case)
