"""The engine behind the stand-in scheduler CLIs in this folder (bsub/bjobs/bkill, flux,
qsub/qstat/qdel).

State lives in the JSON file named by $FAKESCHED_STATE (locked with flock while it changes).
A submit records the job and starts a detached runner (`fakesched.py run ID`) that keeps it
pending while the file "$FAKESCHED_STATE.hold" exists, then runs the real script with bash in
the job's directory, writing its output files, and records how it ended: its exit code, a
walltime kill, or a cancel. Each CLI prints this generic record the way its real tool does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Job = dict[str, Any]

# $FAKESCHED_LOG: every CLI invocation appends its argv (one JSON list a line), so tests can
# count how many scheduler commands an adapter ran.
if os.environ.get("FAKESCHED_LOG") and sys.argv[1:2] != ["run"]:
    with open(os.environ["FAKESCHED_LOG"], "a") as _log:
        _log.write(json.dumps([Path(sys.argv[0]).name, *sys.argv[1:]]) + "\n")


def state_path() -> Path:
    path = os.environ.get("FAKESCHED_STATE")
    if not path:
        sys.exit("fakesched: FAKESCHED_STATE is not set")
    return Path(path)


@contextlib.contextmanager
def locked() -> Iterator[dict[str, Any]]:
    """The state, loaded under an exclusive lock and written back when the block ends."""
    path = state_path()
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {"next": 1, "jobs": {}}
        yield data
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)


def read() -> dict[str, Any]:
    with locked() as data:
        return json.loads(json.dumps(data))


def submit(job: Job, make_id: Callable[[int], str] = str) -> str:
    """Record a job (keys: name, script, cwd, out, err, walltime seconds or None, extra...)."""
    with locked() as data:
        n = data["next"]
        data["next"] = n + 1
        jid = make_id(n)
        job.update(id=jid, state="pending", exit=None, signal=None, submit=time.time())
        for key in ("out", "err"):
            job[key] = job[key].replace("%J", str(n)).replace("{{id}}", jid)
            if job[key].endswith("/"):  # a directory: the scheduler names the file
                job[key] += f"{job['name']}.{key[0]}{n}"
        # Real schedulers spool the script at submit: it may be deleted once the submit returns.
        spool = Path(f"{state_path()}.spool")
        spool.mkdir(exist_ok=True)
        if os.path.isfile(job["script"]):
            job["spooled"] = str(spool / f"{jid}.sh")
            Path(job["spooled"]).write_bytes(Path(job["script"]).read_bytes())
        data["jobs"][jid] = job
    subprocess.Popen(
        [sys.executable, __file__, "run", jid],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )
    return jid


def cancel(jid: str) -> bool:
    """Cancel a pending or running job; False if it is unknown or already ended."""
    with locked() as data:
        job = data["jobs"].get(jid)
        if job is None or job["state"] not in ("pending", "running"):
            return False
        job["cancel"] = True
        if job["state"] == "pending":
            job.update(state="cancelled", end=time.time())
        pgid = job.get("pgid")
    if pgid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    return True


def _run(jid: str) -> None:
    hold = Path(f"{state_path()}.hold")
    while hold.exists():
        time.sleep(0.05)
    with locked() as data:
        job = data["jobs"][jid]
        if job["state"] != "pending":
            return  # cancelled while it waited
        cwd = Path(job["cwd"])
        out = open(cwd / job["out"], "ab")  # noqa: SIM115 - handed to the child
        err = open(cwd / job["err"], "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                job.get("shell") or "/bin/bash",
                job.get("spooled", job["script"]),
                *job.get("args", []),
            ],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            env={**os.environ, **job.get("env", {})},
        )
        job.update(state="running", start=time.time(), pgid=proc.pid)
        walltime = job.get("walltime")
    timed_out = False
    try:
        scale = float(os.environ.get("FAKESCHED_TIME_SCALE", "1"))  # shrink walltimes in tests
        rc = proc.wait(timeout=None if walltime is None else walltime * scale)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        rc = proc.wait()
    with locked() as data:
        job = data["jobs"][jid]
        job.update(end=time.time(), exit=rc if rc >= 0 else None, signal=-rc if rc < 0 else None)
        if job.get("cancel"):
            job["state"] = "cancelled"
        elif timed_out:
            job["state"] = "timeout"
        else:
            job["state"] = "done" if rc == 0 else "failed"


def header_options(script_text: str, prefix: str) -> list[str]:
    """The words of every directive line (`#BSUB -q x` → ['-q', 'x']) before the first command."""
    import shlex

    words: list[str] = []
    for line in script_text.splitlines()[1:]:
        if line.startswith(prefix):
            words += shlex.split(line[len(prefix) :])
        elif line.strip() and not line.startswith("#"):
            break
    return words


def parse_time(text: str) -> float:
    """[[H:]M:]S → seconds; a trailing 's' (flux FSD) is seconds."""
    text = text.rstrip("s")
    total = 0.0
    for part in text.split(":"):
        total = total * 60 + float(part)
    return total


if __name__ == "__main__" and sys.argv[1:2] == ["run"]:
    _run(sys.argv[2])
