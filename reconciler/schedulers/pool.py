"""The pool adapter: instances of chosen steps run as tasks on Dask workers (`batch.pool`).

The pool's Dask scheduler and its adaptive cluster live in their own process
(`pooldaemon.py`), so they outlive an engine that is killed: `resume` reconnects through
`.reconciler/pool.json`. Tasks are fire-and-forget (the engine holds no futures) and report
through files, as the local adapter's jobs do: each writes `<what> <submission>` to the
instance's exit file, and a claim file (`pooltask.py`) makes every submission run at most once,
even when Dask runs a task again after a worker died.

A job id is the task key, `<instance>#<submission>`: the same key for the same submission, so a
submit that never reached the pool (the engine died inside it, or the pool was restarted) is
simply sent again and still runs once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reconciler import wsfile
from reconciler.plan.states import ENDED, State
from reconciler.schedulers import base, pooldaemon, pooltask
from reconciler.schedulers.base import Adapter, Job, Observation, SchedulerError, SubmitError
from reconciler.spec import launcher
from reconciler.spec.instance import Resources
from reconciler.spec.model import Batch
from reconciler.spec.pool import Pool, demand
from reconciler.spec.walltime import walltime_seconds

HEADER = "# reconciler pool resources:"  # the script says what it takes, as #SBATCH lines do
START_TIMEOUT = 180.0  # seconds for the pool's scheduler to listen (a cold Dask import is slow)
# A claimed task the scheduler does not know is lost only if it stays so this long: the scheduler
# may not yet have read a burst of submissions when we ask, while a worker already runs one.
LOST_AFTER = 10.0
QUEUE_DEPTH = 2  # tasks handed to the pool per worker slot: enough to keep adapt() growing
RESTART_AFTER = 60.0  # seconds before trying again to start a pool that failed to start

_OUTCOMES = {
    "timeout": State.TIMEDOUT,
    "cancelled": State.CANCELLED,
    "hwfailure": State.HWFAILURE,
}


def observe_exit(job: Job) -> Observation | None:
    """This submission's exit record as an observation (None: not ended)."""
    found = pooltask.exit_record(job.exit_file, job.submission)
    if found is None:
        return None
    what, end = found
    if what in _OUTCOMES:
        return Observation(_OUTCOMES[what], None, end)
    try:
        rc = int(what)
    except ValueError:
        return None
    return Observation(State.FINISHED if rc == 0 else State.FAILED, rc, end)


def read_state(root: Path) -> dict[str, Any] | None:
    """The running pool's `pool.json` (address, pid, workers), or None if no pool runs."""
    try:
        state = json.loads((root / ".reconciler" / pooldaemon.STATE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not _is_daemon(int(state.get("pid", 0))):
        return None
    return state


def _is_daemon(pid: int) -> bool:
    """Is `pid` a live pool process (not a recycled pid)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return pooldaemon.MODULE.encode() in cmdline


def key_of(job: Job) -> str:
    return f"{job.name}#{job.submission}"


class PoolAdapter(Adapter):
    name = "pool"
    poll_interval = None  # workers log an event when an instance ends; `wait` wakes on it

    def __init__(self, root: Path, pool: Pool, *, batch: Batch, study: str | None) -> None:
        self.root = root
        self.pool = pool
        self.batch = batch
        self.study = study or "study"
        self.cluster = pool.where(batch.type)
        self.slots = pool.max_workers(batch.type) * pool.cores
        self.on_event: Callable[[], None] | None = None  # the other adapter's wake, if routed
        self._client: Any = None
        self._event = threading.Event()
        self._live: set[str] = set()  # keys handed to the pool and not yet seen ended
        self._suspect: dict[str, float] = {}  # key -> when first seen claimed but unknown
        self._start_failed: tuple[float, str] | None = None  # when, and why, a start failed

    # -- scripts ---------------------------------------------------------------------------

    def render_script(
        self, cmd: str, resources: Resources, *, name: str, shell: str, description: str = ""
    ) -> str:
        need = " ".join(f"{k}={v}" for k, v in demand(resources).items())
        return f"#!{shell}\n{HEADER} {need}\n\n{cmd}\n"

    def render_launcher(self, text: str, resources: Resources) -> str:
        # A pooled instance runs its command directly on its worker, as the local adapter does.
        return launcher.render_launcher(text, resources, "local")

    def prepare(self, root: Path) -> None:
        """Write the pool's settings; the pool itself starts with the first submit."""
        cfg = {
            "study": self.study,
            "pool": {**self.pool.model_dump(mode="json"), "cluster": self.cluster},
            "queue": self.pool.queue or self.batch.queue,
            "bank": self.pool.bank or self.batch.bank,
            "walltime_seconds": walltime_seconds(self.pool.walltime),
        }
        path = root / ".reconciler" / pooldaemon.CONFIG
        text = json.dumps(cfg, indent=1) + "\n"
        if not path.is_file() or path.read_text() != text:
            wsfile.write(root, path, text)  # never through a link (wsfile.py)

    # -- the connection --------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        from distributed import Client

        address = self.pool.address or self._start_pool()
        secure = pooldaemon.security(self.root) if self.pool.managed else None
        try:
            client = Client(
                address, timeout="30s", set_as_default=False, name="reconciler", security=secure
            )
        except (OSError, TimeoutError) as e:
            raise SchedulerError(f"cannot reach the pool's Dask scheduler at {address}: {e}") from e
        client.subscribe_topic(pooltask.EVENT_TOPIC, self._on_event)
        self._client = client
        return client

    def _start_pool(self) -> str:
        """The address of this workspace's pool, started (detached) if none runs."""
        state = read_state(self.root)
        if state is not None:
            return str(state["address"])
        if self._start_failed and time.monotonic() - self._start_failed[0] < RESTART_AFTER:
            raise SchedulerError(self._start_failed[1])  # not a new pool process every pass
        log_path = self.root / ".reconciler" / pooldaemon.LOG
        with os.fdopen(wsfile.append(self.root, log_path), "ab") as log:
            proc = base.spawn(
                [sys.executable, "-m", pooldaemon.MODULE, str(self.root)],
                cwd=self.root,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            state = read_state(self.root)
            if state is not None and state.get("pid") == proc.pid:
                return str(state["address"])
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        why = f"the worker pool did not start (see {log_path}): " + " | ".join(tail)
        self._start_failed = (time.monotonic(), why)
        raise SchedulerError(why)

    def _on_event(self, _event: Any) -> None:
        self.wake()

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=5)

    # -- submit / observe / cancel ---------------------------------------------------------

    def submitted(self, step: str) -> State:
        return State.QUEUED  # a task waits for a free worker slot

    def capacity(self) -> int | None:
        return max(0, QUEUE_DEPTH * self.slots - len(self._live))

    def submit(self, job: Job) -> str:
        base.secure_paths(self.root, job, *_outputs(job))
        if job.submission > 1:  # the previous submission's claim: evidence no longer needed
            with contextlib.suppress(OSError):
                pooltask.claim_path(job.exit_file, job.submission - 1).unlink()
        try:
            self._send(job)
        except OSError as e:
            raise SubmitError(f"cannot read {job.script}: {e}") from e
        return key_of(job)

    def _send(self, job: Job) -> None:
        from distributed import fire_and_forget

        client = self._connect()
        key = key_of(job)
        payload = {
            "key": key,
            "exit_file": str(job.exit_file),
            "submission": job.submission,
            "out": str(_outputs(job)[0]),
            "err": str(_outputs(job)[1]),
            "script": str(job.script),
            "workdir": str(job.workdir),
            "shell": job.shell,
            "walltime": job.walltime,
        }
        future = client.submit(
            pooltask.run_instance,
            payload,
            key=key,
            resources=_resources(job.script),
            pure=False,
        )
        fire_and_forget(future)
        self._live.add(key)

    def poll(self, jobs: Sequence[Job]) -> dict[str, Observation]:
        seen: dict[str, Observation] = {}
        waiting = [j for j in jobs if not self._ended(j, seen)]
        if waiting:
            known = self._ask_scheduler([key_of(j) for j in waiting])
            for job in waiting:
                # Asked first, files read second: a task that ended meanwhile has its record.
                if not self._ended(job, seen):
                    seen[job.name] = self._unended(job, known.get(key_of(job)))
        self._live = {key_of(j) for j in jobs if seen[j.name].state not in ENDED}
        for key in set(self._suspect) - self._live:
            del self._suspect[key]
        if self._live and len(self._live) == len(jobs) and self.pool.managed:
            state = read_state(self.root) or {}
            if state.get("error"):  # no worker, nothing ended, and starting one failed
                raise SchedulerError(f"the worker pool cannot start workers: {state['error']}")
        return seen

    def _ended(self, job: Job, seen: dict[str, Observation]) -> bool:
        obs = observe_exit(job)
        if obs is not None:
            seen[job.name] = obs
        return obs is not None

    def _ask_scheduler(self, keys: list[str]) -> dict[str, str]:
        try:
            client = self._connect()
            return dict(client.run_on_scheduler(pooltask.task_states, keys))
        except SchedulerError:
            raise
        except Exception as e:  # a connection lost mid-call: reconnect next pass
            self._drop_client()
            raise SchedulerError(f"the worker pool did not answer: {e}") from e

    def _unended(self, job: Job, task_state: str | None) -> Observation:
        claim = pooltask.read_claim(pooltask.claim_path(job.exit_file, job.submission))
        if task_state == "erred":  # Dask gave up on it (its workers kept dying)
            pooltask.publish_exit(job.exit_file, "hwfailure", job.submission)
            pooltask.note(str(_outputs(job)[1]), "the pool gave up on this task (its workers died)")
            return observe_exit(job) or Observation(State.HWFAILURE, None, time.time())
        key = key_of(job)
        if task_state is not None:
            self._suspect.pop(key, None)
            return Observation(State.RUNNING if claim else State.QUEUED)
        if claim is None:
            # Never reached the pool (the engine died inside submit, or the pool restarted):
            # send it again. Same key, same submission: its claim lets it run once.
            self._send(job)
            return Observation(State.QUEUED)
        if pooltask.stale_group(claim) is not None:
            return Observation(State.RUNNING)  # its worker is gone but the script still runs
        first = self._suspect.setdefault(key, time.monotonic())
        if time.monotonic() - first < LOST_AFTER:
            return Observation(State.RUNNING)
        pooltask.publish_exit(job.exit_file, "hwfailure", job.submission)
        err = str(_outputs(job)[1])
        pooltask.note(err, "the pool lost this task with its worker; not run again")
        return observe_exit(job) or Observation(State.HWFAILURE, None, time.time())

    def cancel(self, jobs: Sequence[Job]) -> None:
        started: list[str] = []
        for job in jobs:
            claim = pooltask.claim_path(job.exit_file, job.submission)
            try:
                fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                started.append(key_of(job))
                pgid = pooltask.stale_group(pooltask.read_claim(claim))
                if pgid is not None:  # an orphan on this host: no worker will kill it
                    pooltask.kill_group(pgid)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"cancelled {job.submission}\n")
            pooltask.publish_exit(job.exit_file, "cancelled", job.submission)
        keys = [key_of(j) for j in jobs]
        self._live.difference_update(keys)
        try:
            client = self._connect()
            if started:
                client.run(pooltask.cancel_keys, started)
            from distributed import Future

            client.cancel([Future(k, client) for k in keys], force=True)
        except Exception as e:
            raise SchedulerError(f"the worker pool did not take the cancel: {e}") from e

    def find(self, job: Job) -> str | None:
        # The key is known without asking: if the task never reached the pool, `poll` sends it.
        return key_of(job)

    def wait(self, timeout: float) -> bool:
        if self._event.wait(timeout):
            self._event.clear()
            return True
        return False

    def wake(self) -> None:
        self._event.set()
        if self.on_event is not None:
            self.on_event()

    def close(self) -> None:
        self._drop_client()

    def finish(self) -> None:
        """The study ended: stop the pool (its cluster cancels the allocation jobs)."""
        self._drop_client()
        state = read_state(self.root)
        if state is not None and self.pool.managed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(state["pid"]), signal.SIGTERM)


def _resources(script: Path) -> dict[str, float]:
    """The Dask resources the script's header asks for (CPU=1 if it names none)."""
    with open(script, encoding="utf-8", errors="replace") as f:
        for _, line in zip(range(3), f, strict=False):
            if line.startswith(HEADER):
                pairs = (p.split("=", 1) for p in line[len(HEADER) :].split())
                return {k: float(v) for k, v in pairs}
    return {"CPU": 1.0}


def _outputs(job: Job) -> tuple[Path, Path]:
    """A pooled instance's `<instance>.out`/`.err`, appended across its attempts (the pool runs a
    task on whichever worker takes it: no pid is known up front to name the files by)."""
    return job.stem.with_name(job.stem.name + ".out"), job.stem.with_name(job.stem.name + ".err")
