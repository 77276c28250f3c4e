"""Git dependency URLs a spec may not name, refused where they are written (spec/giturl.py):
`validate`, `run` and `apply` all load specs through this check."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reconciler.spec import Diagnostic, Study

Load = Callable[..., Study]
Reject = Callable[..., list[Diagnostic]]


URL_SPEC = """
description: {{name: deps, description: d}}
env:
  dependencies:
    git:
      - name: LIB
        path: $(OUTPUT_PATH)
        url: '{url}'
study:
  - name: a
    description: d
    run: {{cmd: ls $(LIB)}}
"""


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ext::sh -c touch% /tmp/pwned", "contains whitespace"),
        ("ext::git-remote-x", "remote helper"),
        ("fd::17", "remote helper"),
        ("--upload-pack=touch%20/tmp/x", "would reach git as an option"),
        ("-oProxyCommand=x", "would reach git as an option"),
        ("ssh://-oProxyCommand=x/repo", "would reach ssh as an option"),
        ("http://example.com/repo.git", "scheme 'http' is not allowed"),
    ],
)
def test_a_refused_git_url_is_an_error_at_its_line(reject: Reject, url: str, why: str) -> None:
    (error,) = reject(URL_SPEC.format(url=url))
    assert (error.line, error.col) == (8, 14)
    assert "git dependency 'LIB'" in error.message and why in error.message


def test_allowed_git_urls_load(load: Load) -> None:
    for url in ("https://github.com/LLNL/LULESH.git", "file:///srv/x.git", "git@host:org/x.git"):
        assert load(URL_SPEC.format(url=url)).instances


def test_a_password_in_a_refused_url_is_not_repeated(reject: Reject) -> None:
    (error,) = reject(URL_SPEC.format(url="http://me:s3cret@example.com/x.git"))
    assert "s3cret" not in error.message and "me:***@example.com" in error.message
