"""Shared machinery of the SQL-table destinations (Postgres, MySQL, SQLite, DuckDB).

Every dialect writes a batch the same way: load the records into a staging table, then
apply the operation with one set-based statement, all in one transaction. When the
database refuses the batch because of its data, the batch is split in halves until the
bad records are alone, so the good ones are still written. Into a keyed table that was
empty when the run began, upserts and inserts go as plain inserts until a key is found
there. Where the database has ``MERGE INTO`` (DuckDB), upserts and inserts are merges on
the match fields, so its tables need no key. A dialect subclass supplies the connection, the
staging load and the error classification; the SQL is built here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import json
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import ClassVar
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from backhaul import pyvalues
from backhaul.destinations.base import Batch
from backhaul.destinations.base import BatchResults
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import FieldInfo
from backhaul.destinations.base import Operation
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.files import not_a_file

STAGE = "_bh_stage"
INDEX = "_bh_idx"
ALL_OPERATIONS = frozenset(Operation)
# Operations that are a plain INSERT when the table holds none of the batch's keys.
_PLAIN_INSERT = frozenset({Operation.UPSERT, Operation.INSERT})


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells identifiers, types and the update/delete statements."""

    name: str
    quote_char: str = '"'
    join_style: bool = False  # MySQL: UPDATE/DELETE ... JOIN instead of ... FROM / EXISTS
    case_insensitive: bool = False  # column names compare without case
    # Upserts and inserts as ``MERGE INTO`` on the match fields: a table needs no primary
    # key or unique constraint, and a table Backhaul creates gets none.
    merge: bool = False

    def quote(self, name: str) -> str:
        q = self.quote_char
        return q + name.replace(q, q + q) + q

    def norm(self, name: str) -> str:
        return name.lower() if self.case_insensitive else name


POSTGRES = Dialect("postgres")
MYSQL = Dialect("mysql", quote_char="`", join_style=True, case_insensitive=True)
SQLITE = Dialect("sqlite", case_insensitive=True)
DUCKDB = Dialect("duckdb", case_insensitive=True, merge=True)


def sql_type(dtype: pa.DataType, dialect: Dialect, *, key: bool = False) -> str:
    """The column type used by ``create_table`` for an Arrow type."""
    t = pa.types
    if t.is_dictionary(dtype):
        return sql_type(dtype.value_type, dialect, key=key)
    name = dialect.name
    if t.is_boolean(dtype):
        return "INTEGER" if name == "sqlite" else "BOOLEAN"
    if t.is_integer(dtype):
        if name == "sqlite":
            return "INTEGER"
        if t.is_uint64(dtype):
            return "NUMERIC(20)" if name == "postgres" else "DECIMAL(20)"
        return "BIGINT" if dtype.bit_width >= 32 else "INTEGER"
    if t.is_floating(dtype):
        if name == "sqlite":
            return "REAL"
        return "DOUBLE PRECISION" if name == "postgres" else "DOUBLE"
    if t.is_decimal(dtype):
        return f"DECIMAL({min(dtype.precision, 38 if name == 'duckdb' else 65)},{dtype.scale})"
    if t.is_string(dtype) or t.is_large_string(dtype) or t.is_null(dtype):
        if name == "mysql":
            return "VARCHAR(255)" if key else "LONGTEXT"
        return "VARCHAR" if name == "duckdb" else "TEXT"
    if t.is_binary(dtype) or t.is_large_binary(dtype) or t.is_fixed_size_binary(dtype):
        if name == "mysql":
            return "VARBINARY(255)" if key else "LONGBLOB"
        return "BYTEA" if name == "postgres" else "BLOB"
    if t.is_timestamp(dtype):
        if name == "sqlite":
            return "TEXT"
        if name == "mysql":
            return "DATETIME(6)"
        return "TIMESTAMPTZ" if dtype.tz else "TIMESTAMP"
    if t.is_date(dtype):
        return "TEXT" if name == "sqlite" else "DATE"
    if t.is_time(dtype):
        return "TEXT" if name == "sqlite" else "TIME"
    # Nested values (structs, lists, maps) are stored as JSON documents.
    return {"postgres": "JSONB", "mysql": "JSON", "sqlite": "TEXT", "duckdb": "JSON"}[name]


def create_table_sql(
    dialect: Dialect,
    target: str,
    fields: Mapping[str, pa.DataType],
    match: Sequence[str],
    *,
    keyed: bool = True,
) -> str:
    """``CREATE TABLE`` with one column per field and (``keyed``) a primary key on the
    match fields."""
    cols = [
        f"{dialect.quote(name)} {sql_type(dtype, dialect, key=name in match)}"
        + (" NOT NULL" if name in match else "")
        for name, dtype in fields.items()
    ]
    key = f", PRIMARY KEY ({', '.join(dialect.quote(m) for m in match)})" if keyed else ""
    return f"CREATE TABLE {target} ({', '.join(cols)}{key})"


@dataclass(frozen=True, slots=True)
class TableInfo:
    """What ``prepare`` needs to know about an existing table."""

    columns: list[str]
    unique_keys: list[list[str]]  # primary key and unique constraints/indexes
    # Per column: the database's type name and whether a new row needs a value (NOT NULL,
    # no default); for ``fields()``, so a dialect may leave it empty.
    types: dict[str, tuple[str, bool]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]], unique_keys: list[list[str]]) -> TableInfo:
        """From one ``(name, type name, needs a value)`` row per column, in table order."""
        types = {row[0]: (str(row[1]), bool(row[2])) for row in rows}
        return cls([row[0] for row in rows], unique_keys, types)


def check_table(
    dialect: Dialect,
    table: str,
    info: TableInfo,
    fields: Sequence[str],
    match: Sequence[str],
) -> bool:
    """Raise a config error when the table lacks a field column, or a key on the match
    fields where the dialect needs one; return whether the table has that key."""
    kind = dialect.name
    have = {dialect.norm(c) for c in info.columns}
    missing = [f for f in dict.fromkeys([*match, *fields]) if dialect.norm(f) not in have]
    if missing:
        cols = ", ".join(missing)
        raise DestinationError(
            f"{kind} table {table} has no column(s) {cols}; add them to the table "
            "(or set `create_table: true` on a new table) or change the sync's mappings",
            failure=FailureType.CONFIG,
        )
    wanted = {dialect.norm(m) for m in match}
    keyed = any({dialect.norm(c) for c in key} == wanted for key in info.unique_keys)
    if not keyed and not dialect.merge:
        cols = ", ".join(match)
        raise DestinationError(
            f"{kind} table {table} needs a primary key or unique constraint on ({cols}) so "
            f"records can be matched; add one, e.g. ALTER TABLE {table} ADD UNIQUE ({cols})",
            failure=FailureType.CONFIG,
        )
    return keyed


def no_table(kind: str) -> str:
    """What to do when neither the destination nor the sync names the table."""
    return (
        f"{kind} destination has no table: set `table` in the destination file or "
        "`object` in the sync file"
    )


def resolve_table(configured: str | None, object: str | None, kind: str) -> str:
    """The table name from the destination's ``table`` or else the sync's ``object``."""
    name = configured or object
    if not name:
        raise DestinationError(no_table(kind), failure=FailureType.CONFIG)
    return name


@dataclass(frozen=True, slots=True)
class Statements:
    """The SQL that applies a staged batch to the target table."""

    dialect: Dialect
    target: str  # quoted, possibly schema-qualified
    fields: Sequence[str]
    match: Sequence[str]
    skip_null: frozenset[str] = frozenset()

    def _q(self, name: str) -> str:
        return self.dialect.quote(name)

    @property
    def rest(self) -> list[str]:
        keys = {self.dialect.norm(m) for m in self.match}
        return [f for f in self.fields if self.dialect.norm(f) not in keys]

    def _on(self) -> str:
        return " AND ".join(f"t.{self._q(m)} = s.{self._q(m)}" for m in self.match)

    def _columns(self) -> tuple[str, str]:
        """The target's column list and the stage's values for it."""
        cols = ", ".join(self._q(f) for f in self.fields)
        return cols, ", ".join(f"s.{self._q(f)}" for f in self.fields)

    def _insert(self) -> str:
        cols, sel = self._columns()
        alias = "" if self.dialect.join_style else " AS t"
        # ``WHERE true`` keeps SQLite from reading ON CONFLICT as part of a join.
        return (
            f"INSERT INTO {self.target}{alias} ({cols}) SELECT {sel} FROM {STAGE} AS s WHERE true"
        )

    def _value(self, col: str, new: str, old: str) -> str:
        return f"COALESCE({new}, {old})" if col in self.skip_null else new

    def _merge(self, update: bool) -> str:
        """``MERGE INTO`` on the match fields: insert the staged records whose key is not
        in the table and (``update``) update the rows whose key is."""
        q = self._q
        cols, vals = self._columns()
        merge = f"MERGE INTO {self.target} AS t USING {STAGE} AS s ON ({self._on()})"
        if update and self.rest:
            sets = [f"{q(c)} = {self._value(c, f's.{q(c)}', f't.{q(c)}')}" for c in self.rest]
            merge += f" WHEN MATCHED THEN UPDATE SET {', '.join(sets)}"
        return f"{merge} WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({vals})"

    def upsert(self) -> str:
        if self.dialect.merge:
            return self._merge(update=True)
        q, conflict = self._q, ", ".join(self._q(m) for m in self.match)
        if self.dialect.join_style:
            sets = [
                f"{q(c)} = {self._value(c, f'VALUES({q(c)})', f'{self.target}.{q(c)}')}"
                for c in self.rest
            ] or [f"{q(self.match[0])} = {self.target}.{q(self.match[0])}"]
            return f"{self._insert()} ON DUPLICATE KEY UPDATE {', '.join(sets)}"
        if not self.rest:
            return f"{self._insert()} ON CONFLICT ({conflict}) DO NOTHING"
        sets = [f"{q(c)} = {self._value(c, f'excluded.{q(c)}', f't.{q(c)}')}" for c in self.rest]
        return f"{self._insert()} ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(sets)}"

    def insert_new(self) -> str:
        """A plain ``INSERT`` for a table that holds none of the staged keys: it fails on
        any key already there, and the caller then applies the batch's own statement."""
        return self._insert()

    def insert(self) -> str:
        if self.dialect.merge:
            return self._merge(update=False)
        if self.dialect.join_style:
            first = self._q(self.match[0])
            return f"{self._insert()} ON DUPLICATE KEY UPDATE {first} = {self.target}.{first}"
        conflict = ", ".join(self._q(m) for m in self.match)
        return f"{self._insert()} ON CONFLICT ({conflict}) DO NOTHING"

    def _update(self, values: Callable[[str], str]) -> str | None:
        if not self.rest:
            return None
        if self.dialect.join_style:
            sets = ", ".join(f"t.{self._q(c)} = {values(c)}" for c in self.rest)
            return f"UPDATE {self.target} AS t JOIN {STAGE} AS s ON {self._on()} SET {sets}"
        sets = ", ".join(f"{self._q(c)} = {values(c)}" for c in self.rest)
        return f"UPDATE {self.target} AS t SET {sets} FROM {STAGE} AS s WHERE {self._on()}"

    def update(self) -> str | None:
        return self._update(lambda c: self._value(c, f"s.{self._q(c)}", f"t.{self._q(c)}"))

    def clear(self) -> str | None:
        return self._update(lambda c: "NULL")

    def delete(self) -> str:
        if self.dialect.join_style:
            return f"DELETE t FROM {self.target} AS t JOIN {STAGE} AS s ON {self._on()}"
        return (
            f"DELETE FROM {self.target} AS t WHERE EXISTS "
            f"(SELECT 1 FROM {STAGE} AS s WHERE {self._on()})"
        )

    def missing(self) -> str:
        """Stage rows whose key has no row in the target (rejected by UPDATE)."""
        return (
            f"SELECT s.{INDEX} FROM {STAGE} AS s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {self.target} AS t WHERE {self._on()})"
        )

    def for_operation(self, op: Operation) -> list[str]:
        built = {
            Operation.UPSERT: self.upsert,
            Operation.INSERT: self.insert,
            Operation.UPDATE: self.update,
            Operation.CLEAR: self.clear,
            Operation.DELETE: self.delete,
        }[op]()
        return [built] if built else []


def _plain_value(value: Any, *, plain: bool = False) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if plain and isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if plain and isinstance(value, decimal.Decimal):
        return str(value)
    return value


def python_rows(table: pa.Table, *, plain: bool = False) -> list[tuple[Any, ...]]:
    """Rows as tuples for a DB-API driver; nested values become JSON text.

    With ``plain`` (SQLite) dates, times and decimals become text too, since the
    driver has no adapters for them.
    """
    cols = [pyvalues.values(col) for col in table.columns]
    return [tuple(_plain_value(v, plain=plain) for v in row) for row in zip(*cols, strict=True)]


def _csv_native(dtype: pa.DataType) -> bool:
    """Whether Arrow's CSV writer renders this type as SQL databases read it back."""
    t = pa.types
    if t.is_dictionary(dtype):
        return _csv_native(dtype.value_type)
    return bool(
        t.is_integer(dtype)
        or t.is_floating(dtype)
        or t.is_boolean(dtype)
        or t.is_string(dtype)
        or t.is_large_string(dtype)
        or t.is_decimal(dtype)
        or t.is_date(dtype)
        or t.is_time(dtype)
        or t.is_timestamp(dtype)
        or t.is_null(dtype)
    )


def csv_ready(
    table: pa.Table,
    *,
    binary: Callable[[bytes], str],
    boolean: pa.DataType | None = None,
) -> pa.Table:
    """``table`` with every column in a type Arrow's CSV writer renders faithfully.

    Dictionary columns are decoded; nested values (structs, lists, maps) become JSON
    text and binary values ``binary(value)``, the only columns converted value by value.
    ``boolean`` casts booleans (MySQL reads ``1``/``0``, not ``true``/``false``).
    """
    columns = []
    for col in table.columns:
        dtype = col.type
        if pa.types.is_dictionary(dtype):
            col = col.cast(dtype.value_type)
            dtype = col.type
        if boolean is not None and pa.types.is_boolean(dtype):
            col = col.cast(boolean)
        elif not _csv_native(dtype):
            values = [
                None
                if v is None
                else binary(v)
                if isinstance(v, bytes)
                else _plain_value(v)
                if isinstance(v, dict | list)
                else str(v)
                for v in pyvalues.values(col)
            ]
            col = pa.chunked_array([pa.array(values, pa.string())])
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)


def staged(batch: Batch, indices: Sequence[int]) -> pa.Table:
    """The records at ``indices`` with their batch position as the first column."""
    positions = pa.array(indices, type=pa.int64())
    whole = len(indices) == batch.table.num_rows and (
        not indices or (indices[0] == 0 and indices[-1] == len(indices) - 1)
    )
    sub = batch.table if whole else batch.table.take(positions)
    return sub.add_column(0, INDEX, positions)


async def bisect(
    indices: list[int],
    attempt: Callable[[list[int]], Awaitable[dict[int, str]]],
    data_error: Callable[[BaseException], str | None],
) -> dict[int, str]:
    """Write ``indices``; on a data error split in halves until bad records stand alone.

    ``attempt`` writes the records in one transaction and returns the ones it rejected
    itself; ``data_error`` returns the database's message when an exception is caused by
    the records, or None to let it propagate. Returns rejected index -> reason.
    """
    try:
        return await attempt(indices)
    except Exception as exc:
        reason = data_error(exc)
        if reason is None:
            raise
        if len(indices) == 1:
            return {indices[0]: reason}
    mid = len(indices) // 2
    rejected = await bisect(indices[:mid], attempt, data_error)
    rejected.update(await bisect(indices[mid:], attempt, data_error))
    return rejected


def key_rounds(table: pa.Table, match: Sequence[str]) -> list[list[int]]:
    """Split record positions so no round holds a match key twice.

    One set-based statement cannot apply two records with the same key in order, so the
    n-th record of a key goes to round n; rounds run one after the other. The usual batch
    has no repeated key and stays one round, found without a Python loop over its rows.
    """
    present = [m for m in match if m in table.column_names]
    n = table.num_rows
    if not present:
        return [list(range(n))]
    try:
        if len(present) == 1:  # a hash of one column: several times cheaper than a group-by
            distinct = len(pc.unique(table.column(present[0])))
        else:
            distinct = table.select(present).group_by(present).aggregate([]).num_rows
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):  # keys of a type Arrow cannot group
        distinct = -1
    if distinct == n:
        return [list(range(n))]
    seen: dict[Any, int] = {}
    rounds: list[list[int]] = []
    cols = [table.column(m).to_pylist() for m in present]
    for i, key in enumerate(zip(*cols, strict=True)):
        k = repr(key) if distinct < 0 else key  # unhashable values (lists, dicts)
        count = seen.get(k, 0)
        seen[k] = count + 1
        if count == len(rounds):
            rounds.append([])
        rounds[count].append(i)
    return rounds


def results(n: int, rejected: Mapping[int, str]) -> BatchResults:
    return BatchResults(n, rejected)


class TableSettings(Protocol):
    """The keys of a SQL destination file that name its table."""

    @property
    def table(self) -> str | None: ...

    @property
    def create_table(self) -> bool: ...


class SqlTableDestination:
    """Base of the SQL-table destinations; subclasses implement the blocking hooks.

    Connections are DB-API connections used from worker threads, one per concurrent
    ``write``; a connection is never shared by two writes at once.
    """

    dialect: ClassVar[Dialect]
    capabilities: ClassVar[Capabilities]
    config: TableSettings  # each dialect narrows it to its own config class

    @classmethod
    def check_sync(cls, config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
        """A table is named, in the destination file or the sync, before anything runs."""
        if getattr(config, "table", None) or shape.object:
            return []
        return [SyncProblem("object", no_table(cls.dialect.name))]

    @property
    def kind(self) -> str:
        """The database's name, as messages call the destination."""
        return self.dialect.name

    def __init__(self, config: TableSettings, context: DestinationContext) -> None:
        self.config = config
        self.context = context
        self._idle: list[Any] = []
        self._open: list[Any] = []
        self._table: str | None = None
        self._target = ""
        self._match: list[str] = []
        # The table was empty when the run began (or this run created it): a whole first
        # load may go as one plain insert, and (with a key to refuse a key that is there
        # after all) so may each upsert or insert batch until one fails (``_attempt_new``).
        self._new_table = False
        # The table has a primary key or unique constraint on the match fields.
        self._keyed = True

    # -- hooks --------------------------------------------------------------------------
    def _connect(self) -> Any:
        """Open a connection; raise DestinationError with a clear message on failure."""
        raise NotImplementedError

    def _target_name(self, table: str) -> str:
        return self.dialect.quote(table)

    def _describe(self, conn: Any, table: str) -> TableInfo | None:
        """Columns and unique keys of ``table``, or None when it does not exist."""
        raise NotImplementedError

    def _begin(self, conn: Any) -> None:
        return None

    def _cursor(self, conn: Any) -> Any:
        return conn.cursor()

    def _load_stage(self, conn: Any, cur: Any, table: pa.Table) -> None:
        """Create the staging table for this transaction and load ``table`` into it."""
        raise NotImplementedError

    def _drop_stage(self, conn: Any, cur: Any) -> None:
        return None

    def _insert_new(self, conn: Any, cur: Any, plan: Statements, table: pa.Table) -> None:
        """Insert ``table`` (staged form) into a table holding none of its keys; raise
        the driver's error on any key already there."""
        self._load_stage(conn, cur, table)
        cur.execute(plan.insert_new())
        self._drop_stage(conn, cur)

    def _is_empty(self, conn: Any) -> bool:
        self._begin(conn)
        cur = self._cursor(conn)
        cur.execute(f"SELECT 1 FROM {self._target} LIMIT 1")
        empty = not cur.fetchall()
        conn.rollback()
        return empty

    def _in_transaction(self, cur: Any, batch: Batch) -> None:
        """Extra work done in the batch's transaction (used by the file destination)."""
        return None

    def _data_error(self, exc: BaseException) -> str | None:
        """The database's message when ``exc`` was caused by the records, else None."""
        raise NotImplementedError

    def _failure(self, exc: BaseException) -> DestinationError:
        """Translate any other driver error into a DestinationError."""
        raise NotImplementedError

    def _retried(self, exc: BaseException, where: str, reason: str) -> DestinationError:
        """The TRANSIENT error of a batch the database server at ``where`` failed for a
        ``reason`` (the driver's ``exc``, on one line and redacted) that may pass."""
        return DestinationError(
            f"{self.kind} at {where} failed: {reason}; the batch will be retried",
            failure=FailureType.TRANSIENT,
            detail=type(exc).__name__,
        )

    def _refused(self, exc: BaseException, reason: str) -> DestinationError:
        """The CONFIG error of a batch the table refused for ``reason`` (the driver's
        ``exc``, already on one line and redacted): the table or the mappings must change."""
        return DestinationError(
            f"{self.kind} table {self._table} refused the batch: {reason}; "
            "check the table and the sync's mappings",
            failure=FailureType.CONFIG,
            detail=type(exc).__name__,
        )

    def _masked(self, text: str, *secrets: str) -> str:
        """``text`` with the run's secrets and ``secrets`` (the connection's own) masked."""
        for secret in (*secrets, *self.context.secrets):
            if secret:
                text = text.replace(secret, "***")
        return text

    # -- connections ----------------------------------------------------------------------
    async def _acquire(self) -> Any:
        if self._idle:
            return self._idle.pop()
        conn = await asyncio.to_thread(self._connect)
        self._open.append(conn)
        return conn

    def _discard(self, conn: Any) -> None:
        if conn in self._open:
            self._open.remove(conn)
        with contextlib.suppress(Exception):  # already broken: nothing left to release
            conn.close()

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(conn, *args)`` in a thread on a pooled connection."""
        return await self._with_conn(lambda conn: asyncio.to_thread(fn, conn, *args))

    async def _with_conn(self, use: Callable[[Any], Awaitable[Any]]) -> Any:
        """Await ``use(conn)`` on a pooled connection, translating driver errors.

        A connection that failed transiently is dropped: it may be half-closed.
        """
        conn = await self._acquire()
        try:
            out = await use(conn)
        except DestinationError:
            self._idle.append(conn)
            raise
        except Exception as exc:
            err = self._failure(exc)
            if err.failure is FailureType.TRANSIENT:
                self._discard(conn)
            else:
                self._idle.append(conn)
            raise err from None
        self._idle.append(conn)
        return out

    # -- protocol -------------------------------------------------------------------------
    async def check(self) -> None:
        """Connect and run ``SELECT 1``."""

        def probe(conn: Any) -> None:
            cur = self._cursor(conn)
            cur.execute("SELECT 1")
            cur.fetchall()

        await self._run(probe)

    async def fields(self, object: str | None) -> list[FieldInfo]:
        """The table's columns (empty when it does not exist yet); a column that is a
        primary key or unique key alone is marked unique."""
        table = resolve_table(self.config.table, object, self.kind)
        saved = self._target
        self._target = self._target_name(table)  # some dialects describe by target
        try:
            info: TableInfo | None = await self._run(self._describe, table)
        finally:
            self._target = saved
        if info is None:
            return []
        unique = {self.dialect.norm(k[0]) for k in info.unique_keys if len(k) == 1}
        out = []
        for column in info.columns:
            type_name, required = info.types.get(column, (None, False))
            is_unique = self.dialect.norm(column) in unique
            out.append(FieldInfo(column, type_name, required=required, unique=is_unique))
        return out

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Resolve the table, create it when asked, and check its columns and key."""
        table = resolve_table(self.config.table, object, self.kind)
        self._table, self._target, self._match = table, self._target_name(table), list(match_fields)
        if not match_fields:
            raise DestinationError(
                f"{self.kind} destination needs match fields (the table's key); set `match` "
                "in the sync file",
                failure=FailureType.CONFIG,
            )
        info = await self._run(self._describe, table)
        if info is not None:
            self._keyed = check_table(self.dialect, table, info, list(fields), match_fields)
            self._new_table = bool(await self._run(self._is_empty))
            return
        if not self.config.create_table:
            raise DestinationError(
                f"{self.kind} table {table} does not exist; create it, or set "
                "`create_table: true` in the destination file",
                failure=FailureType.CONFIG,
            )
        absent = [m for m in match_fields if m not in fields]
        if absent:
            raise DestinationError(
                f"cannot create {self.kind} table {table}: match field(s) {', '.join(absent)} "
                "are not mapped; map them in the sync file",
                failure=FailureType.CONFIG,
            )
        # A dialect that merges creates no key: DuckDB loads a table without an index
        # faster, and a key's index is held in memory beside the table.
        self._keyed = not self.dialect.merge
        ddl = create_table_sql(self.dialect, self._target, fields, match_fields, keyed=self._keyed)
        await self._run(self._execute, ddl)
        self._new_table = True

    def _execute(self, conn: Any, sql: str) -> None:
        self._begin(conn)
        cur = self._cursor(conn)
        cur.execute(sql)
        conn.commit()

    async def write(self, batch: Batch) -> BatchResults:
        """Apply the batch in one transaction; bisect it when the data is refused."""
        if self._table is None:
            await self.prepare(
                {name: batch.table.schema.field(name).type for name in batch.fields},
                batch.match_fields,
                batch.object,
            )
        n = len(batch)
        if n == 0:
            return BatchResults(0)

        def run_round(indices: list[int]) -> Callable[[Any], Awaitable[dict[int, str]]]:
            async def use(conn: Any) -> dict[int, str]:
                new = self._new_table and self._keyed and batch.operation in _PLAIN_INSERT
                if new and await asyncio.to_thread(self._attempt_new, conn, batch, indices):
                    return {}
                return await bisect(
                    indices,
                    lambda part: asyncio.to_thread(self._attempt, conn, batch, part),
                    self._data_error,
                )

            return use

        rejected: dict[int, str] = {}
        for indices in key_rounds(batch.table, batch.match_fields or self._match):
            rejected.update(await self._with_conn(run_round(indices)))
        return results(n, rejected)

    def _statements(self, batch: Batch) -> Statements:
        """The statements that write ``batch`` to the target table, matched on the batch's
        match fields (the table's key when it names none)."""
        return Statements(
            self.dialect,
            self._target,
            batch.fields,
            batch.match_fields or self._match,
            batch.skip_null_fields,
        )

    def _attempt_new(self, conn: Any, batch: Batch, indices: list[int]) -> bool:
        """Upsert (or insert) into a table that was empty when the run began: a plain
        insert.

        Without a key already in the table an upsert, or an insert that leaves existing
        keys alone, is a plain insert, and that is cheaper. A key that is there after all
        (a batch resent after a lost commit, a match value shared by two model keys,
        another writer) makes the insert fail and roll back; then this returns False, the
        batch goes through the usual statement, and so does the rest of the run. So a
        failed insert costs time, never a wrong row. A table without that key could not
        refuse it: its batches always go through the usual statement (a merge).
        """
        plan = self._statements(batch)
        rows = staged(batch, indices)

        def insert(conn: Any, cur: Any) -> None:
            self._insert_new(conn, cur, plan, rows)
            self._in_transaction(cur, batch)

        return self._insert_into_empty(conn, insert)

    def _insert_into_empty(self, conn: Any, insert: Callable[[Any, Any], None]) -> bool:
        """Run ``insert(conn, cursor)`` (plain inserts into a table taken for empty) in one
        transaction; False, with nothing written and the table no longer taken for empty,
        when the database refused it."""
        cur = self._cursor(conn)
        try:
            self._begin(conn)
            insert(conn, cur)
            conn.commit()
        except Exception:
            with contextlib.suppress(Exception):  # a dead connection fails the upsert too
                conn.rollback()
            self._new_table = False
            return False
        return True

    def _attempt(self, conn: Any, batch: Batch, indices: list[int]) -> dict[int, str]:
        plan = self._statements(batch)
        cur = self._cursor(conn)
        try:
            self._begin(conn)
            self._load_stage(conn, cur, staged(batch, indices))
            rejected: dict[int, str] = {}
            if batch.operation is Operation.UPDATE:
                cur.execute(plan.missing())
                for (i,) in cur.fetchall():
                    rejected[int(i)] = (
                        f"no row with key {batch.keys[int(i)]} in table {self._table}"
                    )
            for sql in plan.for_operation(batch.operation):
                cur.execute(sql)
            self._in_transaction(cur, batch)
            self._drop_stage(conn, cur)
            conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):  # a dead connection: the caller classifies
                conn.rollback()
            raise
        return rejected

    async def close(self) -> None:
        """Close every connection."""
        self._close_all()

    def _close_all(self) -> None:
        for conn in list(self._open):
            self._discard(conn)
        self._idle.clear()


class FileDatabaseConfig(DestinationConfig):
    """A table in a database file (SQLite, DuckDB)."""

    path: str = Field(description="Database file, relative to the project folder.")
    table: str | None = Field(None, description="Table name; default: the sync's `object`.")
    create_table: bool = Field(False, description="Create the table when it does not exist.")


class FileDatabaseDestination(SqlTableDestination):
    """A SQL-table destination whose database is a file beside the project."""

    config: FileDatabaseConfig

    def __init__(self, config: FileDatabaseConfig, context: DestinationContext) -> None:
        super().__init__(config, context)
        path = Path(config.path)
        self.path = path if path.is_absolute() else context.project_dir / path

    def _check_path(self) -> None:
        """Refuse, as a configuration mistake, a file whose folder does not exist, or a path
        holding something other than a file (opening a named pipe would wait forever)."""
        if not self.path.parent.is_dir():
            raise DestinationError(
                f"cannot open {self.kind} database {self.path}: folder {self.path.parent} "
                "does not exist; check `path` in the destination file",
                failure=FailureType.CONFIG,
            )
        reason = not_a_file(self.path)
        if reason is not None:
            raise DestinationError(
                f"cannot open {self.kind} database {self.path}: the path {reason}; check "
                "`path` in the destination file",
                failure=FailureType.CONFIG,
            )
