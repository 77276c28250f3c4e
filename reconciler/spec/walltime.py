"""Walltime text → seconds, checked at validation so a typo never reaches a scheduler."""

from __future__ import annotations

import re

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
# The longest walltime accepted: no scheduler runs a job for longer, and every later wait
# (epoll, select, sleep) stays far from its overflow.
MAX_DAYS = 365
MAX_SECONDS = MAX_DAYS * 86400.0


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
    groups = m.groups()
    too_long = ValueError(f"walltime '{text}' is longer than {MAX_DAYS} days")
    if any(g is not None and len(g.lstrip("0")) > 12 for g in groups):
        raise too_long  # more digits than any duration has: never reaches float() (overflow)
    days, b, c = (int(g) if g is not None else None for g in (groups[0], groups[2], groups[3]))
    a = int(groups[1])
    if days is not None:  # D-H[:M[:S]]
        seconds = float(days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0))
    elif c is not None:  # H:M:S
        seconds = float(a * 3600 + (b or 0) * 60 + c)
    elif b is not None:  # M:S
        seconds = float(a * 60 + b)
    else:
        seconds = float(a * 60)
    if seconds > MAX_SECONDS:
        raise too_long
    return seconds
