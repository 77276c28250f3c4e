"""The pool process: a Dask scheduler and its (adaptive) cluster, detached from the engine.

    python -m reconciler.schedulers.pooldaemon WORKSPACE

Started by the pool adapter in its own session, so it outlives the engine: after a `kill -9` of
the engine, `resume` finds it through `.reconciler/pool.json` and reconnects, and the tasks it was
running carry on meanwhile (they are fire-and-forget; each writes its own exit record). It reads
its settings from `.reconciler/pool-config.json`, starts a LocalCluster or a dask-jobqueue
cluster (SLURMCluster, PBSCluster, LSFCluster) with `adapt(minimum=0, maximum=cap)`, writes
`pool.json` (address, pid) once the scheduler listens, and exits — closing the cluster, which
cancels its allocation jobs — on SIGTERM/SIGINT, or when it has had no task and no client for
`idle` seconds (an abandoned pool does not hold allocations for long).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from reconciler import wsfile

CONFIG = "pool-config.json"
STATE = "pool.json"
LOG = "pool.log"
MODULE = "reconciler.schedulers.pooldaemon"
FIRE_AND_FORGET = "fire-and-forget"


def hhmmss(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


# How each scheduler's job asks for N GPUs on its node (`directives` adds site-specific ones).
GPU_DIRECTIVE = {"slurm": "--gres=gpu:{n}", "pbs": "-l ngpus={n}", "lsf": '-gpu "num={n}"'}


def cluster_kwargs(cfg: dict[str, Any], root: Path) -> tuple[str, dict[str, Any]]:
    """(cluster class name, its keyword arguments) from the pool settings. Pure: tested alone."""
    pool = cfg["pool"]
    study = cfg.get("study") or "study"
    cores, workers, gpus = int(pool["cores"]), int(pool["workers"]), int(pool["gpus"])
    resources = {"CPU": cores, **({"GPU": gpus} if gpus else {})}
    scratch = str(root / ".reconciler" / "pool-scratch")
    interface = pool.get("interface")
    if pool["cluster"] == "local":
        kw: dict[str, Any] = {
            "n_workers": 0,
            "processes": True,
            "threads_per_worker": cores,
            "memory_limit": pool["memory"],
            "resources": resources,
            "dashboard_address": ":0",
            "scheduler_port": 0,
            "local_directory": scratch,
            "silence_logs": 40,  # logging.ERROR
        }
        if interface:
            kw["interface"] = interface
        else:
            kw["host"] = "127.0.0.1"
        return "LocalCluster", kw
    res = ",".join(f"{k}={v}" for k, v in resources.items())
    directives = list(pool.get("directives") or [])
    if gpus:  # the allocation must hold the GPUs its workers offer
        directives.insert(0, GPU_DIRECTIVE[pool["cluster"]].format(n=gpus * workers))
    kw = {
        "cores": cores * workers,
        "processes": workers,
        "memory": _times(pool["memory"], workers),
        "queue": cfg.get("queue"),
        "job_name": f"pool-{study}"[:60],
        "worker_extra_args": ["--resources", res],
        "job_extra_directives": directives,
        "log_directory": str(root / ".reconciler" / "pool-logs"),
        "local_directory": scratch,
        "python": sys.executable,
        "scheduler_options": {"dashboard_address": ":0"},
        "death_timeout": 60,
    }
    if interface:
        kw["interface"] = interface
    walltime = cfg.get("walltime_seconds")
    if walltime:
        kw["walltime"] = hhmmss(walltime)[:-3] if pool["cluster"] == "lsf" else hhmmss(walltime)
    bank = cfg.get("bank")
    if bank:
        kw["project" if pool["cluster"] == "lsf" else "account"] = bank
    name = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}[pool["cluster"]]
    return name, {k: v for k, v in kw.items() if v is not None}


def _times(memory: str, n: int) -> str:
    """`n` workers' memory as one job's request ("2GB" x 2 -> "4GB")."""
    from dask.utils import format_bytes, parse_bytes

    return format_bytes(parse_bytes(memory) * n).replace(" ", "")


TLS_DIR = "pool-tls"
_TLS_FILES = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}


def new_certificate(root: Path) -> None:
    """A certificate for this pool alone, readable only by its owner: the scheduler, its workers
    and the engine present it, and a connection without it is refused."""
    from distributed.security import Security

    temp = Security.temporary()  # one self-signed certificate for every role
    folder = root / ".reconciler" / TLS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    texts = {"ca": temp.tls_ca_file, "cert": temp.tls_client_cert, "key": temp.tls_client_key}
    for role, name in _TLS_FILES.items():
        path = folder / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(str(texts[role]))


def security(root: Path) -> Any:
    """The pool's TLS settings, from the files `new_certificate` wrote."""
    from distributed.security import Security

    folder = root / ".reconciler" / TLS_DIR
    ca, cert, key = (str(folder / _TLS_FILES[r]) for r in ("ca", "cert", "key"))
    return Security(
        tls_ca_file=ca,
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
        require_encryption=True,
    )


def make_cluster(cfg: dict[str, Any], root: Path) -> Any:
    name, kw = cluster_kwargs(cfg, root)
    new_certificate(root)
    kw["security"] = security(root)
    kw["protocol"] = "tls://"
    if name == "LocalCluster":
        from distributed import LocalCluster

        return LocalCluster(**kw)
    import dask_jobqueue

    return getattr(dask_jobqueue, name)(**kw)


def snapshot(cluster: Any, scheduler: Any) -> dict[str, Any]:
    """Workers (where, how busy, in which allocation job) and task counts, for `status`."""
    jobs = {}
    for name, spec in dict(getattr(cluster, "workers", {}) or {}).items():
        job_id = getattr(spec, "job_id", None)
        if job_id:
            jobs[str(name)] = str(job_id)
    workers = []
    for ws in list(scheduler.workers.values()):
        name = str(ws.name)
        workers.append(
            {
                "name": name,
                "host": ws.host,
                # `processing` counts tasks sent to the worker, running or waiting there
                "busy": min(len(ws.processing), ws.nthreads),
                "assigned": len(ws.processing),
                "threads": ws.nthreads,
                "resources": {k: v for k, v in (ws.resources or {}).items()},
                "allocation": jobs.get(name) or jobs.get(name.rsplit("-", 1)[0]),
            }
        )
    joined = {w["name"] for w in workers} | {w["name"].rsplit("-", 1)[0] for w in workers}
    pending = [j for n, j in jobs.items() if n not in joined]
    return {
        "workers": sorted(workers, key=lambda w: w["name"]),
        "allocations": sorted(set(jobs.values())),
        "allocations_waiting": pending,
        "tasks": len(scheduler.tasks),
        "updated": time.time(),
    }


def write_state(root: Path, data: dict[str, Any]) -> None:
    wsfile.write(root, root / ".reconciler" / STATE, json.dumps(data, indent=1) + "\n")


def _remove_state(root: Path) -> None:
    path = root / ".reconciler" / STATE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


class LostAllocations:
    """Forget allocations whose workers all left (walltime, node failure, `scancel`).

    The cluster keeps such a job in its plan, so adapt() would never replace it and the pool
    would stay short (for good, if it was the only one). A job whose workers had joined and have
    all been gone for GRACE seconds is dropped from the plan; adapt() then asks for a new one.
    """

    GRACE = 5.0

    def __init__(self) -> None:
        self.joined: dict[str, float] = {}  # job name -> last time one of its workers was seen

    def forget(self, cluster: Any, scheduler: Any) -> None:
        spec = getattr(cluster, "worker_spec", None)
        if spec is None:
            return
        names = {str(ws.name) for ws in list(scheduler.workers.values())}
        now = time.monotonic()
        gone = []
        for job in list(spec):
            if str(job) in names or any(n.startswith(f"{job}-") for n in names):
                self.joined[str(job)] = now
            elif str(job) in self.joined and now - self.joined[str(job)] > self.GRACE:
                gone.append(job)
        for job in gone:
            print(f"allocation {job} lost all its workers: replacing it", flush=True)
            spec.pop(job, None)
            self.joined.pop(str(job), None)
        if gone:  # closes what is left of the old job, then adapt() scales up as needed
            cluster.loop.add_callback(cluster._correct_state)


class LastError(logging.Handler):
    """Keeps the last error Dask logged about starting workers (an `sbatch` refused, say), so
    `pool.json` can tell the engine and `status` why the pool has no workers."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text}: {record.exc_info[1]}"
        text = text.replace("\\n", "\n")  # a repr()'d exception inside the message
        if "stderr:" in text:  # a refused sbatch/qsub/bsub: what the scheduler said is the news
            text = text.rsplit("stderr:", 1)[1].split("')")[0]
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        self.text = " | ".join(dict.fromkeys(lines))[-600:]


def main(argv: list[str]) -> int:
    root = Path(argv[0]).resolve()
    errors = LastError()
    logging.getLogger().addHandler(errors)
    cfg = json.loads((root / ".reconciler" / CONFIG).read_text())
    pool = cfg["pool"]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    import dask

    dask.config.set(
        {
            "distributed.scheduler.worker-ttl": "60s",
            "distributed.admin.tick.limit": "30s",
            # Finished results are not kept (tasks are fire-and-forget); a task that was running
            # on a worker that died may run again: its claim file makes that run a no-op.
            "distributed.scheduler.allowed-failures": 3,
            # An instance is taken to be long until it ran: adapt() then grows the pool while
            # instances wait (keys are unique per instance, so Dask never learns a duration
            # that would make it hold back workers for short tasks).
            "distributed.scheduler.unknown-task-duration": "60s",
        }
    )
    cluster = make_cluster(cfg, root)
    try:
        local = pool["cluster"] == "local"
        allocations = 1 if local else int(pool["allocations"])
        maximum = int(pool["workers"]) * allocations
        if local:
            cluster.adapt(minimum=0, maximum=maximum, wait_count=3, interval="500ms")
        else:  # allocations are slow to get: keep an idle one for ~20 s before giving it back
            cluster.adapt(minimum_jobs=0, maximum_jobs=allocations, wait_count=10, interval="2s")
        scheduler = cluster.scheduler
        state = {
            "address": cluster.scheduler_address,
            "pid": os.getpid(),
            "cluster": pool["cluster"],
            "dashboard": getattr(cluster, "dashboard_link", None),
            "max_workers": maximum,
            "started": time.time(),
        }
        write_state(root, {**state, **snapshot(cluster, scheduler)})
        print(f"pool up at {cluster.scheduler_address} (pid {os.getpid()})", flush=True)
        idle_for = float(pool.get("idle", 300))
        idle_since: float | None = None
        lost = LostAllocations()
        while not stop.wait(1.0):
            lost.forget(cluster, scheduler)
            now = snapshot(cluster, scheduler)
            if now["workers"]:
                errors.text = ""  # workers came: whatever failed before is over
            elif errors.text:
                now["error"] = errors.text
            with contextlib.suppress(OSError):  # a full disk must not stop the pool
                write_state(root, {**state, **now})
            clients = [c for c in list(scheduler.clients) if c != FIRE_AND_FORGET]
            if scheduler.tasks or clients:
                idle_since = None
                continue
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= idle_for:
                print(f"idle for {idle_for:g} s with no client: closing", flush=True)
                break
    finally:
        _remove_state(root)
        with contextlib.suppress(Exception):
            cluster.close(timeout=30)
        print("pool closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
