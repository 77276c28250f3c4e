"""GitOps commands: plan, apply, history, reproduce (and the repo view of `status`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.table import Table

from reconciler.cli import markdown as md
from reconciler.cli.common import (
    EXIT_CHANGES,
    EXIT_OK,
    MAX_INSTANCES,
    env_max_instances,
    err,
    fail,
    fit_width,
    out,
    people_to_stderr,
    print_json,
    say_lines,
    seconds,
    table_console,
    u,
)
from reconciler.cli.planview import plan_table, summary
from reconciler.cli.progress import StudyProgress
from reconciler.cli.status_view import iso
from reconciler.record.outputs import FailureReport
from reconciler.spec.printable import printable

if TYPE_CHECKING:
    from reconciler.gitops.reconcile import Reconciler, StudyPlan

# GitPython is imported when a GitOps command runs, not when `reconciler` starts: it refuses to
# import without a `git` on PATH, and `run`, `validate` and the rest need no git at all.

REPO = typer.Option(".", "--repo", help="The git repository of specs (or a directory in it).")
REV = typer.Option(None, "--rev", help="The revision to plan (default: the current branch's tip).")
ROOT = typer.Option(None, "--root", help="Where study workspaces live (default: "
                    "<repo>/.reconciler/studies).")  # fmt: skip
SPECS = typer.Option("specs", "--specs", help="The specs directory inside the repo.")
WORKTREE = typer.Option(False, "--worktree", help="Use the work tree's specs, committed or not.")
ALLOW = typer.Option(
    None, "--allow-workspace", metavar="DIR",
    help="Let reconcile.workspace place a study in DIR (or below it), outside the studies root "
    "(repeatable; or `git config --add reconciler.allowWorkspace DIR`).",
)  # fmt: skip
SELF_HEAL = typer.Option(
    False, "--self-heal", help="Rerun finished instances whose directory is gone (drift), and "
    "their descendants, this once (reconcile.self_heal: true does it always).",
)  # fmt: skip
HEAL_HINT = (
    "`reconciler apply --self-heal` reruns them and their descendants (or set "
    "reconcile.self_heal: true in the spec)"
)


def _reconciler(
    repo: Path,
    specs: str,
    root: Path | None,
    worktree: bool,
    allow: list[Path] | None = None,
    max_instances: int | None = None,
) -> Reconciler:
    if not repo.exists():
        fail(f"{repo} does not exist")
    try:
        from reconciler.gitops.reconcile import Reconciler
        from reconciler.gitops.repo import RepoError
    except ImportError as e:  # GitPython without git
        fail(f"GitOps commands need git on PATH: {' '.join(str(e).split())[:200]}")
    try:
        limit = max_instances if max_instances is not None else env_max_instances()
        return Reconciler(repo, specs=specs, root=root, worktree=worktree, allow=allow or (),
                          max_instances=limit)  # fmt: skip
    except RepoError as e:
        fail(str(e))


def _plan(
    rec: Reconciler, rev: str | None, heal: bool = False
) -> tuple[str | None, list[StudyPlan]]:
    from reconciler.gitops.repo import RepoError

    try:
        return rec.plan(rev, heal=heal)
    except RepoError as e:
        fail(str(e))


def _missing(p: StudyPlan) -> int:
    from reconciler.plan.actions import Kind

    return len(p.plan.by_kind(Kind.MISSING)) if p.plan else 0


def plan_json(sha: str | None, plans: list[StudyPlan]) -> dict[str, Any]:
    return {
        "revision": sha,
        "studies": [
            {
                "study": p.name,
                "workspace": str(p.workspace) if p.workspace else None,
                "sync": p.sync,
                "error": p.error,
                "warning": p.warning,
                "counts": p.plan.counts() if p.plan else {},
                "actions": [a.to_json() for a in p.plan.changes] if p.plan else [],
            }
            for p in plans
        ],
    }


def _markdown(sha: str | None, plans: list[StudyPlan], against: str | None) -> str:
    """The PR comment. Every piece of user text goes through `md` (see markdown.py)."""
    head = f"### reconciler plan for {md.code((sha or 'worktree')[:12])}"
    lines = [head + (f" against {md.code(against)}" if against else ""), ""]
    for p in plans:
        name = md.text(p.name)
        if p.error:
            lines += [f"**{name}**: invalid, nothing would change", "", md.block(p.error), ""]
            continue
        changes = p.plan.changes if p.plan else []
        if not changes:
            lines += [f"**{name}**: in sync, nothing to do", ""]
            continue
        head = f"**{name}**: {summary(p.plan.counts() if p.plan else {})}"
        lines += [head, "", "| action | instance | reason |", "|---|---|---|"]
        lines += [
            f"| {md.text(a.kind)} | {md.code(a.instance)} | {md.text(a.reason)} |"
            for a in changes[:200]
        ]
        if len(changes) > 200:
            lines.append(f"| … | {len(changes) - 200} more | |")
        lines.append("")
        if _missing(p):
            lines += [f"{_missing(p)} missing (drift): {HEAL_HINT}.", ""]
    return "\n".join(lines)


def plan(
    repo: Path = REPO,
    rev: str | None = REV,
    root: Path | None = ROOT,
    specs: str = SPECS,
    worktree: bool = WORKTREE,
    against: str | None = typer.Option(
        None, "--against", help="Plan REV as if REF were applied (for a pull request)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    fmt: str = typer.Option("text", "--format", help="text or markdown."),
    allow: list[Path] | None = ALLOW,
    self_heal: bool = SELF_HEAL,
    max_instances: int = MAX_INSTANCES,
) -> None:
    """What applying a revision would do, per study, with a reason for every action.

    Exit codes: 0 nothing to do, 1 changes (drift included), 2 error (a study that cannot be
    applied: an invalid spec, a workspace it may not have, a record that cannot be read).
    """
    if fmt not in ("text", "markdown"):
        fail(f"--format must be text or markdown, not {fmt!r}")
    rec = _reconciler(repo, specs, root, worktree, allow, max_instances)
    if against is not None:
        from reconciler.gitops.against import plan_against
        from reconciler.gitops.repo import RepoError

        try:
            sha, plans = plan_against(rec, rev, against)
        except RepoError as e:
            fail(str(e))
    else:
        sha, plans = _plan(rec, rev, self_heal)
    if as_json:
        print_json(plan_json(sha, plans))
    elif fmt == "markdown":
        out.print(_markdown(sha, plans, against), markup=False, highlight=False)
    else:
        _print_text(sha, plans)
    if any(p.error for p in plans):
        raise typer.Exit(2)
    raise typer.Exit(EXIT_CHANGES if any(p.plan and p.plan.changes for p in plans) else EXIT_OK)


def _print_text(sha: str | None, plans: list[StudyPlan]) -> None:
    out.print(f"revision {sha or 'worktree'}")
    for p in plans:
        if p.error:
            out.print(f"[bold]{u(p.name)}[/]: [red]not applicable[/] — nothing changes")
            say_lines(err, p.error)
            continue
        if p.warning:
            say_lines(err, f"{p.name}: {p.warning}")
        changes = p.plan.changes if p.plan else []
        if not changes:
            out.print(f"[bold]{u(p.name)}[/]: [green]Synced[/], nothing to do")
            continue
        out.print(plan_table(f"{p.name}: {p.sync}", changes))
        if _missing(p):
            out.print(f"{_missing(p)} missing (drift): {HEAL_HINT}", markup=False)


def apply(
    repo: Path = REPO,
    rev: str | None = REV,
    root: Path | None = ROOT,
    specs: str = SPECS,
    worktree: bool = WORKTREE,
    wait: bool = typer.Option(False, "--wait", help="Stay until every study has ended."),
    push: bool = typer.Option(False, "--push", help="Push the provenance notes to origin."),
    allow: list[Path] | None = ALLOW,
    self_heal: bool = SELF_HEAL,
    lock_timeout: float = typer.Option(
        600.0,
        "--lock-timeout",
        callback=seconds(),
        help="Seconds to wait while another apply (or the watcher) holds the repository lock: "
        "0 to 86400 (one day).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print each study's outcome as JSON on stdout (messages: stderr)."
    ),
    max_instances: int = MAX_INSTANCES,
) -> None:
    """Converge every study's workspace to a revision: submit, cancel, archive, record.

    One apply at a time per repository: while another holds the repository lock, this one
    waits (saying who holds it) and then plans from what the other left. With --wait the lock
    is held only while applying, not while the studies run; they run here, with progress (a
    bar per study on a terminal, a line now and then when piped), and each study's outcome ends
    the output: its counts by state and its failed instances with the end of their stderr.

    Exit codes: 0 applied (or nothing to do), 2 a study could not be applied (it keeps its last
    applied revision; the others are applied), a study ended with failed instances (--wait),
    or the lock did not come free within --lock-timeout.
    """
    from reconciler.gitops.health import health
    from reconciler.gitops.reconcile import STUDY_ERRORS
    from reconciler.gitops.recorded import one_line
    from reconciler.gitops.repolock import RepoLocked, describe

    if as_json:
        people_to_stderr()
    rec = _reconciler(repo, specs, root, worktree, allow, max_instances)

    def waiting(holder: dict[str, Any]) -> None:
        err.print(f"waiting: {describe(holder)} holds the repository lock", markup=False)

    applied: list[StudyPlan] = []
    results: list[dict[str, Any]] = []
    ok = True
    try:
        with rec.lock("apply", timeout=lock_timeout, on_wait=waiting):
            sha, plans = _plan(rec, rev, self_heal)  # planned under the lock: nobody else writes
            for p in plans:
                try:
                    outcome = rec.apply(p, sha, start=not wait)
                except STUDY_ERRORS as e:  # that study's trouble; the others go on
                    outcome = f"not applied: {one_line(e)}"
                good = not outcome.startswith("not applied")
                ok = ok and good
                if good and p.workspace is not None:
                    applied.append(p)
                colour = "green" if good else "red"
                out.print(f"[bold]{u(p.name)}[/]: [{colour}]{u(outcome)}[/]")
                results.append({"study": p.name, "workspace": str(p.workspace or ""),
                                "applied": good, "outcome": outcome})  # fmt: skip
    except RepoLocked as e:
        fail(str(e))
    pushed = _push(rec, sha, push)
    if wait:
        with StudyProgress(out, live=out.is_terminal) as progress:
            for p in applied:
                try:
                    rec.finish(p, on_pass=progress.study(p.name))
                except STUDY_ERRORS as e:
                    ok = False
                    say_lines(err, f"{p.name}: {one_line(e)}")
        _, after = _plan(rec, sha)
        by_name = {a.name: a for a in after}
        reports: dict[str, FailureReport | None] = {}
        for r in results:
            a = by_name.get(r["study"])
            report = _failures(a) if r["applied"] and a is not None else None
            if r["applied"] and a is not None:
                reports[r["study"]] = report
            r.update({"health": health(a) if a is not None else None,
                      "counts": a.counts if a is not None else {},
                      "failures": report.to_json() if report is not None else None})  # fmt: skip
            ok = ok and r["health"] != "Degraded"
        if not as_json:
            _print_outcomes(results, reports)
    if as_json:
        print_json({"revision": sha, "waited": wait, "pushed": pushed, "studies": results})
    raise typer.Exit(EXIT_OK if ok else 2)


def _failures(p: StudyPlan) -> FailureReport | None:
    """The failure report of a study after `apply --wait` (None: its record cannot be read;
    the plan already says why)."""
    from reconciler.record.outputs import study_failures
    from reconciler.record.store import RecordError, is_workspace

    if p.workspace is None or not is_workspace(p.workspace):
        return None
    try:
        return study_failures(p.workspace)
    except (RecordError, OSError):
        return None


def _print_outcomes(results: list[dict[str, Any]], reports: dict[str, FailureReport | None]
                    ) -> None:  # fmt: skip
    from reconciler.record.outputs import counts_text

    out.print("")
    for r in results:
        if r["study"] not in reports:
            continue
        colour = "red" if r["health"] == "Degraded" else "green"
        out.print(f"[bold]{u(r['study'])}[/] ended [{colour}]{r['health']}[/]: "
                  f"{counts_text(r['counts'])}")  # fmt: skip
        for line in (reports[r["study"]] or FailureReport(Path())).lines():
            out.print(printable("  " + line), markup=False, style="red")  # job output too


def _push(rec: Reconciler, sha: str | None, push: bool) -> bool:
    from reconciler.gitops import provenance

    if push and sha is not None:
        try:
            provenance.push_notes(rec.source.repo)
        except provenance.ProvenanceError as e:
            fail(str(e))
        return True
    return False


def repo_status(
    repo: Path, root: Path | None, specs: str, as_json: bool, allow: list[Path] | None = None
) -> None:
    """`status --repo`: every study's sync and health, revisions and counts."""
    from reconciler.gitops.health import health
    from reconciler.gitops.reconcile import STUDY_ERRORS
    from reconciler.gitops.recorded import one_line

    rec = _reconciler(repo, specs, root, False, allow)
    sha, plans = _plan(rec, None)
    settled = False
    for p in plans:  # studies that ended since: record them, then read everything again
        try:
            settled = rec.settle(p) or settled
        except STUDY_ERRORS as e:  # e.g. a read-only record: shown as its error below
            p.warning = p.warning or one_line(e)
    if settled:
        sha, plans = _plan(rec, None)
    rows = []
    for p in plans:
        r = p.record or {}
        rows.append({
            "study": p.name, "sync": p.sync, "health": health(p),
            "applied_revision": r.get("last_applied_revision"),
            "attempted_revision": r.get("last_attempted_revision"),
            "error": p.error or p.warning or r.get("last_error"), "counts": p.counts,
            "missing": p.missing, "workspace": str(p.workspace) if p.workspace else None,
        })  # fmt: skip
    if as_json:
        print_json({"revision": sha, "studies": rows})
        return
    table = Table(title=f"{u(rec.source.root)} @ {(sha or 'worktree')[:12]}", title_justify="left")
    for col in ("study", "sync", "health", "applied", "attempted", "instances"):
        table.add_column(col, overflow="fold")
    for row in rows:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(row["counts"].items())) or "—"
        table.add_row(u(row["study"]), row["sync"], row["health"],
                      (row["applied_revision"] or "—")[:12],
                      (row["attempted_revision"] or "—")[:12], counts)  # fmt: skip
    out.print(table)
    for row in rows:
        if row["error"]:
            say_lines(err, f"{row['study']}: {row['error']}")
        if row["missing"]:
            say_lines(err, f"{row['study']}: {len(row['missing'])} missing (drift): {HEAL_HINT}")


def revision_json(r: dict[str, Any]) -> dict[str, Any]:
    """A row of the record's revision table with clean types: ISO times, a boolean, and the
    plan's counts (or the refusal's error) and the outcome as objects."""
    applied = bool(r["applied"])
    detail: dict[str, Any]
    try:
        detail = json.loads(r["detail"]) if applied and r["detail"] else {}
    except ValueError:  # written by hand, or by an older version
        detail = {"text": r["detail"]}
    if not applied:
        detail = {"error": r["detail"]}
    return {
        "revision": r["revision"],
        "attempted": iso(r["attempted"]),
        "applied": applied,
        "detail": detail,
        "ended": iso(r["ended"]),
        "outcome": json.loads(r["outcome"]) if r["outcome"] else None,
    }


def history(
    study: str = typer.Argument(..., help="The study name."),
    repo: Path = REPO,
    root: Path | None = ROOT,
    specs: str = SPECS,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The revisions applied to a study (and refused), with their plan, outcome and times.

    --json prints a list of {revision, attempted, applied, detail, ended, outcome}: times in ISO
    8601, `applied` a boolean, `detail` the plan's counts by action (or {"error": …} for a
    refused revision) and `outcome` the counts by state when the study ended.
    """
    from reconciler.record.outputs import counts_text
    from reconciler.record.store import RecordError, Store

    rec = _reconciler(repo, specs, root, False)
    ws = rec.workspace_of(study, None)
    try:
        store = Store.open(ws)
    except RecordError:
        fail(f"no study '{study}' has been applied under {rec.root}")
    revs = [revision_json(r) for r in store.revisions()]
    store.close()
    if as_json:
        print_json(revs)
        return
    table = Table(title=f"history of {u(study)}", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("revision", "applied", "attempted", "outcome"):
        table.add_column(col, overflow="fold", no_wrap=col != "outcome")
    for r in revs:
        if not r["applied"]:
            what = f"[red]refused:[/] {u(r['detail']['error'])}"
        elif r["outcome"] is not None:
            ended = _when(r["ended"])
            same_day = ended[:10] == _when(r["attempted"])[:10]
            what = f"{counts_text(r['outcome'])} (ended {ended[11:] if same_day else ended})"
        else:
            plan = ", ".join(f"{n} {k}" for k, n in r["detail"].items() if n and k != "keep")
            what = "running" + (f" ({plan})" if plan else "")
        applied = "yes" if r["applied"] else "[red]no[/]"
        table.add_row(r["revision"][:12], applied, _when(r["attempted"]), what)
    table_console(fit_width()).print(table)


def reproduce(
    rev: str = typer.Argument(..., help="The commit whose run to reproduce."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="A fresh directory to run into."),
    study: str | None = typer.Option(
        None, "--study", help="The study (if the commit has several)."
    ),
    repo: Path = REPO,
    specs: str = SPECS,
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    max_instances: int = MAX_INSTANCES,
) -> None:
    """Run an applied commit's study again in a fresh workspace and compare fingerprints.

    The study is rebuilt from the specs at REV with the dependency SHAs recorded for REV, run
    into the fresh workspace, and every fingerprint is compared with the recorded one.

    Exit codes: 0 identical fingerprints and every instance finished, 2 otherwise.
    """
    from reconciler import deps
    from reconciler.engine.api import EngineStopped, LockHeld
    from reconciler.engine.setup import SetupError
    from reconciler.gitops import provenance
    from reconciler.gitops.repo import RepoError
    from reconciler.gitops.reproduce import reproduce as run_again

    if as_json:
        people_to_stderr()
    rec = _reconciler(repo, specs, None, False, max_instances=max_instances)
    try:
        r = run_again(rec, rev, study, out_dir)
    except (RepoError, deps.DependencyError, provenance.ProvenanceError, SetupError) as e:
        fail(str(e))
    except (LockHeld, EngineStopped) as e:  # the workspace exists; `resume` carries it on
        fail(str(e))
    if as_json:
        print_json({
            "study": r.study, "revision": rev, "workspace": str(r.workspace),
            "identical": r.identical, "finished": r.finished, "matched": len(r.matched),
            "differ": [{"name": n, "recorded": a, "now": b} for n, a, b in r.differ],
            "unrecorded": r.unrecorded, "counts": r.counts,
        })  # fmt: skip
        raise typer.Exit(EXIT_OK if r.identical and r.finished else 2)
    out.print(f"{u(r.study)}: {len(r.matched)} of "
              f"{len(r.matched) + len(r.differ) + len(r.unrecorded)} fingerprints identical to "
              f"{u(rev)}'s; ran into {u(r.workspace)}: "
              + ", ".join(f"{n} {s}" for s, n in sorted(r.counts.items())))  # fmt: skip
    for name, then, now in r.differ:
        err.print(f"  {u(name)}: recorded {u(then)}, now {u(now)}")
    for name in r.unrecorded:
        err.print(f"  {u(name)}: not in the recorded run")
    raise typer.Exit(EXIT_OK if r.identical and r.finished else 2)


def _when(t: str | None) -> str:
    return t.replace("T", " ")[:19] if t else "—"


def register(app: typer.Typer) -> None:
    app.command()(plan)
    app.command()(apply)
    app.command()(history)
    app.command()(reproduce)
