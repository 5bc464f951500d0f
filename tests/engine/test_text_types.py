"""Values of DuckDB types Arrow cannot carry whole (INTERVAL, TIME WITH TIME ZONE, BIT)
reach every destination as DuckDB's text of them; a MAP reads as an object everywhere (a
JSON record, a SQL table's JSON text, a DuckDB table, a template, a dry run's samples)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder
from conftest import sqlite_rows

pytestmark = pytest.mark.integration

MODEL = (
    "SELECT 1 AS id, INTERVAL 3 DAY AS wait, '10:00:00+02'::TIMETZ AS opens, '101'::BIT AS flags"
)
MAPPINGS = [{"column": c, "field": c} for c in ("id", "wait", "opens", "flags")]
AS_TEXT = ("3 days", "10:00:00+02", "101")

MAP_MODEL = (
    "SELECT 1 AS id, MAP {'plan': 'pro', 'seats': '3'} AS attrs, "
    "{'tags': MAP {'a': 1}} AS nested, INTERVAL 3 DAY AS wait"
)
MAP_MAPPINGS = [
    {"column": "id", "field": "id"},
    {"column": "attrs", "field": "attrs"},
    {"column": "nested", "field": "nested"},
    {"template": "{{ attrs.plan }} for {{ wait }}", "field": "line"},
]


def sent_both(
    project: Builder, receiver: WebhookReceiver, model: str, mappings: list[dict[str, Any]]
) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
    """Run ``model`` to a SQLite table and to a webhook: the table's rows and the records."""
    project.model("users", model)
    dest: Path = project.table_and_hook_syncs(receiver, mappings)
    assert project.run("to_db").status.value == "succeeded"
    assert project.run("to_hook").status.value == "succeeded"
    return sqlite_rows(dest), [rec for call in receiver.calls for rec in call.json["records"]]


def duckdb_rows(project: Builder, model: str, mappings: list[dict[str, Any]]) -> list[Any]:
    """Run ``model`` to a DuckDB table Backhaul creates: its rows."""
    project.model("users", model)
    project.destination("lake", type="duckdb", path="lake.duckdb", table="t", create_table=True)
    project.sync("s", destination="lake", mappings=mappings)
    assert project.run("s").status.value == "succeeded"
    with duckdb.connect(str(project.root / "lake.duckdb"), read_only=True) as con:
        return con.execute("SELECT * FROM t").fetchall()


def test_a_sql_driver_and_a_json_record_get_the_text(
    project: Builder, receiver: WebhookReceiver
) -> None:
    rows, records = sent_both(project, receiver, MODEL, MAPPINGS)

    assert rows == [(1, *AS_TEXT)]
    assert records == [{"id": 1, "wait": "3 days", "opens": "10:00:00+02", "flags": "101"}]
    # Nothing changed, nothing is sent again: the fingerprint is of the same text.
    assert project.run("to_db").counts.succeeded == 0


def test_a_duckdb_table_gets_the_text_too(project: Builder) -> None:
    assert duckdb_rows(project, MODEL, MAPPINGS) == [(1, *AS_TEXT)]


def test_a_map_is_an_object_in_json_records_sql_rows_and_templates(
    project: Builder, receiver: WebhookReceiver
) -> None:
    rows, records = sent_both(project, receiver, MAP_MODEL, MAP_MAPPINGS)

    attrs, nested = {"plan": "pro", "seats": "3"}, {"tags": {"a": 1}}
    assert records == [{"id": 1, "attrs": attrs, "nested": nested, "line": "pro for 3 days"}]
    [(id_, attrs_text, nested_text, line)] = rows
    assert (id_, json.loads(attrs_text), json.loads(nested_text), line) == (
        1,
        attrs,
        nested,
        "pro for 3 days",
    )


def test_a_dry_run_shows_the_map_as_an_object(project: Builder, receiver: WebhookReceiver) -> None:
    project.model("users", MAP_MODEL)
    project.table_and_hook_syncs(receiver, MAP_MAPPINGS)

    [sample] = project.plan("to_hook").samples["add"]

    assert sample["attrs"] == {"plan": "pro", "seats": "3"}
    assert sample["line"] == "pro for 3 days"


def test_a_duckdb_table_keeps_the_map_as_the_same_object(project: Builder) -> None:
    [(id_, attrs)] = duckdb_rows(project, MAP_MODEL, MAP_MAPPINGS[:2])
    assert (id_, json.loads(attrs)) == (1, {"plan": "pro", "seats": "3"})
