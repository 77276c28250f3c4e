"""Git with a safe environment, and the one error type of this package."""

from __future__ import annotations

from pathlib import Path

import git
from git.exc import GitCommandError

from reconciler.deps import DependencyError
from reconciler.spec.giturl import redact_url, refusal, refusal_message

ALLOWED_PROTOCOLS = "https:ssh:git:file"

# Set for every git call this package makes. GIT_TERMINAL_PROMPT=0 makes a URL that needs a
# password fail with a message instead of hanging an unattended apply on a prompt.
GIT_ENV: dict[str, str] = {
    "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
    "GIT_TERMINAL_PROMPT": "0",
}


def check_url(url: str, name: str = "") -> None:
    """Refuse any URL outside https, ssh, git and file (plus scp-like ssh and local paths)."""
    why = refusal(url)
    if why is not None:
        raise DependencyError(refusal_message(url, why, name))


def harden(repo: git.Repo) -> git.Repo:
    """Make every later call through `repo.git` run with the protocol allow-list."""
    repo.git.update_environment(**GIT_ENV)
    return repo


def git_cmd(cwd: Path | None = None) -> git.Git:
    """A GitPython command runner (argument lists, no shell) with the allow-list set."""
    g = git.Git(str(cwd) if cwd else None)
    g.update_environment(**GIT_ENV)
    return g


def stderr_of(e: GitCommandError) -> str:
    """git's own words, in one line (the last three lines it printed)."""
    text = str(e.stderr or e).strip()
    text = text.removeprefix("stderr:").strip().strip("'").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[-3:]) if lines else "git failed"


__all__ = [
    "ALLOWED_PROTOCOLS",
    "GIT_ENV",
    "DependencyError",
    "check_url",
    "git_cmd",
    "harden",
    "redact_url",
    "stderr_of",
]
