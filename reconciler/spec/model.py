"""The spec model: every block and key Maestro 1.2 accepts, plus our optional `reconcile:` block.

Field names are Python names; `alias` carries Maestro's spelling ("cores per task"). Models that
Maestro's JSON schema closes (`additionalProperties: false`) forbid extra keys here too; `batch`
is open because Maestro never checks it and real specs carry site-specific keys (we warn).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from reconciler.spec.names import normal_name
from reconciler.spec.pool import Pool

MAX_RETRIES = 1000
MAX_COUNT = 1_000_000  # a throttle; the command line's counts have the same bound
MAX_SECONDS = 86_400.0  # one day: the longest backoff (and poll interval) accepted

VAR_REF = re.compile(r"^\$\(\w+\)$")
NonEmpty = Annotated[str, StringConstraints(min_length=1)]

# A count that may also be written `$(VAR)` and resolved during expansion.
Count = Annotated[int, Field(ge=1)] | Annotated[str, StringConstraints(pattern=r"^\$\(\w+\)$")]
CountOrZero = (
    Annotated[int, Field(ge=0)] | Annotated[str, StringConstraints(pattern=r"^\$\(\w+\)$")]
)

PRIORITIES = ("HELD", "MINIMAL", "LOW", "MEDIUM", "HIGH", "EXPEDITED")


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Description(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # Maestro allows extra keys here

    name: NonEmpty
    description: NonEmpty

    @field_validator("name")
    @classmethod
    def _nfc(cls, v: str) -> str:
        return normal_name(v)  # compared and stored in one form (spec/names.py)


# A dependency is referenced as $(NAME) and becomes a directory name: word characters only.
DependencyName = Annotated[str, StringConstraints(pattern=r"^\w+$")]


class PathDependency(Closed):
    name: DependencyName
    path: NonEmpty


class GitDependency(Closed):
    name: DependencyName
    path: NonEmpty
    url: NonEmpty
    tag: str | None = None
    hash: str | None = None
    branch: str | None = None


class Dependencies(Closed):
    paths: list[PathDependency] = Field(default_factory=list)
    git: list[GitDependency] = Field(default_factory=list)
    spack: list[dict[str, Any]] = Field(default_factory=list)  # in Maestro's schema, never used


Scalar = Annotated[str, StringConstraints(min_length=1)] | int | float


class Env(Closed):
    variables: dict[str, Scalar] = Field(default_factory=dict)
    labels: dict[str, Scalar] = Field(default_factory=dict)
    sources: list[Any] = Field(default_factory=list)  # stored by Maestro, never applied
    dependencies: Dependencies = Field(default_factory=Dependencies)

    @field_validator("variables", "labels", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v


class Batch(BaseModel):
    """Open on purpose: unknown keys are kept and reported as warnings by the loader."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    type: Literal["local", "slurm", "lsf", "flux", "pbs"] = "local"
    host: str | None = None
    bank: str | None = None
    queue: str | None = None
    shell: str = "/bin/bash"
    reservation: str | None = None
    qos: str | None = None
    nodes: Count | None = None
    procs: Count | None = None
    gpus: CountOrZero | None = None
    # flux
    version: str | None = None
    uri: str | None = None
    allocation_args: dict[str, Any] | None = None
    launcher_args: dict[str, Any] | None = None
    args: dict[str, Any] | None = None
    # reconciler: a worker pool (Dask) for the instances of chosen steps; see spec/pool.py
    pool: Pool | None = None

    @classmethod
    def known_keys(cls) -> set[str]:
        return set(cls.model_fields)


class Exclusive(Closed):
    allocation: bool = False
    launcher: bool = False


class Run(Closed):
    cmd: NonEmpty
    depends: list[NonEmpty] = Field(default_factory=list)
    restart: str | None = None
    pre: str | None = None  # accepted (Maestro does, and ignores them); we warn
    post: str | None = None
    nodes: Count | None = None
    procs: Count | None = None
    gpus: CountOrZero | None = None
    cores_per_task: Count | None = Field(None, alias="cores per task")
    tasks_per_rs: Count | None = Field(None, alias="tasks per rs")
    rs_per_node: Count | None = Field(None, alias="rs per node")
    cpus_per_rs: Count | None = Field(None, alias="cpus per rs")
    walltime: (
        Annotated[str, StringConstraints(min_length=1)] | Annotated[int, Field(ge=0)] | None
    ) = None
    bind: str | None = None
    bind_gpus: str | None = Field(None, alias="bind gpus")
    reservation: str | None = None
    exclusive: (
        bool | Annotated[str, StringConstraints(pattern=r"^\$\(\w+\)$")] | Exclusive | None
    ) = None
    nested: bool | None = None
    waitable: bool | None = None
    priority: str | Annotated[float, Field(ge=0, le=1)] | None = None
    qos: str | None = None

    @field_validator("depends", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v

    @field_validator("priority")
    @classmethod
    def _priority_name(cls, v: str | float | None) -> str | float | None:
        if isinstance(v, str) and v.upper() not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)} or a number in 0..1")
        return v


class Step(Closed):
    name: NonEmpty
    description: NonEmpty
    run: Run


class Parameter(Closed):
    values: Annotated[list[Scalar], Field(min_length=1)]
    label: NonEmpty


class Reconcile(Closed):
    """Our block; Maestro ignores unknown top-level keys, so specs with it still run there."""

    prune: bool = False
    suspend: bool = False
    # Bounded: a record column or an engine's sleep must never overflow (issue #14).
    retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] = 0
    backoff: Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)] = 0.0
    throttle: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 0
    workspace: str | None = None
    self_heal: bool = False


class Spec(Closed):
    description: Description
    env: Env = Field(default_factory=Env)
    batch: Batch = Field(default_factory=Batch)
    study: Annotated[list[Step], Field(min_length=1)]
    parameters: dict[str, Parameter] = Field(default_factory=dict, alias="global.parameters")
    reconcile: Reconcile = Field(default_factory=Reconcile)

    @field_validator("env", "batch", "reconcile", mode="before")
    @classmethod
    def _none_is_default(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("parameters", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v
