"""Maestro-style commands: run, status, cancel, resume, update.

Flags and meanings follow `maestro 1.2.1`; the differences are deliberate and documented in each
command's help (no `rmtree` on `-o`, `update` accepts 0, local instances run in parallel).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from reconciler.cli import rerun, status
from reconciler.cli.common import (
    EXIT_OK,
    MAX_COUNT,
    MAX_INSTANCES,
    SECONDS_HELP,
    fail,
    load_or_exit,
    out,
    parse_pargs,
    people_to_stderr,
    print_json,
    seconds,
    u,
)
from reconciler.cli.progress import StudyProgress
from reconciler.engine import api
from reconciler.engine.converge import outcome_code
from reconciler.engine.setup import (
    RunSettings,
    SetupError,
    choose_root,
    create_workspace,
    existing_workspace,
)
from reconciler.plan.states import IN_FLIGHT, State
from reconciler.record.outputs import counts_text, plural, study_failures
from reconciler.record.store import RecordError, Store
from reconciler.spec.printable import printable

MOVING = {str(s) for s in IN_FLIGHT | {State.INITIALIZED}}

DIRS = typer.Argument(..., metavar="DIR", help="Study workspace directories.")


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


def _open(root: Path, given: Path | None = None) -> Store:
    if not root.exists():
        fail(f"{given or root} does not exist")
    try:
        return Store.open(root)
    except RecordError as e:
        fail(str(e))


def ended(store: Store) -> str | None:
    """How the study ended ("the study ended FINISHED", "... ended: 5 FINISHED, 1 FAILED"), or
    None while anything waits or runs."""
    counts = store.counts()
    if set(counts) & MOVING:
        return None
    if set(counts) == {str(State.FINISHED)}:
        return "the study ended FINISHED"
    return f"the study ended: {counts_text(counts)}"


def _launch(
    root: Path, *, fg: bool, slots: int | None, as_json: bool = False,
    info: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """Run the engine here (--fg; exit code = the study's) or detached (returns at once)."""
    info = {"workspace": str(root), **(info or {})}
    holder = api.engine_holder(root)
    if holder is not None:
        fail(str(api.LockHeld(root / ".reconciler" / "engine.lock", holder)))
    if not fg:
        try:
            pid = api.start_background(root, slots=slots)
        except OSError as e:  # logs/ replaced by a symlink, or not writable
            fail(f"cannot start the engine of {root}: {e.strerror or e}")
        out.print(f"Engine started in the background (pid {pid}) for {u(root)}")
        out.print(f"Follow it with: reconciler status {u(root)}")
        if as_json:
            print_json({**info, "foreground": False, "engine_pid": pid})
        raise typer.Exit(EXIT_OK)
    store = _open(root)
    name = store.study()["name"]
    store.close()
    try:
        with StudyProgress(out, live=out.is_terminal) as progress:
            outcome = api.run_engine(root, slots=slots, on_pass=progress.study(name))
    except (api.LockHeld, api.EngineStopped) as e:
        fail(str(e))
    report = study_failures(root)
    out.print(f"Study ended: {counts_text(outcome.counts)} ({u(root)})")
    for line in report.lines():  # instance names and their output: user text
        out.print(printable(line), markup=False, style="red")
    if as_json:
        print_json({**info, "foreground": True, "engine_pid": None, "exit_code": outcome.code,
                    "counts": outcome.counts, "failures": report.to_json()})  # fmt: skip
    raise typer.Exit(outcome.code)


def run(
    spec: Path = typer.Argument(..., help="The study spec (YAML)."),
    autoyes: bool = typer.Option(
        False, "-y", "--autoyes", help="Launch (or apply a changed spec's plan) without asking."
    ),
    autono: bool = typer.Option(False, "-n", "--autono", help="Set nothing up; exit."),
    sleeptime: float = typer.Option(
        60,
        "-s",
        "--sleeptime",
        callback=seconds(),
        help=f"Poll interval for scheduler adapters, {SECONDS_HELP} (local runs react at once).",
    ),
    throttle: int = typer.Option(
        0, "-t", "--throttle", min=0, max=MAX_COUNT, help="Max instances in flight (0 = no limit)."
    ),
    rlimit: int = typer.Option(
        1,
        "-r",
        "--rlimit",
        min=0,
        max=MAX_COUNT,
        help="Restarts of a timed-out step with `restart:` (0 = unlimited).",
    ),
    attempts: int = typer.Option(
        1,
        "-a",
        "--attempts",
        min=1,
        max=MAX_COUNT,
        help="Tries per instance (failed ones are retried).",
    ),
    outdir: Path | None = typer.Option(
        None,
        "-o",
        "--out",
        help="Exact workspace directory. An existing one of this study is resumed (a changed "
        "spec: converged to it, after showing the plan), never deleted.",
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
        None,
        "--slots",
        min=1,
        max=MAX_COUNT,
        help="Local parallel instances (default: number of CPUs).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the outcome as JSON on stdout (messages go to stderr)."
    ),
    max_instances: int = MAX_INSTANCES,
) -> None:
    """Set up a study workspace and run it (in the background unless --fg).

    Git dependencies are cloned into `<path>/<name>` (as Maestro does), pinned to a commit
    recorded in meta/ and the record; path dependencies must exist first. On an existing
    workspace of the same study (-o DIR), an unchanged spec resumes; a changed one shows the
    plan (what reruns and why), asks (or -y; without a terminal -y is required, else exit 2),
    and converges the workspace to it as `apply` does: only changed instances and their
    descendants rerun.
    """
    if as_json:
        people_to_stderr()
    if autoyes and autono:
        fail("-y/--autoyes and -n/--autono exclude each other; give one of them.")
    args = parse_pargs(pargs, pgen)
    # every spec error, before anything is created
    study = load_or_exit(spec, pgen, pargs, hashws=hashws, max_instances=max_instances)
    cwd = Path.cwd()
    root = choose_root(study, outdir, cwd)
    try:
        resume = existing_workspace(root, study.name)
    except SetupError as e:
        fail(str(e))
    info = {"study": study.name, "workspace": str(root), "resumed": resume, "dry": dry}
    if autono:
        out.print("Nothing was set up (-n).")
        if as_json:
            print_json({**info, "set_up": False})
        raise typer.Exit(EXIT_OK)
    settings = {"throttle": throttle, "rlimit": rlimit, "sleep": sleeptime, "attempts": attempts}
    # the text validated, not a second read of the file (which may have changed since)
    spec_text = study.text if study.text is not None else (cwd / spec).read_text()
    pgen_info = None if pgen is None else {"path": str(pgen.resolve()), "pargs": args}
    rs = RunSettings(
        dry=dry, hashws=hashws, usetmp=usetmp, slots=slots or 0, pgen=pgen_info, **settings
    )  # type: ignore[arg-type]
    if resume and rerun.unchanged(root, spec_text, pgen_info):
        _confirm("resume", root, autoyes or dry, as_json)
        api.update(root, **settings)
        out.print(f"Resuming the existing workspace {u(root)}")
    elif resume:
        shas = rerun.pin_dependencies(study, root, cwd)
        study = rerun.pinned(study, spec, pgen, pargs, hashws, shas, max_instances)
        go_on = rerun.converge(root, study, shas, spec_text=spec_text,
                               spec_path=(cwd / spec).resolve(), cwd=cwd, settings=settings,
                               run_settings=rs, autoyes=autoyes, dry=dry,
                               ask_on_stderr=as_json)  # fmt: skip
        if not go_on:  # --dry, or the plan declined: nothing was changed
            if as_json:
                print_json({**info, "set_up": False})
            raise typer.Exit(EXIT_OK)
    else:
        shas = rerun.pin_dependencies(study, root, cwd)  # paths checked, git fetched and pinned
        study = rerun.pinned(study, spec, pgen, pargs, hashws, shas, max_instances)
        _confirm("launch", root, autoyes or dry, as_json)
        try:
            create_workspace(study, root, rs, cwd=cwd, dependency_shas=shas)
        except SetupError as e:
            fail(str(e))
        out.print(f"Study '{u(study.name)}' set up in {u(root)}")
    if dry:
        out.print("Dry run: scripts written, nothing run. `reconciler resume` would run them.")
        if as_json:
            print_json({**info, "set_up": True})
        raise typer.Exit(EXIT_OK)
    _launch(root, fg=fg, slots=slots, as_json=as_json, info={**info, "set_up": True})


def _confirm(verb: str, root: Path, yes: bool, on_stderr: bool) -> None:
    """Maestro's prompt (asked at a terminal only); no: exit 0, nothing set up."""
    if yes or not sys.stdin.isatty():
        return
    question = f"Would you like to {verb} the study in {root}?"
    if not typer.confirm(question, default=True, err=on_stderr):
        raise typer.Exit(EXIT_OK)


def cancel(
    dirs: list[Path] = DIRS,
    step: list[str] | None = typer.Option(
        None, "--step", help="Cancel only this step's instances (repeatable)."
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask."),
    as_json: bool = typer.Option(False, "--json", help="Print what was cancelled as JSON."),
) -> None:
    """Cancel studies (or some steps): running jobs are killed, nothing new starts.

    A study (or step) whose instances have all ended has nothing to cancel: that is said, and
    nothing changes (exit 0).
    """
    roots = [d.resolve() for d in dirs]
    live: dict[Path, int] = {}  # instances that have not ended, per study
    for d, root in zip(dirs, roots, strict=True):
        store = _open(root, d)
        try:
            known = store.step_counts()
            unknown = sorted(set(step or []) - set(known))
            if unknown:
                fail(f"{root}: no step named {', '.join(unknown)} (steps: {', '.join(known)})")
            live[root] = store.count(states=sorted(MOVING), steps=step)
        finally:
            store.close()
    if not yes and sys.stdin.isatty() and any(live.values()):
        what = f"step(s) {', '.join(step)} of " if step else ""
        question = f"Cancel {what}{plural(len(roots), 'study', 'studies')}?"
        if not typer.confirm(question, default=False, err=as_json):
            raise typer.Exit(EXIT_OK)
    report = []
    for root in roots:
        n = live[root]
        if n:
            api.cancel(root, step)
            message = f"cancelling {plural(n, 'instance')} that had not ended"
        else:
            store = _open(root)
            how = ended(store) if not step else None
            store.close()
            message = "nothing to cancel: " + (
                how or f"every instance of {', '.join(step or [])} has ended"
            )
        report.append({"workspace": str(root), "cancelled": n, "nothing_to_cancel": not n,
                       "message": message})  # fmt: skip
        if not as_json:
            out.print(printable(f"{root}: {message}"), markup=False)
    if as_json:
        print_json(report)


def resume(
    root_dir: Path = typer.Argument(..., metavar="DIR", help="A study workspace."),
    fg: bool = typer.Option(False, "--fg", help="Run in the foreground (also `-fg`)."),
    slots: int | None = typer.Option(
        None, "--slots", min=1, max=MAX_COUNT, help="Local parallel instances."
    ),
) -> None:
    """Carry a study on after its engine stopped; nothing that finished runs again.

    Finished instances are kept, running ones are re-attached, lost ones are retried per
    policy. A study that has ended has nothing to resume: that is said and no engine starts
    (exit 0; with --fg the study's code, as run --fg: 0 finished, 2 failed, 3 cancelled).
    """
    root = root_dir.resolve()
    store = _open(root, root_dir)
    how, counts = ended(store), store.counts()
    if how is None and store.study()["dry"]:
        store.update_study(control=False, dry=0)
    store.close()
    if how is not None:
        out.print(printable(f"{root}: nothing to resume: {how}"), markup=False)
        raise typer.Exit(outcome_code(counts) if fg else EXIT_OK)  # --fg: the study's code
    _launch(root, fg=fg, slots=slots)


def update(
    dirs: list[Path] = DIRS,
    throttle: int | None = typer.Option(
        None, "--throttle", min=0, max=MAX_COUNT, help="0 = no limit."
    ),
    rlimit: int | None = typer.Option(
        None, "--rlimit", min=0, max=MAX_COUNT, help="0 = unlimited."
    ),
    sleep: float | None = typer.Option(
        None, "--sleep", callback=seconds(), help=f"Poll interval, {SECONDS_HELP}."
    ),
) -> None:
    """Change a running study's throttle, restart limit or poll interval (0 is a value).

    A study that has ended is left as it is (said, exit 0).
    """
    if throttle is None and rlimit is None and sleep is None:
        fail("update needs at least one of --throttle, --rlimit, --sleep.")
    for d in dirs:
        root = d.resolve()
        store = _open(root, d)
        how = ended(store)
        store.close()
        if how is not None:
            out.print(printable(f"{root}: nothing to update: {how}"), markup=False)
            continue
        now = api.update(root, throttle=throttle, rlimit=rlimit, sleep=sleep)
        shown = ", ".join(f"{k}={now[k]:g}" for k in ("throttle", "rlimit", "sleep"))
        out.print(f"{u(root)}: {shown}")


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(status.status)
    app.command()(cancel)
    app.command()(resume)
    app.command()(update)


__all__ = ["normalize_maestro_argv", "register"]
