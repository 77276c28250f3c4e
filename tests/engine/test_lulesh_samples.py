"""Maestro's LULESH samples under `run`, as far as this machine allows.

Every LULESH sample has a git dependency (`url: https://github.com/LLNL/LULESH.git`,
`path: $(OUTPUT_PATH)`). There is no network here, so the test makes its own LULESH: a git
repository with a Makefile that has the lines the samples edit with sed and builds `lulesh2.0`
(a shell script standing in for the proxy app), tagged 2.0.3. git's own `url.<base>.insteadOf`
(in a test-only global config) sends the samples' unchanged URL to it; reconciler sees and checks
the URL as the spec writes it. The local samples run to FINISHED; the Slurm, LSF and Flux ones
cannot run here (LLNL partitions, modules, cmake and MPI), so they are set up with `--dry`:
cloned, and every script written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import git
import pytest
from ruamel.yaml import YAML

from reconciler.record.store import Store

pytestmark = pytest.mark.timeout(180)

CORPUS = Path(__file__).resolve().parents[1] / "conformance" / "maestro"
LULESH = CORPUS / "samples" / "lulesh"

MAKEFILE = """\
# A stand-in for LULESH 2.0.3's Makefile: the lines the samples edit with sed, and a build.
SHELL = /bin/sh
SERCXX = cp
MPICXX = cp
CXX = $(MPICXX)
CXXFLAGS = -g -O3 -fopenmp
#CXXFLAGS = -g -O3 -I. -Wall
LDFLAGS = -g -O3 -fopenmp
#LDFLAGS = -g -O3

lulesh2.0: lulesh.sh
\t$(CXX) lulesh.sh $@ && chmod +x $@

clean:
\trm -f lulesh2.0
"""
APP = """\
#!/bin/sh
echo "Running problem size $2^3 per domain until completion ($4 iterations)"
"""


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str]:
    """The environment that points the samples' URL at our LULESH, and its tag's commit."""
    base = tmp_path_factory.mktemp("lulesh")
    work = git.Repo.init(base / "src", initial_branch="master")
    (base / "src" / "Makefile").write_text(MAKEFILE)
    (base / "src" / "lulesh.sh").write_text(APP)
    work.index.add(["Makefile", "lulesh.sh"])
    sha = work.index.commit("LULESH 2.0.3 stand-in").hexsha
    work.create_tag("2.0.3")
    git.Repo.clone_from(str(base / "src"), str(base / "mirror" / "LULESH.git"), bare=True)
    config = base / "gitconfig"
    config.write_text(
        f'[url "file://{base / "mirror"}/"]\n\tinsteadOf = https://github.com/LLNL/\n'
    )
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": str(config),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                       os.environ.get("PYTHONPATH", "")]),
    }  # fmt: skip
    return env, sha


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "run", *args],
        capture_output=True, text=True, cwd=cwd, timeout=170,
        env={**env, "XDG_CACHE_HOME": str(cwd / "cache")},
    )  # fmt: skip


def meta(out: Path) -> dict:
    return YAML(typ="safe").load((out / "meta" / "metadata.yaml").read_text())


LOCAL = [
    LULESH / "lulesh_sample1_unix.yaml",
    LULESH / "lulesh_sample1_unix_linear.yaml",
    # BSD `sed -i ""` fails on GNU sed; the stand-in builds either way (as LULESH's Makefile
    # would not, with the MPI compiler left in).
    LULESH / "lulesh_sample1_macosx.yaml",
    LULESH / "lulesh_sample1_macosx_linear.yaml",
    CORPUS / "samples" / "documentation" / "lulesh_sample1_unix_commented.yaml",
]


@pytest.mark.parametrize("sample", LOCAL, ids=lambda p: p.name)
def test_local_sample_clones_builds_and_runs(sample: Path, mirror, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, sha = mirror
    out = tmp_path / "out"
    r = run(env, tmp_path, "-fg", "-y", "-o", str(out), str(sample))
    assert r.returncode == 0, r.stdout + r.stderr
    # Cloned as Maestro clones: into <path>/<name>, $(OUTPUT_PATH) being the workspace.
    checkout = git.Repo(out / "LULESH")
    tagged = "tag:" in sample.read_text().split("study:")[0]
    assert not tagged or checkout.head.commit.hexsha == sha
    assert (out / "LULESH" / "lulesh2.0").is_file()  # built by make-lulesh
    pinned = meta(out)["git_dependencies"]["LULESH"]
    assert pinned == {"url": "https://github.com/LLNL/LULESH.git", "ref": "2.0.3" if tagged
                      else None, "sha": checkout.head.commit.hexsha,
                      "path": str(out / "LULESH")}  # fmt: skip
    store = Store.open(out)
    try:
        assert store.study()["dependency_shas"] == {"LULESH": checkout.head.commit.hexsha}
        rows = store.instances()
    finally:
        store.close()
    assert {r.state for r in rows} == {"FINISHED"}
    logs = sorted((out / "run-lulesh").rglob("SIZE.*.log"))
    assert logs and "Running problem size" in logs[0].read_text()
    assert f"cd {out}/LULESH" in (out / "make-lulesh" / "make-lulesh.sh").read_text()


def test_a_missing_path_dependency_stops_before_any_clone(mirror, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Maestro's test spec also names `paths: [{name: TEST, path: /test/}]`.
    if Path("/test").exists():
        pytest.skip("this machine has a /test directory")
    env, _ = mirror
    spec = CORPUS / "tests" / "specification" / "test_specs" / "lulesh_sample1_unix.yml"
    r = run(env, tmp_path, "-fg", "-y", "-o", str(tmp_path / "out"), str(spec))
    assert r.returncode == 2
    assert f"{spec}:28:17: path dependency 'TEST' points to /test" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("batch", "instance", "launcher"),
    [
        ("slurm", "run-lulesh_ITER.100.SIZE.100", "srun -n 27 -N 2 {out}/LULESH/build/lulesh2.0"),
        ("lsf", "run-lulesh_CPT.1.ITER.100.NODES.1.SIZE.100.TASKS.8",
         "jsrun --nrs 8 -b rs -a 1 -r 8 -c 1 {out}/LULESH/build/lulesh2.0"),
        ("flux", "run-lulesh_ITER.10.SIZE.100",
         "flux run -N 1 -n 1 -c 1 {out}/LULESH/build/lulesh2.0"),
    ],
)  # fmt: skip
def test_scheduler_sample_dry_run_clones_and_names_scripts_as_maestro(  # type: ignore[no-untyped-def]
    batch: str, instance: str, launcher: str, mirror, tmp_path: Path
) -> None:
    env, _ = mirror
    out = tmp_path / "out"
    spec = LULESH / f"lulesh_sample1_unix_{batch}.yaml"
    r = run(env, tmp_path, "--dry", "-o", str(out), str(spec))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "LULESH" / "Makefile").is_file()
    scripts = sorted(
        p.name
        for p in out.glob("*/**/*.sh")
        if p.relative_to(out).parts[0] not in (".reconciler", "LULESH")
    )
    # Every step's script is named after the scheduler, whether or not it is scheduled.
    assert scripts and all(name.endswith(f".{batch}.sh") for name in scripts)
    assert "make-lulesh." + batch + ".sh" in scripts
    (script,) = out.glob(f"run-lulesh/*/{instance}.{batch}.sh")
    assert launcher.format(out=out) in script.read_text()
