"""Env dependencies: git dependencies cloned and pinned to a SHA, path dependencies checked.

One package for `run` and GitOps alike (`engine` sets a study's workspace up with it, `gitops`
plans and applies with it): it sits beside `record` and `schedulers`, below the engine, and
imports only `spec`.

A git dependency is fetched into a cache (one bare repo per URL, shared by every study), its
`hash`, `tag` or `branch` (or the remote's default branch) is resolved to a full commit SHA
(`pins.py`), and the study gets a checkout at exactly that SHA in its dependency directory,
`<path>/<name>` as Maestro places it (`checkouts.py`). The SHA goes into every instance's
fingerprint, so a moved branch shows in the plan as a change. Path dependencies must exist
before anything is cloned or submitted (`paths.py`).

Security: URLs are checked against an allow-list before git ever sees them (`spec/giturl.py`,
so `validate` refuses them too), and every git call runs with
GIT_ALLOW_PROTOCOL=https:ssh:git:file (`gitenv.py`). Git runs through GitPython, which passes
argument lists (never a shell).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.deps.checkouts import (
        MANAGED_KEY,
        Acquired,
        acquire_git_dependencies,
        checkout,
    )
    from reconciler.deps.gitenv import (
        ALLOWED_PROTOCOLS,
        GIT_ENV,
        check_url,
        git_cmd,
        harden,
        redact_url,
    )
    from reconciler.deps.paths import check_paths, dependency_dir, describe
    from reconciler.deps.pins import (
        cache_path,
        default_cache_dir,
        fetch_pinned,
        resolve_git_dependencies,
        resolve_ref,
        update_cache,
    )


class DependencyError(Exception):
    """A user-fixable problem with an env dependency, as one paragraph."""


# Where each name lives. Loaded on first use: GitPython refuses to import where no `git` is on
# PATH, and a study without git dependencies (`run`, `validate`) must not need one.
_HOME = {
    "MANAGED_KEY": "checkouts",
    "Acquired": "checkouts",
    "acquire_git_dependencies": "checkouts",
    "checkout": "checkouts",
    "dependency_dir": "paths",
    "describe": "paths",
    "ALLOWED_PROTOCOLS": "gitenv",
    "GIT_ENV": "gitenv",
    "check_url": "gitenv",
    "git_cmd": "gitenv",
    "harden": "gitenv",
    "redact_url": "gitenv",
    "check_paths": "paths",
    "cache_path": "pins",
    "default_cache_dir": "pins",
    "fetch_pinned": "pins",
    "resolve_git_dependencies": "pins",
    "resolve_ref": "pins",
    "update_cache": "pins",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'reconciler.deps' has no attribute '{name}'")
    return getattr(importlib.import_module(f"reconciler.deps.{home}"), name)


__all__ = [
    "ALLOWED_PROTOCOLS",
    "GIT_ENV",
    "MANAGED_KEY",
    "Acquired",
    "DependencyError",
    "acquire_git_dependencies",
    "cache_path",
    "check_paths",
    "check_url",
    "checkout",
    "default_cache_dir",
    "dependency_dir",
    "describe",
    "fetch_pinned",
    "git_cmd",
    "harden",
    "redact_url",
    "resolve_git_dependencies",
    "resolve_ref",
    "update_cache",
]
