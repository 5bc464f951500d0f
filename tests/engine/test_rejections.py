"""Rejected records: the rest is committed, rejections are shown, kept and retried."""

from __future__ import annotations

import json

import psycopg
from typer.testing import CliRunner

from backhaul.cli.app import app
from backhaul.summary import RunStatus
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from conftest import keys_of

MAPPINGS = [{"column": "id", "field": "id"}, {"column": "email", "field": "email"}]
REFUSED = {"3": "email domain is blocked", "7": "contact is archived"}


def _cli(project: Builder, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args, "-C", str(project.root)])
    return result.exit_code, result.stdout, result.stderr


def _sent_ids(receiver: WebhookReceiver, start: int) -> list[str]:
    return sorted(str(rec["id"]) for r in receiver.calls[start:] for rec in r.json["records"])


def test_webhook_rejections_are_kept_shown_and_retried(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(10)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=MAPPINGS)
    project.run("s")  # everything delivered once
    project.sql("UPDATE users SET email = 'v2-' || email")
    receiver.faults.reject(REFUSED)
    start = len(receiver.calls)

    code, out, _ = _cli(project, "run", "s", "--json")

    assert code == 3
    [summary] = json.loads(out)
    assert summary["status"] == "partial"
    assert summary["counts"]["succeeded"] == 8 and summary["counts"]["rejected"] == 2
    records = receiver.records
    assert {k for k, r in records.items() if r["email"].startswith("v2-")} == (
        {str(i) for i in range(1, 11)} - set(REFUSED)
    )
    assert records["3"]["email"] == "u3@example.com"

    code, shown, _ = _cli(project, "run-show", summary["run_id"][:8])
    assert code == 0
    for key, error in REFUSED.items():
        line = next(ln for ln in shown.splitlines() if error in ln)
        assert f" {key} " in f" {line} "
    assert "partial" in shown

    # The snapshot advanced for the 8 acknowledged rows only: the 2 others are still pending.
    plan = project.plan("s")
    assert (plan.counts.planned, plan.counts.unchanged) == (2, 8)

    start = len(receiver.calls)
    second = project.run("s")
    assert second.counts.planned == 2 and second.counts.rejected == 2
    assert _sent_ids(receiver, start) == ["3", "7"]
    retried = project.rows(second.run_id, status="rejected")
    assert {r.key: r.error for r in retried} == REFUSED

    receiver.reset()  # the receiver accepts them now
    third = project.run("s")
    assert third.status is RunStatus.SUCCEEDED
    assert third.counts.planned == 2 and third.counts.succeeded == 2
    assert sorted(receiver.records) == ["3", "7"]
    assert receiver.records["7"]["email"] == "v2-u7@example.com"

    start = len(receiver.calls)
    fourth = project.run("s")
    assert fourth.counts.planned == 0
    assert len(receiver.calls) == start


def test_rejected_new_rows_stay_pending_until_accepted(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(6)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=MAPPINGS)
    receiver.faults.reject({"2": "bad record"})

    first = project.run("s")
    assert first.status is RunStatus.PARTIAL and first.exit_code == 3
    assert keys_of(project.rows(first.run_id, status="rejected")) == {"2"}
    assert sorted(receiver.records) == ["1", "3", "4", "5", "6"]

    receiver.reset()
    second = project.run("s")
    assert second.counts.planned == 1 and second.counts.succeeded == 1
    assert sorted(receiver.records) == ["2"]
    assert project.run("s").counts.planned == 0


def test_postgres_check_constraint_rejects_some_rows_and_writes_the_rest(
    project: Builder, pg_db: str
) -> None:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE contacts (id BIGINT PRIMARY KEY, email TEXT, "
            "score BIGINT CONSTRAINT score_below_90 CHECK (score < 90))"
        )
    project.users(100)  # score = id % 97: ids 90..96 break the constraint
    project.destination("pg", type="postgres", url=pg_db, table="contacts")
    project.sync(
        "s",
        destination="pg",
        mappings=[*MAPPINGS, {"column": "score", "field": "score"}],
    )

    run = project.run("s")

    bad = {str(i) for i in range(90, 97)}
    assert run.status is RunStatus.PARTIAL
    assert (run.counts.succeeded, run.counts.rejected) == (93, 7)
    rejected = project.rows(run.run_id, status="rejected")
    assert keys_of(rejected) == bad
    assert all("score_below_90" in (r.error or "") for r in rejected)
    with psycopg.connect(pg_db) as conn:
        rows = conn.execute("SELECT id, email, score FROM contacts ORDER BY id").fetchall()
    expected = project.sql("SELECT id, email, score FROM users WHERE score < 90 ORDER BY id")
    assert rows == expected

    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE contacts DROP CONSTRAINT score_below_90")
    again = project.run("s")
    assert again.counts.planned == 7 and again.counts.succeeded == 7
    with psycopg.connect(pg_db) as conn:
        count = conn.execute("SELECT count(*) FROM contacts").fetchall()[0][0]
    assert count == 100
    assert project.run("s").counts.planned == 0


def test_a_rejected_delete_stays_pending_and_is_retried(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(20)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mode="mirror", mappings=MAPPINGS)
    project.run("s")
    project.sql("DELETE FROM users WHERE id IN (4, 5)")
    receiver.faults.reject({"4": "record is locked"})

    first = project.run("s")

    assert first.status is RunStatus.PARTIAL
    assert {r.key: r.error for r in project.rows(first.run_id, status="rejected")} == {
        "4": "record is locked"
    }
    assert "4" in receiver.records and "5" not in receiver.records

    second = project.run("s")
    assert second.counts.planned == 1 and second.counts.rejected == 1
    assert keys_of(project.rows(second.run_id)) == {"4"}

    receiver.reset()  # accepts every key again
    third = project.run("s")
    assert third.status is RunStatus.SUCCEEDED and third.counts.succeeded == 1
    assert [(r.json["operation"], r.json["records"]) for r in receiver.calls] == [
        ("delete", [{"id": 4}])
    ]
    assert project.run("s").counts.planned == 0
