"""Progress of running studies, for `run --fg` and `apply --wait`.

On a terminal: a rich progress bar per study. Piped (CI logs, `| tee`): a plain line per study
when its counts change, at most every `PLAIN_EVERY` seconds, so a log shows the run moving
without a line per instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reconciler.plan.states import BLOCKING, IN_FLIGHT, State

PLAIN_EVERY = 2.0  # seconds between two plain lines of one study
_RUNNING = {str(s) for s in IN_FLIGHT}
_BAD = {str(s) for s in BLOCKING}
_WAITING = str(State.INITIALIZED)

OnPass = Callable[[Mapping[str, int]], None]


def tally(counts: Mapping[str, int]) -> tuple[int, int, int, int]:
    """(total, ended, running, failed or blocked) of a study's counts by state."""
    total = sum(counts.values())
    running = sum(n for s, n in counts.items() if s in _RUNNING)
    ended = total - running - counts.get(_WAITING, 0)
    bad = sum(n for s, n in counts.items() if s in _BAD)
    return total, ended, running, bad


def describe(counts: Mapping[str, int]) -> str:
    total, ended, running, bad = tally(counts)
    text = f"{ended:,} of {total:,} ended, {running:,} running"
    return text + (f", {bad:,} failed or blocked" if bad else "")


class StudyProgress:
    """`with StudyProgress(console, live=tty) as p: engine(on_pass=p.study(name))`."""

    def __init__(self, console: Console, *, live: bool) -> None:
        self.console = console
        self.live = live
        self._bar: Progress | None = None
        if live:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )

    def __enter__(self) -> StudyProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def study(self, name: str) -> OnPass:
        """The engine's `on_pass` callback for one study."""
        if self._bar is not None:
            bar = self._bar
            task = bar.add_task(name, total=None, detail="")

            def on_bar(counts: Mapping[str, int]) -> None:
                total, ended, running, bad = tally(counts)
                detail = f"{running:,} running" + (f", {bad:,} failed" if bad else "")
                bar.update(task, total=total, completed=ended, detail=detail)

            return on_bar
        last: list[float | str] = [0.0, ""]

        def on_line(counts: Mapping[str, int]) -> None:
            text = describe(counts)
            now = time.monotonic()
            if text != last[1] and now - float(last[0]) >= PLAIN_EVERY:
                last[0], last[1] = now, text
                stamp = time.strftime("%H:%M:%S")
                self.console.print(f"{stamp} {name}: {text}", markup=False, highlight=False)

        return on_line


__all__ = ["PLAIN_EVERY", "StudyProgress", "describe", "tally"]
