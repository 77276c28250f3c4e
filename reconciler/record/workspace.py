"""The on-disk workspace: Maestro's layout, plus `.reconciler/` for the record and the engine.

```
<root>/                       <name>_<YYYYmmdd-HHMMSS> (or exactly `-o DIR`)
  <spec>.yaml                 verbatim copy of the spec
  batch.info                  the batch block (YAML)
  status.csv                  Maestro's columns, rewritten atomically (throttled)
  logs/                       engine log (background runs)
  meta/                       parameters.yaml, metadata.yaml, environment.yaml (allowlisted)
  <step>/<labels>/            one directory per instance:
      <instance>.sh           the script (shebang + cmd), as Maestro writes it; a scheduled
                              study's are <instance>.slurm.sh (.lsf.sh, .flux.sh, .pbs.sh)
      <instance>.restart.sh   when the step has `restart:` (.restart.slurm.sh, ...)
      <instance>.<pid>.out/.err  a local attempt's output, streamed (one pair per attempt);
                              a scheduler's follow its header (Slurm: <job-name>.out)
      <instance>.exit         "<exit code|timeout|cancelled> <submission>", when the job ends
  (every <instance> in a file name is sanitised as the directory names are: spec/names.py)
  .reconciler/                record.db (SQLite), engine.lock, shepherds/, local-job.sh, pool files
```
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler import wsfile
from reconciler.record import plainyaml
from reconciler.record.store import RECORD_DIR, InstanceRow
from reconciler.spec.names import exit_name, safe_name, script_name
from reconciler.spec.secrets import MASK, is_secret_name, mask_text

STATUS_COLUMNS = (
    "Step Name",
    "Job ID",
    "Workspace",
    "State",
    "Run Time",
    "Elapsed Time",
    "Start Time",
    "Submit Time",
    "End Time",
    "Number Restarts",
    "Params",
)
UNKNOWN = "--"
# Environment variables worth keeping as provenance; never the whole environment (secrets).
ENV_ALLOWLIST = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "HOSTNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "PWD",
    "TMPDIR",
    "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
    "PYTHONPATH",
)


def default_root(name: str, base: Path, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return base / f"{safe_name(name)}_{stamp}"


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path
    scripts: Path | None = None  # --usetmp: scripts live here (same relative layout)
    batch_type: str = "local"  # names the scripts: <instance>.sh, <instance>.slurm.sh, ...

    @property
    def private(self) -> Path:
        return self.root / RECORD_DIR

    @property
    def lock_file(self) -> Path:
        return self.private / "engine.lock"

    @property
    def status_csv(self) -> Path:
        return self.root / "status.csv"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def meta(self) -> Path:
        return self.root / "meta"

    def instance_dir(self, workspace: str) -> Path:
        return self.root / workspace

    def script(self, name: str, workspace: str, restart: bool = False) -> Path:
        """Where an instance's script is written and run from (the one place that names it)."""
        base = self.scripts if self.scripts is not None else self.root
        return base / workspace / script_name(name, self.batch_type, restart=restart)

    def script_to_run(self, name: str, workspace: str, restart: bool = False) -> Path:
        """`script`, or the name an earlier version gave it (`<raw instance>.sh`) when only that
        exists: a workspace set up before scripts were named after the scheduler still resumes."""
        path = self.script(name, workspace, restart)
        if path.exists():
            return path
        legacy = path.with_name(f"{name}.restart.sh" if restart else f"{name}.sh")
        return legacy if legacy.exists() else path

    def stem(self, name: str, workspace: str) -> Path:
        """`<instance dir>/<instance>`: adapters name an attempt's output files from it."""
        return self.root / workspace / safe_name(name)

    def exit_file(self, name: str, workspace: str) -> Path:
        return self.root / workspace / exit_name(name)

    def engine_log(self, study_name: str) -> Path:
        return self.logs / f"{safe_name(study_name)}.log"


def write_atomic(
    path: Path, text: str, mode: int | None = None, *, root: Path | None = None
) -> None:
    """Write via a temp file + rename, so readers never see half a file, and never through a
    symlink: not at `path`, and not on a directory between `root` (default: the file's own
    directory) and it (see wsfile.py)."""
    wsfile.write(root if root is not None else path.parent, path, text, mode=mode)


_FAST_FROM = 64  # entries: below this ruamel's few milliseconds do not matter


def _entries(data: Any) -> int:
    if not isinstance(data, Mapping):
        return 0
    return sum(len(v) if isinstance(v, Mapping | list) else 1 for v in data.values())


def _yaml_text(data: Any) -> str:
    """Plain YAML: safe dumper, builtin types only (no python/* tags, unlike Maestro). Big
    documents (one entry per instance) go through the fast emitter when their shape allows;
    small ones, and any other shape, through ruamel."""
    if _entries(data) >= _FAST_FROM:
        fast = plainyaml.dump(data)
        if fast is not None:
            return fast
    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def write_yaml(path: Path, data: Any, *, root: Path | None = None) -> None:
    write_atomic(path, _yaml_text(_plain(data)), root=root)


def environment_snapshot(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {
        k: (MASK if is_secret_name(k) else mask_text(env[k])) for k in ENV_ALLOWLIST if k in env
    }


# -- status.csv ----------------------------------------------------------------------------


def _stamp(t: float | None) -> str:
    return UNKNOWN if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """Maestro's `0d:00h:00m:00s`."""
    if seconds is None:
        return UNKNOWN
    s = max(0, int(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d:{h:02d}h:{m:02d}m:{s:02d}s"


def format_params(params: Mapping[str, Any]) -> str:
    return ";".join(f"{k}:{v}" for k, v in params.items())


def status_row(r: InstanceRow, now: float) -> list[str]:
    run = None if r.start_time is None else (r.end_time or now) - r.start_time
    elapsed = None if r.submit_time is None else (r.end_time or now) - r.submit_time
    return [
        r.name,
        r.job_id or UNKNOWN,
        r.workspace,
        str(r.state),
        duration(run),
        duration(elapsed),
        _stamp(r.start_time),
        _stamp(r.submit_time),
        _stamp(r.end_time),
        str(r.restarts),
        format_params(r.params),
    ]


def write_status_csv(ws: Workspace, rows: Iterable[InstanceRow], now: float | None = None) -> None:
    now = time.time() if now is None else now
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(STATUS_COLUMNS)
    w.writerows(status_row(r, now) for r in rows)
    write_atomic(ws.status_csv, buf.getvalue(), root=ws.root)


class StatusWriter:
    """Rewrites status.csv at most every `interval` seconds.

    A row's line only depends on the clock while it is in flight (run and elapsed time); every
    other line is kept formatted and reused while its row is unchanged, so a rewrite of a 10,000-
    instance study mostly joins cached strings instead of formatting 10,000 rows (~80 ms) again.
    """

    def __init__(self, ws: Workspace, interval: float = 1.0) -> None:
        self.ws = ws
        self.interval = interval
        self._last = 0.0
        self._lines: dict[str, tuple[tuple[Any, ...], str]] = {}  # name -> (row key, line)
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\n")

    def maybe_write(self, rows: Iterable[InstanceRow], *, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return False
        self._write(rows, time.time())
        self._last = now
        return True

    def _line(self, fields: list[str]) -> str:
        self._buf.seek(0)
        self._buf.truncate()
        self._csv.writerow(fields)
        return self._buf.getvalue()

    def _write(self, rows: Iterable[InstanceRow], now: float) -> None:
        parts = [self._line(list(STATUS_COLUMNS))]
        for r in rows:
            key = (r.state, r.job_id, r.start_time, r.submit_time, r.end_time, r.restarts)
            hit = self._lines.get(r.name)
            if hit is not None and hit[0] == key:
                parts.append(hit[1])
                continue
            line = self._line(status_row(r, now))
            if r.end_time is not None or (r.start_time is None and r.submit_time is None):
                self._lines[r.name] = (key, line)  # independent of `now`
            parts.append(line)
        write_atomic(self.ws.status_csv, "".join(parts), root=self.ws.root)
