"""User text made safe to print: on a terminal, in a CI log, in a pull-request comment.

A spec is the committer's input, and so is every name, value and error message built from it.
Printed raw, it could move the cursor or rewrite a terminal line (ESC, CR, backspace), start
a line of its own (a newline in a study name), or be read by GitHub Actions as a workflow
command: a line that starts with `::` (after leading spaces) or that holds `##[` anywhere
(the runner's legacy form), e.g. `::stop-commands::x` or `##[add-mask]…`.

`printable` escapes control characters as Python does in a repr (`\\n`, `\\x1b`, `\\u202e`)
and breaks both command forms with a backslash; `markdown.py` (cli) builds on it for PR
comments. Text that passes through is otherwise unchanged, so ordinary messages read as before.
"""

from __future__ import annotations

import re
import unicodedata

# Control characters (Cc), line and paragraph separators, and the bidirectional overrides and
# isolates that can make a line display in another order than it reads ("Trojan source").
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE = re.compile(
    "[" + "".join(re.escape(c) for c in _BIDI) + "\u2028\u2029\u0085\x00-\x08\x0b-\x1f\x7f-\x9f]"
)
_COMMAND_START = re.compile(r"^(\s*)::", re.MULTILINE)  # the runner trims, then looks for ::
_LEGACY_COMMAND = "##["  # found anywhere in a line by the runner's older parser


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    return repr(ch)[1:-1] if unicodedata.category(ch) == "Cc" else f"\\u{ord(ch):04x}"


def printable(text: object, *, one_line: bool = False) -> str:
    """`text` with control characters escaped and workflow commands broken. With
    `one_line`, newlines and tabs are escaped too (for a table cell or a log line)."""
    s = str(text)
    if one_line:
        s = s.replace("\n", "\\n").replace("\t", "\\t")
    if _UNSAFE.search(s):
        s = _UNSAFE.sub(_escape, s)
    if "::" in s:
        s = _COMMAND_START.sub(r"\1\\::", s)
    if _LEGACY_COMMAND in s:
        s = s.replace(_LEGACY_COMMAND, "##\\[")
    return s


__all__ = ["printable"]
