"""Write sessions on a source warehouse, for a sync's ``hooks`` statements.

The sources themselves stay read-only (a model must never change the warehouse); a hook is
the one place a sync writes there on purpose, so it gets its own connection. Where the
warehouse has transactions a hook list runs in one (Postgres, DuckDB, SQLite, MySQL for
DML); elsewhere each statement commits on its own (see docs/runs.md#hooks).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Protocol

import duckdb

from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import SourceError
from backhaul.sources.common import one_line

# Where one transaction holds a whole hook list; every other warehouse runs statement by
# statement.
TRANSACTIONAL = frozenset({"duckdb", "postgres", "sqlite", "mysql"})


@dataclass
class StatementFailed(Exception):
    """Statement ``index`` of a hook list failed; ``line`` is the warehouse's first line."""

    index: int
    line: str


def hooks_problem(source_cls: type[Any], config: Any) -> str | None:
    """Why hooks cannot run on a source with this config, or ``None`` when they can."""
    if config.type == "duckdb" and config.path == ":memory:":
        return (
            "hooks need a warehouse that outlives a connection; this DuckDB source is "
            "in memory (`path: :memory:`): point it at a file or remove `hooks`"
        )
    if config.type not in TRANSACTIONAL and not hasattr(source_cls, "run_statement"):
        return f"hooks cannot run on a `{config.type}` source; remove `hooks`"
    return None


def run_statements(
    source_cls: type[Any],
    config: Any,
    project_dir: Path,
    statements: Sequence[str],
    secrets: Sequence[str],
) -> None:
    """Run ``statements`` on the warehouse of a source ``config`` (secrets resolved).

    ``source_cls`` is the source's connector; warehouses without a session of their own
    here run each statement through its ``run_statement``.

    Raises:
        StatementFailed: A statement failed; the ones before it are rolled back where the
            warehouse has transactions.
        SourceError: The warehouse cannot be reached.
        ConfigError: The source has no way to run a statement.
    """
    kind = config.type
    if kind == "duckdb":
        _duckdb(config, project_dir, statements)
    elif kind == "postgres":
        _postgres(config, statements, secrets)
    elif kind == "mysql":
        _mysql(config, statements, secrets)
    elif kind == "sqlite":
        _sqlite(config, project_dir, statements)
    elif hasattr(source_cls, "run_statement"):
        _one_by_one(source_cls(config, project_dir), statements, secrets)
    else:
        raise ConfigError(f"hooks cannot run on a `{kind}` source")


def _duckdb(config: Any, project_dir: Path, statements: Sequence[str]) -> None:
    path = _file_path(config, project_dir)
    try:
        con = duckdb.connect(str(path))
        if config.setup_sql:
            con.execute(config.setup_sql)
    except duckdb.Error as exc:
        message = f"cannot open the DuckDB warehouse {path.name}: {one_line(str(exc))}"
        raise SourceError(message) from None
    _in_one_transaction(con, statements, duckdb.Error)


def _postgres(config: Any, statements: Sequence[str], secrets: Sequence[str]) -> None:
    import psycopg

    from backhaul.state.warehouse_conn import postgres_params

    params = postgres_params(config)
    # A password inside a `url` is masked on its own, not only the whole URL.
    secrets = [*secrets, str(params.get("password") or "")]
    try:
        conn = psycopg.connect(
            **params,
            autocommit=True,
            connect_timeout=max(1, int(config.connect_timeout)),
            application_name="backhaul-hooks",
        )
    except psycopg.Error as exc:
        raise SourceError(
            f"cannot connect to the postgres warehouse: {one_line(str(exc), secrets)}"
        ) from None
    try:
        done = 0
        try:
            with conn.transaction():
                for sql in statements:
                    conn.execute(sql.encode())  # bytes: `%` in the SQL is not a placeholder
                    done += 1
        except psycopg.Error as exc:
            raise StatementFailed(done, one_line(str(exc), secrets)) from None
    finally:
        conn.close()


def _mysql(config: Any, statements: Sequence[str], secrets: Sequence[str]) -> None:
    from backhaul.sources.mysql import _params
    from backhaul.sources.mysql import import_pymysql

    pymysql = import_pymysql()
    params = _params(config)
    secrets = [*secrets, str(params.get("password") or "")]
    try:
        conn = pymysql.connect(
            **params,
            charset="utf8mb4",
            connect_timeout=max(1, int(config.connect_timeout)),
            autocommit=False,
            init_command="SET time_zone = '+00:00'",
        )
    except pymysql.Error as exc:
        message = f"cannot connect to the mysql warehouse: {_mysql_line(exc, secrets)}"
        raise SourceError(message) from None
    try:
        conn.begin()
        for i, sql in enumerate(statements):
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
            except pymysql.Error as exc:
                conn.rollback()
                raise StatementFailed(i, _mysql_line(exc, secrets)) from None
        conn.commit()
    finally:
        conn.close()


def _mysql_line(exc: BaseException, secrets: Sequence[str]) -> str:
    text = exc.args[1] if len(exc.args) > 1 else str(exc)
    return one_line(str(text), secrets)


def _sqlite(config: Any, project_dir: Path, statements: Sequence[str]) -> None:
    path = _file_path(config, project_dir)
    try:
        con = sqlite3.connect(path, timeout=config.connect_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        message = f"cannot open the SQLite warehouse {path.name}: {one_line(str(exc))}"
        raise SourceError(message) from None
    _in_one_transaction(con, statements, sqlite3.Error)


class _Connection(Protocol):
    def execute(self, sql: str, /) -> object: ...

    def close(self) -> None: ...


def _file_path(config: Any, project_dir: Path) -> Path:
    """A file warehouse's ``path``; a relative one is read from the project folder."""
    path = Path(config.path)
    return path if path.is_absolute() else project_dir / path


def _in_one_transaction(
    con: _Connection, statements: Sequence[str], errors: type[Exception]
) -> None:
    """Run ``statements`` between an explicit BEGIN and COMMIT, then close ``con``.

    The embedded warehouses (DuckDB, SQLite) take the transaction as plain statements, so a
    failing statement rolls back the ones before it and is reported by its index.
    """
    try:
        con.execute("BEGIN")
        for i, sql in enumerate(statements):
            try:
                con.execute(sql)
            except errors as exc:
                con.execute("ROLLBACK")
                raise StatementFailed(i, one_line(str(exc))) from None
        con.execute("COMMIT")
    finally:
        con.close()


def _one_by_one(source: Any, statements: Sequence[str], secrets: Sequence[str]) -> None:
    """Cloud warehouses: each statement through the source's own driver, committed alone.

    ``source`` is closed when the statements are done.
    """
    secrets = [*secrets, *getattr(source, "_secrets", list)()]
    try:
        for i, sql in enumerate(statements):
            try:
                source.run_statement(sql)
            except BackhaulError:
                raise
            except Exception as exc:
                raise StatementFailed(
                    i, one_line(str(exc) or type(exc).__name__, secrets)
                ) from None
    finally:
        source.close()


__all__ = ["TRANSACTIONAL", "StatementFailed", "hooks_problem", "run_statements"]
