"""MySQL/MariaDB destination against a real MariaDB server (a throwaway database per test)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pymysql
import pytest

from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordStatus
from backhaul.destinations.mysql import MySQLConfig
from backhaul.destinations.mysql import MySQLDestination
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

from .conftest import make_batch

pytestmark = pytest.mark.integration

FIELDS = {"id": pa.int64(), "email": pa.string(), "address.city": pa.string(), "age": pa.int64()}


def sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    conn = pymysql.connect(
        host="127.0.0.1",
        user="root",
        password="",
        database=urlsplit(url).path[1:],
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall())
    finally:
        conn.close()


def rows(url: str) -> list[tuple[Any, ...]]:
    return sql(url, "SELECT * FROM users ORDER BY 1")


def dest(url: str, context: DestinationContext, **kw: Any) -> MySQLDestination:
    cfg = MySQLConfig.model_validate({"type": "mysql", "url": url, **kw})
    return MySQLDestination(cfg, context)


def person(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": i, "email": f"u{i}@x.io", "address.city": "Oslo", "age": 30 + i, **kw}


async def seeded(url: str, context: DestinationContext) -> MySQLDestination:
    d = dest(url, context, create_table=True)
    await d.prepare(FIELDS, ["id"], "users")
    res = await d.write(make_batch(Operation.UPSERT, [person(1), person(2)]))
    assert all(r.status is RecordStatus.OK for r in res)
    return d


async def test_create_table_and_upsert(mysql_url: str, context: DestinationContext) -> None:
    d = await seeded(mysql_url, context)
    await d.check()
    await d.write(make_batch(Operation.UPSERT, [person(2, email="new@x.io"), person(3)]))
    await d.close()
    assert rows(mysql_url) == [
        (1, "u1@x.io", "Oslo", 31),
        (2, "new@x.io", "Oslo", 32),
        (3, "u3@x.io", "Oslo", 33),
    ]
    keys = sql(mysql_url, "SHOW KEYS FROM users WHERE Key_name = 'PRIMARY'")
    assert [k[4] for k in keys] == ["id"]


async def test_update_insert_delete_clear(mysql_url: str, context: DestinationContext) -> None:
    d = await seeded(mysql_url, context)
    res = await d.write(make_batch(Operation.UPDATE, [person(2, age=99), person(7)]))
    assert res[0].status is RecordStatus.OK
    assert res[1].error == "no row with key 7 in table users"
    res = await d.write(make_batch(Operation.INSERT, [person(1, email="changed"), person(5)]))
    assert all(r.status is RecordStatus.OK for r in res)
    res = await d.write(make_batch(Operation.DELETE, [{"id": 5}, {"id": 6}]))
    assert all(r.status is RecordStatus.OK for r in res)
    clear = make_batch(
        Operation.CLEAR,
        [{"id": 1, "email": None}],
        schema=pa.schema([("id", pa.int64()), ("email", pa.string())]),
    )
    assert (await d.write(clear))[0].status is RecordStatus.OK
    await d.close()
    assert rows(mysql_url) == [(1, None, "Oslo", 31), (2, "u2@x.io", "Oslo", 99)]


async def test_skip_null_fields_keep_existing_values(
    mysql_url: str, context: DestinationContext
) -> None:
    d = await seeded(mysql_url, context)
    await d.write(
        make_batch(Operation.UPSERT, [person(1, email=None, age=50)], skip_null=["email"])
    )
    await d.write(
        make_batch(Operation.UPDATE, [person(2, email=None, age=60)], skip_null=["email"])
    )
    await d.close()
    assert rows(mysql_url) == [(1, "u1@x.io", "Oslo", 50), (2, "u2@x.io", "Oslo", 60)]


async def test_bad_records_are_rejected_and_the_rest_written(
    mysql_url: str, context: DestinationContext
) -> None:
    sql(
        mysql_url,
        "CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(50) NOT NULL, "
        "`address.city` TEXT, age BIGINT CHECK (age >= 0))",
    )
    d = dest(mysql_url, context)
    await d.prepare(FIELDS, ["id"], "users")
    batch = [person(i) for i in range(10)]
    batch[2]["age"] = -1
    batch[6]["email"] = None
    batch[9]["email"] = "x" * 80
    res = await d.write(make_batch(Operation.UPSERT, batch))
    await d.close()
    bad = {r.index: r.error or "" for r in res if r.status is RecordStatus.REJECTED}
    assert set(bad) == {2, 6, 9}
    assert "CONSTRAINT" in bad[2] and "failed" in bad[2]
    assert "cannot be null" in bad[6]
    assert "Data too long for column 'email'" in bad[9]
    assert [r[0] for r in rows(mysql_url)] == [0, 1, 3, 4, 5, 7, 8]


async def test_existing_table_checks(mysql_url: str, context: DestinationContext) -> None:
    sql(mysql_url, "CREATE TABLE users (id BIGINT, email TEXT)")
    d = dest(mysql_url, context, table="users")
    with pytest.raises(DestinationError) as err:
        await d.prepare(FIELDS, ["id"], None)
    assert err.value.failure is FailureType.CONFIG
    assert "mysql table users has no column(s) address.city, age" in str(err.value)
    with pytest.raises(DestinationError, match=r"unique constraint on \(id\)"):
        await d.prepare({"id": pa.int64(), "email": pa.string()}, ["id"], None)
    sql(mysql_url, "ALTER TABLE users ADD UNIQUE KEY uid (id)")
    await d.prepare({"id": pa.int64(), "email": pa.string()}, ["id"], None)
    await d.close()
    other = dest(mysql_url, context)
    with pytest.raises(DestinationError, match="table other does not exist"):
        await other.prepare(FIELDS, ["id"], "other")
    await other.close()


async def test_unreachable_host(context: DestinationContext) -> None:
    d = dest("mysql://root:hunter2@127.0.0.1:3999/crm", context, connect_timeout=2)
    with pytest.raises(DestinationError) as err:
        await d.check()
    msg = str(err.value)
    assert msg == (
        "cannot connect to mysql at 127.0.0.1:3999: connection refused; "
        "check `url` in the destination file"
    )
    assert err.value.failure is FailureType.TRANSIENT


async def test_missing_database(context: DestinationContext) -> None:
    d = dest("mysql://root@127.0.0.1:3306/no_such_db_bh", context)
    with pytest.raises(DestinationError) as err:
        await d.check()
    assert err.value.failure is FailureType.CONFIG
    assert "Unknown database 'no_such_db_bh'" in str(err.value)


def test_bad_url_is_a_config_error(context: DestinationContext) -> None:
    with pytest.raises(DestinationError, match="must look like"):
        dest("postgres://x@h/db", context)


def loads_so_far() -> int:
    """The server's count of LOAD DATA statements (it only grows)."""
    found = sql("mysql://root@127.0.0.1:3306/mysql", "SHOW GLOBAL STATUS LIKE 'Com_load'")
    return int(found[0][1])


async def test_local_infile_stages_batches_and_keeps_every_value(
    mysql_url: str, context: DestinationContext
) -> None:
    import datetime as dt
    import decimal

    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("text", pa.string()),
            ("active", pa.bool_()),
            ("ltv", pa.decimal128(12, 2)),
            ("born", pa.date32()),
            ("seen", pa.timestamp("us")),
            ("score", pa.float64()),
            ("tags", pa.list_(pa.string())),
        ]
    )
    tricky = ['a,"b"\nc', "", None, "NULL", "\\N", "back\\slash", "émoji 🚀", "'quote'"]
    records = [
        {
            "id": i,
            "text": tricky[i % len(tricky)],
            "active": [True, False, None][i % 3],
            "ltv": decimal.Decimal("1234567890.12") if i % 2 else None,
            "born": dt.date(2024, 2, 29),
            "seen": dt.datetime(1999, 12, 31, 23, 59, 59, 999999) if i % 2 else None,
            "score": [0.1, 1 / 3, -0.0, None][i % 4],
            "tags": ["vip", 'quo"te'] if i % 2 else None,
        }
        for i in range(16)
    ]
    before = loads_so_far()
    d = dest(mysql_url, context, table="things", create_table=True, local_infile=True)
    await d.prepare({f.name: f.type for f in schema}, ["id"], None)
    res = await d.write(make_batch(Operation.UPSERT, records, schema=schema))
    await d.close()
    assert all(r.status is RecordStatus.OK for r in res)
    assert loads_so_far() > before
    got = sql(mysql_url, "SELECT * FROM things ORDER BY id")
    for want, row in zip(records, got, strict=True):
        active = None if want["active"] is None else int(want["active"])
        assert row[:7] == (
            want["id"],
            want["text"],
            active,
            want["ltv"],
            want["born"],
            want["seen"],
            want["score"],
        )
        tags = None if row[7] is None else __import__("json").loads(row[7])
        assert tags == want["tags"]


async def test_local_infile_batch_with_bad_rows_falls_back_and_finds_them(
    mysql_url: str, context: DestinationContext
) -> None:
    # A LOCAL load turns these errors into warnings; the batch is staged again with
    # INSERT so each bad record is found and reported, and the rest is written.
    sql(
        mysql_url,
        "CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(50) NOT NULL, "
        "`address.city` TEXT, age BIGINT CHECK (age >= 0))",
    )
    d = dest(mysql_url, context, local_infile=True)
    await d.prepare(FIELDS, ["id"], "users")
    batch = [person(i) for i in range(500)]
    batch[20]["age"] = -1
    batch[260]["email"] = None
    batch[499]["email"] = "x" * 80
    res = await d.write(make_batch(Operation.UPSERT, batch))
    await d.close()
    bad = {r.index: r.error or "" for r in res if r.status is RecordStatus.REJECTED}
    assert set(bad) == {20, 260, 499}
    assert "cannot be null" in bad[260]
    assert "Data too long for column 'email'" in bad[499]
    assert [r[0] for r in rows(mysql_url)] == [i for i in range(500) if i not in bad]
