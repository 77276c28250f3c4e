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
    """The adapter for a batch type. `study` tags scheduler jobs so a lost id is found again."""
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
