"""Values of every common type travel from each local warehouse to a destination intact.

Each case builds the same table in a real warehouse (Postgres, MariaDB, SQLite, DuckDB),
syncs it through the engine into the loopback webhook receiver, compares what arrived with
what was stored, and checks that a second run sends nothing (stable fingerprints). The last
test changes a key column's type between runs: the run stops with a clear error and the
snapshot file is left byte for byte as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import ExitStack
from decimal import Decimal
from typing import Any

import pytest
from tests.conftest import Builder
from tests.sources import maria_database
from tests.sources import maria_exec
from tests.sources import pg_database
from tests.sources import pg_exec

from backhaul.errors import BackhaulError
from backhaul.testing.receiver import WebhookReceiver

LONG = "long text " * 104_858  # a little over 1 MB
UNICODE = "emoji 😀🚀, CJK 漢字かな한국어, RTL שלום مرحبا, combining é"
DOC = {"plan": "pro", "tags": ["a", "ü"], "nested": {"n": 1.5, "ok": True, "none": None}}
TS = dt.datetime(2024, 2, 29, 13, 45, 6, 123456)
TSTZ = dt.datetime(2024, 2, 29, 13, 45, 6, 123456, tzinfo=dt.UTC)

# id, amount, ts, tstz, day, doc, flag, essay, uni: row 2 is all NULL, row 3 holds edge values.
ROWS: list[tuple[Any, ...]] = [
    (1, Decimal("12345678.90"), TS, TSTZ, dt.date(2024, 2, 29), DOC, True, LONG, UNICODE),
    (2, None, None, None, None, None, None, None, None),
    (
        3,
        Decimal("-0.01"),
        dt.datetime(1999, 12, 31, 23, 59, 59),
        TSTZ.replace(year=2036),
        dt.date(1970, 1, 1),
        [],
        False,
        "",
        "'quotes' \"double\" back\\slash, comma\nnewline",
    ),
]
COLUMNS = ["id", "amount", "ts", "tstz", "day", "doc", "flag", "essay", "uni"]


def sql_literal(value: Any, kind: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return ("1" if value else "0") if kind in ("sqlite", "mysql") else str(value).upper()
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dt.datetime):
        value = value.isoformat(sep=" ").replace("+00:00", "+00" if kind == "postgres" else "")
    elif isinstance(value, dt.date):
        value = value.isoformat()
    text = str(value).replace("'", "''")
    if kind == "mysql":
        text = text.replace("\\", "\\\\")
    return f"'{text}'"


def insert_sql(kind: str, table: str = "typed") -> str:
    rows = ", ".join("(" + ", ".join(sql_literal(v, kind) for v in row) + ")" for row in ROWS)
    return f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES {rows}"


def setup_postgres(project: Builder, stack: ExitStack) -> None:
    url = stack.enter_context(pg_database("bh_types"))
    pg_exec(
        url,
        "CREATE TABLE typed (id bigint PRIMARY KEY, amount numeric(12,2), ts timestamp, "
        "tstz timestamptz, day date, doc jsonb, flag boolean, essay text, uni text, "
        "nums int[], words text[])",
        insert_sql("postgres"),
        "UPDATE typed SET nums = ARRAY[1, NULL, 3], words = ARRAY['x', 'ü,\"y\"'] WHERE id = 1",
        "UPDATE typed SET nums = '{}', words = '{}' WHERE id = 3",
    )
    project.write("sources/wh.yml", {"type": "postgres", "url": url})


def setup_mysql(project: Builder, stack: ExitStack) -> None:
    db = stack.enter_context(maria_database("bh_types"))
    maria_exec(
        db,
        "CREATE TABLE typed (id BIGINT PRIMARY KEY, amount DECIMAL(12,2), ts DATETIME(6), "
        "tstz TIMESTAMP(6) NULL, day DATE, doc JSON, flag BOOLEAN, essay LONGTEXT, "
        "uni TEXT) CHARACTER SET utf8mb4",
        "SET time_zone = '+00:00'",
        insert_sql("mysql"),
    )
    project.write("sources/wh.yml", {"type": "mysql", "url": f"mysql://root@127.0.0.1/{db}"})


def setup_sqlite(project: Builder, stack: ExitStack) -> None:
    con = sqlite3.connect(project.root / "wh.sqlite")
    con.execute(
        "CREATE TABLE typed (id INTEGER PRIMARY KEY, amount TEXT, ts TEXT, tstz TEXT, day TEXT, "
        "doc TEXT, flag INTEGER, essay TEXT, uni TEXT)"
    )
    con.execute(insert_sql("sqlite"))
    con.commit()
    con.close()
    project.write("sources/wh.yml", {"type": "sqlite", "path": "wh.sqlite"})


def setup_duckdb(project: Builder, stack: ExitStack) -> None:
    project.sql(
        "CREATE TABLE typed (id BIGINT PRIMARY KEY, amount DECIMAL(12,2), ts TIMESTAMP, "
        "tstz TIMESTAMPTZ, day DATE, doc JSON, flag BOOLEAN, essay VARCHAR, uni VARCHAR)",
        "SET TimeZone = 'UTC'",
        insert_sql("duckdb"),
    )


SETUPS: dict[str, Callable[[Builder, ExitStack], None]] = {
    "postgres": setup_postgres,
    "mysql": setup_mysql,
    "sqlite": setup_sqlite,
    "duckdb": setup_duckdb,
}


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def as_datetime(value: Any) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def check_record(kind: str, sent: dict[str, Any], row: tuple[Any, ...]) -> None:
    expected = dict(zip(COLUMNS, row, strict=True))
    assert sent["id"] == expected["id"]
    amount = sent["amount"]
    assert (None if amount is None else Decimal(str(amount))) == expected["amount"]
    assert as_datetime(sent["ts"]) == expected["ts"]
    tstz = as_datetime(sent["tstz"])
    if kind == "sqlite" and tstz is not None:
        tstz = tstz.replace(tzinfo=dt.UTC)  # SQLite keeps the text; it was written in UTC
    assert tstz == expected["tstz"]
    day = sent["day"]
    assert (None if day is None else dt.date.fromisoformat(day)) == expected["day"]
    assert sent["doc"] == expected["doc"]
    assert sent["flag"] == expected["flag"]
    assert sent["essay"] == expected["essay"]
    assert sent["uni"] == expected["uni"]


@pytest.mark.parametrize("kind", sorted(SETUPS))
def test_values_arrive_intact_and_a_second_run_sends_nothing(
    kind: str, project: Builder, receiver: WebhookReceiver, stack: ExitStack
) -> None:
    SETUPS[kind](project, stack)
    extra = ", nums, words" if kind == "postgres" else ""
    project.model(
        "typed", f"SELECT id, amount, ts, tstz, day, doc, flag, essay, uni{extra} FROM typed"
    )
    project.webhook_destination(receiver)
    mappings = [
        {"column": c, "field": c, **({"cast": "json"} if c == "doc" else {})}
        for c in COLUMNS + (["nums", "words"] if kind == "postgres" else [])
    ]
    project.sync("out", model="typed", destination="hook", mappings=mappings)

    first = project.run("out")
    assert first.status.value == "succeeded", first.error
    assert first.counts.succeeded == 3
    records = receiver.records
    for row in ROWS:
        check_record(kind, records[str(row[0])], row)
    if kind == "postgres":
        assert records["1"]["nums"] == [1, None, 3]
        assert records["1"]["words"] == ["x", 'ü,"y"']
        assert records["2"]["nums"] is None and records["3"]["words"] == []

    sent_before = len(receiver.calls)
    second = project.run("out")
    assert second.counts.planned == 0 and second.counts.unchanged == 3
    assert len(receiver.calls) == sent_before


def test_key_type_change_stops_with_state_intact(
    project: Builder, receiver: WebhookReceiver
) -> None:
    with pg_database("bh_types") as url:
        pg_exec(
            url,
            "CREATE TABLE users (id bigint PRIMARY KEY, email text)",
            "INSERT INTO users VALUES (1, 'a@example.com'), (2, 'b@example.com')",
        )
        project.write("sources/wh.yml", {"type": "postgres", "url": url})
        project.model("users", "SELECT id, email FROM users")
        project.webhook_destination(receiver)
        project.sync("out", destination="hook")
        assert project.run("out").counts.succeeded == 2
        state = project.state_file("out")
        before = state.read_bytes()
        sent = len(receiver.calls)

        pg_exec(url, "ALTER TABLE users ALTER COLUMN id TYPE text USING 'user-' || id")
        with pytest.raises(BackhaulError) as err:
            project.run("out")
        assert "primary-key or match-field types changed" in err.value.message
        assert "backhaul reset" in err.value.message
        assert state.read_bytes() == before
        assert len(receiver.calls) == sent
