"""What looks like a secret: by name (whole words) and by shape (URL credentials, known tokens).

Names. A name is split into words on `_`, `-`, `.`, spaces and camelCase humps (`apiKey` →
api, key; `DB_PASSWORD` → db, password). It is secret when a word is one of SECRET_WORDS, or
ends with one of SECRET_SUFFIXES (`DBPASSWORD`, `GHTOKEN`, `MYAPIKEY`): `TOKENIZER`, `MONKEY`
and `KEYBOARD` are not, `SSH_KEY`, `apiKey` and `client-secret` are.

Values. `mask_text` replaces, wherever they appear in a string:
- the credentials of a URL: `scheme://user:PASSWORD@host` keeps the user, and a lone userinfo
  (`https://TOKEN@host`) goes whole, except the plain user name of ssh and git URLs
  (`ssh://git@host`), which is no credential;
- well-known token shapes: GitHub (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_), GitLab (glpat-),
  Slack (xoxa-/xoxb-/xoxp-/xoxr-/xoxs-), AWS access key ids (AKIA…, ASIA…), Google API keys
  (AIza…), npm (npm_), PyPI (pypi-…), Stripe live keys, `Bearer …` and `Basic …`
  authorization values, and PEM private key blocks.
The rest of the string — the host, the path, the text around a token — stays, so a masked URL
still says which repository it was.
"""

from __future__ import annotations

import re

MASK = "***"

SECRET_WORDS = frozenset(
    {
        "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWORDS", "PASSWD", "PASSPHRASE",
        "KEY", "KEYS", "APIKEY", "CREDENTIAL", "CREDENTIALS",
    }
)  # fmt: skip
SECRET_SUFFIXES = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "APIKEY", "PASSPHRASE", "CREDENTIAL")

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")  # APIKey → API, Key; dbPass → db, Pass
_SPLIT = re.compile(r"[\s_.\-/]+")


def name_words(name: str) -> list[str]:
    """The words of a name, upper-cased: `apiKey_v2` → API, KEY, V2."""
    words: list[str] = []
    for part in _SPLIT.split(str(name)):
        words += [w.upper() for w in _WORDS.findall(part)] or ([part.upper()] if part else [])
    return words


def is_secret_name(name: str, extra: frozenset[str] | set[str] = frozenset()) -> bool:
    """True for a name that says it holds a secret (see the module docstring), or one of
    `extra` (compared whole, case-insensitively)."""
    if str(name).upper() in extra:
        return True
    return any(w in SECRET_WORDS or w.endswith(SECRET_SUFFIXES) for w in name_words(name))


# scheme://userinfo@ — the userinfo runs to the last @ before the path (a raw @ in a password
# is common, though RFC 3986 wants it percent-encoded).
_URL_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)([^/\s?#@]*(?:@[^/\s?#@]*)*)@")
_USER_ONLY_SCHEMES = ("ssh", "git", "git+ssh", "ssh+git", "sftp")

_TOKENS = re.compile(
    "|".join(
        [
            r"\bgh[pousr]_[A-Za-z0-9]{20,255}",
            r"\bgithub_pat_[A-Za-z0-9_]{20,255}",
            r"\bglpat-[A-Za-z0-9_\-]{20,255}",
            r"\bxox[abposr]-[A-Za-z0-9\-]{10,255}",
            r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            r"\bAIza[0-9A-Za-z_\-]{35}",
            r"\bnpm_[A-Za-z0-9]{36}\b",
            r"\bpypi-[A-Za-z0-9_\-]{50,}",
            r"\b[sr]k_live_[A-Za-z0-9]{16,}",
        ]
    )
)
_AUTHORIZATION = re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL
)


def _url(match: re.Match[str]) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{scheme}{user}:{MASK}@"
    if scheme[:-3].lower() in _USER_ONLY_SCHEMES:
        return match.group(0)  # ssh://git@host: a user name, no credential
    return f"{scheme}{MASK}@"


def mask_text(text: str) -> str:
    """`text` with URL credentials and known token shapes replaced by ***."""
    if "://" in text:
        text = _URL_CREDENTIALS.sub(_url, text)
    text = _TOKENS.sub(MASK, text)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    if "PRIVATE KEY-----" in text:
        text = _PRIVATE_KEY.sub(MASK, text)
    return text


__all__ = ["MASK", "SECRET_WORDS", "is_secret_name", "mask_text", "name_words"]
