"""Honest outcomes: run statuses, skipped rows, and counts of what was delivered."""

from __future__ import annotations

import socket

import pytest

from backhaul import api
from backhaul.summary import SKIP_INSERT
from backhaul.summary import SKIP_REMOVE
from backhaul.summary import RowStatus
from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver
from backhaul.web.charts import run_history_svg
from backhaul.web.pages import chart_run
from conftest import Builder

MAPPINGS = [{"column": "id", "field": "id"}, {"column": "email", "field": "email"}]
CAST = [{"column": "id", "field": "id"}, {"column": "email", "field": "n", "cast": "int"}]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_run_whose_every_row_is_invalid_has_failed(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(6)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=CAST)  # no email casts to int

    run = project.run("s")

    assert run.counts.invalid == 6 and run.counts.succeeded == 0
    assert run.status is RunStatus.FAILED and run.exit_code == 1
    assert run.error is not None and "nothing valid could be delivered" in run.error
    assert f"backhaul run-show {run.run_id}" in run.error
    assert receiver.calls == []


def test_some_invalid_rows_make_a_partial_run(project: Builder, receiver: WebhookReceiver) -> None:
    project.users(6)
    project.sql("UPDATE users SET email = '42' WHERE id <= 2")
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=CAST)

    run = project.run("s")

    assert (run.counts.succeeded, run.counts.invalid) == (2, 4)
    assert run.status is RunStatus.PARTIAL and run.exit_code == 3
    assert run.error is None
    assert sorted(receiver.records) == ["1", "2"]


def test_every_record_rejected_on_a_first_run_has_failed(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(3)
    receiver.faults.reject({"1": "no", "2": "no", "3": "no"})
    project.webhook_destination(receiver)
    project.sync("s", destination="hook")

    run = project.run("s")

    assert run.counts.rejected == 3 and run.counts.succeeded == 0
    assert run.status is RunStatus.FAILED
    assert run.error is not None and "3 rejected by the destination" in run.error


def test_removals_in_upsert_mode_are_skipped_with_their_reason_not_sent(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(5)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook")  # upsert: on_remove defaults to nothing
    assert project.run("s").counts.succeeded == 5
    receiver.reset()
    project.sql(
        "DELETE FROM users WHERE id IN (4, 5)", "UPDATE users SET email = 'x@y' WHERE id = 1"
    )

    run = project.run("s")

    c = run.counts
    assert (c.removed, c.skipped, c.succeeded, c.delivered_changed, c.delivered_removed) == (
        2,
        2,
        1,
        1,
        0,
    )
    assert run.status is RunStatus.SUCCEEDED
    skipped = project.rows(run.run_id, status=RowStatus.SKIPPED)
    assert sorted(r.key for r in skipped) == ["4", "5"]
    assert {r.error for r in skipped} == {SKIP_REMOVE}
    assert all(r.status is RowStatus.SKIPPED and r.operation is None for r in skipped)
    assert project.rows(run.run_id, status=RowStatus.OK)[0].key == "1"
    sent = [rec["id"] for r in receiver.calls for rec in r.json["records"]]
    assert sent == [1]
    # The snapshot forgot them: the next run has nothing to do.
    assert project.plan("s").counts.removed == 0


def test_insert_mode_changes_are_skipped_with_their_reason(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(3)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mode="insert")
    project.run("s")
    project.sql("UPDATE users SET email = 'new@x' WHERE id = 2")

    run = project.run("s")

    assert (run.counts.changed, run.counts.skipped, run.counts.succeeded) == (1, 1, 0)
    assert run.status is RunStatus.SUCCEEDED
    [row] = project.rows(run.run_id, status=RowStatus.SKIPPED)
    assert (row.key, row.error) == ("2", SKIP_INSERT)


@pytest.mark.integration
def test_a_run_that_failed_before_sending_shows_nothing_delivered(project: Builder) -> None:
    project.users(50)
    project.destination(
        "hook",
        type="webhook",
        url=f"http://127.0.0.1:{_closed_port()}/h",
        mode="batch",
        retry={"max_attempts": 1},
    )
    project.sync("s", destination="hook")

    run = project.run("s")

    assert run.status is RunStatus.FAILED
    assert run.counts.added == 50  # planned
    assert run.counts.succeeded == run.counts.delivered_added == 0
    with api.open_store(project.load()) as store:
        record = store.last_run("s")
    assert record is not None
    bar = chart_run(record, with_sync=False)
    assert (bar.added, bar.changed, bar.removed, bar.total) == (0, 0, 0, 0)
    svg = str(run_history_svg([bar], title="runs"))
    assert "added 0" in svg and "added 50" not in svg
    # The CLI's run list says the same: 50 planned, none added.
    out = project.cli("runs", "s").stdout
    row = next(ln for ln in out.splitlines() if run.run_id[:8] in ln)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[4:8] == ["50", "50", "0", "0"]  # queried, planned, added, changed
