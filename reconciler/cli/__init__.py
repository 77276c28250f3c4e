"""Command line: typer, thin. Each module registers one command group on the root app."""
