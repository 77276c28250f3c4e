"""Recording how an applied revision ended: its history row and its provenance note.

An apply writes the note `outcome: applied`; once the study has ended (nothing in flight, no
engine), `settle` records the outcome once — in the revision's history row and as the note's
terminal outcome (`FINISHED`, or `ended: …`). A commit that is no longer in the repository
(history rewritten) cannot carry a note: the history row is still ended, and the study shows
why its note was not written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import git
from gitdb.exc import BadName, BadObject

from reconciler.engine import api
from reconciler.gitops import provenance
from reconciler.gitops.repo import SpecSource
from reconciler.plan.states import IN_FLIGHT, State
from reconciler.record.store import Store
from reconciler.spec import SpecError, Study, load_study_text

if TYPE_CHECKING:
    from reconciler.gitops.reconcile import StudyPlan

WAITING = {str(s) for s in IN_FLIGHT | {State.INITIALIZED}}


def commit_exists(repo: git.Repo, sha: str) -> bool:
    """`sha` names a commit of the repository (a rewritten history may have lost it)."""
    try:
        return repo.odb.info(bytes.fromhex(sha)).type == b"commit"
    except (ValueError, BadName, BadObject):
        return False


def settle(source: SpecSource, sp: StudyPlan) -> bool:
    """If the study ended since its last apply, record that once: the revision's outcome and a
    provenance note on the applied commit. True when something was recorded."""
    if sp.record is None or sp.workspace is None or api.engine_holder(sp.workspace) is not None:
        return False
    store = Store.open(sp.workspace)
    try:
        revs = [r for r in store.revisions() if r["applied"]]
        counts = store.counts()
        if not revs or revs[-1]["ended"] is not None or WAITING & set(counts):
            return False
        store.end_revision(counts)
        record = store.study()
    finally:
        store.close()
    rev = revs[-1]["revision"]
    if rev == "worktree":
        return True
    if not commit_exists(source.repo, rev):
        sp.warning = (
            f"the applied revision {rev[:12]} is no longer in the repository (history "
            "rewritten?): how it ended is in `history`, but no note could be written"
        )
        return True
    try:
        applied = load_study_text(
            record["spec_text"], sp.spec.path if sp.spec else f"{sp.name}.yaml",
            dependency_shas=record["dependency_shas"],
            max_instances=None,  # the record's own spec: counted when it was applied
        )  # fmt: skip
    except SpecError:
        return True
    provenance_note(source, sp.workspace, applied, rev, record["spec_blob"] or "",
                    record["dependency_shas"], "ended")  # fmt: skip
    return True


def provenance_note(
    source: SpecSource,
    ws: Path,
    study: Study,
    sha: str | None,
    blob: str,
    shas: dict[str, str],
    outcome: str,
) -> None:
    """Write this study's entry of the commit's note (not for work-tree revisions). `outcome`
    "ended" is written as the study's terminal state."""
    if sha is None:
        return
    store = Store.open(ws)
    try:
        rows = [
            {
                "name": r.name,
                "job_id": r.job_id,
                "state": str(r.state),
                "exit_code": r.exit_code,
                "attempts": r.attempts,
                "submit_time": r.submit_time,
                "start_time": r.start_time,
                "end_time": r.end_time,
            }
            for r in store.instances()
        ]
        scheduler = store.study()["adapter"]
        if outcome == "ended":
            counts = store.counts()
            outcome = (
                "FINISHED"
                if set(counts) <= {"FINISHED"}
                else "ended: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            )
    finally:
        store.close()
    entry = provenance.snapshot(study, sha, blob, shas, rows, scheduler, outcome)
    provenance.write_note(source.repo, sha, entry)


__all__ = ["commit_exists", "provenance_note", "settle"]
