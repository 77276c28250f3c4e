"""Which git URLs a spec may name (pure string logic: `validate` refuses the rest at file:line).

Allowed: https://, ssh://, git:// and file:// URLs, scp-like ssh addresses (`user@host:path`) and
absolute local paths. Refused before git ever sees them: `ext::`/`fd::` and any other
`<transport>::` address (a remote helper: `ext::` runs any command), option-like URLs
(`--upload-pack=…`), hosts or users that start with `-` (they would reach ssh as options),
whitespace and control characters (a second argument smuggled into the value). Maestro accepts
any string and hands it to `git clone` through a shell; a spec is the committer's input, and
nothing in it may make reconciler run a command of its choosing.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from reconciler.spec.secrets import mask_text

ALLOWED_SCHEMES = frozenset({"https", "ssh", "git", "file"})

# `[user@]host:path`, git's scp-like ssh syntax. The host may not start with `-` (it would
# reach ssh as an option).
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~+-]+@)?[A-Za-z0-9_][A-Za-z0-9._-]*:(?!//)\S+$")


def redact_url(url: str) -> str:
    """The URL without credentials (a password, or a token as its user part), for messages
    and notes; the rules are secrets.py's."""
    return mask_text(url)


def refusal(url: str) -> str | None:
    """Why `url` is refused, or None if it is allowed."""
    if not url or any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in url):
        # No allowed form needs a raw space (a URL writes %20).
        return "it is empty or contains whitespace or control characters"
    if url.startswith("-"):
        return "it starts with '-' and would reach git as an option"
    if "::" in url:
        return "the '<transport>::<address>' syntax runs a git remote helper"
    if url.startswith("/"):
        return None  # a local path: git's "file" protocol
    if "://" in url:
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            user = parts.username or ""
        except ValueError as e:
            return f"it does not parse ({e})"
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            return f"scheme '{parts.scheme}' is not allowed"
        if parts.scheme.lower() != "file" and not host:
            return "it names no host"
        if host.startswith("-") or user.startswith("-"):
            return "its host or user starts with '-' and would reach ssh as an option"
        return None
    if _SCP_LIKE.match(url):
        return None
    return "it is neither a URL with an allowed scheme nor user@host:path"


def refusal_message(url: str, why: str, name: str = "") -> str:
    """The one-paragraph message for a refused URL (the password, if any, redacted)."""
    what = f"git dependency '{name}'" if name else "git URL"
    return (
        f"{what} has URL '{redact_url(url)}', which is refused: {why}. Only https://, ssh://, "
        "git:// and file:// URLs, scp-like ssh addresses (user@host:path) and absolute "
        "local paths are allowed."
    )


__all__ = ["ALLOWED_SCHEMES", "redact_url", "refusal", "refusal_message"]
