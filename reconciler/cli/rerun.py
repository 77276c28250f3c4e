"""`run`'s dependencies.

Path dependencies are checked first, then git dependencies are fetched into the user's cache
and pinned to a commit (the same module as GitOps: `reconciler.deps`), and the study is loaded
again with the pins, so that fingerprints name the commits as they do in GitOps. The checkout
itself is part of setting the workspace up (`engine.setup`).
"""

from __future__ import annotations

from pathlib import Path

from reconciler.cli.common import fail, load_or_exit
from reconciler.engine.setup import SetupError, resolve_locations
from reconciler.spec import Study


def pin_dependencies(study: Study, root: Path, cwd: Path) -> dict[str, str]:
    """Path dependencies checked, then git dependencies fetched and pinned: {name: SHA}.

    Nothing is cloned before every path dependency is known to exist. Exits 2 with the reason
    on any problem (a missing path, a refused or unreachable URL, an unknown ref).
    """
    deps = study.spec.env.dependencies
    if not (deps.paths or deps.git):
        return {}
    try:
        resolve_locations(study, root, cwd)  # path dependencies first
    except SetupError as e:
        fail(str(e))
    if not deps.git:
        return {}
    try:
        from reconciler.deps import DependencyError, default_cache_dir, resolve_git_dependencies
    except ImportError as e:  # GitPython without a git on PATH
        fail(f"git dependencies need git on PATH: {' '.join(str(e).split())[:200]}")
    try:
        return resolve_git_dependencies(study, default_cache_dir())
    except DependencyError as e:
        fail(str(e))


def pinned(
    study: Study,
    spec: Path,
    pgen: Path | None,
    pargs: list[str] | None,
    hashws: bool,
    shas: dict[str, str],
) -> Study:
    """The study again, with its git dependencies' commits in every fingerprint."""
    if not shas:
        return study
    # A second expansion (and --pgen run): fingerprints need the pins, known only after the
    # first load told us what to fetch. Warnings were reported by the first.
    return load_or_exit(spec, pgen, pargs, hashws=hashws, dependency_shas=shas, warn=False)


__all__ = ["pin_dependencies", "pinned"]
