"""What the issue #14 tests share: real `reconciler` processes and real git repos in tmp_path.

Every command runs as its own process (`python -m reconciler …`, this checkout first on
PYTHONPATH), with git's user and system configuration shut out, so nothing of the machine's
git set-up leaks in. `Ran` keeps the exit code, both streams and the peak memory of the process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import git as gitpython

REPO = Path(__file__).resolve().parents[2]  # this checkout


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    rss_mb: float  # peak resident memory of the process

    @property
    def both(self) -> str:
        return self.out + self.err

    @property
    def clean_error(self) -> bool:
        """Exit 2 with an `error:` or FILE:LINE message and no traceback."""
        return self.code == 2 and "Traceback" not in self.both


def git_env(home: Path) -> dict[str, str]:
    """The environment of every process here: no user or system git config, this checkout."""
    config = home / "gitconfig"
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("[user]\n\tname = Test User\n\temail = test@example.com\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "RECONCILER_"))}
    env.update(
        GIT_CONFIG_GLOBAL=str(config),
        GIT_CONFIG_NOSYSTEM="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    env.pop("GITHUB_ACTIONS", None)
    return env


def reconciler(
    *args: str | os.PathLike[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float = 120,
) -> Ran:
    """Run `reconciler ARGS…` to its end. `timeout` is a hang guard: a process still running
    then is killed and the test fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *map(str, args)],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:  # wait4, not wait: it also says how much memory the process used
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise AssertionError(f"reconciler {' '.join(map(str, args))} hung")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Ran(
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_maxrss / 1024,
        )


def make_repo(path: Path, *, bare: bool = False) -> gitpython.Repo:
    repo = gitpython.Repo.init(path, bare=bare, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test User")
        cw.set_value("user", "email", "test@example.com")
    return repo


def commit(repo: gitpython.Repo, files: dict[str, str], message: str = "change") -> str:
    """Write the files into the work tree and commit them; the new commit's SHA."""
    root = Path(repo.working_tree_dir or "")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        repo.index.add([rel])
    return repo.index.commit(message).hexsha


def spec(name: str, cmd: str = "echo hi", *, env: str = "", extra: str = "") -> str:
    """A small valid spec; `env` is the indented body of its env: block."""
    env_block = f"env:\n{env}\n" if env else ""
    return (
        f"description:\n  name: {name}\n  description: a test study\n{env_block}"
        f"study:\n  - name: step\n    description: one step\n    run:\n      cmd: {cmd}\n{extra}"
    )


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """The git command line itself (clones, fetches, pushes), as a user would type it."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def dependency_remote(tmp_path: Path, name: str = "lib") -> tuple[Path, str]:
    """A bare repository with one commit, served by file URL: (its path, its URL)."""
    work = make_repo(tmp_path / f"{name}-work")
    commit(work, {"README": f"{name} v1\n"}, "v1")
    bare = tmp_path / f"{name}.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(work.working_tree_dir), str(bare))
    return bare, bare.as_uri()
