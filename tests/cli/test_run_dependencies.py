"""`run` with env dependencies: git ones cloned (as Maestro does) and pinned (as GitOps does),
path ones checked before anything is cloned; refused URLs stop `validate` and `run` alike."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler.cli.app import app
from reconciler.cli.maestro import normalize_maestro_argv
from reconciler.record.store import Store

pytestmark = pytest.mark.timeout(90)

SPEC = """\
description:
  name: uses-lib
  description: a study with a git dependency
env:
  variables:
    OUTPUT_PATH: ./studies
  dependencies:
{deps}
study:
  - name: show
    description: d
    run:
      cmd: cat $(LIB)/VERSION > version.txt
"""


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, normalize_maestro_argv(list(args)))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def remote(tmp_path: Path) -> tuple[git.Repo, str]:
    """A repository on disk (file:// URL), with a tag v1 and a branch main one commit ahead."""
    work = git.Repo.init(tmp_path / "lib", initial_branch="main")
    (tmp_path / "lib" / "VERSION").write_text("1\n")
    work.index.add(["VERSION"])
    work.index.commit("v1")
    work.create_tag("v1")
    return work, f"file://{tmp_path / 'lib'}"


def commit(work: git.Repo, version: str) -> str:
    Path(work.working_tree_dir or "", "VERSION").write_text(version + "\n")
    work.index.add(["VERSION"])
    return work.index.commit(f"v{version}").hexsha


def git_dep(url: str, *, path: str = "$(OUTPUT_PATH)", ref: str = "") -> str:
    return f"    git:\n      - name: LIB\n        path: {path}\n        url: '{url}'\n" + (
        f"        {ref}\n" if ref else ""
    )


def write(here: Path, deps: str, name: str = "study.yaml") -> Path:
    spec = here / name
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(SPEC.format(deps=deps))
    return spec


def test_run_clones_into_path_name_and_pins_the_tag(here: Path, remote) -> None:  # type: ignore[no-untyped-def]
    work, url = remote
    tagged = work.head.commit.hexsha
    commit(work, "2")  # the branch moves on; the tag stays
    spec = write(here, git_dep(url, ref="tag: v1"))
    code, out, err = cli("run", str(spec), "-fg", "-y", "-o", "ws")
    assert code == 0, out + err
    root = here / "ws"
    # $(OUTPUT_PATH) in `path` is the workspace: Maestro's `<path>/<name>`.
    assert git.Repo(root / "LIB").head.commit.hexsha == tagged
    assert (root / "show" / "version.txt").read_text() == "1\n"
    assert f"cat {root}/LIB/VERSION" in (root / "show" / "show.sh").read_text()
    meta = YAML(typ="safe").load((root / "meta" / "metadata.yaml").read_text())
    assert meta["git_dependencies"] == {
        "LIB": {"url": url, "ref": "v1", "sha": tagged, "path": str(root / "LIB")}
    }
    store = Store.open(root)
    try:
        assert store.study()["dependency_shas"] == {"LIB": tagged}
    finally:
        store.close()
    # Fetched through the user's cache (as GitOps fetches through its own).
    assert any((here / "cache" / "reconciler" / "git").iterdir())


def test_a_relative_path_is_taken_from_the_current_directory(here: Path, remote) -> None:  # type: ignore[no-untyped-def]
    _, url = remote
    spec = write(here, git_dep(url, path="deps"), name="specs/study.yaml")
    code, out, err = cli("run", str(spec), "-fg", "-y", "-o", "ws")
    assert code == 0, out + err
    assert (here / "deps" / "LIB" / "VERSION").read_text() == "1\n"  # Maestro: from the CWD
    assert (here / "ws" / "show" / "version.txt").read_text() == "1\n"


def test_path_dependencies_are_checked_before_any_clone(here: Path, remote) -> None:  # type: ignore[no-untyped-def]
    _, url = remote
    deps = "    paths:\n      - name: DATA\n        path: $(SPECROOT)/missing\n" + git_dep(url)
    spec = write(here, deps)
    code, _, err = cli("run", str(spec), "-fg", "-y", "-o", "ws")
    assert code == 2
    assert f"{spec}:10:15: path dependency 'DATA' points to {here}/missing" in " ".join(err.split())
    assert not (here / "ws").exists() and not (here / "cache").exists()  # nothing fetched


def test_an_unreachable_repository_leaves_nothing_behind(here: Path) -> None:
    spec = write(here, git_dep(f"file://{here / 'nope'}"))
    code, _, err = cli("run", str(spec), "-fg", "-y", "-o", "ws")
    assert code == 2 and "cannot clone" in err and "Traceback" not in err
    assert not (here / "ws").exists()


def test_a_directory_in_the_way_of_the_clone_is_left_alone(here: Path, remote) -> None:  # type: ignore[no-untyped-def]
    _, url = remote
    (here / "deps" / "LIB").mkdir(parents=True)
    (here / "deps" / "LIB" / "mine.txt").write_text("keep me\n")
    spec = write(here, git_dep(url, path="deps"))
    code, _, err = cli("run", str(spec), "-fg", "-y", "-o", "ws")
    assert code == 2 and "not a checkout made by reconciler" in " ".join(err.split())
    assert (here / "deps" / "LIB" / "mine.txt").read_text() == "keep me\n"
    assert not (here / "ws").exists()  # no half-made workspace


@pytest.mark.parametrize("url", ["ext::sh -c touch% /tmp/x", "fd::17", "--upload-pack=x"])
def test_validate_and_run_refuse_a_helper_or_option_url(here: Path, url: str) -> None:
    spec = write(here, git_dep(url))
    for command in (("validate", str(spec)), ("run", str(spec), "-fg", "-y", "-o", "ws")):
        code, _, err = cli(*command)
        assert code == 2
        assert f"{spec}:11:14: git dependency 'LIB' has URL" in " ".join(err.split())
        assert "refused" in err
    assert not (here / "ws").exists() and not (here / "cache").exists()


def test_a_moved_branch_reruns_what_uses_it_when_the_spec_changes(here: Path, remote) -> None:  # type: ignore[no-untyped-def]
    work, url = remote
    spec = write(here, git_dep(url, ref="branch: main"))
    assert cli("run", str(spec), "-fg", "-y", "-o", "ws")[0] == 0
    moved = commit(work, "2")
    # An unchanged spec resumes as it was (no fetch: the pin stays).
    code, out, _ = cli("run", str(spec), "-fg", "-y", "-o", "ws")
    assert code == 0 and "Resuming" in out
    assert (here / "ws" / "show" / "version.txt").read_text() == "1\n"
    # An edited spec is planned against the record, dependency pins included.
    spec.write_text(spec.read_text().replace("a git dependency", "a git dependency, edited"))
    code, out, err = cli("run", str(spec), "-fg", "-y", "-o", "ws")
    assert code == 0, out + err
    assert "moved to" in out and moved[:7] in out  # the reason (wrapped in an 80-column table)
    assert (here / "ws" / "show" / "version.txt").read_text() == "2\n"
    assert git.Repo(here / "ws" / "LIB").head.commit.hexsha == moved
    store = Store.open(here / "ws")
    try:
        assert store.study()["dependency_shas"] == {"LIB": moved}
        assert json.loads(json.dumps(store.study()["dependency_shas"])) == {"LIB": moved}
    finally:
        store.close()
