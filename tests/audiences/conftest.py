"""Fixtures for audience tests: the fixed world in DuckDB and in a Postgres database of its
own, and the hypothesis profiles (``HYPOTHESIS_PROFILE=deep`` for a long search)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings
from tests.audiences.world import DuckWorld
from tests.audiences.world import PgWorld

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

# Moderate and repeatable by default so the suite stays fast and gives the same result
# twice; the deep profile searches randomly and long.
settings.register_profile(
    "backhaul",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "deep",
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "backhaul"))


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A Postgres database for this module's tests, dropped afterwards."""
    name = f"bh_audiences_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def duck() -> Iterator[DuckWorld]:
    world = DuckWorld()
    yield world
    world.close()


@pytest.fixture(scope="module")
def pg(pg_url: str) -> Iterator[PgWorld]:
    world = PgWorld(pg_url)
    yield world
    world.close()


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def world(request: pytest.FixtureRequest) -> DuckWorld:
    """The world in each warehouse in turn (the same tests run on both)."""
    fixture = "duck" if request.param == "duckdb" else "pg"
    found: DuckWorld = request.getfixturevalue(fixture)
    return found
