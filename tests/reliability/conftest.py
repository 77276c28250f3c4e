"""Reliability figures for issue #8: how many bad inputs were tried and rejected, how many fuzz
examples ran, how many hostile specs were contained, how many engine kills were survived and
how many injected faults ended in a clear error or a recovery. Printed at the end of the pytest run.

Tests record through the session-scoped `figures` fixture: `tried(...)` first, the outcome
(`rejected(...)`, `contained(...)`) only after every assertion held, so a failing test shows
as "N-1 of N" instead of being counted as a success.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest


@dataclass
class Figures:
    bad_tried: set[str] = field(default_factory=set)
    bad_rejected: set[str] = field(default_factory=set)
    bad_exact: set[str] = field(default_factory=set)  # rejected at the expected line:col+phrase
    cli_tried: Counter[str] = field(default_factory=Counter)  # per command
    cli_clean: Counter[str] = field(default_factory=Counter)  # exit 2, FILE:L:C, no trace, no dir
    fuzz: Counter[str] = field(default_factory=Counter)  # examples run, per test
    fuzz_loaded: int = 0  # examples that produced a (consistent) Study
    hostile_tried: set[str] = field(default_factory=set)
    hostile_rejected: set[str] = field(default_factory=set)  # refused at validation
    hostile_contained: set[str] = field(default_factory=set)  # accepted, and stayed inside
    kills: int = 0  # kill -9s of a running engine survived
    once: int = 0  # instances proven (by counter files) to have run exactly once
    faults_tried: set[str] = field(default_factory=set)  # faults injected (test_faults.py)
    faults_handled: set[str] = field(default_factory=set)  # clear error or recovery, proven
    shared_tried: dict[str, set[str]] = field(default_factory=dict)  # GitOps class -> cases
    shared_held: dict[str, set[str]] = field(default_factory=dict)  # ... that held

    # -- recording ------------------------------------------------------------------------

    def bad_input(self, name: str) -> None:
        self.bad_tried.add(name)

    def bad_input_rejected(self, name: str, exact: bool) -> None:
        self.bad_rejected.add(name)
        if exact:
            self.bad_exact.add(name)

    def cli(self, command: str, clean: bool | None = None) -> None:
        if clean is None:
            self.cli_tried[command] += 1
        elif clean:
            self.cli_clean[command] += 1

    def fuzz_example(self, test: str, loaded: bool = False) -> None:
        self.fuzz[test] += 1
        self.fuzz_loaded += int(loaded)

    def hostile(self, name: str) -> None:
        self.hostile_tried.add(name)

    def hostile_outcome(self, name: str, *, rejected: bool) -> None:
        (self.hostile_rejected if rejected else self.hostile_contained).add(name)

    def chaos(self, kills: int) -> None:
        self.kills += kills

    def exactly_once(self, instances: int) -> None:
        self.once += instances

    def fault(self, name: str) -> None:
        self.faults_tried.add(name)

    def fault_handled(self, name: str) -> None:
        self.faults_handled.add(name)

    def shared(self, cls: str, case: str) -> None:
        """A case of a GitOps-in-a-shared-repo class (test_shared_repo.py) is tried."""
        self.shared_tried.setdefault(cls, set()).add(case)

    def shared_ok(self, cls: str, case: str) -> None:
        self.shared_held.setdefault(cls, set()).add(case)

    # -- report ---------------------------------------------------------------------------

    def lines(self) -> list[str]:
        out: list[str] = []
        if self.bad_tried:
            out.append(
                f"bad inputs rejected (load_study): {len(self.bad_rejected)} of "
                f"{len(self.bad_tried)}; at the expected line:col with the expected message: "
                f"{len(self.bad_exact)} of {len(self.bad_tried)}"
            )
        for command in sorted(self.cli_tried):
            out.append(
                f"bad inputs rejected cleanly by `reconciler {command}` (exit 2, FILE:LINE:COL, "
                f"no traceback, nothing created): {self.cli_clean[command]} of "
                f"{self.cli_tried[command]}"
            )
        if self.fuzz:
            total = sum(self.fuzz.values())
            per = ", ".join(f"{k} {v}" for k, v in sorted(self.fuzz.items()))
            out.append(
                f"fuzz examples: {total} ({per}); {self.fuzz_loaded} loaded into a consistent "
                "Study, every other one raised SpecError"
            )
        if self.hostile_tried:
            ok = self.hostile_rejected | self.hostile_contained
            out.append(
                f"hostile specs contained: {len(ok & self.hostile_tried)} of "
                f"{len(self.hostile_tried)} ({len(self.hostile_rejected)} rejected at "
                f"validation, {len(self.hostile_contained)} accepted and kept inside the "
                "workspace)"
            )
        if self.kills:
            out.append(
                f"engine kill -9s survived: {self.kills}; instances that then ran exactly once "
                f"(counted): {self.once}"
            )
        if self.faults_tried:
            out.append(
                f"faults injected (read-only or full disk, deleted directories, corrupted "
                f"records, misbehaving schedulers): {len(self.faults_tried)}; handled with a "
                f"clear error or a recovery: {len(self.faults_handled & self.faults_tried)} of "
                f"{len(self.faults_tried)}"
            )
        if self.shared_tried:
            held_by = {
                k: len(self.shared_held.get(k, set()) & v) for k, v in self.shared_tried.items()
            }
            tried = sum(len(v) for v in self.shared_tried.values())
            held = sum(held_by.values())
            per = ", ".join(
                f"{k} {held_by[k]}/{len(v)}"
                for k, v in sorted(self.shared_tried.items(), key=lambda kv: _class_order(kv[0]))
            )
            out.append(f"GitOps in a shared repo: {held} of {tried} cases held ({per})")
        return out


def _class_order(cls: str) -> tuple[int, str]:
    """Issue #14's classes in their numbers' order ("2 names" before "10 CI output")."""
    number, _, _ = cls.partition(" ")
    return (int(number) if number.isdigit() else 1_000, cls)


_KEY = pytest.StashKey[Figures]()


def _figures(config: pytest.Config) -> Figures:
    if _KEY not in config.stash:
        config.stash[_KEY] = Figures()
    return config.stash[_KEY]


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config) -> Figures:
    return _figures(pytestconfig)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = _figures(terminalreporter.config).lines()
    if not lines:
        return
    terminalreporter.section("reliability figures")
    for line in lines:
        terminalreporter.write_line(line)
