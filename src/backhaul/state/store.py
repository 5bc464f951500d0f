"""The metadata store: run records, per-row outcomes and the API-call log.

Per-row outcomes that went well (ok, skipped) go to the run's row log beside the store
when it has one (:mod:`backhaul.state.rowlog`); rejected and invalid rows always come here.

:class:`RunStore` writes (and migrates); it extends :class:`backhaul.state.reader.RunReader`,
which holds every query, so code that only reads can be handed a ``RunReader``.

A SQLite file by default (``sqlite:///.backhaul/backhaul.db``); a Postgres database
(``postgresql+psycopg://...``) for teams and for several workers. The schema is managed by
the Alembic migrations in ``state/migrations``, run in-process by :meth:`RunStore.open`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import Column
from sqlalchemy import MetaData
from sqlalchemy import PrimaryKeyConstraint
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import insert
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError

from backhaul.calls import HttpCall
from backhaul.clock import utc_now
from backhaul.errors import StoreError
from backhaul.files import not_a_file
from backhaul.state.reader import BEGIN_OPTION
from backhaul.state.reader import MIN_PREFIX
from backhaul.state.reader import RunReader
from backhaul.state.reader import RunRecord
from backhaul.state.reader import call_from_row
from backhaul.state.reader import is_memory
from backhaul.state.reader import normalise_url
from backhaul.state.reader import record_from_row
from backhaul.state.rowlog import LOGGED
from backhaul.state.rowlog import SCHEMA as LOG_SCHEMA
from backhaul.state.rowlog import RowLogs
from backhaul.state.rowlog import split_outcomes
from backhaul.state.tables import VERSION_TABLE
from backhaul.state.tables import http_calls
from backhaul.state.tables import metadata
from backhaul.state.tables import run_rows
from backhaul.state.tables import runs
from backhaul.summary import Counts
from backhaul.summary import RowOp
from backhaul.summary import RowOutcome
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def _schema_is(conn: Connection, revision: str) -> bool:
    """Whether the store's recorded schema revision is ``revision``; False when there is
    none to read (a new store) or it cannot be read (the upgrade then says why). Ends the
    read's transaction either way, so the upgrade can begin its own."""
    try:
        found: list[Any] = list(
            conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalars()
        )
    except DBAPIError:
        conn.rollback()
        return False
    conn.rollback()
    return found == [revision]


# Alembic's bookkeeping table as Alembic itself creates it, for a store made in one step.
_VERSION = Table(
    VERSION_TABLE,
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
)


def _create_new(conn: Connection) -> bool:
    """Give a store with no table at all the newest schema in one step: ``tables.py``'s
    tables, stamped with the head revision, as Alembic's own advice for new databases has
    it. Running every migration from the first costs about 50 ms more, and importing
    Alembic a tenth of a second (a test holds the two schemas equal). False, with nothing
    done, when the store has any of its tables: the migrations then take it from there."""
    present = set(inspect(conn).get_table_names())
    if present & {*metadata.tables, VERSION_TABLE}:
        return False
    metadata.create_all(conn)
    _VERSION.create(conn)
    conn.execute(insert(_VERSION).values(version_num=head_revision()))
    return True


def head_revision() -> str:
    """The newest migration's revision, read from the file names (``NNNN_what.py``, each
    file's ``revision`` is its number; a test holds this to Alembic's own head)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


INTERRUPTED = "interrupted (process ended before the run finished)"
_CHUNK = 10_000  # rows per executemany: bounds memory while keeping round trips few
# Any fixed 64-bit number; every Backhaul process uses the same one to serialise migrations.
_PG_MIGRATION_LOCK = 0x6261636B6861756C  # "backhaul"
_BEGIN = BEGIN_OPTION  # execution option: which BEGIN statement SQLite should use


class RunStore(RunReader):
    """Writes run records through SQLAlchemy Core; reads are those of :class:`RunReader`.

    Safe to share between threads; each method uses its own short transaction.

    Args:
        url: SQLAlchemy URL, ``sqlite:///path/to/backhaul.db`` or
            ``postgresql+psycopg://user@host/db`` (plain ``postgresql://`` means psycopg too).
    """

    @classmethod
    def open(cls, url: str, row_logs: RowLogs | None = None) -> RunStore:
        """Connect and migrate the schema to the latest version.

        Creates the folder of a SQLite file if needed. Several processes may open the same
        store at once: migrations are serialised by a database lock. With ``row_logs``, runs
        keep their ok and skipped rows there rather than in the ``run_rows`` table.
        """
        parsed = normalise_url(url)
        if parsed.get_backend_name() == "sqlite" and not is_memory(parsed):
            path = Path(parsed.database or "")
            reason = not_a_file(path)
            if reason is not None:  # never open a pipe or a folder
                raise StoreError(f"the run store {path} {reason}; move it away and run again")
            path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(url, row_logs)
        try:
            store.upgrade()
        except BaseException:
            store.close()
            raise
        return store

    def upgrade(self) -> None:
        """Apply every migration not yet applied (a no-op when the schema is current).

        A store already at the newest revision is seen with one query on the connection
        the upgrade would use, without importing or running Alembic (about a quarter of a
        second of every process's start). A new, empty store is created at the newest
        revision in one step (:func:`_create_new`).
        """
        sqlite = self._engine.dialect.name == "sqlite"
        try:
            with self._guard(), self._engine.connect() as conn:
                if _schema_is(conn, head_revision()):
                    return
                driver: Any = conn.connection.driver_connection if sqlite else None
                if sqlite:
                    # Rebuilding a table in batch mode must not cascade deletes to its
                    # children; the pragma only takes effect outside a transaction.
                    driver.execute("PRAGMA foreign_keys=OFF")
                try:
                    conn.execution_options(**{_BEGIN: "BEGIN IMMEDIATE"})
                    with conn.begin():
                        if conn.dialect.name == "postgresql":
                            conn.exec_driver_sql(
                                f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"
                            )
                        if not _create_new(conn):
                            self._migrate(conn)
                finally:
                    if sqlite:
                        driver.execute("PRAGMA foreign_keys=ON")
        except OperationalError as exc:
            raise StoreError(
                f"Could not open the run store at {self.url}: check state.metadata_url "
                "in backhaul.yml and that the database is reachable.",
                detail=str(exc.orig),
            ) from exc

    def _migrate(self, conn: Connection) -> None:
        """Alembic's ``upgrade head`` on ``conn`` (imported here: a current store never
        needs it)."""
        from alembic import command
        from alembic.config import Config
        from alembic.util.exc import CommandError

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as exc:
            raise StoreError(
                f"The run store at {self.url} has a schema this version of Backhaul does not "
                "know (it was probably written by a newer version): upgrade Backhaul.",
                detail=str(exc),
            ) from exc

    # -- writing -------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        sync: str,
        *,
        full_resync: bool,
        dry_run: bool = False,
        trigger: str = "cli",
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        started_at: datetime | None = None,
    ) -> None:
        """Record a new run in status ``running`` with zero counts."""
        values: dict[str, Any] = {
            "id": run_id,
            "sync": sync,
            "status": RunStatus.RUNNING.value,
            "trigger": trigger,
            "full_resync": full_resync,
            "dry_run": dry_run,
            "git_commit": git_commit,
            "git_dirty": git_dirty,
            "started_at": started_at or utc_now(),
            **Counts().as_dict(),
        }
        with self._write() as conn:
            conn.execute(insert(runs).values(values))

    def update_counts(self, run_id: str, counts: Counts, *, wait_s: float | None = None) -> None:
        """Store the latest counts (and waiting time) of a running run, after each checkpoint."""
        values: dict[str, Any] = counts.as_dict()
        if wait_s is not None:
            values["wait_s"] = wait_s
        with self._write() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(values))

    def finish_run(self, summary: RunSummary) -> None:
        """Store the final status, counts, finish time and error of a run.

        Inserts the run if :meth:`start_run` was never called for it.
        """
        finished_at = summary.finished_at or utc_now()
        values: dict[str, Any] = {
            "status": summary.status.value,
            "finished_at": finished_at,
            "error": summary.error,
            "wait_s": summary.wait_s,
            **summary.counts.as_dict(),
        }
        with self._write() as conn:
            result = conn.execute(update(runs).where(runs.c.id == summary.run_id).values(values))
            if result.rowcount == 0:
                conn.execute(
                    insert(runs).values(
                        id=summary.run_id,
                        sync=summary.sync,
                        trigger="cli",
                        full_resync=summary.full_resync,
                        dry_run=summary.dry_run,
                        started_at=summary.started_at or finished_at,
                        **values,
                    )
                )
        self._close_row_log(summary.run_id)

    def add_rows(self, run_id: str, rows: Sequence[RowOutcome]) -> None:
        """Record per-row outcomes: ok and skipped ones in the run's row log (when the store
        has row logs), the others in the ``run_rows`` table (chunked ``executemany``)."""
        if not rows:
            return
        if self._row_logs is not None and any(r.status in LOGGED for r in rows):
            table = pa.table(
                {
                    "key": [r.key for r in rows],
                    "op": [RowOp(r.op).value for r in rows],
                    "status": [str(r.status) for r in rows],
                    "error": [r.error for r in rows],
                    "operation": [r.operation for r in rows],
                    "call_id": [r.call_id for r in rows],
                },
                schema=LOG_SCHEMA,
            )
            self.add_row_table(run_id, table)
            return
        with self._write() as conn:
            for start in range(0, len(rows), _CHUNK):
                chunk = [
                    {
                        "run_id": run_id,
                        "key": row.key,
                        "op": RowOp(row.op).value,
                        "status": row.status,
                        "operation": row.operation,
                        "error": row.error,
                        "call_id": row.call_id,
                    }
                    for row in rows[start : start + _CHUNK]
                ]
                conn.execute(insert(run_rows), chunk)

    def add_row_table(self, run_id: str, table: pa.Table) -> None:
        """Record per-row outcomes given as columns (key, op, status, error, operation,
        call_id), never building a Python object per ok row.

        With row logs, ok and skipped rows are appended to the run's log in one write and
        only rejected and invalid ones are inserted; without, every row is inserted.
        """
        if not table.num_rows:
            return
        table, logged = self._split_outcomes(table)
        if table.num_rows:
            with self._write() as conn:
                self._insert_row_table(conn, run_id, table)
        self.append_row_log(run_id, logged)

    def _split_outcomes(self, table: pa.Table) -> tuple[pa.Table, list[pa.Table]]:
        """The rows the store keeps, and (with row logs) the ok and skipped rows that go
        to the run's row log instead."""
        if self._row_logs is None:
            return table, []
        logged, kept = split_outcomes(table)
        return kept, ([logged] if logged.num_rows else [])

    def append_row_log(self, run_id: str, tables: Sequence[pa.Table]) -> None:
        """Append ok and skipped outcomes to the run's row log, once their checkpoint is
        written; when the run's log is closed they are inserted in the store instead."""
        if self._row_logs is None:
            left = [t for t in tables if t.num_rows]
        else:
            left = [t for t in tables if t.num_rows and not self._row_logs.append(run_id, t)]
        if left:
            with self._write() as conn:
                for table in left:
                    self._insert_row_table(conn, run_id, table)

    def write_row_log(self, run_id: str, con: Any, select: str) -> bool:
        """Write a run's whole row log at once from ``select`` on the DuckDB connection
        ``con`` (see :meth:`RowLogs.write_whole`), once the run's checkpoint is written.
        False when there are no row logs or the run has one already: append instead."""
        if self._row_logs is None:
            return False
        return self._row_logs.write_whole(run_id, con, select)

    def record_batches(
        self,
        run_id: str,
        outcomes: Sequence[pa.Table],
        calls: Sequence[HttpCall],
        counts: Counts | None = None,
        *,
        wait_s: float | None = None,
    ) -> list[pa.Table]:
        """Record several batches in one transaction: their row outcomes (as
        :meth:`add_row_table`), the calls that carried them and the run's counts so far.

        The engine groups the batches that finished while the previous group was being
        written, so a run commits once per group rather than several times per batch.
        Returns the ok and skipped outcomes meant for the row log (empty without row
        logs): the caller appends them with :meth:`append_row_log` once the batches'
        checkpoint is written, so a row log never shows a row whose checkpoint did not
        commit.
        """
        to_log: list[pa.Table] = []
        with self._write() as conn:
            for table in outcomes:
                if not table.num_rows:
                    continue
                kept, logged = self._split_outcomes(table)
                to_log += logged
                if kept.num_rows:
                    self._insert_row_table(conn, run_id, kept)
            if calls:
                _insert_calls(conn, run_id, calls)
            if counts is not None:
                values: dict[str, Any] = counts.as_dict()
                if wait_s is not None:
                    values["wait_s"] = wait_s
                conn.execute(update(runs).where(runs.c.id == run_id).values(values))
        return to_log

    def add_calls(self, run_id: str, calls: Sequence[HttpCall]) -> None:
        """Insert recorded HTTP calls (already redacted by the recorder)."""
        if not calls:
            return
        with self._write() as conn:
            _insert_calls(conn, run_id, calls)

    def _insert_row_table(self, conn: Connection, run_id: str, table: pa.Table) -> None:
        sql = (
            "INSERT INTO run_rows (run_id, key, op, status, error, operation, call_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        if self._engine.dialect.paramstyle != "qmark":
            sql = sql.replace("?", "%s")
        cols = [
            table.column(c).to_pylist()
            for c in ("key", "op", "status", "error", "operation", "call_id")
        ]
        for start in range(0, table.num_rows, _CHUNK):
            end = start + _CHUNK
            params = list(
                zip(
                    [run_id] * (min(end, table.num_rows) - start),
                    *(c[start:end] for c in cols),
                    strict=True,
                )
            )
            conn.exec_driver_sql(sql, params)

    def prune_row_logs(self, now: datetime | None = None) -> int:
        """Apply row-log retention: delete the logs of runs older than ``keep_days`` or
        beyond the newest ``keep_runs`` of their sync. Run records and the rejected and
        invalid rows in the store stay. Returns how many runs' logs were deleted."""
        logs = self._row_logs
        if logs is None:
            return 0
        found = logs.run_ids()
        known: dict[str, tuple[str, datetime, bool]] = {}
        with self._read() as conn:
            for start in range(0, len(found), 500):
                query = select(runs.c.id, runs.c.sync, runs.c.started_at, runs.c.status).where(
                    runs.c.id.in_(found[start : start + 500])
                )
                for row in conn.execute(query):
                    running = row.status == RunStatus.RUNNING.value
                    known[row.id] = (row.sync, row.started_at, running)
        expired = logs.expired(known, now)
        for run_id in expired:
            logs.delete(run_id)
        if expired:
            log.info("row logs: deleted those of %d runs (retention)", len(expired))
        return len(expired)

    def _close_row_log(self, run_id: str) -> None:
        """Turn a run's row log into Parquet; a failure leaves the stream, still readable."""
        if self._row_logs is None:
            return
        try:
            self._row_logs.finish(run_id)
        except Exception as exc:  # the run's record is written; its log stays a stream
            log.warning("could not compact the row log of run %s: %s", run_id, exc)

    def mark_abandoned(self, sync: str) -> int:
        """Mark runs of ``sync`` still ``running`` as failed; returns how many.

        Call this only while holding the sync's run lock: any run still ``running`` then
        belongs to a process that ended without finishing it. The finish time stays empty
        because nobody knows when that process stopped.
        """
        running = runs.c.sync == sync, runs.c.status == RunStatus.RUNNING.value
        with self._write() as conn:
            abandoned = [r[0] for r in conn.execute(select(runs.c.id).where(*running))]
            result = conn.execute(
                update(runs)
                .where(*running)
                .values(status=RunStatus.FAILED.value, error=INTERRUPTED)
            )
        for run_id in abandoned:  # what the killed run logged up to its last checkpoint
            self._close_row_log(run_id)
        return int(result.rowcount)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        # SQLite: take the write lock up front, so a second writer waits (busy timeout)
        # instead of failing when it tries to upgrade a read lock.
        with self._guard(), self._engine.connect() as conn:
            conn.execution_options(**{_BEGIN: "BEGIN IMMEDIATE"})
            with conn.begin():
                yield conn


def _insert_calls(conn: Connection, run_id: str, calls: Sequence[HttpCall]) -> None:
    values = [
        {
            "call_id": call.call_id,
            "run_id": run_id,
            "method": call.method,
            "url": call.url,
            "status": call.status,
            "latency_ms": call.latency_ms,
            "request_headers": json.dumps(call.request_headers, sort_keys=True),
            "request_body": call.request_body,
            "response_body": call.response_body,
            "error": call.error,
            "attempt": call.attempt,
            "started_at": call.started_at,
            "response_headers": json.dumps(call.response_headers, sort_keys=True),
            "wait_ms": call.wait_ms,
            "wait_reason": call.wait_reason,
        }
        for call in calls
    ]
    for start in range(0, len(values), _CHUNK):
        conn.execute(insert(http_calls), values[start : start + _CHUNK])


__all__ = [
    "INTERRUPTED",
    "MIGRATIONS",
    "MIN_PREFIX",
    "RunReader",
    "RunRecord",
    "RunStore",
    "StoreError",
    "call_from_row",
    "record_from_row",
]
