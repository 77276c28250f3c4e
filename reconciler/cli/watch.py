"""`reconciler watch`: follow a branch and keep every study of the repo converged to its tip."""

from __future__ import annotations

from pathlib import Path

import typer

from reconciler.cli.common import MAX_INSTANCES, fail, seconds
from reconciler.cli.gitops import ALLOW, REPO, ROOT, SPECS


def watch(
    repo: Path = REPO,
    branch: str | None = typer.Option(
        None, "--branch", help="The branch to follow (default: the current branch)."
    ),
    specs: str = SPECS,
    root: Path | None = ROOT,
    interval: float = typer.Option(
        60.0,
        "--interval",
        callback=seconds(positive=True),
        help="Seconds between full resyncs (and fetches, with --fetch): more than 0, at most "
        "86400 (one day).",
    ),
    once: bool = typer.Option(False, "--once", help="One full pass, then exit."),
    fetch: bool = typer.Option(
        False, "--fetch", help="Fetch the branch from --remote on each resync and follow that."
    ),
    remote: str = typer.Option("origin", "--remote", help="The remote --fetch reads."),
    require_signed: bool = typer.Option(
        False, "--require-signed", help="Apply only commits `git verify-commit` accepts."
    ),
    allow: list[Path] | None = ALLOW,
    json_logs: bool = typer.Option(False, "--json-logs", help="Log JSON lines (terminal, file)."),
    verbose: bool = typer.Option(False, "--verbose", help="Show every pass on the terminal."),
    max_instances: int = MAX_INSTANCES,
) -> None:
    """Follow a branch: apply each new commit, keep engines running, retry, report drift.

    Logs go to the terminal and to <repo>/.reconciler/watch.log. SIGTERM or SIGINT stops the
    watcher; engines and jobs keep running, and a restarted watcher picks them up.

    Exit codes: 0 stopped cleanly (with --once: every study applied or in sync), 2 an error
    (another watcher holds the repo, a bad option; with --once: a study was not applied).
    """
    try:
        from reconciler.gitops import watchlog
        from reconciler.gitops.watch import Watcher, WatchError
    except ImportError as e:  # GitPython without git
        fail(f"GitOps commands need git on PATH: {' '.join(str(e).split())[:200]}")
    try:
        watcher = Watcher(
            repo, branch=branch, specs=specs, root=root, interval=interval, fetch=fetch,
            remote=remote, require_signed=require_signed,
            allow=tuple(str(a) for a in allow or ()), max_instances=max_instances,
        )  # fmt: skip
        watcher.acquire()
    except WatchError as e:
        fail(str(e))
    watchlog.configure(watcher.log_file, json_logs=json_logs, verbose=verbose)
    try:
        code = watcher.run(once=once)
    finally:
        watchlog.close()
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command()(watch)
