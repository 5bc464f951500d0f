"""Upserts into a table that was empty when the run began go as plain inserts (Postgres:
COPY straight into the table); a key found there after all sends the batch, and the rest of
the run, as upserts. Real DuckDB and Postgres: the table must end equal to what was sent.

A DuckDB table without a key (as dbt builds them) has nothing to refuse a key that is there
after all: its batches always merge, and every test here runs on one too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pytest

from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordStatus
from backhaul.destinations.duckdb_table import DuckDBConfig
from backhaul.destinations.duckdb_table import DuckDBDestination
from backhaul.destinations.postgres import PostgresConfig
from backhaul.destinations.postgres import PostgresDestination
from backhaul.destinations.sql_common import SqlTableDestination
from backhaul.summary import RunStatus
from conftest import Builder

from .conftest import make_batch

pytestmark = pytest.mark.integration

FIELDS = {"id": pa.int64(), "email": pa.string(), "age": pa.int64()}
TABLE = "CREATE TABLE people (id BIGINT PRIMARY KEY, email VARCHAR, age BIGINT, note VARCHAR)"


class Target:
    """One database under test: a destination on it and SQL against it. ``duckdb-unkeyed``
    is DuckDB with every table the tests create made without its primary key."""

    def __init__(self, kind: str, tmp_path: Path, pg_url: str) -> None:
        self.unkeyed = kind == "duckdb-unkeyed"
        self.kind = "duckdb" if self.unkeyed else kind
        self.tmp_path, self.pg_url = tmp_path, pg_url

    def destination(self, context: DestinationContext) -> SqlTableDestination:
        if self.kind == "duckdb":
            config = DuckDBConfig.model_validate(
                {"type": "duckdb", "path": "crm.duckdb", "table": "people"}
            )
            return DuckDBDestination(config, context)
        pg = PostgresConfig.model_validate(
            {"type": "postgres", "url": self.pg_url, "table": "people"}
        )
        return PostgresDestination(pg, context)

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        if self.unkeyed and statement.startswith("CREATE TABLE"):
            statement = statement.replace(" PRIMARY KEY", "")
        if self.kind == "duckdb":
            with duckdb.connect(str(self.tmp_path / "crm.duckdb")) as con:
                con.execute(statement)
                return con.fetchall() if con.description else []
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []


@pytest.fixture(params=["duckdb", "duckdb-unkeyed", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Target:
    return Target(str(request.param), tmp_path, pg_url)


def person(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": i, "email": f"u{i}@x.io", "age": i % 90, **kw}


def table_rows(target: Target) -> list[tuple[Any, ...]]:
    return target.sql("SELECT id, email, age, note FROM people ORDER BY id")


async def test_empty_table_takes_the_batches_as_inserts(
    target: Target, context: DestinationContext
) -> None:
    target.sql(TABLE)
    d = target.destination(context)
    await d.prepare(FIELDS, ["id"], None)
    for lo in range(0, 3000, 1000):
        res = await d.write(make_batch(Operation.UPSERT, [person(i) for i in range(lo, lo + 1000)]))
        assert all(r.status is RecordStatus.OK for r in res)
    await d.close()
    assert table_rows(target) == [(i, f"u{i}@x.io", i % 90, None) for i in range(3000)]


async def test_a_resent_batch_on_an_empty_table_lands_as_an_upsert(
    target: Target, context: DestinationContext
) -> None:
    # A batch committed whose acknowledgement was lost is sent again, here with new values
    # for half of its keys: the insert fails on them and the batch is applied as an upsert.
    target.sql(TABLE)
    d = target.destination(context)
    await d.prepare(FIELDS, ["id"], None)
    await d.write(make_batch(Operation.UPSERT, [person(i) for i in range(100)]))
    again = [person(i, email=f"new{i}@x.io") for i in range(50, 150)]
    res = await d.write(make_batch(Operation.UPSERT, again))
    assert all(r.status is RecordStatus.OK for r in res)
    res = await d.write(make_batch(Operation.UPSERT, [person(i) for i in range(150, 200)]))
    assert all(r.status is RecordStatus.OK for r in res)
    await d.close()
    want = [(i, f"u{i}@x.io", i % 90, None) for i in range(50)]
    want += [(i, f"new{i}@x.io", i % 90, None) for i in range(50, 150)]
    want += [(i, f"u{i}@x.io", i % 90, None) for i in range(150, 200)]
    assert table_rows(target) == want


async def test_an_insert_resent_on_an_empty_table_leaves_the_landed_rows(
    target: Target, context: DestinationContext
) -> None:
    # Insert mode: a key already in the table keeps its row; the resent batch still lands.
    target.sql(TABLE)
    d = target.destination(context)
    await d.prepare(FIELDS, ["id"], None)
    await d.write(make_batch(Operation.INSERT, [person(i) for i in range(10)]))
    again = [person(i, email=f"new{i}@x.io") for i in range(5, 15)]
    res = await d.write(make_batch(Operation.INSERT, again))
    await d.close()
    assert all(r.status is RecordStatus.OK for r in res)
    want = [(i, f"u{i}@x.io", i % 90, None) for i in range(10)]
    want += [(i, f"new{i}@x.io", i % 90, None) for i in range(10, 15)]
    assert table_rows(target) == want


async def test_a_bad_record_on_an_empty_table_is_rejected_alone(
    target: Target, context: DestinationContext
) -> None:
    target.sql(TABLE.replace("email VARCHAR", "email VARCHAR NOT NULL"))
    d = target.destination(context)
    await d.prepare(FIELDS, ["id"], None)
    batch = [person(i) for i in range(20)]
    batch[7]["email"] = None
    res = await d.write(make_batch(Operation.UPSERT, batch))
    await d.close()
    assert [r.index for r in res if r.status is RecordStatus.REJECTED] == [7]
    assert [r[0] for r in table_rows(target)] == [i for i in range(20) if i != 7]


async def test_a_table_with_rows_is_upserted_from_the_first_batch(
    target: Target, context: DestinationContext
) -> None:
    # What a killed run leaves: some rows landed, one of them since changed in the model;
    # ``note`` is a column the sync does not map, kept by the upsert.
    target.sql(TABLE)
    target.sql("INSERT INTO people VALUES (3, 'old@x.io', 1, 'kept'), (4, 'u4@x.io', 4, NULL)")
    d = target.destination(context)
    await d.prepare(FIELDS, ["id"], None)
    res = await d.write(make_batch(Operation.UPSERT, [person(i) for i in range(10)]))
    await d.close()
    assert all(r.status is RecordStatus.OK for r in res)
    want = [(i, f"u{i}@x.io", i % 90, "kept" if i == 3 else None) for i in range(10)]
    assert table_rows(target) == want


async def test_skip_null_fields_on_a_resent_batch_keep_the_landed_values(
    target: Target, context: DestinationContext
) -> None:
    target.sql(TABLE)
    d = target.destination(context)
    await d.prepare(FIELDS, ["id"], None)
    await d.write(make_batch(Operation.UPSERT, [person(1), person(2)]))
    resent = [person(1, email=None), person(3, email=None)]
    await d.write(make_batch(Operation.UPSERT, resent, skip_null=["email"]))
    await d.close()
    assert table_rows(target) == [
        (1, "u1@x.io", 1, None),
        (2, "u2@x.io", 2, None),
        (3, None, 3, None),
    ]


# -- whole runs -------------------------------------------------------------------------

N = 5000


def mirror_project(project: Builder, target: Target) -> Callable[[], list[tuple[Any, ...]]]:
    """A mirror sync of ``users`` (N rows) to ``people``; returns a reader of the table."""
    project.users(N)
    if target.kind == "duckdb":
        project.destination("db", type="duckdb", path="crm.duckdb", table="people")
        target.tmp_path = project.root  # the destination's file is in the project
    else:
        project.destination("db", type="postgres", url=target.pg_url, table="people")
    maps = [{"column": c, "field": c} for c in ("id", "email", "name", "score")]
    project.sync("s", mappings=maps, mode="mirror", batch_size=700)
    return lambda: target.sql("SELECT id, email, name, score FROM people ORDER BY id")


def model_rows(project: Builder) -> list[tuple[Any, ...]]:
    return project.sql("SELECT id, email, name, score FROM users ORDER BY id")


PEOPLE = "CREATE TABLE people (id BIGINT PRIMARY KEY, email VARCHAR, name VARCHAR, score BIGINT)"


def test_first_run_into_an_empty_table_delivers_the_model(project: Builder, target: Target) -> None:
    read = mirror_project(project, target)
    target.sql(PEOPLE)
    summary = project.run("s")
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert summary.counts.added == N
    assert read() == model_rows(project)
    # The next run changes, adds and removes rows of a table that is no longer empty.
    project.sql(
        "UPDATE users SET email = 'changed' || id WHERE id % 10 = 1",
        "DELETE FROM users WHERE id % 10 = 2",
        f"INSERT INTO users SELECT i, 'u' || i, 'name ' || i, i % 97 FROM range({N + 1}, "
        f"{N + 101}) t(i)",
    )
    summary = project.run("s")
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert (summary.counts.changed, summary.counts.added) == (N // 10, 100)
    assert read() == model_rows(project)


def test_run_after_a_partial_load_delivers_the_model(project: Builder, target: Target) -> None:
    # A killed first run committed some batches but not their checkpoints: the table holds
    # part of the model, one row of it stale. The next run sends everything again.
    read = mirror_project(project, target)
    target.sql(PEOPLE)
    target.sql(
        "INSERT INTO people SELECT i, 'u' || i || '@example.com', 'name ' || i, i % 97 "
        "FROM generate_series(1, 1400) t(i)"
    )
    target.sql("UPDATE people SET email = 'stale' WHERE id = 700")
    summary = project.run("s")
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert summary.counts.added == N
    assert summary.counts.rejected == 0
    assert read() == model_rows(project)
