"""Issue #14, CI output: nothing a spec holds can forge the pull-request comment, emit a GitHub
workflow command, or make `validate` print what a committed symlink points at.

- `plan --format markdown` of specs whose study name, parameter values (so instance names and
  reasons) and errors hold newlines, `|`, backticks, `<!--`, `@team`, `::notice::` and `##[`:
  the markdown is parsed (markdown-it, with GFM tables) and must have exactly one table row per
  action, each cell showing exactly the action's text, no HTML and no mention;
- every line `validate` and `plan` print, on stdout and stderr, is read the way GitHub's runner
  reads it (a line that starts with `::` after spaces, or holds `##[` anywhere, is a command):
  the only commands are reconciler's own annotations, with file/line/col escaped as required;
- `validate specs/` skips a committed symlink (to a file or a directory) with a warning, as
  GitOps mode does, and never prints what it points at; a symlink named on the command line is
  read, since the user named it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from shared_repo import commit, git_env, make_repo, reconciler

from reconciler.spec.printable import printable

pytestmark = pytest.mark.timeout(300)  # a hang guard

EVIL = [
    "v|1",
    "`t`",
    "<!-- hide the rest -->",
    "@team",
    "a\nb",
    "::notice::forged",
    "x ##[add-mask]y",
    "``` fence",
    "\x1b[2Jclear",
]
NAME = "ok | `x` <!-- hidden --> @org/team **bold** ##[group]g"


def _q(s: str) -> str:
    return json.dumps(s)  # a YAML double-quoted scalar


def _forge_spec(values: list[str]) -> str:
    return (
        f"description:\n  name: {_q(NAME)}\n  description: d\n"
        "study:\n  - name: run\n    description: d\n    run:\n      cmd: echo $(P)\n"
        f"global.parameters:\n  P:\n    values: [{', '.join(_q(v) for v in values)}]\n"
        "    label: P.%%\n"
    )


BROKEN = (
    "description:\n  name: broken\n  description: d\n"
    "study:\n  - name: run\n    description: d\n    run:\n      cmd: echo\n"
    f"{_q('bad' + chr(10) + '::stop-commands::tok' + chr(10) + '```' + chr(10) + '<!--')}: 1\n"
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return git_env(tmp_path / "home")


def _commands(lines: list[str]) -> list[str]:
    """The lines GitHub's runner would take as workflow commands."""
    return [ln for ln in lines if ln.lstrip().startswith("::") or "##[" in ln]


def _unescape_property(s: str) -> str:
    for a, b in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        s = s.replace(a, b)
    return s


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every GFM table's body rows, each cell as the text a reader sees."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    assert not [t for t in tokens if t.type == "html_block"], "raw HTML in the comment"
    tables: list[list[list[str]]] = []
    row: list[str] | None = None
    in_body = False
    for t in tokens:
        if t.type == "table_open":
            tables.append([])
        elif t.type == "tbody_open":
            in_body = True
        elif t.type == "tbody_close":
            in_body = False
        elif t.type == "tr_open" and in_body:
            row = []
        elif t.type == "tr_close" and row is not None:
            tables[-1].append(row)
            row = None
        elif t.type == "inline" and row is not None:
            kids = t.children or []
            assert not [k for k in kids if k.type == "html_inline"], "raw HTML in a cell"
            row.append("".join(k.content for k in kids if k.type in ("text", "code_inline")))
    for t in tokens:
        for k in t.children or []:
            assert k.type != "html_inline", f"raw HTML in the comment: {k.content!r}"
    return tables


def test_plan_markdown_cannot_be_forged(tmp_path: Path, env, figures) -> None:
    figures.shared("10 CI output", "plan --format markdown")
    repo = make_repo(tmp_path / "repo")
    base = commit(repo, {"specs/forge.yaml": _forge_spec(["1", "2"])})
    commit(repo, {"specs/forge.yaml": _forge_spec(["1", *EVIL]), "specs/broken.yaml": BROKEN})
    args = ("plan", "--repo", tmp_path / "repo", "--against", base)
    md = reconciler(*args, "--format", "markdown", cwd=tmp_path, env=env)
    plan = json.loads(reconciler(*args, "--json", cwd=tmp_path, env=env).out)
    assert md.code == 2 and "Traceback" not in md.both, md.both  # 2: 'broken' is invalid
    changes = next(s for s in plan["studies"] if s["actions"])["actions"]
    assert len(changes) >= len(EVIL)  # a create for each new value (and what else changed)
    (table,) = _tables(md.out)
    assert len(table) == len(changes)  # no row added or split by a value
    for row, action in zip(table, changes, strict=True):
        assert row == [action["action"], printable(action["instance"], one_line=True),
                       printable(action["reason"], one_line=True)]  # fmt: skip
    # no one is mentioned: an @ outside code is written as an entity (GitHub links it otherwise)
    raw_text = [line for line in md.out.splitlines() if "@" in re.sub(r"`+[^`]*`+", "", line)]
    assert raw_text == []
    bold = re.findall(r"^\*\*(.+?)\*\*: ", md.out, re.M)
    assert len(bold) == 2  # one headline per study, nothing forged in between
    assert _commands(md.out.splitlines()) == []
    # the invalid spec's error is in a code block whose fence its ``` cannot close
    tokens = MarkdownIt("commonmark").parse(md.out)
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and "stop-commands" in fences[0].content
    assert "\x1b" not in md.both
    figures.shared_ok("10 CI output", "plan --format markdown")


def test_no_workflow_command_from_a_spec(tmp_path: Path, env, figures) -> None:
    figures.shared("10 CI output", "validate in GitHub Actions")
    specs = tmp_path / "specs, with: odd%chars"
    specs.mkdir()
    (specs / "broken.yaml").write_text(BROKEN)
    (specs / "forge.yaml").write_text(_forge_spec(["1", *EVIL]))
    (specs / "warn.yaml").write_text(
        "description: {name: warned, description: d}\n"
        "batch: {type: local, '::notice::x\\n##[add-mask]k': 1}\n"
        "study:\n  - {name: a, description: d, run: {cmd: echo}}\n"
    )  # an unknown batch key is a warning, with the key in it
    gh = {**env, "GITHUB_ACTIONS": "true"}
    r = reconciler("validate", specs, cwd=tmp_path, env=gh)
    assert r.code == 2 and "Traceback" not in r.both
    lines = r.out.splitlines() + r.err.splitlines()
    ours = _commands(lines)
    assert ours, "the annotations are missing"
    for line in ours:
        m = re.fullmatch(r"::(error|warning) file=([^,:]*),line=(\d+),col=(\d+)::(.*)", line)
        assert m, f"not one of reconciler's annotations: {line!r}"
        assert _unescape_property(m.group(2)).startswith(str(specs)), line
        assert "\n" not in m.group(5) and "##[" not in m.group(5)
    assert {m.split()[0] for m in ours} == {"::error"}  # (a valid spec's warnings: text)
    assert "add-mask" in r.err and "is not used by reconciler" in r.err
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", r.both)  # no raw control characters
    plan_repo = make_repo(tmp_path / "repo")
    commit(plan_repo, {"specs/broken.yaml": BROKEN, "specs/forge.yaml": _forge_spec(EVIL)})
    p = reconciler("plan", "--repo", tmp_path / "repo", cwd=tmp_path, env=gh)
    assert p.code == 2 and "Traceback" not in p.both
    assert _commands(p.out.splitlines() + p.err.splitlines()) == []
    assert "\x1b" not in p.both
    figures.shared_ok("10 CI output", "validate in GitHub Actions")


def test_validate_dir_skips_committed_symlinks(tmp_path: Path, env, figures) -> None:
    figures.shared("10 CI output", "validate DIR with symlinks")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.yaml").write_text(
        "description: {name: outside-private-study, description: d}\n"
        "study:\n  - {name: a, description: d, run: {cmd: echo}}\n"
    )
    repo = make_repo(tmp_path / "repo")
    specs = tmp_path / "repo" / "specs"
    commit(repo, {"specs/ok.yaml": _forge_spec(["1"])})
    os.symlink(outside / "private.yaml", specs / "link.yaml")
    os.symlink(outside, specs / "linked-dir")
    os.symlink("/etc/passwd", specs / "passwd.yaml")
    repo.index.add(["specs/link.yaml", "specs/linked-dir", "specs/passwd.yaml"])
    repo.index.commit("links")
    r = reconciler("validate", specs, cwd=tmp_path, env=env)
    assert r.code == 0, r.both  # the one real spec is valid
    assert "outside-private-study" not in r.both and "root:" not in r.both
    for name in ("link.yaml", "linked-dir", "passwd.yaml"):
        assert f"{specs / name}: skipped, a symlink" in r.err
    assert "1 of 1 specs valid" not in r.out  # (one file: no summary line)
    named = reconciler("validate", specs / "link.yaml", cwd=tmp_path, env=env)
    assert named.code == 0 and "outside-private-study" in named.out  # named: read
    figures.shared_ok("10 CI output", "validate DIR with symlinks")
