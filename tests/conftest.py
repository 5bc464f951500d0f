"""Shared fixtures: a project builder, a DuckDB warehouse, a webhook receiver, Postgres DBs.

The builder writes a real project folder (``backhaul.yml``, ``sources/``, ``models/``,
``destinations/``, ``syncs/``) into ``tmp_path`` and runs it through the public Python API,
so engine tests exercise exactly what a user's project does.
"""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from ruamel.yaml import YAML

from backhaul import api
from backhaul.config.project import Project
from backhaul.state import snapshots
from backhaul.summary import RowOutcome
from backhaul.summary import RunSummary
from backhaul.testing.receiver import WebhookReceiver

pytest_plugins = ["tiers", "pytester"]

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SHM = Path("/dev/shm")


def within(seconds: float, fn: Callable[[], object]) -> object:
    """``fn()``'s value or exception, or a failure when it is still waiting after ``seconds``
    (a read of a named pipe waits for a writer that never comes)."""
    out: list[object] = []

    def call() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test, which looks at it
            out.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still waiting after {seconds} s"
    return out[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dump_yaml(data: dict[str, Any]) -> str:
    """Block-style YAML text for ``data``."""
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


@dataclass
class Builder:
    """Writes a project into ``root`` and runs it through :mod:`backhaul.api`."""

    root: Path
    warehouse_file: str = "wh.duckdb"
    project_extra: dict[str, Any] = field(default_factory=dict)
    _loaded: Project | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.write("backhaul.yml", {"name": "t", **self.project_extra})
        self.write("sources/wh.yml", {"type": "duckdb", "path": self.warehouse_file})
        self.sql("SELECT 1")  # the warehouse file exists from the start

    # -- files ------------------------------------------------------------------------
    def write(self, rel: str, data: dict[str, Any] | str) -> Path:
        """Write a project file (a dict becomes YAML; a string is written as it is)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self._loaded = None
        path.write_text(data if isinstance(data, str) else dump_yaml(data), encoding="utf-8")
        return path

    def model(
        self, name: str, sql: str, primary_key: str | Sequence[str] = "id", **extra: Any
    ) -> None:
        """``models/NAME.yml`` + ``models/NAME.sql`` on the ``wh`` source."""
        pk = primary_key if isinstance(primary_key, str) else list(primary_key)
        self.write(f"models/{name}.yml", {"source": "wh", "primary_key": pk, **extra})
        self.write(f"models/{name}.sql", sql + "\n")

    def destination(self, name: str, **config: Any) -> None:
        self.write(f"destinations/{name}.yml", dict(config))

    def sqlite_destination(self, name: str = "db", table: str = "contacts") -> Path:
        self.destination(name, type="sqlite", path="dest.sqlite", table=table, create_table=True)
        return self.root / "dest.sqlite"

    def webhook_destination(
        self, receiver: WebhookReceiver, name: str = "hook", **extra: Any
    ) -> None:
        self.destination(name, type="webhook", url=receiver.url, mode="batch", **extra)

    def table_and_hook_syncs(
        self, receiver: WebhookReceiver, mappings: Sequence[dict[str, Any]]
    ) -> Path:
        """Syncs ``to_db`` (a SQLite table; its file is returned) and ``to_hook`` (a
        webhook to ``receiver``) of the ``users`` model with the same ``mappings``."""
        dest = self.sqlite_destination()
        self.webhook_destination(receiver)
        self.sync("to_db", mappings=mappings)
        self.sync("to_hook", destination="hook", mappings=mappings)
        return dest

    def sync(
        self,
        name: str,
        *,
        model: str = "users",
        destination: str = "db",
        mappings: Sequence[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        maps = (
            list(mappings)
            if mappings is not None
            else [
                {"column": "id", "field": "id"},
                {"column": "email", "field": "email"},
            ]
        )
        self.write(
            f"syncs/{name}.yml",
            {"model": model, "destination": destination, "mappings": maps, **extra},
        )

    # -- warehouse --------------------------------------------------------------------
    @property
    def warehouse(self) -> Path:
        return self.root / self.warehouse_file

    def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements on the warehouse file; return the rows of the last one."""
        con = duckdb.connect(str(self.warehouse))
        try:
            rows: list[tuple[Any, ...]] = []
            for stmt in statements:
                rows = con.execute(stmt).fetchall()
            return rows
        finally:
            con.close()

    def users(self, n: int, extra_columns: str = "") -> None:
        """A ``users`` table of ``n`` rows (id, email, name, score) and the ``users`` model."""
        cols = (
            "i::BIGINT AS id, 'u' || i || '@example.com' AS email, 'name ' || i AS name, "
            "(i % 97)::BIGINT AS score"
        )
        if extra_columns:
            cols += ", " + extra_columns
        self.sql(f"CREATE OR REPLACE TABLE users AS SELECT {cols} FROM range(1, {n + 1}) t(i)")
        self.model("users", "SELECT * FROM users")

    # -- running ----------------------------------------------------------------------
    def load(self) -> Project:
        """The loaded project (loaded again after any file was written)."""
        if self._loaded is None:
            self._loaded = api.load_project(self.root)
        return self._loaded

    def load_isolated(self) -> Project:
        """The project loaded as `run --all` loads it: invalid definitions set aside."""
        return api.load_project(self.root, isolate=True)

    def run(self, sync: str, **options: Any) -> RunSummary:
        return api.run(self.load(), sync, **options)

    def plan(self, sync: str, **options: Any) -> RunSummary:
        return api.plan(self.load(), sync, **options)

    def rows(self, run_id: str, status: str | None = None) -> list[RowOutcome]:
        with api.open_store(self.load()) as store:
            return store.rows(run_id, status=status, limit=1_000_000)

    def state_file(self, sync: str) -> Path:
        return snapshots.state_path(self.root / ".backhaul", sync)

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "-C", str(self.root), env=env)


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``backhaul ARGS`` in a fresh interpreter, as a user would."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "backhaul.cli.app", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sqlite_rows(path: Path, table: str = "contacts", order: str = "id") -> list[tuple[Any, ...]]:
    """Every row of a SQLite table, ordered."""
    con = sqlite3.connect(path)
    try:
        return con.execute(f'SELECT * FROM "{table}" ORDER BY {order}').fetchall()
    finally:
        con.close()


def sqlite_dicts(path: Path, table: str = "contacts", order: str = "id") -> list[dict[str, Any]]:
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f'SELECT * FROM "{table}" ORDER BY {order}')]
    finally:
        con.close()


def keys_of(outcomes: Sequence[RowOutcome], *, status: str | None = None) -> set[str]:
    return {o.key for o in outcomes if status is None or o.status == status}


@pytest.fixture
def fast_tmp(tmp_path: Path) -> Iterator[Path]:
    """A scratch folder in memory when the machine has one (fsync-heavy state is fast there)."""
    if not SHM.is_dir():
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="backhaul-test-", dir=SHM) as folder:
        yield Path(folder)


@pytest.fixture
def project(fast_tmp: Path) -> Builder:
    """An empty project with a DuckDB warehouse source named ``wh``."""
    return Builder(fast_tmp / "proj")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A loopback webhook receiver keyed by ``id``."""
    with WebhookReceiver(key_field="id") as hook:
        yield hook


@pytest.fixture
def pg_db() -> Iterator[str]:
    """A fresh Postgres database URL, dropped afterwards."""
    name = f"bh_engine_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_audit(path: Path, table: str = "contacts") -> None:
    """Log every insert, update and delete on ``table`` into an ``audit`` table."""
    con = sqlite3.connect(path)
    try:
        con.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS audit (op TEXT, id);
            CREATE TRIGGER audit_ins AFTER INSERT ON "{table}"
                BEGIN INSERT INTO audit VALUES ('insert', new.id); END;
            CREATE TRIGGER audit_upd AFTER UPDATE ON "{table}"
                BEGIN INSERT INTO audit VALUES ('update', new.id); END;
            CREATE TRIGGER audit_del AFTER DELETE ON "{table}"
                BEGIN INSERT INTO audit VALUES ('delete', old.id); END;
            """
        )
        con.commit()
    finally:
        con.close()


def audit_log(path: Path) -> dict[str, set[Any]]:
    """The ids written since :func:`sqlite_audit`, by operation."""
    out: dict[str, set[Any]] = {"insert": set(), "update": set(), "delete": set()}
    for op, key in sqlite_rows(path, "audit", order="rowid"):
        out[op].add(key)
    return out
