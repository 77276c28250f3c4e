"""Env dependencies: git dependencies cloned and pinned to a SHA, path dependencies checked.

A git dependency is fetched into a cache (one bare repo per URL, shared by every study), its
`hash`, `tag` or `branch` (or the remote's default branch) is resolved to a full commit SHA at
apply time, and the study gets a checkout at exactly that SHA in its dependency directory
(`<path>/<name>`, as Maestro places it). The SHA goes into every instance's fingerprint, so a
moved branch shows in the plan as a change.

Security (issue #8): every git call runs with GIT_ALLOW_PROTOCOL=https:ssh:git:file, and URLs
are checked against an allow-list before git ever sees them: `ext::`/`fd::` and any other
`<transport>::` address, option-like URLs (`--upload-pack=…`) and hosts that start with `-`
are refused. Git runs through GitPython, which passes argument lists (never a shell).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from reconciler.spec import Study
from reconciler.spec.diagnostics import Collector
from reconciler.spec.load import Positions, parse_yaml
from reconciler.spec.model import GitDependency, Spec

ALLOWED_PROTOCOLS = "https:ssh:git:file"
ALLOWED_SCHEMES = frozenset({"https", "ssh", "git", "file"})

# Set for every git call this package makes. GIT_TERMINAL_PROMPT=0 makes a URL that needs a
# password fail with a message instead of hanging an unattended apply on a prompt.
GIT_ENV: dict[str, str] = {
    "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
    "GIT_TERMINAL_PROMPT": "0",
}

# `[user@]host:path`, git's scp-like ssh syntax. The host may not start with `-` (it would
# reach ssh as an option).
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~+-]+@)?[A-Za-z0-9_][A-Za-z0-9._-]*:(?!//)\S+$")
_HEX = re.compile(r"^[0-9a-fA-F]{4,64}$")
_TOKEN = re.compile(r"\$\(([A-Za-z0-9_][A-Za-z0-9_.\-]*)\)")
MANAGED_KEY = "reconciler.managed"  # set in the config of every checkout we create


class DependencyError(Exception):
    """A user-fixable problem with an env dependency, as one paragraph."""


# ---- git with a safe environment -----------------------------------------------------------


def harden(repo: git.Repo) -> git.Repo:
    """Make every later call through `repo.git` run with the protocol allow-list."""
    repo.git.update_environment(**GIT_ENV)
    return repo


def git_cmd(cwd: Path | None = None) -> git.Git:
    """A GitPython command runner (argument lists, no shell) with the allow-list set."""
    g = git.Git(str(cwd) if cwd else None)
    g.update_environment(**GIT_ENV)
    return g


def _stderr(e: GitCommandError) -> str:
    text = str(e.stderr or e).strip()
    text = text.removeprefix("stderr:").strip().strip("'").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[-3:]) if lines else "git failed"


# ---- URLs ----------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL without a password or token in its user part, for messages and notes."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme and parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return url


def check_url(url: str, name: str = "") -> None:
    """Refuse any URL outside https, ssh, git and file (plus scp-like ssh and local paths)."""
    what = f"git dependency '{name}'" if name else "git URL"
    shown = redact_url(url)

    def refuse(why: str) -> DependencyError:
        return DependencyError(
            f"{what} has URL '{shown}', which is refused: {why}. Only https://, ssh://, "
            "git:// and file:// URLs, scp-like ssh addresses (user@host:path) and absolute "
            "local paths are allowed."
        )

    if not url or any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in url):
        # No allowed form needs a raw space (a URL writes %20): refusing whitespace also stops
        # a second argument smuggled into the value.
        raise refuse("it is empty or contains whitespace or control characters")
    if url.startswith("-"):
        raise refuse("it starts with '-' and would reach git as an option")
    if "::" in url:
        # `<transport>::<address>` runs a remote helper (ext:: runs any command, fd:: reads a
        # file descriptor); no allowed form needs it.
        raise refuse("the '<transport>::<address>' syntax runs a git remote helper")
    if url.startswith("/"):
        return  # a local path: git's "file" protocol
    if "://" in url:
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            user = parts.username or ""
        except ValueError as e:
            raise refuse(f"it does not parse ({e})") from e
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            raise refuse(f"scheme '{parts.scheme}' is not allowed")
        if parts.scheme.lower() != "file" and not host:
            raise refuse("it names no host")
        if host.startswith("-") or user.startswith("-"):
            raise refuse("its host or user starts with '-' and would reach ssh as an option")
        return
    if _SCP_LIKE.match(url):
        return
    raise refuse("it is neither a URL with an allowed scheme nor user@host:path")


# ---- the cache: one bare repo per URL ------------------------------------------------------


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


_FETCH_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")


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
                    f"{what}: cannot fetch {redact_url(url)}: {_stderr(e)}. Nothing of the "
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
                f"{what}: cannot clone {redact_url(url)}: {_stderr(e)}. Check the URL and "
                "your access to it; nothing of the study was submitted."
            ) from e
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return dest  # `git config remote.origin.url` in it says which URL a hashed dir holds


def _rev_parse(cache: Path, rev: str) -> str | None:
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
        sha = _rev_parse(cache, dep.hash)
        if sha is None and len(dep.hash) == 40:
            # A commit on no branch or tag: many servers still serve it when asked by id.
            with contextlib.suppress(GitCommandError):
                pin = f"{dep.hash}:refs/reconciler/pins/{dep.hash}"  # a ref keeps it from gc
                git_cmd(cache).fetch("--quiet", "--", dep.url, pin)
                sha = _rev_parse(cache, dep.hash)
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
            sha = _rev_parse(cache, qualified)
            if sha is None:
                raise DependencyError(f"{where}: the remote has no {kind} named '{ref}'.")
            return sha
    sha = _rev_parse(cache, "HEAD") or _follow_remote_head(cache, dep.url)
    if sha is None:
        raise DependencyError(
            f"{where}: the remote's default branch does not resolve (an empty repository?); "
            "name a branch, tag or hash."
        )
    return sha


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
            return _rev_parse(cache, "HEAD")
    return None


def _git_deps(study: Study | Spec) -> list[GitDependency]:
    spec = study.spec if isinstance(study, Study) else study
    return list(spec.env.dependencies.git)


def resolve_git_dependencies(study: Study | Spec, cache_dir: Path) -> dict[str, str]:
    """Fetch every git dependency into its cache and pin it: {name: full commit SHA}.

    Every URL is checked before any is fetched, so a refused URL stops the study before any
    network traffic.
    """
    deps = _git_deps(study)
    for dep in deps:
        check_url(dep.url, dep.name)
    shas: dict[str, str] = {}
    for dep in deps:
        cache = cache_path(Path(cache_dir), dep.url)
        if dep.hash and _HEX.match(dep.hash) and (cache / "HEAD").is_file():
            sha = _rev_parse(cache, dep.hash)
            if sha and sha.lower().startswith(dep.hash.lower()):
                shas[dep.name] = sha  # a commit never moves: no need to ask the remote
                continue
        cache = update_cache(Path(cache_dir), dep.url, dep.name)
        shas[dep.name] = resolve_ref(cache, dep)
    return shas


# ---- checkouts: one per study, at exactly the pinned SHA -----------------------------------


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
    anything else is left alone and is an error. Nothing here deletes a directory it did not
    create. `url` becomes the checkout's `origin`, so a person can fetch from the real remote.
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
        if _rev_parse(dest, sha) is None:
            # The cache holds `sha` on one of its refs (that is how it was resolved).
            repo.git.fetch("--quiet", "--force", "--", str(cache), *_CHECKOUT_REFSPECS)
        repo.git.checkout("--quiet", "--detach", sha)
    except GitCommandError as e:
        raise DependencyError(f"cannot check out {sha[:12]} in {dest}: {_stderr(e)}") from e
    if repo.head.commit.hexsha != sha:
        raise DependencyError(f"{dest} did not end up at {sha[:12]}; it is left as it is.")
    return dest


_CHECKOUT_REFSPECS = (
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
    "+refs/reconciler/*:refs/reconciler/*",
)


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
        raise DependencyError(f"cannot make a checkout at {dest}: {_stderr(e)}") from e
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


def _substitute(text: str, values: Mapping[str, str]) -> str:
    for _ in range(10):  # variables may refer to variables; stop on cycles
        new = _TOKEN.sub(lambda m: values.get(m.group(1), m.group(0)), text)
        if new == text:
            break
        text = new
    return text


def _token_values(study: Study, locations: Mapping[str, str]) -> dict[str, str]:
    values = {k: str(v) for k, v in study.spec.env.variables.items()}
    values.update(locations)
    return values


def dependency_dir(study: Study, dep: GitDependency, locations: Mapping[str, str]) -> Path:
    """`<path>/<name>` with $(OUTPUT_PATH), $(SPECROOT) and variables substituted."""
    base = Path(_substitute(dep.path, _token_values(study, locations))).expanduser()
    if not base.is_absolute():
        base = Path(locations.get("SPECROOT", ".")) / base
    return base / dep.name


def acquire_git_dependencies(
    study: Study, shas: Mapping[str, str], cache_dir: Path, locations: Mapping[str, str]
) -> dict[str, Acquired]:
    """Check out every git dependency of `study` at its pinned SHA (see `checkout`)."""
    out: dict[str, Acquired] = {}
    for dep in _git_deps(study):
        sha = shas[dep.name]
        dest = dependency_dir(study, dep, locations)
        checkout(cache_path(Path(cache_dir), dep.url), sha, dest, url=dep.url)
        ref = dep.hash or dep.tag or dep.branch
        out[dep.name] = Acquired(dep.name, dep.url, ref, sha, dest)
    return out


# ---- path dependencies ---------------------------------------------------------------------


def _spec_text(study: Study, text: str | None) -> str | None:
    if text is not None:
        return text
    try:
        return Path(study.path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None


def check_paths(
    study: Study,
    specroot: Path,
    *,
    text: str | None = None,
    locations: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Every path dependency must exist: {name: resolved path}, or one DependencyError naming
    each missing dependency at its spec line.

    $(SPECROOT), $(OUTPUT_PATH) (when given in `locations`) and env variables are substituted;
    a relative path is taken from `specroot` (the spec's directory), not from wherever the
    reconciler happens to run. `text` is the spec text (read from `study.path` if not given),
    used only to find line numbers.
    """
    values = _token_values(study, {"SPECROOT": str(specroot), **(locations or {})})
    found: dict[str, Path] = {}
    missing: list[tuple[int, str]] = []
    positions = None
    for i, dep in enumerate(study.spec.env.dependencies.paths):
        path = Path(_substitute(dep.path, values)).expanduser()
        if not path.is_absolute():
            path = Path(specroot) / path
        if path.exists():
            found[dep.name] = path
            continue
        if positions is None:
            positions = _positions(study, text)
        where = study.path
        line = positions.value(("env", "dependencies", "paths", i, "path")) if positions else None
        if line:
            where = f"{study.path}:{line[0]}:{line[1]}"
        missing.append((i, f"{where}: path dependency '{dep.name}' points to {path}"))
    if missing:
        lines = "; ".join(m for _, m in missing)
        raise DependencyError(
            f"{lines} — which does not exist. Path dependencies must exist before anything of "
            f"study '{study.name}' is submitted; nothing was started."
        )
    return found


def _positions(study: Study, text: str | None) -> Positions | None:
    source = _spec_text(study, text)
    if source is None:
        return None
    parsed = parse_yaml(source, Collector(study.path))
    return parsed[1] if parsed else None


__all__ = [
    "ALLOWED_PROTOCOLS",
    "GIT_ENV",
    "Acquired",
    "DependencyError",
    "acquire_git_dependencies",
    "cache_path",
    "check_paths",
    "check_url",
    "checkout",
    "dependency_dir",
    "git_cmd",
    "harden",
    "redact_url",
    "resolve_git_dependencies",
    "resolve_ref",
    "update_cache",
]
