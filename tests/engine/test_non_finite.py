"""NaN, ±Infinity and -0.0 through real syncs: nothing but valid JSON leaves.

Every body the webhook receiver got is parsed again here with a strict parser that refuses
bare ``NaN``/``Infinity`` tokens (Python's own parser accepts them).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from backhaul.calls import MemoryRecorder
from backhaul.destinations.http import HttpClient
from backhaul.destinations.http import dumps_json
from backhaul.errors import ConfigError
from backhaul.errors import ConfigErrors
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.floats import NonFiniteError
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator
from backhaul.testing.receiver import WebhookReceiver
from backhaul.testing.receiver import strict_json
from conftest import Builder
from conftest import keys_of
from conftest import sqlite_dicts

pytestmark = pytest.mark.integration

# id 1 is plain, 2-4 hold a non-finite score, 5 holds -0.0, 6 a NaN inside a list,
# 7 a NaN inside JSON text cast to json.
MODEL = """
SELECT * FROM (VALUES
    (1, 'a@x.io', 1.5::DOUBLE, [1.0]::DOUBLE[], '{"k": 1}'),
    (2, 'b@x.io', 'nan'::DOUBLE, [2.0]::DOUBLE[], '{"k": 2}'),
    (3, 'c@x.io', 'inf'::DOUBLE, [3.0]::DOUBLE[], '{"k": 3}'),
    (4, 'd@x.io', '-inf'::DOUBLE, [4.0]::DOUBLE[], '{"k": 4}'),
    (5, 'e@x.io', '-0.0'::DOUBLE, ['-0.0'::DOUBLE], '{"k": -0.0}'),
    (6, 'f@x.io', 6.0::DOUBLE, [1.0, 'nan'::DOUBLE]::DOUBLE[], '{"k": 6}'),
    (7, 'g@x.io', 7.0::DOUBLE, [7.0]::DOUBLE[], '{"k": NaN, "s": "NaN is text here"}')
) AS t(id, email, score, series, doc)
"""
MAPPINGS = [
    {"column": "id", "field": "id"},
    {"column": "email", "field": "email"},
    {"column": "score", "field": "score"},
    {"column": "series", "field": "series"},
    {"column": "doc", "field": "doc", "cast": "json"},
]


def strict_records(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    """Every record the receiver got, each body parsed strictly (a bare NaN fails here)."""
    records: list[dict[str, Any]] = []
    for request in receiver.calls:
        body = strict_json(request.body)
        records.extend(body["records"])
    return records


def sync(project: Builder, receiver: WebhookReceiver, **extra: Any) -> None:
    project.model("users", MODEL)
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=MAPPINGS, **extra)


def test_non_finite_rows_are_invalid_and_only_valid_json_is_sent(
    project: Builder, receiver: WebhookReceiver
) -> None:
    sync(project, receiver)

    run = project.run("s")

    # Some rows delivered, some invalid: a partial run (exit code 3).
    assert run.status is RunStatus.PARTIAL and run.exit_code == 3, run.error
    assert run.counts.invalid == 5 and run.counts.succeeded == 2
    reasons = {o.key: o.error or "" for o in project.rows(run.run_id, status="invalid")}
    assert reasons["2"].startswith("column `score` holds NaN: JSON has no such number")
    assert reasons["3"].startswith("column `score` holds Infinity")
    assert reasons["4"].startswith("column `score` holds -Infinity")
    assert reasons["6"].startswith("column `series` holds NaN or Infinity inside its value")
    assert reasons["7"].startswith("column `doc` holds NaN or Infinity inside its value")
    assert all("non_finite: null" in r for r in reasons.values())
    sent = {r["id"]: r for r in strict_records(receiver)}
    assert set(sent) == {1, 5}
    assert set(receiver.records) == {"1", "5"}
    # -0.0 keeps its sign on the wire, in a list and inside JSON text.
    assert b'"score":-0.0' in receiver.calls[0].body
    assert math.copysign(1.0, sent[5]["score"]) == -1.0
    assert math.copysign(1.0, sent[5]["series"][0]) == -1.0
    assert math.copysign(1.0, sent[5]["doc"]["k"]) == -1.0


def test_null_policy_sends_null_in_their_place(project: Builder, receiver: WebhookReceiver) -> None:
    sync(project, receiver, non_finite="null")

    run = project.run("s")

    assert run.counts.invalid == 0 and run.counts.succeeded == 7, run.error
    sent = {r["id"]: r for r in strict_records(receiver)}
    assert [sent[i]["score"] for i in (2, 3, 4)] == [None, None, None]
    assert sent[6]["series"] == [1.0, None]
    assert sent[7]["doc"] == {"k": None, "s": "NaN is text here"}
    assert sent[1]["score"] == 1.5


def test_string_policy_sends_their_names(project: Builder, receiver: WebhookReceiver) -> None:
    sync(project, receiver, non_finite="string")

    run = project.run("s")

    assert run.counts.invalid == 0 and run.counts.succeeded == 7, run.error
    sent = {r["id"]: r for r in strict_records(receiver)}
    assert [sent[i]["score"] for i in (2, 3, 4)] == ["NaN", "Infinity", "-Infinity"]
    assert sent[6]["series"] == [1.0, "NaN"]
    assert sent[7]["doc"]["k"] == "NaN"
    assert math.copysign(1.0, sent[5]["score"]) == -1.0


def test_changing_the_policy_resends_only_the_rows_it_affects(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.model(
        "users",
        "SELECT * FROM (VALUES (1, 1.5::DOUBLE), (2, 'nan'::DOUBLE)) AS t(id, score)",
    )
    project.webhook_destination(receiver)
    maps = [{"column": "id", "field": "id"}, {"column": "score", "field": "score"}]
    project.sync("s", destination="hook", mappings=maps, non_finite="null")
    assert project.run("s").counts.succeeded == 2
    project.sync("s", destination="hook", mappings=maps, non_finite="string")

    again = project.run("s")

    assert (again.counts.changed, again.counts.unchanged) == (1, 1)
    assert receiver.records["2"]["score"] == "NaN"


def test_a_change_from_zero_to_negative_zero_is_sent(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.sql("CREATE TABLE t AS SELECT 1 AS id, 0.0::DOUBLE AS score")
    project.model("users", "SELECT * FROM t")
    project.webhook_destination(receiver)
    maps = [{"column": "id", "field": "id"}, {"column": "score", "field": "score"}]
    project.sync("s", destination="hook", mappings=maps)
    assert project.run("s").counts.added == 1
    # (DuckDB's UPDATE keeps 0.0 when given -0.0, which compares equal: replace the table.)
    project.sql("CREATE OR REPLACE TABLE t AS SELECT 1 AS id, '-0.0'::DOUBLE AS score")

    second = project.run("s")

    assert second.counts.changed == 1
    assert math.copysign(1.0, receiver.records["1"]["score"]) == -1.0
    assert b'"score":-0.0' in receiver.calls[-1].body


def test_a_template_that_renders_nan_makes_its_row_invalid(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.model(
        "users", "SELECT * FROM (VALUES (1, '2.5'), (2, 'nan'), (3, '-0')) AS t(id, ratio)"
    )
    project.webhook_destination(receiver)
    maps = [
        {"column": "id", "field": "id"},
        {"template": "{{ ratio }}", "field": "ratio", "cast": "float"},
    ]
    project.sync("s", destination="hook", mappings=maps)

    run = project.run("s")

    invalid = project.rows(run.run_id, status="invalid")
    assert keys_of(invalid) == {"2"}
    assert invalid[0].error is not None
    assert invalid[0].error.startswith("the template for `ratio` holds NaN")
    sent = {r["id"]: r for r in strict_records(receiver)}
    assert set(sent) == {1, 3} and sent[1]["ratio"] == 2.5
    assert math.copysign(1.0, sent[3]["ratio"]) == -1.0


def test_dry_run_counts_them_as_invalid_too(project: Builder, receiver: WebhookReceiver) -> None:
    sync(project, receiver)

    plan = project.plan("s")

    assert plan.counts.invalid == 5
    assert {r["key"] for r in plan.invalid_samples} == {"2", "3", "4", "6", "7"}


def test_warehouse_planner_screens_them_the_same_way(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.sql(f"CREATE TABLE nums AS {MODEL}")
    project.model("users", "SELECT * FROM nums")
    project.webhook_destination(receiver)
    project.sync("s", destination="hook", mappings=MAPPINGS, planner="warehouse")

    run = project.run("s")

    assert run.counts.invalid == 5 and run.counts.succeeded == 2, run.error
    assert {r["id"] for r in strict_records(receiver)} == {1, 5}


def test_warehouse_planner_resends_when_the_policy_changes(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.sql("CREATE TABLE nums AS SELECT * FROM (VALUES (1, 1.5), (2, 'nan'::DOUBLE)) t(id, x)")
    project.model("users", "SELECT id, x::DOUBLE AS score FROM nums")
    project.webhook_destination(receiver)
    maps = [{"column": "id", "field": "id"}, {"column": "score", "field": "score"}]
    project.sync("s", destination="hook", mappings=maps, planner="warehouse", non_finite="null")
    assert project.run("s").counts.added == 2
    project.sync("s", destination="hook", mappings=maps, planner="warehouse", non_finite="string")

    again = project.run("s")

    assert again.counts.changed == 2, again.error
    assert receiver.records["2"]["score"] == "NaN"


# -- destinations that store floats -------------------------------------------------------


def test_sqlite_refuses_them_by_default_and_takes_null(project: Builder) -> None:
    project.model(
        "users", "SELECT * FROM (VALUES (1, 'nan'::DOUBLE), (2, '-0.0'::DOUBLE)) t(id, score)"
    )
    path = project.sqlite_destination()
    maps = [{"column": "id", "field": "id"}, {"column": "score", "field": "score"}]
    project.sync("s", mappings=maps)

    first = project.run("s")

    assert keys_of(project.rows(first.run_id, status="invalid")) == {"1"}
    project.sync("s", mappings=maps, non_finite="null")
    project.run("s")
    assert [r["score"] for r in sqlite_dicts(path)] == [None, 0.0]


def test_string_policy_needs_a_json_destination(project: Builder) -> None:
    project.users(2)
    project.sqlite_destination()
    project.sync("s", non_finite="string")

    run = project.run("s")

    # Refused by the checks before anything ran: a failed run carrying the one line.
    assert run.status is RunStatus.FAILED and run.exit_code == 2
    [line] = run.problems
    assert ": non_finite: " in line
    assert "needs a destination that sends records as JSON" in line
    assert not project.state_file("s").exists()


def test_postgres_stores_them_as_they_are(project: Builder, pg_db: str) -> None:
    project.model(
        "users",
        "SELECT * FROM (VALUES (1, 'nan'::DOUBLE), (2, 'inf'::DOUBLE), (3, '-0.0'::DOUBLE)) "
        "t(id, score)",
    )
    project.destination("pg", type="postgres", url=pg_db, table="nums", create_table=True)
    maps = [{"column": "id", "field": "id"}, {"column": "score", "field": "score"}]
    project.sync("s", destination="pg", mappings=maps)

    run = project.run("s")

    assert run.counts.succeeded == 3 and run.counts.invalid == 0, run.error
    with psycopg.connect(pg_db) as conn:
        rows = conn.execute("SELECT id, score::text FROM nums ORDER BY id").fetchall()
    assert rows == [(1, "NaN"), (2, "Infinity"), (3, "-0")]


# -- the JSON encoder and vendors ----------------------------------------------------------


def test_the_encoder_refuses_bare_tokens_with_the_path() -> None:
    with pytest.raises(NonFiniteError) as caught:
        dumps_json({"records": [{"a": 1.0}, {"a": float("-inf")}]})
    assert str(caught.value) == (
        "the value at `records[1].a` is -Infinity, which JSON cannot carry"
    )
    assert dumps_json({"z": -0.0}) == b'{"z":-0.0}'


async def test_the_client_sends_nothing_when_a_value_is_not_json() -> None:
    with WebhookReceiver() as hook:
        client = HttpClient(label="webhook", recorder=MemoryRecorder())
        with pytest.raises(DestinationError) as caught:
            await client.request("POST", hook.url, json={"a": float("nan")})
        await client.aclose()
        assert hook.calls == []
    assert caught.value.failure is FailureType.REJECTED
    assert "`a` is NaN" in caught.value.message


def test_hubspot_gets_negative_zero_and_refuses_a_bare_nan(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = HubSpotEmulator(burst_limit=50, burst_seconds=1.0)
    hub.add_property("contacts", "score", type="number", field_type="number")
    with EmulatorServer(hub) as server:
        bare = httpx.post(
            f"{server.url}/crm/v3/objects/contacts/batch/upsert",
            content=b'{"inputs": [{"id": "a@x.io", "properties": {"score": NaN}}]}',
            headers={"Authorization": f"Bearer {hub.token}", "Content-Type": "application/json"},
        )
        monkeypatch.setenv("HUBSPOT_TOKEN", hub.token)
        project.destination(
            "crm", type="hubspot", token="${env:HUBSPOT_TOKEN}", base_url=server.url
        )
        project.model(
            "users",
            "SELECT * FROM (VALUES ('a@x.io', '-0.0'::DOUBLE), ('b@x.io', 'nan'::DOUBLE)) "
            "t(email, score)",
            primary_key="email",
        )
        project.sync(
            "s",
            destination="crm",
            object="contacts",
            mappings=[{"column": "email", "field": "email"}, {"column": "score", "field": "score"}],
        )
        run = project.run("s")
        contacts = hub.records("contacts", key="email")

    assert bare.status_code == 400 and "NaN" in bare.text
    assert run.counts.invalid == 1 and run.counts.succeeded == 1, run.error
    assert contacts["a@x.io"]["score"] == "-0"
    assert "b@x.io" not in contacts


def test_a_static_nan_is_a_config_error(project: Builder, receiver: WebhookReceiver) -> None:
    project.users(1)
    project.webhook_destination(receiver)
    project.write(
        "syncs/s.yml",
        "model: users\ndestination: hook\nmappings:\n"
        "  - {column: id, field: id}\n  - {value: .nan, field: score}\n",
    )

    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        project.run("s")

    assert "static value must be a finite number" in str(caught.value)


def test_the_receiver_refuses_a_bare_nan(tmp_path: Path) -> None:
    with WebhookReceiver() as hook:
        answer = httpx.post(
            hook.url,
            content=b'{"operation": "upsert", "records": [{"id": 1, "x": NaN}]}',
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 400
        assert hook.records == {}
    with pytest.raises(ValueError):
        strict_json(json.dumps({"x": float("inf")}))


def test_validate_refuses_string_for_a_table_destination(project: Builder) -> None:
    project.users(1)
    project.sqlite_destination()
    project.sync("s", non_finite="string")

    done = project.cli("validate", "--offline")

    assert done.returncode == 2
    assert re.search(
        r"syncs/s\.yml:\d+: non_finite: `non_finite: string` needs a destination that sends "
        r"records as JSON; this one stores typed columns: use `invalid` or `null`$",
        done.stderr.strip(),
    ), done.stderr
    assert "Traceback" not in done.stderr
