"""Containment: where a study's workspace goes in GitOps mode, and where it may never go.

A spec is the committer's input, never the operator's. So by default every workspace is
`<studies root>/<directory name of the study>` — the name sanitised as `run` sanitises it
(spec/names.py), so `../..` or `/abs` name a directory inside the root. `reconcile.workspace`
may put it elsewhere inside the root; anywhere else needs the operator's allowance, given on
the command line (`--allow-workspace DIR`) or in the repository's own git config
(`git config --add reconciler.allowWorkspace DIR`), which no commit can carry. Wherever it
goes, a workspace is never a symbolic link, another study's workspace, inside one, or a
directory with files reconciler did not make (`run`'s rule: engine/setup.existing_workspace).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import git

from reconciler.engine.setup import SetupError, existing_workspace
from reconciler.record.store import RecordError, Store, is_workspace
from reconciler.spec.names import study_dir

ALLOW_KEY = ("reconciler", "allowWorkspace")
ADVICE = "Choose another reconcile.workspace"


class PlacementError(Exception):
    """A spec asks for a workspace it may not have (one paragraph)."""


def allowances(repo: git.Repo, top: Path, given: Sequence[Path] = ()) -> tuple[Path, ...]:
    """The operator's allowed places: `given` (relative to the current directory) and every
    `reconciler.allowWorkspace` of git's config (relative to the repository)."""
    with repo.config_reader() as cr:
        configured = cr.get_values(*ALLOW_KEY) if cr.has_option(*ALLOW_KEY) else []
    found = [Path(p).resolve() for p in given]
    found += [(top / str(v)).resolve() for v in configured if str(v).strip()]
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class Places:
    """The studies root and the operator's allowances."""

    root: Path  # absolute, resolved
    top: Path  # the repository's top directory
    allowed: tuple[Path, ...] = ()

    def default(self, name: str) -> Path:
        """`<root>/<directory name>`; a workspace made under the raw name by an earlier
        version (before names were sanitised) keeps its place."""
        path = self.root / study_dir(name)
        if path.name != name and "/" not in name and name not in (".", "..") and not path.exists():
            legacy = self.root / name
            if not legacy.is_symlink() and owner(legacy) == name:
                return legacy
        return path

    def place(self, name: str, custom: str | None) -> Path:
        """The workspace of study `name`, or PlacementError saying why the spec may not have
        it. Nothing is created."""
        if custom is None:
            path, within = self.default(name), self.root
        else:
            raw = Path(custom)
            path = (raw if raw.is_absolute() else self.top / raw).resolve()  # through links
            within = self._within(path)
            if within is None or path == self.root:
                allow = " (" + ", ".join(map(str, self.allowed)) + ")" if self.allowed else ""
                raise PlacementError(
                    f"reconcile.workspace {custom!r} is {path}, which is not inside the studies "
                    f"root {self.root} nor a place the operator allowed{allow}; nothing was "
                    "applied. A spec cannot widen where reconciler writes: the operator allows a "
                    "place with `--allow-workspace DIR` or `git config --add "
                    "reconciler.allowWorkspace DIR`."
                )
        for parent in path.parents:
            if parent == within or not parent.is_relative_to(within):
                break
            if is_workspace(parent):
                raise PlacementError(
                    f"{path} is inside {parent}, the workspace of study '{owner(parent)}'; "
                    f"nothing was applied. {ADVICE}."
                )
        try:
            existing_workspace(path, name, ADVICE)
        except SetupError as e:
            raise PlacementError(str(e)) from None
        return path

    def _within(self, path: Path) -> Path | None:
        """The root or allowance `path` is inside (the root strictly), or None."""
        if path.is_relative_to(self.root):
            return self.root
        for allowed in self.allowed:
            if path.is_relative_to(allowed):
                return allowed
        return None


def owner(ws: Path) -> str | None:
    """The study whose record is in `ws`, or None (no record, or one that cannot be read)."""
    if not is_workspace(ws):
        return None
    try:
        store = Store.open(ws)
    except RecordError:
        return None
    try:
        return str(store.study()["name"])
    except RecordError:
        return None
    finally:
        store.close()


__all__ = ["ADVICE", "ALLOW_KEY", "PlacementError", "Places", "allowances", "owner"]
