"""The `reconciler` command: the typer root. Command groups register themselves here."""

from __future__ import annotations

import sys

import typer

from reconciler import __version__

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 changes found (plan); 2 user error (bad spec, bad option) or "
    "a study with failed/blocked instances; 3 study cancelled."
)

app = typer.Typer(
    name="reconciler",
    help="Run Maestro-format HPC studies, and keep their workspaces converged to a git repo "
    "of specs.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
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
) -> None:
    pass


def _register() -> None:
    # Imported here so each module can `from reconciler.cli.app import app` without a cycle.
    from reconciler.cli import gitops, maestro, tools, watch

    tools.register(app)
    maestro.register(app)
    gitops.register(app)
    watch.register(app)


_register()


def main() -> None:
    from reconciler.cli.maestro import normalize_maestro_argv

    sys.argv[1:] = normalize_maestro_argv(sys.argv[1:])  # Maestro's single-dash `-fg`
    app()
