"""Invalid rows never leave: null and duplicate keys, failed casts and template errors."""

from __future__ import annotations

import pytest

from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from conftest import sqlite_rows

pytestmark = pytest.mark.integration

MAPPINGS = [{"column": "id", "field": "id"}, {"column": "email", "field": "email"}]


def _invalid(project: Builder, run_id: str) -> dict[str, str]:
    rows = project.rows(run_id, status="invalid")
    return {r.key: r.error or "" for r in rows}


def _sent_ids(receiver: WebhookReceiver) -> list[int]:
    return sorted(rec["id"] for r in receiver.calls for rec in r.json["records"])


def test_null_and_duplicate_keys_are_reported_and_never_sent(project: Builder) -> None:
    project.model(
        "users",
        "SELECT * FROM (VALUES (1, 'a@x'), (2, 'b@x'), (2, 'b2@x'), (NULL, 'nokey@x'), "
        "(3, 'c@x'), (4, 'd@x'), (4, 'd2@x'), (4, 'd3@x')) t(id, email)",
    )
    dest = project.sqlite_destination()
    project.sync("s", mappings=MAPPINGS)

    plan = project.plan("s")
    run = project.run("s")

    # The plan, the run's summary and the store name each invalid key alike ("(null)").
    assert sorted(map(str, plan.invalid_samples)) == sorted(map(str, run.invalid_samples))
    assert {"key": "(null)", "reason": "null primary key"} in run.invalid_samples
    assert run.exit_code == 3
    assert run.counts.invalid == 6  # 2 + 1 + 3 rows
    assert run.counts.succeeded == 2
    invalid = _invalid(project, run.run_id)
    assert set(invalid) == {"2", "4", "(null)"}
    assert invalid["(null)"] == "null primary key"
    assert invalid["2"].startswith("duplicate primary key") and "2 rows" in invalid["2"]
    assert "3 rows" in invalid["4"]
    assert sqlite_rows(dest) == [(1, "a@x"), (3, "c@x")]
    # Still invalid next time, still never sent; nothing else is resent.
    again = project.run("s")
    assert again.counts.invalid == 6 and again.counts.succeeded == 0
    assert sqlite_rows(dest) == [(1, "a@x"), (3, "c@x")]


def test_composite_key_with_a_null_part_is_invalid(project: Builder) -> None:
    project.model(
        "users",
        "SELECT * FROM (VALUES (1, 1, 'a'), (1, NULL, 'b'), (2, 1, 'c')) t(org, id, email)",
        primary_key=["org", "id"],
    )
    dest = project.sqlite_destination()
    project.sync("s", mappings=[{"column": "org", "field": "org"}, *MAPPINGS])

    run = project.run("s")

    assert _invalid(project, run.run_id) == {"(1, null)": "null primary key"}
    assert sqlite_rows(dest, order="org, id") == [(1, 1, "a"), (2, 1, "c")]


def test_failed_cast_is_invalid_with_a_reason_naming_the_column(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.model("users", "SELECT * FROM (VALUES (1, '10'), (2, 'abc'), (3, '30')) t(id, age)")
    project.webhook_destination(receiver)
    project.sync(
        "s",
        destination="hook",
        mappings=[
            {"column": "id", "field": "id"},
            {"column": "age", "field": "age", "cast": "int"},
        ],
    )

    run = project.run("s")

    assert run.exit_code == 3 and run.counts.invalid == 1
    invalid = _invalid(project, run.run_id)
    assert list(invalid) == ["2"]
    assert "`age`" in invalid["2"] and "abc" in invalid["2"] and "int" in invalid["2"]
    assert _sent_ids(receiver) == [1, 3]
    assert receiver.records["3"]["age"] == 30

    # Once fixed in the warehouse, the row goes out.
    project.model("users", "SELECT * FROM (VALUES (1, '10'), (2, '20'), (3, '30')) t(id, age)")
    fixed = project.run("s")
    assert fixed.counts.invalid == 0 and fixed.counts.added == 1
    assert receiver.records["2"]["age"] == 20


def test_template_error_is_invalid_and_not_sent(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.model("users", "SELECT * FROM (VALUES (1, 2), (2, 0), (3, 5)) t(id, parts)")
    project.webhook_destination(receiver)
    project.sync(
        "s",
        destination="hook",
        mappings=[
            {"column": "id", "field": "id"},
            {"template": "{{ 10 | divided_by: parts }}", "field": "share"},
        ],
    )

    run = project.run("s")

    assert run.exit_code == 3 and run.counts.invalid == 1
    invalid = _invalid(project, run.run_id)
    assert list(invalid) == ["2"]
    assert "share" in invalid["2"] and "divide" in invalid["2"]
    assert _sent_ids(receiver) == [1, 3]
    assert receiver.records["1"]["share"] == "5"


def test_template_cast_failure_is_invalid(project: Builder, receiver: WebhookReceiver) -> None:
    project.model("users", "SELECT * FROM (VALUES (1, '7'), (2, 'seven')) t(id, n)")
    project.webhook_destination(receiver)
    project.sync(
        "s",
        destination="hook",
        mappings=[
            {"column": "id", "field": "id"},
            {"template": "{{ n }}", "field": "n", "cast": "int"},
        ],
    )

    run = project.run("s")

    invalid = _invalid(project, run.run_id)
    assert list(invalid) == ["2"] and "`n`" in invalid["2"]
    assert receiver.records == {"1": {"id": 1, "n": 7}}


def test_counts_of_a_run_with_template_errors_add_up(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.model("users", "SELECT * FROM (VALUES (1, 2), (2, 0)) t(id, parts)")
    project.webhook_destination(receiver)
    project.sync(
        "s",
        destination="hook",
        mappings=[
            {"column": "id", "field": "id"},
            {"template": "{{ 10 | divided_by: parts }}", "field": "share"},
        ],
    )

    run = project.run("s")

    c = run.counts
    assert (c.queried, c.invalid, c.succeeded) == (2, 1, 1)
    assert c.added == 1
    assert c.queried == c.added + c.changed + c.retried + c.unchanged + c.invalid


def test_template_error_reason_is_one_line(project: Builder, receiver: WebhookReceiver) -> None:
    project.model("users", "SELECT * FROM (VALUES (1, 0)) t(id, parts)")
    project.webhook_destination(receiver)
    project.sync(
        "s",
        destination="hook",
        mappings=[
            {"column": "id", "field": "id"},
            {"template": "{{ 10 | divided_by: parts }}", "field": "share"},
        ],
    )

    run = project.run("s")

    reason = _invalid(project, run.run_id)["1"]
    assert "divide" in reason
    assert "\n" not in reason.strip()


# DuckDB holds dates Python cannot: ±infinity and years past 9999.
TEMPORALS = (
    "SELECT * FROM (VALUES (1, 'infinity'::TIMESTAMP), (2, '-infinity'::TIMESTAMP), "
    "(3, '10000-01-01'::TIMESTAMP), (4, '9999-12-31 23:59:59'::TIMESTAMP), "
    "(5, '0001-01-01'::TIMESTAMP)) t(id, seen_at)"
)
AT = [{"column": "id", "field": "id"}, {"column": "seen_at", "field": "seen_at"}]


def test_dates_python_cannot_hold_are_invalid_rows_and_the_rest_is_sent(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.model("users", TEMPORALS)
    dest = project.table_and_hook_syncs(receiver, AT)

    plan = project.plan("to_db")
    assert plan.counts.invalid == 3 and plan.counts.added == 2
    for sync in ("to_db", "to_hook"):
        run = project.run(sync)
        assert run.status.value == "partial", run.error
        assert run.counts.invalid == 3 and run.counts.succeeded == 2
        invalid = _invalid(project, run.run_id)
        assert set(invalid) == {"1", "2", "3"}
        assert invalid["1"].startswith(
            "column `seen_at` holds infinity, a date outside the years 1"
        )
        assert invalid["2"].startswith("column `seen_at` holds -infinity")
        assert invalid["3"].startswith("column `seen_at` holds 10000-01-01 00:00:00")
    assert sorted(r[0] for r in sqlite_rows(dest)) == [4, 5]
    sent = {rec["id"]: rec["seen_at"] for call in receiver.calls for rec in call.json["records"]}
    assert sent == {4: "9999-12-31T23:59:59", 5: "0001-01-01T00:00:00"}


def test_a_duckdb_table_takes_them_as_they_are_and_a_template_does_not(project: Builder) -> None:
    project.model("users", TEMPORALS)
    project.destination("lake", type="duckdb", path="lake.duckdb", table="t", create_table=True)
    project.sync("as_is", destination="lake", mappings=AT)
    as_is = project.run("as_is")
    assert as_is.counts.succeeded == 5 and as_is.counts.invalid == 0
    templated = [*AT[:1], {"template": "since {{ seen_at }}", "field": "since"}]
    project.destination("lake2", type="duckdb", path="lake2.duckdb", table="t", create_table=True)
    project.sync("templated", destination="lake2", mappings=templated)
    run = project.run("templated")
    assert run.counts.succeeded == 2 and run.counts.invalid == 3
    assert _invalid(project, run.run_id)["1"].startswith(
        "column `seen_at` (read by a template) holds infinity"
    )
    import duckdb

    with duckdb.connect(str(project.root / "lake.duckdb"), read_only=True) as con:
        stored = dict(con.execute("SELECT id, CAST(seen_at AS VARCHAR) FROM t").fetchall())
    assert stored[1] == "infinity" and stored[2] == "-infinity"
    assert stored[3].startswith("10000-01-01")
