"""Reading the metadata store: runs, per-row outcomes and recorded HTTP calls.

:class:`RunReader` holds every query the CLI, the web app and the metrics need, and
nothing that writes; :class:`backhaul.state.store.RunStore` extends it with migrations
and writes. Each table row becomes a typed record in exactly one place here
(:func:`record_from_row`, :func:`outcome_from_row`, :func:`call_from_row`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy import Row
from sqlalchemy import Select
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.engine import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.pool import StaticPool

from backhaul.calls import HttpCall
from backhaul.closing import ClosesOnExit
from backhaul.errors import RowLogError
from backhaul.errors import StoreError
from backhaul.state.rowlog import COLUMNS as LOG_COLUMNS
from backhaul.state.rowlog import LOGGED
from backhaul.state.rowlog import RowLogs
from backhaul.state.tables import COUNT_COLUMNS
from backhaul.state.tables import OUTCOME_COLUMNS
from backhaul.state.tables import http_calls
from backhaul.state.tables import run_rows
from backhaul.state.tables import runs
from backhaul.summary import Counts
from backhaul.summary import RowOp
from backhaul.summary import RowOutcome
from backhaul.summary import RowStatus
from backhaul.summary import RunStatus

MIN_PREFIX = 6
BEGIN_OPTION = "backhaul_begin"  # execution option: which BEGIN statement SQLite should use


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
    git_dirty: bool | None = None  # the project's files differed from git_commit

    @property
    def duration_s(self) -> float:
        """Seconds from start to finish; 0.0 while the run has no finish time."""
        if self.finished_at is None:
            return 0.0
        return (self.finished_at - self.started_at).total_seconds()


class RunReader(ClosesOnExit):
    """Reads run records through SQLAlchemy Core; never writes.

    Safe to share between threads; each method uses its own short connection.

    Args:
        url: SQLAlchemy URL, ``sqlite:///path/to/backhaul.db`` or
            ``postgresql+psycopg://user@host/db`` (plain ``postgresql://`` means psycopg too).
        row_logs: Where runs keep their ok and skipped rows (None: every row is in the
            ``run_rows`` table, as before row logs).
    """

    def __init__(self, url: str, row_logs: RowLogs | None = None) -> None:
        self._row_logs = row_logs
        self._url = normalise_url(url)
        self.url = self._url.render_as_string(hide_password=True)
        self._engine = _create_engine(self._url)

    @property
    def row_logs(self) -> RowLogs | None:
        """The row-log folder of this store, if runs keep their ok rows in one."""
        return self._row_logs

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for stores of other tables in this database (alerts,
        schedules, web accounts) and for reporting queries (metrics)."""
        return self._engine

    def close(self) -> None:
        """Release every pooled connection (and the row logs' reading database)."""
        self._engine.dispose()
        if self._row_logs is not None:
            self._row_logs.close()

    # -- runs ----------------------------------------------------------------------------

    def runs(
        self,
        sync: str | None = None,
        limit: int = 20,
        offset: int = 0,
        *,
        syncs: Sequence[str] | None = None,
        statuses: Sequence[RunStatus] = (),
        since: datetime | None = None,
        trigger: str | None = None,
    ) -> list[RunRecord]:
        """The most recent runs, newest first, of one sync or of all, paged.

        Args:
            syncs: Only runs of these syncs.
            statuses: Only runs in one of these statuses.
            since: Only runs started at or after this time.
            trigger: Only runs started this way (``cli``, ``schedule``, ``web``, ...).
        """
        query = select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc())
        if sync is not None:
            query = query.where(runs.c.sync == sync)
        if syncs is not None:
            query = query.where(runs.c.sync.in_(list(syncs)))
        if statuses:
            query = query.where(runs.c.status.in_([s.value for s in statuses]))
        if since is not None:
            query = query.where(runs.c.started_at >= since)
        if trigger is not None:
            query = query.where(runs.c.trigger == trigger)
        query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        return self._records(query)

    def run(self, run_id: str) -> RunRecord | None:
        """One run by id, or by a unique prefix of at least six characters.

        Raises:
            StoreError: the prefix matches more than one run.
        """
        with self._read() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
            if row is not None or len(run_id) < MIN_PREFIX:
                return record_from_row(row) if row is not None else None
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
        return record_from_row(found[0]) if found else None

    def last_run(self, sync: str) -> RunRecord | None:
        """The newest run of ``sync`` (dry runs included), or ``None``."""
        found = self.runs(sync, limit=1)
        return found[0] if found else None

    def latest_runs(self) -> dict[str, RunRecord]:
        """The newest run of every sync, in one grouped query (uses ix_runs_sync_started_at)."""
        newest = (
            select(runs.c.sync, func.max(runs.c.started_at).label("started_at"))
            .group_by(runs.c.sync)
            .subquery()
        )
        query = select(runs).join(
            newest, (runs.c.sync == newest.c.sync) & (runs.c.started_at == newest.c.started_at)
        )
        return {r.sync: r for r in self._records(query)}

    # -- per-row outcomes ----------------------------------------------------------------
    #
    # Rejected and invalid rows live in the run_rows table; a run recorded with row logs has
    # its ok and skipped rows in its Parquet log instead (state/rowlog.py). Every query reads
    # the table first, then the log when the run has one, so runs recorded before row logs
    # (whose rows are all in the table) read as they always did.

    def rows(
        self,
        run_id: str,
        *,
        status: str | None = None,
        key: str | None = None,
        op: str | None = None,
        call_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
        row_log: bool = True,
    ) -> list[RowOutcome]:
        """Per-row outcomes of a run, filtered and paged: the rows of the table in the order
        they were recorded, then those of the run's row log (ordered by key). With
        ``row_log`` False, only the rows the store keeps (rejected, invalid): what can still
        be shown when the row log cannot be read."""
        filters = {"status": status, "key": key, "op": op, "call_id": call_id}
        query = select(run_rows).where(run_rows.c.run_id == run_id)
        for column, value in filters.items():
            if value is not None:
                query = query.where(run_rows.c[column] == value)
        if not row_log or not self._logged(run_id, status):
            return self._outcomes(query.order_by(run_rows.c.id).limit(limit).offset(offset))
        with self._read() as conn:
            in_table = int(
                conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            )
        found: list[RowOutcome] = []
        if offset < in_table:
            found = self._outcomes(query.order_by(run_rows.c.id).limit(limit).offset(offset))
        if len(found) < limit:
            found += self._log_rows(run_id, filters, limit - len(found), max(0, offset - in_table))
        return found

    def iter_rows(self, run_id: str, page: int = 10_000) -> Iterator[list[RowOutcome]]:
        """Every outcome of a run, in pages of at most ``page``, in the order of :meth:`rows`.

        Unlike paging :meth:`rows` by offset, each row is read once however large the run.
        """
        last = 0
        while True:
            query = (
                select(run_rows)
                .where(run_rows.c.run_id == run_id, run_rows.c.id > last)
                .order_by(run_rows.c.id)
                .limit(page)
            )
            with self._read() as conn:
                found = list(conn.execute(query))
            if not found:
                break
            last = int(found[-1].id)
            yield [outcome_from_row(row) for row in found]
        if not self._logged(run_id, None):
            return
        assert self._row_logs is not None
        with self._row_logs.relation(run_id) as log:
            if log is None:
                return
            cursor, source = log
            cursor.execute(f"SELECT {', '.join(LOG_COLUMNS)} FROM {source}")
            while chunk := cursor.fetchmany(page):
                yield [_log_outcome(r) for r in chunk]

    def search_rows(
        self, run_id: str, text: str, limit: int = 50, *, row_log: bool = True
    ) -> list[RowOutcome]:
        """Rows whose key is ``text``; failing that, rows whose key contains it (``row_log``
        as in :meth:`rows`)."""
        exact = self.rows(run_id, key=text, limit=limit, row_log=row_log)
        if exact:
            return exact
        query = (
            select(run_rows)
            .where(run_rows.c.run_id == run_id, run_rows.c.key.contains(text, autoescape=True))
            .order_by(run_rows.c.id)
            .limit(limit)
        )
        found = self._outcomes(query)
        if len(found) < limit and row_log and self._logged(run_id, None):
            found += self._log_rows(run_id, {}, limit - len(found), 0, contains=text)
        return found

    def row_counts(self, run_id: str, *, row_log: bool = True) -> dict[tuple[str, str], int]:
        """How many rows of a run ended in each ``(op, status)`` pair (``row_log`` as in
        :meth:`rows`)."""
        query = (
            select(run_rows.c.op, run_rows.c.status, func.count())
            .where(run_rows.c.run_id == run_id)
            .group_by(run_rows.c.op, run_rows.c.status)
        )
        with self._read() as conn:
            out = {(str(r[0]), str(r[1])): int(r[2]) for r in conn.execute(query)}
        if row_log and self._logged(run_id, None):
            sql = "SELECT op, status, count(*) FROM {log} GROUP BY op, status"
            for op, st, n in self._log_query(run_id, sql, []):
                out[(str(op), str(st))] = out.get((str(op), str(st)), 0) + int(n)
        return out

    def has_row_log(self, run_id: str) -> bool:
        """Whether the run's ok and skipped rows are in a row log this reader can see."""
        return self._row_logs is not None and self._row_logs.exists(run_id)

    # -- HTTP calls ----------------------------------------------------------------------

    def calls(self, run_id: str, limit: int = 100, offset: int = 0) -> list[HttpCall]:
        """Recorded HTTP calls of a run, oldest first, paged."""
        query = (
            select(http_calls)
            .where(http_calls.c.run_id == run_id)
            .order_by(http_calls.c.started_at, http_calls.c.call_id)
            .limit(limit)
        )
        if offset:
            query = query.offset(offset)
        with self._read() as conn:
            return [call_from_row(row) for row in conn.execute(query)]

    def call(self, run_id: str, call_id: str) -> HttpCall | None:
        """One recorded call of a run, or None."""
        query = select(http_calls).where(
            http_calls.c.run_id == run_id, http_calls.c.call_id == call_id
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return call_from_row(row) if row is not None else None

    def call_keys(
        self, run_id: str, call_ids: Sequence[str], *, limit: int, row_log: bool = True
    ) -> dict[str, list[tuple[str, str]]]:
        """Keys (and row status) of the rows each call carried, at most ``limit`` in all
        (``row_log`` as in :meth:`rows`)."""
        if not call_ids:
            return {}
        query = (
            select(run_rows.c.call_id, run_rows.c.key, run_rows.c.status)
            .where(run_rows.c.run_id == run_id, run_rows.c.call_id.in_(call_ids))
            .order_by(run_rows.c.id)
            .limit(limit)
        )
        out: dict[str, list[tuple[str, str]]] = {}
        taken = 0
        with self._read() as conn:
            for row in conn.execute(query):
                out.setdefault(str(row[0]), []).append((str(row[1]), str(row[2])))
                taken += 1
        if taken < limit and row_log and self._logged(run_id, None):
            marks = ", ".join("?" for _ in call_ids)
            sql = f"SELECT call_id, key, status FROM {{log}} WHERE call_id IN ({marks}) LIMIT ?"
            for call_id, key, st in self._log_query(run_id, sql, [*call_ids, limit - taken]):
                out.setdefault(str(call_id), []).append((str(key), str(st)))
        return out

    def call_row_counts(
        self, run_id: str, call_ids: Sequence[str], *, row_log: bool = True
    ) -> dict[str, int]:
        """How many rows each call carried (``row_log`` as in :meth:`rows`)."""
        if not call_ids:
            return {}
        query = (
            select(run_rows.c.call_id, func.count())
            .where(run_rows.c.run_id == run_id, run_rows.c.call_id.in_(call_ids))
            .group_by(run_rows.c.call_id)
        )
        with self._read() as conn:
            out = {str(r[0]): int(r[1]) for r in conn.execute(query)}
        if row_log and self._logged(run_id, None):
            marks = ", ".join("?" for _ in call_ids)
            sql = f"SELECT call_id, count(*) FROM {{log}} WHERE call_id IN ({marks}) GROUP BY 1"
            for call_id, n in self._log_query(run_id, sql, list(call_ids)):
                out[str(call_id)] = out.get(str(call_id), 0) + int(n)
        return out

    # -- plumbing ------------------------------------------------------------------------

    def _records(self, query: Select[Any]) -> list[RunRecord]:
        with self._read() as conn:
            return [record_from_row(row) for row in conn.execute(query)]

    def _logged(self, run_id: str, status: str | None) -> bool:
        """Whether rows of this status (None: any) may be in the run's row log."""
        if status is not None and status not in LOGGED:
            return False
        return self.has_row_log(run_id)

    def _log_query(self, run_id: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        assert self._row_logs is not None
        with self._row_logs.relation(run_id) as found:
            if found is None:  # deleted by retention since it was looked for
                return []
            cursor, source = found
            return [tuple(r) for r in cursor.execute(sql.format(log=source), params).fetchall()]

    def _log_rows(
        self,
        run_id: str,
        filters: dict[str, str | None],
        limit: int,
        offset: int,
        *,
        contains: str | None = None,
    ) -> list[RowOutcome]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in filters.items():
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if contains is not None:
            where.append("contains(key, ?)")
            params.append(contains)
        sql = f"SELECT {', '.join(LOG_COLUMNS)} FROM {{log}}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " LIMIT ? OFFSET ?"
        return [_log_outcome(r) for r in self._log_query(run_id, sql, [*params, limit, offset])]

    def _outcomes(self, query: Select[Any]) -> list[RowOutcome]:
        with self._read() as conn:
            return [outcome_from_row(row) for row in conn.execute(query)]

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


# -- rows to records (the only place each conversion is written) ---------------------------


def record_from_row(row: Row[Any]) -> RunRecord:
    """A RunRecord from a row of the ``runs`` table."""
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
        git_dirty=None if row.git_dirty is None else bool(row.git_dirty),
    )


def outcome_from_row(row: Row[Any]) -> RowOutcome:
    """A RowOutcome from a row of the ``run_rows`` table."""
    return RowOutcome(
        key=row.key,
        op=RowOp(row.op),
        status=RowStatus(row.status),
        error=row.error,
        operation=row.operation,
        call_id=row.call_id,
    )


def _log_outcome(row: Sequence[Any]) -> RowOutcome:
    """A RowOutcome from a row of a run's row log (columns in ``rowlog.COLUMNS`` order)."""
    return RowOutcome(
        key=row[0],
        op=RowOp(row[1]),
        status=RowStatus(row[2]),
        error=row[3],
        operation=row[4],
        call_id=row[5],
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


# -- connecting ----------------------------------------------------------------------------


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


def normalise_url(url: str) -> URL:
    """``url`` parsed, with plain ``postgresql://`` meaning psycopg 3.

    Raises:
        StoreError: ``url`` is not a database URL.
    """
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


def is_memory(url: URL) -> bool:
    """Whether ``url`` names an in-memory SQLite database."""
    return url.database in (None, "", ":memory:")


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    # The recorder may flush from another thread; the busy timeout makes concurrent
    # writers (other processes, other threads) wait their turn instead of failing.
    connect_args = {"check_same_thread": False, "timeout": 30}
    if is_memory(url):
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
    _enter_wal(dbapi_connection)


def _enter_wal(dbapi_connection: Any, wait: float = 30.0) -> None:
    # Turning a new database to WAL needs an exclusive lock. When another connection is
    # migrating the same new file (BEGIN IMMEDIATE), SQLite answers "database is locked"
    # at once instead of calling the busy handler (it would be a deadlock), so wait for
    # the writer here. A database already in WAL mode answers without any lock.
    deadline = time.monotonic() + wait
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(BEGIN_OPTION, "BEGIN"))


T = TypeVar("T")


def store_if_log_unreadable(read: Callable[[bool], T]) -> tuple[T, str | None]:
    """``(read(True), None)``: what the store and the run's row log answer. When the row
    log cannot be read, ``(read(False), why)``: what the store alone answers (the rejected
    and invalid rows it keeps), and the reason, for the caller to say beside it.

    The one reading of a run's rows that every entry point shares (``run-show``, the run
    pages, the API), so none shows less than the others can, or hides why."""
    try:
        return read(True), None
    except RowLogError as exc:
        return read(False), exc.message


__all__ = [
    "MIN_PREFIX",
    "RunReader",
    "RunRecord",
    "call_from_row",
    "normalise_url",
    "outcome_from_row",
    "record_from_row",
    "store_if_log_unreadable",
]
