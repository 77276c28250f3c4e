"""A plan as people read it: one table per study, an action and a reason per instance.

Shared by `plan` (GitOps) and `run` on a workspace whose spec changed, so both say the same
thing in the same words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from reconciler.spec.printable import printable

if TYPE_CHECKING:  # plan.actions brings deepdiff, which every command would pay to import
    from reconciler.plan.actions import Action

STYLE = {"cancel": "red", "prune": "red", "rerun": "yellow", "missing": "magenta"}


def plan_table(title: str, changes: list[Action]) -> Table:
    """The changes of one study's plan (keep actions are left out by the caller)."""
    table = Table(title=Text(printable(title, one_line=True)), title_justify="left")
    for col in ("action", "instance", "reason"):
        table.add_column(col, overflow="fold")
    for a in changes:
        style = STYLE.get(str(a.kind), "")
        kind = f"[{style}]{a.kind}[/]" if style else str(a.kind)
        # user text: a name may hold "[" (markup), a newline or a workflow command
        table.add_row(kind, escape(printable(a.instance, one_line=True)),
                      escape(printable(a.reason, one_line=True)))  # fmt: skip
    return table


def summary(counts: dict[str, int]) -> str:
    """`2 rerun, 1 create` (keep left out)."""
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n and k != "keep")


__all__ = ["plan_table", "summary"]
