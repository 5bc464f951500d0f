"""Group commits and the recorded-body policy, through real runs to a webhook on loopback."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event

from backhaul import api
from backhaul.calls import HttpCall
from backhaul.engine.commits import NOT_KEPT
from backhaul.engine.commits import SAMPLE_FIRST
from backhaul.engine.commits import BodyPolicy
from backhaul.engine.runner import run_sync
from backhaul.state.store import RunStore
from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder

ROWS = 300
BATCH = 10  # 30 calls: more than the first SAMPLE_FIRST kept whole


def test_every_rejected_row_keeps_its_call_body_and_accepted_calls_are_sampled(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(ROWS)
    refused = {"7": "bad email", "255": "bad email", "283": "blocked"}
    receiver.faults.reject(refused)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", batch_size=BATCH, concurrency=4)

    run = project.run("s")

    assert run.counts.succeeded == ROWS - len(refused)
    assert run.counts.rejected == len(refused)
    assert len(receiver.calls) == ROWS // BATCH
    with api.open_store(project.load()) as store:
        calls = store.calls(run.run_id, limit=1000)
        rejected = store.rows(run.run_id, status="rejected", limit=1000)
        assert len(calls) == ROWS // BATCH
        # The debugger shows every rejected row's call with the body that carried it.
        assert {r.key for r in rejected} == set(refused)
        for row in rejected:
            assert row.call_id is not None
            call = store.call(run.run_id, row.call_id)
            assert call is not None and call.request_body is not None
            assert f'"id":{row.key},' in call.request_body
            assert call.response_body is not None and NOT_KEPT not in call.response_body
    whole = [c for c in calls if c.request_body != NOT_KEPT]
    stripped = [c for c in calls if c.request_body == NOT_KEPT]
    # The first all-accepted calls and those that carried a refusal are whole; the rest
    # keep everything but their bodies.
    assert len(whole) == SAMPLE_FIRST + len({r.call_id for r in rejected})
    assert len(stripped) == ROWS // BATCH - len(whole)
    for call in stripped:
        assert call.status == 200 and call.response_body == NOT_KEPT
        assert call.url == receiver.url and call.latency_ms >= 0


def test_a_run_commits_to_the_run_store_once_per_group_not_twice_per_batch(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(ROWS)
    project.webhook_destination(receiver, concurrency=1)
    project.sync("s", destination="hook", batch_size=BATCH, concurrency=1)
    loaded = project.load()
    commits = 0

    def count(*_args: object) -> None:
        nonlocal commits
        commits += 1

    store = RunStore.open(loaded.metadata_url)
    event.listen(store.engine, "commit", count)
    try:
        run = run_sync(loaded, "s", store=store)
    finally:
        store.close()
    assert run.status is RunStatus.SUCCEEDED and run.counts.succeeded == ROWS
    batches = ROWS // BATCH
    # Outcomes and counts used to be two commits per batch; now one per group (a batch
    # alone at concurrency 1) and a few for the run's start and finish.
    assert commits <= batches + 5
    assert sorted(receiver.records, key=int) == [str(i) for i in range(1, ROWS + 1)]


def test_body_policy_keeps_failures_refusals_and_a_sample() -> None:
    policy = BodyPolicy(first=2, every=3)

    def call(i: int, status: int | None = 200, error: str | None = None) -> HttpCall:
        return HttpCall(
            "POST",
            "http://h/x",
            status,
            1.0,
            request_body=f"b{i}",
            response_body="{}",
            error=error,
            call_id=f"c{i}",
        )

    calls = [call(i) for i in range(8)] + [call(8, 500), call(9, None, "timed out")]
    kept = policy.apply(calls, refused={"c5"})
    bodies = {c.call_id: c.request_body for c in kept}
    # c0, c1: the first two accepted calls; c5 carried a refused row; c8, c9 failed.
    assert bodies["c0"] == "b0" and bodies["c1"] == "b1"
    assert bodies["c5"] == "b5" and bodies["c8"] == "b8" and bodies["c9"] == "b9"
    sampled = [c for c in ("c2", "c3", "c4", "c6", "c7") if bodies[c] != NOT_KEPT]
    assert sampled == ["c2", "c6"]  # the 3rd and 6th accepted calls (c5 does not count)
    assert [bodies[c] for c in ("c3", "c4", "c7")] == [NOT_KEPT] * 3
    assert [c.call_id for c in kept] == [c.call_id for c in calls]  # order and count kept


def test_store_records_a_group_in_one_transaction(tmp_path: Path) -> None:
    import pyarrow as pa

    from backhaul.summary import Counts

    store = RunStore.open(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        store.start_run("r1", "s", full_resync=False)
        table = pa.table(
            {
                "key": ["1", "2"],
                "op": ["add", "add"],
                "status": ["ok", "rejected"],
                "error": [None, "no"],
                "operation": ["upsert", "upsert"],
                "call_id": ["c1", "c1"],
            }
        )
        commits = 0

        def count(*_args: object) -> None:
            nonlocal commits
            commits += 1

        event.listen(store.engine, "commit", count)
        counts = Counts(succeeded=1, rejected=1)
        call = HttpCall("POST", "http://h/x", 200, 2.0, call_id="c1")
        store.record_batches("r1", [table, table.slice(0, 1)], [call], counts, wait_s=0.5)
        assert commits == 1
        assert [r.key for r in store.rows("r1", limit=10)] == ["1", "2", "1"]
        assert store.call("r1", "c1") is not None
        record = store.run("r1")
        assert record is not None and record.counts.succeeded == 1
    finally:
        store.close()
