"""Helpers for engine tests: tiny specs in tmp dirs, set up through the real spec layer."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.engine.setup import RunSettings, create_workspace
from reconciler.spec import load_study


def write_spec(directory: Path, study: str, params: str = "", name: str = "t") -> Path:
    text = f"description:\n  name: {name}\n  description: engine test\nstudy:\n"
    text += textwrap.indent(textwrap.dedent(study).strip("\n"), "  ") + "\n"
    if params:
        text += "global.parameters:\n" + textwrap.indent(textwrap.dedent(params).strip(), "  ")
    spec = directory / "spec.yaml"
    spec.write_text(text + "\n")
    return spec


@pytest.fixture
def study_dir(tmp_path: Path) -> Callable[..., Path]:
    """study_dir(steps_yaml, params_yaml="", **RunSettings) → workspace root, set up."""

    def make(study: str, params: str = "", **settings: object) -> Path:
        spec = write_spec(tmp_path, study, params)
        loaded = load_study(spec)
        root = tmp_path / "ws"
        create_workspace(loaded, root, RunSettings(**settings), cwd=tmp_path)  # type: ignore[arg-type]
        return root

    return make
