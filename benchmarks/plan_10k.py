"""Benchmark: `reconciler plan` on a 10,000-instance study with one step changed.

Makes a temporary git repo with the spec, records it as applied (a workspace written without
running anything), commits a change to one step's cmd, then times whole `reconciler plan
--json` processes. Goal on a 2-core machine: ≤ 1.5 s median.

    python3 benchmarks/plan_10k.py [--instances 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import timed
from spec_expand import make_spec

from reconciler.engine.setup import RunSettings, create_workspace
from reconciler.record.store import Store
from reconciler.spec import load_study


def git(repo: Path, *args: str) -> str:
    return subprocess.check_output(["git", *args], cwd=repo, text=True).strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        (repo / "specs").mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "config", "user.email", "bench@example.org")
        git(repo, "config", "user.name", "bench")
        spec = repo / "specs" / "bench.yaml"
        spec.write_text(make_spec(args.instances))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "bench")
        study = load_study(spec)
        ws = repo / ".reconciler" / "studies" / study.name
        create_workspace(
            study,
            ws,
            RunSettings(dry=True),
            cwd=repo,
            locations={"OUTPUT_PATH": str(ws), "SPECROOT": str(spec.parent)},
        )
        store = Store.open(ws)
        store.update_study(control=False, last_applied_revision=git(repo, "rev-parse", "HEAD"))
        store.apply({i.name: {"state": "FINISHED"} for i in study.instances})
        store.close()
        spec.write_text(spec.read_text().replace("> b.txt", "> b.txt; true"))
        git(repo, "commit", "-qam", "change b")
        argv = [sys.executable, "-m", "reconciler", "plan", "--json", "--repo", str(repo)]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        plan = json.loads(proc.stdout)["studies"][0]["counts"]
        print(f"{len(study.instances)} instances; plan: {plan}")
        walls = []
        for _ in range(args.runs):
            # `plan` exits 1 when there are changes: time it through a shell that maps 1 to 0
            w, rss = timed(["sh", "-c", '"$@"; test $? -le 1', "sh", *argv])
            walls.append((w, rss))
        ws_ = sorted(w for w, _ in walls)
        print(
            f"reconciler plan --json: median {statistics.median(ws_):.2f} s "
            f"(min {ws_[0]:.2f}, max {ws_[-1]:.2f}); peak RSS {max(m for _, m in walls):.0f} MB"
            " (goal ≤ 1.5 s)"
        )


if __name__ == "__main__":
    main()
