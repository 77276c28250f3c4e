"""`$(LAUNCHER)` goldens: every adapter × fields unset, zero and set, for each token form.

Expected lines follow maestrowf 1.2.1's `get_parallelize_command` (schedulerscriptadapter.py,
slurmscriptadapter.py, lsfscriptadapter.py, _flux/flux0_49_0.py): the bare token gets the step's
own `nodes`/`procs`, a bracketed one what it names; a count nobody gave, and an optional field
that is unset (or a zero `gpus`), leaves its flag out. Where Maestro writes something broken we
write what it meant; those cases are marked DIFFERS (and listed in docs/maestro-conformance.md).
Every line goes through the real loader, expansion and adapter (`scripts`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sched_helpers import scripts

from reconciler.schedulers import get_adapter
from reconciler.schedulers.flux import FluxAdapter
from reconciler.spec import SpecError
from reconciler.spec.build import load_study_text

TOKENS = {"bare": "$(LAUNCHER)", "procs": "$(LAUNCHER)[2p]", "both": "$(LAUNCHER)[1n, 2p]",
          "legacy": "$(LAUNCHER)[1,2]"}  # fmt: skip

# The step's fields in each case. "zero": a zero gpus (the one count a spec may set to 0).
FIELDS = {
    "unset": "procs: 4",
    "zero": "nodes: 2, procs: 4, gpus: 0",
    "set": 'nodes: 2, procs: 8, "cores per task": 4, gpus: 1, "tasks per rs": 2, '
    '"rs per node": 4, "cpus per rs": 2, bind: "packed:1", "bind gpus": "packed:gpu"',
}

# adapter -> case -> token form -> the launcher line (before the command).
GOLDEN: dict[str, dict[str, dict[str, str]]] = {
    "slurm": {
        "unset": {"bare": "srun -n 4", "procs": "srun -n 2", "both": "srun -n 2 -N 1",
                  "legacy": "srun -n 2 -N 1"},
        "zero": {"bare": "srun -n 4 -N 2", "procs": "srun -n 2", "both": "srun -n 2 -N 1",
                 "legacy": "srun -n 2 -N 1"},
        "set": {"bare": "srun -n 8 -N 2 -c 4", "procs": "srun -n 2 -c 4",
                "both": "srun -n 2 -N 1 -c 4", "legacy": "srun -n 2 -N 1 -c 4"},
    },
    # Maestro's jsrun: nodes are not a jsrun flag; -a, -r, -c default to 1; -b to rs. (Maestro
    # crashes on `int(nodes)` when the step or the token names no nodes: DIFFERS for those.)
    "lsf": {
        "unset": {"bare": "jsrun --nrs 4 -b rs -a 1 -r 1 -c 1",
                  "procs": "jsrun --nrs 2 -b rs -a 1 -r 1 -c 1",
                  "both": "jsrun --nrs 2 -b rs -a 1 -r 1 -c 1",
                  "legacy": "jsrun --nrs 2 -b rs -a 1 -r 1 -c 1"},
        "zero": {"bare": "jsrun --nrs 4 -b rs -a 1 -r 1 -c 1",
                 "procs": "jsrun --nrs 2 -b rs -a 1 -r 1 -c 1",
                 "both": "jsrun --nrs 2 -b rs -a 1 -r 1 -c 1",
                 "legacy": "jsrun --nrs 2 -b rs -a 1 -r 1 -c 1"},
        "set": {"bare": "jsrun --nrs 8 -b packed:1 -g 1 -B packed:gpu -a 2 -r 4 -c 2",
                "procs": "jsrun --nrs 2 -b packed:1 -g 1 -B packed:gpu -a 2 -r 4 -c 2",
                "both": "jsrun --nrs 2 -b packed:1 -g 1 -B packed:gpu -a 2 -r 4 -c 2",
                "legacy": "jsrun --nrs 2 -b packed:1 -g 1 -B packed:gpu -a 2 -r 4 -c 2"},
    },
    "flux": {
        "unset": {"bare": "flux run -n 4", "procs": "flux run -n 2",
                  "both": "flux run -N 1 -n 2", "legacy": "flux run -N 1 -n 2"},
        "zero": {"bare": "flux run -N 2 -n 4", "procs": "flux run -n 2",
                 "both": "flux run -N 1 -n 2", "legacy": "flux run -N 1 -n 2"},
        "set": {"bare": "flux run -N 2 -n 8 -c 4 -g 1", "procs": "flux run -n 2 -c 4 -g 1",
                "both": "flux run -N 1 -n 2 -c 4 -g 1", "legacy": "flux run -N 1 -n 2 -c 4 -g 1"},
    },
    # PBS is ours (Maestro has none): mpiexec with the process count.
    "pbs": {
        case: {"bare": f"mpiexec -n {4 if case != 'set' else 8}", "procs": "mpiexec -n 2",
               "both": "mpiexec -n 2", "legacy": "mpiexec -n 2"}
        for case in FIELDS
    },
    # Maestro leaves the token in a local script (bash then fails on it); we render nothing.
    "local": {case: dict.fromkeys(TOKENS, "") for case in FIELDS},
}  # fmt: skip


def _spec(batch: str, fields: str, forms: dict[str, str]) -> str:
    steps = "".join(
        f"  - name: {form}\n    description: d\n    run: {{cmd: '{token} ./app', {fields}}}\n"
        for form, token in forms.items()
    )
    extra = ", host: h, bank: b, queue: q" if batch != "local" else ""
    return f"description: {{name: l, description: d}}\nbatch: {{type: {batch}{extra}}}\n" + (
        f"study:\n{steps}"
    )


def _lines(batch: str, spec: str, tmp: Path) -> dict[str, str]:
    study = load_study_text(spec)
    if batch == "flux":
        adapter = FluxAdapter(tmp, batch=study.batch, flux_version="0.49.0")
    else:
        adapter = get_adapter(batch, tmp, batch=study.batch, study="l")
    return {name: text.splitlines()[-1] for name, (text, _) in scripts(adapter, spec).items()}


@pytest.mark.parametrize("case", sorted(FIELDS))
@pytest.mark.parametrize("batch", sorted(GOLDEN))
def test_launcher_golden(batch: str, case: str, tmp_path: Path) -> None:
    got = _lines(batch, _spec(batch, FIELDS[case], TOKENS), tmp_path)
    want = {form: (line + " ./app").strip() for form, line in GOLDEN[batch][case].items()}
    assert got == want


@pytest.mark.parametrize(
    ("batch", "line"),
    [
        # DIFFERS: Maestro writes `srun -n  -N 2` (an empty count srun refuses) and, for LSF,
        # crashes; a step with nodes and no procs gets the scheduler's default task count.
        ("slurm", "srun -N 2 ./app"),
        ("lsf", "jsrun -b rs -a 1 -r 1 -c 1 ./app"),
        ("flux", "flux run -N 2 ./app"),  # Maestro: `flux run -N 2` too
        ("pbs", "mpiexec ./app"),
    ],
)
def test_nodes_without_procs(batch: str, line: str, tmp_path: Path) -> None:
    got = _lines(batch, _spec(batch, "nodes: 2", {"bare": "$(LAUNCHER)"}), tmp_path)
    assert got == {"bare": line}


@pytest.mark.parametrize("batch", ["slurm", "lsf", "flux", "pbs"])
def test_a_step_that_runs_here_gets_no_launcher(batch: str, tmp_path: Path) -> None:
    # No nodes, no procs: the step runs on this host (as in Maestro), so its token renders as the
    # local adapter's. (Maestro leaves `$(LAUNCHER)` in the script, where bash fails on it.)
    spec = _spec(batch, "walltime: 5", {"bare": "$(LAUNCHER)"})
    assert _lines(batch, spec, tmp_path) == {"bare": "./app"}


@pytest.mark.parametrize("key", ["cores per task", "nodes", "procs"])
def test_zero_counts_other_than_gpus_are_refused(key: str) -> None:
    # Maestro's schema refuses a literal 0 here too (only gpus may be 0).
    base = "nodes: 2" if key == "procs" else "procs: 2"
    with pytest.raises(SpecError, match=f"{key}.*0|0.*{key}"):
        load_study_text(_spec("slurm", f'{base}, "{key}": 0', {"bare": "$(LAUNCHER)"}))
