"""Which workspace each spec of a revision claims, and the claims that cannot all be granted.

Every spec names a study and asks for a place (gitops/placement.py). A spec too broken to name
its study is known by its path — or, when the registry remembers a study applied from that
file and no other spec names it now, as that study, so a syntax error never reads as "the
study was removed" (a study applied before the registry existed is found by the file's name).
Specs naming one study (NFC), and specs of different studies resolving to one workspace, get
one error naming every file, and nothing is applied for any of them; every other spec goes on
as usual. A study that cannot be applied keeps pointing at its own record
(its last applied workspace, or its default place), so its state still shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from reconciler.gitops.placement import PlacementError, Places, owner
from reconciler.gitops.registry import Entry
from reconciler.gitops.repo import SpecFile
from reconciler.gitops.studyplan import StudyPlan
from reconciler.spec.names import name_problem


def claim(specs: Sequence[SpecFile], places: Places, entries: Sequence[Entry]) -> list[StudyPlan]:
    """One StudyPlan per study the specs name (not yet planned), errors already set."""
    known = Known(entries, places)
    taken = {f.name for f in specs if f.name is not None}
    plans = _merge_duplicates([known.place(f, taken) for f in specs], known)
    _refuse_shared_workspaces(plans)
    return plans


class Known:
    """The registry's snapshot, read once per plan."""

    def __init__(self, entries: Sequence[Entry], places: Places) -> None:
        self.places = places
        self.by_study = {e.study: e.workspace for e in entries}  # the last applied wins
        self.by_spec = {e.spec: e.study for e in entries if e.spec}

    def fallback(self, name: str) -> Path:
        """Where a study that cannot be applied has its record (read only if it is its own)."""
        return self.by_study.get(name) or self.places.default(name)

    def place(self, f: SpecFile, taken: set[str]) -> StudyPlan:
        """The study a spec names and its workspace, or the reason it has none."""
        name = f.name
        error = str(f.error) if f.error else f"{f.path}: cannot be read"
        if name is None:  # too broken to say which study it means
            name = self.by_spec.get(f.path) or self._by_file_name(f.path)
            name = None if name in taken else name  # another spec names that study now
            where = self.fallback(name) if name else None
            return StudyPlan(name or f.path, where, f, error=error)
        if f.study is None:  # invalid: its last applied workspace keeps what it has
            return StudyPlan(name, self.fallback(name), f, error=error)
        try:
            return StudyPlan(name, self.places.place(name, f.study.reconcile.workspace), f)
        except PlacementError as e:
            return StudyPlan(name, self.fallback(name), f, error=f"{f.path}: {e}")

    def _by_file_name(self, path: str) -> str | None:
        """A study named as its spec file, applied before the registry existed."""
        stem = PurePosixPath(path).stem
        if name_problem(stem) is None and owner(self.places.default(stem)) == stem:
            return stem
        return None


def _merge_duplicates(plans: list[StudyPlan], known: Known) -> list[StudyPlan]:
    by_name: dict[str, list[StudyPlan]] = {}
    for sp in plans:
        by_name.setdefault(sp.name, []).append(sp)
    out: list[StudyPlan] = []
    for name, group in by_name.items():
        first = group[0]
        if len(group) > 1:
            files = " and ".join(p.spec.path for p in group if p.spec is not None)
            first.error = (
                f"{files} name the same study '{name}' (description.name must be unique in a "
                "repository; names are compared in Unicode NFC): nothing is applied for either "
                "until one is renamed"
            )
            first.workspace = known.fallback(name) if first.spec and first.spec.name else None
        out.append(first)
    return out


def _refuse_shared_workspaces(plans: list[StudyPlan]) -> None:
    by_ws: dict[Path, list[StudyPlan]] = {}
    for sp in plans:
        if sp.workspace is not None and sp.spec is not None:
            by_ws.setdefault(sp.workspace, []).append(sp)
    for ws, group in by_ws.items():
        if len(group) < 2:
            continue
        who = " and ".join(f"{p.spec.path} (study '{p.name}')" for p in group if p.spec)
        for sp in group:
            sp.error = (
                f"{who} resolve to the same workspace {ws}: nothing is applied for either until "
                "one of them changes its name or reconcile.workspace"
            )


__all__ = ["Known", "claim"]
