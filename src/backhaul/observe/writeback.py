"""Sync logs written back to the warehouse, so analysts can query sync history with SQL.

After a run, one row goes to ``<schema>.backhaul_runs`` and one row per record outcome to
``<schema>.backhaul_changelog``, in the warehouse of the sync's model source (Postgres or a
DuckDB file). Writing a run again replaces its rows, so a retried write-back never
duplicates them. Opt-in per sync (see :class:`WritebackConfig`).
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from backhaul.config.models import WritebackConfig
from backhaul.config.project import Project
from backhaul.errors import ConfigError
from backhaul.state.warehouse_conn import DuckDBConn
from backhaul.state.warehouse_conn import PostgresConn
from backhaul.state.warehouse_conn import WarehouseConn
from backhaul.state.warehouse_conn import postgres_params
from backhaul.summary import RunSummary

PAGE = 10_000


# The row counts of a run that its written-back row carries (:class:`Counts` fields).
RUN_COUNTS = (
    "queried",
    "added",
    "changed",
    "removed",
    "retried",
    "invalid",
    "succeeded",
    "rejected",
)
RUN_COLUMNS = (
    ("run_id", "VARCHAR(64)"),
    ("sync", "VARCHAR(200)"),
    ("status", "VARCHAR(32)"),
    *((name, "BIGINT") for name in RUN_COUNTS),
    ("error", "VARCHAR(4096)"),
    ("started_at", "TIMESTAMP"),
    ("finished_at", "TIMESTAMP"),
)
CHANGE_COLUMNS = (
    ("run_id", "VARCHAR(64)"),
    ("sync", "VARCHAR(200)"),
    ("key", "VARCHAR(4096)"),
    ("op", "VARCHAR(16)"),
    ("status", "VARCHAR(16)"),
    ("error", "VARCHAR(4096)"),
    ("at", "TIMESTAMP"),
)


def open_conn(project: Project, source_name: str) -> WarehouseConn:
    """A read-write connection to a source warehouse (Postgres or a DuckDB file)."""
    src = project.sources.get(source_name)
    if src is None:
        raise ConfigError(f"unknown source `{source_name}`")
    from backhaul.config.secrets import resolve

    cfg, _secrets = resolve(src.config, positions=src.positions)  # ${env:NAME} values
    if cfg.type == "postgres":
        return PostgresConn(postgres_params(cfg), connect_timeout=cfg.connect_timeout)
    if cfg.type == "duckdb" and cfg.path != ":memory:":
        path = Path(cfg.path)
        path = path if path.is_absolute() else project.root / path
        return DuckDBConn(duckdb.connect(":memory:"), path, writable=True, owned=True)
    raise ConfigError(
        f"sync logs can be written back to postgres and DuckDB file sources, not to "
        f"`{cfg.type}`; turn `writeback` off for this sync",
        key="writeback",
    )


def _ddl(columns: tuple[tuple[str, str], ...]) -> str:
    # Quoted: "key" and "at" are reserved words in some warehouses.
    return ", ".join(f'"{n}" {t}' for n, t in columns)


def write_back(
    project: Project, sync: str, summary: RunSummary, store: Any, config: WritebackConfig
) -> int:
    """Append ``summary`` and its row outcomes to the warehouse; returns the rows written.

    Raises:
        ConfigError: the schema is missing and cannot be created, or cannot be written.
    """
    model = project.models[project.sync(sync).config.model]
    conn = open_conn(project, model.config.source)
    schema = conn.qualify(config.schema_)
    runs, changes = f"{schema}.backhaul_runs", f"{schema}.backhaul_changelog"
    try:
        try:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        except Exception as exc:
            if not _denied(exc):
                raise
        try:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {runs} ({_ddl(RUN_COLUMNS)})")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {changes} ({_ddl(CHANGE_COLUMNS)})")
        except Exception as exc:
            if _denied(exc) or "does not exist" in str(exc).lower():
                raise _grants_error(config.schema_, exc) from None
            raise
        run_row = _run_row(summary)
        written = 0
        try:
            with conn.transaction():
                conn.execute(f"DELETE FROM {runs} WHERE run_id = '{_lit(summary.run_id)}'")
                conn.execute(f"DELETE FROM {changes} WHERE run_id = '{_lit(summary.run_id)}'")
                conn.stage("bh_run_row", _ddl(RUN_COLUMNS), run_row)
                conn.execute(f"INSERT INTO {runs} SELECT * FROM bh_run_row")
                at = summary.finished_at or datetime.now(UTC)
                # Every row read once (the run store, then the run's row log), page by page.
                for rows in store.iter_rows(summary.run_id, PAGE):
                    name = f"bh_changes_{written}"
                    conn.stage(name, _ddl(CHANGE_COLUMNS), _change_rows(summary, rows, at))
                    conn.execute(f"INSERT INTO {changes} SELECT * FROM {name}")
                    written += len(rows)
        except Exception as exc:
            if _denied(exc):
                raise _grants_error(config.schema_, exc) from None
            raise
        return written + 1
    finally:
        conn.close()


def _run_row(summary: RunSummary) -> pa.Table:
    counts = summary.counts.as_dict()
    values: dict[str, Any] = {
        "run_id": summary.run_id,
        "sync": summary.sync,
        "status": summary.status.value,
        **{name: counts[name] for name in RUN_COUNTS},
        "error": summary.error,
        "started_at": _naive(summary.started_at),
        "finished_at": _naive(summary.finished_at),
    }
    types = {
        "error": pa.string(),
        "started_at": pa.timestamp("us"),
        "finished_at": pa.timestamp("us"),
    }
    return pa.table({k: pa.array([v], type=types.get(k)) for k, v in values.items()})


def _change_rows(summary: RunSummary, rows: list[Any], at: datetime) -> pa.Table:
    n = len(rows)
    return pa.table(
        {
            "run_id": pa.array([summary.run_id] * n, pa.string()),
            "sync": pa.array([summary.sync] * n, pa.string()),
            "key": pa.array([r.key for r in rows], pa.string()),
            "op": pa.array([r.op.value for r in rows], pa.string()),
            "status": pa.array([r.status for r in rows], pa.string()),
            "error": pa.array([r.error for r in rows], pa.string()),
            "at": pa.array([_naive(at)] * n, pa.timestamp("us")),
        }
    )


def _naive(value: datetime | None) -> datetime | None:
    """UTC without an offset: every warehouse's plain TIMESTAMP holds it the same way."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _lit(text: str) -> str:
    return text.replace("'", "''")


def _denied(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "permission denied" in text or "read-only" in text or "read only" in text


def _grants_error(schema: str, exc: BaseException) -> ConfigError:
    line = next((p.strip() for p in str(exc).splitlines() if p.strip()), type(exc).__name__)
    return ConfigError(
        f"cannot write sync logs to the warehouse schema `{schema}` ({line}); an admin can "
        f"run `CREATE SCHEMA {schema} AUTHORIZATION <backhaul_user>` (Postgres) or grant "
        f"create and insert on it (see docs/warehouse-planning.md), or turn `writeback` off",
        key="writeback.schema",
    )


__all__ = ["WritebackConfig", "open_conn", "write_back"]
