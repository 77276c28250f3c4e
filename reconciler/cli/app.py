"""The `reconciler` command: the typer root. Command groups register themselves here.

Help and errors are tuned for people: flags show no `<bool>` type, usage lines read
`run [OPTIONS] SPEC`, and a usage error is one `error:` line after the usage (no panel).
Maestro's global options `-d/--debug_lvl`, `-l/--logpath` and `-c/--logstdout` are accepted.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from reconciler import __version__
from reconciler.cli.common import err, reset_consoles, u
from reconciler.record import eventlog

try:  # typer ≥ 0.24 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on plain click
    from click import exceptions as click_errors  # type: ignore[no-redef]

_NO_ARGS = getattr(click_errors, "NoArgsIsHelpError", ())  # click ≥ 8.2

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 changes found (plan); 2 user error (bad spec, bad option) or "
    "a study with failed/blocked instances; 3 study cancelled."
)


def _tidy(params: Sequence[Any]) -> None:
    """Flags take no value: show none (typer would print `<bool>`); arguments and repeatable
    options read as NAME (typer: `<list[str]>`)."""
    for p in params:
        if getattr(p, "is_flag", False):
            p.metavar = ""
        elif p.metavar is not None:
            continue
        elif getattr(p, "param_type_name", "") == "argument" or getattr(p, "multiple", False):
            p.metavar = p.name.upper()


def _unwrap(text: str | None) -> str | None:
    """Docstring paragraphs as one line each (typer keeps the source's line breaks)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _usage(params: Sequence[Any], ctx: Any, options_metavar: str | None) -> list[str]:
    pieces = [options_metavar] if options_metavar else []
    for p in params:
        if getattr(p, "param_type_name", "") != "argument":
            continue
        name = (p.metavar or p.name.upper()).removesuffix("...")
        many = "..." if p.nargs != 1 else ""
        pieces.append(f"{name}{many}" if p.required else f"[{name}]{many}")
    return pieces


class Command(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _unwrap(self.help)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _tidy(self.get_params(ctx))
        super().format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        _tidy(self.get_params(ctx))
        return _usage(self.get_params(ctx), ctx, self.options_metavar)


class Group(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _unwrap(self.help)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _tidy(self.get_params(ctx))
        super().format_help(ctx, formatter)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:  # fmt: skip
        """Errors of the command line as `error: …` after the usage, exit 2 (click's own
        rendering is a panel titled "Error")."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _NO_ARGS as e:  # `reconciler` alone: the help, as click prints it
            e.show()
            sys.exit(e.exit_code)
        except click_errors.UsageError as e:
            if e.ctx is not None:
                typer.echo(e.ctx.get_usage(), err=True)
                typer.echo(f"Try '{e.ctx.command_path} --help' for help.", err=True)
            err.print(f"[bold red]error:[/] {u(e.format_message())}", markup=True, highlight=False)
            sys.exit(e.exit_code)
        except click_errors.ClickException as e:
            err.print(f"[bold red]error:[/] {u(e.format_message())}", markup=True, highlight=False)
            sys.exit(e.exit_code)
        except typer.Abort:
            err.print("aborted", markup=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class Reconciler(typer.Typer):
    """typer.Typer whose commands use `Command` (help without type noise)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


app = Reconciler(
    name="reconciler",
    cls=Group,
    help="Run Maestro-format HPC studies, and keep their workspaces converged to a git repo "
    "of specs.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reconciler {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-v", callback=_version, is_eager=True, help="Print the version."
    ),
    debug_lvl: int | None = typer.Option(
        None,
        "-d",
        "--debug_lvl",
        metavar="N",
        min=1,
        max=5,
        help="Log the record's events at this level (Maestro's scale: 1 debug, 2 info, "
        "3 warning, 4 error, 5 critical), also in the engines this command starts.",
    ),
    logpath: Path | None = typer.Option(
        None, "-l", "--logpath", metavar="FILE", help="Also write that log to FILE (appended)."
    ),
    logstdout: bool = typer.Option(
        False, "-c", "--logstdout", help="Log to the terminal (stderr); on whenever -d or -l is."
    ),
) -> None:
    reset_consoles()  # a previous command in this process may have sent people's output aside
    if debug_lvl is not None or logpath is not None or logstdout:
        try:
            eventlog.configure(debug_lvl or 2, logpath)
        except OSError as e:
            from reconciler.cli.common import fail

            fail(f"--logpath {logpath}: {e.strerror or e}")


def _register() -> None:
    # Imported here so each module can `from reconciler.cli.app import app` without a cycle.
    from reconciler.cli import gitops, logs, maestro, tools, watch

    tools.register(app)
    maestro.register(app)
    logs.register(app)
    gitops.register(app)
    watch.register(app)


_register()


def main() -> None:
    from reconciler.cli.maestro import normalize_maestro_argv

    sys.argv[1:] = normalize_maestro_argv(sys.argv[1:])  # Maestro's single-dash `-fg`
    app()
