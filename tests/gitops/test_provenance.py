"""Provenance notes on real repositories: sharing, masking, pushing."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import git
import pytest
from git_helpers import commit, make_repo, spec

import reconciler
from reconciler.gitops import provenance as prov
from reconciler.gitops.provenance import (
    ProvenanceError,
    dependency_shas,
    mask,
    push_notes,
    read_entry,
    read_note,
    snapshot,
    write_note,
)
from reconciler.spec import Study, load_study_text

SECRET = "hunter2-Sup3rS3cret"
KEY_VALUE = "ak-1234567890abcdef"


def secret_study(name: str = "alpha") -> Study:
    env = (
        f"  variables:\n    API_TOKEN: {SECRET}\n    ssh_key_file: {KEY_VALUE}\n"
        "    GREETING: hello\n    AUTH: --token=$(API_TOKEN)\n"
        "  dependencies:\n    git:\n      - name: LIB\n        path: $(OUTPUT_PATH)\n"
        "        url: https://user:tok3n-in-url@example.com/lib.git\n        tag: v1"
    )
    extra = "global.parameters:\n  SIZE:\n    values: [10, 20]\n    label: SIZE.%%\n"
    text = spec(name, env=env, cmd="curl $(AUTH) -d $(GREETING) -n $(SIZE) $(LIB)", extra=extra)
    return load_study_text(text, f"specs/{name}.yaml", dependency_shas={"LIB": "a" * 40})


def plain(name: str) -> Study:
    return load_study_text(spec(name), f"specs/{name}.yaml")


def git_show(repo: git.Repo, sha: str) -> str:
    return subprocess.run(
        [
            "git",
            "-C",
            str(repo.working_tree_dir or repo.git_dir),
            "notes",
            "--ref",
            "reconciler",
            "show",
            sha,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def repo_sha(specs_repo: git.Repo) -> tuple[git.Repo, str]:
    return specs_repo, commit(specs_repo, {"specs/alpha.yaml": spec("alpha")})


def entry(study: Study, sha: str, **kw) -> dict:
    rows = kw.pop("rows", [])
    return snapshot(study, sha, "b" * 40, {"LIB": "a" * 40}, rows, "local", "applied", **kw)


def test_snapshot_holds_what_was_applied(repo_sha) -> None:
    _, sha = repo_sha
    study = secret_study()
    first = study.instances[0]
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    rows = [
        {
            "name": first.name,
            "job_id": "4242",
            "state": "FINISHED",
            "exit_code": 0,
            "started": when,
            "finished": when,
        },
        {"name": "gone_SIZE.99", "state": "CANCELLED"},
    ]
    e = entry(study, sha, rows=rows)
    assert e["study"] == "alpha" and e["revision"] == sha and e["outcome"] == "applied"
    assert e["spec"] == {"path": "specs/alpha.yaml", "blob": "b" * 40}
    assert e["parameters"] == {"SIZE": [10, 20]}
    assert e["tool"] == {"name": "reconciler", "version": reconciler.__version__}
    assert e["host"] and e["scheduler"] == "local"
    assert dependency_shas(e) == {"LIB": "a" * 40}
    assert e["dependencies"]["git"]["LIB"]["ref"] == "v1"
    names = [i["name"] for i in e["instances"]]
    assert names == [i.name for i in study.instances] + ["gone_SIZE.99"]
    got = e["instances"][0]
    assert got["fingerprint"] == first.fingerprint
    assert got["job_id"] == "4242" and got["exit_code"] == 0
    assert got["started"] == "2024-05-01T12:00:00+00:00"


def test_two_studies_on_one_commit_share_the_note(repo_sha) -> None:
    repo, sha = repo_sha
    write_note(repo, sha, entry(plain("alpha"), sha))
    write_note(repo, sha, entry(plain("beta"), sha))
    assert sorted(read_note(repo, sha)) == ["alpha", "beta"]
    # A terminal-state snapshot replaces only its own study's entry.
    done = snapshot(plain("alpha"), sha, "b" * 40, {}, [], "local", "FINISHED")
    write_note(repo, sha, done)
    note = read_note(repo, sha)
    assert note["alpha"]["outcome"] == "FINISHED" and note["beta"]["outcome"] == "applied"
    assert read_entry(repo, sha, "beta")["study"] == "beta"
    assert read_entry(repo, sha, "nope") is None
    # Plain git reads it, and the notes ref keeps every version in its own history.
    text = git_show(repo, sha)
    assert "alpha:" in text and "beta:" in text and "format: 1" in text
    history = repo.git.log("--format=%H", prov.NOTES_REF).split()
    assert len(history) == 3
    assert sha in repo.git.log("--notes=reconciler", "-1", "--format=%H%n%N")


def test_read_note_of_a_commit_without_one(repo_sha) -> None:
    repo, sha = repo_sha
    assert read_note(repo, sha) == {}


def test_foreign_note_text_is_kept(repo_sha) -> None:
    repo, sha = repo_sha
    repo.git.notes("--ref", "reconciler", "add", "-m", "hand-written remark", sha)
    write_note(repo, sha, entry(plain("alpha"), sha))
    doc = prov.parse(git_show(repo, sha))
    assert "hand-written remark" in doc["previous_note"]
    assert list(doc["studies"]) == ["alpha"]


def test_secrets_never_appear_in_the_note(repo_sha, monkeypatch) -> None:
    repo, sha = repo_sha
    monkeypatch.setenv("RECONCILER_SECRETS", "GREETING, other")
    study = secret_study()
    rows = [
        {"name": i.name, "script": f"curl --token={SECRET} -d hello", "state": "RUNNING"}
        for i in study.instances
    ]
    write_note(repo, sha, entry(study, sha, rows=rows))
    text = git_show(repo, sha)
    for leaked in (SECRET, KEY_VALUE, "tok3n-in-url", "hello"):
        assert leaked not in text, leaked
    e = read_entry(repo, sha, "alpha")
    assert e["variables"]["API_TOKEN"] == "***"
    assert e["variables"]["ssh_key_file"] == "***"  # KEY in any case
    assert e["variables"]["GREETING"] == "***"  # marked secret through RECONCILER_SECRETS
    assert e["variables"]["AUTH"] == "--token=$(API_TOKEN)"  # no secret in the raw text
    assert e["instances"][0]["script"] == "curl --token=*** -d ***"
    assert e["dependencies"]["git"]["LIB"]["url"] == "https://user:***@example.com/lib.git"
    assert e["revision"] == sha  # ids and hashes are kept as they are


def test_secret_parameter_values_are_masked_in_names_too() -> None:
    extra = "global.parameters:\n  DB_PASSWORD:\n    values: [pw-one, pw-two]\n    label: P.%%\n"
    study = load_study_text(spec("p", cmd="run $(DB_PASSWORD)", extra=extra), "specs/p.yaml")
    e = snapshot(study, "c" * 40, "b" * 40, {}, [], "local", "applied")
    text = prov.dump(e)
    assert "pw-one" not in text and "pw-two" not in text
    assert e["parameters"]["DB_PASSWORD"] == "***"
    assert all("***" in i["name"] for i in e["instances"])


def test_mask_spares_ids_and_times() -> None:
    doc = {"revision": "4242abcd", "job_id": "4242", "msg": "code 4242", "n": 4242}
    assert mask(doc, {"4242"}) == {
        "revision": "4242abcd",
        "job_id": "4242",
        "msg": "code ***",
        "n": 4242,
    }


def test_notes_without_a_configured_identity(tmp_path: Path) -> None:
    repo = git.Repo.init(tmp_path / "anon", initial_branch="main")  # no user.name/email
    (tmp_path / "anon" / "f").write_text("x")
    repo.index.add(["f"])
    sha = repo.index.commit(
        "c", author=git.Actor("a", "a@b"), committer=git.Actor("a", "a@b")
    ).hexsha
    write_note(repo, sha, entry(plain("alpha"), sha))
    assert list(read_note(repo, sha)) == ["alpha"]


def test_push_and_read_back_on_the_remote(tmp_path: Path, repo_sha) -> None:
    repo, sha = repo_sha
    remote = make_repo(tmp_path / "remote.git", bare=True)
    repo.create_remote("origin", remote.git_dir)
    repo.git.push("origin", "main")
    write_note(repo, sha, entry(plain("alpha"), sha))
    push_notes(repo, "origin")
    assert sorted(read_note(remote, sha)) == ["alpha"]
    shown = subprocess.run(
        ["git", "--git-dir", remote.git_dir, "notes", "--ref", "reconciler", "show", sha],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "study: alpha" in shown


def test_two_hosts_push_notes_on_one_commit_without_clobbering(tmp_path: Path, repo_sha) -> None:
    repo, sha = repo_sha
    remote = make_repo(tmp_path / "remote.git", bare=True)
    repo.create_remote("origin", remote.git_dir)
    repo.git.push("origin", "main")
    other = git.Repo.clone_from(remote.git_dir, tmp_path / "other")
    with other.config_writer() as cw:
        cw.set_value("user", "name", "Other")
        cw.set_value("user", "email", "other@example.com")

    write_note(repo, sha, entry(plain("alpha"), sha))
    write_note(other, sha, entry(plain("beta"), sha))
    push_notes(repo)
    push_notes(other)  # diverged notes: merged study by study, then a fast-forward push
    assert sorted(read_note(remote, sha)) == ["alpha", "beta"]
    # A newer snapshot of a study wins over an older one on the other host.
    newer = snapshot(plain("alpha"), sha, "b" * 40, {}, [], "local", "FINISHED")
    newer["recorded_at"] = "2999-01-01T00:00:00+00:00"
    write_note(other, sha, newer)
    push_notes(other)
    push_notes(repo)
    note = read_note(repo, sha)
    assert note["alpha"]["outcome"] == "FINISHED" and "beta" in note
    assert read_note(remote, sha) == note


def test_pull_notes_brings_another_hosts_provenance(tmp_path: Path, repo_sha) -> None:
    repo, sha = repo_sha
    remote = make_repo(tmp_path / "remote.git", bare=True)
    repo.create_remote("origin", remote.git_dir)
    repo.git.push("origin", "main")
    write_note(repo, sha, entry(plain("alpha"), sha))
    push_notes(repo)
    fresh = git.Repo.clone_from(remote.git_dir, tmp_path / "fresh")
    assert read_note(fresh, sha) == {}
    assert prov.pull_notes(fresh) is True
    assert sorted(read_note(fresh, sha)) == ["alpha"]


def test_push_refuses_unsafe_remotes(repo_sha) -> None:
    repo, sha = repo_sha
    write_note(repo, sha, entry(plain("alpha"), sha))
    for bad in ("ext::sh -c touch% /tmp/pwned", "--upload-pack=touch /tmp/x", "fd::17"):
        with pytest.raises(ProvenanceError, match="refused"):
            push_notes(repo, bad)
    repo.create_remote("evil", "ext::sh -c true", allow_unsafe_protocols=True)
    with pytest.raises(ProvenanceError, match="refused"):
        push_notes(repo, "evil")
