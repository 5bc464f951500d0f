"""PostgreSQL destination against a real server (a throwaway database per test)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordStatus
from backhaul.destinations.postgres import PostgresConfig
from backhaul.destinations.postgres import PostgresDestination
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

from .conftest import make_batch

FIELDS = {"id": pa.int64(), "email": pa.string(), "address.city": pa.string(), "age": pa.int64()}


def rows(url: str, table: str = "users") -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()


def sql(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def dest(url: str, context: DestinationContext, **kw: Any) -> PostgresDestination:
    cfg = PostgresConfig.model_validate({"type": "postgres", "url": url, **kw})
    return PostgresDestination(cfg, context)


def person(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": i, "email": f"u{i}@x.io", "address.city": "Oslo", "age": 30 + i, **kw}


async def test_check_ok_and_create_table_upsert(pg_url: str, context: DestinationContext) -> None:
    d = dest(pg_url, context, table="users", create_table=True)
    await d.check()
    await d.prepare(FIELDS, ["id"], None)
    res = await d.write(make_batch(Operation.UPSERT, [person(1), person(2)]))
    assert [r.status for r in res] == [RecordStatus.OK] * 2
    res = await d.write(make_batch(Operation.UPSERT, [person(2, email="new@x.io"), person(3)]))
    assert all(r.status is RecordStatus.OK for r in res)
    await d.close()
    assert rows(pg_url) == [
        (1, "u1@x.io", "Oslo", 31),
        (2, "new@x.io", "Oslo", 32),
        (3, "u3@x.io", "Oslo", 33),
    ]
    with psycopg.connect(pg_url) as conn:
        cols = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'users' "
            "ORDER BY ordinal_position"
        ).fetchall()
    assert [c[0] for c in cols] == ["id", "email", "address.city", "age"]


async def seeded(url: str, context: DestinationContext) -> PostgresDestination:
    d = dest(url, context, create_table=True)
    await d.prepare(FIELDS, ["id"], "users")  # table from the sync's object
    await d.write(make_batch(Operation.UPSERT, [person(1), person(2)]))
    return d


async def test_update_rejects_missing_keys(pg_url: str, context: DestinationContext) -> None:
    d = await seeded(pg_url, context)
    res = await d.write(make_batch(Operation.UPDATE, [person(2, age=99), person(7)]))
    await d.close()
    assert res[0].status is RecordStatus.OK
    assert res[1].status is RecordStatus.REJECTED
    assert res[1].error == "no row with key 7 in table users"
    assert rows(pg_url) == [(1, "u1@x.io", "Oslo", 31), (2, "u2@x.io", "Oslo", 99)]


async def test_insert_leaves_existing_rows(pg_url: str, context: DestinationContext) -> None:
    d = await seeded(pg_url, context)
    res = await d.write(make_batch(Operation.INSERT, [person(1, email="changed"), person(5)]))
    await d.close()
    assert [r.status for r in res] == [RecordStatus.OK, RecordStatus.OK]
    assert [r[:2] for r in rows(pg_url)] == [(1, "u1@x.io"), (2, "u2@x.io"), (5, "u5@x.io")]


async def test_delete_and_clear(pg_url: str, context: DestinationContext) -> None:
    d = await seeded(pg_url, context)
    await d.write(make_batch(Operation.UPSERT, [person(3)]))
    res = await d.write(make_batch(Operation.DELETE, [{"id": 1}, {"id": 42}]))
    assert [r.status for r in res] == [RecordStatus.OK, RecordStatus.OK]
    clear = make_batch(
        Operation.CLEAR,
        [{"id": 2, "email": None, "age": None}],
        schema=pa.schema([("id", pa.int64()), ("email", pa.string()), ("age", pa.int64())]),
    )
    assert (await d.write(clear))[0].status is RecordStatus.OK
    await d.close()
    assert rows(pg_url) == [(2, None, "Oslo", None), (3, "u3@x.io", "Oslo", 33)]


async def test_skip_null_fields_keep_existing_values(
    pg_url: str, context: DestinationContext
) -> None:
    d = await seeded(pg_url, context)
    batch = make_batch(Operation.UPSERT, [person(1, email=None, age=50)], skip_null=["email"])
    await d.write(batch)
    await d.close()
    assert rows(pg_url)[0] == (1, "u1@x.io", "Oslo", 50)


async def test_bad_records_are_rejected_and_the_rest_written(
    pg_url: str, context: DestinationContext
) -> None:
    sql(
        pg_url,
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, "
        '"address.city" text, age bigint CHECK (age >= 0))',
    )
    d = dest(pg_url, context)
    await d.prepare(FIELDS, ["id"], "users")
    batch = [person(i) for i in range(10)]
    batch[3]["age"] = -5
    batch[8]["email"] = None
    res = await d.write(make_batch(Operation.UPSERT, batch))
    await d.close()
    bad = {r.index: r.error for r in res if r.status is RecordStatus.REJECTED}
    assert set(bad) == {3, 8}
    assert 'violates check constraint "users_age_check"' in (bad[3] or "")
    assert 'null value in column "email"' in (bad[8] or "")
    assert [r[0] for r in rows(pg_url)] == [0, 1, 2, 4, 5, 6, 7, 9]


async def test_value_that_does_not_fit_the_column_is_rejected(
    pg_url: str, context: DestinationContext
) -> None:
    sql(pg_url, "CREATE TABLE users (id bigint PRIMARY KEY, age smallint)")
    d = dest(pg_url, context)
    await d.prepare({"id": pa.int64(), "age": pa.string()}, ["id"], "users")
    res = await d.write(
        make_batch(Operation.UPSERT, [{"id": 1, "age": "12"}, {"id": 2, "age": "old"}])
    )
    await d.close()
    assert res[0].status is RecordStatus.OK
    assert res[1].status is RecordStatus.REJECTED
    assert "invalid input syntax for type smallint" in (res[1].error or "")
    assert rows(pg_url) == [(1, 12)]


async def test_existing_table_missing_column_is_a_config_error(
    pg_url: str, context: DestinationContext
) -> None:
    sql(pg_url, "CREATE TABLE users (id bigint PRIMARY KEY, email text)")
    d = dest(pg_url, context, table="users")
    with pytest.raises(DestinationError) as err:
        await d.prepare(FIELDS, ["id"], None)
    await d.close()
    assert err.value.failure is FailureType.CONFIG
    assert "table users has no column(s) address.city, age" in str(err.value)


async def test_existing_table_without_key_is_a_config_error(
    pg_url: str, context: DestinationContext
) -> None:
    sql(pg_url, "CREATE TABLE users (id bigint, email text)")
    d = dest(pg_url, context, table="users")
    with pytest.raises(DestinationError) as err:
        await d.prepare({"id": pa.int64(), "email": pa.string()}, ["id"], None)
    assert "needs a primary key or unique constraint on (id)" in str(err.value)
    sql(pg_url, "CREATE UNIQUE INDEX users_id ON users (id)")
    await d.prepare({"id": pa.int64(), "email": pa.string()}, ["id"], None)
    await d.close()


async def test_missing_table_without_create_is_a_config_error(
    pg_url: str, context: DestinationContext
) -> None:
    d = dest(pg_url, context)
    with pytest.raises(DestinationError) as err:
        await d.prepare(FIELDS, ["id"], "nope")
    await d.close()
    assert err.value.failure is FailureType.CONFIG
    assert "table nope does not exist" in str(err.value)
    assert "create_table: true" in str(err.value)


async def test_no_table_anywhere_is_a_config_error(context: DestinationContext) -> None:
    d = dest("postgresql://postgres@127.0.0.1:5432/postgres", context)
    with pytest.raises(DestinationError, match="has no table") as err:
        await d.prepare(FIELDS, ["id"], None)
    assert err.value.failure is FailureType.CONFIG


async def test_unreachable_host(context: DestinationContext) -> None:
    d = dest("postgresql://postgres:s3cret@127.0.0.1:5999/crm", context, connect_timeout=2)
    with pytest.raises(DestinationError) as err:
        await d.check()
    msg = str(err.value)
    assert msg.startswith("cannot connect to postgres at 127.0.0.1:5999: connection refused")
    assert msg.endswith("check `url` in the destination file")
    assert "s3cret" not in msg
    assert err.value.failure is FailureType.TRANSIENT


async def test_missing_database(context: DestinationContext) -> None:
    d = dest("postgresql://postgres@127.0.0.1:5432/no_such_db_bh", context)
    with pytest.raises(DestinationError) as err:
        await d.check()
    assert err.value.failure is FailureType.CONFIG
    assert 'database "no_such_db_bh" does not exist' in str(err.value)
    assert "127.0.0.1:5432" in str(err.value)


async def test_concurrent_writes_use_separate_connections(
    pg_url: str, context: DestinationContext
) -> None:
    d = await seeded(pg_url, context)
    batches = [make_batch(Operation.UPSERT, [person(i)]) for i in range(10, 20)]
    out = await asyncio.gather(*(d.write(b) for b in batches))
    await d.close()
    assert all(r[0].status is RecordStatus.OK for r in out)
    assert len(rows(pg_url)) == 12


async def test_two_records_with_one_key_are_both_applied_in_order(
    pg_url: str, context: DestinationContext
) -> None:
    d = await seeded(pg_url, context)
    res = await d.write(make_batch(Operation.UPSERT, [person(5, age=1), person(5, age=2)]))
    await d.close()
    assert [r.status for r in res] == [RecordStatus.OK, RecordStatus.OK]
    assert rows(pg_url)[-1] == (5, "u5@x.io", "Oslo", 2)


async def test_bulk_copy_keeps_every_value_as_written(
    pg_url: str, context: DestinationContext
) -> None:
    import datetime as dt
    import decimal
    import math

    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("text", pa.string()),
            ("score", pa.float64()),
            ("active", pa.bool_()),
            ("ltv", pa.decimal128(12, 2)),
            ("born", pa.date32()),
            ("seen", pa.timestamp("us", tz="UTC")),
            ("local", pa.timestamp("us")),
            ("raw", pa.binary()),
            ("tags", pa.list_(pa.string())),
            ("plan", pa.dictionary(pa.int32(), pa.string())),
        ]
    )
    tricky = ['a,"b"\nc', "", None, "NULL", "\\N", "émoji 🚀", " padded "]
    records = [
        {
            "id": i,
            "text": tricky[i % len(tricky)],
            "score": [0.1, float("nan"), float("inf"), -float("inf"), None, 1 / 3, -0.0][i % 7],
            "active": [True, False, None][i % 3],
            "ltv": decimal.Decimal("1234567890.12") if i % 2 else None,
            "born": dt.date(1, 1, 1) if i % 2 else dt.date(2024, 2, 29),
            "seen": dt.datetime(2024, 1, 1, 1, 2, 3, 456789, tzinfo=dt.UTC),
            "local": dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
            "raw": bytes([0, 1, 44, 34, 10, 255]) if i % 2 else b"",
            "tags": ["vip", 'quo"te'] if i % 2 else None,
            "plan": "pro" if i % 2 else "free",
        }
        for i in range(14)
    ]
    d = dest(pg_url, context, table="things", create_table=True)
    await d.prepare({f.name: f.type for f in schema}, ["id"], None)
    res = await d.write(make_batch(Operation.UPSERT, records, schema=schema))
    await d.close()
    assert all(r.status is RecordStatus.OK for r in res)
    got = rows(pg_url, "things")
    assert len(got) == len(records)
    for want, row in zip(records, got, strict=True):
        assert row[0] == want["id"]
        assert row[1] == want["text"]
        if want["score"] is not None and math.isnan(want["score"]):
            assert math.isnan(row[2])
        else:
            assert row[2] == want["score"]
        assert row[3:8] == (
            want["active"],
            want["ltv"],
            want["born"],
            want["seen"],
            want["local"],
        )
        assert bytes(row[8]) == want["raw"]
        assert row[9] == want["tags"]
        assert row[10] == want["plan"]


async def test_a_bad_row_in_a_large_batch_is_found_and_the_rest_lands(
    pg_url: str, context: DestinationContext
) -> None:
    # The too-long code fails while copying into the stage (it has the target's types),
    # the negative age in the merge: both are found inside a batch of 3,000.
    sql(
        pg_url,
        "CREATE TABLE users (id bigint PRIMARY KEY, code varchar(5), age int CHECK (age >= 0))",
    )
    d = dest(pg_url, context)
    await d.prepare({"id": pa.int64(), "code": pa.string(), "age": pa.int64()}, ["id"], "users")
    records = [{"id": i, "code": f"c{i % 1000}", "age": i % 90} for i in range(3000)]
    records[1234]["code"] = "far too long"
    records[2999]["age"] = -1
    res = await d.write(make_batch(Operation.UPSERT, records))
    await d.close()
    assert len(res) == 3000
    bad = {r.index: r.error or "" for r in res if r.status is RecordStatus.REJECTED}
    assert sorted(bad) == [1234, 2999]
    assert "value too long for type character varying(5)" in bad[1234]
    assert 'violates check constraint "users_age_check"' in bad[2999]
    with psycopg.connect(pg_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id").fetchall()]
    assert ids == [i for i in range(3000) if i not in (1234, 2999)]
