"""Maestro-style commands: run, status, cancel, resume, update.

Flags and meanings follow `maestro 1.2.1`; the differences are deliberate and documented in each
command's help (no `rmtree` on `-o`, `update` accepts 0, local instances run in parallel).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from reconciler.cli import status_view as view
from reconciler.cli.common import EXIT_OK, err, fail, load_or_exit, out, parse_pargs, print_json
from reconciler.engine import api
from reconciler.engine.setup import (
    RunSettings,
    SetupError,
    choose_root,
    create_workspace,
    existing_workspace,
)
from reconciler.plan.states import IN_FLIGHT, State
from reconciler.record.store import RecordError, Store

DIRS = typer.Argument(..., help="Study workspace directories.")
STATUS_DIRS = typer.Argument(None, help="Study workspace directories (or use --repo).")


def normalize_maestro_argv(argv: Sequence[str]) -> list[str]:
    """Maestro spells the foreground flag `-fg`; click cannot declare that, so it becomes `--fg`
    (only as a whole word, and not after a `--` end-of-options marker)."""
    out_args: list[str] = []
    ended = False
    for a in argv:
        if a == "--":
            ended = True
        out_args.append("--fg" if a == "-fg" and not ended else a)
    return out_args


def _open(root: Path) -> Store:
    try:
        return Store.open(root)
    except RecordError as e:
        fail(str(e))


def _launch(root: Path, *, fg: bool, slots: int | None) -> None:
    """Run the engine here (--fg; exit code = the study's) or detached (returns at once)."""
    holder = api.engine_holder(root)
    if holder is not None:
        fail(str(api.LockHeld(root / ".reconciler" / "engine.lock", holder)))
    if not fg:
        pid = api.start_background(root, slots=slots)
        out.print(f"Engine started in the background (pid {pid}) for {root}")
        out.print(f"Follow it with: reconciler status {root}")
        raise typer.Exit(EXIT_OK)
    store = _open(root)
    total = sum(store.counts().values())  # a count, not every row decoded
    store.close()
    try:
        if sys.stdout.isatty():
            outcome = _run_with_progress(root, total, slots)
        else:
            outcome = api.run_engine(root, slots=slots)
    except (api.LockHeld, api.EngineStopped) as e:
        fail(str(e))
    summary = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts.items()))
    out.print(f"Study ended: {summary} ({root})")
    raise typer.Exit(outcome.code)


def _run_with_progress(root: Path, total: int, slots: int | None) -> api.Outcome:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    )
    task = bar.add_task("running", total=total, detail="")

    def on_pass(counts: dict[str, int]) -> None:
        ended = sum(n for s, n in counts.items() if s not in IN_FLIGHT and s != State.INITIALIZED)
        running = sum(counts.get(s, 0) for s in IN_FLIGHT)
        bad = total - ended - running - counts.get(State.INITIALIZED, 0)
        detail = f"{running} running" + (f", {bad} failed" if bad else "")
        bar.update(task, completed=ended, detail=detail)

    with bar:
        return api.run_engine(root, slots=slots, on_pass=on_pass)


def run(
    spec: Path = typer.Argument(..., help="The study spec (YAML)."),
    autoyes: bool = typer.Option(False, "-y", "--autoyes", help="Launch without asking."),
    autono: bool = typer.Option(False, "-n", "--autono", help="Set nothing up; exit."),
    sleeptime: float = typer.Option(
        60,
        "-s",
        "--sleeptime",
        min=0,
        help="Poll interval for scheduler adapters, seconds (local runs react at once).",
    ),
    throttle: int = typer.Option(
        0, "-t", "--throttle", min=0, help="Max instances in flight (0 = no limit)."
    ),
    rlimit: int = typer.Option(
        1,
        "-r",
        "--rlimit",
        min=0,
        help="Restarts of a timed-out step with `restart:` (0 = unlimited).",
    ),
    attempts: int = typer.Option(
        1, "-a", "--attempts", min=1, help="Tries per instance (failed ones are retried)."
    ),
    outdir: Path | None = typer.Option(
        None,
        "-o",
        "--out",
        help="Exact workspace directory. An existing one of this study is resumed, never deleted.",
    ),
    dry: bool = typer.Option(False, "--dry", help="Write workspace and scripts; run nothing."),
    fg: bool = typer.Option(
        False,
        "--fg",
        help="Run in the foreground (also `-fg`); exit "
        "0 all finished, 2 failed/blocked, 3 cancelled.",
    ),
    pgen: Path | None = typer.Option(None, "-p", "--pgen", help="Parameter generator (Python)."),
    pargs: list[str] | None = typer.Option(
        None, "--pargs", help="KEY:VALUE for the generator (repeatable)."
    ),
    hashws: bool = typer.Option(
        False, "--hashws", help="Index-named instance directories (<step>_instance_<k>)."
    ),
    usetmp: bool = typer.Option(False, "--usetmp", help="Write scripts to a temporary directory."),
    slots: int | None = typer.Option(
        None, "--slots", min=1, help="Local parallel instances (default: number of CPUs)."
    ),
) -> None:
    """Set up a study workspace and run it (in the background unless --fg)."""
    if autoyes and autono:
        fail("-y/--autoyes and -n/--autono exclude each other; give one of them.")
    args = parse_pargs(pargs, pgen)
    study = load_or_exit(
        spec, pgen, pargs, hashws=hashws
    )  # every spec error, before anything is created
    cwd = Path.cwd()
    root = choose_root(study, outdir, cwd)
    try:
        resume = existing_workspace(root, study.name)
    except SetupError as e:
        fail(str(e))
    if autono:
        out.print("Nothing was set up (-n).")
        raise typer.Exit(EXIT_OK)
    if not (autoyes or dry) and sys.stdin.isatty():
        verb = "resume" if resume else "launch"
        if not typer.confirm(f"Would you like to {verb} the study in {root}?", default=True):
            raise typer.Exit(EXIT_OK)
    settings = {"throttle": throttle, "rlimit": rlimit, "sleep": sleeptime, "attempts": attempts}
    if resume:
        store = _open(root)
        if store.study()["spec_text"] != (cwd / spec).read_text():
            err.print(
                "[yellow]warning:[/] the spec differs from the one this workspace was set "
                "up with; the recorded study is resumed as it was (rerunning changed "
                "instances is `plan`/`apply`'s job)."
            )
        store.close()
        api.update(root, **settings)
        out.print(f"Resuming the existing workspace {root}")
    else:
        pgen_info = None if pgen is None else {"path": str(pgen.resolve()), "pargs": args}
        rs = RunSettings(
            dry=dry, hashws=hashws, usetmp=usetmp, slots=slots or 0, pgen=pgen_info, **settings
        )  # type: ignore[arg-type]
        try:
            create_workspace(study, root, rs, cwd=cwd)
        except SetupError as e:
            fail(str(e))
        out.print(f"Study '{study.name}' set up in {root}")
    if dry:
        out.print("Dry run: scripts written, nothing run. `reconciler resume` would run them.")
        raise typer.Exit(EXIT_OK)
    _launch(root, fg=fg, slots=slots)


def status(
    dirs: list[Path] | None = STATUS_DIRS,
    as_json: bool = typer.Option(
        False, "--json", help="Instances as JSON (keys: " + ", ".join(view.JSON_KEYS) + ")."
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
    """Show each study's instances with Maestro's status columns and a summary by state, and
    the workers of its pool when one runs.

    --json prints a list of instances for one directory, an object keyed by directory for several.
    --pool --json prints the pool (address, workers, allocation jobs) instead; null if none runs.
    """
    if repo is not None:
        from reconciler.cli.gitops import repo_status

        repo_status(repo, root, specs, as_json, allow)
        return
    if not dirs:
        fail("status needs study workspace directories (or --repo for a GitOps repo).")
    roots = [d.resolve() for d in dirs]
    for root in roots:
        try:
            view.read_rows(root)
        except RecordError as e:
            fail(str(e))
    if pool:
        _pool_status(dirs, roots, as_json)
        return
    if as_json:
        data = {
            str(d): [view.instance_json(r) for r in view.read_rows(r_)[1]]
            for d, r_ in zip(dirs, roots, strict=True)
        }
        print_json(next(iter(data.values())) if len(dirs) == 1 else data)
        return
    if watch:
        with Live(console=out, auto_refresh=False) as live:
            while True:
                live.update(_status_group(roots), refresh=True)
                if not any(view.active(r) for r in roots):
                    break
                time.sleep(1.0)
        return
    # Off a terminal rich would squeeze the table into 80 columns; give it its natural width.
    console = out if out.is_terminal else Console(highlight=False, width=1000)
    console.print(_status_group(roots))


def _pool_status(dirs: list[Path], roots: list[Path], as_json: bool) -> None:
    if as_json:
        data = {str(d): view.pool_json(r) for d, r in zip(dirs, roots, strict=True)}
        print_json(next(iter(data.values())) if len(dirs) == 1 else data)
        return
    console = out if out.is_terminal else Console(highlight=False, width=1000)
    for root in roots:
        t = view.pool_table(root)
        console.print(t if t is not None else f"{root}: no worker pool is running")


def _status_group(roots: list[Path]) -> Group:
    parts: list[RenderableType] = []
    for root in roots:
        study, rows = view.read_rows(root)
        if len(rows) > view.PLAIN_OVER:
            parts.append(Text(f"{study['name']} — {root}\n" + view.plain_table(rows)))
        else:
            parts.append(view.table(root, study, rows))
        parts.append(f"{view.summary(rows)} — {view.engine_line(root, rows)}")
        workers = view.pool_table(root)
        if workers is not None:
            parts.append(workers)
    return Group(*parts)


def cancel(
    dirs: list[Path] = DIRS,
    step: list[str] | None = typer.Option(
        None, "--step", help="Cancel only this step's instances (repeatable)."
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask."),
) -> None:
    """Cancel studies (or some steps): running jobs are killed, nothing new starts."""
    roots = [d.resolve() for d in dirs]
    for root in roots:
        store = _open(root)
        known = {r.step for r in store.instances()}
        store.close()
        unknown = sorted(set(step or []) - known)
        if unknown:
            fail(f"{root}: no step named {', '.join(unknown)} (steps: {', '.join(sorted(known))})")
    if not yes and sys.stdin.isatty():
        what = f"step(s) {', '.join(step)} of " if step else ""
        if not typer.confirm(f"Cancel {what}{len(roots)} study(ies)?", default=False):
            raise typer.Exit(EXIT_OK)
    for root in roots:
        n = api.cancel(root, step)
        out.print(f"{root}: cancellation requested for {n} instances")


def resume(
    root_dir: Path = typer.Argument(..., help="A study workspace."),
    fg: bool = typer.Option(False, "--fg", help="Run in the foreground (also `-fg`)."),
    slots: int | None = typer.Option(None, "--slots", min=1, help="Local parallel instances."),
) -> None:
    """Carry a study on after its engine stopped: finished instances are kept, running ones are
    re-attached, lost ones are retried per policy. Nothing that finished runs again."""
    root = root_dir.resolve()
    store = _open(root)
    if store.study()["dry"]:
        store.update_study(control=False, dry=0)
    store.close()
    _launch(root, fg=fg, slots=slots)


def update(
    dirs: list[Path] = DIRS,
    throttle: int | None = typer.Option(None, "--throttle", min=0, help="0 = no limit."),
    rlimit: int | None = typer.Option(None, "--rlimit", min=0, help="0 = unlimited."),
    sleep: float | None = typer.Option(None, "--sleep", min=0, help="Poll interval, seconds."),
) -> None:
    """Change a study's throttle, restart limit or poll interval while it runs (0 is a value)."""
    if throttle is None and rlimit is None and sleep is None:
        fail("update needs at least one of --throttle, --rlimit, --sleep.")
    for d in dirs:
        root = d.resolve()
        _open(root).close()
        now = api.update(root, throttle=throttle, rlimit=rlimit, sleep=sleep)
        shown = ", ".join(f"{k}={now[k]:g}" for k in ("throttle", "rlimit", "sleep"))
        out.print(f"{root}: {shown}")


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(status)
    app.command()(cancel)
    app.command()(resume)
    app.command()(update)


__all__ = ["normalize_maestro_argv", "register"]
