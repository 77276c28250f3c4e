"""Study names must be unique among the specs of one repository (compared in Unicode NFC).

`validate DIR` runs in CI on a pull request, before any apply: two specs naming one study
(`café` typed once in NFC and once in NFD prints alike) are refused there at each file's
`description.name`, as apply would refuse both. Positions are found only for the clashing
files: a valid spec was parsed by the fast loader, and only a clash pays for the positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.spec.diagnostics import Collector, Diagnostic
from reconciler.spec.load import parse_yaml
from reconciler.spec.names import normal_name


@dataclass(frozen=True)
class Named:
    """One valid spec: its file, its text and the study it names."""

    file: str
    text: str
    name: str


def duplicate_names(specs: Sequence[Named]) -> list[Diagnostic]:
    """One error per spec whose study another spec also names (none when all are unique)."""
    by_name: dict[str, list[Named]] = {}
    for s in specs:
        by_name.setdefault(normal_name(s.name), []).append(s)
    found: list[Diagnostic] = []
    for name, group in by_name.items():
        if len(group) < 2:
            continue
        where = {s.file: _name_position(s) for s in group}
        for s in group:
            others = ", ".join(_at(o.file, where[o.file]) for o in group if o is not s)
            line, col = where[s.file]
            message = (
                f"study '{name}' is also named by {others}: description.name must be unique "
                "in a repository of specs (names are compared in Unicode NFC); apply would "
                "refuse both"
            )
            found.append(Diagnostic(s.file, line, col, message))
    return found


def _name_position(s: Named) -> tuple[int, int]:
    parsed = parse_yaml(s.text, Collector(s.file))
    if parsed is None:
        return 0, 0
    return parsed[1].value(("description", "name")) or (0, 0)


def _at(file: str, where: tuple[int, int]) -> str:
    return f"{file}:{where[0]}" if where[0] else file


__all__ = ["Named", "duplicate_names"]
