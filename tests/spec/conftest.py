"""Helpers for the spec-layer tests: write a spec, load it, collect its diagnostics."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.spec import Diagnostic, SpecError, Study, load_study


@pytest.fixture
def spec(tmp_path: Path) -> Callable[..., Path]:
    """spec(text, name="spec.yaml") writes the (dedented) text under tmp_path."""

    def write(text: str | bytes, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def load(spec: Callable[..., Path]) -> Callable[..., Study]:
    """load(text, **kwargs) → Study, through a real file (as the CLI reads specs)."""

    def run(text: str | bytes, **kwargs: object) -> Study:
        return load_study(spec(text), **kwargs)  # type: ignore[arg-type]

    return run


@pytest.fixture
def reject(spec: Callable[..., Path]) -> Callable[..., list[Diagnostic]]:
    """reject(text) → the error diagnostics of a spec that must not load."""

    def run(text: str | bytes, **kwargs: object) -> list[Diagnostic]:
        path = spec(text)
        with pytest.raises(SpecError) as info:
            load_study(path, **kwargs)  # type: ignore[arg-type]
        found = [d for d in info.value.diagnostics if d.severity == "error"]
        assert found, "a SpecError must carry at least one error"
        assert all(d.file == str(path) for d in found)
        return found

    return run
