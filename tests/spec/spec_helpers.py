"""Builders for small specs and checks on diagnostics, shared by the spec-layer tests."""

from __future__ import annotations

from reconciler.spec import Diagnostic

HEAD = """\
description:
  name: t
  description: a test study
"""


def step(name: str, cmd: str = "echo", depends: str | None = None, more: str = "") -> str:
    """One `study:` item; `more` is extra run: lines, already indented by four spaces."""
    text = f"- name: {name}\n  description: step {name}\n  run:\n    cmd: {cmd}\n"
    if depends is not None:
        text += f"    depends: {depends}\n"
    return text + more


def params(**table: tuple[str, str]) -> str:
    """A `global.parameters:` block: NAME=(values, label)."""
    lines = ["global.parameters:"]
    for name, (values, label) in table.items():
        lines += [f"  {name}:", f"    values: {values}", f"    label: {label}"]
    return "\n".join(lines) + "\n"


def study(*steps: str, before: str = "", after: str = "") -> str:
    """A whole spec: HEAD, then `before` (env, batch...), the steps, then `after`."""
    return HEAD + before + "study:\n" + "".join(steps) + after


def only(diags: list[Diagnostic]) -> Diagnostic:
    """The single diagnostic of a one-mistake spec."""
    assert len(diags) == 1, "\n".join(map(str, diags))
    return diags[0]


def at(d: Diagnostic) -> tuple[int, int]:
    return (d.line, d.col)
