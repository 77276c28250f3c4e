"""Scheduler adapters: command builders and output parsers. They never import the engine."""

from __future__ import annotations

from pathlib import Path

from reconciler.schedulers.base import Adapter
from reconciler.spec.model import Batch

ADAPTERS = ("local", "slurm", "lsf", "flux", "pbs")


def get_adapter(
    name: str,
    root: Path,
    *,
    slots: int | None = None,
    batch: Batch | None = None,
    study: str | None = None,
) -> Adapter:
    """The adapter for a batch type. `study` tags scheduler jobs so a lost id is found again.
    With a `batch.pool`, the pooled steps' jobs go to the pool and the others to this adapter."""
    adapter = _adapter(name, root, slots=slots, batch=batch, study=study)
    if batch is None or batch.pool is None:
        return adapter
    from reconciler.schedulers.pool import PoolAdapter
    from reconciler.schedulers.routed import Routed

    return Routed(adapter, PoolAdapter(root, batch.pool, batch=batch, study=study))


def missing(batch: Batch) -> str | None:
    """What this machine lacks to run the study's batch block (None: nothing)."""
    if batch.pool is None:
        return None
    import importlib.util

    need = ["distributed"]
    if batch.pool.address is None:  # a pool we start: its TLS certificate, maybe its allocations
        need.append("cryptography")
        if batch.pool.where(batch.type) != "local":
            need.append("dask_jobqueue")
    absent = [m for m in need if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return (
        f"batch.pool needs {' and '.join(absent)}, not installed here; install "
        "them with pip install 'reconciler[pool]'"
    )


def _adapter(
    name: str, root: Path, *, slots: int | None, batch: Batch | None, study: str | None
) -> Adapter:
    if name == "local":
        from reconciler.schedulers.local import LocalAdapter

        return LocalAdapter(root, slots=slots)
    if name == "slurm":
        from reconciler.schedulers.slurm import SlurmAdapter as cls
    elif name == "lsf":
        from reconciler.schedulers.lsf import LSFAdapter as cls  # type: ignore[assignment]
    elif name == "flux":
        from reconciler.schedulers.flux import FluxAdapter as cls  # type: ignore[assignment]
    elif name == "pbs":
        from reconciler.schedulers.pbs import PBSAdapter as cls  # type: ignore[assignment]
    else:
        raise ValueError(f"batch type '{name}' has no adapter (available: {', '.join(ADAPTERS)})")
    return cls(root, batch=batch, study=study, slots=slots)
