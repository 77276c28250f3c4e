"""Scheduler adapters: command builders and output parsers. They never import the engine."""

from __future__ import annotations

from pathlib import Path

from reconciler.schedulers.base import Adapter


def get_adapter(name: str, root: Path, *, slots: int | None = None) -> Adapter:
    """The adapter for a batch type. Only `local` exists so far."""
    if name == "local":
        from reconciler.schedulers.local import LocalAdapter

        return LocalAdapter(root, slots=slots)
    raise ValueError(f"batch type '{name}' has no adapter yet (available: local)")


ADAPTERS = ("local",)
