"""`reconciler watch`: follow a branch and keep every study of the repo converged to its tip.

Two triggers, one reconcile. A watchdog observer on the tracked ref (`refs/heads/<branch>`,
`packed-refs`, `HEAD`, and with `--fetch` the remote-tracking ref) reacts to a commit within a
debounce; a level-triggered resync every `interval` seconds re-reads everything (and fetches),
so a missed event changes nothing. A pass:

  tip of the tracked ref → (signature check) → `Reconciler.plan(tip)` → per study:
    - new study, plan with changes or retries, or last applied revision ≠ tip → `apply`
    - invalid spec → `apply` once per revision (records the refusal; the last applied
      revision keeps running) and the error logged once, with file:line
    - spec removed → `apply` when something is still in flight (cancels it; outputs stay)
    - every study: `settle` (record the outcome and note of a study that ended); on a resync,
      restart the engine of a study with work left and no engine, and report drift (Missing)

One study's error never stops the others: a bad name, a workspace the spec may not have, a
damaged or read-only record or a vanished applied commit is logged once as that study's error,
and the pass goes on. The watcher itself stops only on a signal. Engines are separate background
processes: stopping the watcher (SIGTERM, SIGINT) leaves them and their jobs running, and a
restarted watcher picks everything up from the records. One watcher per repo: an flock on
`.reconciler/watch.lock`; and each pass holds the repository's apply lock
(gitops/repolock.py), so a pass and an `apply` never interleave — a pass that finds it taken
says who holds it and runs as soon as it is free.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from git.exc import GitCommandError

from reconciler.engine import api
from reconciler.engine.lock import EngineLock, LockHeld
from reconciler.gitops import recorded
from reconciler.gitops.health import MOVING
from reconciler.gitops.reconcile import STATE_DIR, STUDY_ERRORS, Reconciler, StudyPlan
from reconciler.gitops.repo import RepoError, ensure_excluded
from reconciler.gitops.repolock import RepoLocked, describe
from reconciler.gitops.watchlog import LOGGER
from reconciler.plan.actions import Kind
from reconciler.record.outputs import study_failures
from reconciler.spec.size import MAX_INSTANCES

INTERVAL = 60.0  # seconds between level-triggered resyncs
DEBOUNCE = 0.1  # seconds to let a burst of ref events (lock file, rename, reflog) settle
TICK = 0.25  # the longest the loop sleeps without checking for SIGTERM/SIGINT
MAX_BACKOFF = 3600.0  # a failing apply is retried at most this far apart
LOCK_RETRY = 1.0  # seconds between tries of a pass that found the repository lock taken
ONCE_LOCK_WAIT = 600.0  # seconds `--once` waits for the repository lock
MAX_INTERVAL = 86_400.0  # one day: the longest resync interval
_CHANGES = ("created", "modified", "moved", "deleted")  # not opened/closed: reads are no news


class WatchError(Exception):
    """A user-fixable reason the watcher cannot start (one paragraph)."""


@dataclass
class _Failure:
    tries: int = 0
    next_try: float = 0.0


@dataclass
class Watcher:
    """A repo, the branch it follows, and what the loop remembers between passes."""

    repo: str | os.PathLike[str] = "."
    branch: str | None = None
    specs: str = "specs"
    root: str | os.PathLike[str] | None = None
    interval: float = INTERVAL
    fetch: bool = False
    remote: str = "origin"
    require_signed: bool = False
    debounce: float = DEBOUNCE
    allow: tuple[str, ...] = ()  # the operator's --allow-workspace places
    max_instances: int = MAX_INSTANCES
    log: logging.Logger = field(default_factory=lambda: logging.getLogger(LOGGER))

    def __post_init__(self) -> None:
        if not 0 < self.interval <= MAX_INTERVAL:  # NaN fails too; inf would overflow sleep()
            raise WatchError(
                f"--interval must be more than 0 and at most {MAX_INTERVAL:g} seconds (one day), "
                f"not {self.interval}"
            )
        try:
            self.rec = Reconciler(
                self.repo, specs=self.specs, root=self.root, allow=self.allow,
                max_instances=self.max_instances,
            )  # fmt: skip
        except RepoError as e:
            raise WatchError(str(e)) from e
        self.git = self.rec.source.repo
        self.branch = self.branch or self.rec.source.branch
        if not self.branch:
            raise WatchError(
                f"HEAD of {self.rec.source.root} is detached: name the branch to follow with "
                "--branch."
            )
        self._check_names()
        self.ref = (
            f"refs/remotes/{self.remote}/{self.branch}"
            if self.fetch
            else f"refs/heads/{self.branch}"
        )
        self.state_dir = self.rec.source.root / STATE_DIR
        self.lock_file = self.state_dir / "watch.lock"
        self.log_file = self.state_dir / "watch.log"
        self._lock: EngineLock | None = None
        self._stopping = False
        self._wake = threading.Event()
        self._said: set[Hashable] = set()
        self._failures: dict[tuple[str, str], _Failure] = {}
        self._signed: dict[str, str | None] = {}  # sha -> None (accepted) or why refused
        self._last_sha: str | None = None
        self._errors = 0
        self._pending: bool | None = None  # a pass put off by the repository lock (resync?)
        self._acted = 0  # applies in the last pass that changed something (none: in sync)

    def _check_names(self) -> None:
        assert self.branch is not None
        try:
            self.git.git.check_ref_format("--branch", self.branch)
        except GitCommandError as e:
            raise WatchError(f"--branch {self.branch!r} is not a valid branch name") from e
        if self.fetch and self.remote not in {r.name for r in self.git.remotes}:
            known = ", ".join(sorted(r.name for r in self.git.remotes)) or "none"
            raise WatchError(
                f"--fetch: {self.rec.source.root} has no remote '{self.remote}' (remotes: "
                f"{known}); add one with `git remote add` or name it with --remote."
            )

    # -- the lock ---------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the one-watcher-per-repo lock, or raise WatchError naming the holder."""
        if not self.git.bare:
            ensure_excluded(self.git, f"/{STATE_DIR}/")
        info = {"role": "watcher", "branch": self.branch, "ref": self.ref}
        try:
            self._lock = EngineLock(self.lock_file, info).acquire()
        except LockHeld as e:
            h = e.holder
            started = h.get("started")
            when = datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S") if started else "?"
            raise WatchError(
                f"another watcher already follows {self.rec.source.root} (pid "
                f"{h.get('pid', '?')} on {h.get('host', '?')}, branch {h.get('branch', '?')}, "
                f"started {when}); it holds {self.lock_file}. One watcher per repository: stop "
                f"that one first (kill -TERM {h.get('pid', '<pid>')})."
            ) from None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Reconcile until SIGTERM/SIGINT (or one pass with `once`). Returns an exit code:
        0, or with `once` 2 when the pass met an error."""
        if self._lock is None:
            self.acquire()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        observer = None
        try:
            if once:
                self.reconcile(resync=True, once=True)
                if not self._errors and not self._acted and self._last_sha:
                    self.log.info("in sync: %s at %s, nothing to apply", self.branch,
                                  self._last_sha[:12])  # fmt: skip
                return 2 if self._errors else 0
            observer = self._observe()  # before the first pass: no commit falls in between
            self.reconcile(resync=True)
            self.log.info(
                "watching %s (%s) of %s: resync every %gs%s",
                self.branch, self.ref, self.rec.source.root, self.interval,
                "" if observer else " (no file events: resync only)",
            )  # fmt: skip
            self._loop()
            self.log.info("stopped; engines and their jobs keep running")
            return 0
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.release()

    def _loop(self) -> None:
        next_resync = time.monotonic() + self.interval
        while not self._stopping:
            if self._pending is not None:  # the repository lock was taken: try again soon
                self._wake.wait(LOCK_RETRY)
                resync, self._pending = self._pending, None
                if not self._stopping:
                    self.reconcile(resync=resync)
                continue
            now = time.monotonic()
            if now >= next_resync:
                self.reconcile(resync=True)
                next_resync = time.monotonic() + self.interval
                continue
            if self._wake.wait(min(TICK, next_resync - now)) and not self._stopping:
                time.sleep(self.debounce)  # the rest of the burst lands meanwhile
                self._wake.clear()
                self.reconcile(resync=False)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: the loop checks it at least every TICK, and between studies of a pass,
        # so an apply in progress is finished, never cut in half.
        if not self._stopping:
            self.log.info("%s received: stopping after the current step",
                          signal.Signals(signum).name)  # fmt: skip
        self._stopping = True

    def _observe(self) -> Any:
        """A watchdog observer on the tracked ref; None when the OS refuses (resync only)."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        common, gitdir = Path(self.git.common_dir), Path(self.git.git_dir)
        wanted = {
            os.path.normpath(p)
            for p in (common / self.ref, common / "packed-refs", gitdir / "HEAD")
        }
        reftable = os.path.normpath(common / "reftable") + os.sep
        wake = self._wake

        class OnRef(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in _CHANGES:
                    return
                for p in (event.src_path, getattr(event, "dest_path", "")):
                    path = os.path.normpath(os.fsdecode(p)) if p else ""
                    if path in wanted or path.startswith(reftable):
                        wake.set()
                        return

        observer = Observer()
        handler = OnRef()
        dirs = {(str(common), False), (str(gitdir), False)}
        dirs.add((str(common / "refs"), True))
        try:
            for path, recursive in sorted(dirs):
                if Path(path).is_dir():
                    observer.schedule(handler, path, recursive=recursive)
            observer.start()
        except OSError as e:  # e.g. the inotify watch limit
            self.log.warning("cannot watch %s for changes (%s); resyncing every %gs only",
                             common, e, self.interval)  # fmt: skip
            return None
        return observer

    # -- one pass ---------------------------------------------------------------------------

    def reconcile(self, *, resync: bool, once: bool = False) -> None:
        """One level-triggered pass over every study, holding the repository lock. Never
        raises for a study's error; when an `apply` holds the lock, the pass is put off."""
        self._errors = 0
        self._acted = 0
        if resync and self.fetch:
            self._fetch()

        def waiting(holder: dict[str, Any]) -> None:
            self.log.info("waiting: %s holds the repository lock", describe(holder))

        try:
            with self.rec.lock("watch", timeout=ONCE_LOCK_WAIT if once else 0, on_wait=waiting):
                self._pass(resync)
        except RepoLocked as e:
            if once:
                self._error(("locked",), str(e))
                return
            self._say(("locked", e.holder.get("pid"), e.holder.get("started")), logging.INFO,
                      f"waiting: {describe(e.holder)} holds the repository lock; this pass "
                      "runs when it lets go")  # fmt: skip
            self._pending = bool(self._pending) or resync

    def _pass(self, resync: bool) -> None:
        try:
            sha = self.rec.source.resolve(self.ref)
        except RepoError:
            self._error(("tip", self.ref), f"{self.ref} does not exist (yet) in "
                        f"{self.rec.source.root}: nothing to apply")  # fmt: skip
            self._maintain(self._recorded(), resync)
            return
        if not resync and sha == self._last_sha:
            return  # another ref moved, or the same tip again: the resync covers the rest
        self.log.debug("%s pass at %s", "resync" if resync else "event", sha[:12])
        if self.require_signed and not self._verified(sha):
            self._maintain(self._recorded(), resync)
            self._last_sha = sha
            return
        try:
            _, plans = self.rec.plan(sha)
        except RepoError as e:
            self._error(("plan", sha, str(e)), f"{sha[:12]}: {e}", revision=sha)
            self._maintain(self._recorded(), resync)
            self._last_sha = sha
            return
        except Exception as e:  # a bug of ours: logged once (traceback in the log), no exit
            self._error(("plan-crash", sha, repr(e)), f"{sha[:12]}: planning failed: {e}",
                        revision=sha, exc_info=True)  # fmt: skip
            self._maintain(self._recorded(), resync)
            self._last_sha = sha
            return
        for sp in plans:
            if self._stopping:
                return
            try:
                self._study(sp, sha, resync)
            except STUDY_ERRORS as e:  # one study's trouble: logged once, the others go on
                self._error(
                    ("study", sp.name, sha, str(e)),
                    f"{sp.name}: {recorded.one_line(e)}",
                    study=sp.name,
                    revision=sha,
                )
            except Exception as e:  # one study's failure never stops the others
                self._error(("crash", sp.name, sha, repr(e)), f"{sp.name}: {e}",
                            study=sp.name, revision=sha, exc_info=True)  # fmt: skip
        self._last_sha = sha

    def _study(self, sp: StudyPlan, sha: str, resync: bool) -> None:
        rec = sp.record or {}
        where = {"study": sp.name, "revision": sha}
        self._settle(sp)  # a run that ended gets its outcome before anything new is applied
        if sp.spec is None and sp.error is not None:  # a workspace whose record is unreadable
            self._error(("unreadable", sp.name, sp.error), f"{sp.name}: {sp.error}", **where)
            return
        if sp.spec is None:  # gone from the revision: cancel what is in flight, once
            key = ("gone", sp.name, sha)
            if sp.plan and sp.plan.by_kind(Kind.CANCEL) and key not in self._said:
                outcome = self.rec.apply(sp, sha)
                self._acted += 1
                self._said.add(key)  # the engine acts on the flags; no second apply needed
                self.log.info("%s: %s", sp.name, outcome, extra=where)
            self._maintain([sp], resync)
            return
        if sp.error is not None:
            seen = rec.get("last_attempted_revision") == sha and rec.get("last_error")
            if not seen and ("refused", sp.name, sha) not in self._said:
                try:
                    self.rec.apply(sp, sha)  # records the refusal; nothing else changes
                except STUDY_ERRORS as e:  # e.g. a read-only record: said once, below
                    self._error(("study", sp.name, sha, str(e)),
                                f"{sp.name}: {recorded.one_line(e)}", **where)  # fmt: skip
            self._error(("refused", sp.name, sha),
                        f"{sp.name}: {sha[:12]} not applied, the last applied revision "
                        f"({(rec.get('last_applied_revision') or 'none')[:12]}) stays: "
                        f"{sp.error}", **where)  # fmt: skip
            self._maintain([sp], resync)
            return
        if sp.suspended:
            self._say(
                ("suspended", sp.name, sha),
                logging.INFO,
                f"{sp.name}: suspended (reconcile.suspend), nothing submitted",
                **where,
            )
            return
        assert sp.plan is not None
        # Applied at this revision already: only new work (a retry, or a record changed behind
        # our back) calls for another apply; cancels and prunes in progress do not.
        kinds = {a.kind for a in sp.plan.changes}
        wanted = (
            sp.record is None
            or rec.get("last_applied_revision") != sha
            or bool(kinds & {Kind.CREATE, Kind.RERUN, Kind.RETRY})
        )
        if wanted and self._may_try(sp.name, sha, resync):
            self._apply(sp, sha)
            return
        self._maintain([sp], resync)

    def _apply(self, sp: StudyPlan, sha: str) -> None:
        where = {"study": sp.name, "revision": sha}
        summary = _summary(sp)
        try:
            outcome = self.rec.apply(sp, sha)
        except Exception as e:  # a dependency fetch, a lock that would not come free...
            outcome = f"not applied: {recorded.one_line(e)}"
        key = (sp.name, sha)
        self._acted += not outcome.startswith("in sync")
        if outcome.startswith("not applied"):
            f = self._failures.setdefault(key, _Failure())
            f.tries += 1
            # 2.0 ** 32 at most: an int power of 2 past ~1024 tries would overflow a float.
            wait = self.interval * 2.0 ** min(f.tries - 1, 32)
            f.next_try = time.monotonic() + min(wait, MAX_BACKOFF)
            self._error(("apply", sp.name, sha, outcome), f"{sp.name}: {sha[:12]} {outcome} "
                        "(retried at a later resync)", **where)  # fmt: skip
            return
        self._failures.pop(key, None)
        self.log.info("%s: %s %s%s", sp.name, outcome, sha[:12],
                      f" ({summary})" if summary else "", extra=where)  # fmt: skip

    def _may_try(self, name: str, sha: str, resync: bool) -> bool:
        f = self._failures.get((name, sha))
        return f is None or (resync and time.monotonic() >= f.next_try)

    def _maintain(self, plans: list[StudyPlan], resync: bool) -> None:
        """Record studies that ended; on a resync restart lost engines and report drift."""
        for sp in plans:
            if self._stopping or sp.record is None or sp.workspace is None:
                continue
            where = {"study": sp.name, "revision": sp.record.get("last_applied_revision")}
            try:
                if self._settle(sp) or not resync:
                    continue
                moving = MOVING & set(recorded.counts(sp.workspace))
                if moving and not sp.suspended and api.engine_holder(sp.workspace) is None:
                    pid = api.start_background(sp.workspace)
                    self.log.warning("%s: work left and no engine running: started one (pid %d)",
                                     sp.name, pid, extra=where)  # fmt: skip
                if sp.missing:
                    gone = sp.missing
                    self._say(("missing", sp.name, tuple(gone)), logging.WARNING,
                              f"{sp.name}: drift (Missing): {len(gone)} finished instances' "
                              f"directories are gone: {', '.join(gone[:10])}; `reconciler apply "
                              "--self-heal` (or reconcile.self_heal: true) reruns them",
                              **where)  # fmt: skip
                if sp.warning:
                    self._say(("warning", sp.name, sp.warning), logging.WARNING,
                              f"{sp.name}: {sp.warning}", **where)  # fmt: skip
            except STUDY_ERRORS as e:
                self._error(("maintain", sp.name, str(e)), f"{sp.name}: {recorded.one_line(e)}",
                            **where)  # fmt: skip
            except Exception as e:
                self._error(("maintain", sp.name, repr(e)), f"{sp.name}: {e}", exc_info=True,
                            **where)  # fmt: skip

    def _settle(self, sp: StudyPlan) -> bool:
        """Record (and log) that a study ended since its last apply; True if it did."""
        if sp.record is None:
            return False
        where = {"study": sp.name, "revision": sp.record.get("last_applied_revision")}
        try:
            if not self.rec.settle(sp):
                return False
        except STUDY_ERRORS as e:  # e.g. a read-only record: that study's error, once
            self._error(("settle", sp.name, str(e)), f"{sp.name}: cannot record how it ended: "
                        f"{recorded.one_line(e)}", **where)  # fmt: skip
            return False
        counts = ", ".join(f"{n} {s}" for s, n in sorted(recorded.counts(sp.workspace).items())
                           ) if sp.workspace else ""  # fmt: skip
        self.log.info("%s: ended: %s", sp.name, counts or "nothing to run", extra=where)
        try:
            report = study_failures(sp.workspace) if sp.workspace else None
        except STUDY_ERRORS:  # it was readable a moment ago; the next pass says what changed
            report = None
        if report:  # which instances failed, why, and where their files are
            self.log.warning("%s: %s", sp.name, "\n".join(report.lines()), extra=where)
        if sp.warning:
            self._say(("warning", sp.name, sp.warning), logging.WARNING,
                      f"{sp.name}: {sp.warning}", **where)  # fmt: skip
        return True

    def _recorded(self) -> list[StudyPlan]:
        """The studies the repository knows (registry and root), without reading a revision."""
        out: list[StudyPlan] = []
        for ws in self.rec.known_workspaces():
            view = recorded.read(ws)
            name = (view.record or {}).get("name") or ws.name
            out.append(StudyPlan(name, ws, None, record=view.record, counts=view.counts,
                                 missing=view.missing, error=view.error))  # fmt: skip
        return out

    # -- git --------------------------------------------------------------------------------

    def _fetch(self) -> None:
        refspec = f"+refs/heads/{self.branch}:{self.ref}"
        try:
            self.git.git.fetch("--no-tags", "--quiet", self.remote, refspec)
        except GitCommandError as e:
            why = " ".join(str(e.stderr or e).split())[:400]
            self._error(("fetch", why), f"git fetch {self.remote} {self.branch} failed: {why}; "
                        "reconciling what was fetched before")  # fmt: skip
        else:  # it works again: a later failure is news
            self._said = {k for k in self._said if not (isinstance(k, tuple) and k[0] == "fetch")}

    def _verified(self, sha: str) -> bool:
        """`git verify-commit` accepts the commit's signature; else the tip is refused."""
        if sha not in self._signed:
            try:
                self.git.git.verify_commit(sha)
                self._signed[sha] = None
            except GitCommandError as e:
                lines = [ln for ln in str(e.stderr or "").splitlines() if ln.strip()]
                why = " ".join(" ".join(lines[-2:]).split()).removeprefix("stderr:").strip(" '")
                self._signed[sha] = why or "the commit is not signed"
        why = self._signed[sha]
        if why is None:
            return True
        error = (f"commit {sha} is refused (--require-signed): git verify-commit does not "
                 f"accept its signature ({why}). Nothing was applied.")  # fmt: skip
        self._error(("unsigned", sha), error, revision=sha)
        for sp in self._recorded():
            if sp.record is not None and sp.record.get("last_attempted_revision") != sha:
                try:
                    self.rec.refuse(sp, sha, error)
                except STUDY_ERRORS as e:
                    self._error(("refuse", sp.name, sha), f"{sp.name}: {recorded.one_line(e)}")
        return False

    # -- logging once -----------------------------------------------------------------------

    def _say(self, key: Hashable, level: int, msg: str, *, exc_info: bool = False,
             study: str | None = None, revision: str | None = None) -> None:  # fmt: skip
        if key in self._said:
            return
        self._said.add(key)
        self.log.log(level, msg, exc_info=exc_info,
                     extra={"study": study, "revision": revision})  # fmt: skip

    def _error(self, key: Hashable, msg: str, **kw: Any) -> None:
        self._errors += 1
        self._say(key, logging.ERROR, msg, **kw)


def _summary(sp: StudyPlan) -> str:
    counts = sp.plan.counts() if sp.plan else {}
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n and k != str(Kind.KEEP))


__all__ = ["DEBOUNCE", "INTERVAL", "WatchError", "Watcher"]
