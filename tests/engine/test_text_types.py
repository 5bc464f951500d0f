"""Values of DuckDB types Arrow cannot carry whole (INTERVAL, TIME WITH TIME ZONE, BIT)
reach every destination as DuckDB's text of them."""

from __future__ import annotations

import duckdb
import pytest

from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder, sqlite_rows

pytestmark = pytest.mark.integration

MODEL = (
    "SELECT 1 AS id, INTERVAL 3 DAY AS wait, '10:00:00+02'::TIMETZ AS opens, '101'::BIT AS flags"
)
MAPPINGS = [{"column": c, "field": c} for c in ("id", "wait", "opens", "flags")]
AS_TEXT = ("3 days", "10:00:00+02", "101")


def test_a_sql_driver_and_a_json_record_get_the_text(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.model("users", MODEL)
    dest = project.table_and_hook_syncs(receiver, MAPPINGS)

    assert project.run("to_db").status.value == "succeeded"
    assert project.run("to_hook").status.value == "succeeded"

    assert sqlite_rows(dest) == [(1, *AS_TEXT)]
    [record] = [rec for call in receiver.calls for rec in call.json["records"]]
    assert record == {"id": 1, "wait": "3 days", "opens": "10:00:00+02", "flags": "101"}
    # Nothing changed, nothing is sent again: the fingerprint is of the same text.
    assert project.run("to_db").counts.succeeded == 0


def test_a_duckdb_table_gets_the_text_too(project: Builder) -> None:
    project.model("users", MODEL)
    project.destination("lake", type="duckdb", path="lake.duckdb", table="t", create_table=True)
    project.sync("s", destination="lake", mappings=MAPPINGS)
    assert project.run("s").status.value == "succeeded"
    with duckdb.connect(str(project.root / "lake.duckdb"), read_only=True) as con:
        stored = con.execute("SELECT * FROM t").fetchall()
    assert stored == [(1, *AS_TEXT)]
