"""Fixtures for the destination tests: throwaway databases and a Batch builder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pymysql
import pytest

from backhaul.calls import MemoryRecorder
from backhaul.destinations.base import Batch
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def make_batch(
    operation: Operation,
    rows: Sequence[dict[str, Any]],
    match: Sequence[str] = ("id",),
    schema: pa.Schema | None = None,
    skip_null: Sequence[str] = (),
) -> Batch:
    """Build a Batch from a list of flat dicts (dotted keys stay single columns)."""
    table = pa.Table.from_pylist(list(rows), schema=schema)
    keys = ["|".join(str(row[m]) for m in match) for row in rows]
    return Batch(
        operation=operation,
        table=table,
        keys=keys,
        match_fields=list(match),
        skip_null_fields=frozenset(skip_null),
    )


@pytest.fixture
def context(tmp_path: Path) -> DestinationContext:
    return DestinationContext(
        project_dir=tmp_path, recorder=MemoryRecorder(), sync_name="users", run_id="run1"
    )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh Postgres database, dropped afterwards."""
    name = f"bh_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh MariaDB database, dropped afterwards."""
    name = f"bh_test_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()
