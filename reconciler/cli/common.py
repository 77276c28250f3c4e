"""What every command shares: consoles, user errors (exit 2, no traceback), spec loading."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from reconciler.spec import SpecError, Study, load_study
from reconciler.spec.printable import printable
from reconciler.spec.size import MAX_INSTANCES as DEFAULT_MAX_INSTANCES

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_OK = 0
EXIT_CHANGES = 1
EXIT_USER_ERROR = 2

MAX_INSTANCES_ENV = "RECONCILER_MAX_INSTANCES"
MAX_INSTANCES = typer.Option(
    DEFAULT_MAX_INSTANCES,
    "--max-instances",
    min=1,
    envvar=MAX_INSTANCES_ENV,
    show_default=True,
    help="Refuse a spec that would expand to more instances than this, before expanding it "
    f"(also from ${MAX_INSTANCES_ENV}).",
)


# Time options (seconds) and counts: finite and bounded, so that no stored setting can make an
# engine's sleep overflow (time.sleep(inf) raises OverflowError) or a record column overflow.
MAX_SECONDS = 86_400.0  # one day: the longest poll interval or sleep any option accepts
MAX_COUNT = 1_000_000  # throttle, restarts, attempts, slots
SECONDS_HELP = "seconds, 0 to 86400 (one day)"


def seconds(*, positive: bool = False) -> Callable[..., float | None]:
    """A typer callback that refuses a time option that is not finite or not in range."""

    def check(param: typer.CallbackParam, value: float | None) -> float | None:
        if value is None:
            return None
        low_ok = value > 0 if positive else value >= 0
        if not (math.isfinite(value) and low_ok and value <= MAX_SECONDS):
            name = max(param.opts or [str(param.name)], key=len)
            low = "more than 0" if positive else "at least 0"
            fail(
                f"{name} must be a number of seconds, {low} and at most {MAX_SECONDS:g} (one "
                f"day); not {value!r}"
            )
        return value

    return check


def u(value: object) -> str:
    """User text (names, paths, messages built from a spec) for a rich markup string: one
    line, control characters and workflow commands neutralised, `[` not read as markup."""
    return escape(printable(value, one_line=True))


def say_lines(console: Console, text: object, style: str | None = None) -> None:
    """Multi-line user text (an error with every diagnostic), each line neutralised."""
    console.print(printable(text), style=style, markup=False, highlight=False)


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    """A user mistake: one clear paragraph on stderr and exit 2 (never a traceback). The
    message may hold user text: it is printed as text, never as markup."""
    err.print(f"[bold red]error:[/] {escape(printable(message))}", markup=True)
    raise typer.Exit(code)


def fit_width() -> int | None:
    """The width tables fit: the terminal's, else $COLUMNS, else none (piped: natural widths,
    so a line is never cut for a file or grep)."""
    if out.is_terminal:
        return out.width
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


def table_console(width: int | None, disable_theme: bool = False) -> Console:
    """Where tables print: `width` wide (unbounded when None)."""
    if disable_theme:  # color_system=None: no escape codes at all, bold included
        return Console(highlight=False, color_system=None, width=width or 10_000)
    if out.is_terminal:
        return out
    return Console(highlight=False, width=width or 10_000)


def people_to_stderr() -> None:
    """With --json, stdout carries the JSON alone: messages for people go to stderr (until the
    next command starts: `reset_consoles`)."""
    out.file = sys.stderr


def reset_consoles() -> None:
    out.file = None  # type: ignore[assignment]  # rich: None means "sys.stdout, when printing"


def print_json(obj: object) -> None:
    """Machine output: plain JSON on stdout (rich's highlighter is slow on 10,000 rows)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def gh_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's runner unescapes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def gh_property(text: str) -> str:
    """A workflow command's property value (file=…): ':' and ',' end a property unescaped."""
    return gh_data(text).replace(":", "%3A").replace(",", "%2C")


def report_spec_error(e: SpecError) -> None:
    """Every diagnostic, FILE:LINE:COL first; also as GitHub annotations inside Actions.
    A diagnostic prints as one line whatever its spec holds (see spec/printable.py)."""
    for d in e.diagnostics:
        style = "red" if d.severity == "error" else "yellow"
        err.print(str(d), style=style, markup=False, highlight=False)
        if in_github_actions():
            kind = "error" if d.severity == "error" else "warning"
            # Workflow commands go to stdout; the message is one escaped line, so nothing in it
            # can end the command or start another one.
            where = f"file={gh_property(d.file)},line={d.line},col={d.col}"
            sys.stdout.write(f"::{kind} {where}::{gh_data(printable(d.message))}\n")


def report_warnings(study: Study) -> None:
    for w in study.warnings:
        err.print(printable(w, one_line=True), style="yellow", markup=False, highlight=False)


def parse_pargs(pargs: list[str] | None, pgen: Path | None) -> dict[str, str]:
    """Maestro's `--pargs KEY:VALUE` (repeatable); only meaningful with `--pgen`."""
    if pargs and pgen is None:
        fail("--pargs needs --pgen: the arguments are passed to the parameter generator")
    parsed: dict[str, str] = {}
    for item in pargs or []:
        key, sep, value = item.partition(":")
        if not sep or not key:
            fail(f"--pargs '{item}' is not KEY:VALUE")
        parsed[key] = value
    return parsed


def env_max_instances() -> int:
    """The instance limit for commands without --max-instances (`status --repo`)."""
    raw = os.environ.get(MAX_INSTANCES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_INSTANCES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        fail(f"${MAX_INSTANCES_ENV} must be a whole number ≥ 1, not {raw!r}")
    return value


def load_or_exit(
    spec: Path,
    pgen: Path | None = None,
    pargs: list[str] | None = None,
    *,
    hashws: bool = False,
    dependency_shas: Mapping[str, str] | None = None,
    warn: bool = True,
    max_instances: int = DEFAULT_MAX_INSTANCES,
) -> Study:
    """Load and expand a spec, or report every error and exit 2."""
    for path in (spec, pgen):
        if path is not None and not path.exists():
            fail(f"{path} does not exist")
    args = parse_pargs(pargs, pgen)
    try:
        study = load_study(
            spec,
            pgen=pgen,
            pargs=args,
            hashws=hashws,
            dependency_shas=dependency_shas,
            max_instances=max_instances,
        )
    except SpecError as e:
        report_spec_error(e)
        raise typer.Exit(EXIT_USER_ERROR) from None
    if warn:
        report_warnings(study)
    return study
