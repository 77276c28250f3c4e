"""The record: one SQLite database per workspace (`<root>/.reconciler/record.db`).

Tables: `study` (one row: identity, engine, settings, applied spec), `instance` (one row per
instance), `event` (append-only log). Times are UNIX seconds (REAL); rendering is the CLI's job.

Durability: WAL with `synchronous=NORMAL`. In WAL mode NORMAL loses nothing when a process is
killed (kill -9 of the engine is the crash we design for); only an OS crash or power loss can drop
the last transactions, and those are re-derived on resume from what outlives them (the exit files
written when a job ends, the scheduler's queue). FULL would add an fsync per commit on the hot
path for no gain in that model.

Writes are batched: the engine commits once per pass (its intent to submit, with what it observed;
the job ids it got follow in the next pass's transaction), never once per instance.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import wsfile
from reconciler.plan.states import State
from reconciler.record import eventlog

SCHEMA_VERSION = 1
RECORD_DIR = ".reconciler"
RECORD_FILE = "record.db"

_SCHEMA = """
CREATE TABLE study (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    spec_path TEXT NOT NULL,          -- absolute path of the spec as given to `run`
    spec_text TEXT NOT NULL,          -- the applied spec, verbatim
    created REAL NOT NULL,
    adapter TEXT NOT NULL,
    shell TEXT NOT NULL DEFAULT '/bin/bash',
    scripts_dir TEXT,                      -- --usetmp: where the scripts are (else in place)
    pgen TEXT,                             -- JSON: pgen path and pargs, when used
    engine_pid INTEGER,
    engine_host TEXT,
    engine_started REAL,
    throttle INTEGER NOT NULL DEFAULT 0,   -- 0 = no limit
    rlimit INTEGER NOT NULL DEFAULT 1,     -- 0 = unlimited restarts (Maestro)
    sleep REAL NOT NULL DEFAULT 60,        -- poll interval for scheduler adapters
    attempts INTEGER NOT NULL DEFAULT 1,   -- tries per instance (Maestro's -a)
    backoff REAL NOT NULL DEFAULT 0,       -- seconds, doubled per retry
    slots INTEGER NOT NULL DEFAULT 0,      -- local parallelism; 0 = os.cpu_count()
    dry INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,  -- the whole study
    control_seq INTEGER NOT NULL DEFAULT 0,       -- bumped by cancel/update: wakes the engine
    locations TEXT NOT NULL DEFAULT '{}',  -- JSON: OUTPUT_PATH, SPECROOT, dependency paths
    last_attempted_revision TEXT,          -- GitOps: the newest commit tried
    last_applied_revision TEXT,            -- GitOps: the newest commit applied
    last_error TEXT,                       -- why the last attempted revision was not applied
    spec_blob TEXT,                        -- git blob id of the applied spec
    dependency_shas TEXT NOT NULL DEFAULT '{}'  -- JSON: git dependency name -> pinned SHA
);
CREATE TABLE revision (                    -- GitOps: every apply, for `history`
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    revision TEXT NOT NULL,
    attempted REAL NOT NULL,
    applied INTEGER NOT NULL,              -- 1 applied, 0 refused (invalid spec, missing path)
    detail TEXT NOT NULL DEFAULT '',       -- the plan's counts (JSON) or the error
    ended REAL,                            -- when the study reached a terminal state after it
    outcome TEXT                           -- counts by state then (JSON)
);
CREATE TABLE instance (
    name TEXT PRIMARY KEY,
    ord INTEGER NOT NULL,             -- topological order
    step TEXT NOT NULL,
    workspace TEXT NOT NULL,          -- relative to the study root
    depends TEXT NOT NULL,            -- JSON list of instance names
    fingerprint TEXT NOT NULL,
    walltime TEXT,
    has_restart INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,   -- submissions, restarts included
    restarts INTEGER NOT NULL DEFAULT 0,
    use_restart INTEGER NOT NULL DEFAULT 0,-- next submission runs the restart script
    not_before REAL,                  -- retry backoff
    cancel INTEGER NOT NULL DEFAULT 0,
    job_id TEXT,
    submit_time REAL,
    start_time REAL,
    end_time REAL,
    exit_code INTEGER,
    params TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX instance_state ON instance(state);
CREATE INDEX instance_ord ON instance(ord);
CREATE TABLE event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    instance TEXT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""

_INSTANCE_COLUMNS = (
    "name",
    "ord",
    "step",
    "workspace",
    "depends",
    "fingerprint",
    "walltime",
    "has_restart",
    "state",
    "attempts",
    "restarts",
    "use_restart",
    "not_before",
    "cancel",
    "job_id",
    "submit_time",
    "start_time",
    "end_time",
    "exit_code",
    "params",
)
SETTINGS = ("throttle", "rlimit", "sleep", "attempts", "backoff", "slots")
DYNAMIC = (
    "name",
    "state",
    "attempts",
    "restarts",
    "use_restart",
    "not_before",
    "cancel",
    "job_id",
    "submit_time",
    "start_time",
    "end_time",
    "exit_code",
)
MUTABLE = frozenset(_INSTANCE_COLUMNS) - {"name", "ord", "step", "workspace", "depends", "params"}


class RecordError(Exception):
    """The directory is not a readable reconciler workspace (user-facing message)."""


@dataclass(slots=True)
class InstanceRow:
    name: str
    step: str
    workspace: str
    depends: tuple[str, ...]
    fingerprint: str
    ord: int = 0
    walltime: str | None = None
    has_restart: bool = False
    state: State = State.INITIALIZED
    attempts: int = 0
    restarts: int = 0
    use_restart: bool = False
    not_before: float | None = None
    cancel: bool = False
    job_id: str | None = None
    submit_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    exit_code: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def _values(self) -> tuple[Any, ...]:
        return (
            self.name,
            self.ord,
            self.step,
            self.workspace,
            json.dumps(list(self.depends)),
            self.fingerprint,
            self.walltime,
            int(self.has_restart),
            str(self.state),
            self.attempts,
            self.restarts,
            int(self.use_restart),
            self.not_before,
            int(self.cancel),
            self.job_id,
            self.submit_time,
            self.start_time,
            self.end_time,
            self.exit_code,
            json.dumps(self.params, sort_keys=True, default=str),
        )

    @classmethod
    def _from(cls, r: sqlite3.Row) -> InstanceRow:
        return cls(
            name=r["name"],
            ord=r["ord"],
            step=r["step"],
            workspace=r["workspace"],
            depends=tuple(json.loads(r["depends"])),
            fingerprint=r["fingerprint"],
            walltime=r["walltime"],
            has_restart=bool(r["has_restart"]),
            state=State(r["state"]),
            attempts=r["attempts"],
            restarts=r["restarts"],
            use_restart=bool(r["use_restart"]),
            not_before=r["not_before"],
            cancel=bool(r["cancel"]),
            job_id=r["job_id"],
            submit_time=r["submit_time"],
            start_time=r["start_time"],
            end_time=r["end_time"],
            exit_code=r["exit_code"],
            params=json.loads(r["params"]),
        )


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    instance: str | None = None
    detail: str = ""
    time: float = field(default_factory=time.time)


def record_path(root: Path) -> Path:
    return root / RECORD_DIR / RECORD_FILE


def is_workspace(root: Path) -> bool:
    return record_path(root).is_file()


def _linked(root: Path) -> Path | None:
    """The record's directory or file when a symlink stands there (a step planted it): SQLite
    would follow it and keep the record, and its -wal file, wherever it points."""
    for path in (root / RECORD_DIR, record_path(root)):
        if path.is_symlink():
            return path
    return None


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY) or not os.access(path.parent, os.W_OK)
    except OSError:
        return False


class Store:
    """A connection to one workspace's record. Cheap to open; one per thread/process."""

    def __init__(self, db: Path) -> None:
        self.path = db
        # isolation_level=None: we issue BEGIN ourselves so a pass is exactly one transaction.
        self.db = sqlite3.connect(db, isolation_level=None, timeout=30.0)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path) -> Store:
        db = record_path(root)
        wsfile.mkdirs(root, RECORD_DIR)  # a real directory, never through a link
        if _linked(root) is not None:
            raise RecordError(f"{db} is a symlink; a record is never written through one")
        store = cls(db)
        # One script, one transaction: a record is either complete or absent.
        store.db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        return store

    @classmethod
    def open(cls, root: Path) -> Store:
        db = record_path(root)
        linked = _linked(root)
        if linked is not None:
            raise RecordError(
                f"{linked} is a symlink (to {os.readlink(linked)}), not the record reconciler "
                "made (replaced by a step?); nothing was read or written through it. Put the "
                "workspace's own .reconciler directory back, or run the study again elsewhere."
            )
        if not db.is_file():
            raise RecordError(
                f"{root} is not a reconciler workspace (no {RECORD_DIR}/{RECORD_FILE})"
            )
        try:
            store = cls(db)
            version = store.db.execute("PRAGMA user_version").fetchone()[0]
            # A damaged page fails later queries at random; find it now, while it is a clear
            # error and before anything acts on half a record. (Milliseconds for 10k rows.)
            damage = [r[0] for r in store.db.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as e:
            if _read_only(db):  # the record is fine; SQLite cannot open its WAL files there
                raise RecordError(
                    f"{db}: the workspace is on a read-only filesystem, so the record cannot be "
                    "opened; nothing was changed. Make it writable and run the command again."
                ) from None
            raise RecordError(
                f"{db}: the record cannot be read ({e}); nothing was changed. Restore it from a "
                "backup, or move the workspace aside and run the study again."
            ) from None
        if damage != ["ok"]:
            store.close()
            raise RecordError(
                f"{db}: the record is damaged ({'; '.join(damage[:3])}); nothing was changed. "
                "Restore it from a backup, or move the workspace aside and run the study again."
            )
        if version != SCHEMA_VERSION:
            store.close()
            raise RecordError(
                f"{db}: record schema version {version}, this reconciler reads {SCHEMA_VERSION}"
            )
        return store

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: no deadlock between two writers upgrading.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- study -----------------------------------------------------------------------------

    def init_study(
        self,
        *,
        name: str,
        spec_path: str,
        spec_text: str,
        adapter: str,
        locations: dict[str, str],
        shell: str = "/bin/bash",
        scripts_dir: str | None = None,
        pgen: dict[str, Any] | None = None,
        dry: bool = False,
        dependency_shas: dict[str, str] | None = None,
        **settings: float,
    ) -> None:
        cols = {
            "id": 1,
            "name": name,
            "spec_path": spec_path,
            "spec_text": spec_text,
            "created": time.time(),
            "adapter": adapter,
            "dry": int(dry),
            "shell": shell,
            "scripts_dir": scripts_dir,
            "pgen": None if pgen is None else json.dumps(pgen),
            "locations": json.dumps(locations, sort_keys=True),
            "dependency_shas": json.dumps(dependency_shas or {}, sort_keys=True),
        }
        cols.update({k: v for k, v in settings.items() if k in SETTINGS and v is not None})
        keys = ", ".join(cols)
        marks = ", ".join("?" * len(cols))
        with self.transaction():
            self.db.execute(f"INSERT INTO study ({keys}) VALUES ({marks})", tuple(cols.values()))
            self._events([Event("study-created", detail=spec_path)])

    def study(self) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM study WHERE id = 1").fetchone()
        if row is None:
            raise RecordError(f"{self.path}: the record has no study")
        out = dict(row)
        out["locations"] = json.loads(out["locations"])
        out["dependency_shas"] = json.loads(out["dependency_shas"] or "{}")
        return out

    # -- GitOps revisions ------------------------------------------------------------------

    def add_revision(self, revision: str, *, applied: bool, detail: str = "") -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO revision (revision, attempted, applied, detail) VALUES (?, ?, ?, ?)",
                (revision, time.time(), int(applied), detail),
            )

    def end_revision(self, outcome: dict[str, int]) -> None:
        """The newest applied revision reached a terminal state (once)."""
        with self.transaction():
            self.db.execute(
                "UPDATE revision SET ended = ?, outcome = ? WHERE id = (SELECT max(id) FROM "
                "revision WHERE applied = 1) AND ended IS NULL",
                (time.time(), json.dumps(outcome, sort_keys=True)),
            )

    def revisions(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM revision ORDER BY id")]

    def remove_instances(self, names: Sequence[str], detail: str = "") -> None:
        with self.transaction():
            self.db.executemany("DELETE FROM instance WHERE name = ?", [(n,) for n in names])
            self._events([Event("removed", n, detail) for n in names])

    def settings(self) -> dict[str, float]:
        row = self.db.execute(f"SELECT {', '.join(SETTINGS)} FROM study WHERE id = 1").fetchone()
        return dict(row)

    def data_version(self) -> int:
        """Changes whenever *another* connection commits to the record (SQLite's
        `PRAGMA data_version`); the engine re-reads rows only then."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def control_seq(self) -> int:
        """What the engine checks on every wake-up (one tiny query): changed = act now."""
        return int(self.db.execute("SELECT control_seq FROM study WHERE id = 1").fetchone()[0])

    def update_study(self, *, control: bool = True, **cols: Any) -> None:
        """Change study columns; `control` bumps control_seq so a running engine acts on it."""
        if not cols:
            return
        sets = ", ".join(f"{k} = ?" for k in cols)
        if control:
            sets += ", control_seq = control_seq + 1"
        shown = {k: v for k, v in cols.items() if k != "spec_text"}  # the spec is in the row
        detail = json.dumps(shown, sort_keys=True, default=str)
        with self.transaction():
            self.db.execute(f"UPDATE study SET {sets} WHERE id = 1", tuple(cols.values()))
            self._events([Event("study-updated", detail=detail)])

    # -- instances -------------------------------------------------------------------------

    def add_instances(self, rows: Iterable[InstanceRow]) -> None:
        marks = ", ".join("?" * len(_INSTANCE_COLUMNS))
        sql = f"INSERT INTO instance ({', '.join(_INSTANCE_COLUMNS)}) VALUES ({marks})"
        with self.transaction():
            self.db.executemany(sql, (r._values() for r in rows))

    def instances(self, names: Sequence[str] | None = None) -> list[InstanceRow]:
        if names is None:
            cur = self.db.execute("SELECT * FROM instance ORDER BY ord")
            return [InstanceRow._from(r) for r in cur]
        out: list[InstanceRow] = []
        for i in range(0, len(names), 500):  # SQLite's parameter limit
            chunk = names[i : i + 500]
            q = f"SELECT * FROM instance WHERE name IN ({', '.join('?' * len(chunk))})"
            out.extend(InstanceRow._from(r) for r in self.db.execute(q, chunk))
        out.sort(key=lambda r: r.ord)
        return out

    def dynamic(self) -> list[tuple[Any, ...]]:
        """The mutable columns of every instance, in `DYNAMIC` order (the engine's per-pass read:
        no JSON decoding, so a pass over 10,000 instances stays cheap)."""
        return self.db.execute(f"SELECT {', '.join(DYNAMIC)} FROM instance").fetchall()

    def counts(self) -> dict[str, int]:
        cur = self.db.execute("SELECT state, count(*) FROM instance GROUP BY state")
        return {state: n for state, n in cur}

    def step_counts(self) -> dict[str, dict[str, int]]:
        """{step: {state: n}}, steps in topological order: one aggregate, no row decoded (a
        summary of 100,000 instances costs tens of milliseconds)."""
        cur = self.db.execute(
            "SELECT step, state, count(*), min(ord) FROM instance GROUP BY step, state"
        )
        found = sorted(cur, key=lambda r: r[3])
        out: dict[str, dict[str, int]] = {}
        for step, state, n, _ in found:
            out.setdefault(step, {})[state] = n
        return out

    @staticmethod
    def _where(states: Sequence[str] | None, steps: Sequence[str] | None) -> tuple[str, list[str]]:
        terms, args = [], []
        for column, values in (("state", states), ("step", steps)):
            if values:
                terms.append(f"{column} IN ({', '.join('?' * len(values))})")
                args.extend(str(v) for v in values)
        return (" WHERE " + " AND ".join(terms) if terms else ""), args

    def select(
        self,
        *,
        states: Sequence[str] | None = None,
        steps: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[InstanceRow]:
        """Instances in some states and/or of some steps, in topological order (at most
        `limit`)."""
        where, args = self._where(states, steps)
        sql = f"SELECT * FROM instance{where} ORDER BY ord"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [InstanceRow._from(r) for r in self.db.execute(sql, args)]

    def columns(
        self,
        names: Sequence[str],
        *,
        states: Sequence[str] | None = None,
        steps: Sequence[str] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Some columns of the selected instances as raw tuples, in topological order: no row
        object, no JSON decoded (what `status --json` of 100,000 instances reads)."""
        bad = set(names) - set(_INSTANCE_COLUMNS)
        if bad:
            raise ValueError(f"no such instance columns: {sorted(bad)}")
        where, args = self._where(states, steps)
        sql = f"SELECT {', '.join(names)} FROM instance{where} ORDER BY ord"
        return self.db.execute(sql, args).fetchall()

    def count(
        self, *, states: Sequence[str] | None = None, steps: Sequence[str] | None = None
    ) -> int:
        where, args = self._where(states, steps)
        return int(self.db.execute(f"SELECT count(*) FROM instance{where}", args).fetchone()[0])

    def submissions(self, name: str) -> list[str]:
        """The job id of each submission of an instance, oldest first (from the event log: a
        job started, or found again by its tag after an engine died inside submit)."""
        cur = self.db.execute(
            "SELECT detail FROM event WHERE instance = ? AND kind IN ('submitted', 'found') "
            "ORDER BY id",
            (name,),
        )
        return [d.split(" ", 1)[0] for (d,) in cur]

    def apply(self, changes: dict[str, dict[str, Any]], events: Sequence[Event] = ()) -> None:
        """Update many instances and log events in one transaction (the engine's one commit)."""
        if not changes and not events:
            return
        with self.transaction():
            for name, cols in changes.items():
                bad = set(cols) - MUTABLE
                if bad:
                    raise ValueError(f"not updatable: {sorted(bad)}")
                vals = [str(v) if isinstance(v, State) else v for v in cols.values()]
                sets = ", ".join(f"{k} = ?" for k in cols)
                self.db.execute(f"UPDATE instance SET {sets} WHERE name = ?", (*vals, name))
            self._events(events)

    def request_cancel(self, steps: Sequence[str] | None = None) -> int:
        """Flag instances (all, or those of `steps`) for cancellation; returns how many."""
        with self.transaction():
            if steps:
                q = f"UPDATE instance SET cancel = 1 WHERE step IN ({', '.join('?' * len(steps))})"
                n = self.db.execute(q, tuple(steps)).rowcount
            else:
                n = self.db.execute("UPDATE instance SET cancel = 1").rowcount
                self.db.execute("UPDATE study SET cancel_requested = 1 WHERE id = 1")
            self.db.execute("UPDATE study SET control_seq = control_seq + 1 WHERE id = 1")
            self._events([Event("cancel-requested", detail=",".join(steps or ["*"]))])
        return n

    # -- events ----------------------------------------------------------------------------

    def log(self, events: Sequence[Event]) -> None:
        with self.transaction():
            self._events(events)

    def _events(self, events: Iterable[Event]) -> None:
        events = list(events)
        self.db.executemany(
            "INSERT INTO event (time, instance, kind, detail) VALUES (?, ?, ?, ?)",
            ((e.time, e.instance, e.kind, e.detail) for e in events),
        )
        eventlog.emit(events)

    def events(self, instance: str | None = None) -> list[Event]:
        if instance is None:
            cur = self.db.execute("SELECT time, instance, kind, detail FROM event ORDER BY id")
        else:
            cur = self.db.execute(
                "SELECT time, instance, kind, detail FROM event WHERE instance = ? ORDER BY id",
                (instance,),
            )
        return [Event(kind=k, instance=i, detail=d, time=t) for t, i, k, d in cur]
