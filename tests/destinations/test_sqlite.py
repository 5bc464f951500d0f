"""SQLite destination on a file in the test's project folder."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordStatus
from backhaul.destinations.sqlite import SQLiteConfig
from backhaul.destinations.sqlite import SQLiteDestination
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

from .conftest import make_batch

FIELDS = {"id": pa.int64(), "email": pa.string(), "address.city": pa.string(), "age": pa.int64()}


def sql(path: Path, statement: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        out = conn.execute(statement).fetchall()
    conn.close()
    return out


def dest(context: DestinationContext, **kw: Any) -> SQLiteDestination:
    cfg = SQLiteConfig.model_validate({"type": "sqlite", "path": "crm.db", **kw})
    return SQLiteDestination(cfg, context)


def person(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": i, "email": f"u{i}@x.io", "address.city": "Oslo", "age": 30 + i, **kw}


async def seeded(context: DestinationContext) -> SQLiteDestination:
    d = dest(context, table="users", create_table=True)
    await d.check()
    await d.prepare(FIELDS, ["id"], None)
    res = await d.write(make_batch(Operation.UPSERT, [person(1), person(2)]))
    assert all(r.status is RecordStatus.OK for r in res)
    return d


async def test_every_operation(context: DestinationContext, tmp_path: Path) -> None:
    db = tmp_path / "crm.db"
    d = await seeded(context)
    await d.write(make_batch(Operation.UPSERT, [person(2, email="new@x.io"), person(3)]))
    assert sql(db, "SELECT * FROM users ORDER BY id") == [
        (1, "u1@x.io", "Oslo", 31),
        (2, "new@x.io", "Oslo", 32),
        (3, "u3@x.io", "Oslo", 33),
    ]
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
    await d.close()
    assert sql(db, "SELECT * FROM users ORDER BY id") == [
        (1, "u1@x.io", "Oslo", 70),
        (2, "new@x.io", None, 32),
        (4, "u4@x.io", "Oslo", 34),
    ]
    assert sql(db, "SELECT name, pk FROM pragma_table_info('users') WHERE pk > 0") == [("id", 1)]


async def test_rich_values_are_stored(context: DestinationContext, tmp_path: Path) -> None:
    d = dest(context, table="t", create_table=True)
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("day", pa.date32()),
            ("amount", pa.decimal128(10, 2)),
            ("tags", pa.list_(pa.string())),
        ]
    )
    row = {
        "id": "a",
        "day": dt.date(2024, 5, 1),
        "amount": decimal.Decimal("1.50"),
        "tags": ["x", "y"],
    }
    await d.prepare(dict(zip(schema.names, schema.types, strict=True)), ["id"], None)
    res = await d.write(make_batch(Operation.UPSERT, [row], schema=schema))
    await d.close()
    assert res[0].status is RecordStatus.OK
    assert sql(tmp_path / "crm.db", "SELECT * FROM t") == [("a", "2024-05-01", 1.5, '["x", "y"]')]


async def test_bad_records_are_rejected(context: DestinationContext, tmp_path: Path) -> None:
    db = tmp_path / "crm.db"
    sql(
        db,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, "
        '"address.city" TEXT, age INTEGER CHECK (age >= 0))',
    )
    d = dest(context)
    await d.prepare(FIELDS, ["id"], "users")
    batch = [person(i) for i in range(7)]
    batch[0]["age"] = -1
    batch[5]["email"] = None
    res = await d.write(make_batch(Operation.UPSERT, batch))
    await d.close()
    bad = {r.index: r.error for r in res if r.status is RecordStatus.REJECTED}
    assert bad == {
        0: "CHECK constraint failed: age >= 0",
        5: "NOT NULL constraint failed: users.email",
    }
    assert [r[0] for r in sql(db, "SELECT id FROM users ORDER BY id")] == [1, 2, 3, 4, 6]


async def test_existing_table_checks(context: DestinationContext, tmp_path: Path) -> None:
    db = tmp_path / "crm.db"
    sql(db, "CREATE TABLE users (id INTEGER, email TEXT)")
    d = dest(context, table="users")
    with pytest.raises(DestinationError) as err:
        await d.prepare(FIELDS, ["id"], None)
    assert err.value.failure is FailureType.CONFIG
    assert "sqlite table users has no column(s) address.city, age" in str(err.value)
    with pytest.raises(DestinationError, match=r"unique constraint on \(id\)"):
        await d.prepare({"id": pa.int64(), "email": pa.string()}, ["id"], None)
    sql(db, "CREATE UNIQUE INDEX u_id ON users (id)")
    await d.prepare({"id": pa.int64(), "email": pa.string()}, ["id"], None)
    await d.close()
    other = dest(context)
    with pytest.raises(DestinationError, match="table other does not exist"):
        await other.prepare(FIELDS, ["id"], "other")
    await other.close()


async def test_missing_folder_is_a_config_error(context: DestinationContext) -> None:
    d = dest(context, path="no/such/dir/crm.db")
    with pytest.raises(DestinationError) as err:
        await d.check()
    assert err.value.failure is FailureType.CONFIG
    assert "does not exist; check `path`" in str(err.value)
