"""The Postgres source against a real server: types, streaming, errors, and a real sync."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from tests.conftest import Builder
from tests.conftest import sqlite_rows
from tests.sources import closed_port
from tests.sources import pg_database
from tests.sources import pg_exec

from backhaul.errors import ConfigError
from backhaul.errors import SourceError
from backhaul.sources.postgres import PostgresSource
from backhaul.sources.postgres import PostgresSourceConfig

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_database() as url:
        pg_exec(
            url,
            "CREATE TABLE users (id bigint PRIMARY KEY, email text, score int, "
            "amount numeric(12,2), active boolean, seen timestamptz, born date)",
            "INSERT INTO users SELECT i, 'u' || i || '@example.com', i % 7, i * 1.25, "
            "i % 2 = 0, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute', "
            "date '2000-01-01' + i FROM generate_series(1, 2500) i",
        )
        yield url


def source(url: str, **extra: object) -> PostgresSource:
    config = PostgresSourceConfig.model_validate({"type": "postgres", "url": url, **extra})
    return PostgresSource(config, Path("."))


def test_columns_plan_without_running(pg_url: str) -> None:
    src = source(pg_url)
    try:
        # Dividing by zero on every row: only a query that is really run fails.
        cols = src.columns("SELECT id, email, amount, 1 / (id - id) AS boom FROM users;")
    finally:
        src.close()
    assert cols == {"id": "int8", "email": "text", "amount": "numeric(12,2)", "boom": "int8"}


def test_stream_types_and_batches(pg_url: str) -> None:
    src = source(pg_url)
    try:
        reader = src.stream("SELECT * FROM users ORDER BY id", batch_size=1000)
        batches = list(reader)
    finally:
        src.close()
    assert all(b.num_rows <= 1000 for b in batches)
    table = pa.Table.from_batches(batches)
    assert table.num_rows == 2500
    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert table.schema.field("seen").type == pa.timestamp("us", tz="UTC")
    first = table.slice(0, 1).to_pylist()[0]
    assert first["id"] == 1 and first["email"] == "u1@example.com"
    assert first["amount"] == Decimal("1.25") and first["active"] is False
    assert first["seen"] == dt.datetime(2024, 1, 1, 0, 1, tzinfo=dt.UTC)
    assert first["born"] == dt.date(2000, 1, 2)


def test_nulls_empty_strings_and_newlines_stay_apart(pg_url: str) -> None:
    src = source(pg_url)
    try:
        sql = "SELECT 1 AS id, NULL::text AS a, ''::text AS b, E'x,\"y\"\\nz' AS c, NULL::int AS d"
        rows = src.stream(sql).read_all().to_pylist()
    finally:
        src.close()
    assert rows == [{"id": 1, "a": None, "b": "", "c": 'x,"y"\nz', "d": None}]


def test_missing_table_names_the_line(pg_url: str) -> None:
    src = source(pg_url)
    try:
        with pytest.raises(SourceError) as err:
            src.columns("SELECT *\nFROM missing_table")
    finally:
        src.close()
    assert 'relation "missing_table" does not exist' in err.value.message
    assert "LINE 2:" in err.value.message and "\n" not in err.value.message


def test_error_in_the_middle_of_a_stream_is_a_source_error(pg_url: str) -> None:
    src = source(pg_url)
    try:
        reader = src.stream("SELECT id, 1 / (2000 - id) AS x FROM users ORDER BY id", 100)
        with pytest.raises(SourceError, match="division by zero"):
            reader.read_all()
        # The connection is usable again afterwards.
        assert src.stream("SELECT 7 AS n").read_all().to_pylist() == [{"n": 7}]
    finally:
        src.close()


def test_the_source_never_writes(pg_url: str) -> None:
    pg_exec(pg_url, "CREATE SEQUENCE ticks")
    src = source(pg_url)
    try:
        # A model that would change the warehouse is refused by the read-only session.
        with pytest.raises(SourceError, match="read-only transaction"):
            src.stream("SELECT nextval('ticks') AS n").read_all()
        assert src.stream("SELECT last_value FROM ticks").read_all().to_pylist() == [
            {"last_value": 1}
        ]
    finally:
        src.close()


def test_unreachable_host_is_one_clear_line() -> None:
    port = closed_port()
    src = source(f"postgresql://postgres:s3cr3t-pw@127.0.0.1:{port}/db", connect_timeout=2)
    with pytest.raises(SourceError) as err:
        src.check()
    message = err.value.message
    assert f"127.0.0.1:{port}/db" in message and "check `host` and `port`" in message
    assert "s3cr3t-pw" not in message and "\n" not in message


def test_unknown_user_and_database_say_what_to_fix(pg_url: str) -> None:
    base = pg_url.rsplit("/", 1)[0]
    with pytest.raises(SourceError) as err:
        source(base.replace("postgres@", "nobody_bh:pw-9876@") + "/postgres").check()
    assert "check `user` and `password`" in err.value.message
    assert "pw-9876" not in err.value.message
    with pytest.raises(SourceError) as err:
        source(base + "/no_such_db_bh").check()
    assert "no_such_db_bh" in err.value.message and "check `database`" in err.value.message


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="url"):
        PostgresSourceConfig.model_validate({"type": "postgres"})
    with pytest.raises(ValueError, match="not both"):
        PostgresSourceConfig.model_validate(
            {"type": "postgres", "url": "postgresql://x@h/db", "host": "h"}
        )
    with pytest.raises(ValueError, match="extra"):
        PostgresSourceConfig.model_validate({"type": "postgres", "host": "h", "pasword": "x"})
    with pytest.raises(ConfigError, match="not a valid connection URL"):
        source("postgresql://a b c")
    fields = PostgresSourceConfig.model_validate(
        {"type": "postgres", "host": "127.0.0.1", "user": "postgres", "database": "postgres"}
    )
    assert PostgresSource(fields, Path(".")).where == "127.0.0.1:5432/postgres"


def test_sync_from_postgres_into_sqlite(pg_url: str, project: Builder) -> None:
    project.write("sources/wh.yml", {"type": "postgres", "url": pg_url})
    project.model("users", "SELECT id, email, score FROM users WHERE id <= 300")
    dest = project.sqlite_destination()
    project.sync("to_db")
    first = project.run("to_db")
    assert first.counts.added == 300 and first.counts.succeeded == 300
    assert sqlite_rows(dest)[0] == (1, "u1@example.com")
    pg_exec(pg_url, "UPDATE users SET email = 'new@example.com' WHERE id = 5")
    second = project.run("to_db")
    assert (second.counts.added, second.counts.changed) == (0, 1)
    assert sqlite_rows(dest)[4] == (5, "new@example.com")


def test_validate_opens_the_source_with_secrets(pg_url: str, project: Builder) -> None:
    project.write("sources/wh.yml", {"type": "postgres", "url": "${env:BH_TEST_PG_URL}"})
    project.model("users", "SELECT id, email FROM users")
    project.sqlite_destination()
    project.sync(
        "to_db", mappings=[{"column": "id", "field": "id"}, {"column": "mail", "field": "m"}]
    )
    result = project.cli("validate", env={"BH_TEST_PG_URL": pg_url})
    assert result.returncode == 2
    assert "column `mail` is not in the output of model `users`" in result.stderr


def test_run_resolves_source_secrets(
    pg_url: str, project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BH_TEST_PG_URL", pg_url)
    project.write("sources/wh.yml", {"type": "postgres", "url": "${env:BH_TEST_PG_URL}"})
    project.model("users", "SELECT id, email FROM users")
    project.sqlite_destination()
    project.sync("to_db")
    assert project.run("to_db").counts.succeeded == 2500


def test_a_stream_left_unread_ends_with_close(pg_url: str) -> None:
    src = source(pg_url)
    try:
        reader = src.stream("SELECT * FROM users ORDER BY id", batch_size=100)
        assert next(iter(reader)).num_rows == 100
        src.close()  # the planner may drop a stream it only needed the schema of
        del reader
        assert src.stream("SELECT count(*) AS n FROM users").read_all().to_pylist() == [{"n": 2500}]
    finally:
        src.close()


def test_a_query_with_no_rows_streams_an_empty_result(pg_url: str) -> None:
    src = source(pg_url)
    try:
        table = src.stream("SELECT 1::bigint AS id, 'x'::text AS name WHERE false").read_all()
    finally:
        src.close()
    assert table.num_rows == 0
    assert table.column_names == ["id", "name"]
