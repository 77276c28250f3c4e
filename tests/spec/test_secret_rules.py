"""The secret rules (spec/secrets.py): names by whole word, values by shape."""

from __future__ import annotations

import pytest

from reconciler.spec.secrets import is_secret_name, mask_text

SECRET = ["API_KEY", "apiKey", "APIKey", "api-key", "DB_PASSWORD", "dbPassword", "DBPASSWORD",
          "GH_TOKEN", "ghToken", "client.secret", "SSH_KEY_FILE", "passwd", "Secrets", "TOKEN",
          "aws_secret_access_key", "GITHUB_PAT_TOKEN", "PASSPHRASE"]  # fmt: skip
NOT_SECRET = ["TOKENIZER", "MONKEY", "KEYBOARD", "MONKEY_MOOD", "tokenizer_model", "PASS",
              "SORT", "greeting", "KEYNOTE", "BYPASS_CACHE"]  # fmt: skip


@pytest.mark.parametrize("name", SECRET)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", NOT_SECRET)
def test_names_that_only_contain_a_secret_word(name: str) -> None:
    assert not is_secret_name(name)


def test_extra_names_are_whole_names() -> None:
    assert is_secret_name("GREETING", frozenset({"GREETING"}))
    assert not is_secret_name("GREETINGS", frozenset({"GREETING"}))


GH = "ghp_" + "a1B2c3D4e5" * 3 + "F6g7H8"
MASKED = {
    "https://TOKEN@host/org/r.git": "https://***@host/org/r.git",
    "https://user:pw@host/x": "https://user:***@host/x",
    "postgres://app:P@W@db/app": "postgres://app:***@db/app",
    "clone https://oauth2:glpat-abcdefghij0123456789@gitlab.com/o/r now":
        "clone https://oauth2:***@gitlab.com/o/r now",
    f"token {GH} used": "token *** used",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnop": "***",
    "xoxb-1234567890-abcdefghij": "***",
    "AKIAIOSFODNN7EXAMPLE": "***",
    "Authorization: Bearer eyJhbGciOi.J9.abc": "Authorization: Bearer ***",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----": "***",
}  # fmt: skip
KEPT = ["ssh://git@github.com/o/r.git", "git@github.com:o/r.git", "https://github.com/o/r",
        "/srv/git/r.git", "user@example.com", "echo hello", "file:///tmp/lib.git"]  # fmt: skip


@pytest.mark.parametrize("text", MASKED)
def test_credentials_are_masked_where_they_appear(text: str) -> None:
    assert mask_text(text) == MASKED[text]


@pytest.mark.parametrize("text", KEPT)
def test_what_is_no_credential_stays(text: str) -> None:
    assert mask_text(text) == text
