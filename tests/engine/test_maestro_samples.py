"""Maestro's hello-world samples run to FINISHED with the same workspace tree as Maestro's.

`data/maestro_hello_trees.json` was recorded by running each sample with maestrowf 1.2.1
(`maestro run -fg -y -s 1 -o DIR SPEC`): the step and instance directories, and the files the
steps' commands produced. Scripts and outputs are named as Maestro names them (`<instance>.sh`,
`<instance>.<pid>.out`/`.err`, the pid being the Job ID of status.csv); ours are streamed while
the step runs, where Maestro writes them when it ends. `<instance>.exit` is ours.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.record.outputs import output_files
from reconciler.record.store import Store

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).parent
SAMPLES = HERE.parent / "conformance" / "maestro" / "samples" / "hello_world"
GOLDEN = json.loads((HERE / "data" / "maestro_hello_trees.json").read_text())


@pytest.mark.parametrize("sample", sorted(GOLDEN))
def test_sample_tree_matches_maestro(sample: str, tmp_path: Path) -> None:
    out = tmp_path / "study"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "run",
            "-fg",
            "-y",
            "-o",
            str(out),
            str(SAMPLES / f"{sample}.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=110,
    )
    assert r.returncode == GOLDEN[sample]["rc"] == 0, r.stderr
    rel = [p.relative_to(out) for p in out.rglob("*")]
    dirs = sorted(
        str(p)
        for p in rel
        if (out / p).is_dir() and p.parts[0] not in ("meta", "logs", ".reconciler")
    )
    assert dirs == GOLDEN[sample]["dirs"]
    steps = {d.split("/")[0] for d in dirs}
    produced = sorted(
        str(p)
        for p in rel
        if (out / p).is_file()
        and p.parts[0] in steps
        and not p.name.endswith((".sh", ".out", ".err", ".exit"))
    )
    assert produced == GOLDEN[sample]["produced"]
    store = Store.open(out)
    try:
        instances = store.instances()
    finally:
        store.close()
    assert {row.state for row in instances} == {"FINISHED"}
    for row in instances:  # Maestro's file names, the pid being the job id
        files = {p.name for p in (out / row.workspace).iterdir() if p.is_file()}
        ours = {f"{row.name}.sh", f"{row.name}.{row.job_id}.out", f"{row.name}.{row.job_id}.err"}
        assert ours | {f"{row.name}.exit"} <= files
        stdout, _ = output_files(out, row)
        assert stdout == out / row.workspace / f"{row.name}.{row.job_id}.out"


def test_hashws_directories_match_maestro(tmp_path: Path) -> None:
    # Recorded from `maestro run --hashws` (1.2.1): indices from 0, in parameter row order.
    out = tmp_path / "study"
    r = subprocess.run(
        [sys.executable, "-m", "reconciler", "run", "-fg", "-y", "--hashws", "-o", str(out),
         str(SAMPLES / "hello_bye_parameterized.yaml")],
        capture_output=True, text=True, cwd=tmp_path, timeout=110,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    expected = [f"{s}/{s}_instance_{k}" for s in ("bye_world", "hello_world") for k in range(4)]
    dirs = sorted(
        str(p.relative_to(out))
        for p in out.glob("*/*")
        if p.is_dir() and p.parent.name in ("bye_world", "hello_world")
    )
    assert dirs == expected
    pam = out / "hello_world" / "hello_world_instance_0"
    assert (pam / "Hello_Pam.txt").read_text() == "Hello, Pam!\n"
    assert (pam / "hello_world_GREETING.Hello.NAME.Pam.sh").is_file()
