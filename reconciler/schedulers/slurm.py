"""Slurm: sbatch / squeue / sacct / scancel.

Header: Maestro 1.2.1's `#SBATCH` lines, in its order, from the batch block merged with the
step's `run:` keys (the step wins): --nodes, --partition (queue), --account (bank), --time
(verbatim), --job-name/--output/--error ("<name>.out"/".err" in the instance directory),
--comment (the step description), --reservation, --gres=gpu:N, --ntasks (Maestro's rule: only
if the batch block sets `procs` or nobody sets `nodes`), --exclusive, --qos.

Submission: `sbatch --parsable` in the instance directory, appending to the output files across
attempts, with the step description plus this study's tag as the job comment (the command line
overrides the header's --comment) so that `find` recognises a job whose id was lost.

Observation: one `squeue` for all ids (`-t all` keeps finished jobs visible for MinJobAge), then
one `sacct` for the ids squeue no longer shows. On a cluster without accounting the second
call says so once and is not made again; jobs squeue forgot become LOST after the grace period.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Sequence
from datetime import datetime

from reconciler.plan.states import State
from reconciler.schedulers.base import Job, Observation, SubmitError
from reconciler.schedulers.batch import (
    BatchAdapter,
    SchedulerError,
    call,
    exclusive_flags,
    extra,
    one_line,
    unreadable,
    wait_status_code,
)
from reconciler.spec import launcher
from reconciler.spec.instance import Resources
from reconciler.spec.names import job_name

# Every job state Slurm 22.05–24.x prints (squeue %T / -O State, sacct State).
STATES: dict[str, State] = {
    "PENDING": State.PENDING,
    "CONFIGURING": State.PENDING,  # nodes allocated and booting: not running yet
    "POWER_UP_NODE": State.PENDING,
    "REQUEUED": State.PENDING,  # back in the queue (preempted or failed node, requeued)
    "REQUEUE_HOLD": State.PENDING,
    "REQUEUE_FED": State.PENDING,
    "RESV_DEL_HOLD": State.PENDING,
    "RUNNING": State.RUNNING,
    "COMPLETING": State.RUNNING,  # epilogs still running; the end state comes next
    "RESIZING": State.RUNNING,
    "SIGNALING": State.RUNNING,
    "STAGE_OUT": State.RUNNING,
    "UPDATE_DB": State.RUNNING,
    "SUSPENDED": State.QUEUED,  # in flight but not running (its clock is stopped too)
    "STOPPED": State.QUEUED,
    "COMPLETED": State.FINISHED,
    "FAILED": State.FAILED,
    "OUT_OF_MEMORY": State.FAILED,
    "SPECIAL_EXIT": State.FAILED,
    "CANCELLED": State.CANCELLED,
    "TIMEOUT": State.TIMEDOUT,  # the restart policy applies
    "DEADLINE": State.TIMEDOUT,  # ended by its --deadline: a time limit too
    "NODE_FAIL": State.HWFAILURE,  # the retry policy applies (bounded, unlike Maestro)
    "BOOT_FAIL": State.HWFAILURE,
    "PREEMPTED": State.HWFAILURE,  # not the job's fault: retried like a node failure
    "REVOKED": State.LOST,  # federation: a sibling cluster runs it, not this id
}
ENDED = {s for s, st in STATES.items() if st not in (State.PENDING, State.QUEUED, State.RUNNING)}
_COMMENT = re.compile(r'^#SBATCH\s+--comment[= ]"(.*)"\s*$')
_EXIT = re.compile(r"^(\d+):(\d+)$")
MAX_IDS = 2000  # beyond this many ids, list the user's jobs instead of naming every id


class SlurmAdapter(BatchAdapter):
    name = "slurm"
    directive = "#SBATCH"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.accounting: bool | None = None  # None: not asked yet; False: sacct is disabled

    # -- scripts -------------------------------------------------------------------------

    def header(self, resources: Resources, *, name: str, shell: str,
               description: str) -> list[str]:  # fmt: skip
        b, r = self.batch, resources
        nodes = r.nodes or b.nodes
        procs = r.procs or b.procs
        walltime = r.walltime or extra(b, "walltime")
        gpus = r.gpus or b.gpus
        job = job_name(name)
        lines = [f"#!{shell}"]
        if nodes:
            lines.append(f"#SBATCH --nodes={nodes}")
        if b.queue:
            lines.append(f"#SBATCH --partition={b.queue}")
        if b.bank:
            lines.append(f"#SBATCH --account={b.bank}")
        if walltime:
            lines.append(f"#SBATCH --time={walltime}")
        lines += [
            f'#SBATCH --job-name="{job}"',
            f'#SBATCH --output="{job}.out"',
            f'#SBATCH --error="{job}.err"',
        ]
        if description:
            lines.append(f'#SBATCH --comment "{one_line(description)}"')
        if r.reservation:
            lines.append(f'#SBATCH --reservation="{r.reservation}"')
        if gpus:
            lines.append(f"#SBATCH --gres=gpu:{gpus}")
        # Maestro's rule: --ntasks only when the batch block names procs, or no nodes at all.
        if procs and (b.procs or not nodes):
            lines.append(f"#SBATCH --ntasks={procs}")
        if exclusive_flags(r.exclusive)[0]:
            lines.append("#SBATCH --exclusive")
        if r.qos:
            lines.append(f"#SBATCH --qos={r.qos}")
        return lines

    def launcher_format(self, nodes: int | None, procs: int | None, resources: Resources) -> str:
        return launcher.srun(nodes, procs, resources)

    # -- commands ------------------------------------------------------------------------

    def comment(self, job: Job) -> str:
        """The header's --comment (the step description) followed by this submission's tag."""
        description = ""
        for line in job.script.read_text().splitlines():
            m = _COMMENT.match(line)
            if m:
                description = m.group(1)
        return f"{description} {self.tag(job)}".strip()

    def submit_job(self, job: Job) -> str:
        args = ["sbatch", "--parsable", f"--chdir={job.workdir}", "--open-mode=append",
                f"--comment={self.comment(job)}", str(job.script)]  # fmt: skip
        out = call(args, what="sbatch", cwd=job.workdir, timeout=self.timeout).stdout.strip()
        jid = out.split(";", 1)[0]  # --parsable prints "id" or "id;cluster"
        if not jid.isdigit():
            raise SubmitError(f"sbatch: expected a job id, got {out!r}")
        return jid

    def status(self, ids: Sequence[str]) -> dict[str, Observation]:
        select = [f"--jobs={','.join(ids)}"] if len(ids) <= MAX_IDS else [
            f"--user={getpass.getuser()}"]  # fmt: skip
        args = ["squeue", "--noheader", "--states=all", *select,
                "--Format=JobID:|,State:|,Exit_Code:|,EndTime:"]  # fmt: skip
        proc = call(args, what="squeue", timeout=self.timeout, ok=(0, 1))
        if proc.returncode == 1:
            # One id that squeue no longer knows is an error for squeue; several are not.
            if len(ids) == 1 and "Invalid job id" in proc.stderr:
                return {}
            raise SchedulerError(f"squeue failed: {proc.stderr.strip() or proc.stdout.strip()}")
        wanted = set(ids)
        seen: dict[str, Observation] = {}
        for line in proc.stdout.splitlines():
            if not line.strip():
                continue
            parts = line.split("|")
            if len(parts) != 4:
                raise unreadable("squeue", line, "expected 4 '|'-separated fields")
            jid, state, status, end = (p.strip() for p in parts)
            if jid not in wanted:
                continue  # array/het members, or other jobs of the user
            if not status.lstrip("-").isdigit():
                raise unreadable("squeue", line, f"exit status {status!r} is not a number")
            code = wait_status_code(int(status)) if int(status) >= 0 else None
            obs = _observation(state, code, end)
            if obs is None:
                raise unreadable("squeue", line, f"unknown job state {state!r}")
            seen[jid] = obs
        return seen

    def history(self, ids: Sequence[str]) -> dict[str, Observation]:
        if self.accounting is False:
            return {}
        args = ["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={','.join(ids)}",
                "--format=JobID,State,ExitCode,End"]  # fmt: skip
        proc = call(args, what="sacct", timeout=self.timeout, ok=(0, 1))
        if proc.returncode != 0:
            if "accounting storage is disabled" in proc.stderr.lower():
                self.accounting = False  # a cluster without slurmdbd: squeue is all there is
                return {}
            raise SchedulerError(f"sacct failed: {proc.stderr.strip() or proc.stdout.strip()}")
        self.accounting = True
        seen: dict[str, Observation] = {}
        for line in proc.stdout.splitlines():
            if not line.strip():
                continue
            parts = line.split("|")
            if len(parts) != 4:
                raise unreadable("sacct", line, "expected 4 '|'-separated fields")
            jid, state, exit_code, end = parts
            m = _EXIT.match(exit_code)
            if m is None:
                raise unreadable("sacct", line, f"exit code {exit_code!r} is not 'code:signal'")
            code = 128 + int(m.group(2)) if int(m.group(2)) else int(m.group(1))
            obs = _observation(state.split(" ", 1)[0], code, end)  # "CANCELLED by 0"
            if obs is None:
                raise unreadable("sacct", line, f"unknown job state {state!r}")
            if jid in ids:
                seen[jid] = obs
        return seen

    def cancel_ids(self, ids: Sequence[str]) -> None:
        # Already-ended ids make scancel complain (rc 1) about those alone; the rest go.
        call(["scancel", "--quiet", *ids], what="scancel", timeout=self.timeout, ok=(0, 1))

    def find_id(self, job: Job) -> str | None:
        tag, workdir = self.tag(job), str(job.workdir)
        args = ["squeue", "--noheader", "--states=all", f"--name={job_name(job.name)}",
                "--Format=JobID:|,WorkDir:|,Comment:"]  # fmt: skip
        rows = call(args, what="squeue", timeout=self.timeout).stdout.splitlines()
        if self.accounting is not False:
            sacct = ["sacct", "--noheader", "--parsable2", "--allocations",
                     f"--name={job_name(job.name)}", "--starttime=now-604800",
                     "--format=JobID,WorkDir,Comment"]  # fmt: skip
            proc = call(sacct, what="sacct", timeout=self.timeout, ok=(0, 1))
            if proc.returncode == 0:
                rows += proc.stdout.splitlines()
        for line in rows:
            parts = line.split("|", 2)  # the comment is last and may itself contain '|'
            if len(parts) == 3 and parts[1].strip() == workdir and parts[2].strip().endswith(tag):
                return parts[0].strip()
        return None


def _observation(state: str, code: int | None, end: str) -> Observation | None:
    mapped = STATES.get(state.upper())
    if mapped is None:
        return None
    if state.upper() not in ENDED:
        return Observation(mapped)
    if mapped is State.FINISHED:
        code = 0
    return Observation(mapped, code, _timestamp(end))


def _timestamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.strip()).timestamp()  # local time, as Slurm prints
    except ValueError:
        return None  # "Unknown", "N/A", "None"
