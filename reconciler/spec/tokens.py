"""Token syntax: `$(NAME)`, `$(P.label)`, `$(step.workspace)`, `$(LAUNCHER)[2n, 4p]`."""

from __future__ import annotations

import re

# Maestro's token body is `\w+`; workspace references also allow the punctuation step names
# use ("run-lulesh.workspace"). One regex serves both so every pass agrees on what a token is.
TOKEN = re.compile(r"\$\(([A-Za-z0-9_][A-Za-z0-9_.\-]*)\)")
WORKSPACE_SUFFIX = ".workspace"
LAUNCHER = "LAUNCHER"

# Location tokens stay symbolic through expansion (see instance.LOCATION_TOKEN).
OUTPUT_PATH = "OUTPUT_PATH"
SPECROOT = "SPECROOT"
WORKSPACE = "WORKSPACE"


def names_in(text: str) -> list[str]:
    return TOKEN.findall(text)


def param_of(token: str, params: set[str]) -> str | None:
    """The parameter a token refers to: `P`, `P.label` or `P.name`."""
    if token in params:
        return token
    base, _, attr = token.rpartition(".")
    if attr in ("label", "name") and base in params:
        return base
    return None


def workspace_ref(token: str) -> str | None:
    """`step.workspace` → `step`."""
    if token.endswith(WORKSPACE_SUFFIX) and len(token) > len(WORKSPACE_SUFFIX):
        return token[: -len(WORKSPACE_SUFFIX)]
    return None


def single_quoted(text: str) -> list[tuple[int, int]]:
    """Spans of `text` inside shell single quotes, where bash never expands `$(...)`.

    A token there that names nothing (Makefile syntax in a `sed` expression, say) is left as
    text, as Maestro leaves it, instead of being reported as unresolved. A hand-written scan:
    shlex does not report positions.
    """
    spans: list[tuple[int, int]] = []
    i, n = 0, len(text)
    in_double = False
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            i += 2
            continue
        if c == '"':
            in_double = not in_double
        elif c == "'" and not in_double:
            end = text.find("'", i + 1)
            if end < 0:
                break
            spans.append((i, end))
            i = end
        i += 1
    return spans


def in_spans(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a < pos < b for a, b in spans)
