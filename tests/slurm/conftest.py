"""Real Slurm for tests/slurm.

In CI (CI=true) the session starts the project's single-node Slurm
(scripts/slurm/start-local-slurm.sh, idempotent) and FAILS if it cannot: a missing Slurm must
not turn into a green run of skipped tests. Elsewhere the tests skip, saying why, when
`sbatch` is absent or no controller answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "scripts" / "slurm" / "start-local-slurm.sh"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.slurm)


def _controller_up() -> bool:
    try:
        out = subprocess.run(
            ["scontrol", "ping"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "is UP" in out.stdout


def _node_idle() -> bool:
    out = subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20, check=False
    )
    return any(s.strip() in ("idle", "mixed", "allocated") for s in out.stdout.splitlines())


@pytest.fixture(scope="session")
def slurm() -> Iterator[None]:
    """A running Slurm controller and node, or a skip (a failure in CI)."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    if in_ci and not (_controller_up() and _node_idle()):
        # .ci/run normally started it already; this covers a bare `CI=true pytest`.
        env = {**os.environ, "SLURM_CPUS": os.environ.get("SLURM_CPUS", "8")}
        sudo = [] if os.geteuid() == 0 else ["sudo", "--preserve-env=SLURM_CPUS,SLURM_DBD"]
        proc = subprocess.run(
            [*sudo, str(START)], capture_output=True, text=True, timeout=600, check=False, env=env
        )
        if proc.returncode != 0 or not _controller_up():
            pytest.fail(
                f"CI=true but Slurm could not be started by {START} "
                f"(exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}",
                pytrace=False,
            )
    elif shutil.which("sbatch") is None:
        pytest.skip(
            "Slurm is not installed (no sbatch on PATH); as root run "
            "scripts/slurm/start-local-slurm.sh to get a local one"
        )
    elif not _controller_up():
        pytest.skip(
            "sbatch exists but no slurmctld answers; start scripts/slurm/start-local-slurm.sh"
        )
    if not _node_idle():
        msg = "Slurm is up but its node is not usable (sinfo shows no idle/mixed node)"
        if in_ci:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    yield


@pytest.fixture(autouse=True)
def _needs_slurm(slurm: None) -> None:
    """Every test in this folder needs the session's Slurm."""
