"""Spec tools: validate, expand, graph, schema."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import typer
from rich.table import Table

from reconciler.cli.common import (
    EXIT_OK,
    EXIT_USER_ERROR,
    MAX_INSTANCES,
    err,
    fail,
    load_or_exit,
    out,
    parse_pargs,
    print_json,
    report_spec_error,
    u,
)
from reconciler.record.outputs import plural
from reconciler.spec import SpecError, Study, load_study
from reconciler.spec.model import Spec
from reconciler.spec.unique import Named, duplicate_names

SPEC_SUFFIXES = (".yaml", ".yml")

PGEN = typer.Option(None, "--pgen", "-p", help="Custom parameter generator (Python file).")
PARGS = typer.Option(None, "--pargs", help="KEY:VALUE passed to the generator (repeatable).")


def spec_files(paths: list[Path]) -> list[Path]:
    """Files as given, and every *.yaml / *.yml under directories (sorted, hidden entries
    skipped).

    A path given on the command line is read even if it is a symlink: the user named it. Under
    a directory, symlinks (to files or directories) are skipped with a warning, as GitOps mode
    skips them: a committed link may point anywhere on the machine that runs `validate`, and
    its target is not the repo's content. Other entries with a spec's suffix (a FIFO, a
    device) are kept, for `load_study` to refuse them by name.
    """
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += _specs_under(p)
        elif p.exists() or p.is_symlink():
            found.append(p)
        else:
            fail(f"{p} does not exist")
    return found


def _specs_under(top: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):  # never follows a symlinked directory
        here = Path(dirpath)
        for name in sorted(dirnames):
            if (here / name).is_symlink() and not name.startswith("."):
                _skip_link(here / name)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            f = here / name
            if name.startswith(".") or f.suffix not in SPEC_SUFFIXES:
                continue
            if f.is_symlink():
                _skip_link(f)
            else:
                found.append(f)
    return sorted(found)


def _skip_link(path: Path) -> None:
    err.print(
        f"[yellow]warning:[/] {u(path)}: skipped, a symlink (only files inside the directory "
        "are validated, as GitOps mode reads them; name a linked spec on its own to validate it)"
    )


def validate(
    paths: list[Path] = typer.Argument(..., help="Spec files or directories of specs."),
    pgen: Path | None = PGEN,
    pargs: list[str] | None = PARGS,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report on stdout."),
    max_instances: int = MAX_INSTANCES,
) -> None:
    """Check specs without running anything: every error as FILE:LINE:COL: message.

    Exit codes: 0 all valid, 2 any invalid (or no spec found).
    """
    files = spec_files(paths)
    if not files:
        fail("no spec files (*.yaml, *.yml) found under " + ", ".join(map(str, paths)))
    args = parse_pargs(pargs, pgen)
    report: list[dict[str, object]] = []
    named: list[Named] = []
    bad = 0
    for f in files:
        try:
            study = load_study(f, pgen=pgen, pargs=args, max_instances=max_instances)
        except SpecError as e:
            bad += 1
            if not as_json:
                report_spec_error(e)
            report.append(
                {
                    "file": str(f),
                    "valid": False,
                    "diagnostics": [d.to_json() for d in e.diagnostics],
                }
            )
            continue
        for w in study.warnings:
            if not as_json:
                err.print(u(w), style="yellow")
        report.append(
            {
                "file": str(f),
                "valid": True,
                "study": study.name,
                "instances": len(study.instances),
                "warnings": study.warnings,
            }
        )
        named.append(Named(str(f), study.text or "", study.name))
    bad += _refuse_duplicates(named, report, as_json)
    if not as_json:  # after the duplicate check: a clashing spec is not "ok"
        for r in report:
            if r["valid"]:
                n = plural(len_of(r["instances"]), "instance")
                out.print(f"[green]ok[/] {u(r['file'])}: study '{u(r['study'])}', {n}")
    if as_json:
        print_json(report)
    elif len(files) > 1:
        out.print(f"{len(files) - bad} of {len(files)} specs valid")
    raise typer.Exit(EXIT_USER_ERROR if bad else EXIT_OK)


def len_of(value: object) -> int:
    return value if isinstance(value, int) else 0


def _refuse_duplicates(named: list[Named], report: list[dict[str, object]], quiet: bool) -> int:
    """Specs that name one study (NFC) are invalid together, as apply refuses them; returns
    how many specs that made invalid."""
    clashes = duplicate_names(named)
    by_file = {str(r["file"]): r for r in report}
    for d in clashes:
        entry = by_file[d.file]
        entry["valid"] = False
        entry["diagnostics"] = [d.to_json()]
    if clashes and not quiet:
        report_spec_error(SpecError(clashes))
    return len(clashes)


def expand(
    spec: Path = typer.Argument(..., help="The spec file."),
    pgen: Path | None = PGEN,
    pargs: list[str] | None = PARGS,
    as_json: bool = typer.Option(False, "--json", help="Print the instances as JSON."),
    max_instances: int = MAX_INSTANCES,
) -> None:
    """List the study's instances in topological order (name, workspace, depends)."""
    study = load_or_exit(spec, pgen, pargs, max_instances=max_instances)
    if as_json:
        print_json([i.to_json() for i in study.instances])
        return
    title = f"{u(study.name)}: {plural(len(study.instances), 'instance')}"
    table = Table(title=title, title_justify="left")
    for col in ("instance", "workspace", "depends on", "fingerprint"):
        table.add_column(col, overflow="fold")
    for i in study.instances:
        deps = ", ".join(i.depends) if len(i.depends) <= 3 else f"{len(i.depends)} instances"
        table.add_row(u(i.name), u(i.workspace), u(deps), i.fingerprint[:12])
    out.print(table)


def to_dot(study: Study, instances: bool) -> str:
    """DOT text of the step or instance DAG. Written by hand: networkx's DOT writers need
    pydot or pygraphviz, and DOT's grammar for a plain digraph is a few lines."""

    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {q(study.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    if instances:
        for i in study.instances:
            lines.append(f"  {q(i.name)};")
        for a, b in study.graph.edges:
            lines.append(f"  {q(a)} -> {q(b)};")
    else:
        counts: dict[str, int] = {}
        for i in study.instances:
            counts[i.step] = counts.get(i.step, 0) + 1
        for step in study.step_graph.nodes:
            n = counts.get(step, 0)
            label = step if n == 1 else f"{step}\\n×{n}"
            lines.append(f'  {q(step)} [label="{label}"];')
        for a, b, data in study.step_graph.edges(data=True):
            style = ' [style=dashed, label="funnel"]' if data.get("funnel") else ""
            lines.append(f"  {q(a)} -> {q(b)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph(
    spec: Path = typer.Argument(..., help="The spec file."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write to FILE; .svg or .png are rendered by Graphviz."
    ),
    instances: bool = typer.Option(False, "--instances", help="Draw instances, not steps."),
    pgen: Path | None = PGEN,
    pargs: list[str] | None = PARGS,
    max_instances: int = MAX_INSTANCES,
) -> None:
    """Draw the step DAG (or the instance DAG) as DOT, SVG or PNG."""
    study = load_or_exit(spec, pgen, pargs, max_instances=max_instances)
    dot_text = to_dot(study, instances)
    if output is None:
        sys.stdout.write(dot_text)
        return
    fmt = output.suffix.lstrip(".").lower()
    if fmt in ("", "dot", "gv"):
        output.write_text(dot_text)
        return
    if fmt not in ("svg", "png", "pdf"):
        fail(f"{output}: unknown picture format '.{fmt}' (use .dot, .svg, .png or .pdf)")
    dot = shutil.which("dot")
    if dot is None:
        fail(
            "drawing SVG or PNG needs Graphviz's 'dot' on PATH. Install it (Debian/Ubuntu: "
            "'apt-get install graphviz'; macOS: 'brew install graphviz'; conda: "
            "'conda install graphviz'), or write DOT with '-o FILE.dot'."
        )
    proc = subprocess.run(
        [dot, f"-T{fmt}", "-o", str(output)],
        input=dot_text.encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        fail(f"Graphviz failed to draw {output}: {proc.stderr.decode(errors='replace').strip()}")


def schema() -> None:
    """Print the JSON Schema of a spec, for editors (see docs/spec-reference.md)."""
    s = Spec.model_json_schema(by_alias=True)
    s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    s["title"] = "reconciler study spec (Maestro 1.2 format + reconcile block)"
    print_json(s)


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(expand)
    app.command()(graph)
    app.command()(schema)
