"""Fixtures for the scheduler adapter tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sched_helpers import Fakes


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    f = Fakes(tmp_path, monkeypatch)
    yield f
    f.cleanup()
