"""Flux (flux-core 0.49 and later) through its command line: flux batch / submit / jobs / cancel.

Maestro drives Flux through its Python bindings; the CLI needs no bindings and takes the same
directives. Header, as Maestro 1.2.1 writes it: `#MAESTRO-INFO` lines (adapter version, broker
version, uri), a lone `#`, then `#flux:` -N, -n (dropped for an exclusive allocation), -t <s>s
(always seconds; an int walltime means minutes), -q, --bank=, --job-name="name",
--output=name.{{id}}.out, --error=name.{{id}}.err, --exclusive, and the batch block's
`allocation_args`. Two directives Maestro passes through its API instead are written only when
asked for: --urgency (from `priority`) and --flags=waitable.

`nested` (default true) submits the script with `flux batch` (a Flux instance of its own);
`nested: false` runs it with `flux submit`, whose options are read back from the header.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.plan.states import State
from reconciler.schedulers.base import Job, Observation, SubmitError
from reconciler.schedulers.batch import (
    BatchAdapter,
    SchedulerError,
    call,
    exclusive_flags,
    unreadable,
)
from reconciler.spec.instance import Resources
from reconciler.spec.names import job_name

ADAPTER_VERSION = "0.49.0"
URGENCY = {"HELD": 0, "MINIMAL": 1, "LOW": 9, "MEDIUM": 16, "HIGH": 24, "EXPEDITED": 31}
STATES: dict[str, State] = {
    "D": State.PENDING,  # DEPEND
    "P": State.PENDING,  # PRIORITY
    "S": State.QUEUED,  # SCHED: waiting for resources
    "R": State.RUNNING,
    "C": State.RUNNING,  # CLEANUP: ending; the result comes next
    "CD": State.FINISHED,
    "F": State.FAILED,
    "CA": State.CANCELLED,
    "TO": State.TIMEDOUT,
}
FORMAT = "{id.f58}|{status_abbrev}|{returncode}"
NOT_NESTED = "#MAESTRO-INFO (nested) false"
_ID = re.compile(r"^(?:ƒ|f)[1-9A-HJ-NP-Za-km-z]+$|^\d+$")


def flux_seconds(walltime: str | None) -> str:
    """Maestro's conversion: minutes for a number, a sum for H:M:S, 0 (no limit) for none."""
    if not walltime:
        return "0"
    if walltime.isdigit():
        return str(int(walltime) * 60)
    if ":" in walltime:
        return str(sum(float(v) * 60.0**i for i, v in enumerate(walltime.split(":")[::-1])))
    raise ValueError(f"walltime '{walltime}' is neither minutes nor H:M:S")


def urgency(priority: str | float) -> int:
    if isinstance(priority, str):
        return URGENCY["EXPEDITED" if priority.upper() == "EXPEDITE" else priority.upper()]
    return math.ceil(float(priority) * 31)


# Keys of `allocation_args`/`launcher_args` that Maestro takes as the batch's exclusive default
# (for the allocation and the launcher) instead of passing them on.
EXCLUSIVE_KEYS = ("x", "exclusive")


def render_args(args: Mapping[str, Any] | None) -> list[str]:
    """Batch `allocation_args`/`launcher_args` groups as flux CLI options: short group names
    (o, S) as `-o key=value`, long ones (setopt, setattr, conf) as `--setopt=key=value`;
    a null value is a bare flag."""
    out: list[str] = []
    for group, values in (args or {}).items():
        if group in EXCLUSIVE_KEYS:
            continue  # an exclusive default: see FluxAdapter.exclusive
        items = values.items() if isinstance(values, Mapping) else [(values, None)]
        for key, value in items:
            text = key if value is None else f"{key}={_flux_value(value)}"
            out.append(f"-{group} {text}" if len(group) == 1 else f"--{group}={text}")
    return out


def _flux_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class FluxAdapter(BatchAdapter):
    name = "flux"
    directive = "#flux:"

    def __init__(self, *args: Any, flux_version: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flux_version = flux_version

    @property
    def flux_version(self) -> str:
        """The broker's version for the header's INFO line (asked once, from `flux version`)."""
        if self._flux_version is None:
            try:
                out = call(["flux", "version"], what="flux version", timeout=self.timeout).stdout
                m = re.search(r"commands:\s*(\S+)", out)
                self._flux_version = m.group(1) if m else "unknown"
            except SchedulerError:
                self._flux_version = "unknown"
        return self._flux_version

    def exclusive(self, resources: Resources) -> tuple[bool, bool]:
        """(allocation, launcher) exclusivity: the step's, over the batch's default (an `x` or
        `exclusive` key in `allocation_args` / `launcher_args`, as Maestro reads them)."""
        b = self.batch
        default = (
            any(k in (b.allocation_args or {}) for k in EXCLUSIVE_KEYS),
            any(k in (b.launcher_args or {}) for k in EXCLUSIVE_KEYS),
        )
        return exclusive_flags(resources.exclusive, default)

    def header(self, resources: Resources, *, name: str, shell: str,
               description: str) -> list[str]:  # fmt: skip
        b, r = self.batch, resources
        alloc_exclusive = self.exclusive(r)[0]
        job = job_name(name)
        lines = [
            f"#!{shell}",
            f"#MAESTRO-INFO (flux adapter version) {b.version or ADAPTER_VERSION}",
            f"#MAESTRO-INFO (flux version) {self.flux_version}",
        ]
        if b.uri:
            lines.append(f"#MAESTRO-INFO (flux_uri) {b.uri}")
        if r.nested is False:
            lines.append(NOT_NESTED)
        lines.append("#")
        d = self.directive + " "
        if r.nodes:
            lines.append(f"{d}-N {r.nodes}")
        if r.procs and not alloc_exclusive:  # an exclusive allocation takes whole nodes
            lines.append(f"{d}-n {r.procs}")
        lines.append(f"{d}-t {flux_seconds(r.walltime)}s")
        if b.queue:
            lines.append(f"{d}-q {b.queue}")
        if b.bank:
            lines.append(f"{d}--bank={b.bank}")
        lines += [f'{d}--job-name="{job}"', f"{d}--output={job}.{{{{id}}}}.out",
                  f"{d}--error={job}.{{{{id}}}}.err"]  # fmt: skip
        if alloc_exclusive:
            lines.append(f"{d}--exclusive")
        lines += [d + a for a in render_args(b.allocation_args)]
        if r.priority is not None:
            lines.append(f"{d}--urgency={urgency(r.priority)}")
        if r.waitable:
            lines.append(f"{d}--flags=waitable")
        return lines

    def launcher_format(self, nodes: int | None, procs: int | None, resources: Resources) -> str:
        """Maestro's `flux run` (0.49 interface): `-N`/`-n` only when given, `-c`/`-g` when set
        and the launcher is not exclusive (gpus 0 is unset), `--exclusive` when it is (the object
        form's `launcher`, or the batch default: a plain `exclusive: true` is the allocation's
        alone), then the batch `launcher_args`."""
        r = resources
        exclusive = self.exclusive(r)[1]
        args = ["flux", "run"]
        if nodes:
            args += ["-N", str(nodes)]
        if procs:
            args += ["-n", str(procs)]
        if r.cores_per_task and not exclusive:
            args += ["-c", str(r.cores_per_task)]
        if r.gpus and not exclusive:
            args += ["-g", str(r.gpus)]
        if exclusive:
            args.append("--exclusive")
        launcher_args = dict(self.batch.launcher_args or {})
        if self.batch.args:  # Maestro's deprecated `args`: shell options, merged into -o
            launcher_args["o"] = {**dict(launcher_args.get("o") or {}), **self.batch.args}
        args += render_args(launcher_args)
        return " ".join(args)

    # -- commands ------------------------------------------------------------------------

    def submit_job(self, job: Job) -> str:
        text = job.script.read_text()
        if NOT_NESTED in text.splitlines():
            opts: list[str] = []
            for line in text.splitlines():
                if line.startswith(self.directive):
                    opts += shlex.split(line[len(self.directive) :])
            args = ["flux", "submit", *opts, job.shell, str(job.script)]
        else:
            args = ["flux", "batch", str(job.script)]
        out = call(args, what=f"flux {args[1]}", cwd=job.workdir, timeout=self.timeout)
        jid = out.stdout.strip()
        if not _ID.match(jid):
            raise SubmitError(f"flux {args[1]}: expected a job id, got {jid!r}")
        return jid

    def status(self, ids: Sequence[str]) -> dict[str, Observation]:
        args = ["flux", "jobs", "--no-header", f"--format={FORMAT}", *ids]
        # An id flux no longer knows is reported on stderr (exit 1); the others still print.
        proc = call(args, what="flux jobs", timeout=self.timeout, ok=(0, 1))
        wanted, seen = set(ids), {}
        for line in proc.stdout.splitlines():
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split("|")]
            if len(parts) != 3:
                raise unreadable("flux jobs", line, "expected 3 '|'-separated fields")
            jid, abbrev, code = parts
            if jid not in wanted:
                continue
            state = STATES.get(abbrev)
            if state is None:
                raise unreadable("flux jobs", line, f"unknown job status {abbrev!r}")
            if code and not code.lstrip("-").isdigit():
                raise unreadable("flux jobs", line, f"return code {code!r} is not a number")
            seen[jid] = Observation(state, int(code) if code else None)
        if proc.returncode == 1 and not seen and "not found" not in proc.stderr.lower():
            raise SchedulerError(f"flux jobs failed: {proc.stderr.strip()}")
        return seen

    def cancel_ids(self, ids: Sequence[str]) -> None:
        call(["flux", "cancel", *ids], what="flux cancel", timeout=self.timeout, ok=(0, 1))
