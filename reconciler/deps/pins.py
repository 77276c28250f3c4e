"""The cache (one bare repo per URL, shared by every study) and pinning a ref to a commit SHA."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from git.exc import GitCommandError

from reconciler.deps import DependencyError
from reconciler.deps.gitenv import check_url, git_cmd, redact_url, stderr_of
from reconciler.spec import Study
from reconciler.spec.model import GitDependency, Spec

_HEX = re.compile(r"^[0-9a-fA-F]{4,64}$")
_FETCH_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")


def default_cache_dir() -> Path:
    """`run`'s cache, shared by the studies of one user: $XDG_CACHE_HOME/reconciler/git (GitOps
    keeps one per repo of specs, under its `.reconciler/`)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reconciler" / "git"


def cache_path(cache_dir: Path, url: str) -> Path:
    """Where the bare cache of `url` lives: a directory named by a hash of the URL."""
    return Path(cache_dir) / hashlib.sha256(url.encode()).hexdigest()[:24]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer per cache: two studies fetching the same URL at once would race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def update_cache(cache_dir: Path, url: str, name: str = "") -> Path:
    """Clone `url` bare into its cache, or fetch every branch and tag if it is there."""
    check_url(url, name)
    dest = cache_path(cache_dir, url)
    what = f"git dependency '{name}'" if name else "git dependency"
    with _locked(dest.with_name(dest.name + ".lock")):
        if (dest / "HEAD").is_file():
            try:
                # --prune: a deleted branch must not resolve to its old SHA forever.
                git_cmd(dest).fetch("--quiet", "--prune", "--force", "--", url, *_FETCH_REFSPECS)
            except GitCommandError as e:
                raise DependencyError(
                    f"{what}: cannot fetch {redact_url(url)}: {stderr_of(e)}. Nothing of the "
                    "study was submitted."
                ) from e
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Clone next to the cache and rename: a failed clone never leaves a half-made cache.
        tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
        try:
            git_cmd().clone("--bare", "--quiet", "--", url, str(tmp))
            os.replace(tmp, dest)
        except GitCommandError as e:
            raise DependencyError(
                f"{what}: cannot clone {redact_url(url)}: {stderr_of(e)}. Check the URL and "
                "your access to it; nothing of the study was submitted."
            ) from e
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return dest  # `git config remote.origin.url` in it says which URL a hashed dir holds


def rev_parse(cache: Path, rev: str) -> str | None:
    try:
        return str(git_cmd(cache).rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")).strip()
    except GitCommandError:
        return None


def resolve_ref(cache: Path, dep: GitDependency) -> str:
    """The full commit SHA `dep` names in its cache: hash as is, else tag, branch or HEAD."""
    where = f"git dependency '{dep.name}' ({redact_url(dep.url)})"
    if dep.hash:
        if not _HEX.match(dep.hash):
            raise DependencyError(f"{where}: hash '{dep.hash}' is not a hexadecimal commit id.")
        sha = rev_parse(cache, dep.hash)
        if sha is None and len(dep.hash) == 40:
            sha = _fetch_commit(cache, dep.url, dep.hash)
        if sha is None or not sha.lower().startswith(dep.hash.lower()):
            raise DependencyError(
                f"{where}: commit {dep.hash} is not on any branch or tag of the remote (or is "
                "ambiguous). Pin a commit that a branch or tag contains."
            )
        return sha
    for kind, ref, qualified in (
        ("tag", dep.tag, f"refs/tags/{dep.tag}"),
        ("branch", dep.branch, f"refs/heads/{dep.branch}"),
    ):
        if ref:
            # Fully qualified names: a tag called like an option or a SHA cannot be misread.
            sha = rev_parse(cache, qualified)
            if sha is None:
                raise DependencyError(f"{where}: the remote has no {kind} named '{ref}'.")
            return sha
    sha = rev_parse(cache, "HEAD") or _follow_remote_head(cache, dep.url)
    if sha is None:
        raise DependencyError(
            f"{where}: the remote's default branch does not resolve (an empty repository?); "
            "name a branch, tag or hash."
        )
    return sha


def _fetch_commit(cache: Path, url: str, sha: str) -> str | None:
    """Fetch one commit by its full id (many servers serve a commit on no branch or tag when
    asked by id); a ref under refs/reconciler/pins keeps it from gc. Its SHA, or None."""
    with contextlib.suppress(GitCommandError):
        git_cmd(cache).fetch("--quiet", "--", url, f"{sha}:refs/reconciler/pins/{sha}")
    found = rev_parse(cache, sha)
    return found if found is not None and found.lower() == sha.lower() else None


def fetch_pinned(study: Study | Spec, shas: Mapping[str, str], cache_dir: Path) -> None:
    """Make sure the cache of every git dependency holds the commit `shas` pins it to, fetching
    it if needed (`reproduce` in a fresh clone, where no cache exists yet). Every URL is checked
    before any is fetched; a commit that cannot be had is a DependencyError naming its
    dependency. Nothing outside the caches is written."""
    deps = git_dependencies(study)
    for dep in deps:
        check_url(dep.url, dep.name)
    for dep in deps:
        sha = shas.get(dep.name)
        where = f"git dependency '{dep.name}' ({redact_url(dep.url)})"
        if not sha or not _HEX.match(sha):
            raise DependencyError(
                f"{where}: no commit is recorded for it, so it cannot be pinned as it was run."
            )
        cache = cache_path(Path(cache_dir), dep.url)
        if (cache / "HEAD").is_file() and rev_parse(cache, sha) == sha.lower():
            continue  # already here: a commit never changes
        cache = update_cache(Path(cache_dir), dep.url, dep.name)
        if rev_parse(cache, sha) != sha.lower() and _fetch_commit(cache, dep.url, sha) is None:
            raise DependencyError(
                f"{where}: the recorded commit {sha[:12]} is on no branch or tag of the remote "
                "and the remote does not serve it by id (rewritten history?), so the run "
                "cannot be reproduced with it."
            )


def _follow_remote_head(cache: Path, url: str) -> str | None:
    """The cache's HEAD names a branch the remote deleted (its default branch was renamed):
    ask the remote which branch HEAD is now, and point the cache at it."""
    try:
        out = str(git_cmd(cache).ls_remote("--symref", "--", url, "HEAD"))
    except GitCommandError:
        return None
    for line in out.splitlines():
        target, _, name = line.partition("\t")
        if target.startswith("ref: refs/heads/") and name == "HEAD":
            git_cmd(cache).symbolic_ref("HEAD", target.removeprefix("ref: "))
            return rev_parse(cache, "HEAD")
    return None


def git_dependencies(study: Study | Spec) -> list[GitDependency]:
    spec = study.spec if isinstance(study, Study) else study
    return list(spec.env.dependencies.git)


def resolve_git_dependencies(study: Study | Spec, cache_dir: Path) -> dict[str, str]:
    """Fetch every git dependency into its cache and pin it: {name: full commit SHA}.

    Every URL is checked before any is fetched, so a refused URL stops the study before any
    network traffic.
    """
    deps = git_dependencies(study)
    for dep in deps:
        check_url(dep.url, dep.name)
    shas: dict[str, str] = {}
    for dep in deps:
        cache = cache_path(Path(cache_dir), dep.url)
        if dep.hash and _HEX.match(dep.hash) and (cache / "HEAD").is_file():
            sha = rev_parse(cache, dep.hash)
            if sha and sha.lower().startswith(dep.hash.lower()):
                shas[dep.name] = sha  # a commit never moves: no need to ask the remote
                continue
        cache = update_cache(Path(cache_dir), dep.url, dep.name)
        shas[dep.name] = resolve_ref(cache, dep)
    return shas


__all__ = [
    "cache_path",
    "default_cache_dir",
    "fetch_pinned",
    "git_dependencies",
    "resolve_git_dependencies",
    "resolve_ref",
    "rev_parse",
    "update_cache",
]
