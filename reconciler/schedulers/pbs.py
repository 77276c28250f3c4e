"""PBS Professional / OpenPBS (2020 and later): qsub / qstat / qdel. Maestro has no PBS (#430).

Header (ours, in this order): -N name, -l select=N:ncpus=C:mpiprocs=M[:ngpus=G] (M = procs per
node, C = M × cores per task), -l walltime=HH:MM:SS, -q (queue; a reservation is a queue in
PBS and wins), -A (bank), -o/-e "<name>.out"/".err", -l place=scatter:excl when exclusive.
PBS starts a job in $HOME, so the script then changes to $PBS_O_WORKDIR (qsub runs in the
instance directory) before the command. `$(LAUNCHER)` is `mpiexec -n P`; PBS hands the node
list to MPI.

Submission: `qsub -v RECONCILER_TAG=<tag> <script>` in the instance directory; the id is qsub's
whole output ("123.server"). Poll: one `qstat -x -f -F json <ids>` (-x includes finished jobs
while the server keeps job history). Exit_status: 0 → FINISHED; > 256 → killed by signal
(status − 256; SIGTERM/SIGKILL from qdel → CANCELLED); −29 (walltime) → TIMEDOUT; other
negative values are PBS's own launch failures → HWFAILURE; a finished job without Exit_status
was deleted before it ran → CANCELLED.
"""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Sequence
from typing import Any

from reconciler.plan.states import State
from reconciler.schedulers.base import Job, Observation, SubmitError
from reconciler.schedulers.batch import (
    BatchAdapter,
    SchedulerError,
    call,
    exclusive_flags,
)
from reconciler.spec.instance import Resources
from reconciler.spec.names import job_name
from reconciler.spec.walltime import walltime_seconds

STATES: dict[str, State] = {
    "Q": State.PENDING,
    "H": State.PENDING,  # held
    "W": State.PENDING,  # waiting for its start time
    "T": State.PENDING,  # being moved
    "M": State.PENDING,  # moved to another server
    "B": State.RUNNING,  # an array job that has begun
    "R": State.RUNNING,
    "E": State.RUNNING,  # exiting: the result comes next
    "S": State.QUEUED,  # suspended: in flight, not running
    "U": State.QUEUED,
    "F": State.FINISHED,  # refined by Exit_status
    "X": State.FINISHED,
}
WALLTIME_EXCEEDED = -29  # PBS Pro's JOB_EXEC_KILL_WALLTIME
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGKILL)


def hms(seconds: float) -> str:
    s = math.ceil(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class PBSAdapter(BatchAdapter):
    name = "pbs"
    directive = "#PBS"

    def header(self, resources: Resources, *, name: str, shell: str,
               description: str) -> list[str]:  # fmt: skip
        b, r = self.batch, resources
        nodes = r.nodes or (b.nodes if isinstance(b.nodes, int) else None) or 1
        procs = r.procs or (b.procs if isinstance(b.procs, int) else None) or nodes
        per_node = math.ceil(procs / nodes)
        chunk = f"select={nodes}:ncpus={per_node * (r.cores_per_task or 1)}:mpiprocs={per_node}"
        gpus = r.gpus or b.gpus
        if gpus:
            chunk += f":ngpus={gpus}"
        job = job_name(name)
        lines = [f"#!{shell}", f"#PBS -N {job}", f"#PBS -l {chunk}"]
        seconds = walltime_seconds(r.walltime)
        if seconds:
            lines.append(f"#PBS -l walltime={hms(seconds)}")
        queue = r.reservation or b.queue
        if queue:
            lines.append(f"#PBS -q {queue}")
        if b.bank:
            lines.append(f"#PBS -A {b.bank}")
        lines += [f"#PBS -o {job}.out", f"#PBS -e {job}.err"]
        if exclusive_flags(r.exclusive)[0]:
            lines.append("#PBS -l place=scatter:excl")
        # Not a directive: PBS stops reading directives at the first command line.
        lines += ["", 'cd "${PBS_O_WORKDIR:-.}"']
        return lines

    def launcher_format(self, nodes: int | None, procs: int | None, resources: Resources) -> str:
        # PBS is ours (Maestro has none): mpiexec -n P, or the whole allocation without procs.
        return f"mpiexec -n {procs}" if procs else "mpiexec"

    def tag_value(self, job: Job) -> str:
        # qsub -v splits on commas: keep the tag free of them.
        return f"{self.tag(job)} {job.workdir}".replace(",", "_")

    def submit_job(self, job: Job) -> str:
        args = ["qsub", "-v", f"RECONCILER_TAG={self.tag_value(job)}", str(job.script)]
        jid = call(args, what="qsub", cwd=job.workdir, timeout=self.timeout).stdout.strip()
        if not jid or len(jid.split()) != 1 or not jid.split(".")[0].isdigit():
            raise SubmitError(f"qsub: expected a job id such as 123.server, got {jid!r}")
        return jid

    def _qstat(self, ids: Sequence[str]) -> dict[str, Any]:
        args = ["qstat", "-x", "-f", "-F", "json", *ids]
        # Unknown ids are reported on stderr (exit 153) while the known ones still print.
        proc = call(args, what="qstat", timeout=self.timeout, ok=(0, 35, 153))
        if not proc.stdout.strip():
            return {}
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError as e:
            raise SchedulerError(f"qstat: output is not JSON ({e}): {proc.stdout[:200]!r}") from e
        jobs = data.get("Jobs", {}) if isinstance(data, dict) else None
        if not isinstance(jobs, dict):
            raise SchedulerError(f"qstat: no 'Jobs' object in its JSON: {proc.stdout[:200]!r}")
        return jobs

    def status(self, ids: Sequence[str]) -> dict[str, Observation]:
        seen: dict[str, Observation] = {}
        for jid, info in self._qstat(ids).items():
            if jid in ids:
                seen[jid] = _observation(jid, info)
        return seen

    def cancel_ids(self, ids: Sequence[str]) -> None:
        # qdel exits non-zero for ids that already finished; the others are deleted.
        call(["qdel", *ids], what="qdel", timeout=self.timeout, ok=tuple(range(256)))

    def find_id(self, job: Job) -> str | None:
        wanted = self.tag_value(job)
        for jid, info in self._qstat([]).items():
            variables = info.get("Variable_List") or {}
            if (
                info.get("Job_Name") == job_name(job.name)
                and isinstance(variables, dict)
                and variables.get("RECONCILER_TAG") == wanted
            ):
                return jid
        return None


def _observation(jid: str, info: Any) -> Observation:
    if not isinstance(info, dict) or not isinstance(info.get("job_state"), str):
        raise SchedulerError(f"qstat: job {jid} has no job_state: {info!r}")
    state = STATES.get(info["job_state"])
    if state is None:
        raise SchedulerError(f"qstat: job {jid} has unknown job_state {info['job_state']!r}")
    if state is not State.FINISHED:
        return Observation(state)
    raw = info.get("Exit_status")
    if raw is None:
        return Observation(State.CANCELLED)  # deleted before it ran
    if not isinstance(raw, int):
        raise SchedulerError(f"qstat: job {jid} has a non-numeric Exit_status {raw!r}")
    if raw == 0:
        return Observation(State.FINISHED, 0)
    if raw == WALLTIME_EXCEEDED:
        return Observation(State.TIMEDOUT, None)
    if raw < 0:
        return Observation(State.HWFAILURE, raw)
    if raw > 256:
        sig = raw - 256
        return Observation(State.CANCELLED if sig in CANCEL_SIGNALS else State.FAILED, 128 + sig)
    return Observation(State.FAILED, raw)
