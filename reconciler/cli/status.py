"""`reconciler status`: where each study stands, sized for the terminal.

A study of up to `SUMMARY_OVER` instances (after `--step`/`--state`) is shown row by row; a
bigger one as a summary — counts by state per step, the failed instances with the end of their
stderr, the running ones — computed by SQL aggregates, so 100,000 instances answer in well under
a second of work. `--all` shows every row. A directory Maestro made (its status.csv, no record
of ours) is shown read-only.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from reconciler.cli import pool_view
from reconciler.cli import status_view as view
from reconciler.cli.common import fail, fit_width, out, print_json, table_console
from reconciler.engine.api import engine_holder
from reconciler.plan.states import IN_FLIGHT, State
from reconciler.record.outputs import counts_text, failure_report, plural
from reconciler.record.store import RECORD_DIR, RecordError, Store, is_workspace
from reconciler.spec.printable import printable

SUMMARY_OVER = 300  # instances; more are summarised unless --all
RUNNING_SHOWN = 10
MOVING = {str(s) for s in IN_FLIGHT | {State.INITIALIZED}}


class Layout(StrEnum):
    fit = "fit"
    wide = "wide"
    flat = "flat"
    narrow = "narrow"
    legacy = "legacy"


def status(
    dirs: list[Path] | None = typer.Argument(
        None, metavar="DIR...", help="Study workspace directories (or use --repo)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Instances as JSON (keys: " + ", ".join(view.JSON_KEYS) + ")."
    ),
    show_all: bool = typer.Option(
        False, "--all", help=f"Every instance, also in a study of more than {SUMMARY_OVER}."
    ),
    step: list[str] | None = typer.Option(
        None, "--step", metavar="STEP", help="Only this step's instances (repeatable)."
    ),
    state: list[str] | None = typer.Option(
        None, "--state", metavar="STATE", help="Only instances in this state (repeatable)."
    ),
    layout: Layout = typer.Option(
        Layout.fit,
        "--layout",
        help="fit: the columns that fit the terminal; wide (or Maestro's flat): every column; "
        "narrow: one card per instance; legacy: Maestro's plain table.",
    ),
    disable_theme: bool = typer.Option(False, "--disable-theme", help="No colours or styles."),
    disable_pager: bool = typer.Option(
        False, "--disable-pager", help="Accepted for Maestro's sake: status never pages."
    ),
    watch: bool = typer.Option(False, "--watch", help="Refresh every second until the study ends."),
    repo: Path | None = typer.Option(
        None, "--repo", help="Every study of a GitOps repo: sync, health, revisions, counts."
    ),
    root: Path | None = typer.Option(None, "--root", help="With --repo: the studies root."),
    specs: str = typer.Option("specs", "--specs", help="With --repo: the specs directory."),
    allow: list[Path] | None = typer.Option(
        None,
        "--allow-workspace",
        metavar="DIR",
        help="With --repo: a place the operator allows study workspaces outside the root.",
    ),
    pool: bool = typer.Option(
        False, "--pool", help="Only the worker pool (batch.pool): its workers and allocations."
    ),
) -> None:
    """Show where each study stands: its instances, or a summary of a big study.

    The table keeps each instance's name and state and adds the columns that fit the terminal.
    A study of more than 300 instances is summarised (counts by state per step, the failed
    instances with the end of their stderr, the running ones); --all shows every row.
    --json prints a list of instances for one directory, an object keyed by directory for
    several. --pool --json prints the pool (address, workers, allocation jobs); null if none
    runs. A directory Maestro made is shown from its status.csv, read-only.
    """
    del disable_pager  # nothing pages
    if repo is not None:
        from reconciler.cli.gitops import repo_status

        repo_status(repo, root, specs, as_json, allow)
        return
    if not dirs:
        fail("status needs study workspace directories (or --repo for a GitOps repo).")
    states = _states(state)
    roots = [d.resolve() for d in dirs]
    for d, r in zip(dirs, roots, strict=True):
        _check(d, r)
    if pool:
        _pool_status(dirs, roots, as_json)
        return
    if as_json:
        data = {str(d): _json_rows(r, states, step) for d, r in zip(dirs, roots, strict=True)}
        if len(dirs) == 1:
            view.write_json_list(next(iter(data.values())), sys.stdout)
        else:
            print_json(data)
        return
    width = fit_width()
    console = table_console(width, disable_theme)
    opts = {"states": states, "steps": step, "show_all": show_all, "layout": str(layout),
            "width": width, "styled": not disable_theme}  # fmt: skip
    if watch:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                parts = [p for r in roots for p in _view(r, **opts)]
                live.update(Group(*(Text(p) if isinstance(p, str) else p for p in parts)),
                            refresh=True)  # fmt: skip
                if not any(_active(r) for r in roots):
                    break
                time.sleep(1.0)
        if not console.is_terminal:
            console.print()  # off a terminal, Live leaves its last line unterminated
        return
    for r in roots:
        for part in _view(r, **opts):
            if isinstance(part, str):  # plain text: written as is, rich would take seconds
                console.file.flush()
                sys.stdout.write(part + "\n")
                sys.stdout.flush()
            else:
                console.print(part)


# -- inputs --------------------------------------------------------------------------------------


def _states(given: list[str] | None) -> list[str] | None:
    if not given:
        return None
    names = [str(s) for s in State]
    chosen = [s.upper() for s in given]
    bad = [s for s in chosen if s not in names]
    if bad:
        fail(f"--state {', '.join(bad)}: not a state (states: {', '.join(names)})")
    return chosen


def _maestros(root: Path) -> bool:
    """A workspace Maestro made: its status.csv, and nothing of ours (a `.reconciler/` without
    its record is one of ours that lost it: an error, not Maestro's)."""
    return (root / "status.csv").is_file() and not (root / RECORD_DIR).exists()


def _check(given: Path, root: Path) -> None:
    if _maestros(root):
        return
    if not root.exists():
        fail(f"{given} does not exist")
    if is_workspace(root) or (root / RECORD_DIR).exists():
        try:
            Store.open(root).close()
        except RecordError as e:
            fail(str(e))
        return
    fail(f"{given} is not a study workspace: it has neither a record (.reconciler/record.db) "
         "nor Maestro's status.csv")  # fmt: skip


# -- one study -----------------------------------------------------------------------------------


def _json_rows(root: Path, states: list[str] | None, steps: list[str] | None) -> list[Any]:
    if _maestros(root):
        rows = _filtered(view.read_status_csv(root / "status.csv"), states, steps)
        return [view.csv_json(r) for r in rows]
    store = Store.open(root)
    try:
        return view.json_rows(store, states, steps)
    finally:
        store.close()


def _view(root: Path, *, states: list[str] | None, steps: list[str] | None, show_all: bool,
          layout: str, width: int | None, styled: bool) -> list[RenderableType | str]:  # fmt: skip
    """A study's status as parts to print in order (str parts are plain text)."""
    if _maestros(root):
        return _maestro_view(root, states, steps, show_all, layout, width, styled)
    store = Store.open(root)
    try:
        name = store.study()["name"]
        counts = store.counts()
        total = sum(counts.values())
        shown = store.count(states=states, steps=steps) if states or steps else total
        title = printable(f"{name} — {root}", one_line=True)
        line = f"{plural(total, 'instance')}: {counts_text(counts)} — {_engine(root, counts)}"
        parts: list[RenderableType | str] = []
        if show_all or shown <= SUMMARY_OVER:
            rows = view.rows_of(store.select(states=states, steps=steps))
            parts.append(view.rows_view(rows, layout, width, title=title, styled=styled))
            if states or steps:
                line = f"{plural(shown, 'instance')} shown of {line}"
            parts.append(Text(line))
        else:
            parts += [Text(title), Text(line)]
            per_step = store.step_counts()
            if steps:
                per_step = {s: c for s, c in per_step.items() if s in steps}
            parts.append(view.step_counts_view(per_step, width, styled))
        if not states or set(states) & {"FAILED", "TIMEDOUT", "HWFAILURE", "LOST", "BLOCKED"}:
            report = failure_report(store, root, steps=steps)
            if report:
                # plain: paths stay whole to copy; printable: names and job output are user text
                parts.append(printable("\n".join(report.lines())))
        if not (show_all or shown <= SUMMARY_OVER):
            parts += _running(store, root, width, styled)
            parts.append(Text(f"Every instance: reconciler status {root} --all; or narrow "
                              "them down with --step STEP and --state STATE."))  # fmt: skip
    finally:
        store.close()
    workers = pool_view.pool_table(root)
    if workers is not None:
        parts.append(workers)
    return parts


def _running(
    store: Store, root: Path, width: int | None, styled: bool
) -> list[RenderableType | str]:
    moving = [str(s) for s in IN_FLIGHT]
    n = store.count(states=moving)
    if not n:
        return []
    rows = view.rows_of(store.select(states=moving, limit=RUNNING_SHOWN))
    title = f"{plural(n, 'instance')} in flight" + (
        f" (the first {RUNNING_SHOWN}; all: --state RUNNING)" if n > RUNNING_SHOWN else ""
    )
    return [view.rows_view(rows, "fit", width, title=title, styled=styled)]


def _engine(root: Path, counts: dict[str, int]) -> str:
    holder = engine_holder(root)
    if holder is not None:
        return f"engine running (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"
    if MOVING & set(counts):
        return f"no engine running: `reconciler resume {root}` carries the study on"
    return "study ended"


def _active(root: Path) -> bool:
    if not is_workspace(root) or engine_holder(root) is None:
        return False
    try:
        store = Store.open(root)
    except RecordError:
        return False
    try:
        return bool(MOVING & set(store.counts()))
    finally:
        store.close()


# -- a workspace Maestro made --------------------------------------------------------------------


def _filtered(rows: list[list[str]], states: list[str] | None,
              steps: list[str] | None) -> list[list[str]]:  # fmt: skip
    return [r for r in rows
            if (not states or r[view.STATE] in states)
            and (not steps or r[view.WORKSPACE].split("/", 1)[0] in steps)]  # fmt: skip


def _maestro_view(
    root: Path, states: list[str] | None, steps: list[str] | None, show_all: bool, layout: str,
    width: int | None, styled: bool,
) -> list[RenderableType | str]:  # fmt: skip
    every = [view.safe_row(r) for r in view.read_status_csv(root / "status.csv")]
    rows = _filtered(every, states, steps)
    title = printable(f"{root} — a Maestro workspace: its status.csv, read-only", one_line=True)
    counts = Counter(r[view.STATE] for r in every)
    line = f"{plural(len(every), 'instance')}: {counts_text(counts)}"
    if show_all or len(rows) <= SUMMARY_OVER:
        return [view.rows_view(rows, layout, width, title=title, styled=styled), Text(line)]
    per_step: dict[str, dict[str, int]] = {}
    for r in rows:
        c = per_step.setdefault(r[view.WORKSPACE].split("/", 1)[0], {})
        c[r[view.STATE]] = c.get(r[view.STATE], 0) + 1
    failed = [r for r in rows if r[view.STATE] in ("FAILED", "TIMEDOUT", "HWFAILURE")]
    parts: list[RenderableType | str] = [Text(title), Text(line)]
    parts.append(view.step_counts_view(per_step, width, styled))
    if failed:
        parts.append(view.rows_view(failed[:SUMMARY_OVER], "fit", width,
                                    title=f"{plural(len(failed), 'instance')} failed"))  # fmt: skip
    parts.append(Text(f"Every instance: reconciler status {root} --all"))
    return parts


def _pool_status(dirs: list[Path], roots: list[Path], as_json: bool) -> None:
    if as_json:
        data = {str(d): pool_view.pool_json(r) for d, r in zip(dirs, roots, strict=True)}
        print_json(next(iter(data.values())) if len(dirs) == 1 else data)
        return
    console = out if out.is_terminal else Console(highlight=False, width=1000)
    for root in roots:
        t = pool_view.pool_table(root)
        console.print(t if t is not None else Text(printable(f"{root}: no worker pool is running")))


__all__ = ["SUMMARY_OVER", "Layout", "status"]
