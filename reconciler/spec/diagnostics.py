"""Diagnostics: every mistake a user can make in a spec, as `FILE:LINE:COL: message`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.spec.printable import printable


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a spec. `line`/`col` are 1-based; 0 means "no position"."""

    file: str
    line: int
    col: int
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        """One printable line: the file name and the message come from the user."""
        where = self.file
        if self.line:
            where = f"{self.file}:{self.line}:{self.col}"
        prefix = "" if self.severity == "error" else "warning: "
        return printable(f"{where}: {prefix}{self.message}", one_line=True)

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "severity": self.severity,
            "message": self.message,
        }


@dataclass
class SpecError(Exception):
    """Raised with every error found in one spec (never just the first)."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics if d.severity == "error")


Where = tuple[int, int] | None | Callable[[], "tuple[int, int] | None"]


def _place(pos: Where) -> tuple[int, int]:
    # A callable defers the lookup: finding positions costs a second, slower parse, which a
    # valid spec should never pay for.
    found = pos() if callable(pos) else pos
    return found or (0, 0)


class Collector:
    """Gathers diagnostics for one file, then raises them all at once."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Diagnostic] = []

    def error(self, message: str, pos: Where = None) -> None:
        line, col = _place(pos)
        self.items.append(Diagnostic(self.file, line, col, message))

    def warn(self, message: str, pos: Where = None) -> None:
        line, col = _place(pos)
        self.items.append(Diagnostic(self.file, line, col, message, "warning"))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise SpecError(sorted(self.items, key=lambda d: (d.line, d.col)))
