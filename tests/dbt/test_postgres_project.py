"""dbt-postgres and Backhaul on one Postgres database: `run --after-dbt` follows a dbt run.

A tiny dbt project builds two models into a fresh Postgres database; a Backhaul project
reads them through a ``type: postgres`` source with ``dbt: NAME`` models and syncs each to
SQLite. After one dbt model changes and only it is rebuilt, ``backhaul run --after-dbt``
must run exactly the sync that reads it, and that sync's table must hold the new values.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.conftest import PG_ADMIN
from tests.conftest import Builder
from tests.conftest import sqlite_rows

from backhaul import api

from .conftest import DbtProject
from .conftest import _installed

pytestmark = pytest.mark.integration

if not _installed("dbt-postgres"):
    pytest.skip("dbt-postgres is a test dependency", allow_module_level=True)

DBT_PROJECT = """\
name: pgshop
version: "1.0"
profile: pgshop
config-version: 2
models:
  pgshop:
    +materialized: table
"""

PROFILES = """\
pgshop:
  target: dev
  outputs:
    dev:
      type: postgres
      host: 127.0.0.1
      port: 5432
      user: postgres
      password: ""
      dbname: {dbname}
      schema: analytics
      threads: 1
"""

CUSTOMERS = """\
select 1 as id, 'ada@example.com' as email, {score} as score
union all select 2, 'grace@example.com', {score} * 2
union all select 3, 'alan@example.com', {score} * 3
"""

REGIONS = """\
select 1 as id, 'north' as name
union all select 2, 'south'
"""


@pytest.fixture
def pg_dbname() -> Iterator[str]:
    """A fresh Postgres database, dropped afterwards (with dbt's sessions, if any linger)."""
    name = f"bh_dbtpg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def pg_dbt(tmp_path: Path, pg_dbname: str) -> DbtProject:
    """The dbt project, built into ``pg_dbname``: customers and regions."""
    project = DbtProject(tmp_path / "pgshop")
    project.write("dbt_project.yml", DBT_PROJECT)
    project.write("profiles.yml", PROFILES.format(dbname=pg_dbname))
    project.write("models/customers.sql", CUSTOMERS.format(score=10))
    project.write("models/regions.sql", REGIONS)
    project.dbt("build", "--no-partial-parse")
    return project


def _run_counts(bh: Builder) -> dict[str, int]:
    project = bh.load()
    with api.open_store(project) as store:
        return {name: len(store.runs(name, limit=100)) for name in project.syncs}


def test_after_dbt_on_postgres_runs_the_sync_of_the_rebuilt_model(
    tmp_path: Path, pg_dbt: DbtProject, pg_dbname: str
) -> None:
    bh = Builder(tmp_path / "bh", project_extra={"dbt_project": "../pgshop"})
    bh.write(
        "sources/wh.yml",
        {"type": "postgres", "host": "127.0.0.1", "user": "postgres", "database": pg_dbname},
    )
    bh.write("models/customers.yml", {"source": "wh", "primary_key": "id", "dbt": "customers"})
    bh.write("models/regions.yml", {"source": "wh", "primary_key": "id", "dbt": "regions"})
    bh.destination("db", type="sqlite", path="dest.sqlite", create_table=True)
    bh.sync(
        "customers_to_db",
        model="customers",
        object="customers",
        mappings=[{"column": c, "field": c} for c in ("id", "email", "score")],
    )
    bh.sync(
        "regions_to_db",
        model="regions",
        object="regions",
        mappings=[{"column": "id", "field": "id"}, {"column": "name", "field": "name"}],
    )

    first = bh.cli("run", "--all")
    assert first.returncode == 0, first.stdout + first.stderr
    assert _run_counts(bh) == {"customers_to_db": 1, "regions_to_db": 1}
    dest = bh.root / "dest.sqlite"
    assert [(r[0], r[2]) for r in sqlite_rows(dest, "customers")] == [(1, 10), (2, 20), (3, 30)]
    assert sqlite_rows(dest, "regions") == [(1, "north"), (2, "south")]

    # Change one dbt model and rebuild only it.
    pg_dbt.write("models/customers.sql", CUSTOMERS.format(score=100))
    pg_dbt.dbt("run", "--select", "customers")

    done = bh.cli("run", "--after-dbt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run  customers_to_db: dbt rebuilt `customers` (success)" in done.stdout
    assert "skip regions_to_db: nothing it reads was rebuilt" in done.stdout
    assert _run_counts(bh) == {"customers_to_db": 2, "regions_to_db": 1}
    with api.open_store(bh.load()) as store:
        last = store.runs("customers_to_db", limit=1)[0]
    assert last.counts.changed == 3 and last.counts.succeeded == 3
    assert sqlite_rows(dest, "customers") == [
        (1, "ada@example.com", 100),
        (2, "grace@example.com", 200),
        (3, "alan@example.com", 300),
    ]
    assert sqlite_rows(dest, "regions") == [(1, "north"), (2, "south")]
