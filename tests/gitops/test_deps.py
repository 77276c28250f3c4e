"""Env dependencies on real local repositories (file:// URLs only, no network)."""

from __future__ import annotations

import os
from pathlib import Path

import git
import pytest
from git_helpers import commit, spec

from reconciler import deps
from reconciler.deps import (
    DependencyError,
    acquire_git_dependencies,
    cache_path,
    check_paths,
    check_url,
    checkout,
    checkouts,
    resolve_git_dependencies,
)
from reconciler.spec import SpecError, Study, load_study_text
from reconciler.spec.model import Spec


def dep_study(url: str, *, ref: str = "", name: str = "LIB", path: str = "$(OUTPUT_PATH)") -> Study:
    env = (
        f"  dependencies:\n    git:\n      - name: {name}\n        path: {path}\n"
        f"        url: '{url}'\n" + (f"        {ref}\n" if ref else "")
    )
    return load_study_text(spec("uses-lib", env=env, cmd=f"ls $({name})"), "specs/s.yaml")


def push(work: git.Repo, files: dict[str, str], ref: str = "main") -> str:
    sha = commit(work, files)
    work.git.push("origin", f"HEAD:refs/heads/{ref}")
    return sha


# ---- pinning ---------------------------------------------------------------------------------


def test_default_branch_is_pinned_and_a_moved_branch_gives_a_new_sha(
    tmp_path: Path, dep_remote: tuple[git.Repo, str]
) -> None:
    work, url = dep_remote
    study = dep_study(url)
    first = resolve_git_dependencies(study, tmp_path / "cache")
    assert first == {"LIB": work.head.commit.hexsha}
    assert len(first["LIB"]) == 40
    cache = cache_path(tmp_path / "cache", url)
    assert (cache / "HEAD").is_file()

    moved = push(work, {"README": "v2\n"})
    second = resolve_git_dependencies(study, tmp_path / "cache")
    assert second == {"LIB": moved} != first
    # The pin reaches every instance's fingerprint, so the plan sees the move.
    fp1 = load_study_text(spec_text(study), "s", dependency_shas=first).instances[0].fingerprint
    fp2 = load_study_text(spec_text(study), "s", dependency_shas=second).instances[0].fingerprint
    assert fp1 != fp2


def spec_text(study: Study) -> str:
    url = study.spec.env.dependencies.git[0].url
    return spec(
        "uses-lib",
        env=f"  dependencies:\n    git:\n      - name: LIB\n        path: x\n        url: '{url}'",
        cmd="ls $(LIB)",
    )


def test_named_branch_tag_and_hash_pins(tmp_path: Path, dep_remote: tuple[git.Repo, str]) -> None:
    work, url = dep_remote
    v1 = work.head.commit.hexsha
    work.create_tag("v1.0", message="annotated")  # an annotated tag peels to its commit
    work.git.push("origin", "v1.0")
    dev = push(work, {"dev.txt": "dev\n"}, ref="dev")
    cache_dir = tmp_path / "cache"

    assert resolve_git_dependencies(dep_study(url, ref="branch: dev"), cache_dir) == {"LIB": dev}
    assert resolve_git_dependencies(dep_study(url, ref="tag: v1.0"), cache_dir) == {"LIB": v1}
    assert resolve_git_dependencies(dep_study(url, ref=f"hash: '{v1[:10]}'"), cache_dir) == {
        "LIB": v1
    }
    # A hash is used as is: once cached, the remote is not even asked.
    gone = tmp_path / "dep.git"
    gone.rename(tmp_path / "dep-moved.git")
    assert resolve_git_dependencies(dep_study(url, ref=f"hash: '{v1}'"), cache_dir) == {"LIB": v1}


def test_renamed_default_branch_is_followed(
    tmp_path: Path, dep_remote: tuple[git.Repo, str]
) -> None:
    work, url = dep_remote
    resolve_git_dependencies(dep_study(url), tmp_path / "cache")
    trunk = push(work, {"README": "trunk\n"}, ref="trunk")
    bare = git.Repo(tmp_path / "dep.git")
    bare.git.symbolic_ref("HEAD", "refs/heads/trunk")
    bare.git.update_ref("-d", "refs/heads/main")
    assert resolve_git_dependencies(dep_study(url), tmp_path / "cache") == {"LIB": trunk}


def test_unknown_branch_tag_and_hash(tmp_path: Path, dep_remote: tuple[git.Repo, str]) -> None:
    _, url = dep_remote
    for ref, words in (
        ("branch: nope", "no branch named 'nope'"),
        ("tag: v9", "no tag named 'v9'"),
        ("hash: " + "ab" * 20, "not on any branch or tag"),
        ("hash: xyz123", "not a hexadecimal"),
    ):
        with pytest.raises(DependencyError, match=words):
            resolve_git_dependencies(dep_study(url, ref=ref), tmp_path / "cache")


def test_one_cache_per_url(tmp_path: Path, dep_remote: tuple[git.Repo, str]) -> None:
    _, url = dep_remote
    cache_dir = tmp_path / "cache"
    a = cache_path(cache_dir, url)
    assert a == cache_path(cache_dir, url)
    assert a != cache_path(cache_dir, url + "/")
    resolve_git_dependencies(dep_study(url), cache_dir)
    resolve_git_dependencies(dep_study(url, ref="branch: main"), cache_dir)
    assert [p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock")] == [a.name]


def test_clone_failure_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    url = (tmp_path / "missing.git").as_uri()
    with pytest.raises(DependencyError) as err:
        resolve_git_dependencies(dep_study(url), tmp_path / "cache")
    msg = str(err.value)
    assert "git dependency 'LIB'" in msg and "cannot clone" in msg and url in msg
    assert "nothing of the study was submitted" in msg
    assert "\n" not in msg  # one paragraph
    leftovers = [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


# ---- refused URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh -c 'touch /tmp/pwned'",
        "--upload-pack=touch /tmp/x",
        "-oProxyCommand=touch /tmp/x",
        "fd::17",
        "fd::17,18/repo",
        "transport::https://example.com/x.git",
        "http://example.com/repo.git",
        "ftp://example.com/repo.git",
        "ssh://-oProxyCommand=touch%20/tmp/x/repo",
        "ssh://-user@host/repo",
        "relative/path",
        "",
        " https://example.com/x.git",
        "https://example.com/x.git --upload-pack=x",
        "https://example.com/x.git\n--upload-pack=x",
    ],
)
def test_refused_urls_never_reach_git(tmp_path: Path, url: str) -> None:
    marker = Path("/tmp/pwned")
    existed = marker.exists()
    if url and "\n" not in url:
        # The spec is refused where the URL is written (what `validate` and `run` report) ...
        with pytest.raises(SpecError) as info:
            dep_study(url.replace("'", "''"))
        (error,) = [d for d in info.value.diagnostics if d.severity == "error"]
        assert "refused" in error.message and error.line == 9
        # ... and a spec model that skipped those checks is refused again before any fetch.
        model = Spec.model_validate({
            "description": {"name": "s", "description": "d"},
            "env": {"dependencies": {"git": [{"name": "LIB", "path": "x", "url": url}]}},
            "study": [{"name": "a", "description": "d", "run": {"cmd": "true"}}],
        })  # fmt: skip
        with pytest.raises(DependencyError, match="refused"):
            resolve_git_dependencies(model, tmp_path / "cache")
    with pytest.raises(DependencyError, match="refused"):
        check_url(url, "LIB")
    assert not (tmp_path / "cache").exists()  # refused before any clone was tried
    assert marker.exists() == existed


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/LLNL/LULESH.git",
        "ssh://git@example.com:2222/org/repo.git",
        "git://example.com/repo.git",
        "file:///srv/git/repo.git",
        "git@github.com:LLNL/maestrowf.git",
        "/srv/git/repo.git",
    ],
)
def test_allowed_urls(url: str) -> None:
    check_url(url, "LIB")


def test_git_runs_with_the_protocol_allow_list(tmp_path: Path, monkeypatch) -> None:
    assert deps.git_cmd()._environment["GIT_ALLOW_PROTOCOL"] == "https:ssh:git:file"
    assert deps.GIT_ENV["GIT_ALLOW_PROTOCOL"] == "https:ssh:git:file"
    # Even if a URL got past the allow-list, git itself would refuse the transport.
    with pytest.raises(git.GitCommandError) as err:
        deps.git_cmd().clone("--bare", "--", "ext::sh -c true", str(tmp_path / "x"))
    assert "transport 'ext' not allowed" in str(err.value.stderr)


def test_password_in_url_is_not_shown(tmp_path: Path) -> None:
    url = "https://user:s3cr3t-t0ken@127.0.0.1:1/repo.git"
    with pytest.raises(DependencyError) as err:
        resolve_git_dependencies(dep_study(url), tmp_path / "cache")
    assert "s3cr3t" not in str(err.value)
    assert "user:***@127.0.0.1:1" in str(err.value)


# ---- checkouts -------------------------------------------------------------------------------


def test_checkout_at_exact_sha_is_idempotent_and_follows_moves(
    tmp_path: Path, dep_remote: tuple[git.Repo, str]
) -> None:
    work, url = dep_remote
    cache_dir = tmp_path / "cache"
    v1 = resolve_git_dependencies(dep_study(url), cache_dir)["LIB"]
    cache = cache_path(cache_dir, url)
    dest = tmp_path / "ws" / "LIB"

    assert checkout(cache, v1, dest, url=url) == dest
    co = git.Repo(dest)
    assert co.head.commit.hexsha == v1 and co.head.is_detached
    assert (dest / "README").read_text() == "v1\n"
    assert co.remote("origin").url == url
    checkout(cache, v1, dest, url=url)  # again: nothing to do
    (dest / "build").mkdir()  # untracked build output survives a move
    (dest / "build" / "lib.o").write_text("obj")

    v2 = push(work, {"README": "v2\n"})
    assert resolve_git_dependencies(dep_study(url), cache_dir)["LIB"] == v2
    checkout(cache, v2, dest)
    assert git.Repo(dest).head.commit.hexsha == v2
    assert (dest / "README").read_text() == "v2\n"
    assert (dest / "build" / "lib.o").exists()


def test_checkout_refuses_foreign_and_dirty_dirs(
    tmp_path: Path, dep_remote: tuple[git.Repo, str]
) -> None:
    work, url = dep_remote
    cache_dir = tmp_path / "cache"
    sha = resolve_git_dependencies(dep_study(url), cache_dir)["LIB"]
    cache = cache_path(cache_dir, url)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("mine")
    with pytest.raises(DependencyError, match="not a checkout made by reconciler"):
        checkout(cache, sha, foreign)
    assert (foreign / "precious.txt").read_text() == "mine"
    # Someone else's clone of the same repo is not ours either.
    other = git.Repo.clone_from(str(cache), tmp_path / "other")
    with pytest.raises(DependencyError, match="not a checkout made by reconciler"):
        checkout(cache, sha, Path(other.working_tree_dir or ""))

    empty = tmp_path / "empty"
    empty.mkdir()
    checkout(cache, sha, empty)  # an empty dir is filled in place, not replaced
    assert (empty / "README").exists()

    (empty / "README").write_text("local edit\n")
    moved = push(work, {"README": "v2\n"})
    resolve_git_dependencies(dep_study(url), cache_dir)
    with pytest.raises(DependencyError, match="local changes"):
        checkout(cache, moved, empty)
    assert (empty / "README").read_text() == "local edit\n"


def test_failed_checkout_leaves_a_reusable_checkout(tmp_path: Path, dep_remote) -> None:
    _, url = dep_remote
    cache_dir = tmp_path / "cache"
    sha = resolve_git_dependencies(dep_study(url), cache_dir)["LIB"]
    cache = cache_path(cache_dir, url)
    dest = tmp_path / "ws" / "LIB"
    with pytest.raises(DependencyError, match="cannot check out"):
        checkout(cache, "f" * 40, dest)
    # The clone is ours and was never checked out: the next apply completes it.
    assert checkouts._is_managed(dest) is not None
    checkout(cache, sha, dest)
    assert git.Repo(dest).head.commit.hexsha == sha and (dest / "README").exists()


def test_acquire_places_checkouts_as_maestro_does(
    tmp_path: Path, dep_remote: tuple[git.Repo, str]
) -> None:
    work, url = dep_remote
    study = dep_study(url)
    cache_dir = tmp_path / "cache"
    shas = resolve_git_dependencies(study, cache_dir)
    out = tmp_path / "ws"
    got = acquire_git_dependencies(study, shas, cache_dir, {"OUTPUT_PATH": str(out)})
    assert got["LIB"].path == out / "LIB"  # <path>/<name>, path with $(OUTPUT_PATH) resolved
    assert got["LIB"].sha == work.head.commit.hexsha and got["LIB"].ref is None
    assert git.Repo(out / "LIB").head.commit.hexsha == shas["LIB"]


# ---- path dependencies -----------------------------------------------------------------------


def path_study(path: str, name: str = "DATA") -> tuple[Study, str]:
    env = (
        "  variables:\n    ROOT: /nonexistent-root\n"
        f"  dependencies:\n    paths:\n      - name: OK\n        path: $(SPECROOT)\n"
        f"      - name: {name}\n        path: {path}"
    )
    text = spec("uses-data", env=env, cmd=f"ls $({name}) $(OK)")
    return load_study_text(text, "specs/data.yaml"), text


def test_missing_path_dependency_names_it_and_its_line(tmp_path: Path) -> None:
    study, text = path_study("$(ROOT)/input")
    with pytest.raises(DependencyError) as err:
        check_paths(study, tmp_path, text=text)
    msg = str(err.value)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "$(ROOT)/input" in ln)
    assert f"specs/data.yaml:{line}:" in msg
    assert "path dependency 'DATA'" in msg and "/nonexistent-root/input" in msg
    assert "nothing was started" in msg
    assert "'OK'" not in msg


def test_missing_path_dependency_without_text_names_the_file(tmp_path: Path) -> None:
    study, _ = path_study("nothing-here")
    with pytest.raises(DependencyError, match=r"specs/data\.yaml: path dependency 'DATA'"):
        check_paths(study, tmp_path)


def test_existing_path_dependencies_resolve(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    study, text = path_study("inputs")  # relative: taken from the spec's directory
    found = check_paths(study, tmp_path, text=text)
    assert found == {"OK": tmp_path, "DATA": tmp_path / "inputs"}
    study, text = path_study("$(OUTPUT_PATH)/in")
    (tmp_path / "out" / "in").mkdir(parents=True)
    found = check_paths(
        study, tmp_path, text=text, locations={"OUTPUT_PATH": str(tmp_path / "out")}
    )
    assert found["DATA"] == tmp_path / "out" / "in"
    assert os.path.isdir(found["DATA"])
