"""From a Study to a workspace on disk: root, locations, scripts, meta files and the record.

Everything a user can get wrong (unknown batch type, missing path dependency, bad walltime, a
directory that belongs to someone else) is checked before the first directory is made.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler import wsfile
from reconciler.record import workspace as wsmod
from reconciler.record.store import InstanceRow, RecordError, Store, is_workspace
from reconciler.record.workspace import Workspace
from reconciler.schedulers import ADAPTERS, get_adapter, missing
from reconciler.schedulers.base import Adapter
from reconciler.spec.instance import Instance, Study
from reconciler.spec.launcher import LauncherError
from reconciler.spec.walltime import walltime_seconds


class SetupError(Exception):
    """A user error found while placing a study on disk (one paragraph, exit 2)."""


@dataclass
class RunSettings:
    throttle: int = 0
    rlimit: int = 1
    sleep: float = 60.0
    attempts: int = 1
    slots: int = 0
    dry: bool = False
    hashws: bool = False
    usetmp: bool = False
    pgen: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def choose_root(study: Study, out: Path | None, cwd: Path, now: datetime | None = None) -> Path:
    """`-o DIR` exactly; else `<OUTPUT_PATH or CWD>/<name>_<timestamp>` (OUTPUT_PATH is relative
    to the CWD, as in Maestro)."""
    if out is not None:
        return (cwd / out).resolve()
    base = study.spec.env.variables.get("OUTPUT_PATH")
    parent = (cwd / str(base)).resolve() if base is not None else cwd.resolve()
    return wsmod.default_root(study.name, parent, now)


def existing_workspace(root: Path, name: str, advice: str = "Choose another -o/--out") -> bool:
    """True if `root` is the workspace of study `name` (resume it); raise SetupError if it must
    not be touched: not a directory, another study's workspace, a non-empty directory that is
    no workspace, or a record that cannot be read. `advice` ends each message."""
    if not root.exists():
        return False
    if root.is_symlink() or not root.is_dir():
        kind = "a symbolic link" if root.is_symlink() else "not a directory"
        raise SetupError(f"{root} exists and is {kind}; it is left as it is. {advice}.")
    if is_workspace(root):
        try:
            store = Store.open(root)
            owner = store.study()["name"]
            store.close()
        except RecordError as e:
            raise SetupError(str(e)) from None  # it says that nothing was changed
        if owner != name:
            raise SetupError(
                f"{root} is the workspace of study '{owner}', not '{name}'; it is left as it "
                f"is. {advice}."
            )
        return True
    if any(root.iterdir()):
        raise SetupError(
            f"{root} exists and is not a reconciler workspace; it is left as it is (Maestro "
            f"would delete it). {advice} or an empty directory."
        )
    return False


def resolve_locations(study: Study, root: Path, cwd: Path) -> dict[str, str]:
    """Values of the location tokens, as `run` places them: OUTPUT_PATH (the workspace), SPECROOT,
    each path dependency (which must exist) and each git dependency's `<path>/<name>`, tokens
    substituted, a relative path taken from the current directory as Maestro does. Checks path
    dependencies only: nothing is cloned here (`create_workspace` checks the git ones out)."""
    locations = {
        "OUTPUT_PATH": str(root),
        "SPECROOT": str((cwd / study.path).resolve().parent),
    }
    deps = study.spec.env.dependencies
    if not (deps.paths or deps.git):
        return locations
    from reconciler.deps import DependencyError, check_paths, dependency_dir  # no git needed

    specroot = Path(locations["SPECROOT"])
    try:
        found = check_paths(study, specroot, locations=locations, base=cwd)
    except DependencyError as e:
        raise SetupError(str(e)) from None
    locations.update({k: str(v) for k, v in found.items()})
    for g in deps.git:
        locations[g.name] = str(dependency_dir(study, g, locations, base=cwd))
    return locations


def acquire_dependencies(
    study: Study,
    shas: Mapping[str, str],
    locations: Mapping[str, str],
    cwd: Path,
    cache: Path | None = None,
) -> None:
    """Check each git dependency out at its pinned SHA in `<path>/<name>` (as resolve_locations
    placed it), from `cache` (default: the user's). A checkout made earlier moves to the pin."""
    if not study.spec.env.dependencies.git:
        return
    from reconciler.deps import DependencyError, acquire_git_dependencies, default_cache_dir

    unpinned = [g.name for g in study.spec.env.dependencies.git if g.name not in shas]
    if unpinned:
        raise SetupError(f"{study.path}: git dependency {', '.join(unpinned)} was not resolved "
                         "to a commit")  # fmt: skip
    try:
        acquire_git_dependencies(study, shas, cache or default_cache_dir(), locations, base=cwd)
    except DependencyError as e:
        raise SetupError(str(e)) from None


@dataclass(frozen=True, slots=True)
class Placed:
    instance: Instance
    workspace: str
    script: str
    restart: str | None


def render_scripts(
    study: Study,
    locations: Mapping[str, str],
    adapter: Adapter,
    only: Collection[str] | None = None,
) -> list[Placed]:
    """Every instance's script text (or those named in `only`), or SetupError naming the first
    bad instance."""
    shell = study.batch.shell
    placed: list[Placed] = []
    for inst in study.instances:
        if only is not None and inst.name not in only:
            continue
        try:
            walltime_seconds(inst.resources.walltime)
        except ValueError as e:
            raise SetupError(f"{study.path}: step '{inst.step}': {e}.") from None

        def text(cmd: str, inst: Instance = inst) -> str:
            body = inst.render(cmd, dict(locations))
            runs_on = adapter.for_step(inst.step)
            try:
                body = runs_on.render_launcher(body, inst.resources)
            except LauncherError as e:
                raise SetupError(f"{study.path}: step '{inst.step}': {e}.") from None
            return runs_on.render_script(
                body, inst.resources, name=inst.name, shell=shell, description=inst.description
            )

        restart = text(inst.restart) if inst.restart else None
        placed.append(Placed(inst, inst.workspace, text(inst.cmd), restart))
    return placed


def instance_row(p: Placed, order: int) -> InstanceRow:
    """The record's row of a newly placed instance (waiting to run)."""
    return InstanceRow(
        name=p.instance.name,
        step=p.instance.step,
        workspace=p.workspace,
        depends=p.instance.depends,
        fingerprint=p.instance.fingerprint,
        ord=order,
        walltime=p.instance.resources.walltime,
        has_restart=p.restart is not None,
        params=dict(p.instance.params),
    )


def create_workspace(
    study: Study,
    root: Path,
    settings: RunSettings,
    *,
    cwd: Path,
    spec_text: str | None = None,
    locations: Mapping[str, str] | None = None,
    dependency_shas: Mapping[str, str] | None = None,
    cache: Path | None = None,
) -> Workspace:
    """Validate everything, then write the workspace and its record. Returns the workspace.

    GitOps passes the spec text (from a git blob) and the locations (dependencies it has
    checked out itself); `run` reads the spec from the disk, and its git dependencies, pinned to
    `dependency_shas` (`deps.resolve_git_dependencies` into `cache`), are checked out here, into
    the workspace or wherever their `path` says, before anything else is written (a failed
    checkout leaves no workspace behind).
    """
    if study.batch.type not in ADAPTERS:
        raise SetupError(
            f"{study.path}: batch type '{study.batch.type}' cannot run yet (available: "
            f"{', '.join(ADAPTERS)}). Nothing was created."
        )
    lacking = missing(study.batch)
    if lacking:
        raise SetupError(f"{study.path}: {lacking}. Nothing was created.")
    acquire = locations is None  # `run`: its git dependencies are checked out here
    locations = dict(locations) if locations is not None else resolve_locations(study, root, cwd)
    shas = dict(dependency_shas or {})
    adapter = get_adapter(
        study.batch.type, root, slots=settings.slots or None, batch=study.batch, study=study.name
    )
    # --hashws directories come from the expansion itself (load_study(hashws=True)).
    placed = render_scripts(study, locations, adapter)
    if spec_text is None:  # the text validated, not a second read that may differ
        spec_text = study.text if study.text is not None else Path(cwd / study.path).read_text()

    created_root = not root.exists()
    scripts_dir = Path(tempfile.mkdtemp(prefix="reconciler-scripts-")) if settings.usetmp else None
    ws = Workspace(root, scripts_dir, study.batch.type)
    try:
        if acquire:  # inside the try: a failed checkout leaves no workspace behind
            acquire_dependencies(study, shas, locations, cwd, cache)
        _write_files(study, ws, placed, spec_text, settings, dependencies(study, shas, locations))
        adapter.prepare(root)
        store = Store.create(root)
        store.init_study(
            name=study.name,
            spec_path=str((cwd / study.path).resolve()),
            spec_text=spec_text,
            adapter=adapter.name,
            locations=locations,
            shell=study.batch.shell,
            scripts_dir=None if scripts_dir is None else str(scripts_dir),
            pgen=settings.pgen,
            dry=settings.dry,
            throttle=settings.throttle,
            rlimit=settings.rlimit,
            sleep=settings.sleep,
            attempts=max(settings.attempts, study.reconcile.retries + 1),
            backoff=study.reconcile.backoff,
            slots=settings.slots,
            dependency_shas=shas,
        )
        store.add_instances(instance_row(p, i) for i, p in enumerate(placed))
        wsmod.write_status_csv(ws, store.instances())
        store.close()
    except BaseException as e:
        if created_root:  # never leave half a workspace behind
            shutil.rmtree(root, ignore_errors=True)
        if isinstance(e, OSError | sqlite3.Error):  # read-only, full disk, no permission
            why = getattr(e, "strerror", None) or str(e)
            raise SetupError(
                f"cannot write the workspace {root}: {why}. Nothing was left behind; choose "
                "another place with -o DIR (or OUTPUT_PATH), or free space, and run again."
            ) from None
        raise
    return ws


def dependencies(
    study: Study, shas: Mapping[str, str], locations: Mapping[str, str]
) -> dict[str, Any]:
    """What `meta/metadata.yaml` records of the git dependencies (URL, ref, pinned SHA, path)."""
    if not study.spec.env.dependencies.git:
        return {}
    from reconciler.deps import describe

    return describe(study, shas, locations)


def _write_files(
    study: Study,
    ws: Workspace,
    placed: list[Placed],
    spec_text: str,
    settings: RunSettings,
    git_dependencies: Mapping[str, Any],
) -> None:
    write_study_files(study, ws, placed, spec_text, settings, git_dependencies)
    write_instance_scripts(ws, placed)


def write_study_files(
    study: Study,
    ws: Workspace,
    placed: list[Placed],
    spec_text: str,
    settings: RunSettings,
    git_dependencies: Mapping[str, Any] | None = None,
) -> None:
    """The spec copy, batch.info and meta/ (rewritten whole by each GitOps apply). Every file
    is written without following a symlink a step may have left in its place (wsfile.py)."""
    root = ws.root
    root.mkdir(parents=True, exist_ok=True)
    wsfile.write(root, root / Path(study.path).name, spec_text)  # verbatim copy
    batch = study.batch.model_dump(exclude_none=True, by_alias=True)
    if study.batch.pool is not None:  # as written: its defaults depend on what was given
        batch["pool"] = study.batch.pool.model_dump(exclude_unset=True, mode="json")
    wsmod.write_yaml(root / "batch.info", batch, root=root)
    wsfile.mkdirs(root, "logs")
    wsmod.write_yaml(
        ws.meta / "parameters.yaml",
        {p.instance.name: p.instance.params for p in placed},
        root=root,
    )
    steps: dict[str, list[str]] = {}
    used: dict[str, set[str]] = {}
    for p in placed:
        steps.setdefault(p.instance.step, []).append(p.instance.name)
        used.setdefault(p.instance.step, set()).update(p.instance.params)
    wsmod.write_yaml(
        ws.meta / "metadata.yaml",
        {
            "study": study.name,
            "spec": study.path,
            "created": datetime.now().isoformat(timespec="seconds"),
            "dependencies": {p.instance.name: list(p.instance.depends) for p in placed},
            "used_parameters": {s: sorted(v) for s, v in used.items()},
            "step_combinations": steps,
            "workspaces": {p.instance.name: p.workspace for p in placed},
            "hashws": settings.hashws,
            "pgen": settings.pgen,
            # each git dependency's pinned commit (`run` and GitOps alike)
            **({"git_dependencies": dict(git_dependencies)} if git_dependencies else {}),
        },
        root=root,
    )
    wsmod.write_yaml(ws.meta / "environment.yaml", wsmod.environment_snapshot(), root=root)
    if settings.pgen is not None:  # Maestro keeps a copy of the generator with the study
        pgen = Path(settings.pgen["path"])
        wsfile.write(root, root / pgen.name, pgen.read_bytes())


def write_instance_scripts(ws: Workspace, placed: list[Placed]) -> None:
    """Each instance's directory and script(s). Never call it for a running instance: bash
    reads a script as it runs, so rewriting it under a running job corrupts that job.

    The directories are reached and the scripts opened without following a symlink an earlier
    step may have planted (wsfile.py): a link where a directory should be is refused."""
    root = ws.root
    base = ws.scripts if ws.scripts is not None else root  # --usetmp: scripts live elsewhere
    with wsfile.Dirs(root) as dirs, wsfile.Dirs(base) as script_dirs:
        for p in placed:
            name = p.instance.name
            if ws.scripts is not None:
                with dirs.open(p.workspace):  # the instance's directory, made as a real one
                    pass
            with script_dirs.open(p.workspace) as dfd:  # ws.script: the one place names them
                _write_script(dfd, ws.script(name, p.workspace).name, p.script)
                if p.restart is not None:
                    _write_script(dfd, ws.script(name, p.workspace, restart=True).name, p.restart)


def _write_script(dfd: int, name: str, text: str) -> None:
    """Write an executable script in the directory `dfd`: one open (never through a link),
    one write, one fchmod (exactly 0755, whatever the umask). A study writes thousands."""
    fd = wsfile.open_in(dfd, name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
    try:
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data) :]
        os.fchmod(fd, 0o755)
    finally:
        os.close(fd)


def describe_root(root: Path) -> str:
    return os.path.relpath(root) if str(root).startswith(os.getcwd()) else str(root)
