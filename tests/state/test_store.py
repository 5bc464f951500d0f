"""The run store on SQLite and on Postgres: runs, per-row outcomes, calls, recorder."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from backhaul.calls import HttpCall
from backhaul.state.recorder import StoreRecorder
from backhaul.state.store import INTERRUPTED
from backhaul.state.store import RunStore
from backhaul.state.store import StoreError
from backhaul.summary import Counts
from backhaul.summary import RowOp
from backhaul.summary import RowOutcome
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def outcome(i: int) -> RowOutcome:
    """Row ``i``: every tenth row rejected, every seventh a removal."""
    rejected = i % 10 == 0
    return RowOutcome(
        key=f"user-{i}",
        op=RowOp.REMOVE if i % 7 == 0 else RowOp.ADD,
        status="rejected" if rejected else "ok",
        error="email is invalid" if rejected else None,
        operation="upsert",
        call_id=f"call-{i // 100}",
    )


def test_run_lifecycle(store: RunStore) -> None:
    store.start_run(
        "run-0001", "pql_to_crm", full_resync=True, trigger="schedule", git_commit="abc1234"
    )
    started = store.run("run-0001")
    assert started is not None
    assert started.status is RunStatus.RUNNING
    assert started.counts == Counts()
    assert started.finished_at is None
    assert started.duration_s == 0.0
    assert started.started_at.tzinfo is not None
    assert (started.trigger, started.git_commit, started.full_resync, started.dry_run) == (
        "schedule",
        "abc1234",
        True,
        False,
    )

    store.update_counts("run-0001", Counts(queried=500, added=20))
    progress = store.run("run-0001")
    assert progress is not None
    assert (progress.counts.queried, progress.counts.added) == (500, 20)
    assert progress.status is RunStatus.RUNNING

    finished_at = started.started_at + timedelta(seconds=42)
    counts = Counts(queried=500, added=20, changed=3, succeeded=21, rejected=2, invalid=1)
    store.finish_run(
        RunSummary(
            run_id="run-0001",
            sync="pql_to_crm",
            status=RunStatus.PARTIAL,
            counts=counts,
            finished_at=finished_at,
            error="2 rows rejected",
        )
    )
    done = store.run("run-0001")
    assert done is not None
    assert done.status is RunStatus.PARTIAL
    assert done.counts == counts
    assert done.error == "2 rows rejected"
    assert done.finished_at == finished_at
    assert done.duration_s == 42.0


def test_timestamps_come_back_in_utc(store: RunStore) -> None:
    paris = timezone(timedelta(hours=2))
    store.start_run(
        "run-tz", "s", full_resync=False, started_at=datetime(2026, 6, 1, 12, tzinfo=paris)
    )
    record = store.run("run-tz")
    assert record is not None
    assert record.started_at == datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert record.started_at.utcoffset() == timedelta(0)


def test_finish_without_start_inserts_the_run(store: RunStore) -> None:
    store.finish_run(
        RunSummary(
            run_id="guarded-1",
            sync="s",
            status=RunStatus.GUARDED,
            started_at=T0,
            finished_at=T0 + timedelta(seconds=1),
            error="removals exceed 20%",
            dry_run=True,
        )
    )
    record = store.run("guarded-1")
    assert record is not None
    assert (record.status, record.error, record.dry_run) == (
        RunStatus.GUARDED,
        "removals exceed 20%",
        True,
    )
    assert record.started_at == T0


def test_hundred_thousand_rows_in_one_call(store: RunStore) -> None:
    store.start_run("big", "s", full_resync=True)
    rows = [outcome(i) for i in range(100_000)]
    store.add_rows("big", rows)

    counts = store.row_counts("big")
    assert sum(counts.values()) == 100_000
    expected_rejected = sum(1 for r in rows if r.status == "rejected")
    assert sum(n for (_, status), n in counts.items() if status == "rejected") == expected_rejected
    assert counts[("remove", "rejected")] == sum(
        1 for r in rows if r.op is RowOp.REMOVE and r.status == "rejected"
    )

    assert store.rows("big", key="user-77777") == [outcome(77777)]
    assert store.rows("big", key="user-100000") == []
    # Insertion order is kept, and pages do not overlap.
    assert store.rows("big", limit=3) == rows[:3]
    assert store.rows("big", limit=3, offset=3) == rows[3:6]


def test_row_filters(store: RunStore) -> None:
    store.start_run("r1", "s", full_resync=False)
    store.start_run("r2", "s", full_resync=False)
    rows = [outcome(i) for i in range(30)]
    store.add_rows("r1", rows)
    store.add_rows("r2", [outcome(0)])

    rejected = store.rows("r1", status="rejected")
    assert [r.key for r in rejected] == ["user-0", "user-10", "user-20"]
    assert all(r.error == "email is invalid" for r in rejected)
    assert store.rows("r1", status="rejected", key="user-10") == [outcome(10)]
    assert store.rows("r1", status="ok", key="user-10") == []
    assert len(store.rows("r1", status="ok", limit=1000)) == 27
    # Rows belong to their run only.
    assert store.row_counts("r2") == {("remove", "rejected"): 1}
    assert store.rows("r2", key="user-5") == []
    assert store.row_counts("nothing") == {}


def test_rows_need_an_existing_run(store: RunStore) -> None:
    with pytest.raises(IntegrityError):
        store.add_rows("no-such-run", [outcome(1)])


def test_run_id_prefix(store: RunStore) -> None:
    store.start_run("7f3a9c01aa", "s", full_resync=False)
    store.start_run("7f3a9c02bb", "s", full_resync=False)
    store.start_run("a_b%c_1234", "s", full_resync=False)

    found = store.run("7f3a9c01")
    assert found is not None and found.run_id == "7f3a9c01aa"
    assert store.run("7f3a9c02bb") is not None
    with pytest.raises(StoreError, match="matches several runs"):
        store.run("7f3a9c")
    # Shorter than six characters: exact ids only.
    assert store.run("7f3a9") is None
    assert store.run("ffffff") is None
    # LIKE wildcards in a prefix are taken literally.
    assert store.run("a_b%c_") is not None
    assert store.run("a?b%c_") is None
    assert store.run("a_b_c_") is None


def test_calls_round_trip(store: RunStore) -> None:
    store.start_run("run-calls", "s", full_resync=False)
    first = HttpCall(
        method="POST",
        url="https://api.example.com/v3/contacts/batch",
        status=207,
        latency_ms=123.5,
        request_headers={"authorization": "***", "content-type": "application/json"},
        request_body='{"inputs": [{"id": "1"}]}',
        response_body='{"status": "COMPLETE"}',
        attempt=2,
        started_at=T0,
    )
    second = HttpCall(
        method="POST",
        url="https://api.example.com/v3/contacts/batch",
        status=None,
        latency_ms=30000.0,
        error="timed out",
        started_at=T0 + timedelta(seconds=1),
    )
    store.add_calls("run-calls", [second, first])

    assert store.calls("run-calls") == [first, second]
    assert store.calls("run-calls", limit=1) == [first]
    assert store.calls("other") == []


def test_mark_abandoned(store: RunStore) -> None:
    store.start_run("a1", "sync_a", full_resync=False, started_at=T0)
    store.start_run("a2", "sync_a", full_resync=False, started_at=T0 + timedelta(minutes=1))
    store.start_run("b1", "sync_b", full_resync=False)
    store.start_run("a0", "sync_a", full_resync=False, started_at=T0 - timedelta(hours=1))
    store.finish_run(RunSummary(run_id="a0", sync="sync_a", status=RunStatus.SUCCEEDED))

    assert store.mark_abandoned("sync_a") == 2
    for run_id in ("a1", "a2"):
        record = store.run(run_id)
        assert record is not None
        assert (record.status, record.error) == (RunStatus.FAILED, INTERRUPTED)
    untouched = store.run("b1")
    assert untouched is not None and untouched.status is RunStatus.RUNNING
    done = store.run("a0")
    assert done is not None and done.status is RunStatus.SUCCEEDED and done.error is None
    assert store.mark_abandoned("sync_a") == 0


def test_runs_newest_first(store: RunStore) -> None:
    for minute, (run_id, sync) in enumerate(
        [("r-a1", "a"), ("r-b1", "b"), ("r-a2", "a"), ("r-a3", "a"), ("r-b2", "b")]
    ):
        store.start_run(run_id, sync, full_resync=False, started_at=T0 + timedelta(minutes=minute))

    assert [r.run_id for r in store.runs()] == ["r-b2", "r-a3", "r-a2", "r-b1", "r-a1"]
    assert [r.run_id for r in store.runs("a")] == ["r-a3", "r-a2", "r-a1"]
    assert [r.run_id for r in store.runs("a", limit=2)] == ["r-a3", "r-a2"]
    last = store.last_run("b")
    assert last is not None and last.run_id == "r-b2"
    assert store.last_run("nobody") is None


def test_two_stores_on_one_sqlite_file(sqlite_url: str) -> None:
    with RunStore.open(sqlite_url) as first, RunStore.open(sqlite_url) as second:
        first.start_run("shared", "s", full_resync=False)
        seen = second.run("shared")
        assert seen is not None and seen.status is RunStatus.RUNNING

        # Both write at the same time from threads; SQLite makes them take turns.
        def write(store: RunStore, offset: int) -> None:
            for n in range(20):
                store.add_rows("shared", [outcome(offset + n)])

        threads = [
            threading.Thread(target=write, args=(first, 0)),
            threading.Thread(target=write, args=(second, 1000)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(first.row_counts("shared").values()) == 40
        assert sum(second.row_counts("shared").values()) == 40


def test_a_store_opened_while_another_creates_the_file_waits(tmp_path: Path) -> None:
    # A new file is still in rollback-journal mode while its first writer holds the write
    # lock; switching it to WAL then fails at once unless the opener waits its turn.
    path = tmp_path / "new.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE other (id INTEGER)")
    releaser = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    releaser.start()
    try:
        with RunStore.open(f"sqlite:///{path}") as store:
            store.start_run("after-the-writer", "s", full_resync=False)
            assert [r.run_id for r in store.runs()] == ["after-the-writer"]
    finally:
        releaser.join()
        writer.close()


OPEN_SCRIPT = """
import sys
from backhaul.state.store import RunStore
with RunStore.open(sys.argv[1]) as store:
    store.start_run(sys.argv[2], "s", full_resync=False)
"""


def test_processes_open_a_new_store_at_once(store_url: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_SCRIPT, store_url, f"proc-{n}"])
        for n in range(4)
    ]
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0, 0]
    with RunStore.open(store_url) as store:
        assert sorted(r.run_id for r in store.runs()) == [f"proc-{n}" for n in range(4)]


@pytest.mark.integration  # tries a Postgres connection on a closed port
def test_bad_urls_raise_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        RunStore.open("not a url")
    # Nothing listens on port 1; the password must not appear in the message.
    with pytest.raises(StoreError, match="Could not open the run store") as caught:
        RunStore.open("postgresql+psycopg://postgres:hunter22@127.0.0.1:1/x?connect_timeout=2")
    assert "hunter22" not in str(caught.value)


def test_newer_schema_is_refused(sqlite_url: str) -> None:
    RunStore.open(sqlite_url).close()
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE backhaul_schema_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreError, match="upgrade Backhaul"):
        RunStore.open(sqlite_url)


def make_call(n: int) -> HttpCall:
    return HttpCall(
        method="GET",
        url=f"http://127.0.0.1/items/{n}",
        status=200,
        latency_ms=1.0,
        call_id=f"c{n:03d}",
    )


def test_store_recorder_flushes_in_batches(store: RunStore) -> None:
    store.start_run("rec", "s", full_resync=False)
    recorder = StoreRecorder(store, "rec", flush_every=3)
    for n in range(7):
        recorder.record(make_call(n))
    assert len(store.calls("rec")) == 6  # two full batches written, one call buffered
    recorder.flush()
    assert sorted(c.call_id for c in store.calls("rec")) == [f"c{n:03d}" for n in range(7)]
    recorder.flush()  # nothing buffered: a no-op
    assert len(store.calls("rec")) == 7


async def test_store_recorder_from_many_tasks_and_threads(store: RunStore) -> None:
    store.start_run("rec", "s", full_resync=False)
    recorder = StoreRecorder(store, "rec", flush_every=7)

    async def task(base: int) -> None:
        for n in range(25):
            recorder.record(make_call(base + n))
            await asyncio.sleep(0)

    await asyncio.gather(*(task(base) for base in (0, 100, 200, 300)))
    threads = [
        threading.Thread(
            target=lambda b=base: [recorder.record(make_call(b + n)) for n in range(25)]
        )
        for base in (400, 500)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close()

    ids = [c.call_id for c in store.calls("rec", limit=1000)]
    assert len(ids) == 150
    assert len(set(ids)) == 150
    assert recorder.dropped == 0


def test_store_recorder_survives_a_failed_flush(store: RunStore) -> None:
    # The run was never started, so the store refuses the calls (foreign key).
    recorder = StoreRecorder(store, "missing-run", flush_every=2)
    recorder.record(make_call(1))
    recorder.record(make_call(2))
    assert recorder.dropped == 2
    recorder.record(make_call(3))
    with pytest.raises(IntegrityError):
        recorder.flush()
