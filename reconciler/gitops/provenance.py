"""Provenance: what was applied and what happened, as a git note on the applied commit.

One note per commit under `refs/notes/reconciler`, a YAML document with one entry per study:

    format: 1
    studies:
      hello: {study: hello, revision: …, spec: {path, blob}, parameters, dependencies,
              instances: [{name, fingerprint, job_id, state, exit_code, …}], tool, host, …}

Writing reads the note, replaces only this study's entry and writes it back, so several studies
applied from one commit share the note. Older versions stay in the notes ref's own history
(`git log -p refs/notes/reconciler`). A plain `git notes --ref reconciler show <sha>` reads it.

Secrets never reach a note (spec/secrets.py has the rules):
- a variable, label or parameter is secret when a whole word of its name says so (API_TOKEN,
  dbPassword, SSH_KEY; not TOKENIZER or MONKEY), or when it is named in the environment
  variable RECONCILER_SECRETS (names separated by commas or spaces) — the spec model is not
  changed for this. Its value becomes `***`, and so does every occurrence of the value inside
  any other string of the note (instance names, workspaces, other variables);
- in every string of the note, whatever its name, URL credentials (`https://TOKEN@host`,
  `postgres://app:PW@db`) and well-known token shapes (ghp_…, glpat-…, AKIA…, `Bearer …`,
  private key blocks) become `***`.
Names only mask values under `variables`, `parameters` and an instance's `params`: a git
dependency is never masked by its name, so its SHA and its URL (without credentials) stay for
`reproduce`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any

import git
from git.exc import GitCommandError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

import reconciler
from reconciler.deps import DependencyError, check_url, harden, redact_url
from reconciler.spec import Study
from reconciler.spec import secrets as secret_rules

NOTES_REF = "refs/notes/reconciler"
_REMOTE_COPY = "refs/notes/reconciler-remote"  # where push/pull fetch the remote's notes
FORMAT = 1
MASK = secret_rules.MASK
SECRETS_ENV = "RECONCILER_SECRETS"
# Mappings whose keys are names a spec chose for values: the only place a name masks a value.
_NAMED = frozenset({"variables", "labels", "parameters", "params"})

_TIMES = ("submit_time", "start_time", "end_time")  # an instance's times (ISO 8601, UTC)
# Fields that hold ids, hashes, counts and times: never user text, so never masked inside
# (masking a short secret such as "42" inside a commit SHA would only spoil the record).
_NOT_TEXT = frozenset(
    {
        "revision",
        "blob",
        "sha",
        "fingerprint",
        "job_id",
        "exit_code",
        "attempts",
        "state",
        "recorded_at",
        "submitted",
        "started",
        "finished",
        *_TIMES,
    }
)
_TOKEN = re.compile(r"\$\(([A-Za-z0-9_][A-Za-z0-9_.\-]*)\)")


class ProvenanceError(Exception):
    """Writing, reading or pushing provenance failed; one paragraph."""


# ---- masking -------------------------------------------------------------------------------


def secret_names_from_env(environ: Mapping[str, str] | None = None) -> set[str]:
    """Names listed in RECONCILER_SECRETS, upper-cased."""
    raw = (environ if environ is not None else os.environ).get(SECRETS_ENV, "")
    return {n.upper() for n in re.split(r"[\s,]+", raw) if n}


def is_secret_name(name: str, extra: Iterable[str] = ()) -> bool:
    return secret_rules.is_secret_name(name, frozenset(e.upper() for e in extra))


def secret_values(study: Study, extra: Iterable[str] = ()) -> set[str]:
    """Every value a secret variable, label or parameter has, raw and with $(VAR) resolved."""
    names = set(extra) | secret_names_from_env()
    env = study.spec.env
    variables = {k: str(v) for k, v in env.variables.items()}
    found: set[str] = set()
    for block in (env.variables, env.labels):
        for k, v in block.items():
            if is_secret_name(k, names):
                found.add(str(v))
                found.add(_resolve(str(v), variables))
    for k, p in study.spec.parameters.items():
        if is_secret_name(k, names):
            found.update(str(v) for v in p.values)
    for inst in study.instances:  # --pgen parameters are not in the spec
        found.update(str(v) for k, v in inst.params.items() if is_secret_name(k, names))
    return {v for v in found if v}


def _resolve(text: str, values: Mapping[str, str]) -> str:
    for _ in range(10):
        new = _TOKEN.sub(lambda m: values.get(m.group(1), m.group(0)), text)
        if new == text:
            return text
        text = new
    return text


def mask(node: Any, secrets: Iterable[str] = (), extra_names: Iterable[str] = ()) -> Any:
    """A copy of `node` with the values of secret-named variables, labels and parameters, every
    secret value, URL credentials and known token shapes replaced (see the module docstring)."""
    values = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest first
    names = {n.upper() for n in extra_names} | secret_names_from_env()

    def text(s: str) -> str:
        for v in values:
            s = s.replace(v, MASK)
        return secret_rules.mask_text(s)

    def walk(n: Any, key: str | None, named: bool) -> Any:
        if isinstance(n, dict):
            out: dict[Any, Any] = {}
            for k, v in n.items():
                if named and is_secret_name(str(k), names):
                    out[text(k) if isinstance(k, str) else k] = (
                        MASK if not isinstance(v, dict | list) or v else v
                    )
                else:
                    out[text(k) if isinstance(k, str) else k] = walk(v, str(k), str(k) in _NAMED)
            return out
        if isinstance(n, list):
            return [walk(v, key, named) for v in n]
        if isinstance(n, str) and key not in _NOT_TEXT:
            return text(n)
        return n

    return walk(node, None, False)


# ---- the snapshot --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Values the safe YAML dumper writes and any YAML reader reads back the same."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _iso_times(instances: list[Any]) -> list[Any]:
    """Instance times as ISO 8601 (UTC). Notes written before used UNIX seconds: reading
    converts those too, so every reader sees one type."""
    out = []
    for row in instances:
        if isinstance(row, dict):
            row = dict(row)
            for key in _TIMES:
                t = row.get(key)
                if isinstance(t, int | float) and not isinstance(t, bool):
                    row[key] = dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")
        out.append(row)
    return out


def _parameters(study: Study) -> dict[str, list[Any]]:
    """Parameter values as expanded (so --pgen's count), in first-seen order."""
    out: dict[str, list[Any]] = {}
    for inst in study.instances:
        for k, v in inst.params.items():
            if v not in out.setdefault(k, []):
                out[k].append(v)
    for k, p in study.spec.parameters.items():
        if k not in out:
            out[k] = list(p.values)  # declared but used by no step
    return out


def snapshot(
    study: Study,
    revision: str,
    spec_blob: str,
    dependency_shas: Mapping[str, str],
    instances: list[dict[str, Any]],
    scheduler: str,
    outcome: str,
    *,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """This study's entry of the note, with secrets already masked.

    `instances` are the record's rows (job_id, state, exit_code, attempts, times, …) by
    `name`; each is merged over the study's own instance (step, workspace, params,
    fingerprint). Rows for instances no longer in the study are kept as given. `outcome` says
    why the snapshot was taken: "applied", or the study's terminal state.
    """
    rows = {str(r["name"]): r for r in instances if "name" in r}
    merged: list[dict[str, Any]] = []
    for inst in study.instances:
        merged.append({**inst.to_json(), **rows.pop(inst.name, {})})
    merged.extend(rows.values())
    merged = _iso_times(merged)
    deps = study.spec.env.dependencies
    entry: dict[str, Any] = {
        "study": study.name,
        "revision": revision,
        "outcome": outcome,
        "recorded_at": _now(),
        "spec": {"path": study.path, "blob": spec_blob},
        "parameters": _parameters(study),
        "variables": dict(study.spec.env.variables),
        "dependencies": {
            "git": {
                g.name: {
                    "url": redact_url(g.url),
                    "ref": g.hash or g.tag or g.branch,
                    "sha": dependency_shas.get(g.name),
                }
                for g in deps.git
            },
            "paths": {p.name: p.path for p in deps.paths},
        },
        "instances": merged,
        "scheduler": scheduler,
        "host": socket.gethostname(),
        "tool": {"name": "reconciler", "version": reconciler.__version__},
    }
    return mask(_plain(entry), set(secrets) | secret_values(study))


def dependency_shas(entry: Mapping[str, Any]) -> dict[str, str]:
    """{name: SHA} of an entry's git dependencies (what `reproduce` pins)."""
    git_deps = (entry.get("dependencies") or {}).get("git") or {}
    return {k: v["sha"] for k, v in git_deps.items() if isinstance(v, dict) and v.get("sha")}


# ---- the note ------------------------------------------------------------------------------


def _yaml() -> YAML:
    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.representer.sort_base_mapping_type_on_output = False  # keep the entry's reading order
    y.width = 100
    return y


def dump(doc: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    _yaml().dump(dict(doc), buf)
    return buf.getvalue()


def parse(text: str) -> dict[str, Any]:
    """A note's text → {"format", "studies", …}. Text that is not ours is kept, not dropped."""
    try:
        doc = _yaml().load(text)
    except YAMLError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("studies"), dict):
        return doc
    doc = {"format": FORMAT, "studies": {}}
    if text.strip():
        doc["previous_note"] = text  # someone else's note on this commit: keep it
    return doc


def _show(repo: git.Repo, sha: str, ref: str = NOTES_REF) -> str | None:
    try:
        return str(repo.git.notes("--ref", ref, "show", sha, strip_newline_in_stdout=False))
    except GitCommandError as e:
        if "no note found" in str(e.stderr).lower():
            return None
        raise ProvenanceError(f"cannot read the note on {sha[:12]}: {e.stderr}") from e


def read_note(repo: git.Repo, sha: str) -> dict[str, dict[str, Any]]:
    """{study name: entry} of the note on commit `sha` (empty when there is none)."""
    text = _show(harden(repo), repo.commit(sha).hexsha)
    studies = parse(text)["studies"] if text is not None else {}
    for entry in studies.values():
        if isinstance(entry, dict) and isinstance(entry.get("instances"), list):
            entry["instances"] = _iso_times(entry["instances"])
    return studies


def read_entry(repo: git.Repo, sha: str, study: str) -> dict[str, Any] | None:
    return read_note(repo, sha).get(study)


@contextlib.contextmanager
def _notes_lock(repo: git.Repo) -> Iterator[None]:
    """Read-modify-write of a note is one critical section per repository."""
    path = Path(repo.common_dir) / "reconciler-notes.lock"
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _identity(repo: git.Repo) -> dict[str, str]:
    """A committer for the notes ref when git knows none (a daemon's account, CI)."""
    env: dict[str, str] = {}
    host = socket.gethostname() or "localhost"
    for who in ("AUTHOR", "COMMITTER"):
        try:  # git's own answer, from every config level and the environment
            repo.git.var(f"GIT_{who}_IDENT")
        except GitCommandError:
            env[f"GIT_{who}_NAME"] = "reconciler"
            env[f"GIT_{who}_EMAIL"] = f"reconciler@{host}"
    return env


def _write(repo: git.Repo, sha: str, doc: Mapping[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", encoding="utf-8", delete=False) as fh:
        fh.write(dump(doc))
    try:
        env = {**os.environ, **repo.git.environment(), **_identity(repo)}
        repo.git.notes("--ref", NOTES_REF, "add", "-f", "-F", fh.name, sha, env=env)
    except GitCommandError as e:
        raise ProvenanceError(f"cannot write the note on {sha[:12]}: {e.stderr}") from e
    finally:
        os.unlink(fh.name)


def write_note(repo: git.Repo, sha: str, entry: Mapping[str, Any]) -> None:
    """Put `entry` (from `snapshot`) into the note on `sha`, leaving other studies' entries."""
    repo = harden(repo)
    sha = repo.commit(sha).hexsha
    name = str(entry["study"])
    with _notes_lock(repo):
        text = _show(repo, sha)
        doc = parse(text or "")
        doc["format"] = FORMAT
        doc["studies"][name] = mask(_plain(dict(entry)))  # secret names, once more
        doc["studies"] = dict(sorted(doc["studies"].items()))
        _write(repo, sha, doc)


# ---- sharing notes with a remote -----------------------------------------------------------


def _remote_url(repo: git.Repo, remote: str) -> str:
    if remote in {r.name for r in repo.remotes}:
        return repo.remote(remote).url
    return remote


def _check_remote(repo: git.Repo, remote: str) -> None:
    try:
        check_url(_remote_url(repo, remote))
    except DependencyError as e:
        raise ProvenanceError(f"remote '{remote}': {e}") from e


def _fetch_remote_notes(repo: git.Repo, remote: str) -> bool:
    """The remote's notes into a local copy ref; False when the remote has none yet."""
    try:
        repo.git.fetch("--quiet", "--", remote, f"+{NOTES_REF}:{_REMOTE_COPY}")
        return True
    except GitCommandError as e:
        if "couldn't find remote ref" in str(e.stderr).lower():
            return False
        raise ProvenanceError(
            f"cannot fetch {NOTES_REF} from '{remote}': {str(e.stderr).strip()}"
        ) from e


def _newer(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return str(a.get("recorded_at") or "") > str(b.get("recorded_at") or "")


def _merge_remote(repo: git.Repo) -> None:
    """Union the remote's notes into ours, study by study (the newer entry of a study wins),
    then record the remote's notes commit as merged so the push is a fast-forward."""
    listing = str(repo.git.notes("--ref", _REMOTE_COPY, "list")).split("\n")
    with _notes_lock(repo):
        if not repo.git.for_each_ref(NOTES_REF):
            repo.git.update_ref(NOTES_REF, _REMOTE_COPY)
            return
        for line in filter(None, listing):
            _, target = line.split()
            theirs = parse(_show(repo, target, _REMOTE_COPY) or "")
            ours_text = _show(repo, target)
            ours = parse(ours_text or "")
            merged = dict(ours["studies"])
            for name, entry in theirs["studies"].items():
                if name not in merged or _newer(entry, merged[name]):
                    merged[name] = entry
            if ours_text is None or merged != ours["studies"]:
                ours["studies"] = dict(sorted(merged.items()))
                _write(repo, target, ours)
        env = {**os.environ, **repo.git.environment(), **_identity(repo)}
        try:
            repo.git.notes(
                "--ref", NOTES_REF, "merge", "--quiet", "-s", "ours", _REMOTE_COPY, env=env
            )
        except GitCommandError as e:
            raise ProvenanceError(f"cannot merge the remote's notes: {e.stderr}") from e


def pull_notes(repo: git.Repo, remote: str = "origin") -> bool:
    """Fetch the remote's provenance notes and merge them into ours. False if it has none."""
    repo = harden(repo)
    _check_remote(repo, remote)
    if not _fetch_remote_notes(repo, remote):
        return False
    _merge_remote(repo)
    return True


def push_notes(repo: git.Repo, remote: str = "origin", attempts: int = 3) -> None:
    """Push `refs/notes/reconciler` to `remote`, merging what other hosts pushed first."""
    repo = harden(repo)
    _check_remote(repo, remote)
    if not repo.git.for_each_ref(NOTES_REF):
        return  # nothing applied here yet
    last = ""
    for _ in range(max(1, attempts)):
        if _fetch_remote_notes(repo, remote):
            _merge_remote(repo)
        try:
            repo.git.push("--quiet", "--", remote, f"{NOTES_REF}:{NOTES_REF}")
            return
        except GitCommandError as e:  # another host pushed in between: merge again
            last = str(e.stderr).strip()
    raise ProvenanceError(f"cannot push {NOTES_REF} to '{remote}': {last}")


__all__ = [
    "FORMAT",
    "MASK",
    "NOTES_REF",
    "ProvenanceError",
    "dependency_shas",
    "dump",
    "is_secret_name",
    "mask",
    "parse",
    "pull_notes",
    "push_notes",
    "read_entry",
    "read_note",
    "secret_names_from_env",
    "secret_values",
    "snapshot",
    "write_note",
]
