"""Rendering of `status`: instance rows in a layout that fits the terminal, and JSON.

Layouts (`--layout`): `fit` (the default) keeps the instance name and its state, then adds
columns in order of use while they fit the width; names wrap, states never shrink. `wide` (also
Maestro's name, `flat`) shows every column at its natural width; `narrow` one card per instance
(for 80 columns and less); `legacy` Maestro's plain fixed-width table.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from reconciler.plan.states import State
from reconciler.record.store import InstanceRow, Store
from reconciler.record.workspace import STATUS_COLUMNS, UNKNOWN, status_row
from reconciler.spec.printable import printable

LAYOUTS = ("fit", "wide", "flat", "narrow", "legacy")
EXIT = "Exit"
COLUMNS = (*STATUS_COLUMNS, EXIT)  # a row's cells, in this order
NAME, JOB, WORKSPACE, STATE = 0, 1, 2, 3
_AT = {c: i for i, c in enumerate(COLUMNS)}
# `fit`: after the name and the state, the columns a reader wants first.
FIT_ORDER = (EXIT, "Job ID", "Run Time", "Start Time", "End Time", "Submit Time",
             "Elapsed Time", "Number Restarts", "Workspace", "Params")  # fmt: skip
FIT_DISPLAY = ("Step Name", "State", EXIT, "Job ID", "Run Time", "Elapsed Time", "Submit Time",
               "Start Time", "End Time", "Number Restarts", "Workspace", "Params")  # fmt: skip
WIDE_DISPLAY = ("Step Name", "Job ID", "Workspace", "State", EXIT, *STATUS_COLUMNS[4:])
HEADERS = {"Number Restarts": "Restarts"}  # shorter headers where fitting counts
NAME_MIN = 16  # a name column narrower than this folds names into unreadable stubs
RICH_ROWS = 500  # rich lays a table out at ~1 ms a row; more rows are drawn as plain text
STATE_STYLE = {
    "FINISHED": "green",
    "RUNNING": "cyan",
    "PENDING": "blue",
    "QUEUED": "blue",
    "FAILED": "bold red",
    "TIMEDOUT": "bold red",
    "HWFAILURE": "bold red",
    "LOST": "bold red",
    "BLOCKED": "yellow",
    "CANCELLED": "magenta",
    "INITIALIZED": "dim",
}
Row = Sequence[str]
# Cells that hold user text (names, workspaces, parameter values): made printable, as one line.
_USER_TEXT = (NAME, WORKSPACE, _AT["Params"])


def safe_row(row: list[str]) -> list[str]:
    """A row for display: its user-text cells printable (spec/printable.py), as one line."""
    for i in _USER_TEXT:
        row[i] = printable(row[i], one_line=True)
    return row


def cells(r: InstanceRow, now: float) -> list[str]:
    """One instance's cells in `COLUMNS` order (Maestro's status.csv columns, then Exit)."""
    return safe_row([*status_row(r, now), UNKNOWN if r.exit_code is None else str(r.exit_code)])


def rows_of(records: Iterable[InstanceRow]) -> list[list[str]]:
    now = time.time()
    return [cells(r, now) for r in records]


# -- JSON --------------------------------------------------------------------------------------


def iso(t: float | None) -> str | None:
    """ISO 8601 with the local UTC offset (unambiguous across machines and DST)."""
    return None if t is None else _iso_second(int(t))


@lru_cache(maxsize=65536)  # instances of a sweep share their seconds: 100,000 rows, few calls
def _iso_second(t: int) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat("T", "seconds")


JSON_KEYS = ("name", "step", "workspace", "state", "job_id", "attempts", "exit_code",
                 "submit_time", "start_time", "end_time", "params")  # fmt: skip


def json_rows(store: Store, states: Sequence[str] | None, steps: Sequence[str] | None
              ) -> list[dict[str, Any]]:  # fmt: skip
    """`instance_json` of the selected instances, read as raw columns (fast for 100,000)."""
    rows = store.columns(JSON_KEYS, states=states, steps=steps)
    return [
        {"name": n, "step": st, "workspace": ws, "state": state, "job_id": job,
         "attempts": tries, "exit_code": rc, "submit_time": iso(sub), "start_time": iso(beg),
         "end_time": iso(end), "params": json.loads(params)}
        for n, st, ws, state, job, tries, rc, sub, beg, end, params in rows
    ]  # fmt: skip


def write_json_list(items: list[Any], stream: TextIO) -> None:
    """A JSON list: indented when short; one compact object a line when long (the indenting
    encoder is pure Python and takes seconds for 100,000 objects)."""
    if len(items) <= 1000:
        stream.write(json.dumps(items, indent=2, default=str) + "\n")
        return
    stream.write("[\n")
    last = len(items) - 1
    for i, item in enumerate(items):
        stream.write("  " + json.dumps(item, default=str) + (",\n" if i < last else "\n"))
    stream.write("]\n")


def instance_json(r: InstanceRow) -> dict[str, Any]:
    return {
        "name": r.name,
        "step": r.step,
        "workspace": r.workspace,
        "state": str(r.state),
        "job_id": r.job_id,
        "attempts": r.attempts,
        "exit_code": r.exit_code,
        "submit_time": iso(r.submit_time),
        "start_time": iso(r.start_time),
        "end_time": iso(r.end_time),
        "params": r.params,
    }


# -- Maestro's own workspaces (status.csv only) ------------------------------------------------


def read_status_csv(path: Path) -> list[list[str]]:
    """Rows of a status.csv Maestro (or we) wrote, as cells in `COLUMNS` order; read only."""
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    if not table:
        return []
    head = {name: i for i, name in enumerate(table[0])}
    out = []
    for line in table[1:]:
        get = [line[head[c]] if c in head and head[c] < len(line) else UNKNOWN for c in COLUMNS]
        out.append(get)
    return out


def _csv_time(text: str) -> str | None:
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").astimezone().isoformat("T", "seconds")
    except ValueError:
        return None


def csv_json(row: Row) -> dict[str, Any]:
    """A status.csv row with `instance_json`'s keys (what the file cannot tell is null)."""
    params = dict(p.split(":", 1) for p in row[_AT["Params"]].split(";") if ":" in p)
    job = row[JOB]
    return {
        "name": row[NAME],
        "step": row[WORKSPACE].split("/", 1)[0],
        "workspace": row[WORKSPACE],
        "state": row[STATE],
        "job_id": None if job in (UNKNOWN, "") else job,
        "attempts": None,
        "exit_code": None,
        "submit_time": _csv_time(row[_AT["Submit Time"]]),
        "start_time": _csv_time(row[_AT["Start Time"]]),
        "end_time": _csv_time(row[_AT["End Time"]]),
        "params": params,
    }


# -- choosing columns ----------------------------------------------------------------------------


def _natural(rows: Sequence[Row], col: str, short: bool = True) -> int:
    i = _AT[col]
    return max([len(HEADERS.get(col, col) if short else col)] + [len(r[i]) for r in rows])


def fit_columns(rows: Sequence[Row], width: int | None) -> tuple[list[str], int | None]:
    """The name, the state, and as many more columns as fit `width` (None: all of them); and
    the width left for names (None: their natural width).

    A column costs its natural width plus 3 (padding and separator). Names keep up to 40% of
    the width (at least `NAME_MIN`) before optional columns are added; longer names wrap.
    """
    if width is None:
        return list(FIT_DISPLAY), None
    natural = _natural(rows, "Step Name")
    reserve = min(natural, max(NAME_MIN, int(width * 0.4)))
    used = reserve + 2 + _natural(rows, "State") + 3
    chosen = {"Step Name", "State"}
    for col in FIT_ORDER:
        cost = _natural(rows, col) + 3
        if used + cost <= width:
            chosen.add(col)
            used += cost
    name = min(natural, reserve + width - used)
    return [c for c in FIT_DISPLAY if c in chosen], max(name, 1)


_BREAK_AFTER = "_./-"


def wrap_name(name: str, width: int | None) -> str:
    """`name` in lines of at most `width`, broken after `_`, `.`, `/` or `-` where possible."""
    if width is None or len(name) <= width:
        return name
    lines, line = [], ""
    piece = ""
    for ch in name + "\0":
        if ch != "\0":
            piece += ch
        if ch in _BREAK_AFTER or ch == "\0":
            while len(piece) > width:  # a piece longer than a line: fold it
                if line:
                    lines.append(line)
                    line = ""
                lines.append(piece[:width])
                piece = piece[width:]
            if len(line) + len(piece) > width:
                lines.append(line)
                line = ""
            line += piece
            piece = ""
    if line:
        lines.append(line)
    return "\n".join(lines)


def _style(state: str, styled: bool) -> str:
    return STATE_STYLE.get(state, "") if styled else ""


def table(rows: Sequence[Row], columns: Sequence[str], *, title: str | None = None,
          styled: bool = True, name_width: int | None = None) -> Table:  # fmt: skip
    """A rich table of `columns`. Names wrap at `name_width`; no other cell is cut."""
    t = Table(title=None if title is None else Text(title), title_justify="left",
              box=box.SIMPLE_HEAD, show_edge=False, header_style="bold" if styled else "",
              title_style="")  # fmt: skip
    short = name_width is not None
    for col in columns:
        head = HEADERS.get(col, col) if short else col
        if col == "Step Name" and name_width is not None:
            t.add_column(head, no_wrap=True, width=name_width)
        else:
            t.add_column(head, no_wrap=True, min_width=_natural(rows, col, short))
    k = list(columns).index("State") if "State" in columns else None
    for r in rows:
        line: list[Any] = [Text(r[_AT[c]]) for c in columns]  # text, never rich markup
        line[0] = Text(wrap_name(r[_AT[columns[0]]], name_width))
        if k is not None:
            line[k] = Text(r[STATE], style=_style(r[STATE], styled))
        t.add_row(*line)
    return t


def plain(rows: Sequence[Row], columns: Sequence[str], name_width: int | None = None, *,
          short: bool = True) -> str:  # fmt: skip
    """Fixed-width text (for thousands of rows, where rich is too slow). Names wrap at
    `name_width`; no other cell is cut."""
    heads = [HEADERS.get(c, c) if short else c for c in columns]
    widths = [_natural(rows, c, short) for c in columns]
    if name_width is not None:
        widths[0] = max(name_width, len(heads[0]))
    at = [_AT[c] for c in columns]
    out = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    first = widths[0]
    for r in rows:
        pieces = wrap_name(r[at[0]], name_width).split("\n")
        rest_cells = [r[i].ljust(w) for i, w in zip(at[1:], widths[1:], strict=True)]
        out.append("  ".join([pieces[0].ljust(first), *rest_cells]).rstrip())
        out.extend(pieces[1:])
    return "\n".join(out)


def legacy(rows: Sequence[Row], title: str) -> str:
    """Maestro's `--layout legacy`: every column but Params, fixed width, between `=` rules."""
    columns = [c for c in STATUS_COLUMNS if c != "Params"]
    body = plain(rows, columns, short=False)
    rule = "=" * max(len(line) for line in body.splitlines())
    return "\n".join([rule, title, rule, body, rule])


def narrow(rows: Sequence[Row], *, styled: bool = True) -> Text:
    """One card per instance (Maestro's `--layout narrow`): fits 80 columns and less."""
    text = Text()
    for r in rows:
        text.append(r[NAME] + "\n", style="bold" if styled else "")
        text.append("  state ")
        text.append(r[STATE], style=_style(r[STATE], styled))
        restarts = r[_AT["Number Restarts"]]
        text.append(f"   exit {r[_AT[EXIT]]}   job {r[JOB]}   restarts {restarts}\n")
        text.append(f"  workspace {r[WORKSPACE]}\n")
        text.append(f"  submitted {r[_AT['Submit Time']]}   started {r[_AT['Start Time']]}\n")
        text.append(f"  ended {r[_AT['End Time']]}   ran {r[_AT['Run Time']]}\n")
        params = r[_AT["Params"]]
        if params:
            text.append(f"  params {params.replace(';', ' ')}\n")
    text.rstrip()
    return text


def rows_view(rows: Sequence[Row], layout: str, width: int | None, *, title: str,
              styled: bool = True) -> RenderableType | str:  # fmt: skip
    """Instance rows in a layout, titled: a rich renderable, or plain text (str) where rich
    would be slow (thousands of rows) or Maestro's layout is plain."""
    if layout == "legacy":
        return legacy(rows, title)
    if layout == "narrow":
        return Group(Text(title), narrow(rows, styled=styled))
    if layout in ("wide", "flat"):  # every column at its natural width, whatever the terminal
        return f"{title}\n{plain(rows, WIDE_DISPLAY, short=False)}"
    columns, name_width = fit_columns(rows, width)
    if len(rows) > RICH_ROWS:
        return f"{title}\n{plain(rows, columns, name_width)}"
    return table(rows, columns, title=title, styled=styled, name_width=name_width)


# -- the summary of a big study ------------------------------------------------------------------


def step_counts_view(per_step: dict[str, dict[str, int]], width: int | None,
                     styled: bool = True) -> RenderableType:  # fmt: skip
    """Instances by state for each step: a table when it fits, else one line a step."""
    order = [str(s) for s in State]
    present = [s for s in order if any(s in c for c in per_step.values())]
    present += sorted({s for c in per_step.values() for s in c} - set(present))
    steps = list(per_step)
    cols = ["step", "instances", *present]
    grid = [[s, f"{sum(per_step[s].values()):,}", *(f"{per_step[s].get(x, 0):,}"
             for x in present)] for s in steps]  # fmt: skip
    natural = [max([len(c)] + [len(g[i]) for g in grid]) for i, c in enumerate(cols)]
    if width is not None and sum(natural) + 3 * len(cols) > width:
        lines = []
        for s, g in zip(steps, grid, strict=True):
            parts = ", ".join(f"{per_step[s][x]:,} {x}" for x in present if per_step[s].get(x))
            lines.append(f"  {s}: {g[1]} — {parts}")
        return Text("\n".join(lines))
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold" if styled else "")
    for i, c in enumerate(cols):
        t.add_column(Text(c, style=_style(c, styled)), justify="left" if i == 0 else "right",
                     no_wrap=i > 0, overflow="fold")  # fmt: skip
    for g in grid:
        t.add_row(*g)
    return t


__all__ = [
    "COLUMNS",
    "JSON_KEYS",
    "LAYOUTS",
    "cells",
    "csv_json",
    "fit_columns",
    "instance_json",
    "iso",
    "legacy",
    "narrow",
    "plain",
    "read_status_csv",
    "rows_of",
    "rows_view",
    "step_counts_view",
    "table",
]
