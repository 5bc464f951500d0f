"""DuckDB table destination on a file in the test's project folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import NewLoad
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordStatus
from backhaul.destinations.duckdb_table import DuckDBConfig
from backhaul.destinations.duckdb_table import DuckDBDestination
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

from .conftest import make_batch

FIELDS = {"id": pa.int64(), "email": pa.string(), "address.city": pa.string(), "age": pa.int64()}


def sql(path: Path, statement: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path)) as con:
        return con.execute(statement).fetchall()


def dest(context: DestinationContext, **kw: Any) -> DuckDBDestination:
    cfg = DuckDBConfig.model_validate({"type": "duckdb", "path": "crm.duckdb", **kw})
    return DuckDBDestination(cfg, context)


def person(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": i, "email": f"u{i}@x.io", "address.city": "Oslo", "age": 30 + i, **kw}


async def test_every_operation(context: DestinationContext, tmp_path: Path) -> None:
    db = tmp_path / "crm.duckdb"
    d = dest(context, table="users", create_table=True)
    await d.check()
    await d.prepare(FIELDS, ["id"], None)
    await d.write(make_batch(Operation.UPSERT, [person(1), person(2)]))
    await d.write(make_batch(Operation.UPSERT, [person(2, email="new@x.io"), person(3)]))
    res = await d.write(make_batch(Operation.UPDATE, [person(1, age=70), person(9)]))
    assert res[0].status is RecordStatus.OK
    assert res[1].error == "no row with key 9 in table users"
    res = await d.write(make_batch(Operation.INSERT, [person(1, email="no"), person(4)]))
    assert all(r.status is RecordStatus.OK for r in res)
    await d.write(make_batch(Operation.DELETE, [{"id": 3}]))
    clear = make_batch(
        Operation.CLEAR,
        [{"id": 2, "address.city": None}],
        schema=pa.schema([("id", pa.int64()), ("address.city", pa.string())]),
    )
    await d.write(clear)
    await d.write(make_batch(Operation.UPSERT, [person(4, email=None)], skip_null=["email"]))
    await d.close()
    assert sql(db, "SELECT * FROM users ORDER BY id") == [
        (1, "u1@x.io", "Oslo", 70),
        (2, "new@x.io", None, 32),
        (4, "u4@x.io", "Oslo", 34),
    ]
    # Created without a key (DuckDB loads a table without an index faster): the upserts
    # and inserts above merged on the match field.
    assert sql(db, KEYS) == []


async def test_nested_values_become_json(context: DestinationContext, tmp_path: Path) -> None:
    d = dest(context, table="t", create_table=True)
    schema = pa.schema([("id", pa.string()), ("tags", pa.list_(pa.string()))])
    await d.prepare(dict(zip(schema.names, schema.types, strict=True)), ["id"], None)
    await d.write(make_batch(Operation.UPSERT, [{"id": "a", "tags": ["x"]}], schema=schema))
    await d.close()
    assert sql(tmp_path / "crm.duckdb", "SELECT id, tags::VARCHAR FROM t") == [("a", '["x"]')]


async def test_bad_records_are_rejected(context: DestinationContext, tmp_path: Path) -> None:
    db = tmp_path / "crm.duckdb"
    sql(
        db,
        "CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR NOT NULL, "
        '"address.city" VARCHAR, age TINYINT CHECK (age >= 0))',
    )
    d = dest(context)
    await d.prepare(FIELDS, ["id"], "users")
    batch = [person(i) for i in range(8)]
    batch[1]["age"] = -1
    batch[4]["email"] = None
    batch[6]["age"] = 1000  # does not fit TINYINT
    res = await d.write(make_batch(Operation.UPSERT, batch))
    await d.close()
    bad = {r.index: r.error or "" for r in res if r.status is RecordStatus.REJECTED}
    assert set(bad) == {1, 4, 6}
    assert "CHECK constraint failed" in bad[1]
    assert "NOT NULL constraint failed: users.email" in bad[4]
    assert "out of range" in bad[6]
    assert [r[0] for r in sql(db, "SELECT id FROM users ORDER BY id")] == [0, 2, 3, 5, 7]


async def test_existing_table_checks(context: DestinationContext, tmp_path: Path) -> None:
    db = tmp_path / "crm.duckdb"
    sql(db, "CREATE TABLE users (id BIGINT, email VARCHAR)")
    d = dest(context, table="users")
    with pytest.raises(DestinationError) as err:
        await d.prepare(FIELDS, ["id"], None)
    assert err.value.failure is FailureType.CONFIG
    assert "duckdb table users has no column(s) address.city, age" in str(err.value)
    # No key on the match field (as dbt builds a table): upserts merge on it.
    await d.prepare({"id": pa.int64(), "email": pa.string()}, ["id"], None)
    two = pa.schema([("id", pa.int64()), ("email", pa.string())])
    await d.write(make_batch(Operation.UPSERT, [{"id": 1, "email": "a"}], schema=two))
    await d.write(make_batch(Operation.UPSERT, [{"id": 1, "email": "b"}], schema=two))
    await d.write(make_batch(Operation.INSERT, [{"id": 1, "email": "c"}], schema=two))
    await d.close()
    assert sql(db, "SELECT id, email FROM users") == [(1, "b")]
    other = dest(context)
    with pytest.raises(DestinationError, match="table other does not exist"):
        await other.prepare(FIELDS, ["id"], "other")
    await other.close()


async def test_two_records_with_one_key_are_both_applied_in_order(
    context: DestinationContext, tmp_path: Path
) -> None:
    d = dest(context, table="users", create_table=True)
    await d.prepare(FIELDS, ["id"], None)
    res = await d.write(make_batch(Operation.UPSERT, [person(5, age=1), person(5, age=2)]))
    await d.close()
    assert [r.status for r in res] == [RecordStatus.OK, RecordStatus.OK]
    assert sql(tmp_path / "crm.duckdb", "SELECT id, age FROM users") == [(5, 2)]


async def test_a_path_that_holds_a_folder_is_a_config_error(context: DestinationContext) -> None:
    (context.project_dir / "crm.duckdb").mkdir()
    d = dest(context, table="users", create_table=True)
    with pytest.raises(DestinationError) as err:
        await d.check()
    await d.close()
    assert err.value.failure is FailureType.CONFIG
    path = context.project_dir / "crm.duckdb"
    assert f"duckdb database {path}: the path is a directory, not a file" in str(err.value)


LOAD = NewLoad(tuple(FIELDS), ("id",))  # match_unique False: the load looks for repeats
KEYS = (
    "SELECT constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
)
ROWS_SQL = (
    "SELECT i AS id, 'u' || i || '@x.io' AS email, 'Oslo' AS \"address.city\", 30 + i AS age "
    "FROM range(1, 6) t(i)"
)


async def prepared(context: DestinationContext) -> DuckDBDestination:
    """The destination with its table ``users`` created (and empty), ready to load."""
    d = dest(context, table="users", create_table=True)
    await d.prepare(FIELDS, ["id"], None)
    return d


async def test_a_first_load_inside_another_duckdb_lands_and_lets_go_of_the_file(
    context: DestinationContext, tmp_path: Path
) -> None:
    db = tmp_path / "crm.duckdb"
    d = await prepared(context)
    engine = duckdb.connect()  # the engine's own database, which reads the rows

    assert d.load_new_in(engine, ROWS_SQL, LOAD) is True
    # The file is detached again: a DuckDB of its own (the test's) opens it.
    assert sql(db, "SELECT id, email, age FROM users ORDER BY id") == [
        (i, f"u{i}@x.io", 30 + i) for i in range(1, 6)
    ]
    attached = engine.execute("SELECT database_name FROM duckdb_databases()").fetchall()
    assert sorted(attached) == [("memory",), ("system",), ("temp",)]
    # The destination writes later batches on its own connection, as before.
    await d.write(make_batch(Operation.UPSERT, [person(1, age=99)]))
    await d.close()
    assert sql(db, "SELECT age FROM users WHERE id = 1") == [(99,)]


async def test_a_first_load_that_cannot_attach_the_file_writes_nothing_and_says_so(
    context: DestinationContext, tmp_path: Path
) -> None:
    db = tmp_path / "crm.duckdb"
    d = await prepared(context)
    await d.close()
    engine = duckdb.connect()
    engine.execute(f"ATTACH '{db}' AS already (READ_ONLY)")  # holds the file
    assert d.load_new_in(engine, ROWS_SQL, LOAD) is None
    engine.execute("DETACH already")
    assert sql(db, "SELECT count(*) FROM users") == [(0,)]
    # The stream path still takes the load.
    rows = engine.sql(ROWS_SQL).to_arrow_reader(2)
    assert await d.load_new(rows, LOAD) is True
    await d.close()
    assert sql(db, "SELECT count(*) FROM users") == [(5,)]


async def test_a_first_load_inside_another_duckdb_declines_what_a_stream_would(
    context: DestinationContext, tmp_path: Path
) -> None:
    db = tmp_path / "crm.duckdb"
    engine = duckdb.connect()
    # Two rows with one match value, which batches would merge into one row: the load
    # finds them, nothing is written, the table is no longer taken for empty.
    twice = f"{ROWS_SQL} UNION ALL SELECT 1, 'again@x.io', 'Oslo', 1"
    d = await prepared(context)
    assert d.load_new_in(engine, twice, LOAD) is False
    assert d.load_new_in(engine, ROWS_SQL, LOAD) is False
    await d.close()
    assert sql(db, "SELECT count(*) FROM users") == [(0,)]
    # A table that held rows when the run began is declined without being touched.
    sql(db, "INSERT INTO users VALUES (7, 'x', 'y', 1)")
    again = await prepared(context)
    assert again.load_new_in(engine, ROWS_SQL, LOAD) is False
    await again.close()
    assert sql(db, "SELECT id FROM users") == [(7,)]


async def test_a_file_this_process_has_attached_already_is_a_config_error(
    context: DestinationContext, tmp_path: Path
) -> None:
    db = tmp_path / "crm.duckdb"
    sql(db, "CREATE TABLE users (id BIGINT PRIMARY KEY)")
    planning = duckdb.connect()  # as the workspace holds a DuckDB warehouse, read-only
    planning.execute(f"ATTACH '{db}' AS warehouse (READ_ONLY)")
    d = dest(context, table="users")
    with pytest.raises(DestinationError) as err:
        await d.check()
    await d.close()
    assert err.value.failure is FailureType.CONFIG  # it will not let go during the run
    assert f"cannot open duckdb database {db}: this run already has it open" in str(err.value)
