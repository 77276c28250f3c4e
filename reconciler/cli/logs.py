"""`reconciler logs`: an instance's stdout (or stderr), of any attempt, also while it runs."""

from __future__ import annotations

import difflib
import sys
import time
from pathlib import Path
from typing import BinaryIO

import typer

from reconciler.cli.common import err, fail
from reconciler.engine.api import engine_holder
from reconciler.plan.states import IN_FLIGHT, TERMINAL
from reconciler.record.outputs import output_files, plural
from reconciler.record.store import InstanceRow, RecordError, Store, is_workspace

FOLLOW_EVERY = 0.2  # seconds between two looks at a followed file
_CHUNK = 1 << 16


def logs(
    where: str = typer.Argument(
        ..., metavar="DIR", help="The study workspace (with --repo: the study's name)."
    ),
    instance: str = typer.Argument(..., metavar="INSTANCE", help="The instance's name."),
    stderr: bool = typer.Option(False, "--err", help="Print stderr instead of stdout."),
    follow: bool = typer.Option(
        False, "-f", "--follow", help="Keep printing what it writes until the instance ends."
    ),
    attempt: int | None = typer.Option(
        None, "--attempt", min=1, metavar="N", help="The N-th submission (default: the latest)."
    ),
    repo: Path | None = typer.Option(
        None, "--repo", help="A GitOps repo: DIR is then the name of one of its studies."
    ),
    root: Path | None = typer.Option(None, "--root", help="With --repo: the studies root."),
    specs: str = typer.Option("specs", "--specs", help="With --repo: the specs directory."),
) -> None:
    """Print an instance's stdout (or stderr with --err); -f follows a running one.

    `reconciler logs DIR INSTANCE` for a workspace; `reconciler logs --repo R STUDY INSTANCE`
    for a study of a GitOps repo. Exit codes: 0 printed; 2 no such study, instance or attempt,
    or the instance has written no such file (it has not run).
    """
    ws = _workspace(where, repo, root, specs)
    store = Store.open(ws)
    try:
        row = _instance(store, instance, ws)
        job_id = _job_of(store, row, attempt)
        out_file, err_file = output_files(ws, row, job_id)
        path = err_file if stderr else out_file
        if attempt is not None and (job_id or "") not in path.name:
            err.print(f"note: the attempts of {row.name} write one file; this is all of them",
                      markup=False)  # fmt: skip
        if not follow:
            if not path.is_file():
                what = "stderr" if stderr else "stdout"
                fail(f"{row.name} has written no {what}: {path} does not exist ({row.state})")
            with open(path, "rb") as f:
                _copy(f)
            return
        _follow(store, ws, row.name, attempt, job_id, stderr)
    finally:
        store.close()


def _workspace(where: str, repo: Path | None, root: Path | None, specs: str) -> Path:
    if repo is None:
        path = Path(where).resolve()
        if not path.exists():
            fail(f"{where} does not exist")
        if not is_workspace(path):
            fail(f"{where} is not a reconciler workspace (no .reconciler/record.db)")
        try:
            Store.open(path).close()
        except RecordError as e:
            fail(str(e))
        return path
    from reconciler.cli.gitops import _plan, _reconciler

    rec = _reconciler(repo, specs, root, False)
    ws = rec.workspace_of(where, None)
    if is_workspace(ws):
        return ws
    _, plans = _plan(rec, None)  # a study with its own reconcile.workspace
    for p in plans:
        if p.name == where and is_workspace(p.workspace):
            return p.workspace
    known = ", ".join(p.name for p in plans if p.record is not None) or "none yet"
    fail(f"no study '{where}' has been applied under {rec.root} (applied studies: {known})")


def _instance(store: Store, name: str, ws: Path) -> InstanceRow:
    found = store.instances([name])
    if found:
        return found[0]
    names = [n for (n,) in store.columns(["name"])]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    fail(f"{ws} has no instance named '{name}'{hint} (`reconciler status {ws}` lists them)")


def _job_of(store: Store, row: InstanceRow, attempt: int | None) -> str | None:
    if attempt is None:
        return row.job_id
    jobs = store.submissions(row.name)
    if attempt > len(jobs):
        fail(f"{row.name} has had {plural(len(jobs), 'attempt')}; there is no attempt {attempt}")
    return jobs[attempt - 1]


def _copy(f: BinaryIO) -> bool:
    """Copy what `f` has from its position on to stdout; True if there was something."""
    wrote = False
    while chunk := f.read(_CHUNK):
        sys.stdout.buffer.write(chunk)
        wrote = True
    if wrote:
        sys.stdout.buffer.flush()
    return wrote


def _follow(store: Store, ws: Path, name: str, attempt: int | None, job_id: str | None,
            stderr: bool) -> None:  # fmt: skip
    """Print the file as it grows until the instance has ended (or can no longer move: no
    engine runs it). Without --attempt, a retry's new file is followed too."""
    current: Path | None = None
    f: BinaryIO | None = None
    try:
        while True:
            row = store.instances([name])[0]
            out_file, err_file = output_files(ws, row, job_id if attempt else row.job_id)
            path = err_file if stderr else out_file
            if path != current and path.is_file():
                if f is not None:
                    _copy(f)
                    f.close()
                    err.print(f"-- {path.name} --", markup=False)
                f, current = open(path, "rb"), path  # noqa: SIM115 - kept open while following
            if f is not None:
                _copy(f)
            stuck = row.state not in IN_FLIGHT and engine_holder(ws) is None
            later = attempt is not None and row.attempts > attempt  # that attempt is over
            if row.state in TERMINAL or stuck or later:
                if f is not None:
                    _copy(f)
                return
            time.sleep(FOLLOW_EVERY)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        if f is not None:
            f.close()


def register(app: typer.Typer) -> None:
    app.command()(logs)


__all__ = ["register"]
