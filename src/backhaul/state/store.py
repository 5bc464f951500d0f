"""The metadata store: run records, per-row outcomes and the API-call log.

A SQLite file by default (``sqlite:///.backhaul/backhaul.db``); a Postgres database
(``postgresql+psycopg://...``) for teams and for several workers. The schema is managed by
the Alembic migrations in ``state/migrations``, run in-process by :meth:`RunStore.open`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Engine, Row, create_engine, event, func, insert, select, update
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from backhaul.engine.summary import Counts, RowOp, RowOutcome, RowStatus, RunStatus, RunSummary
from backhaul.errors import StateError
from backhaul.files import problem
from backhaul.observe.recorder import HttpCall
from backhaul.state.tables import COUNT_COLUMNS, OUTCOME_COLUMNS, http_calls, run_rows, runs

MIGRATIONS = Path(__file__).parent / "migrations"
INTERRUPTED = "interrupted (process ended before the run finished)"
MIN_PREFIX = 6
_CHUNK = 10_000  # rows per executemany: bounds memory while keeping round trips few
# Any fixed 64-bit number; every Backhaul process uses the same one to serialise migrations.
_PG_MIGRATION_LOCK = 0x6261636B6861756C  # "backhaul"
_BEGIN = "backhaul_begin"  # execution option: which BEGIN statement SQLite should use


class StoreError(StateError):
    """The metadata store could not be opened, migrated or queried as asked."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of one sync, as stored."""

    run_id: str
    sync: str
    status: RunStatus
    counts: Counts
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    full_resync: bool
    dry_run: bool
    trigger: str
    git_commit: str | None
    wait_s: float = 0.0  # seconds at least one call waited (rate limits, retries, throttling)

    @property
    def duration_s(self) -> float:
        """Seconds from start to finish; 0.0 while the run has no finish time."""
        if self.finished_at is None:
            return 0.0
        return (self.finished_at - self.started_at).total_seconds()


class RunStore:
    """Reads and writes run records through SQLAlchemy Core.

    Safe to share between threads; each method uses its own short transaction.

    Args:
        url: SQLAlchemy URL, ``sqlite:///path/to/backhaul.db`` or
            ``postgresql+psycopg://user@host/db`` (plain ``postgresql://`` means psycopg too).
    """

    def __init__(self, url: str) -> None:
        self._url = _normalise(url)
        self.url = self._url.render_as_string(hide_password=True)
        self._engine = _create_engine(self._url)

    @classmethod
    def open(cls, url: str) -> RunStore:
        """Connect and migrate the schema to the latest version.

        Creates the folder of a SQLite file if needed. Several processes may open the same
        store at once: migrations are serialised by a database lock.
        """
        parsed = _normalise(url)
        if parsed.get_backend_name() == "sqlite" and not _is_memory(parsed):
            path = Path(parsed.database or "")
            reason = problem(path)
            if reason not in (None, "does not exist"):  # never open a pipe or a folder
                raise StoreError(f"the run store {path} {reason}; move it away and run again")
            path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(url)
        try:
            store.upgrade()
        except BaseException:
            store.close()
            raise
        return store

    def upgrade(self) -> None:
        """Apply every migration not yet applied (a no-op when the schema is current)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        sqlite = self._engine.dialect.name == "sqlite"
        try:
            with self._guard(), self._engine.connect() as conn:
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
                        config.attributes["connection"] = conn
                        command.upgrade(config, "head")
                finally:
                    if sqlite:
                        driver.execute("PRAGMA foreign_keys=ON")
        except CommandError as exc:
            raise StoreError(
                f"The run store at {self.url} has a schema this version of Backhaul does not "
                "know (it was probably written by a newer version): upgrade Backhaul.",
                detail=str(exc),
            ) from exc
        except OperationalError as exc:
            raise StoreError(
                f"Could not open the run store at {self.url}: check state.metadata_url "
                "in backhaul.yml and that the database is reachable.",
                detail=str(exc.orig),
            ) from exc

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for modules that keep their own tables in this database
        (the web app's users, tokens and audit log) and for read-only reporting queries."""
        return self._engine

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
            "started_at": started_at or _now(),
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
        finished_at = summary.finished_at or _now()
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

    def add_rows(self, run_id: str, rows: Sequence[RowOutcome]) -> None:
        """Insert per-row outcomes in bulk (chunked ``executemany``)."""
        if not rows:
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
        """Insert per-row outcomes given as columns (key, op, status, error, operation, call_id).

        The fast path for large runs: values go to the driver's ``executemany`` without
        building a Python object per row.
        """
        if not table.num_rows:
            return
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
        with self._write() as conn:
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

    def add_calls(self, run_id: str, calls: Sequence[HttpCall]) -> None:
        """Insert recorded HTTP calls (already redacted by the recorder)."""
        if not calls:
            return
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
        with self._write() as conn:
            for start in range(0, len(values), _CHUNK):
                conn.execute(insert(http_calls), values[start : start + _CHUNK])

    def mark_abandoned(self, sync: str) -> int:
        """Mark runs of ``sync`` still ``running`` as failed; returns how many.

        Call this only while holding the sync's run lock: any run still ``running`` then
        belongs to a process that ended without finishing it. The finish time stays empty
        because nobody knows when that process stopped.
        """
        with self._write() as conn:
            result = conn.execute(
                update(runs)
                .where(runs.c.sync == sync, runs.c.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.FAILED.value, error=INTERRUPTED)
            )
            return int(result.rowcount)

    # -- reading -------------------------------------------------------------------------

    def runs(self, sync: str | None = None, limit: int = 20) -> list[RunRecord]:
        """The most recent runs, newest first, of one sync or of all."""
        query = select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
        if sync is not None:
            query = query.where(runs.c.sync == sync)
        with self._read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def run(self, run_id: str) -> RunRecord | None:
        """One run by id, or by a unique prefix of at least six characters.

        Raises:
            StoreError: the prefix matches more than one run.
        """
        with self._read() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
            if row is not None or len(run_id) < MIN_PREFIX:
                return _record(row) if row is not None else None
            query = (
                select(runs)
                .where(runs.c.id.startswith(run_id, autoescape=True))
                .order_by(runs.c.id)
                .limit(2)
            )
            found = conn.execute(query).all()
        if len(found) > 1:
            raise StoreError(
                f"Run id prefix {run_id!r} matches several runs "
                f"({found[0].id}, {found[1].id}, ...): give more characters."
            )
        return _record(found[0]) if found else None

    def last_run(self, sync: str) -> RunRecord | None:
        """The newest run of ``sync`` (dry runs included), or ``None``."""
        found = self.runs(sync, limit=1)
        return found[0] if found else None

    def rows(
        self,
        run_id: str,
        *,
        status: str | None = None,
        key: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RowOutcome]:
        """Per-row outcomes of a run in the order they were recorded, optionally filtered."""
        query = select(run_rows).where(run_rows.c.run_id == run_id)
        if status is not None:
            query = query.where(run_rows.c.status == status)
        if key is not None:
            query = query.where(run_rows.c.key == key)
        query = query.order_by(run_rows.c.id).limit(limit).offset(offset)
        with self._read() as conn:
            return [
                RowOutcome(
                    key=row.key,
                    op=RowOp(row.op),
                    status=RowStatus(row.status),
                    error=row.error,
                    operation=row.operation,
                    call_id=row.call_id,
                )
                for row in conn.execute(query)
            ]

    def row_counts(self, run_id: str) -> dict[tuple[str, str], int]:
        """How many rows of a run ended in each ``(op, status)`` pair."""
        query = (
            select(run_rows.c.op, run_rows.c.status, func.count())
            .where(run_rows.c.run_id == run_id)
            .group_by(run_rows.c.op, run_rows.c.status)
        )
        with self._read() as conn:
            return {(str(r[0]), str(r[1])): int(r[2]) for r in conn.execute(query)}

    def calls(self, run_id: str, limit: int = 100) -> list[HttpCall]:
        """Recorded HTTP calls of a run, oldest first."""
        query = (
            select(http_calls)
            .where(http_calls.c.run_id == run_id)
            .order_by(http_calls.c.started_at, http_calls.c.call_id)
            .limit(limit)
        )
        with self._read() as conn:
            return [call_from_row(row) for row in conn.execute(query)]

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        # SQLite: take the write lock up front, so a second writer waits (busy timeout)
        # instead of failing when it tries to upgrade a read lock.
        with self._guard(), self._engine.connect() as conn:
            conn.execution_options(**{_BEGIN: "BEGIN IMMEDIATE"})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._guard(), self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """A damaged store or a full disk as one line saying what to do (other errors pass)."""
        try:
            yield
        except DBAPIError as exc:
            failure = _failure(exc.orig)
            if failure is None:
                raise
            raise StoreError(self._failure_message(failure, exc.orig), detail=str(exc)) from None

    def _failure_message(self, failure: str, orig: BaseException | None) -> str:
        cause = (
            str(orig).strip().splitlines()[0] if orig is not None and str(orig).strip() else failure
        )
        if self._engine.dialect.name != "sqlite":
            if failure == "damaged":
                return (
                    f"the run store at {self.url} reports damaged data ({cause}); have the "
                    "database repaired, or point state.metadata_url at a new database"
                )
            return (
                f"the run store's database server ({self.url}) could not write: {cause}; "
                "free space there and run again"
            )
        path = Path(self._url.database or "")
        if failure == "damaged":
            return (
                f"the run store {path} is damaged ({cause}); move it away with its -wal and "
                f"-shm files (`mkdir -p {path.parent}/damaged && mv {path}* "
                f"{path.parent}/damaged/`) and run again: a new, empty store is made (run "
                "history and web users start over); snapshots are kept, so nothing is sent again"
            )
        return (
            f"the run store {path} could not be written ({cause}); check that its disk has "
            "free space and run again"
        )


def _now() -> datetime:
    return datetime.now(UTC)


def record_from_row(row: Row[Any]) -> RunRecord:
    """A RunRecord from a row of the ``runs`` table (for queries the store has no method for)."""
    return RunRecord(
        run_id=row.id,
        sync=row.sync,
        status=RunStatus(row.status),
        counts=Counts(
            **{name: int(getattr(row, name)) for name in (*COUNT_COLUMNS, *OUTCOME_COLUMNS)}
        ),
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        full_resync=bool(row.full_resync),
        dry_run=bool(row.dry_run),
        trigger=row.trigger,
        git_commit=row.git_commit,
        wait_s=float(row.wait_s or 0.0),
    )


def call_from_row(row: Row[Any]) -> HttpCall:
    """An HttpCall from a row of the ``http_calls`` table."""
    return HttpCall(
        method=row.method,
        url=row.url,
        status=row.status,
        latency_ms=row.latency_ms,
        request_headers=json.loads(row.request_headers),
        request_body=row.request_body,
        response_body=row.response_body,
        error=row.error,
        attempt=row.attempt,
        started_at=row.started_at,
        call_id=row.call_id,
        response_headers=json.loads(row.response_headers) if row.response_headers else {},
        wait_ms=float(row.wait_ms or 0.0),
        wait_reason=row.wait_reason,
    )


_record = record_from_row  # the name this module uses internally


def _failure(orig: BaseException | None) -> str | None:
    """ "damaged" or "full" when the driver's error says so; None for anything else."""
    name = str(getattr(orig, "sqlite_errorname", "") or "")  # sqlite3, Python 3.11+
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return "damaged"
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")):
        return "full"
    state = str(getattr(orig, "sqlstate", "") or "")  # psycopg
    if state in ("XX001", "XX002"):  # data_corrupted, index_corrupted
        return "damaged"
    if state in ("53100", "58030"):  # disk_full, io_error
        return "full"
    return None


def _normalise(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"{url!r} is not a database URL: use sqlite:///path/to/backhaul.db or "
            "postgresql+psycopg://user@host/dbname for state.metadata_url."
        ) from exc
    # psycopg 3 is the Postgres driver Backhaul ships with; SQLAlchemy's default is psycopg2.
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    # The recorder may flush from another thread; the busy timeout makes concurrent
    # writers (other processes, other threads) wait their turn instead of failing.
    connect_args = {"check_same_thread": False, "timeout": 30}
    if _is_memory(url):
        engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool)
    else:
        engine = create_engine(url, connect_args=connect_args)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so DDL is
    # transactional and writers can ask for the write lock with BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA foreign_keys=ON")
    # WAL: readers (the web UI) never block the writer of a running sync, and vice versa.
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN, "BEGIN"))
