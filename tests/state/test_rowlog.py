"""Row logs: ok and skipped outcomes in Parquet beside the run store, failures in run_rows."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backhaul import api
from backhaul.config import load_project
from backhaul.errors import ConfigErrors
from backhaul.errors import StoreError
from backhaul.state.rowlog import PARQUET
from backhaul.state.rowlog import STREAM
from backhaul.state.rowlog import Retention
from backhaul.state.rowlog import RowLogs
from backhaul.state.rowlog import read_stream
from backhaul.state.store import RunStore
from backhaul.summary import Counts
from backhaul.summary import RowOp
from backhaul.summary import RowOutcome
from backhaul.summary import RowStatus
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from conftest import within


def _table_rows(project: Builder) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(project.root / ".backhaul" / "backhaul.db")
    try:
        return con.execute("SELECT run_id, key, status FROM run_rows ORDER BY id").fetchall()
    finally:
        con.close()


def _outcomes(keys: range, status: str = "ok", call_id: str | None = None) -> pa.Table:
    n = len(keys)
    return pa.table(
        {
            "key": [f"user-{i}" for i in keys],
            "op": ["add"] * n,
            "status": [status] * n,
            "error": [None if status == "ok" else "no"] * n,
            "operation": ["upsert"] * n,
            "call_id": [call_id] * n,
        }
    )


def test_a_run_keeps_ok_rows_in_parquet_and_only_rejected_rows_in_the_store(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(300)
    receiver.faults.reject({"7": "bad email", "250": "bad email"})
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", batch_size=50)

    run = project.run("s")

    assert (run.counts.succeeded, run.counts.rejected) == (298, 2)
    # The metadata store holds the two refusals and nothing else.
    assert sorted(_table_rows(project)) == [
        (run.run_id, "250", "rejected"),
        (run.run_id, "7", "rejected"),
    ]
    folder = project.root / ".backhaul" / "row_logs" / run.run_id
    assert sorted(p.name for p in folder.iterdir()) == [PARQUET]
    meta = pq.ParquetFile(folder / PARQUET).metadata
    assert meta.num_rows == 298
    columns = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
    for name in ("op", "status"):
        chunk = meta.row_group(0).column(columns[name])
        assert chunk.compression == "ZSTD"
        assert any("DICTIONARY" in e for e in chunk.encodings), chunk.encodings

    rows = project.rows(run.run_id)
    assert len(rows) == 300
    # The refusals first, in the order their batches were answered (they run concurrently).
    assert {r.key for r in rows[:2]} == {"7", "250"}
    assert {r.key for r in rows} == {str(i) for i in range(1, 301)}
    assert {r.key for r in project.rows(run.run_id, status="rejected")} == {"7", "250"}
    assert len(project.rows(run.run_id, status="ok")) == 298

    with api.open_store(project.load()) as store:
        assert store.has_row_log(run.run_id)
        [found] = store.rows(run.run_id, key="123")
        assert (found.key, found.op, found.status) == ("123", RowOp.ADD, RowStatus.OK)
        assert store.search_rows(run.run_id, "250")[0].status is RowStatus.REJECTED
        assert [r.key for r in store.search_rows(run.run_id, "29")] == ["29"]
        zeros = {str(i) for i in range(1, 301) if "0" in str(i)}  # no key is "0": contains
        assert {r.key for r in store.search_rows(run.run_id, "0", limit=500)} == zeros
        assert store.row_counts(run.run_id) == {("add", "ok"): 298, ("add", "rejected"): 2}
        # Paging crosses from the table into the log without a gap or a repeat.
        pages = [store.rows(run.run_id, limit=7, offset=o) for o in range(0, 300, 7)]
        assert [r.key for page in pages for r in page] == [r.key for r in rows]

    shown = project.cli("run-show", run.run_id, "--key", "123")
    assert shown.returncode == 0, shown.stderr
    assert "123" in shown.stdout and "ok" in shown.stdout


def test_rows_recorded_before_row_logs_are_still_read_from_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'backhaul.db'}"
    with RunStore.open(url) as old:  # a store written by a version without row logs
        old.start_run("old-run", "s", full_resync=False)
        old.add_rows("old-run", [RowOutcome("a", RowOp.ADD, RowStatus.OK)])
    with RunStore.open(url, RowLogs(tmp_path / "row_logs")) as store:
        assert not store.has_row_log("old-run")
        assert store.rows("old-run") == [RowOutcome("a", RowOp.ADD, RowStatus.OK)]
        assert store.search_rows("old-run", "a")[0].key == "a"
        assert store.row_counts("old-run") == {("add", "ok"): 1}


def test_calls_find_their_rows_in_the_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'backhaul.db'}"
    with RunStore.open(url, RowLogs(tmp_path / "row_logs")) as store:
        store.start_run("r", "s", full_resync=False)
        store.add_row_table("r", _outcomes(range(3), call_id="c1"))
        store.add_row_table("r", _outcomes(range(3, 5), status="rejected", call_id="c1"))
        store.finish_run(RunSummary("r", "s", RunStatus.PARTIAL))
        assert store.call_row_counts("r", ["c1"]) == {"c1": 5}
        keys = store.call_keys("r", ["c1"], limit=10)["c1"]
        assert sorted(keys) == sorted(
            [("user-3", "rejected"), ("user-4", "rejected")]
            + [(f"user-{i}", "ok") for i in range(3)]
        )
        assert store.rows("r", call_id="c1", status="ok", limit=2)[0].status is RowStatus.OK


def test_a_torn_last_batch_is_left_out_and_the_next_run_compacts_the_rest(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'backhaul.db'}"
    logs = RowLogs(tmp_path / "row_logs")
    with RunStore.open(url, logs) as store:
        store.start_run("killed", "s", full_resync=False)
        store.add_row_table("killed", _outcomes(range(100)))
        store.add_row_table("killed", _outcomes(range(100, 200)))
    # As a kill -9 in the middle of the second append leaves it.
    stream = tmp_path / "row_logs" / "killed" / STREAM
    stream.write_bytes(stream.read_bytes()[:-40])
    assert sum(b.num_rows for b in read_stream(stream)) == 100

    with RunStore.open(url, RowLogs(tmp_path / "row_logs")) as store:
        assert len(store.rows("killed", limit=1000)) == 100  # readable before recovery
        assert store.mark_abandoned("s") == 1
        assert not stream.exists()
        rows = store.rows("killed", limit=1000)
        assert sorted(r.key for r in rows) == sorted(f"user-{i}" for i in range(100))
        # The log of an ended run is never written again: late rows go to the table.
        store.add_row_table("killed", _outcomes(range(500, 501)))
        assert len(store.rows("killed", limit=1000)) == 101


def test_retention_deletes_old_and_surplus_logs_and_keeps_everything_else(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'backhaul.db'}"
    root = tmp_path / "row_logs"
    now = datetime(2026, 6, 1, tzinfo=UTC)
    logs = RowLogs(root, Retention(keep_days=30, keep_runs=2))
    with RunStore.open(url, logs) as store:
        plan = {  # run id: (sync, age in days, finished)
            "a-old": ("a", 31, True),
            "a-1": ("a", 3, True),
            "a-2": ("a", 2, True),
            "a-3": ("a", 1, True),
            "b-1": ("b", 29, True),
            "b-running": ("b", 40, False),
        }
        for run_id, (sync, age, finished) in plan.items():
            store.start_run(run_id, sync, full_resync=False, started_at=now - timedelta(age))
            store.add_row_table(run_id, _outcomes(range(10)))
            store.add_row_table(run_id, _outcomes(range(10, 11), status="rejected"))
            if finished:
                store.finish_run(
                    RunSummary(run_id, sync, RunStatus.PARTIAL, counts=Counts(succeeded=10))
                )
        (root / "orphan").mkdir()  # a folder without a run record, old on disk
        (root / "orphan" / PARQUET).write_bytes(b"x")
        (root / "a-1" / "notes.txt").write_text("not ours")

        # a-old by age, a-1 by count; the orphan is new on disk, b-running is running.
        assert store.prune_row_logs(now) == 2

        assert not (root / "a-old").exists()
        assert (root / "a-1" / "notes.txt").exists()  # only row-log files are deleted
        assert not (root / "a-1" / PARQUET).exists()
        for kept in ("a-2", "a-3", "b-1"):
            assert (root / kept / PARQUET).exists(), kept
        assert (root / "b-running" / STREAM).exists()  # a running run is never touched
        assert (root / "orphan" / PARQUET).exists()  # new on disk
        # Run records and their refused rows stay.
        assert store.run("a-old") is not None
        assert [r.key for r in store.rows("a-old")] == ["user-10"]
        assert store.rows("a-2", limit=100)[0].key == "user-10"
        assert len(store.rows("a-2", limit=100)) == 11

        later = datetime.now(UTC) + timedelta(days=31)
        assert store.prune_row_logs(later) == 4  # a-2, a-3, b-1 and the orphan, by age
        assert not (root / "orphan").exists()
        assert (root / "b-running" / STREAM).exists()


def test_retention_settings_are_checked_with_file_line_and_key(project: Builder) -> None:
    project.write("backhaul.yml", "name: t\nstate:\n  row_logs:\n    keep_days: 0\n")
    with pytest.raises(ConfigErrors) as info:
        load_project(project.root)
    [error] = info.value.errors
    assert (error.file, error.line, error.key) == ("backhaul.yml", 4, "state.row_logs.keep_days")

    project.write(
        "backhaul.yml", "name: t\nstate:\n  row_logs:\n    path: /tmp/x\n    keep_runs: 3\n"
    )
    loaded = load_project(project.root)
    assert loaded.row_logs.root == Path("/tmp/x")
    assert loaded.row_logs.retention == Retention(keep_days=30, keep_runs=3)


def test_runs_and_the_scheduler_apply_retention_by_themselves(
    project: Builder, receiver: WebhookReceiver
) -> None:
    from backhaul.schedule.local import LocalLauncher
    from backhaul.schedule.scheduler import Scheduler

    project.write("backhaul.yml", {"name": "t", "state": {"row_logs": {"keep_runs": 1}}})
    project.users(20)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook")
    root = project.root / ".backhaul" / "row_logs"

    first = project.run("s")
    assert (root / first.run_id / PARQUET).exists()
    second = project.run("s", full_resync=True)

    # The second run's end kept only its own log; the first run's record stays.
    assert sorted(p.name for p in root.iterdir()) == [second.run_id]
    assert len(project.rows(second.run_id)) == 20
    assert project.rows(first.run_id) == []
    with api.open_store(project.load()) as store:
        record = store.run(first.run_id)
        assert record is not None and record.counts.succeeded == 20

    loaded = project.load()
    with api.open_store(loaded) as store:
        launcher = LocalLauncher(loaded, store, max_parallel=1)
        try:
            found = Scheduler(loaded, store, launcher)
            found.tick(datetime.now(UTC) + timedelta(days=1))
            assert (root / second.run_id / PARQUET).exists()  # a day old: kept
            found.tick(datetime.now(UTC) + timedelta(days=31))
            assert not (root / second.run_id).exists()
            record = store.run(second.run_id)
            assert record is not None and record.counts.succeeded == 20
        finally:
            launcher.close()


def test_iter_rows_reads_the_table_then_the_log_once_each(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'backhaul.db'}"
    with RunStore.open(url, RowLogs(tmp_path / "row_logs")) as store:
        store.start_run("r", "s", full_resync=False)
        store.add_row_table("r", _outcomes(range(25)))
        store.add_row_table("r", _outcomes(range(25, 32), status="rejected"))
        store.finish_run(RunSummary("r", "s", RunStatus.PARTIAL))
        pages = list(store.iter_rows("r", page=10))
        assert [len(p) for p in pages] == [7, 10, 10, 5]
        flat = [r for p in pages for r in p]
        assert flat == store.rows("r", limit=100)


def test_a_whole_log_is_written_once_sorted_and_never_over_another(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'backhaul.db'}"
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE plan AS SELECT 'user-' || (i * 7919 % 5000) AS key, 'add' AS op, "
        "'ok' AS status, NULL AS error, 'upsert' AS operation, NULL AS call_id "
        "FROM range(5000) t(i)"
    )
    with RunStore.open(url, RowLogs(tmp_path / "row_logs")) as store:
        store.start_run("whole", "s", full_resync=False)
        assert store.write_row_log("whole", con, "SELECT * FROM plan")
        final = tmp_path / "row_logs" / "whole" / PARQUET
        keys = pq.read_table(final).column("key").to_pylist()
        assert keys == sorted(keys) and len(set(keys)) == 5000
        assert pq.read_schema(final).types == [pa.string()] * 6
        # A log is never written twice: the second writer is told to append instead.
        assert not store.write_row_log("whole", con, "SELECT * FROM plan")
        store.start_run("appending", "s", full_resync=False)
        store.add_row_table("appending", _outcomes(range(3)))
        assert not store.write_row_log("appending", con, "SELECT * FROM plan")
        assert len(store.rows("whole", limit=10_000)) == 5000
        assert [r.key for r in store.rows("whole", key="user-42")] == ["user-42"]
    # Without row logs the rows are appended to the store's table.
    with RunStore.open(f"sqlite:///{tmp_path / 'plain.db'}") as plain:
        assert not plain.write_row_log("x", con, "SELECT * FROM plan")


def test_a_whole_log_writes_enum_and_number_columns_as_strings(tmp_path: Path) -> None:
    # As a first load gives it: one-value ENUMs for what every row shares, a number key.
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE plan AS SELECT 5000 - i AS key, CAST('add' AS ENUM('add')) AS op, "
        "CAST('ok' AS ENUM('ok')) AS status, NULL::VARCHAR AS error, "
        "CAST('upsert' AS ENUM('upsert')) AS operation, NULL::VARCHAR AS call_id "
        "FROM range(5000) t(i)"
    )
    with RunStore.open(f"sqlite:///{tmp_path / 'b.db'}", RowLogs(tmp_path / "logs")) as store:
        store.start_run("r", "s", full_resync=False)
        assert store.write_row_log("r", con, "SELECT * FROM plan")
        final = tmp_path / "logs" / "r" / PARQUET
        assert pq.read_schema(final).types == [pa.string()] * 6
        keys = pq.read_table(final).column("key").to_pylist()
        assert keys == sorted(keys) and len(keys) == 5000  # sorted as text: "1", "10", ...
        found = store.rows("r", key="42")
        assert [(r.key, r.op, r.status, r.operation) for r in found] == [
            ("42", RowOp.ADD, RowStatus.OK, "upsert")
        ]


def _ended_run(tmp_path: Path, run_id: str = "r") -> str:
    url = f"sqlite:///{tmp_path / 'backhaul.db'}"
    with RunStore.open(url, RowLogs(tmp_path / "row_logs")) as store:
        store.start_run(run_id, "s", full_resync=False)
        store.add_row_table(run_id, _outcomes(range(5)))
        store.add_row_table(run_id, _outcomes(range(5, 7), status="rejected"))
        store.finish_run(RunSummary(run_id, "s", RunStatus.PARTIAL))
    return url


@pytest.mark.parametrize(
    ("name", "plant", "said"),
    [
        (PARQUET, os.mkfifo, "is a named pipe (FIFO), not a file"),
        (PARQUET, Path.mkdir, "is a directory, not a file"),
        (PARQUET, lambda p: p.write_bytes(b"PAR1 and then no footer"), "cannot be read as Parquet"),
        (STREAM, os.mkfifo, "is a named pipe (FIFO), not a file"),
    ],
    ids=["parquet-fifo", "parquet-folder", "parquet-garbage", "stream-fifo"],
)
def test_a_row_log_that_is_no_log_file_is_refused_with_its_path_never_waited_on(
    tmp_path: Path, name: str, plant: Callable[[Path], object], said: str
) -> None:
    url = _ended_run(tmp_path)
    folder = tmp_path / "row_logs" / "r"
    (folder / PARQUET).unlink()
    plant(folder / name)

    with RunStore.open(url, RowLogs(tmp_path / "row_logs")) as store:
        refused = within(30, lambda: store.rows("r", status="ok"))
        assert isinstance(refused, StoreError)
        assert f"row log {folder / name} {said}" in refused.message
        assert "move it out of the row-log folder" in refused.message
        found = within(30, lambda: store.search_rows("r", "user-1"))
        assert isinstance(found, StoreError)
        # What the store itself holds is still there.
        rejected = store.rows("r", status="rejected")
        assert sorted(r.key for r in rejected) == ["user-5", "user-6"]
        assert store.run("r") is not None


def test_recovering_a_killed_run_neither_waits_on_a_pipe_nor_drops_a_stream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'backhaul.db'}"
    logs = tmp_path / "row_logs"
    with RunStore.open(url, RowLogs(logs)) as store:
        for run_id in ("piped", "beside-a-folder", "beside-a-pipe"):
            store.start_run(run_id, "s", full_resync=False)
            store.add_row_table(run_id, _outcomes(range(10)))
    # What stands where the killed runs' files were.
    (logs / "piped" / STREAM).unlink()
    os.mkfifo(logs / "piped" / STREAM)
    (logs / "beside-a-folder" / PARQUET).mkdir()
    os.mkfifo(logs / "beside-a-pipe" / (PARQUET + ".tmp"))

    with RunStore.open(url, RowLogs(logs)) as store:
        assert within(30, lambda: store.mark_abandoned("s")) == 3
        # The pipe is left where it is, and said so.
        assert stat.S_ISFIFO((logs / "piped" / STREAM).stat().st_mode)
        assert f"{logs / 'piped' / STREAM} is a named pipe" in caplog.text
        # A stream beside a folder is kept: it is the only copy of its rows.
        assert (logs / "beside-a-folder" / STREAM).is_file()
        assert f"{logs / 'beside-a-folder' / PARQUET} is a directory" in caplog.text
        # A pipe where a killed compaction's half-written file was is replaced.
        assert (logs / "beside-a-pipe" / PARQUET).is_file()
        assert not (logs / "beside-a-pipe" / STREAM).exists()
        assert len(store.rows("beside-a-pipe", status="ok", limit=100)) == 10
