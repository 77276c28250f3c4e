"""Where dependencies are: path dependencies (they must exist), a git dependency's directory,
and what `meta/` records of them. No git here: a study with path dependencies only needs none."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.deps import DependencyError
from reconciler.spec import Study
from reconciler.spec.diagnostics import Collector
from reconciler.spec.giturl import redact_url
from reconciler.spec.load import Positions, parse_yaml
from reconciler.spec.model import GitDependency

_TOKEN = re.compile(r"\$\(([A-Za-z0-9_][A-Za-z0-9_.\-]*)\)")


def substitute(text: str, values: Mapping[str, str]) -> str:
    for _ in range(10):  # variables may refer to variables; stop on cycles
        new = _TOKEN.sub(lambda m: values.get(m.group(1), m.group(0)), text)
        if new == text:
            break
        text = new
    return text


def token_values(study: Study, locations: Mapping[str, str]) -> dict[str, str]:
    """Env variables, then the location tokens ($(OUTPUT_PATH), $(SPECROOT), dependencies)."""
    values = {k: str(v) for k, v in study.spec.env.variables.items()}
    values.update(locations)
    return values


def resolve(path: str, values: Mapping[str, str], base: Path) -> Path:
    """A dependency's `path` with its tokens substituted; a relative one is taken from `base`."""
    resolved = Path(substitute(path, values)).expanduser()
    return resolved if resolved.is_absolute() else Path(base) / resolved


def dependency_dir(
    study: Study, dep: GitDependency, locations: Mapping[str, str], base: Path | None = None
) -> Path:
    """`<path>/<name>` with $(OUTPUT_PATH), $(SPECROOT) and variables substituted; a relative
    `path` is taken from `base` (default: the spec's directory; `run` gives its current
    directory, where Maestro clones)."""
    start = base if base is not None else Path(locations.get("SPECROOT", "."))
    return resolve(dep.path, token_values(study, locations), start) / dep.name


def describe(
    study: Study, shas: Mapping[str, str], locations: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Each git dependency as `meta/` records it: URL (no password), ref, pinned SHA, path."""
    return {
        dep.name: {
            "url": redact_url(dep.url),
            "ref": dep.hash or dep.tag or dep.branch,
            "sha": shas.get(dep.name),
            "path": locations.get(dep.name),
        }
        for dep in study.spec.env.dependencies.git
    }


def check_paths(
    study: Study,
    specroot: Path,
    *,
    text: str | None = None,
    locations: Mapping[str, str] | None = None,
    base: Path | None = None,
) -> dict[str, Path]:
    """Every path dependency must exist: {name: resolved path}, or one DependencyError naming
    each missing dependency at its spec line.

    $(SPECROOT), $(OUTPUT_PATH) (when given in `locations`) and env variables are substituted;
    a relative path is taken from `base` — the spec's directory unless given (`run` gives the
    current directory, as Maestro does), never from wherever the reconciler happens to run.
    `text` is the spec text (read from `study.path` if not given), used only for line numbers.
    """
    values = token_values(study, {"SPECROOT": str(specroot), **(locations or {})})
    found: dict[str, Path] = {}
    missing: list[str] = []
    positions = None
    for i, dep in enumerate(study.spec.env.dependencies.paths):
        path = resolve(dep.path, values, base or specroot)
        if path.exists():
            found[dep.name] = path
            continue
        if positions is None:
            positions = _positions(study, text)
        where = study.path
        line = positions.value(("env", "dependencies", "paths", i, "path")) if positions else None
        if line:
            where = f"{study.path}:{line[0]}:{line[1]}"
        missing.append(f"{where}: path dependency '{dep.name}' points to {path}")
    if missing:
        raise DependencyError(
            f"{'; '.join(missing)} — which does not exist. Path dependencies must exist before "
            f"anything of study '{study.name}' is cloned or submitted; nothing was started."
        )
    return found


def _positions(study: Study, text: str | None) -> Positions | None:
    if text is None:
        try:
            text = Path(study.path).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return None
    parsed = parse_yaml(text, Collector(study.path))
    return parsed[1] if parsed else None


__all__ = ["check_paths", "dependency_dir", "describe", "resolve", "substitute", "token_values"]
