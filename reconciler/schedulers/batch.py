"""What the batch-scheduler adapters (slurm, lsf, flux, pbs) share.

Each scheduler module supplies command builders and output parsers; this module supplies the
structure around them:

- script text: `#!shell`, the scheduler's header, a blank line, the command — Maestro's layout.
  A step that asks for neither nodes nor procs gets no header and runs on this host through the
  local adapter, as Maestro does for every scheduler. Its job id is `local:<pid>`.
- poll: ONE status call for all ids, then at most ONE history call for the ids the status call
  no longer shows (Slurm's squeue → sacct). An id neither shows is given a grace period
  (controllers lag, accounting is written late) and then reported LOST, so the retry policy
  decides — Maestro leaves such a job in progress forever.
- scheduler commands run through `base.run` with a timeout; a hang, a missing command or output
  that cannot be read raises `SchedulerError` with the command and what went wrong, never a
  guessed state.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.plan.states import State
from reconciler.schedulers import base
from reconciler.schedulers.base import Adapter, Job, Observation, SubmitError
from reconciler.schedulers.local import LocalAdapter
from reconciler.spec import launcher
from reconciler.spec.instance import Resources
from reconciler.spec.model import Batch

LOCAL_PREFIX = "local:"
DEFAULT_TIMEOUT = 60.0  # seconds a scheduler command may take before it counts as hung
DEFAULT_GRACE = 120.0  # seconds an id may be unknown to the scheduler before it is LOST


SchedulerError = base.SchedulerError  # re-exported: the adapters raise it from here


def call(
    args: Sequence[str],
    *,
    what: str,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    ok: Sequence[int] = (0,),
) -> subprocess.CompletedProcess[str]:
    """Run a scheduler command; SchedulerError unless it ends with a code in `ok`."""
    shown = " ".join(args)
    try:
        proc = base.run(args, cwd=cwd, stdin=stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SchedulerError(
            f"{what}: '{shown}' did not answer within {timeout:g} s; is the scheduler up?"
        ) from None
    except FileNotFoundError:
        raise SchedulerError(
            f"{what}: '{args[0]}' is not installed or not on PATH (needed for this batch type)"
        ) from None
    except OSError as e:
        raise SchedulerError(f"{what}: cannot run '{shown}': {e}") from None
    if proc.returncode not in ok:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise SchedulerError(
            f"{what}: '{shown}' failed with exit code {proc.returncode}"
            + (f": {detail[-1]}" if detail else "")
        )
    return proc


def unreadable(what: str, line: str, why: str) -> SchedulerError:
    return SchedulerError(f"{what}: cannot read scheduler output line {line!r}: {why}")


def wait_status_code(status: int) -> int:
    """A raw wait(2) status as a shell would report it: exit code, or 128 + signal."""
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


def exclusive_flags(
    value: bool | Mapping[str, bool] | None, default: tuple[bool, bool] = (False, False)
) -> tuple[bool, bool]:
    """(allocation, launcher), as Maestro resolves them: the object form sets each; a plain
    bool is its older syntax and sets the allocation alone; the rest is the batch's default."""
    if isinstance(value, Mapping):
        return (
            bool(value.get("allocation", default[0])),
            bool(value.get("launcher", default[1])),
        )
    if value is None:
        return default
    return bool(value), default[1]


def one_line(text: str) -> str:
    return text.replace("\n", " ")


_FIRST_INT = re.compile(r"\d+")


def first_int(text: str, what: str) -> str:
    m = _FIRST_INT.search(text)
    if m is None:
        raise SubmitError(f"{what}: no job id in the output {text.strip()!r}")
    return m.group(0)


class BatchAdapter(Adapter):
    """The structure of every batch adapter; subclasses fill in the scheduler's commands."""

    directive: str = ""  # header line prefix that marks a script for the scheduler
    poll_interval: float | None = 10.0  # default poll period when the run sets no --sleeptime

    def __init__(
        self,
        root: Path,
        *,
        batch: Batch | None = None,
        study: str | None = None,
        slots: int | None = None,
        lost_grace: float = DEFAULT_GRACE,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.root = root
        self.batch = batch or Batch(type=self.name)  # type: ignore[arg-type]
        self.study = study or root.name
        self.lost_grace = lost_grace
        self.timeout = timeout
        self.local = LocalAdapter(root, slots=slots)  # steps without nodes/procs
        self._unseen: dict[str, float] = {}  # job id -> first poll that did not find it
        self._lock = threading.Lock()
        self.last_error: str | None = None  # the last history failure, for status displays

    # -- what a subclass provides --------------------------------------------------------

    @abstractmethod
    def header(self, resources: Resources, *, name: str, shell: str,
               description: str) -> list[str]:  # fmt: skip
        """The script's header lines, starting with the shebang."""

    @abstractmethod
    def launcher_format(self, nodes: int | None, procs: int | None, resources: Resources) -> str:
        """What one `$(LAUNCHER)` token becomes (a count nobody gave is None)."""

    @abstractmethod
    def submit_job(self, job: Job) -> str:
        """Submit one script to the scheduler; return its id. Raises SubmitError."""

    @abstractmethod
    def status(self, ids: Sequence[str]) -> dict[str, Observation]:
        """One status call for many ids: what the scheduler still shows (others omitted)."""

    def history(self, ids: Sequence[str]) -> dict[str, Observation]:
        """At most one call to the job history for ids `status` no longer shows."""
        return {}

    @abstractmethod
    def cancel_ids(self, ids: Sequence[str]) -> None:
        """Cancel many jobs with one command."""

    def find_id(self, job: Job) -> str | None:
        """Recover the id of this submission from the scheduler by its tag."""
        return None

    # -- scripts -------------------------------------------------------------------------

    def render_script(self, cmd: str, resources: Resources, *, name: str, shell: str,
                      description: str = "") -> str:  # fmt: skip
        """Maestro's script layout. `description` feeds Slurm's --comment (keyword-only
        extension of the Adapter protocol; the engine passes the step description)."""
        if not resources.scheduled:
            return f"#!{shell}\n\n{cmd}\n"
        head = self.header(resources, name=name, shell=shell, description=description)
        return "\n".join(head) + f"\n\n{cmd}\n"

    def render_launcher(self, text: str, resources: Resources) -> str:
        """Every `$(LAUNCHER)` token of `text` in this scheduler's launcher. A step that asks
        for neither nodes nor procs runs on this host: its tokens render as the local adapter's
        (nothing; Maestro leaves the token in its script, where bash fails on it)."""
        if not resources.scheduled:
            return self.local.render_launcher(text, resources)
        return launcher.render(text, resources, self.launcher_format)

    def tag(self, job: Job) -> str:
        """Marks a submission as this study's n-th try of an instance, for `find`."""
        return f"[reconciler {self.study} #{job.submission}]"

    def scheduled(self, job: Job) -> bool:
        """Does the script carry this scheduler's header (else it runs on this host)?"""
        try:
            text = job.script.read_text()
        except OSError as e:
            raise SubmitError(f"cannot read {job.script}: {e}") from e
        return any(line.startswith(self.directive) for line in text.splitlines())

    # -- Adapter ---------------------------------------------------------------------------

    def prepare(self, root: Path) -> None:
        self.local.prepare(root)

    def submit(self, job: Job) -> str:
        base.secure_paths(self.root, job)
        if not self.scheduled(job):
            return LOCAL_PREFIX + self.local.submit(job)
        try:
            return self.submit_job(job)
        except SchedulerError as e:
            raise SubmitError(str(e)) from None

    def poll(self, jobs: Sequence[Job]) -> dict[str, Observation]:
        # No id: the engine died inside submit and find() found nothing. A local step may
        # still have left its exit record; a scheduler job without an id is not ours to see.
        unknown = [j for j in jobs if not j.job_id]
        here = [_as_local(j) for j in jobs if _is_local(j)]
        here += [j for j in unknown if not self.scheduled(j)]
        there = [j for j in jobs if j.job_id and not _is_local(j)]
        seen: dict[str, Observation] = {}
        for j in unknown:
            seen[j.name] = Observation(State.LOST, None, time.time())
        if here:
            seen.update(self.local.poll(here))
        if not there:
            return seen
        ids = [str(j.job_id) for j in there]
        found = self.status(ids)
        missing = [i for i in ids if i not in found]
        unsure: set[str] = set()
        if missing:
            try:
                found.update(self.history(missing))
            except SchedulerError as e:
                # The history is down, not the jobs: report nothing for them (and start no
                # LOST clock) rather than guess. The next poll asks again.
                self.last_error = str(e)
                unsure = set(missing)
        now = time.time()
        with self._lock:
            for j in there:
                jid = str(j.job_id)
                obs = found.get(jid)
                if obs is not None:
                    self._unseen.pop(jid, None)
                    seen[j.name] = obs
                    continue
                if jid in unsure:
                    continue
                first = self._unseen.setdefault(jid, now)
                if now - first >= self.lost_grace:
                    seen[j.name] = Observation(State.LOST, None, now)
                # else: no observation; the engine keeps the job's state for now
        return seen

    def cancel(self, jobs: Sequence[Job]) -> None:
        here = [_as_local(j) for j in jobs if _is_local(j)]
        if here:
            self.local.cancel(here)
        ids = [str(j.job_id) for j in jobs if j.job_id and not _is_local(j)]
        if ids:
            self.cancel_ids(ids)

    def find(self, job: Job) -> str | None:
        if not self.scheduled(job):
            pid = self.local.find(job)
            return None if pid is None else LOCAL_PREFIX + pid
        return self.find_id(job)

    def capacity(self) -> int | None:
        return None  # the scheduler queues; --throttle limits what is in flight

    def wait(self, timeout: float) -> bool:
        return self.local.wait(timeout)  # wakes early when a local step ends or on wake()

    def wake(self) -> None:
        self.local.wake()


def _is_local(job: Job) -> bool:
    return bool(job.job_id) and str(job.job_id).startswith(LOCAL_PREFIX)


def _as_local(job: Job) -> Job:
    return replace(job, job_id=str(job.job_id)[len(LOCAL_PREFIX) :])


def extra(batch: Batch, key: str) -> Any:
    """A batch key the model does not declare (kept as an extra), e.g. `walltime`."""
    return (batch.model_extra or {}).get(key)
