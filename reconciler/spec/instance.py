"""The expanded study: instances (step × parameter combination) in topological order."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import networkx as nx

    from reconciler.spec.model import Batch, Reconcile, Spec

# Tokens left in an instance's cmd after expansion because their value depends on where the
# study is placed on disk: $(OUTPUT_PATH), $(SPECROOT) and env dependency names. Keeping them
# symbolic makes fingerprints independent of the workspace location (reproduce relies on it).
LOCATION_TOKEN = re.compile(r"\$\(([A-Za-z0-9_][A-Za-z0-9_.\-]*)\)")


@dataclass(frozen=True, slots=True)
class Resources:
    """Scheduler-facing resources of one instance, with every `$(VAR)` already resolved."""

    nodes: int | None = None
    procs: int | None = None
    gpus: int | None = None
    cores_per_task: int | None = None
    tasks_per_rs: int | None = None
    rs_per_node: int | None = None
    cpus_per_rs: int | None = None
    walltime: str | None = None  # verbatim ("01:30:00"), or minutes as a string for an int
    bind: str | None = None
    bind_gpus: str | None = None
    reservation: str | None = None
    exclusive: bool | dict[str, bool] | None = None
    nested: bool | None = None
    waitable: bool | None = None
    priority: str | float | None = None
    qos: str | None = None

    @property
    def scheduled(self) -> bool:
        """Maestro runs a step on the scheduler only if it asks for nodes or procs."""
        return bool(self.nodes or self.procs)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


@dataclass(frozen=True, slots=True)
class Instance:
    """One node of the expanded DAG, named and placed exactly as Maestro does."""

    name: str  # hello_GREETING.Hello.NAME.Pam
    step: str  # hello
    workspace: str  # hello/GREETING.Hello.NAME.Pam, relative to the study root
    depends: tuple[str, ...]  # instance names
    params: dict[str, Any]  # parameter name -> value
    cmd: str  # rendered except for location tokens (see render())
    restart: str | None
    resources: Resources
    fingerprint: str
    description: str = ""

    def render(self, text: str, locations: dict[str, str]) -> str:
        """Substitute location tokens ($(OUTPUT_PATH), $(SPECROOT), dependency paths)."""

        def sub(m: re.Match[str]) -> str:
            return locations.get(m.group(1), m.group(0))

        return LOCATION_TOKEN.sub(sub, text)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "workspace": self.workspace,
            "depends": list(self.depends),
            "params": dict(self.params),
            "fingerprint": self.fingerprint,
        }


@dataclass
class Study:
    """A validated spec and its expansion."""

    spec: Spec
    path: str  # the spec file as given
    instances: list[Instance]  # topological order
    graph: nx.DiGraph  # instance DAG (edges parent -> child), nodes are instance names
    step_graph: nx.DiGraph  # step DAG
    warnings: list[str] = field(default_factory=list)
    text: str | None = None  # the spec text as read (a workspace keeps this copy, not a re-read)

    @property
    def name(self) -> str:
        return self.spec.description.name

    @property
    def batch(self) -> Batch:
        return self.spec.batch

    @property
    def reconcile(self) -> Reconcile:
        return self.spec.reconcile

    def by_name(self) -> dict[str, Instance]:
        return {i.name: i for i in self.instances}
