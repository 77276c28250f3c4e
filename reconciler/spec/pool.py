"""`batch.pool`: a worker pool (Dask distributed) that runs the instances of chosen steps.

A pool is declared once in the `batch` block and the steps that use it are named there, so
`run:` blocks (closed, as in Maestro) do not change and a spec without `pool` runs exactly as
before. Instances of pooled steps become tasks on pool workers; every other step goes to the
batch `type`'s adapter as usual.

    batch:
      type: slurm            # the adapter of the steps not in the pool (and of the pool's jobs)
      queue: debug
      pool:
        steps: [sim]         # step names (or fnmatch patterns) whose instances use the pool
        cluster: slurm       # where workers start: local | slurm | pbs | lsf (default: the
                             # batch type where dask-jobqueue has it, else local)
        allocations: 4       # at most this many allocation jobs at once (the cap)
        workers: 2           # workers per allocation
        cores: 2             # instance slots (and the CPU resource) per worker
        memory: 4GB          # per worker
        gpus: 1              # GPU resource per worker: instances with `gpus:` land only here
        walltime: "01:00:00" # per allocation
        queue: gpu           # default: batch.queue
        bank: proj           # default: batch.bank

or `address: tcp://host:8786` (with `steps`) to use a Dask scheduler someone else runs.

Pure: this module validates; `reconciler.schedulers.pool` runs the pool.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic import model_validator as _model_validator

from reconciler.spec.walltime import walltime_seconds

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
MEMORY = re.compile(r"^\d+(\.\d+)?\s*([KMGTP]i?B|[KMGTP])$", re.IGNORECASE)
CLUSTERS = ("local", "slurm", "pbs", "lsf")
# Keys that describe a pool reconciler starts; meaningless when connecting to `address`.
MANAGED_KEYS = (
    "cluster",
    "allocations",
    "nodes",
    "workers",
    "cores",
    "memory",
    "gpus",
    "walltime",
    "queue",
    "bank",
    "interface",
    "directives",
    "idle",
)
# Keys that only an allocation (a scheduler job) has.
ALLOCATION_KEYS = ("allocations", "walltime", "queue", "bank", "directives")


class Pool(BaseModel):
    """`batch.pool`. Closed: a misspelt pool key is an error, not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    steps: Annotated[list[NonEmpty], Field(min_length=1)]
    cluster: Literal["local", "slurm", "pbs", "lsf"] | None = None
    address: NonEmpty | None = None
    allocations: Annotated[int, Field(ge=1)] = 1
    nodes: Annotated[int, Field(ge=1)] = 1
    workers: Annotated[int, Field(ge=1)] = 1
    cores: Annotated[int, Field(ge=1)] = 1
    memory: NonEmpty = "2GB"
    gpus: Annotated[int, Field(ge=0)] = 0
    walltime: NonEmpty | Annotated[int, Field(ge=1)] | None = None
    queue: NonEmpty | None = None
    bank: NonEmpty | None = None
    interface: NonEmpty | None = None
    directives: list[NonEmpty] = Field(default_factory=list)
    idle: Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)] = 300.0

    @field_validator("steps", "directives", mode="before")
    @classmethod
    def _one_is_a_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        if not MEMORY.match(v.strip()):
            raise ValueError(f"memory '{v}' is not a size such as 2GB, 512MB or 1.5GiB")
        return v.strip()

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, v: str | int | None) -> str | int | None:
        walltime_seconds(v)  # ValueError with the accepted forms
        return v

    @field_validator("nodes")
    @classmethod
    def _one_node(cls, v: int) -> int:
        if v != 1:
            raise ValueError(
                "a pool allocation is one node (dask-jobqueue starts one worker job per "
                "allocation); for more nodes ask for more `allocations`"
            )
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(tcp|tls|inproc|ucx|ws|wss)://\S+$", v):
            raise ValueError(f"address '{v}' is not a Dask scheduler address like tcp://host:8786")
        return v

    @_model_validator(mode="after")
    def _consistent(self) -> Pool:
        given = self.model_fields_set
        if self.address is not None:
            clash = [k for k in MANAGED_KEYS if k in given]
            if clash:
                raise ValueError(
                    f"with `address` the pool belongs to a scheduler reconciler does not start; "
                    f"remove {', '.join(clash)}"
                )
        return self

    def where(self, batch_type: str) -> str:
        """Where workers start: `cluster`, or the batch type when dask-jobqueue has it."""
        if self.cluster is not None:
            return self.cluster
        return batch_type if batch_type in CLUSTERS else "local"

    def problem(self, batch_type: str) -> str | None:
        """What is wrong with this pool under `batch.type` (None: nothing)."""
        if self.address is not None:
            return None
        if self.cluster is None and batch_type == "flux":
            return (
                "dask-jobqueue has no Flux cluster, so a pool cannot start workers in Flux "
                "allocations; set `cluster: local`, or connect to a running Dask scheduler "
                "with `address:`"
            )
        if self.where(batch_type) == "local":
            clash = [k for k in ALLOCATION_KEYS if k in self.model_fields_set]
            if clash:
                return (
                    f"a local pool has no allocations (its workers run on this host); remove "
                    f"{', '.join(clash)} or set `cluster: slurm`"
                )
        return None

    # -- what the adapter and checks need -----------------------------------------------------

    @property
    def managed(self) -> bool:
        """Does reconciler start (and stop) this pool's scheduler and workers?"""
        return self.address is None

    def max_workers(self, batch_type: str) -> int:
        """The cap: workers of a local pool, allocations x workers of a scheduler one."""
        if self.where(batch_type) == "local":
            return self.workers
        return self.allocations * self.workers

    def uses(self, step: str) -> bool:
        """Does `step` run on the pool?"""
        return any(fnmatch.fnmatchcase(step, p) for p in self.steps)

    def unknown_steps(self, steps: Iterable[str]) -> list[str]:
        """Entries of `steps:` that match no step of the study (for the spec checks)."""
        names = list(steps)
        return [p for p in self.steps if not any(fnmatch.fnmatchcase(n, p) for n in names)]


def demand(resources: Any) -> dict[str, int]:
    """The Dask worker resources one pooled instance takes: CPU = procs x cores per task (at least
    1), GPU = gpus (when asked for). `resources` is an instance's `Resources`."""
    cpu = (resources.procs or 1) * (resources.cores_per_task or 1)
    gpus = resources.gpus or 0
    return {"CPU": cpu, **({"GPU": gpus} if gpus else {})}


def check_pool(spec: Any, pos: Any, out: Any) -> None:
    """The pool as a whole: its setting under `batch.type`, and `steps` naming real steps."""
    pool = spec.batch.pool
    if pool is None:
        return
    why = pool.problem(spec.batch.type)
    if why:
        out.error(f"batch.pool: {why}", lambda: pos.key(("batch", "pool")))
    unknown = set(pool.unknown_steps(s.name for s in spec.study))
    for j, entry in enumerate(pool.steps):
        if entry in unknown:
            out.error(
                f"batch.pool.steps: '{entry}' matches no step of the study",
                lambda j=j: pos.value(("batch", "pool", "steps", j)),
            )


def check_fit(spec: Any, instances: Iterable[Any], pos: Any, out: Any) -> None:
    """Every pooled instance fits on one worker: otherwise it would wait forever."""
    pool = spec.batch.pool
    if pool is None or pool.address is not None:  # someone else's workers: we cannot know
        return
    index = {s.name: i for i, s in enumerate(spec.study)}
    told: set[str] = set()
    for inst in instances:
        if inst.step in told or not pool.uses(inst.step):
            continue
        need = demand(inst.resources)
        why = ""
        if (inst.resources.nodes or 1) > 1:
            why, key = f"asks for {inst.resources.nodes} nodes; a pool worker is on one", "nodes"
        elif need["CPU"] > pool.cores:
            why, key = f"needs {need['CPU']} cores; pool workers have {pool.cores}", "procs"
        elif need.get("GPU", 0) > pool.gpus:
            why, key = f"needs {need['GPU']} GPUs; pool workers have {pool.gpus}", "gpus"
        if why:
            told.add(inst.step)
            i = index[inst.step]
            out.error(
                f"step '{inst.step}' runs on the pool but {inst.name} {why}, so it could never "
                "start; raise the pool's `cores`/`gpus`, or take the step out of `pool.steps`",
                lambda i=i, key=key: pos.key(("study", i, "run", key)) or pos.key(("study", i)),
            )
