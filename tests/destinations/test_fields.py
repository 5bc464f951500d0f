"""``fields(object)`` of the SQL-table destinations, on real databases: each column with
its type, whether a new row needs it (NOT NULL, no default) and whether it is a key alone;
an unknown table has no fields yet. Nothing is written."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import FieldInfo
from backhaul.destinations.duckdb_table import DuckDBConfig
from backhaul.destinations.duckdb_table import DuckDBDestination
from backhaul.destinations.mysql import MySQLConfig
from backhaul.destinations.mysql import MySQLDestination
from backhaul.destinations.postgres import PostgresConfig
from backhaul.destinations.postgres import PostgresDestination
from backhaul.destinations.sqlite import SQLiteConfig
from backhaul.destinations.sqlite import SQLiteDestination
from backhaul.errors import DestinationError

TABLE = (
    "CREATE TABLE people (id INTEGER PRIMARY KEY, email VARCHAR(200) NOT NULL UNIQUE, "
    "name VARCHAR(100), plan VARCHAR(20) NOT NULL DEFAULT 'free')"
)


def _fields(dest: Any, object: str | None) -> list[FieldInfo]:
    async def ask() -> list[FieldInfo]:
        try:
            found: list[FieldInfo] = await dest.fields(object)
            return found
        finally:
            await dest.close()

    return asyncio.run(ask())


def _check(found: list[FieldInfo]) -> None:
    by_name = {f.name: f for f in found}
    assert list(by_name) == ["id", "email", "name", "plan"]
    assert by_name["id"].unique and by_name["email"].unique and not by_name["name"].unique
    assert by_name["email"].required and not by_name["name"].required
    assert not by_name["plan"].required  # it has a default
    assert all(f.type for f in found)


def test_duckdb_lists_its_columns(context: DestinationContext) -> None:
    with duckdb.connect(str(context.project_dir / "crm.duckdb")) as con:
        con.execute(TABLE)
    cfg = DuckDBConfig.model_validate({"type": "duckdb", "path": "crm.duckdb"})
    _check(_fields(DuckDBDestination(cfg, context), "people"))
    assert _fields(DuckDBDestination(cfg, context), "absent") == []


def test_sqlite_lists_its_columns(context: DestinationContext) -> None:
    with sqlite3.connect(context.project_dir / "crm.db") as con:
        con.execute(TABLE)
    cfg = SQLiteConfig.model_validate({"type": "sqlite", "path": "crm.db"})
    found = _fields(SQLiteDestination(cfg, context), "people")
    by_name = {f.name: f for f in found}
    assert by_name["id"].unique and by_name["email"].unique and by_name["email"].required
    assert not by_name["plan"].required and by_name["name"].type == "VARCHAR(100)"


def test_postgres_lists_its_columns(context: DestinationContext, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            TABLE.replace("INTEGER PRIMARY KEY", "INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        )
    cfg = PostgresConfig.model_validate({"type": "postgres", "url": pg_url})
    found = _fields(PostgresDestination(cfg, context), "people")
    _check(found)
    assert not found[0].required  # an identity column fills itself


def test_mysql_lists_its_columns(context: DestinationContext, mysql_url: str) -> None:
    name = mysql_url.rsplit("/", 1)[1]
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=name)
    with conn.cursor() as cur:
        cur.execute(TABLE)
    conn.close()
    cfg = MySQLConfig.model_validate({"type": "mysql", "url": mysql_url})
    _check(_fields(MySQLDestination(cfg, context), "people"))


def test_without_a_table_a_sql_destination_says_what_to_set(
    context: DestinationContext,
) -> None:
    cfg = DuckDBConfig.model_validate({"type": "duckdb", "path": "crm.duckdb"})
    with pytest.raises(DestinationError, match="no table"):
        _fields(DuckDBDestination(cfg, context), None)
