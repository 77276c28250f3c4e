"""Checkouts: one per study, at exactly the pinned SHA, in `<path>/<name>` as Maestro clones."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from reconciler.deps import DependencyError
from reconciler.deps.gitenv import git_cmd, harden, stderr_of
from reconciler.deps.paths import dependency_dir
from reconciler.deps.pins import cache_path, git_dependencies, rev_parse
from reconciler.spec import Study

MANAGED_KEY = "reconciler.managed"  # set in the config of every checkout we create
_CHECKOUT_REFSPECS = (
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
    "+refs/reconciler/*:refs/reconciler/*",
)


def _is_managed(dest: Path) -> git.Repo | None:
    try:
        repo = harden(git.Repo(dest))
    except (InvalidGitRepositoryError, NoSuchPathError):
        return None
    if Path(repo.working_tree_dir or "").resolve() != dest.resolve():
        return None  # dest is a plain directory inside some other repository
    with repo.config_reader("repository") as cr:
        managed = cr.get_value("reconciler", "managed", default=False)
    return repo if managed else None


def checkout(cache: Path, sha: str, dest: Path, *, url: str | None = None) -> Path:
    """Make `dest` a checkout of `cache` at exactly `sha` (detached). Idempotent.

    A `dest` that does not exist or is empty is filled; one we made earlier is moved to `sha`
    (untracked files such as build outputs stay; local edits to tracked files are an error);
    anything else is left alone and is an error (Maestro's clone fails there too). Nothing here
    deletes a directory it did not create. `url` becomes the checkout's `origin`, so a person
    can fetch from the real remote.
    """
    dest = Path(dest)
    repo = _is_managed(dest) if dest.exists() else None
    if repo is None:
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise DependencyError(
                f"{dest} exists and is not a checkout made by reconciler; it is left as it is. "
                "Move it away or point the dependency's path elsewhere."
            )
        repo = _clone_into(Path(cache), dest, url)
    # No index yet: our clone whose first checkout has not happened (or failed). Its HEAD is
    # the cache's default branch and every file would read as deleted, so skip both checks.
    fresh = not (Path(repo.git_dir) / "index").exists()
    if not fresh:
        if repo.head.is_valid() and repo.head.commit.hexsha == sha:
            return dest
        if repo.is_dirty(untracked_files=False):
            raise DependencyError(
                f"{dest} has local changes to tracked files; reconciler will not overwrite them "
                f"to move it to {sha[:12]}. Commit or discard them, or remove the checkout."
            )
    try:
        if rev_parse(dest, sha) is None:
            # The cache holds `sha` on one of its refs (that is how it was resolved).
            repo.git.fetch("--quiet", "--force", "--", str(cache), *_CHECKOUT_REFSPECS)
        repo.git.checkout("--quiet", "--detach", sha)
    except GitCommandError as e:
        raise DependencyError(f"cannot check out {sha[:12]} in {dest}: {stderr_of(e)}") from e
    if repo.head.commit.hexsha != sha:
        raise DependencyError(f"{dest} did not end up at {sha[:12]}; it is left as it is.")
    return dest


def _clone_into(cache: Path, dest: Path, url: str | None) -> git.Repo:
    existed = dest.exists()  # an empty directory someone made: fill it, never remove it
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.reconciler-", dir=dest.parent))
    try:
        # A local clone hard-links the cache's objects: cheap, and independent of the cache.
        git_cmd().clone("--quiet", "--no-checkout", "--", str(cache), str(tmp))
        if existed:
            for child in tmp.iterdir():
                os.rename(child, dest / child.name)
        else:
            os.rename(tmp, dest)
    except GitCommandError as e:
        raise DependencyError(f"cannot make a checkout at {dest}: {stderr_of(e)}") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    repo = harden(git.Repo(dest))
    with repo.config_writer("repository") as cw:
        cw.set_value("reconciler", "managed", "true")
        if url:
            cw.set_value('remote "origin"', "url", url)
    return repo


@dataclass(frozen=True, slots=True)
class Acquired:
    """A git dependency as applied: where it came from, the pin, and its checkout."""

    name: str
    url: str
    ref: str | None  # the hash, tag or branch the spec names; None for the default branch
    sha: str
    path: Path


def acquire_git_dependencies(
    study: Study,
    shas: Mapping[str, str],
    cache_dir: Path,
    locations: Mapping[str, str],
    base: Path | None = None,
) -> dict[str, Acquired]:
    """Check out every git dependency of `study` at its pinned SHA (see `checkout`)."""
    out: dict[str, Acquired] = {}
    for dep in git_dependencies(study):
        sha = shas[dep.name]
        dest = dependency_dir(study, dep, locations, base)
        checkout(cache_path(Path(cache_dir), dep.url), sha, dest, url=dep.url)
        ref = dep.hash or dep.tag or dep.branch
        out[dep.name] = Acquired(dep.name, dep.url, ref, sha, dest)
    return out


__all__ = [
    "MANAGED_KEY",
    "Acquired",
    "acquire_git_dependencies",
    "checkout",
]
