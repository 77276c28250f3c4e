"""Issue #14, planted symlinks: a step that replaces a file (or a directory) reconciler writes in
its workspace with a symlink to something outside never gets that outside thing written.

A study's steps plant links, pointing at canary files outside the workspace, at every place
reconciler writes later: the spec copy, batch.info, meta/parameters.yaml, the engine's log,
status.csv, the engine lock, a step's own exit record, and the script of a step a later commit
adds. The next `apply` (and the engine it starts) rewrites all of them: each canary must still
hold what it held, and the workspace must hold regular files. A link where a *directory* should
be (meta/, a step's directory, logs/) is refused with a clear message, and nothing is written
into the directory it points at. `status.csv` already followed this rule; the rest did not.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from shared_repo import commit, git_env, make_repo, reconciler

from reconciler.engine.api import engine_holder
from reconciler.record.store import Store

pytestmark = pytest.mark.timeout(300)  # a hang guard

CANARY = "precious\n"
FILES = {  # canary name: where a step plants the link, relative to the workspace
    "spec": "planted.yaml",
    "batch": "batch.info",
    "params": "meta/parameters.yaml",
    "log": "logs/planted.log",
    "status": "status.csv",
    "lock": ".reconciler/engine.lock",
    "script": "added/added.sh",
}


def _spec(outside: Path, *, added: bool = False, plant: str | None = None) -> str:
    links = "; ".join(
        f"mkdir -p $(OUTPUT_PATH)/{Path(rel).parent}; ln -sfn {outside}/{name} $(OUTPUT_PATH)/{rel}"
        for name, rel in FILES.items()
    )
    steps = [
        "  - name: plant\n    description: leaves links where reconciler writes\n"
        f"    run:\n      cmd: '{plant or links}'\n",
        # its own exit record: the shepherd writes it when the step ends
        "  - name: selfexit\n    description: links its exit record\n"
        f"    run:\n      cmd: 'ln -sfn {outside}/exit selfexit.exit'\n",
    ]
    if added:
        steps.append("  - name: added\n    description: added later\n    run:\n"
                     "      cmd: 'echo added'\n      depends: [plant]\n")  # fmt: skip
    return "description: {name: planted, description: d}\nstudy:\n" + "".join(steps)


def _canaries(outside: Path) -> dict[str, str]:
    outside.mkdir(exist_ok=True)
    for name in (*FILES, "exit"):
        (outside / name).write_text(CANARY)
    return {name: CANARY for name in (*FILES, "exit")}


def _settled(ws: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout  # a hang guard, not a measurement
    while True:
        store = Store.open(ws)
        states = {r.state for r in store.instances()}
        store.close()
        if engine_holder(ws) is None and states <= {"FINISHED", "FAILED", "CANCELLED"}:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the study did not end: {states}")
        time.sleep(0.2)


def test_files_planted_as_links_are_replaced_never_written_through(tmp_path: Path, figures):
    for name in (*FILES, "exit"):
        figures.shared("12 symlinks", f"file: {name}")
    env = git_env(tmp_path / "home")
    outside = tmp_path / "outside"
    expected = _canaries(outside)
    repo = make_repo(tmp_path / "repo")
    commit(repo, {"specs/planted.yaml": _spec(outside)})
    common = ("--repo", tmp_path / "repo")
    first = reconciler("apply", *common, "--wait", cwd=tmp_path, env=env)
    assert first.code == 0, first.both
    ws = tmp_path / "repo" / ".reconciler" / "studies" / "planted"
    assert (ws / "batch.info").is_symlink()  # planted (status.csv was rewritten since: replaced)
    commit(repo, {"specs/planted.yaml": _spec(outside, added=True)})
    second = reconciler("apply", *common, cwd=tmp_path, env=env)  # engine in the background
    assert second.code == 0, second.both
    _settled(ws)
    assert {n: (outside / n).read_text() for n in expected} == expected  # not one written
    for name, rel in FILES.items():
        if name != "lock":  # (the lock is a file only while an engine holds it)
            assert not (ws / rel).is_symlink() and (ws / rel).is_file(), rel
        figures.shared_ok("12 symlinks", f"file: {name}")
    assert next((ws / "added").glob("added*.out")).read_text() == "added\n"
    figures.shared_ok("12 symlinks", "file: exit")


@pytest.mark.parametrize("where", ["meta", "added"])
def test_a_directory_replaced_by_a_link_is_refused(tmp_path: Path, figures, where: str) -> None:
    figures.shared("12 symlinks", f"directory: {where}/")
    env = git_env(tmp_path / "home")
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    _canaries(tmp_path / "c")  # (selfexit's link needs a target; that case is tested above)
    plant = f"rm -rf $(OUTPUT_PATH)/{where}; ln -sfn {outside} $(OUTPUT_PATH)/{where}"
    repo = make_repo(tmp_path / "repo")
    commit(repo, {"specs/planted.yaml": _spec(tmp_path / "c", plant=plant)})
    common = ("--repo", tmp_path / "repo")
    assert reconciler("apply", *common, "--wait", cwd=tmp_path, env=env).code == 0
    commit(repo, {"specs/planted.yaml": _spec(tmp_path / "c", added=True, plant=plant)})
    r = reconciler("apply", *common, "--wait", cwd=tmp_path, env=env)
    assert r.code == 2 and "Traceback" not in r.both, r.both
    assert f"/{where} is a symlink (to {outside})" in r.out and "not applied" in r.out
    assert list(outside.iterdir()) == []  # nothing was written into it
    figures.shared_ok("12 symlinks", f"directory: {where}/")


def test_run_mode_refuses_a_logs_link_on_resume(tmp_path: Path, figures) -> None:
    """`resume` of a study with work left opens the engine's log: a `logs` directory replaced
    by a link (here as a step of an earlier run would leave it) is refused, not written into."""
    figures.shared("12 symlinks", "directory: logs/ (resume)")
    env = git_env(tmp_path / "home")
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    _canaries(tmp_path / "c")
    spec = tmp_path / "planted.yaml"
    spec.write_text(_spec(tmp_path / "c"))
    ws = tmp_path / "ws"
    assert reconciler("run", "-y", "--dry", "-o", ws, spec, cwd=tmp_path, env=env).code == 0
    shutil.rmtree(ws / "logs")
    (ws / "logs").symlink_to(outside)
    r = reconciler("resume", ws, cwd=tmp_path, env=env)
    assert r.code == 2 and "Traceback" not in r.both, r.both
    assert "logs is a symlink" in r.err
    assert list(outside.iterdir()) == []
    figures.shared_ok("12 symlinks", "directory: logs/ (resume)")
