"""Issue #8, hostile specs: nothing a spec names — step, label, parameter value, variable,
dependency — writes outside the workspace, and nothing reaches a shell except as text inside the
generated instance scripts.

Three layers:
- validation: names that would escape (`..`, `/`, absolute paths, NUL, newlines) are refused
  with a clear message;
- expansion: whatever is accepted places every instance workspace inside the study root;
- a real run (`python -m reconciler run -fg -y -o DIR`): payloads that try to `touch` a canary
  file outside DIR never run, every process reconciler starts gets an argument list (recorded by
  a Python audit hook, no mocks), and the payload text shows up only as data.
Plus symlink attacks by an earlier step on a later step's directory and files.

Payloads that would do harm if they ever ran (`$(rm -rf ~)`) are only validated and expanded,
never run; the run tests use `touch $RECONCILER_CANARY`.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.spec import SpecError, load_study_text

pytestmark = pytest.mark.timeout(120)  # a hang guard

REPO = Path(__file__).resolve().parents[2]
HEAD = 'description:\n  name: hostile\n  description: "a hostile spec"\n'


def _q(text: str) -> str:
    """A YAML double-quoted scalar (so NUL and newlines can be written)."""
    return json.dumps(text)


def _step(name: str, cmd: str = "echo hi", depends: list[str] | None = None) -> str:
    out = f"- name: {_q(name)}\n  description: d\n  run:\n    cmd: {_q(cmd)}\n"
    if depends is not None:
        out += f"    depends: [{', '.join(_q(d) for d in depends)}]\n"
    return out


def _param_spec(values: list[str], label: str = "%%") -> str:
    vals = ", ".join(_q(v) for v in values)
    return (
        HEAD
        + "study:\n"
        + _step("run", "echo $(P)")
        + f"global.parameters:\n  P:\n    values: [{vals}]\n    label: {_q(label)}\n"
    )


# ---- refused at validation ----------------------------------------------------------------

DIR_NAME = "cannot be used as a directory name"
ESCAPE = "would escape its workspace directory"

REJECTED: dict[str, tuple[str, str]] = {
    # step names become directories and file names
    "step name ../evil": (HEAD + "study:\n" + _step("../evil"), DIR_NAME),
    "step name /tmp/evil": (HEAD + "study:\n" + _step("/tmp/evil"), DIR_NAME),
    "step name a/b": (HEAD + "study:\n" + _step("a/b"), DIR_NAME),
    "step name ..": (HEAD + "study:\n" + _step(".."), DIR_NAME),
    "step name .hidden": (HEAD + "study:\n" + _step(".hidden"), DIR_NAME),
    "step name with NUL": (HEAD + "study:\n" + _step("a\x00b"), DIR_NAME),
    "step name with newline": (HEAD + "study:\n" + _step("a\nb"), DIR_NAME),
    "step name $(rm -rf ~)": (HEAD + "study:\n" + _step("$(rm -rf ~)"), DIR_NAME),
    "step name with backticks": (HEAD + "study:\n" + _step("`touch x`"), DIR_NAME),
    "step name ; touch": (HEAD + "study:\n" + _step("a; touch /tmp/pwned"), DIR_NAME),
    # dependency names are step names
    "depends ../a": (
        HEAD + "study:\n" + _step("a") + _step("b", depends=["../a"]),
        "no step is named '../a'",
    ),
    "depends /abs": (
        HEAD + "study:\n" + _step("a") + _step("b", depends=["/tmp/a"]),
        "no step is named '/tmp/a'",
    ),
    "depends a/../a": (
        HEAD + "study:\n" + _step("a") + _step("b", depends=["a/../a"]),
        "no step is named 'a/../a'",
    ),
    "depends $(rm -rf ~)_*": (
        HEAD + "study:\n" + _step("a") + _step("b", depends=["$(rm -rf ~)_*"]),
        "no step is named '$(rm -rf ~)'",
    ),
    # labels and values become directory names
    "value ..": (_param_spec([".."]), ESCAPE),
    "value .": (_param_spec(["."]), ESCAPE),
    "value ../../etc": (_param_spec(["../../etc"]), ESCAPE),
    "value /etc/passwd": (_param_spec(["/etc/passwd"]), ESCAPE),
    "value ; touch /tmp/pwned": (_param_spec(["; touch /tmp/pwned"]), ESCAPE),
    "value with NUL": (_param_spec(["a\x00b"]), ESCAPE),
    "label ../%%": (_param_spec(["1"], "../%%"), ESCAPE),
    "label /abs/%%": (_param_spec(["1"], "/tmp/%%"), ESCAPE),
    "label %%/..": (_param_spec(["1"], "%%/.."), ESCAPE),
    "label with NUL": (_param_spec(["1"], "%%\x00"), ESCAPE),
    # dependency names become $(NAME) tokens and directory names
    **{
        f"dependency name {n}": (
            HEAD
            + f"env:\n  dependencies:\n    paths:\n    - name: {_q(n)}\n      path: .\n"
            + "study:\n"
            + _step("run"),
            "must be a name of letters, digits and '_'",
        )
        for n in ("../../evil", "/abs", "$(rm -rf ~)", "`touch x`", "; touch /tmp/pwned")
    },
    # `$(s(1).workspace)` could never name such a step
    "step name s(1)": (HEAD + "study:\n" + _step("s(1)"), DIR_NAME),
}


@pytest.mark.parametrize("text,phrase", list(REJECTED.values()), ids=list(REJECTED))
def test_refused_at_validation(
    request: pytest.FixtureRequest, text: str, phrase: str, figures: Any
) -> None:
    name = request.node.callspec.id
    figures.hostile(name)
    with pytest.raises(SpecError) as info:
        load_study_text(text, "hostile.yaml")
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    assert any(phrase in d.message for d in errors), str(info.value)
    assert all(d.line > 0 for d in errors), "every error has a line:col"
    figures.hostile_outcome(name, rejected=True)


# ---- accepted, and expanded inside the study root -----------------------------------------

SHELL_PAYLOADS = [
    "$(rm -rf ~)",
    "`rm -rf ~`",
    "; rm -rf ~",
    "&& rm -rf ~ &&",
    "| rm -rf ~",
    "' ; rm -rf ~ ; '",
    '" ; rm -rf ~ ; "',
    "$HOME",
    "a\nrm -rf ~",
    "~",
    "*",
    "-rf",
    "...",
    "a..b",
    "..a",
    "é…",
]

ACCEPTED: dict[str, str] = {
    # (tagged so that no two values share a directory name after sanitising)
    "values: shell metacharacters": _param_spec(
        [f"v{k}{p}" for k, p in enumerate(SHELL_PAYLOADS)], "P.%%"
    ),
    "labels: shell metacharacters": (
        HEAD
        + "study:\n"
        + _step("run", "echo $(A) $(B) $(C)")
        + "global.parameters:\n"
        + "".join(
            f"  {p}:\n    values: [1, 2]\n    label: {_q(label)}\n"
            for p, label in (("A", "$(rm -rf ~)%%"), ("B", "`rm -rf ~`.%%"), ("C", "..%%.x"))
        )
    ),
    "variables: names and values": (
        HEAD
        + "env:\n  variables:\n"
        + "".join(
            f"    {_q(k)}: {_q(v)}\n"
            for k, v in (
                ("V", "$(rm -rf ~)"),
                ("W", "../../../../etc/passwd"),
                ("../../x", "1"),
                ("/abs", "2"),
                ("a b", "3"),
                ("$(rm -rf ~)", "4"),
            )
        )
        + "study:\n"
        + _step("run", "echo $(V) $(W)")
    ),
    "step names Maestro allows": (
        HEAD
        + "study:\n"
        + _step("a..b")
        + _step("s_1", depends=["a..b"])
        + _step("x.", depends=["s_1_*"])
        + _step("z-", "ls $(a..b.workspace) $(s_1.workspace)", ["x."])
    ),
    # not a token (tokens start with a letter, digit or _): left as shell text, no path made
    "workspace token of ../a": (
        HEAD + "study:\n" + _step("a") + _step("b", "ls $(../a.workspace)", ["a"])
    ),
    "study name": (
        'description:\n  name: "../../$(rm -rf ~)"\n  description: "`rm -rf ~`"\n'
        + "study:\n"
        + _step("run")
    ),
}


def _inside(root: Path, ws: str) -> bool:
    return (root / ws).resolve().is_relative_to(root.resolve())


@pytest.mark.parametrize("text", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_accepted_specs_expand_inside_the_root(
    request: pytest.FixtureRequest, text: str, tmp_path: Path, figures: Any
) -> None:
    name = request.node.callspec.id
    figures.hostile(name)
    study = load_study_text(text, "hostile.yaml")
    root = tmp_path / "root"
    for inst in study.instances:
        assert not Path(inst.workspace).is_absolute(), inst.workspace
        assert _inside(root / inst.step, inst.workspace.partition("/")[2] or "."), inst.workspace
        assert ".." not in Path(inst.workspace).parts, inst.workspace
    assert len({i.workspace for i in study.instances}) == len(study.instances)
    figures.hostile_outcome(name, rejected=False)


@pytest.mark.parametrize("value", ["..!", "..'", "..$", ".!"])
def test_label_that_sanitises_to_dot_dot(value: str, figures: Any) -> None:
    figures.hostile(f"label sanitising to {value!r}")
    with pytest.raises(SpecError) as info:
        study = load_study_text(_param_spec([value]), "hostile.yaml")
        print([i.workspace for i in study.instances])  # shown when it is accepted
    assert ESCAPE in str(info.value) or "no character usable" in str(info.value)
    figures.hostile_outcome(f"label sanitising to {value!r}", rejected=True)


def test_git_dependency_name_cannot_leave_its_path(tmp_path: Path, figures: Any) -> None:
    from reconciler.deps import dependency_dir

    figures.hostile("git dependency name ../../evil")
    text = (
        HEAD
        + "env:\n  dependencies:\n    git:\n"
        + "    - name: ../../evil\n      path: $(OUTPUT_PATH)\n"
        + "      url: https://example.com/lib.git\n"
        + "study:\n"
        + _step("run")
    )
    root = tmp_path / "ws"
    try:
        study = load_study_text(text, "hostile.yaml")
    except SpecError:
        figures.hostile_outcome("git dependency name ../../evil", rejected=True)
        return
    dep = study.spec.env.dependencies.git[0]
    where = dependency_dir(study, dep, {"OUTPUT_PATH": str(root), "SPECROOT": str(tmp_path)})
    assert where.resolve().is_relative_to(root), f"the checkout would go to {where.resolve()}"
    figures.hostile_outcome("git dependency name ../../evil", rejected=False)


# ---- a real run: payloads that try to touch a canary outside the workspace -----------------

# No '/' in these (a value with '/' is refused as a label); the canary path comes from the
# environment, so any shell that ever evaluated one of them would create the canary.
TOUCH = [
    "$(touch $RECONCILER_CANARY)",
    "`touch $RECONCILER_CANARY`",
    "; touch $RECONCILER_CANARY",
    "&& touch $RECONCILER_CANARY",
    "x' ; touch $RECONCILER_CANARY ; echo 'y",
    '" ; touch $RECONCILER_CANARY ; echo "',
    "a\ntouch $RECONCILER_CANARY",
    "$(touch${IFS}$RECONCILER_CANARY)",
]
MARK = "touch"  # every payload has it; nothing else in these specs does

# The spec's own command passes values as data: a quoted here-document does no expansion.
# (An unquoted `echo $(P)` would run the payload: that is the author's script, as in Maestro.)
SAFE_CMD = "cat > value.txt <<'RECONCILER_EOF'\n{tokens}\nRECONCILER_EOF\n"


def _run_spec_values() -> str:
    return (
        HEAD
        + "study:\n"
        + _step("run", SAFE_CMD.format(tokens="$(P)"))
        + "global.parameters:\n  P:\n"
        + f"    values: [{', '.join(_q(f'v{k}{v}') for k, v in enumerate(TOUCH))}]\n"
        + "    label: P.%%\n"
    )


def _run_spec_labels() -> str:
    # Two steps, four labels each: an instance name joins its labels, and eight of these
    # would pass the 255-byte file-name limit (see test_bad_input.py's long-name test).
    names = [f"L{k}" for k in range(len(TOUCH))]
    half = len(names) // 2
    return (
        HEAD
        + "study:\n"
        + _step("r1", SAFE_CMD.format(tokens=" ".join(f"$({n}.label)" for n in names[:half])))
        + _step("r2", SAFE_CMD.format(tokens=" ".join(f"$({n}.label)" for n in names[half:])))
        + "global.parameters:\n"
        + "".join(
            f"  {n}:\n    values: [{k}]\n    label: {_q(p + '%%')}\n"
            for k, (n, p) in enumerate(zip(names, TOUCH, strict=True))
        )
    )


def _run_spec_variables() -> str:
    names = [f"V{k}" for k in range(len(TOUCH))]
    return (
        HEAD
        + "env:\n  variables:\n"
        + "".join(f"    {n}: {_q(p)}\n" for n, p in zip(names, TOUCH, strict=True))
        + f"    {_q(TOUCH[0])}: unused\n"
        + "  labels:\n"
        + f"    LAB: {_q(TOUCH[1])}\n"
        + "study:\n"
        + _step("run", SAFE_CMD.format(tokens=" ".join(f"$({n})" for n in [*names, "LAB"])))
    )


def _run_spec_names() -> str:
    # Dependency names with payloads are refused at validation (see REJECTED); the study name
    # and descriptions are free text that must still never reach a shell.
    return (
        f"description:\n  name: {_q('h' + TOUCH[0])}\n  description: {_q(TOUCH[1])}\n"
        + "study:\n"
        + f"- name: a_1\n  description: {_q(TOUCH[2])}\n  run:\n    cmd: echo a\n"
        + _step("b..c", "ls ..", ["a_1"])
    )


RUNS = {
    "run: parameter values": _run_spec_values,
    "run: parameter labels": _run_spec_labels,
    "run: variables and labels": _run_spec_variables,
    "run: study name and descriptions": _run_spec_names,
}

# Records every process reconciler starts (Python audit events: real calls, no mocks).
AUDITED = """\
import json, sys
log = open(sys.argv[1], "a")
EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork")
def hook(event, args):
    if event in EVENTS:
        log.write(json.dumps([event, [a if isinstance(a, (str, int)) else
                                      [str(x) for x in a] if isinstance(a, (list, tuple))
                                      else str(a) for a in args]]) + "\\n")
        log.flush()
sys.addaudithook(hook)
sys.argv = ["reconciler", *sys.argv[2:]]
from reconciler.cli.app import main
main()
"""

SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish"}


def _tree(base: Path, skip: Path | None = None) -> set[str]:
    out = set()
    for p in base.rglob("*"):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        out.add(str(p.relative_to(base)))
    return out


def _run_audited(tmp_path: Path, spec: Path, root: Path, canary: Path) -> tuple[Any, list[Any]]:
    driver = tmp_path / "audited.py"
    driver.write_text(AUDITED)
    log = tmp_path / "audit.jsonl"
    proc = subprocess.run(
        [sys.executable, str(driver), str(log), "run", "-fg", "-y", "-o", str(root), str(spec)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "RECONCILER_CANARY": str(canary), "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        timeout=100,
        check=False,
    )
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, events


@pytest.mark.parametrize("make", list(RUNS.values()), ids=list(RUNS))
def test_run_keeps_payloads_as_text(
    request: pytest.FixtureRequest, make: Any, tmp_path: Path, figures: Any
) -> None:
    name = request.node.callspec.id
    figures.hostile(name)
    spec = tmp_path / "hostile.yaml"
    spec.write_text(make())
    root = tmp_path / "ws"
    canary = tmp_path / "canary"
    before = _tree(tmp_path)
    proc, events = _run_audited(tmp_path, spec, root, canary)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Study ended" in proc.stdout and "FINISHED" in proc.stdout, proc.stdout

    # nothing ran the payload, nothing was created outside the workspace
    assert not canary.exists(), "a payload was run by a shell"
    new = _tree(tmp_path, skip=root) - before
    assert new <= {"audited.py", "audit.jsonl"}, new

    # every process was started with an argument list, and no shell got a -c string
    assert events, "the audit hook saw no process at all"
    for event, args in events:
        assert event in ("subprocess.Popen", "os.fork", "os.posix_spawn", "os.exec"), event
        if event == "subprocess.Popen":
            argv = args[1]
            assert isinstance(argv, list), f"a command string: {args}"
            if Path(argv[0]).name in SHELLS:
                assert "-c" not in argv, f"a shell was given a command string: {argv}"

    # the payload text is data: in the instance scripts (as text), in their outputs and in
    # the record and meta files — never in a script or program of reconciler's own
    wrapper = root / ".reconciler" / "local-job.sh"
    assert MARK not in wrapper.read_text()
    scripts = [p for p in root.rglob("*.sh") if ".reconciler" not in p.parts]
    holders = [p for p in root.rglob("*") if p.is_file() and MARK.encode() in p.read_bytes()]
    for p in holders:
        if os.access(p, os.X_OK):
            assert p in scripts, f"an executable file of reconciler's holds the payload: {p}"
    if name != "run: study name and descriptions":  # those never reach a script
        assert any(MARK in p.read_text() for p in scripts)
        outputs = [p.read_text() for p in root.rglob("value.txt")]
        for payload in TOUCH[:1]:
            assert any(payload in o for o in outputs), "the value reached the script as text"
    figures.hostile_outcome(name, rejected=False)


# ---- symlinks placed by an earlier step ---------------------------------------------------

SYMLINK_DIR = """\
description:
  name: symlinked
  description: an earlier step swaps a later step's directory for a symlink
study:
- name: first
  description: replace the directory of 'second' (made at setup) with a symlink outside
  run:
    cmd: rm -rf ../second && ln -s "$RECONCILER_OUTSIDE" ../second
- name: second
  description: runs after first
  run:
    cmd: echo second
    depends: [first]
"""

SYMLINK_FILES = """\
description:
  name: symlinked
  description: an earlier step plants symlinks where a later step's files will be written
study:
- name: first
  description: plant symlinks at second's output, error and exit-record paths
  run:
    cmd: |
      for f in second.out second.err second.exit second.exit.tmp \
               second.starting.out second.starting.err; do
        ln -sf "$RECONCILER_OUTSIDE/$f" ../second/$f
      done
- name: second
  description: runs after first
  run:
    cmd: echo second
    depends: [first]
"""


@pytest.mark.parametrize("spec_text", [SYMLINK_DIR, SYMLINK_FILES], ids=["directory", "files"])
def test_symlinks_placed_by_an_earlier_step_are_not_followed(
    spec_text: str, tmp_path: Path, figures: Any
) -> None:
    name = f"symlink attack ({'directory' if spec_text is SYMLINK_DIR else 'files'})"
    figures.hostile(name)
    spec = tmp_path / "symlinked.yaml"
    spec.write_text(spec_text)
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "ws"
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "run", "-fg", "-y", "-o", str(root), str(spec)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "RECONCILER_OUTSIDE": str(outside)},
        stdin=subprocess.DEVNULL,
        timeout=100,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    written = sorted(p.name for p in outside.iterdir())
    assert written == [], f"reconciler wrote outside the workspace: {written}"
    figures.hostile_outcome(name, rejected=False)


# ---- reconciler's own process calls -------------------------------------------------------


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            out.append((ast.unparse(node.func), node))
    return out


def test_no_shell_in_reconcilers_own_process_calls(figures: Any) -> None:
    """Static: no shell=True, no os.system/os.popen, no *_shell helpers anywhere in reconciler/;
    every subprocess call passes an argument list (a list literal, list(...) or a name)."""
    figures.hostile("static: reconciler's own process calls")
    banned = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
    found_calls = 0
    for path in sorted((REPO / "reconciler").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for func, call in _calls(tree):
            where = f"{path.relative_to(REPO)}:{call.lineno}"
            assert func not in banned, f"{where}: {func}"
            assert not func.endswith("create_subprocess_shell"), where
            process_call = func.startswith(("subprocess.", "base.", "asyncio.")) or func in (
                "spawn",
                "run",
                "Popen",
            )
            for kw in call.keywords:
                if kw.arg == "shell" and process_call:
                    assert isinstance(kw.value, ast.Constant) and kw.value.value is False, where
            if func.startswith("subprocess.") and func.split(".")[-1] in (
                "run",
                "Popen",
                "call",
                "check_call",
                "check_output",
            ):
                found_calls += 1
                first = call.args[0] if call.args else None
                assert not isinstance(first, ast.Constant | ast.JoinedStr | ast.BinOp), (
                    f"{where}: a command string"
                )
    assert found_calls, "no subprocess calls found: the check looks in the wrong place"
    figures.hostile_outcome("static: reconciler's own process calls", rejected=False)
