"""The adapter protocol, and the one place that starts processes (argument lists, no shell).

An adapter is command builders + output parsers. The engine hands it `Job`s (everything an adapter
needs, already placed on disk) and gets back job ids and `Observation`s; adapters never see the
record or the engine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from reconciler.plan.states import State
from reconciler.spec import launcher
from reconciler.spec.instance import Resources


@dataclass(frozen=True, slots=True)
class Job:
    """One submission of one instance."""

    name: str  # instance name (the scheduler job name tag)
    workdir: Path  # the instance's directory
    script: Path  # the script to run (the main one or the restart one)
    stem: Path  # `<workdir>/<instance>`: the adapter names this attempt's output files from it
    exit_file: Path
    submission: int  # 1, 2, ...: tells this submission's exit record from a previous one's
    walltime: float | None = None  # seconds
    shell: str = "/bin/bash"
    job_id: str | None = None
    start_time: float | None = None  # when it started (walltime accounting after re-attach)
    step: str = ""  # the instance's step (a study with a pool routes jobs by it)


@dataclass(frozen=True, slots=True)
class Observation:
    state: State
    exit_code: int | None = None
    end_time: float | None = None


class SchedulerError(RuntimeError):
    """A scheduler command failed, hung, or printed something we cannot read. The engine keeps
    every state as it is and asks again next pass."""


class SubmitError(Exception):
    """A submission that did not happen (counts as a failed attempt)."""


def secure_paths(root: Path, job: Job, *outputs: Path) -> None:
    """Refuse to write through symlinks an earlier step may have planted.

    Every directory from the workspace root down to the instance's must be a real directory
    inside the root, and a symlink where the instance's exit record or `outputs` go is removed
    (the link, never its target) so the job creates a regular file. (Output files named after a
    pid are not known yet: whoever opens them refuses a symlink.) Raises SubmitError.
    """
    try:
        rel = job.workdir.relative_to(root)
    except ValueError:
        raise SubmitError(f"{job.workdir} is not inside the workspace {root}") from None
    here = root
    for part in rel.parts:
        here = here / part
        if here.is_symlink() or not here.is_dir():
            raise SubmitError(
                f"{here} is not the directory reconciler made (deleted, or replaced by a "
                "symlink or a file after setup, by an earlier step?); nothing was written there"
            )
    for path in (job.exit_file, *outputs):
        if path.is_symlink():
            path.unlink()


class Adapter(ABC):
    name: str = ""
    poll_interval: float | None = None  # None: the adapter wakes the engine itself (events)

    @abstractmethod
    def render_script(
        self, cmd: str, resources: Resources, *, name: str, shell: str, description: str = ""
    ) -> str:
        """The text of an instance script for this scheduler."""

    def render_launcher(self, text: str, resources: Resources) -> str:
        """`$(LAUNCHER)` tokens in this scheduler's form (local: nothing)."""
        return launcher.render_launcher(text, resources, self.name)

    def for_step(self, step: str) -> Adapter:
        """The adapter that runs `step`'s instances (a study with a pool has two)."""
        return self

    def submitted(self, step: str) -> State:
        """The state of a job `submit` just returned: running at once where the adapter starts
        the process itself, pending where a scheduler takes it."""
        return State.RUNNING if self.poll_interval is None else State.PENDING

    def admit(self, step: str) -> bool:
        """Take one more ready instance of `step` this pass? Called after `capacity()`, once per
        instance the engine would submit; an adapter with per-step room says no when it is full."""
        return True

    def prepare(self, root: Path) -> None:  # noqa: B027 - optional hook
        """Write adapter files into a new or resumed workspace (idempotent)."""

    def capacity(self) -> int | None:
        """How many more jobs the adapter takes now; None = no limit of its own."""
        return None

    @abstractmethod
    def submit(self, job: Job) -> str:
        """Start one job; return its id. Raises SubmitError."""

    @abstractmethod
    def poll(self, jobs: Sequence[Job]) -> dict[str, Observation]:
        """Observe many jobs in one call, keyed by job name. Unknown jobs come back LOST."""

    @abstractmethod
    def cancel(self, jobs: Sequence[Job]) -> None:
        """Cancel many jobs in one call."""

    def find(self, job: Job) -> str | None:
        """The id of a submission whose id was never recorded (engine killed mid-submit)."""
        return None

    def wait(self, timeout: float) -> bool:
        """Block until something may have changed or `timeout` passed (polling adapters);
        True if woken early (by a job's end or `wake`)."""
        time.sleep(timeout)
        return False

    def wake(self) -> None:  # noqa: B027 - optional hook
        """Make a blocked `wait` return now (cancel/update requests)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop watching; running jobs keep running."""

    def finish(self) -> None:  # noqa: B027 - optional hook
        """The study ended: release what the adapter holds for it (a pool's workers)."""


# -- process helpers: the only subprocess calls in reconciler's adapters --------------------


def run(
    args: Sequence[str], *, cwd: Path | None = None, timeout: float = 60.0, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a scheduler command to completion (sbatch, squeue, ...)."""
    return subprocess.run(  # an argument list, never a shell string
        list(args),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        errors="replace",  # bytes that are not UTF-8 reach the parser as garbage, not a crash
        timeout=timeout,
        check=False,
    )


def spawn(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process in its own session (own process group: killable as a whole, and it
    survives the engine)."""
    return subprocess.Popen(  # an argument list, never a shell string
        list(args),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=None if env is None else dict(env),
        start_new_session=True,
        close_fds=True,
    )


Process = subprocess.Popen


def kill_group(pgid: int, grace: float) -> None:
    """SIGTERM a process group, then SIGKILL it after `grace` seconds (without blocking)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)

    def escalate() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    timer = threading.Timer(grace, escalate)
    timer.daemon = True  # an engine that exits does not wait for it
    timer.start()


def wait_child(proc: subprocess.Popen[bytes], timeout: float | None) -> bool:
    """Wait for a child started by `spawn`; False if `timeout` passed first."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True
