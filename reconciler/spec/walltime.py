"""Walltime text → seconds, checked at validation so a typo never reaches a scheduler."""

from __future__ import annotations

import re

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def walltime_seconds(text: str | int | None) -> float | None:
    """Slurm's forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (a bare number means minutes).

    None or 0 means "no limit". Raises ValueError for anything else.
    """
    if text is None or str(text).strip() in ("", "0"):
        return None
    m = _WALLTIME.match(str(text).strip())
    if not m:
        raise ValueError(
            f"walltime '{text}' is not a duration such as 01:30:00, 1-12:00:00 or 90 (minutes)"
        )
    days, a, b, c = m.groups()
    if days is not None:  # D-H[:M[:S]]
        return float(int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0))
    if c is not None:  # H:M:S
        return float(int(a) * 3600 + int(b) * 60 + int(c))
    if b is not None:  # M:S
        return float(int(a) * 60 + int(b))
    return float(int(a) * 60)
