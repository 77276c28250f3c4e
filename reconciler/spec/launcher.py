"""`$(LAUNCHER)` tokens: parsing and checking (pure), and rendering through an adapter's format.

Forms: `$(LAUNCHER)` (the step's whole allocation), `$(LAUNCHER)[2n, 4p]` / `[4p]` (any order,
`p` required), and the legacy `$(LAUNCHER)[N,P]` (nodes, procs).

What a format is given follows Maestro 1.2.1 (`_substitute_parallel_command`): the bare token
gets the step's own `nodes` and `procs` (not the batch block's), a bracketed one exactly what it
names, and a count nobody gave is None — its flag is left out (`$(LAUNCHER)[4p]` is
`srun -n 4`, no `-N`), as are optional flags whose field is unset (`cores per task`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.spec.instance import Resources

LAUNCHER_TOKEN = re.compile(r"\$\(LAUNCHER\)(?:\[([^\]]*)\])?")
_WITH_SPACE = re.compile(LAUNCHER_TOKEN.pattern + r"([ \t]*)")
_NEW_PART = re.compile(r"^\s*(\d+)\s*([np])\s*$")
_LEGACY = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*$")


class LauncherError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Allocation:
    """What one launcher token asks for; both None: "the step's whole allocation"."""

    nodes: int | None
    procs: int | None


def parse(arg: str | None) -> Allocation:
    if arg is None:
        return Allocation(None, None)
    legacy = _LEGACY.match(arg)
    if legacy:
        return Allocation(int(legacy.group(1)), int(legacy.group(2)))
    nodes = procs = None
    for part in arg.split(","):
        m = _NEW_PART.match(part)
        if not m:
            raise LauncherError(
                f"'$(LAUNCHER)[{arg}]' is not a launcher allocation; write '[2n, 4p]', '[4p]' "
                "or the legacy '[nodes,procs]'"
            )
        count, unit = int(m.group(1)), m.group(2)
        if unit == "n":
            nodes = count
        else:
            procs = count
    if procs is None:
        raise LauncherError(f"'$(LAUNCHER)[{arg}]' needs a process count such as '4p'")
    return Allocation(nodes, procs)


def allocations(text: str) -> list[Allocation]:
    return [parse(m.group(1)) for m in LAUNCHER_TOKEN.finditer(text)]


def check(text: str, resources: Resources) -> list[str]:
    """Problems with the launcher tokens of one command, as messages."""
    problems: list[str] = []
    try:
        allocs = allocations(text)
    except LauncherError as e:
        return [str(e)]
    sized = [a for a in allocs if a.procs is not None]
    if not sized:
        return problems
    nodes, procs = resources.nodes, resources.procs
    total_n = sum(a.nodes or 0 for a in sized)
    total_p = sum(a.procs or 0 for a in sized)
    if procs is None:
        problems.append("'$(LAUNCHER)[...]' asks for processes but the step sets no 'procs'")
    elif total_p > procs:
        problems.append(
            f"the launcher tokens ask for {total_p} processes in all, more than the step's "
            f"procs: {procs}"
        )
    if total_n and (nodes or 1) < total_n:
        problems.append(
            f"the launcher tokens ask for {total_n} nodes in all, more than the step's "
            f"nodes: {nodes or 1}"
        )
    return problems


# (nodes, procs, resources) -> the launcher text; a count is None when nobody gave it.
Formatter = Callable[[int | None, int | None, Resources], str]


def render(text: str, resources: Resources, fmt: Formatter) -> str:
    """Replace every launcher token with `fmt(nodes, procs, resources)`."""

    def sub(m: re.Match[str]) -> str:
        a = parse(m.group(1))
        if a.nodes is None and a.procs is None:  # the bare token: the step's whole allocation
            nodes, procs = resources.nodes, resources.procs
        else:
            nodes, procs = a.nodes, a.procs
        launch = fmt(nodes, procs, resources)
        return launch + m.group(2) if launch else ""  # no launcher: no stray indent either

    return _WITH_SPACE.sub(sub, text)


def srun(nodes: int | None, procs: int | None, r: Resources) -> str:
    """Slurm: `srun -n P [-N N] [-c C]`. Maestro writes `-n` even without procs (`srun -n  -N 2`,
    which srun rejects); we leave it out, so srun takes one task per node."""
    args = ["srun"]
    if procs:
        args += ["-n", str(procs)]
    if nodes:
        args += ["-N", str(nodes)]
    if r.cores_per_task:
        args += ["-c", str(r.cores_per_task)]
    return " ".join(args)


FORMATS: dict[str, Formatter] = {
    # Maestro leaves the token in local scripts, where bash then fails; we render nothing.
    "local": lambda _n, _p, _r: "",
    "slurm": srun,
}


def render_launcher(text: str, resources: Resources, adapter: str) -> str:
    """Render launcher tokens for a named adapter (adapters may also pass their own format)."""
    fmt = FORMATS.get(adapter)
    if fmt is None:
        raise LauncherError(f"no launcher format for adapter '{adapter}'")
    return render(text, resources, fmt)
