"""Migrations of the metadata store: idempotent, faithful to tables.py, cleanly numbered."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy import text
from tests.state.conftest import PG_ADMIN

from backhaul.state.store import MIGRATIONS
from backhaul.state.store import RunStore
from backhaul.state.store import head_revision
from backhaul.state.tables import COUNT_COLUMNS
from backhaul.state.tables import VERSION_TABLE
from backhaul.state.tables import metadata

TABLES = {"runs", "run_rows", "http_calls"}


def script_directory() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(store_url: str) -> None:
    head = script_directory().get_current_head()
    with RunStore.open(store_url) as store:
        store.start_run("kept-1", "s", full_resync=False)
        store.upgrade()
        store.upgrade()
        assert store.run("kept-1") is not None
    assert current_revision(store_url) == head
    with RunStore.open(store_url) as again:
        assert [r.run_id for r in again.runs()] == ["kept-1"]


def migrate(url: str, revision: str = "head", *, down: bool = False) -> None:
    """Alembic's own ``upgrade`` (or ``downgrade``) of the store at ``url``, without
    RunStore."""
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def schema(url: str) -> dict[str, object]:
    """Everything the database says about the store's tables, for comparing two stores."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            seen = inspect(conn)
            out: dict[str, object] = {}
            for name in sorted(seen.get_table_names()):
                out[name] = {
                    # In name order: a column a migration adds comes last, and the store
                    # names every column it reads.
                    "columns": sorted(
                        (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                        for c in seen.get_columns(name)
                    ),
                    "primary key": seen.get_pk_constraint(name),
                    "foreign keys": sorted(
                        seen.get_foreign_keys(name), key=lambda f: str(f["constrained_columns"])
                    ),
                    "indexes": sorted(seen.get_indexes(name), key=lambda i: str(i["name"])),
                    "unique": sorted(
                        seen.get_unique_constraints(name), key=lambda u: str(u["name"])
                    ),
                }
            out["revision"] = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
            return out
    finally:
        engine.dispose()


def test_migrated_schema_matches_tables(store_url: str) -> None:
    migrate(store_url)
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= TABLES
            context = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


@pytest.fixture
def migrated_url(store_url: str, tmp_path: Path) -> Iterator[str]:
    """A second store of the same kind as ``store_url``, migrated from nothing by Alembic."""
    if store_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'migrated.db'}"
        migrate(url)
        yield url
        return
    name = f"backhaul_state_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        migrate(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_new_store_is_made_in_one_step_as_the_migrations_would_make_it(
    store_url: str, migrated_url: str
) -> None:
    RunStore.open(store_url).close()
    made = schema(store_url)
    assert made["revision"] == [(head_revision(),)]
    assert made == schema(migrated_url)


def test_a_store_with_some_tables_is_migrated_not_recreated(store_url: str) -> None:
    migrate(store_url, "0003")
    with RunStore.open(store_url) as store:
        store.start_run("r", "s", full_resync=False)
        assert store.run("r") is not None
    assert current_revision(store_url) == head_revision()


def test_downgrade_to_base_removes_every_table(store_url: str) -> None:
    RunStore.open(store_url).close()
    migrate(store_url, "base", down=True)
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            assert not TABLES & set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    # And back up again from nothing.
    with RunStore.open(store_url) as store:
        store.start_run("after-downgrade", "s", full_resync=False)
        assert store.last_run("s") is not None


def test_the_head_read_from_file_names_is_alembics() -> None:
    assert head_revision() == script_directory().get_current_head()


def test_a_current_store_opens_without_alembic(store_url: str) -> None:
    code = (
        "import sys\n"
        "from backhaul.state.store import RunStore\n"
        "RunStore.open(sys.argv[1]).close()\n"
        "print('alembic' in sys.modules)\n"
    )
    # Made new, then opened when current: neither imports Alembic.
    for _ in range(2):
        opened = subprocess.run(
            [sys.executable, "-c", code, store_url], capture_output=True, text=True, check=True
        )
        assert opened.stdout.strip() == "False"
    assert current_revision(store_url) == head_revision()


def test_migrations_are_one_numbered_chain() -> None:
    scripts = script_directory()
    assert len(scripts.get_heads()) == 1
    chain = list(reversed(list(scripts.walk_revisions())))
    assert chain[0].down_revision is None
    for number, script in enumerate(chain, start=1):
        assert script.revision == f"{number:04d}"
        assert script.path is not None
        assert re.fullmatch(rf"{number:04d}_[a-z0-9_]+\.py", script.path.rsplit("/", 1)[-1])
        if number > 1:
            assert script.down_revision == f"{number - 1:04d}"


def test_upgrade_to_wait_columns_keeps_earlier_runs_and_calls(store_url: str) -> None:
    migrate(store_url, "0002")
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            counts = ", ".join(COUNT_COLUMNS)
            conn.execute(
                text(
                    f"INSERT INTO runs (id, sync, status, trigger, full_resync, dry_run, started_at, "
                    f"{counts}) VALUES ('old-run', 's', 'succeeded', 'cli', false, false, "
                    "'2026-01-01 00:00:00', 1, 1, 0, 0, 0, 0, 0, 1, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO http_calls (call_id, run_id, method, url, status, latency_ms, "
                    "request_headers, attempt, started_at) VALUES ('c1', 'old-run', 'POST', "
                    "'http://x', 200, 1.5, '{}', 1, '2026-01-01 00:00:00')"
                )
            )
    finally:
        engine.dispose()

    with RunStore.open(store_url) as store:
        record = store.run("old-run")
        [call] = store.calls("old-run")

    assert record is not None and record.wait_s == 0.0
    assert (call.response_headers, call.wait_ms, call.wait_reason) == ({}, 0.0, None)
