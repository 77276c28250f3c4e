"""A fast emitter for the workspace's plain YAML files (meta/*.yaml, batch.info).

ruamel's pure-Python dumper spends ~0.2 ms per node, about half a second on the meta files of a
2,000-instance study: a third of `run`'s set-up. These files are plain data (mappings of names to
scalars, scalar lists and mappings), so a direct emitter writes the same block layout ruamel does
(sorted keys, two-space indent, indentless lists, `{}`/`[]` for empty ones) in a few ms.

Scalars are written plain only when that cannot read back as anything but the same string;
otherwise single-quoted (double-quoted with escapes when they hold control or non-ASCII
characters). Anything else (a list of mappings, a list of lists)
returns None and the caller uses ruamel: correctness never depends on this fast path.
"""

from __future__ import annotations

import math
import re
from typing import Any

# Conservative: a letter or `/` first (no number, indicator or `.inf`), then name-like characters.
_PLAIN = re.compile(r"[A-Za-z/][A-Za-z0-9_./-]*\Z")
# Words the YAML 1.2 core schema (ruamel's) resolves to bool or null; ruamel writes yes/no/on/off
# plain too, and so does this emitter, to write the same files.
_RESERVED = frozenset({"true", "false", "null"})
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*\Z")


class _NotPlain(Exception):
    """The data has a shape this emitter does not write."""


def _string(s: str) -> str:
    if _PLAIN.match(s) and s.lower() not in _RESERVED:
        return s
    if _PRINTABLE_ASCII.match(s) and not (s.startswith(" ") or s.endswith(" ")):
        return "'" + s.replace("'", "''") + "'"
    return _double_quoted(s)


def _double_quoted(s: str) -> str:
    """YAML double-quoted: printable ASCII as is, everything else as an escape (\\x, \\u, \\U
    by code point, so astral characters stay one character, unlike JSON's surrogate pairs)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):  # as PyYAML/ruamel's safe representer writes floats
        if math.isnan(v):
            return ".nan"
        if math.isinf(v):
            return ".inf" if v > 0 else "-.inf"
        text = repr(v).lower()
        if "." not in text and "e" in text:
            text = text.replace("e", ".0e", 1)
        return text
    if isinstance(v, str):
        return _string(v)
    raise _NotPlain


def _mapping(d: dict[Any, Any], indent: str, out: list[str]) -> None:
    for key in sorted(d):
        if not isinstance(key, str):
            raise _NotPlain
        v = d[key]
        head = f"{indent}{_string(key)}:"
        if isinstance(v, dict) and v:
            out.append(head)
            _mapping(v, indent + "  ", out)
        elif isinstance(v, list) and v:
            out.append(head)
            for item in v:  # indentless, as ruamel writes a list under a key
                if isinstance(item, dict | list):
                    raise _NotPlain
                out.append(f"{indent}- {_scalar(item)}")
        elif isinstance(v, dict):
            out.append(head + " {}")
        elif isinstance(v, list):
            out.append(head + " []")
        else:
            out.append(f"{head} {_scalar(v)}")


def dump(data: Any) -> str | None:
    """Block YAML for a mapping of plain data, or None if the shape needs the full dumper."""
    if not isinstance(data, dict) or not data:
        return None
    out: list[str] = []
    try:
        _mapping(data, "", out)
    except _NotPlain:
        return None
    return "\n".join(out) + "\n"
