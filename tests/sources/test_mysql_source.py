"""The MySQL/MariaDB source against a real MariaDB: types, streaming, errors, a real sync."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from tests.conftest import Builder
from tests.conftest import sqlite_rows
from tests.sources import closed_port
from tests.sources import maria_connect
from tests.sources import maria_database
from tests.sources import maria_exec

from backhaul.errors import ConfigError
from backhaul.errors import SourceError
from backhaul.sources.mysql import MySQLSource
from backhaul.sources.mysql import MySQLSourceConfig

pytestmark = pytest.mark.integration


@pytest.fixture
def maria_db() -> Iterator[str]:
    with maria_database() as name:
        maria_exec(
            name,
            "CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(200), "
            "amount DECIMAL(12,2), seen TIMESTAMP(6) NULL, born DATE, doc JSON)",
            "INSERT INTO users SELECT seq, CONCAT('u', seq, '@example.com'), seq * 1.25, "
            "TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq MINUTE, DATE'2000-01-01' + "
            "INTERVAL seq DAY, JSON_OBJECT('n', seq) FROM seq_1_to_2500",
        )
        yield name


def source(url: str, **extra: object) -> MySQLSource:
    config = MySQLSourceConfig.model_validate({"type": "mysql", "url": url, **extra})
    return MySQLSource(config, Path("."))


def url_of(db: str) -> str:
    return f"mysql://root@127.0.0.1:3306/{db}"


def test_columns_plan_without_running(maria_db: str) -> None:
    src = source(url_of(maria_db))
    try:
        cols = src.columns("SELECT id, email, amount FROM users;")
    finally:
        src.close()
    assert cols == {"id": "LONGLONG", "email": "VAR_STRING", "amount": "NEWDECIMAL"}


def test_stream_types_and_batches(maria_db: str) -> None:
    src = source(url_of(maria_db))
    try:
        batches = list(src.stream("SELECT * FROM users ORDER BY id", batch_size=700))
    finally:
        src.close()
    assert [b.num_rows for b in batches] == [700, 700, 700, 400]
    table = pa.Table.from_batches(batches)
    assert table.schema.field("amount").type == pa.decimal128(14, 2)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["amount"] == Decimal("1.25")
    assert first["seen"] == dt.datetime(2024, 1, 1, 0, 1, tzinfo=dt.UTC)
    assert first["born"] == dt.date(2000, 1, 2)
    assert first["doc"] == '{"n": 1}'


def test_missing_table_and_syntax_errors(maria_db: str) -> None:
    src = source(url_of(maria_db))
    try:
        with pytest.raises(SourceError, match=r"Table '.*\.missing_t' doesn't exist"):
            src.stream("SELECT * FROM missing_t")
        with pytest.raises(SourceError, match="SQL syntax"):
            src.columns("SELECT FROM WHERE")
    finally:
        src.close()


def test_the_source_never_writes(maria_db: str) -> None:
    src = source(url_of(maria_db))
    try:
        with pytest.raises(SourceError, match="READ ONLY"):
            src.stream("DELETE FROM users")
    finally:
        src.close()
    conn = maria_connect(maria_db)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM users")
        assert cur.fetchone() == (2500,)
    conn.close()


def test_wrong_password_never_shows_it(maria_db: str) -> None:
    user = f"bh_{uuid.uuid4().hex[:8]}"
    conn = maria_connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right-pw'")
        cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'right-pw'")
    try:
        src = source(f"mysql://{user}:wr0ng-pw-77@127.0.0.1:3306/{maria_db}")
        with pytest.raises(SourceError) as err:
            src.check()
        message = err.value.message
        assert "Access denied" in message and "check `user` and `password`" in message
        assert "wr0ng-pw-77" not in message and "\n" not in message
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
        conn.close()


def test_unreachable_host_and_missing_database() -> None:
    port = closed_port()
    with pytest.raises(SourceError) as err:
        source(f"mysql://root@127.0.0.1:{port}/x", connect_timeout=2).check()
    assert f"127.0.0.1:{port}" in err.value.message
    assert "check `host` and `port`" in err.value.message
    with pytest.raises(SourceError, match="check `database`"):
        source("mysql://root@127.0.0.1:3306/no_such_db_bh").check()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="url"):
        MySQLSourceConfig.model_validate({"type": "mysql"})
    with pytest.raises(ValueError, match="extra"):
        MySQLSourceConfig.model_validate({"type": "mysql", "host": "h", "db": "x"})
    with pytest.raises(ConfigError, match="mysql://"):
        source("postgresql://root@h/db")
    config = MySQLSourceConfig.model_validate(
        {"type": "mysql", "host": "db.internal", "user": "r", "password": "p", "database": "d"}
    )
    assert MySQLSource(config, Path(".")).where == "db.internal:3306/d"


def test_sync_from_mariadb_into_sqlite(maria_db: str, project: Builder) -> None:
    project.write("sources/wh.yml", {"type": "mysql", "url": url_of(maria_db)})
    project.model("users", "SELECT id, email FROM users WHERE id <= 200")
    dest = project.sqlite_destination()
    project.sync("to_db")
    assert project.run("to_db").counts.succeeded == 200
    maria_exec(maria_db, "UPDATE users SET email = 'changed@example.com' WHERE id = 3")
    second = project.run("to_db")
    assert (second.counts.added, second.counts.changed, second.counts.succeeded) == (0, 1, 1)
    assert sqlite_rows(dest)[2] == (3, "changed@example.com")


def test_a_stream_left_unread_ends_with_close(maria_db: str) -> None:
    src = source(url_of(maria_db))
    try:
        reader = src.stream("SELECT * FROM users ORDER BY id", batch_size=100)
        assert next(iter(reader)).num_rows == 100
        src.close()  # ends the stream's own connection too
        del reader
        conn = maria_connect()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.processlist WHERE db = %s", (maria_db,)
            )
            assert cur.fetchone() == (0,)
        conn.close()
    finally:
        src.close()
