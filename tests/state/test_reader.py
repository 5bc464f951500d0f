"""The read-only RunReader on SQLite and on Postgres: the queries the web app and the CLI
share, and a reader opened on its own next to a writing store."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

from backhaul.calls import HttpCall
from backhaul.state.reader import RunReader
from backhaul.state.store import RunStore
from backhaul.summary import RowOp
from backhaul.summary import RowOutcome
from backhaul.summary import RowStatus
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _row(key: str, op: RowOp, status: str, call_id: str | None) -> RowOutcome:
    return RowOutcome(key=key, op=op, status=status, operation="upsert", call_id=call_id)


def _call(call_id: str, second: int) -> HttpCall:
    return HttpCall(
        method="POST",
        url="https://api.example.com/batch",
        status=200,
        latency_ms=5.0,
        started_at=T0 + timedelta(seconds=second),
        call_id=call_id,
    )


def test_latest_run_of_every_sync(store: RunStore) -> None:
    for i, (run_id, sync) in enumerate([("a1", "a"), ("b1", "b"), ("a2", "a"), ("c1", "c")]):
        store.start_run(run_id, sync, full_resync=False, started_at=T0 + timedelta(minutes=i))
    store.finish_run(RunSummary(run_id="a2", sync="a", status=RunStatus.SUCCEEDED))

    latest = store.latest_runs()

    assert {sync: r.run_id for sync, r in latest.items()} == {"a": "a2", "b": "b1", "c": "c1"}
    assert latest["a"].status is RunStatus.SUCCEEDED


def test_runs_are_paged_newest_first(store: RunStore) -> None:
    for i in range(5):
        store.start_run(f"r{i}", "s", full_resync=False, started_at=T0 + timedelta(minutes=i))

    assert [r.run_id for r in store.runs(limit=2)] == ["r4", "r3"]
    assert [r.run_id for r in store.runs(limit=2, offset=2)] == ["r2", "r1"]
    assert [r.run_id for r in store.runs("s", limit=10, offset=4)] == ["r0"]


def test_rows_by_operation_and_call_and_key_search(store: RunStore) -> None:
    store.start_run("run", "s", full_resync=False)
    store.add_rows(
        "run",
        [
            _row("user-1", RowOp.ADD, "ok", "c1"),
            _row("user-2", RowOp.REMOVE, "ok", "c1"),
            _row("user-12", RowOp.ADD, "rejected", "c2"),
            _row("100%_off", RowOp.ADD, "ok", None),
        ],
    )

    assert [r.key for r in store.rows("run", op="remove")] == ["user-2"]
    assert [r.key for r in store.rows("run", call_id="c1")] == ["user-1", "user-2"]
    assert [r.key for r in store.rows("run", op="add", status="rejected")] == ["user-12"]
    # An exact key wins; otherwise any key holding the text, with LIKE characters literal.
    assert [r.key for r in store.search_rows("run", "user-1")] == ["user-1"]
    assert [r.key for r in store.search_rows("run", "ser-")] == ["user-1", "user-2", "user-12"]
    assert [r.key for r in store.search_rows("run", "%_")] == ["100%_off"]
    assert store.search_rows("run", "nobody") == []
    found = store.rows("run", key="user-12")[0]
    assert (found.status, found.op, found.call_id) == (RowStatus.REJECTED, RowOp.ADD, "c2")


def test_calls_one_by_one_with_their_rows(store: RunStore) -> None:
    store.start_run("run", "s", full_resync=False)
    store.start_run("other", "s", full_resync=False)
    store.add_calls("run", [_call("c1", 0), _call("c2", 1), _call("c3", 2)])
    store.add_rows(
        "run",
        [
            _row("k1", RowOp.ADD, "ok", "c1"),
            _row("k2", RowOp.ADD, "rejected", "c1"),
            _row("k3", RowOp.CHANGE, "ok", "c2"),
        ],
    )

    assert [c.call_id for c in store.calls("run", limit=2, offset=1)] == ["c2", "c3"]
    found = store.call("run", "c2")
    assert found == _call("c2", 1)
    assert store.call("other", "c2") is None
    assert store.call_keys("run", ["c1", "c2", "c3"], limit=100) == {
        "c1": [("k1", "ok"), ("k2", "rejected")],
        "c2": [("k3", "ok")],
    }
    assert store.call_keys("run", ["c1", "c2"], limit=1) == {"c1": [("k1", "ok")]}
    assert store.call_keys("run", [], limit=10) == {}
    assert store.call_row_counts("run", ["c1", "c2", "c3"]) == {"c1": 2, "c2": 1}
    assert store.call_row_counts("run", []) == {}


def test_a_reader_of_its_own_sees_what_the_store_wrote(store_url: str) -> None:
    with RunStore.open(store_url) as store, RunReader(store_url) as reader:
        store.start_run("run-7f3a9c", "s", full_resync=False, started_at=T0)
        store.finish_run(RunSummary(run_id="run-7f3a9c", sync="s", status=RunStatus.FAILED))

        found = reader.run("run-7f")

        assert found is not None
        assert (found.run_id, found.status) == ("run-7f3a9c", RunStatus.FAILED)
        assert reader.last_run("s") == found
        assert not hasattr(reader, "start_run")
