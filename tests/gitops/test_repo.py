"""SpecSource: the desired state read from a real git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import git
import pytest
from git_helpers import commit, make_repo, spec

from reconciler.gitops.repo import RepoError, SpecSource, blob_id, ensure_excluded


def git_hash_object(path: Path) -> str:
    return subprocess.run(
        ["git", "hash-object", "--no-filters", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_reads_committed_specs_recursively_with_blob_ids(specs_repo: git.Repo) -> None:
    sha = commit(
        specs_repo,
        {
            "specs/a.yaml": spec("alpha"),
            "specs/team/b.yml": spec("beta"),
            "specs/notes.txt": "not a spec",
            "other/c.yaml": spec("gamma"),
        },
    )
    rev = SpecSource(specs_repo.working_tree_dir).read()
    assert rev.sha == sha
    assert [s.path for s in rev.specs] == ["specs/a.yaml", "specs/team/b.yml"]
    assert sorted(rev.studies) == ["alpha", "beta"]
    a = rev.studies["alpha"]
    assert a.ok and a.study is not None and a.study.path == "specs/a.yaml"
    assert a.blob == specs_repo.commit(sha).tree["specs/a.yaml"].hexsha


def test_committed_content_only_unless_worktree(specs_repo: git.Repo) -> None:
    commit(specs_repo, {"specs/a.yaml": spec("alpha", cmd="echo one")})
    root = Path(specs_repo.working_tree_dir or "")
    (root / "specs/a.yaml").write_text(spec("alpha", cmd="echo two"))  # dirty, not committed
    (root / "specs/new.yaml").write_text(spec("fresh"))  # untracked

    committed = SpecSource(root).read()
    assert sorted(committed.studies) == ["alpha"]
    assert committed.studies["alpha"].study.instances[0].cmd.strip() == "echo one"

    live = SpecSource(root, worktree=True).read()
    assert live.sha is None
    assert sorted(live.studies) == ["alpha", "fresh"]
    assert live.studies["alpha"].study.instances[0].cmd.strip() == "echo two"
    # The blob id of a file on disk is what `git hash-object` prints for it.
    assert live.studies["alpha"].blob == git_hash_object(root / "specs/a.yaml")


def test_worktree_skips_gitignored_specs(specs_repo: git.Repo) -> None:
    commit(specs_repo, {"specs/a.yaml": spec("alpha"), ".gitignore": "specs/scratch/\n"})
    root = Path(specs_repo.working_tree_dir or "")
    (root / "specs/scratch").mkdir()
    (root / "specs/scratch/tmp.yaml").write_text(spec("scratch"))
    assert sorted(SpecSource(root, worktree=True).read().studies) == ["alpha"]


def test_revision_defaults_to_head_and_accepts_older_commits(specs_repo: git.Repo) -> None:
    first = commit(specs_repo, {"specs/a.yaml": spec("alpha")})
    second = commit(specs_repo, {"specs/b.yaml": spec("beta")})
    src = SpecSource(specs_repo.working_tree_dir)
    assert src.resolve() == second
    assert src.branch == "main"
    assert src.resolve(first[:8]) == first
    assert sorted(src.read(first).studies) == ["alpha"]
    assert sorted(src.read("main").studies) == ["alpha", "beta"]


def test_finds_the_repo_from_a_subdirectory(specs_repo: git.Repo) -> None:
    commit(specs_repo, {"specs/a.yaml": spec("alpha")})
    sub = Path(specs_repo.working_tree_dir or "") / "specs"
    src = SpecSource(sub)
    assert src.root == Path(specs_repo.working_tree_dir or "")
    assert sorted(src.read().studies) == ["alpha"]


def test_custom_specs_dir_and_repo_root(specs_repo: git.Repo) -> None:
    commit(specs_repo, {"studies/x/a.yaml": spec("alpha"), "top.yaml": spec("top")})
    root = specs_repo.working_tree_dir
    assert sorted(SpecSource(root, specs_dir="studies").read().studies) == ["alpha"]
    assert sorted(SpecSource(root, specs_dir=".").read().studies) == ["alpha", "top"]
    absolute = Path(root or "") / "studies"
    assert sorted(SpecSource(root, specs_dir=absolute).read().studies) == ["alpha"]


def test_invalid_spec_is_reported_not_raised(specs_repo: git.Repo) -> None:
    bad = spec("broken").replace("cmd: echo hi", "cmd: echo $(NOPE)")
    commit(specs_repo, {"specs/good.yaml": spec("good"), "specs/bad.yaml": bad})
    rev = SpecSource(specs_repo.working_tree_dir).read()
    broken = rev.studies["broken"]  # the name is still known, so the study can show Degraded
    assert not broken.ok and broken.error is not None
    assert "specs/bad.yaml:" in str(broken.error)
    assert rev.studies["good"].ok


def test_unparseable_and_non_utf8_specs(specs_repo: git.Repo) -> None:
    root = Path(specs_repo.working_tree_dir or "")
    (root / "specs").mkdir()
    (root / "specs/latin1.yaml").write_bytes(b"description:\n  name: caf\xe9\n")
    specs_repo.index.add(["specs/latin1.yaml"])
    commit(specs_repo, {"specs/syntax.yaml": "description: [unclosed\n"})
    rev = SpecSource(root).read()
    assert rev.studies == {}
    assert {s.path for s in rev.unnamed} == {"specs/latin1.yaml", "specs/syntax.yaml"}
    latin = next(s for s in rev.unnamed if s.path == "specs/latin1.yaml")
    assert latin.text is None and "not UTF-8" in str(latin.error)
    with pytest.raises(Exception, match="UTF-8"):
        latin.load()


def test_duplicate_study_names_name_both_files(specs_repo: git.Repo) -> None:
    commit(specs_repo, {"specs/one.yaml": spec("same"), "specs/two.yaml": spec("same")})
    with pytest.raises(RepoError) as err:
        SpecSource(specs_repo.working_tree_dir).read()
    assert "specs/one.yaml" in str(err.value) and "specs/two.yaml" in str(err.value)
    assert "'same'" in str(err.value)


def test_symlinked_specs_are_skipped(specs_repo: git.Repo) -> None:
    root = Path(specs_repo.working_tree_dir or "")
    commit(specs_repo, {"specs/a.yaml": spec("alpha")})
    (root / "specs/link.yaml").symlink_to("a.yaml")
    specs_repo.index.add(["specs/link.yaml"])
    specs_repo.index.commit("link")
    assert [s.path for s in SpecSource(root).read().specs] == ["specs/a.yaml"]
    assert [s.path for s in SpecSource(root, worktree=True).read().specs] == ["specs/a.yaml"]


def test_load_with_dependency_shas_changes_fingerprints(specs_repo: git.Repo) -> None:
    deps = (
        "  dependencies:\n    git:\n      - name: LIB\n        path: $(OUTPUT_PATH)\n"
        "        url: file:///nowhere/lib.git\n        branch: main"
    )
    commit(specs_repo, {"specs/a.yaml": spec("alpha", env=deps, cmd="ls $(LIB)")})
    found = SpecSource(specs_repo.working_tree_dir).read().studies["alpha"]
    one = found.load({"LIB": "1" * 40}).instances[0].fingerprint
    two = found.load({"LIB": "2" * 40}).instances[0].fingerprint
    assert one != two


def test_errors_are_clear(tmp_path: Path, specs_repo: git.Repo) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(RepoError, match="not inside a git repository"):
        SpecSource(tmp_path / "plain")
    with pytest.raises(RepoError, match="no commits yet"):
        SpecSource(specs_repo.working_tree_dir).resolve()
    commit(specs_repo, {"specs/a.yaml": spec("alpha")})
    src = SpecSource(specs_repo.working_tree_dir)
    with pytest.raises(RepoError, match="not a commit"):
        src.resolve("no-such-branch")
    with pytest.raises(RepoError, match="looks like an option"):
        src.resolve("--all")
    with pytest.raises(RepoError, match="no directory 'elsewhere'"):
        SpecSource(specs_repo.working_tree_dir, specs_dir="elsewhere").read()
    with pytest.raises(RepoError, match="leaves the repository"):
        SpecSource(specs_repo.working_tree_dir, specs_dir="../x")


def test_bare_repo_reads_commits_but_has_no_worktree(tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work")
    sha = commit(work, {"specs/a.yaml": spec("alpha")})
    bare = git.Repo.clone_from(work.working_tree_dir, tmp_path / "bare.git", bare=True)
    assert SpecSource(bare.git_dir).read().sha == sha
    with pytest.raises(RepoError, match="bare"):
        SpecSource(bare.git_dir, worktree=True)


def test_blob_id_matches_git() -> None:
    assert blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_ensure_excluded_is_idempotent(specs_repo: git.Repo) -> None:
    exclude = Path(specs_repo.git_dir) / "info" / "exclude"
    exclude.write_text("# git's own comment")  # no trailing newline
    assert ensure_excluded(specs_repo, ".reconciler/") is True
    assert ensure_excluded(specs_repo, ".reconciler/") is False
    lines = exclude.read_text().splitlines()
    assert lines == ["# git's own comment", ".reconciler/"]
    root = Path(specs_repo.working_tree_dir or "")
    (root / ".reconciler").mkdir()
    (root / ".reconciler/state").write_text("x")
    assert specs_repo.untracked_files == []
