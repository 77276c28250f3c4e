"""The record: schema, batched writes at 10,000 instances, events, plain files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from reconciler.plan.states import State
from reconciler.record.store import SCHEMA_VERSION, Event, InstanceRow, RecordError, Store
from reconciler.record.workspace import (
    STATUS_COLUMNS,
    Workspace,
    duration,
    environment_snapshot,
    safe_name,
    write_status_csv,
    write_yaml,
)

pytestmark = pytest.mark.timeout(60)


def _store(tmp_path: Path, n: int) -> Store:
    store = Store.create(tmp_path)
    store.init_study(
        name="big",
        spec_path="/x/spec.yaml",
        spec_text="...",
        adapter="local",
        locations={"OUTPUT_PATH": str(tmp_path)},
        throttle=4,
    )
    store.add_instances(
        InstanceRow(
            name=f"s_N.{i}",
            step="s",
            workspace=f"s/N.{i}",
            depends=(),
            fingerprint="f",
            ord=i,
            params={"N": i},
        )
        for i in range(n)
    )
    return store


def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    store = _store(tmp_path, 1)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    store.close()
    with pytest.raises(RecordError, match="schema version"):
        Store.open(tmp_path)


def test_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="not a reconciler workspace"):
        Store.open(tmp_path)


def test_ten_thousand_instances_one_transaction(tmp_path: Path) -> None:
    store = _store(tmp_path, 10_000)
    changes = {
        f"s_N.{i}": {"state": State.FINISHED, "attempts": 1, "exit_code": 0}
        for i in range(0, 10_000, 2)
    }
    store.apply(changes, [Event("ended", f"s_N.{i}") for i in range(0, 10_000, 2)])
    assert store.counts() == {"FINISHED": 5000, "INITIALIZED": 5000}
    rows = store.instances()
    assert [r.ord for r in rows] == list(range(10_000))
    assert rows[4].params == {"N": 4} and rows[4].state is State.FINISHED
    assert len(store.dynamic()) == 10_000
    assert sum(1 for e in store.events() if e.kind == "ended") == 5000


def test_settings_and_cancel_flags(tmp_path: Path) -> None:
    store = _store(tmp_path, 3)
    seq = store.control_seq()
    store.update_study(throttle=0, rlimit=0)
    assert store.settings()["throttle"] == 0 and store.settings()["rlimit"] == 0
    assert store.control_seq() > seq
    assert store.request_cancel(["s"]) == 3
    assert all(r.cancel for r in store.instances())
    with pytest.raises(ValueError, match="not updatable"):
        store.apply({"s_N.1": {"name": "other"}})


def test_status_csv_has_maestros_columns(tmp_path: Path) -> None:
    store = _store(tmp_path, 2)
    store.apply(
        {
            "s_N.0": {
                "state": State.FINISHED,
                "job_id": "42",
                "submit_time": 100.0,
                "start_time": 101.0,
                "end_time": 3762.0,
                "restarts": 1,
            }
        }
    )
    write_status_csv(Workspace(tmp_path), store.instances())
    with open(tmp_path / "status.csv") as f:
        table = list(csv.reader(f))
    assert tuple(table[0]) == STATUS_COLUMNS
    assert table[0] == [
        "Step Name",
        "Job ID",
        "Workspace",
        "State",
        "Run Time",
        "Elapsed Time",
        "Start Time",
        "Submit Time",
        "End Time",
        "Number Restarts",
        "Params",
    ]
    row = dict(zip(table[0], table[1], strict=True))
    assert row["Job ID"] == "42" and row["Run Time"] == "0d:01h:01m:01s"
    assert row["Number Restarts"] == "1" and row["Params"] == "N:0"
    assert dict(zip(table[0], table[2], strict=True))["Start Time"] == "--"
    assert not list(tmp_path.glob(".*tmp"))  # atomic rewrite leaves no temp file


def test_environment_snapshot_is_allowlisted_and_masked() -> None:
    env = {
        "PATH": "/bin",
        "HOME": "/h",
        "GITHUB_TOKEN": "s3cret",
        "AWS_SECRET_ACCESS_KEY": "x",
        "RANDOM_VAR": "y",
    }
    snap = environment_snapshot(env)
    assert snap == {"PATH": "/bin", "HOME": "/h"}


def test_yaml_is_plain(tmp_path: Path) -> None:
    write_yaml(tmp_path / "m.yaml", {"a": {"x", "y"}, "b": ("t",), "c": Path("/p")})
    text = (tmp_path / "m.yaml").read_text()
    assert "!!" not in text and "python" not in text


def test_names_and_durations() -> None:
    assert safe_name("my study/v2: x") == "my_studyv2_x"
    assert duration(90061) == "1d:01h:01m:01s"
    assert duration(None) == "--"
