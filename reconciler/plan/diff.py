"""What changed between the applied spec and the desired one, in words a person understands.

deepdiff compares the two specs keyed by step name (so reordering steps changes nothing), and
each difference becomes a `Change` that the planner attaches to the instances it explains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deepdiff import DeepDiff
from deepdiff.path import parse_path

from reconciler.spec.model import Spec

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: where it is in the spec, and how to say it."""

    path: Path
    text: str
    before: Any = None  # the old value (None when added)
    after: Any = None  # the new value (None when removed)

    @property
    def step(self) -> str | None:
        return str(self.path[1]) if len(self.path) > 1 and self.path[0] == "study" else None


def keyed(spec: Spec) -> dict[str, Any]:
    """The spec as plain data with steps keyed by name (their order is not content)."""
    data = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["study"] = {s["name"]: s for s in data.get("study", [])}
    for step in data["study"].values():
        step.pop("name", None)
    return data


def spec_changes(
    applied: Spec | None,
    desired: Spec,
    applied_shas: Mapping[str, str] | None = None,
    desired_shas: Mapping[str, str] | None = None,
) -> list[Change]:
    """Every difference between the applied and desired specs (and dependency pins)."""
    changes: list[Change] = []
    if applied is not None:
        old, new = keyed(applied), keyed(desired)
        diff = DeepDiff(old, new)
        for raw in sorted(diff.affected_paths):
            path = tuple(parse_path(raw))
            before, after = _get(old, path), _get(new, path)
            changes.append(
                Change(
                    path,
                    describe(path, old, new),
                    None if before is _MISSING else before,
                    None if after is _MISSING else after,
                )
            )
    for name in sorted(set(applied_shas or {}) | set(desired_shas or {})):
        before = (applied_shas or {}).get(name)
        after = (desired_shas or {}).get(name)
        if before != after and after is not None:
            text = f"git dependency '{name}' moved to {after[:7]}"
            changes.append(Change(("env", "dependencies", "git", name), text, before, after))
    return changes


def _get(data: Any, path: Path) -> Any:
    for p in path:
        try:
            data = data[p]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


_MISSING = object()


def describe(path: Path, old: Any, new: Any) -> str:
    """One difference, as a reason a person reads in a plan."""
    before, after = _get(old, path), _get(new, path)
    head = path[0] if path else ""
    if head == "study" and len(path) >= 2:
        step = path[1]
        if len(path) == 2:
            return f"step '{step}' added" if before is _MISSING else f"step '{step}' removed"
        field = ".".join(str(p) for p in path[2:] if not isinstance(p, int))
        if field == "description":
            return f"description of step '{step}' changed"
        return f"{field} of step '{step}' changed"
    if head == "global.parameters" and len(path) >= 2:
        name = path[1]
        if len(path) == 2:
            return f"parameter {name} added" if before is _MISSING else f"parameter {name} removed"
        if len(path) == 4 and path[2] == "values":
            if before is _MISSING:
                return f"parameter {name} gained value {after}"
            if after is _MISSING:
                return f"parameter {name} lost value {before}"
            return f"parameter {name} value {before} became {after}"
        return f"{'.'.join(str(p) for p in path[2:])} of parameter {name} changed"
    if head == "env" and len(path) >= 3 and path[1] in ("variables", "labels"):
        kind = "variable" if path[1] == "variables" else "label"
        if before is _MISSING:
            return f"{kind} {path[2]} added"
        if after is _MISSING:
            return f"{kind} {path[2]} removed"
        return f"{kind} {path[2]} changed"
    return ".".join(str(p) for p in path) + " changed"
