"""Real git repositories in tmp_path: a specs repo, a dependency repo, bare remotes."""

from __future__ import annotations

from pathlib import Path

import git
import pytest
from git_helpers import commit, make_repo


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No user or system git config leaks into the tests (identity comes from repo config)."""
    empty = tmp_path_factory.mktemp("gitconfig") / "config"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("RECONCILER_SECRETS", raising=False)
    for var in ("NAME", "EMAIL"):
        for who in ("AUTHOR", "COMMITTER"):
            monkeypatch.delenv(f"GIT_{who}_{var}", raising=False)


@pytest.fixture
def specs_repo(tmp_path: Path) -> git.Repo:
    return make_repo(tmp_path / "specs-repo")


@pytest.fixture
def dep_remote(tmp_path: Path) -> tuple[git.Repo, str]:
    """A dependency: a work repo whose commits are pushed to a bare repo; (work, file URL)."""
    bare = make_repo(tmp_path / "dep.git", bare=True)
    work = make_repo(tmp_path / "dep-work")
    commit(work, {"README": "v1\n"}, "v1")
    work.create_remote("origin", bare.git_dir)
    work.git.push("origin", "main")
    return work, Path(bare.git_dir).as_uri()
