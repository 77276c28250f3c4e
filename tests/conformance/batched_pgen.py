"""A Maestro-style parameter generator for samples/how_to_guide/batched_parameters: one
parameter per CSV column, one row per line. Use: --pgen batched_pgen.py --pargs CSV:<file>."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from maestrowf.datastructures.core import ParameterGenerator


def get_custom_generator(env: Any, **kwargs: str) -> ParameterGenerator:
    path = Path(kwargs["CSV"])
    if not path.is_absolute():
        path = Path(kwargs.get("SPECROOT", ".")) / path
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    p = ParameterGenerator()
    for column in rows[0] if rows else []:
        p.add_parameter(column, [row[column] for row in rows], f"{column}.%%")
    return p
