"""The spec tools as a user runs them: real `reconciler` processes, exit codes, output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


BAD = """\
description:
  name: bad
  description: three mistakes
study:
  - name: a
    description: x
    run:
      cmd: echo $(NOPE)
      bogus: 1
  - name: b
    description: y
    run:
      cmd: echo b
      depends: [c]
"""


def test_validate_examples_ok() -> None:
    r = run("validate", str(SPECS))
    assert r.returncode == 0, r.stderr
    assert "3 of 3 specs valid" in r.stdout


def test_validate_reports_every_error_with_position_and_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    r = run("validate", str(f))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(str(f))]
    # A schema error (an unknown run key) leaves no model for the later checks to read.
    assert [ln.split(": ", 1)[0] for ln in lines] == [f"{f}:9:7"]
    assert "unknown key 'bogus' in run of study step 'a'" in lines[0]
    # Once it is fixed, every remaining mistake shows at once, each at its token.
    f.write_text(BAD.replace("      bogus: 1\n", ""))
    r = run("validate", str(f))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(str(f))]
    assert [ln.split(": ", 1)[0] for ln in lines] == [f"{f}:8:17", f"{f}:13:17"]
    assert "$(NOPE) in cmd of step 'a'" in lines[0]
    assert "step 'b' depends on 'c'" in lines[1]


def test_validate_directory_mixes_good_and_bad(tmp_path: Path) -> None:
    shutil.copy(SPECS / "hello_world.yaml", tmp_path / "good.yaml")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.yml").write_text(BAD)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "ignored.yaml").write_text("not: [a spec")
    r = run("validate", str(tmp_path), "--json")
    assert r.returncode == 2
    report = json.loads(r.stdout)
    assert [(Path(x["file"]).name, x["valid"]) for x in report] == [
        ("good.yaml", True),
        ("bad.yml", False),
    ]
    assert report[1]["diagnostics"][0]["line"] == 9


def test_validate_refuses_two_specs_naming_one_study_in_nfc_or_nfd(tmp_path: Path) -> None:
    """café typed in NFC and in NFD prints alike and is one study: both specs are refused at
    their description.name, as apply would refuse both; a third spec is unaffected."""
    body = "study:\n  - name: s\n    description: s\n    run: {cmd: echo hi}\n"
    for file, name in (("a.yaml", "caf\u00e9"), ("b.yaml", "cafe\u0301"), ("c.yaml", "other")):
        (tmp_path / file).write_text(
            f"description:\n  description: d\n  name: {name}\n{body}", encoding="utf-8"
        )
    r = run("validate", str(tmp_path))
    assert r.returncode == 2, r.stdout
    assert "Traceback" not in r.stderr
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert f"{a}:3:9: study 'caf\u00e9' is also named by {b}:3" in r.stderr
    assert f"{b}:3:9: study 'caf\u00e9' is also named by {a}:3" in r.stderr
    assert "1 of 3 specs valid" in r.stdout
    assert f"ok {tmp_path / 'c.yaml'}" in r.stdout and "a.yaml: study" not in r.stdout
    report = json.loads(run("validate", "--json", str(tmp_path)).stdout)
    assert [x["valid"] for x in report] == [False, False, True]
    assert report[0]["diagnostics"][0]["line"] == 3


def test_validate_missing_path_is_user_error(tmp_path: Path) -> None:
    r = run("validate", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert "error:" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_validate_emits_github_annotations(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    r = run("validate", str(f), env={"GITHUB_ACTIONS": "true"})
    assert f"::error file={f},line=9,col=7::unknown key 'bogus'" in r.stdout


def test_expand_json_keys_and_order() -> None:
    r = run("expand", str(SPECS / "hello_world.yaml"), "--json")
    assert r.returncode == 0, r.stderr
    items = json.loads(r.stdout)
    assert all(
        set(i) == {"name", "step", "workspace", "depends", "params", "fingerprint"} for i in items
    )
    names = [i["name"] for i in items]
    assert names[0] == "hello_GREETING.Hello.NAME.Pam"
    assert names[-1] == "summary"
    seen: set[str] = set()
    for i in items:  # topological: every dependency listed before its dependent
        assert set(i["depends"]) <= seen
        seen.add(i["name"])
    summary = items[-1]
    assert sorted(summary["depends"]) == sorted(n for n in names if n.startswith("bye_"))
    assert items[0]["workspace"] == "hello/GREETING.Hello.NAME.Pam"
    assert items[0]["params"] == {"GREETING": "Hello", "NAME": "Pam"}


def test_expand_table_is_human_readable() -> None:
    r = run("expand", str(SPECS / "sweep.yaml"))
    assert r.returncode == 0
    assert "sweep: 7 instances" in r.stdout


def test_expand_with_pgen_and_pargs(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "description: {name: g, description: d}\n"
        "study:\n  - name: s\n    description: d\n    run: {cmd: echo $(N) $(N.label)}\n"
    )
    pgen = tmp_path / "gen.py"
    pgen.write_text(
        "from maestrowf.datastructures.core import ParameterGenerator\n"
        "def get_custom_generator(env, **kw):\n"
        "    p = ParameterGenerator()\n"
        "    p.add_parameter('N', list(range(int(kw['COUNT']))), 'N.%%')\n"
        "    return p\n"
    )
    r = run("expand", str(spec), "--json", "--pgen", str(pgen), "--pargs", "COUNT:3")
    assert r.returncode == 0, r.stderr
    assert [i["name"] for i in json.loads(r.stdout)] == ["s_N.0", "s_N.1", "s_N.2"]
    r = run("expand", str(spec), "--pargs", "COUNT:3")
    assert r.returncode == 2 and "--pargs needs --pgen" in r.stderr
    r = run("expand", str(spec), "--pgen", str(pgen), "--pargs", "COUNT")
    assert r.returncode == 2 and "not KEY:VALUE" in r.stderr


def test_graph_dot_has_funnel_edge() -> None:
    r = run("graph", str(SPECS / "hello_world.yaml"))
    assert r.returncode == 0
    assert r.stdout.startswith('digraph "hello_world" {')
    assert '"bye" -> "summary" [style=dashed, label="funnel"];' in r.stdout
    assert '"hello" -> "bye";' in r.stdout


def test_graph_instances_dot(tmp_path: Path) -> None:
    out = tmp_path / "g.dot"
    r = run("graph", str(SPECS / "hello_world.yaml"), "--instances", "-o", str(out))
    assert r.returncode == 0
    text = out.read_text()
    assert text.count(" -> ") == 3 + 3  # hello→bye ×3, bye→summary ×3


def test_graph_png_is_a_real_png(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Graphviz 'dot' must be installed in CI (.ci/run installs it)")
        pytest.skip("Graphviz 'dot' is not on PATH")
    out = tmp_path / "g.png"
    r = run("graph", str(SPECS / "hello_world.yaml"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_graph_without_graphviz_says_how_to_get_it(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    r = run(
        "graph",
        str(SPECS / "hello_world.yaml"),
        "-o",
        str(tmp_path / "g.svg"),
        env={"PATH": str(bindir)},
    )
    assert r.returncode == 2
    assert "apt-get install graphviz" in r.stderr
    assert not (tmp_path / "g.svg").exists()


def test_schema_is_json_schema_matching_the_model() -> None:
    r = run("schema")
    assert r.returncode == 0
    s = json.loads(r.stdout)
    assert s["$schema"].startswith("https://json-schema.org/")
    assert set(s["properties"]) == {
        "description",
        "env",
        "batch",
        "study",
        "global.parameters",
        "reconcile",
    }
    assert (ROOT / "docs" / "spec.schema.json").read_text().strip() == r.stdout.strip(), (
        "docs/spec.schema.json is stale: regenerate it with `reconciler schema`"
    )


def test_version_and_help_document_exit_codes() -> None:
    r = run("--help")
    assert r.returncode == 0
    assert "Exit codes" in r.stdout
    assert run("--version").stdout.startswith("reconciler ")
