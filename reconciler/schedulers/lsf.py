"""IBM Spectrum LSF 10.1: bsub / bjobs / bkill, `#BSUB` header, `jsrun` launcher.

Header (Maestro 1.2.1's lines and order): -nnodes (step, else batch, else 1), -q (queue),
-G (bank), -W (walltime; H:M:S becomes HH:MM, seconds rounded up to a minute), -J (name),
-o "<name>.%J.out", -U (reservation), -e "<name>.%J.err".

`$(LAUNCHER)`: `jsrun --nrs P -b BIND [-g GPUS] [-B BIND_GPUS] -a TASKS_PER_RS -r RS_PER_NODE
-c CPUS_PER_RS` — procs is the number of resource sets; bind defaults to `rs`.

Submission: `bsub -cwd <dir> -Jd <tag>` with the script on stdin (bsub reads `#BSUB` lines only
from a script on stdin). Poll: one `bjobs -a` naming every id; EXIT is split by the exit reason
(TERM_RUNLIMIT → TIMEDOUT, TERM_OWNER/TERM_ADMIN → CANCELLED, otherwise FAILED). LSF keeps
finished jobs for CLEAN_PERIOD (1 h by default), so there is no separate history call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from reconciler.plan.states import State
from reconciler.schedulers.base import Job, Observation, SubmitError
from reconciler.schedulers.batch import BatchAdapter, call, unreadable
from reconciler.spec.instance import Resources
from reconciler.spec.names import job_name

STATES: dict[str, State] = {
    "PEND": State.PENDING,
    "PROV": State.PENDING,  # hosts being provisioned
    "WAIT": State.PENDING,  # chunk job waiting
    "RUN": State.RUNNING,
    "PSUSP": State.QUEUED,  # suspended while pending
    "USUSP": State.QUEUED,  # suspended while running: in flight, not running
    "SSUSP": State.QUEUED,
    "UNKWN": State.RUNNING,  # mbatchd lost its execution host for now; the job may run on
    "DONE": State.FINISHED,
    "EXIT": State.FAILED,  # refined by the exit reason below
    "ZOMBI": State.HWFAILURE,  # killed while its host was unreachable
}
CANCEL_REASONS = ("TERM_OWNER", "TERM_FORCE_OWNER", "TERM_ADMIN", "TERM_FORCE_ADMIN")
HOST_REASONS = ("TERM_HOST", "TERM_ZOMBIE", "TERM_ORPHAN_SYSTEM")
FORMAT = "jobid stat exit_code exit_reason delimiter='|'"
_SUBMITTED = re.compile(r"Job <(\d+)> is submitted")


def lsf_walltime(walltime: str) -> str:
    """LSF's -W takes [HH:]MM: an H:M:S time loses its seconds, rounded up to a minute."""
    parts = walltime.split(":")
    if len(parts) != 3:
        return walltime
    minutes = int(parts[1]) + math.ceil(float(parts[2]) / 60)
    hours = int(parts[0]) + minutes // 60
    return f"{hours:02d}:{minutes % 60:02d}"


class LSFAdapter(BatchAdapter):
    name = "lsf"
    directive = "#BSUB"

    def header(self, resources: Resources, *, name: str, shell: str,
               description: str) -> list[str]:  # fmt: skip
        b, r = self.batch, resources
        job = job_name(name)
        lines = [f"#!{shell}", f"#BSUB -nnodes {r.nodes or b.nodes or 1}"]
        if b.queue:
            lines.append(f"#BSUB -q {b.queue}")
        if b.bank:
            lines.append(f"#BSUB -G {b.bank}")
        if r.walltime:
            lines.append(f"#BSUB -W {lsf_walltime(r.walltime)}")
        lines += [f"#BSUB -J {job}", f"#BSUB -o {job}.%J.out"]
        if r.reservation:
            lines.append(f"#BSUB -U {r.reservation}")
        lines.append(f"#BSUB -e {job}.%J.err")
        return lines

    def launcher_format(self, nodes: int | None, procs: int | None, resources: Resources) -> str:
        """Maestro's jsrun: `--nrs` is the process count (Maestro crashes without one; we leave
        it out and jsrun fills the allocation), `-b rs` unless `bind`; `-g`/`-B` when set
        (gpus 0 is unset); `-a`, `-r`, `-c` default to 1. Nodes are not a jsrun flag."""
        r = resources
        args = ["jsrun", *(["--nrs", str(procs)] if procs else []), "-b", r.bind or "rs"]
        if r.gpus:
            args += ["-g", str(r.gpus)]
        if r.bind_gpus:
            args += ["-B", r.bind_gpus]
        args += ["-a", str(r.tasks_per_rs or 1), "-r", str(r.rs_per_node or 1)]
        args += ["-c", str(r.cpus_per_rs or 1)]
        return " ".join(args)

    def description(self, job: Job) -> str:
        """The job description (-Jd) that `find` looks for: tag plus instance directory."""
        return f"{self.tag(job)} {job.workdir}"

    def submit_job(self, job: Job) -> str:
        args = ["bsub", "-cwd", str(job.workdir), "-Jd", self.description(job)]
        out = call(args, what="bsub", cwd=job.workdir, stdin=job.script.read_text(),
                   timeout=self.timeout).stdout  # fmt: skip
        m = _SUBMITTED.search(out)
        if m is None:
            raise SubmitError(f"bsub: no 'Job <id> is submitted' in its output {out.strip()!r}")
        return m.group(1)

    def status(self, ids: Sequence[str]) -> dict[str, Observation]:
        # bjobs prints "Job <id> is not found" on stderr for ids it forgot, and exits 255
        # when it found none of them: both just mean "not shown".
        args = ["bjobs", "-a", "-noheader", "-o", FORMAT, *ids]
        proc = call(args, what="bjobs", timeout=self.timeout, ok=(0, 255))
        wanted, seen = set(ids), {}
        for line in proc.stdout.splitlines():
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split("|", 3)]
            if len(parts) != 4:
                raise unreadable("bjobs", line, "expected 4 '|'-separated fields")
            jid, stat, code, reason = parts
            if jid not in wanted:
                continue
            state = STATES.get(stat)
            if state is None:
                raise unreadable("bjobs", line, f"unknown job state {stat!r}")
            if stat != "EXIT":
                seen[jid] = Observation(state, 0 if state is State.FINISHED else None)
                continue
            if reason.startswith("TERM_RUNLIMIT"):
                state = State.TIMEDOUT
            elif reason.startswith(CANCEL_REASONS):
                state = State.CANCELLED
            elif reason.startswith(HOST_REASONS):
                state = State.HWFAILURE
            if code not in ("", "-") and not code.isdigit():
                raise unreadable("bjobs", line, f"exit code {code!r} is not a number")
            seen[jid] = Observation(state, int(code) if code.isdigit() else None)
        return seen

    def cancel_ids(self, ids: Sequence[str]) -> None:
        # Finished ids make bkill exit 255 ("Job has already finished"); the others are killed.
        call(["bkill", *ids], what="bkill", timeout=self.timeout, ok=(0, 255))

    def find_id(self, job: Job) -> str | None:
        args = ["bjobs", "-a", "-noheader", "-J", job_name(job.name), "-o",
                "jobid job_description delimiter='|'"]  # fmt: skip
        proc = call(args, what="bjobs", timeout=self.timeout, ok=(0, 255))
        wanted = self.description(job)
        for line in proc.stdout.splitlines():
            jid, _, desc = line.partition("|")
            if desc.strip() == wanted:
                return jid.strip()
        return None
