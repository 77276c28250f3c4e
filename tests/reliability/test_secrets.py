"""Issue #14, secrets: a provenance note holds no credential, and masking never costs
`reproduce` what it needs.

One real apply of a spec whose variables hold a token in a URL's user part, a password in a
database URL, a GitHub token, an AWS key id, a `Bearer` header, and whose git dependencies are
named TOKENIZER and MONKEY (not secrets: the old rule masked every name containing KEY or TOKEN,
and the masked dependency entry made `reproduce` fail with a KeyError). The note is read with
plain `git notes`, as anyone with the repo can.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from shared_repo import commit, dependency_remote, git, git_env, make_repo, reconciler

pytestmark = pytest.mark.timeout(300)  # a hang guard

GH_TOKEN = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"  # the shape of a GitHub token (40 characters)
SECRETS = {  # variable: (value, what must not be in the note, what must be)
    "CLONE_URL": ("https://TOKEN123abc@git.example.com/org/repo.git", "TOKEN123abc",
                  "https://***@git.example.com/org/repo.git"),
    "DB_URL": ("postgres://app:Pw-s3cret@db/app", "Pw-s3cret", "postgres://app:***@db/app"),
    "MIRROR": (f"https://x-access-token:{GH_TOKEN}@github.com/o/r", GH_TOKEN,
               "https://x-access-token:***@github.com/o/r"),
    "NOTE": (f"pushed with {GH_TOKEN} today", GH_TOKEN, "pushed with *** today"),
    "AWS_ID": ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "'***'"),
    "HEADER": ("Authorization: Bearer abc.def.ghi-123", "abc.def.ghi-123", "Bearer ***"),
    "apiKey": ("k-0123456789", "k-0123456789", "apiKey: '***'"),
}  # fmt: skip
KEPT = {"MONKEY_MOOD": "banana", "TOKENIZER_MODEL": "bert-base", "KEYBOARD": "qwerty"}


def _spec(tokenizer_url: str, monkey_url: str) -> str:
    variables = {k: v for k, (v, _, _) in SECRETS.items()} | KEPT
    lines = [
        "description: {name: masked, description: secrets in a spec}",
        "env:",
        "  variables:",
        *[f"    {k}: '{v}'" for k, v in variables.items()],
        "  dependencies:",
        "    git:",
        f"      - {{name: TOKENIZER, path: $(SPECROOT)/../deps, url: '{tokenizer_url}'}}",
        f"      - {{name: MONKEY, path: $(SPECROOT)/../deps, url: '{monkey_url}'}}",
        "study:",
        "  - name: use",
        "    description: reads both dependencies",
        "    run: {cmd: 'cat $(TOKENIZER)/README $(MONKEY)/README > used.txt'}",
    ]
    return "\n".join(lines) + "\n"


def test_the_note_is_masked_by_shape_and_whole_word(tmp_path: Path, figures) -> None:
    for case in (*SECRETS, "dependencies TOKENIZER and MONKEY", "reproduce after masking"):
        figures.shared("5 secrets", case)
    env = git_env(tmp_path / "home")
    _, tok_url = dependency_remote(tmp_path, "tokenizer")
    _, mon_url = dependency_remote(tmp_path, "monkey")
    repo = make_repo(tmp_path / "repo")
    sha = commit(repo, {"specs/masked.yaml": _spec(tok_url, mon_url)})
    r = reconciler("apply", "--repo", tmp_path / "repo", "--wait", cwd=tmp_path, env=env)
    assert r.code == 0, r.both
    note = git(tmp_path / "repo", "notes", "--ref", "reconciler", "show", sha, env=env)
    entry = YAML(typ="safe").load(note)["studies"]["masked"]
    for case, (_value, secret, shown) in SECRETS.items():
        assert secret not in note, f"{case}: {secret} is in the note"
        assert shown in note, f"{case}: expected {shown!r} in the note"
        figures.shared_ok("5 secrets", case)
    for k, v in KEPT.items():  # names that only contain KEY or TOKEN are not secret
        assert entry["variables"][k] == v
    for name, url in (("TOKENIZER", tok_url), ("MONKEY", mon_url)):
        dep = entry["dependencies"]["git"][name]
        assert isinstance(dep, dict) and re.fullmatch(r"[0-9a-f]{40}", dep["sha"]), dep
        assert dep["url"] == url
    figures.shared_ok("5 secrets", "dependencies TOKENIZER and MONKEY")
    out = tmp_path / "again"
    again = reconciler("reproduce", sha, "-o", out, "--repo", tmp_path / "repo", cwd=tmp_path,
                       env=env)  # fmt: skip
    assert again.code == 0 and "Traceback" not in again.both, again.both
    assert "1 of 1 fingerprints identical" in again.out
    figures.shared_ok("5 secrets", "reproduce after masking")
