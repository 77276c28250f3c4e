"""Every workspace a repository's applies ever made, wherever it is: `.reconciler/registry.json`.

The studies root is scanned for workspaces too, but a study the operator allowed outside it
(`reconcile.workspace` + `--allow-workspace`) would be forgotten once its spec is deleted: its
jobs would run on and `plan` would not show it. The registry remembers it, so a removed spec
still cancels its in-flight work. It is keyed by workspace (a study that moved keeps its old
workspace known too), written only by applies — which hold the repository lock — and replaced
atomically (a reader sees the old file or the new one, never half of one).

    {"format": 1, "workspaces": {"/abs/ws": {"study": "name", "spec": "specs/x.yaml",
                                             "applied": "2026-01-12T09:30:00+00:00"}}}
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.record.workspace import write_atomic

FILE = "registry.json"
FORMAT = 1


class RegistryError(Exception):
    """The registry file cannot be read (one paragraph)."""


@dataclass(frozen=True)
class Entry:
    workspace: Path
    study: str
    spec: str | None  # the repo-relative spec path it was last applied from


class Registry:
    """The registry of one repository's state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE

    def entries(self) -> list[Entry]:
        """Every registered workspace, most recently applied last."""
        raw = self._load()
        rows = sorted(raw.items(), key=lambda kv: str(kv[1].get("applied") or ""))
        return [Entry(Path(ws), str(e.get("study") or ""), e.get("spec")) for ws, e in rows]

    def workspace_of(self, study: str) -> Path | None:
        """Where `study` was last applied (None if it never was)."""
        found = [e.workspace for e in self.entries() if e.study == study]
        return found[-1] if found else None

    def study_of_spec(self, spec: str) -> str | None:
        """The study last applied from the spec file `spec` (to name a spec too broken to say)."""
        found = [e.study for e in self.entries() if e.spec == spec]
        return found[-1] if found else None

    def add(self, workspace: Path, study: str, spec: str | None) -> None:
        """Register (or refresh) a workspace. The caller holds the repository lock."""
        raw = self._load()
        entry = raw.get(str(workspace), {})
        if entry.get("study") == study and entry.get("spec") == spec:
            return  # nothing new: no write
        raw[str(workspace)] = {
            "study": study,
            "spec": spec,
            "applied": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "workspaces": dict(sorted(raw.items()))}
        write_atomic(self.path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as e:
            raise RegistryError(self._broken(str(e))) from None
        try:
            doc = json.loads(text)
            rows = doc["workspaces"]
            if not isinstance(rows, dict) or not all(isinstance(v, dict) for v in rows.values()):
                raise TypeError("'workspaces' is not a mapping of mappings")
        except (ValueError, KeyError, TypeError) as e:
            raise RegistryError(self._broken(str(e))) from None
        return rows

    def _broken(self, why: str) -> str:
        return (
            f"{self.path}: the registry of applied studies cannot be read ({why}). It lists "
            "every workspace this repository's applies made; restore it from a backup, or "
            "delete it (studies under the studies root are found again; those outside it are "
            "not until they are applied again)."
        )


__all__ = ["Entry", "Registry", "RegistryError"]
