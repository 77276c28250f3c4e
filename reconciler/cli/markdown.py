"""Markdown for pull-request comments (`plan --format markdown`), with user text escaped.

Study names, instance names, reasons and errors come from specs: a newline would end a table
row, a `|` split a cell, backticks close a code span, `<!--` hide the rest of the comment, and
`@someone` ping a person or a team. Each helper takes user text and returns markdown that shows
exactly that text (control characters escaped by `printable`) and nothing more.
"""

from __future__ import annotations

import re

from reconciler.spec.printable import printable

# Backslash-escapable ASCII punctuation that means something inline (CommonMark §2.4).
_SPECIAL = re.compile(r"([\\`*_\[\]|~!#])")
_TICKS = re.compile(r"`+")


def text(value: object) -> str:
    """Inline text: one line, HTML and markdown punctuation escaped, no @mentions."""
    s = printable(value, one_line=True)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _SPECIAL.sub(r"\\\1", s)
    return s.replace("@", "&#64;")


def code(value: object) -> str:
    """An inline code span (also safe in a table cell: `|` is escaped, as GFM requires)."""
    s = printable(value, one_line=True).replace("|", "\\|")
    longest = max((len(m) for m in _TICKS.findall(s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest else ""  # a span may not start or end with its own backticks
    return f"{fence}{pad}{s}{pad}{fence}"


def block(value: object) -> str:
    """A fenced code block, its fence longer than any run of backticks inside."""
    s = printable(value)
    longest = max((len(m) for m in _TICKS.findall(s)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{s}\n{fence}"


__all__ = ["block", "code", "text"]
