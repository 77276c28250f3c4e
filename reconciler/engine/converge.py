"""The loop that takes a study's record to "every instance ended".

Level-triggered and idempotent: each pass starts from the record, re-observes the adapter, and
derives what to do from those alone, so a pass run by a freshly started engine after a crash does
the same as one run by the engine that crashed. Intent is committed before a submit, so no instance
is submitted twice; a submit whose job id never reached the record is found again by the adapter.

The record is read in full at start and whenever another process wrote to it (SQLite's
`data_version`: `cancel`, `update`); otherwise the engine's in-memory rows *are* the record, since
it commits every change it makes. An index over them (`view.View`) keeps a pass proportional to
what changed (jobs that ended, rows that became ready), not to the study's size.

A pass: cancel what is flagged → observe in-flight jobs → apply policies (retry, restart) →
propagate BLOCKED/CANCELLED → submit ready instances (throttle) → status.csv. Then wait: for the
local adapter until a job ends (an event, no fixed sleep), for scheduler adapters `sleep` seconds.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from ruamel.yaml import YAML

from reconciler.engine.policies import Policy, clamp_seconds
from reconciler.engine.view import View
from reconciler.plan.states import BLOCKING, IN_FLIGHT, State
from reconciler.record.store import DYNAMIC, Event, InstanceRow, Store
from reconciler.record.workspace import StatusWriter, Workspace
from reconciler.schedulers import get_adapter
from reconciler.schedulers.base import Adapter, Job, SchedulerError, SubmitError
from reconciler.spec.model import Batch
from reconciler.spec.walltime import MAX_SECONDS as MAX_WALLTIME
from reconciler.spec.walltime import walltime_seconds

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED = 0, 2, 3
CONTROL_INTERVAL = 0.5  # how often an idle local engine re-reads cancel/update without a signal
# How long an event-driven engine holds a pass's submit confirmations (job ids) before it commits
# them on their own: a job that ends within it has them committed with the next pass's changes,
# one transaction instead of two. A crash meanwhile loses only job ids, which `find` recovers.
CONFIRM_DELAY = 0.02
_BOOL_COLUMNS = frozenset({"use_restart", "cancel"})


@dataclass(frozen=True, slots=True)
class Outcome:
    code: int
    counts: dict[str, int]


def outcome_code(counts: dict[str, int]) -> int:
    if counts.get(State.CANCELLED, 0):
        return EXIT_CANCELLED
    if any(n for s, n in counts.items() if s != State.FINISHED):
        return EXIT_FAILED
    return EXIT_OK


class Engine:
    def __init__(
        self,
        root: Path,
        *,
        adapter: Adapter | None = None,
        slots: int | None = None,
        on_pass: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.store = Store.open(root)
        study = self.store.study()
        scripts = study["scripts_dir"]
        self.ws = Workspace(root, Path(scripts) if scripts else None, study["adapter"])
        self.shell: str = study["shell"]
        self.adapter = adapter or get_adapter(
            study["adapter"],
            root,
            slots=slots or int(study["slots"]) or None,
            batch=_batch(root),
            study=study["name"],
        )
        self._retry_cancel: list[InstanceRow] = []
        self._scheduler_error = ""
        self._warned: set[str] = set()  # clamped settings already reported
        self.adapter.prepare(root)
        self.on_pass = on_pass
        # Before the rows: a write that lands after this read is seen as a change next pass.
        self.data_version = self.store.data_version()
        self.rows = self.store.instances()  # static columns kept; dynamic ones re-read on change
        self.by_name = {r.name: r for r in self.rows}
        self.parents = {r.name: [self.by_name[p] for p in r.depends] for r in self.rows}
        self.view = View(self.rows)
        self.status = StatusWriter(self.ws)
        self.control_seq = self.store.control_seq()
        self.policy = Policy.from_settings(self.store.settings())
        self.changes: dict[str, dict[str, Any]] = {}
        self.events: list[Event] = []
        self._seconds("backoff", 0.0)  # warns about a stored backoff the policy had to clamp
        # An in-flight instance's paths, built once (pathlib joins dominate a pass otherwise:
        # every pass re-observes every in-flight job); dropped when it ends.
        self._paths: dict[str, tuple[Path, Path, Path, Path]] = {}

    # -- record helpers --------------------------------------------------------------------

    def _sync(self) -> None:
        """Re-read the record if another process wrote to it since we last looked."""
        version = self.store.data_version()
        if version == self.data_version:
            return
        self._commit()  # what this engine holds goes in first: the re-read must not drop it
        self.data_version = version
        seq = self.store.control_seq()
        if seq != self.control_seq:
            self.control_seq = seq
            self.policy = Policy.from_settings(self.store.settings())
        self._refresh()

    def _refresh(self) -> None:
        for values in self.store.dynamic():
            row = self.by_name[values[0]]
            for col, v in zip(DYNAMIC[1:], values[1:], strict=True):
                setattr(
                    row, col, State(v) if col == "state" else bool(v) if col in _BOOL_COLUMNS else v
                )
        self.view.rebuild()

    def _set(self, row: InstanceRow, **cols: Any) -> None:
        old = row.state
        for k, v in cols.items():
            setattr(row, k, v)
        self.changes.setdefault(row.name, {}).update(cols)
        if "state" in cols or "not_before" in cols:
            self.view.moved(row, old)

    def _scheduler_trouble(self, e: Exception) -> None:
        """Log a scheduler failure once (not once per pass) and carry on."""
        if str(e) != self._scheduler_error:
            self._scheduler_error = str(e)
            self._event(None, "scheduler-error", str(e))

    def _walltime(self, row: InstanceRow) -> float | None:
        """The instance's walltime in seconds; one the spec would refuse now (an older record)
        becomes the longest accepted, with a warning, instead of stopping every pass."""
        try:
            return walltime_seconds(row.walltime)
        except ValueError as e:
            self._clamped(row, f"{row.name}: {e}; using {MAX_WALLTIME:g} s")
            return MAX_WALLTIME

    def _seconds(self, name: str, default: float) -> float:
        """A time setting of the record, clamped to what sleep() takes (warned about once)."""
        value, why = clamp_seconds(name, self.store.settings()[name], default)
        if why is not None:
            self._clamped(None, why)
        return value

    def _clamped(self, row: InstanceRow | None, why: str) -> None:
        """Say once (an event in the record, a line in the engine's log) what was clamped."""
        if why not in self._warned:
            self._warned.add(why)
            self._event(row, "setting-clamped", why)
            print(f"warning: {self.ws.root}: {why}", file=sys.stderr, flush=True)

    def _event(self, row: InstanceRow | None, kind: str, detail: str = "") -> None:
        self.events.append(Event(kind, None if row is None else row.name, detail))

    def _commit(self) -> None:
        self.store.apply(self.changes, self.events)
        self.changes, self.events = {}, []

    def job(self, row: InstanceRow) -> Job:
        name, ws = row.name, row.workspace
        paths = self._paths.get(name)
        if paths is None:
            paths = self._paths[name] = (
                self.ws.instance_dir(ws),
                self.ws.script_to_run(name, ws),
                self.ws.stem(name, ws),
                self.ws.exit_file(name, ws),
            )
        workdir, script, stem, exit_file = paths
        return Job(
            name=name,
            workdir=workdir,
            script=self.ws.script_to_run(name, ws, restart=True) if row.use_restart else script,
            stem=stem,
            exit_file=exit_file,
            submission=row.attempts,
            walltime=self._walltime(row),
            shell=self.shell,
            job_id=row.job_id,
            start_time=row.start_time,
            step=row.step,
        )

    # -- the loop --------------------------------------------------------------------------

    def run(self, *, launch: bool = True, once: bool = False, wake_signal: bool = False) -> Outcome:
        """Converge until every instance ended (or one pass). `wake_signal`: SIGUSR1 wakes the
        loop (main thread only; the lock file tells `cancel`/`update` whether to send it)."""
        previous = signal.getsignal(signal.SIGUSR1)
        in_main = wake_signal and _install_wake(self.adapter)
        self.store.log([Event("engine-started", detail=json.dumps({"launch": launch}))])
        done = False
        try:
            while True:
                done, timeout = self.run_pass(launch=launch, settle=False)
                if done or once:
                    break
                if self.changes or self.events:
                    held = min(timeout, CONFIRM_DELAY) if self.adapter.poll_interval is None else 0
                    if held > 0 and self.adapter.wait(held):
                        continue  # the next pass commits them with its own changes
                    self._commit()
                    timeout -= held
                self.adapter.wait(timeout)
            self._commit()
        finally:
            self.status.maybe_write(self.rows, force=True)
            if in_main:
                signal.signal(signal.SIGUSR1, previous)
            if done:
                self.adapter.finish()
            self.adapter.close()
        counts = self.view.state_counts()
        code = outcome_code(counts)
        if done:
            self.store.log([Event("study-ended", detail=json.dumps({"code": code, **counts}))])
        return Outcome(code, counts)

    def run_pass(self, *, launch: bool = True, settle: bool = True) -> tuple[bool, float]:
        """One pass; returns (study ended, how long to wait before the next). `settle=False`
        leaves the submit confirmations uncommitted (in `changes`) for the caller to commit."""
        self._sync()
        now = time.time()
        self._cancel(now)
        self._observe(now)
        self._propagate()
        ready = self._intend() if launch else []
        self._commit()  # one transaction: what was observed, and the intent to submit `ready`
        if ready:
            self._submit(ready)
            if settle:
                self._commit()
        self.status.maybe_write(self.rows)
        if self.on_pass is not None:
            self.on_pass(self.view.state_counts())
        if not self.view.pending():
            return True, 0.0
        return False, self._timeout()

    def _timeout(self) -> float:
        if self.adapter.poll_interval is not None:
            return self._seconds("sleep", 60.0) or self.adapter.poll_interval
        if self.view.spread:  # a submit failed this pass: propagate it now, not on a wake-up
            return 0.0
        timeout = CONTROL_INTERVAL
        backoff = self.view.next_backoff()
        if backoff is not None:
            timeout = min(timeout, max(0.0, backoff - time.time()))
        return timeout

    def _cancel(self, now: float) -> None:
        flagged = self._retry_cancel + self.view.take_flagged()
        self._retry_cancel = []
        if not flagged:
            return
        running = [r for r in flagged if r.state in IN_FLIGHT and r.job_id]
        if running:
            try:
                self.adapter.cancel([self.job(r) for r in running])
            except SchedulerError as e:  # states stay as they are; cancel again next pass
                self._retry_cancel = flagged
                self._scheduler_trouble(e)
                return
        for r in flagged:
            self._set(r, state=State.CANCELLED, end_time=now if r.state in IN_FLIGHT else None)
            self._event(r, "cancelled")

    def _observe(self, now: float) -> None:
        in_flight = [self.view.in_flight[i] for i in sorted(self.view.in_flight)]
        unconfirmed = [r for r in in_flight if not r.job_id]
        for r in unconfirmed:  # intent recorded, id not: the engine died inside submit
            found = self.adapter.find(self.job(r))
            if found is not None:
                self._set(r, job_id=found, state=State.RUNNING)
                self._event(r, "found", found)
        jobs = [self.job(r) for r in in_flight]
        try:
            seen = self.adapter.poll(jobs) if jobs else {}
        except SchedulerError as e:  # a hung or garbled squeue: observe nothing, ask again later
            self._scheduler_trouble(e)
            return
        self._scheduler_error = ""
        for r in in_flight:
            obs = seen.get(r.name)
            if obs is None:
                continue
            if obs.state is State.LOST and not r.job_id:
                # Never started (no process, no exit record): submit again, not a lost try.
                self._set(r, state=State.INITIALIZED, attempts=r.attempts - 1)
                self._event(r, "submit-unconfirmed")
            elif obs.state in IN_FLIGHT:
                if obs.state is not r.state:
                    self._set(r, state=obs.state)
            else:
                self._ended(r, obs.state, obs.exit_code, obs.end_time or now, now)

    def _ended(self, r: InstanceRow, state: State, rc: int | None, end: float, now: float) -> None:
        self._paths.pop(r.name, None)
        self._set(r, exit_code=rc, end_time=end)
        if r.cancel:
            state = State.CANCELLED
        changes, kind = self.policy.after_end(r, state, now)
        self._set(r, **changes)
        detail = f"{state}" + ("" if rc is None else f" rc={rc}")
        self._event(r, kind, detail)

    def _propagate(self) -> None:
        for r in self.view.propagation_order():  # topological: reaches every descendant
            parents = self.parents[r.name]
            if any(p.state in BLOCKING for p in parents):
                self._set(r, state=State.BLOCKED)
                bad = next(p.name for p in parents if p.state in BLOCKING)
                self._event(r, "blocked", f"upstream {bad}")
            elif any(p.state is State.CANCELLED for p in parents):
                self._set(r, state=State.CANCELLED)
                self._event(r, "cancelled", "upstream cancelled")

    def _intend(self) -> list[InstanceRow]:
        """Pick the instances to submit now and record the intent (committed by the caller
        before any process starts)."""
        now = time.time()
        room = self.policy.launchable(len(self.view.in_flight), self.adapter.capacity())
        if room <= 0:
            return []
        adapter = self.adapter
        ready = self.view.take_ready(room, now, fits=lambda r: adapter.admit(r.step))
        for r in ready:
            self._set(
                r,
                state=State.PENDING,
                attempts=r.attempts + 1,
                job_id=None,
                submit_time=now,
                start_time=None,
                end_time=None,
                exit_code=None,
                not_before=None,
            )
        return ready

    def _submit(self, ready: list[InstanceRow]) -> None:
        for r in ready:
            job = self.job(r)
            try:
                job_id = self.adapter.submit(job)
            except SchedulerError as e:
                # The scheduler may have taken the job before it hung: leave the intent in
                # place; the next pass finds the job by its tag or submits it again.
                self._event(r, "submit-unconfirmed", str(e))
                continue
            except SubmitError as e:
                self._event(r, "submit-failed", str(e))
                self._ended(r, State.FAILED, None, time.time(), time.time())
                continue
            started = time.time()
            state = self.adapter.submitted(r.step)
            self._set(r, job_id=job_id, state=state, start_time=started)
            self._event(r, "submitted", f"{job_id} {job.script.name}")


def _install_wake(adapter: Adapter) -> bool:
    """SIGUSR1 (sent by `cancel`/`update`) wakes the engine at once."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        adapter.wake()

    try:
        signal.signal(signal.SIGUSR1, handler)
    except ValueError:  # not the main thread (tests drive engines from threads)
        return False
    return True


def _batch(root: Path) -> Batch:
    """The study's batch block, as `run` wrote it to batch.info (adapters need queue, bank...)."""
    info = root / "batch.info"
    data = YAML(typ="safe").load(info.read_text()) if info.is_file() else None
    return Batch.model_validate(data or {})
