"""Reproduce a past run: rebuild a study from the specs at a commit, with the dependency SHAs
its provenance note recorded, run it into a fresh workspace, and compare fingerprints.

It works from any clone that has the commit and the notes (`git fetch origin
'refs/notes/*:refs/notes/*'`): each git dependency's recorded commit is fetched into the
cache first (the allow-listed code `apply` uses), and only then is anything made. If any step
before the run fails, the output directory — which did not exist — does not exist afterwards,
so the same command can simply be run again.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from reconciler import deps
from reconciler.engine import api
from reconciler.engine.setup import RunSettings, create_workspace
from reconciler.gitops import provenance
from reconciler.gitops.reconcile import STATE_DIR, Reconciler
from reconciler.gitops.repo import RepoError, ensure_excluded
from reconciler.record.store import Store


@dataclass
class Reproduction:
    study: str
    workspace: Path
    matched: list[str] = field(default_factory=list)
    differ: list[tuple[str, str, str]] = field(default_factory=list)  # name, recorded, now
    unrecorded: list[str] = field(default_factory=list)  # instances the note does not have
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not self.differ and not self.unrecorded

    @property
    def finished(self) -> bool:
        return set(self.counts) <= {"FINISHED"}


def reproduce(rec: Reconciler, revision: str, study_name: str | None, out: Path) -> Reproduction:
    """Run the study of `revision` into `out` (which must not exist) and compare."""
    out = out.absolute()
    if out.exists() or out.is_symlink():
        raise RepoError(f"{out} exists; reproduce runs into a fresh directory")
    rev = rec.source.read(revision)
    if rev.sha is None:
        raise RepoError("reproduce needs a commit, not the work tree")
    specs = {f.name: f for f in rev.specs if f.name}
    if study_name is None:
        if len(specs) != 1:
            raise RepoError(f"{revision} has {len(specs)} studies ({', '.join(sorted(specs))}); "
                            "name one with --study")  # fmt: skip
        study_name = next(iter(specs))
    f = specs.get(study_name)
    if f is None:
        raise RepoError(f"no study '{study_name}' in the specs at {revision}")
    if f.study is None:
        raise RepoError(f"the spec of '{study_name}' at {revision} is invalid:\n{f.error}")
    entry = provenance.read_entry(rec.source.repo, rev.sha, study_name)
    if entry is None:
        raise RepoError(f"{rev.sha[:12]} has no provenance note for '{study_name}': it was "
                        "never applied, so there is nothing to compare with")  # fmt: skip
    shas = provenance.dependency_shas(entry)
    if not rec.source.repo.bare:  # the dependency cache must never show as untracked files
        ensure_excluded(rec.source.repo, f"/{STATE_DIR}/")
    deps.fetch_pinned(f.study, shas, rec.cache)  # before anything is made: a clone has no cache
    study = f.load(shas)
    specroot = rec.source.root / Path(f.path).parent
    locations = {"OUTPUT_PATH": str(out), "SPECROOT": str(specroot)}
    try:
        found = deps.check_paths(study, specroot, text=f.text, locations=locations)
        locations.update({k: str(v) for k, v in found.items()})
        for name, got in deps.acquire_git_dependencies(study, shas, rec.cache, locations).items():
            locations[name] = str(got.path)
        create_workspace(study, out, RunSettings(), cwd=rec.source.root, spec_text=f.text,
                         locations=locations, dependency_shas=shas)  # fmt: skip
    except BaseException:
        if out.exists():  # it did not exist when we started: no half-made directory stays
            shutil.rmtree(out, ignore_errors=True)
        raise
    api.run_engine(out)
    recorded = {i["name"]: i.get("fingerprint") for i in entry.get("instances", [])}
    result = Reproduction(study_name, out)
    for inst in study.instances:
        then = recorded.get(inst.name)
        if then is None:
            result.unrecorded.append(inst.name)
        elif then == inst.fingerprint:
            result.matched.append(inst.name)
        else:
            result.differ.append((inst.name, str(then), inst.fingerprint))
    store = Store.open(out)
    result.counts = store.counts()
    store.close()
    return result
