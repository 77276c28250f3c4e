"""An instance's output files, the end of its stderr, and the failure report.

The failure report is what `run --fg`, `apply --wait`, `status` and the watcher's log say when
a study has failed instances: each one (up to a limit, then a count) with its state, exit code,
the last lines of its stderr and the path of its files. One function makes it for all four.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.plan.states import State
from reconciler.record.store import InstanceRow, Store
from reconciler.spec.names import job_name, safe_name

# Instances that ran and failed. BLOCKED ones never ran (counted, not listed); CANCELLED ones
# were asked to stop.
FAILED_STATES = (State.FAILED, State.TIMEDOUT, State.HWFAILURE, State.LOST)
LIMIT = 5  # failed instances shown in full; the rest are counted
TAIL_LINES = 5
_TAIL_BYTES = 16384
_LINE_CHARS = 300


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 instance`, `2 instances` (thousands separated)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def counts_text(counts: Mapping[str, int]) -> str:
    """`5 FINISHED, 1 FAILED` in the order of the states' life (State's order)."""
    order = {str(s): i for i, s in enumerate(State)}
    items = sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    return ", ".join(f"{n:,} {s}" for s, n in items if n) or "no instances"


def output_files(root: Path, row: InstanceRow, job_id: str | None = None) -> tuple[Path, Path]:
    """(stdout, stderr) of one submission of an instance: `job_id`'s, or the latest one's. The
    one place that knows how every adapter names them (status, logs, failure reports, tests)."""
    return find_outputs(root / row.workspace, row.name, job_id or row.job_id, latest=not job_id)


def find_outputs(
    folder: Path, name: str, job_id: str | None, *, latest: bool = True
) -> tuple[Path, Path]:
    """(stdout, stderr) of instance `name`'s submission `job_id` in its directory `folder`.

    The local adapter writes Maestro's `<instance>.<pid>.out` per attempt (the pid is the job
    id); LSF and Flux name theirs `<job-name>.<job id>.out`; Slurm, PBS and the pool write one
    `<job-name>.out` / `<instance>.out` for every attempt (`<instance>` sanitised as the
    directory is, spec/names.py). So: the files named by the job id; else the shared files;
    else, for the `latest` attempt, the newest of the instance's output files (a shepherd killed
    while starting a job leaves them as `<instance>.starting.out`); else where they would be.
    """
    prefixes = list(dict.fromkeys((safe_name(name), job_name(name))))
    job = (job_id or "").removeprefix("local:")
    if "/" in job:  # a scheduler's id names a file, never a path
        job = ""
    bases = [f"{p}.{job}" for p in prefixes] if job else []
    bases += prefixes  # the attempts' shared files
    for base in bases:
        pair = _pair(folder, base)
        if pair[0].is_file() or pair[1].is_file():
            return pair
    if latest:
        newest = _newest(folder, prefixes)
        if newest is not None:
            return _pair(folder, newest)
    return _pair(folder, bases[0])


def _pair(folder: Path, base: str) -> tuple[Path, Path]:
    return folder / f"{base}.out", folder / f"{base}.err"


def _newest(folder: Path, prefixes: Sequence[str]) -> str | None:
    """The base name of the instance's most recently written `.out`/`.err` file."""
    newest: tuple[float, str] | None = None
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    for entry in entries:
        base, dot, ext = entry.name.rpartition(".")
        if not dot or ext not in ("out", "err"):
            continue
        if not any(entry.name.startswith(f"{p}.") for p in prefixes):
            continue
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if newest is None or mtime > newest[0]:
            newest = (mtime, base)
    return newest[1] if newest is not None else None


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last `lines` non-blank lines of a text file (empty when it is missing or empty)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read()
    except OSError:
        return []
    text = data.decode(errors="replace").replace("\r", "\n")
    kept = [ln.rstrip() for ln in text.split("\n") if ln.strip()]
    if size > _TAIL_BYTES and kept:
        kept = kept[1:]  # the first line read is probably cut
    return [ln if len(ln) <= _LINE_CHARS else ln[:_LINE_CHARS] + " …" for ln in kept[-lines:]]


@dataclass(frozen=True)
class Failure:
    name: str
    step: str
    state: str
    exit_code: int | None
    attempts: int
    job_id: str | None
    stdout: Path
    stderr: Path
    stderr_tail: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "state": self.state,
            "exit_code": self.exit_code,
            "attempts": self.attempts,
            "job_id": self.job_id,
            "stdout": str(self.stdout),
            "stderr": str(self.stderr),
            "stderr_tail": self.stderr_tail,
        }


@dataclass(frozen=True)
class FailureReport:
    root: Path
    failures: list[Failure] = field(default_factory=list)
    failed: int = 0  # all failed instances; `failures` holds the first `LIMIT`
    blocked: int = 0
    states: tuple[str, ...] = ()  # the failed states present (for the "all of them" hint)
    steps: tuple[str, ...] = ()  # the steps the report is limited to, if any

    def __bool__(self) -> bool:
        return bool(self.failed or self.blocked)

    def lines(self) -> list[str]:
        """The report for people: a heading, then a few lines per failed instance."""
        if not self:
            return []
        if not self.failed:  # only some steps are shown, and the failure is upstream of them
            return [f"{plural(self.blocked, 'instance')} blocked by a failure upstream"]
        head = f"{plural(self.failed, 'instance')} failed"
        if self.blocked:
            head += f" and blocked {plural(self.blocked, 'more', 'more')}"
        out = [head + ":"]
        for f in self.failures:
            code = "no exit code" if f.exit_code is None else f"exit code {f.exit_code}"
            out.append(f"  {f.name}: {f.state}, {code}, {plural(f.attempts, 'attempt')}")
            if f.stderr_tail:
                out.append(f"    stderr: {f.stderr}")
                out += [f"      {ln}" for ln in f.stderr_tail]
            elif f.stderr.exists():
                out.append(f"    stderr is empty: {f.stderr}")
            else:
                out.append(f"    no stderr file in {f.stderr.parent}")
        more = self.failed - len(self.failures)
        if more:
            flags = [f"--state {s}" for s in self.states] + [f"--step {s}" for s in self.steps]
            out.append(
                f"  … and {plural(more, 'more failed instance')}: "
                f"reconciler status {self.root} {' '.join(flags)}"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "failed": self.failed,
            "blocked": self.blocked,
            "instances": [f.to_json() for f in self.failures],
        }


def failure_report(
    store: Store,
    root: Path,
    *,
    steps: Sequence[str] | None = None,
    limit: int = LIMIT,
    tail_lines: int = TAIL_LINES,
) -> FailureReport:
    """The failed instances of a study, or of some steps (a few in full), from the record and
    their files."""
    bad = [str(s) for s in FAILED_STATES]
    failed = store.count(states=bad, steps=steps)
    blocked = store.count(states=[str(State.BLOCKED)], steps=steps)
    shown: list[Failure] = []
    for r in store.select(states=bad, steps=steps, limit=limit) if failed else []:
        out, err = output_files(root, r)
        shown.append(
            Failure(r.name, r.step, str(r.state), r.exit_code, r.attempts, r.job_id, out, err,
                    tail(err, tail_lines))
        )  # fmt: skip
    present = {s for (s,) in store.columns(["state"], states=bad, steps=steps)} if failed else set()
    states = tuple(s for s in bad if s in present)
    return FailureReport(root, shown, failed, blocked, states, tuple(steps or ()))


def study_failures(root: Path, *, limit: int = LIMIT) -> FailureReport:
    """`failure_report` of the workspace at `root` (opens and closes its record)."""
    store = Store.open(root)
    try:
        return failure_report(store, root, limit=limit)
    finally:
        store.close()


__all__ = [
    "FAILED_STATES",
    "Failure",
    "FailureReport",
    "counts_text",
    "failure_report",
    "find_outputs",
    "output_files",
    "plural",
    "study_failures",
    "tail",
]
