"""Only changes travel: unchanged runs send nothing, and exactly the changed rows are sent."""

from __future__ import annotations

from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from conftest import audit_log
from conftest import keys_of
from conftest import sqlite_audit
from conftest import sqlite_rows

MAPPINGS = [{"column": "id", "field": "id"}, {"column": "email", "field": "email"}]


def _ops(builder: Builder, run_id: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in builder.rows(run_id):
        assert row.status == "ok", row
        out.setdefault(row.op.value, set()).add(row.key)
    return out


def _change_one_percent(project: Builder) -> tuple[set[str], set[str], set[str]]:
    """Change, add and remove 100 rows each of the 10k-row ``users`` table."""
    project.sql(
        "UPDATE users SET email = 'changed' || id || '@example.com' WHERE id % 100 = 7",
        "DELETE FROM users WHERE id % 100 = 13",
        "INSERT INTO users SELECT i, 'new' || i || '@example.com', 'n', 1 "
        "FROM range(10001, 10101) t(i)",
    )
    changed = {str(i) for i in range(1, 10001) if i % 100 == 7}
    removed = {str(i) for i in range(1, 10001) if i % 100 == 13}
    added = {str(i) for i in range(10001, 10101)}
    return changed, added, removed


def test_second_run_on_unchanged_model_writes_nothing_to_sqlite(project: Builder) -> None:
    project.users(200)
    dest = project.sqlite_destination()
    project.sync("s", mode="mirror", mappings=MAPPINGS)

    first = project.run("s")
    assert first.status is RunStatus.SUCCEEDED
    assert first.counts.added == 200 and first.counts.succeeded == 200
    before = sqlite_rows(dest)
    sqlite_audit(dest)

    second = project.run("s")
    assert second.status is RunStatus.SUCCEEDED
    c = second.counts
    assert (c.queried, c.unchanged) == (200, 200)
    assert c.planned == 0 and c.succeeded == 0 and c.rejected == 0
    assert project.rows(second.run_id) == []
    assert audit_log(dest) == {"insert": set(), "update": set(), "delete": set()}
    assert sqlite_rows(dest) == before


def test_second_run_on_unchanged_model_makes_no_webhook_request(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(50)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mode="mirror", mappings=MAPPINGS)

    assert project.run("s").counts.succeeded == 50
    requests = len(receiver.calls)
    assert requests >= 1

    second = project.run("s")
    assert second.counts.planned == 0 and second.counts.succeeded == 0
    assert len(receiver.calls) == requests


def test_one_percent_changes_travel_exactly_to_sqlite(project: Builder) -> None:
    project.users(10_000)
    dest = project.sqlite_destination()
    project.sync("s", mode="mirror", mappings=MAPPINGS)
    assert project.run("s").counts.succeeded == 10_000
    sqlite_audit(dest)
    changed, added, removed = _change_one_percent(project)

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED
    c = run.counts
    assert (c.queried, c.added, c.changed, c.removed, c.unchanged) == (10_000, 100, 100, 100, 9_800)
    assert c.succeeded == 300 and c.rejected == 0
    assert _ops(project, run.run_id) == {"change": changed, "add": added, "remove": removed}
    log = audit_log(dest)
    assert {str(k) for k in log["update"]} == changed
    assert {str(k) for k in log["insert"]} == added
    assert {str(k) for k in log["delete"]} == removed
    assert sqlite_rows(dest) == project.sql("SELECT id, email FROM users ORDER BY id")


def test_one_percent_changes_travel_exactly_to_webhook(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(10_000)
    project.webhook_destination(receiver, batch_size=5_000)
    project.sync("s", destination="hook", mode="mirror", batch_size=5_000, mappings=MAPPINGS)
    assert project.run("s").counts.succeeded == 10_000
    first_requests = len(receiver.calls)
    changed, added, removed = _change_one_percent(project)

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED
    assert _ops(project, run.run_id) == {"change": changed, "add": added, "remove": removed}
    sent: dict[str, set[str]] = {}
    for request in receiver.calls[first_requests:]:
        ids = {str(r["id"]) for r in request.json["records"]}
        sent.setdefault(request.json["operation"], set()).update(ids)
    assert sent == {"upsert": changed | added, "delete": removed}
    model = dict(project.sql("SELECT id::VARCHAR, email FROM users"))
    assert {k: v["email"] for k, v in receiver.records.items()} == model


def test_changing_an_unmapped_column_sends_nothing(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(100)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=MAPPINGS)
    project.run("s")
    requests = len(receiver.calls)

    project.sql("UPDATE users SET name = 'renamed ' || id, score = score + 1")
    run = project.run("s")

    assert run.counts.changed == 0 and run.counts.unchanged == 100
    assert project.rows(run.run_id) == []
    assert len(receiver.calls) == requests


def test_mapping_a_new_column_resends_only_rows_where_it_has_a_value(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(100, extra_columns="CASE WHEN i % 10 = 0 THEN 'nick' || i END AS nick")
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=MAPPINGS)
    project.run("s")
    receiver.reset()

    project.sync("s", destination="hook", mappings=[*MAPPINGS, {"column": "nick", "field": "nick"}])
    run = project.run("s")

    with_nick = {str(i) for i in range(10, 101, 10)}
    assert run.counts.changed == 10 and run.counts.unchanged == 90
    assert keys_of(project.rows(run.run_id)) == with_nick
    assert set(receiver.records) == with_nick
    assert receiver.records["30"]["nick"] == "nick30"


def test_changing_a_static_value_resends_every_row(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(40)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=[*MAPPINGS, {"value": "crm", "field": "origin"}])
    project.run("s")
    receiver.reset()

    project.sync(
        "s", destination="hook", mappings=[*MAPPINGS, {"value": "warehouse", "field": "origin"}]
    )
    run = project.run("s")

    assert run.counts.changed == 40 and run.counts.succeeded == 40
    assert len(receiver.records) == 40
    assert {r["origin"] for r in receiver.records.values()} == {"warehouse"}


def test_changing_a_cast_resends(project: Builder, receiver: WebhookReceiver) -> None:
    project.users(30)
    project.webhook_destination(receiver)
    score = {"column": "score", "field": "score"}
    project.sync("s", destination="hook", mappings=[*MAPPINGS, score])
    project.run("s")
    receiver.reset()

    project.sync("s", destination="hook", mappings=[*MAPPINGS, {**score, "cast": "string"}])
    run = project.run("s")

    assert run.counts.changed == 30
    assert receiver.records["5"]["score"] == "5"
    assert all(isinstance(r["score"], str) for r in receiver.records.values())
