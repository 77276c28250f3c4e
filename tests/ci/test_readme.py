"""The README's commands are the ones CI runs: `.ci/run` ends with exactly its test command."""

from __future__ import annotations

import re
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]


def _bash_block_after(text: str, marker: str) -> str:
    at = text.index(marker)
    block = re.search(r"```bash\n(.*?)\n```", text[at:], re.DOTALL)
    assert block is not None, f"no bash block after {marker!r}"
    return block.group(1).strip()


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    readme = (TOP / "README.md").read_text()
    command = _bash_block_after(readme, "**Test it**")
    lines = [ln.strip() for ln in (TOP / ".ci" / "run").read_text().splitlines()]
    assert command in lines, f".ci/run does not run the README's test command: {command}"
    assert lines[-1] == command  # the last thing CI does


def test_both_readme_commands_start_in_a_virtual_environment() -> None:
    readme = (TOP / "README.md").read_text()
    for marker in ("**Try it**", "**Test it**"):
        command = _bash_block_after(readme, marker)
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && "), marker
