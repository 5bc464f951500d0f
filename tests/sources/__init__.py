"""Warehouse source tests: real Postgres, MariaDB and SQLite; cloud sources without service.

Helpers here create uniquely named databases and drop them afterwards, so the tests pass
when run twice in a row and beside other runs.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pymysql

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def pg_database(prefix: str = "bh_src") -> Iterator[str]:
    """A fresh Postgres database; yields its URL and drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_exec(url: str, *statements: str) -> None:
    """Run statements on a Postgres database, committed."""
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in statements:
            conn.execute(stmt)


def maria_connect(database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(
        host="127.0.0.1",
        port=3306,
        user="root",
        password="",
        database=database,
        autocommit=True,
        charset="utf8mb4",
    )


@contextmanager
def maria_database(prefix: str = "bh_src") -> Iterator[str]:
    """A fresh MariaDB database; yields its name and drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = maria_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def maria_exec(database: str, *statements: str) -> None:
    conn = maria_connect(database)
    try:
        with conn.cursor() as cur:
            for stmt in statements:
                cur.execute(stmt)
    finally:
        conn.close()


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
