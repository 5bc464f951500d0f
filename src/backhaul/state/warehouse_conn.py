"""A small read-write connection to the source warehouse, for state Backhaul keeps there.

One adapter per warehouse: execute SQL, fetch results as Arrow, run a transaction, stage
an Arrow table for the next statements. The source connections stay read-only; this one
writes only in the schema Backhaul owns. Every row and byte fetched is counted, so a run
can show how little left the warehouse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import Protocol

import duckdb
import pyarrow as pa

from backhaul.duck import arrow_table
from backhaul.errors import ConfigError
from backhaul.errors import SourceError
from backhaul.errors import SourceFailure


class WarehouseConn(Protocol):
    """What the warehouse planner and the log write-back need from a warehouse."""

    dialect: str
    rows_fetched: int
    bytes_fetched: int
    # True when the warehouse is readable from the workspace's own DuckDB connection.
    local: bool

    def qualify(self, schema: str) -> str:
        """``schema`` as the statements must name it (with a catalog where needed)."""
        ...

    def execute(self, sql: str) -> None: ...

    def fetchall(self, sql: str) -> list[tuple[Any, ...]]: ...

    def fetch_batches(self, sql: str, size: int = 50_000) -> Iterator[pa.Table]:
        """The result as Arrow tables of at most ``size`` rows (none when it is empty).

        Counted in ``rows_fetched`` and ``bytes_fetched``. A column may be of Arrow type
        null in a batch where it holds only nulls: callers cast to the types they need.
        """
        ...

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Everything inside commits together or not at all."""
        ...

    def stage(self, name: str, ddl: str, table: pa.Table) -> None:
        """Make ``table`` readable as ``name`` until the transaction ends."""
        ...

    def close(self) -> None: ...


# SQLSTATEs (Postgres and the warehouses that speak its protocol) by what they mean.
_SQLSTATE = {
    "42501": SourceFailure.PERMISSION,  # insufficient_privilege
    "25006": SourceFailure.PERMISSION,  # read_only_sql_transaction
    "42P01": SourceFailure.MISSING,  # undefined_table
    "3F000": SourceFailure.MISSING,  # invalid_schema_name
    "42704": SourceFailure.MISSING,  # undefined_object
    "P0001": SourceFailure.DATA,  # an exception raised in SQL
}


def failure_of(exc: BaseException) -> SourceFailure | None:
    """What a driver error means, from the driver's own classification.

    Postgres (psycopg) errors carry a SQLSTATE: class 22 is data, the rest by
    :data:`_SQLSTATE`. DuckDB has an exception class per kind; a write to a database
    attached read-only is the one refusal it reports only in its message.
    """
    if isinstance(exc, SourceError):
        return exc.failure
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        return SourceFailure.DATA if state.startswith("22") else _SQLSTATE.get(state)
    if isinstance(exc, duckdb.PermissionException):
        return SourceFailure.PERMISSION
    if isinstance(exc, duckdb.CatalogException):
        return SourceFailure.MISSING
    if isinstance(exc, duckdb.InvalidInputException) and "read-only mode" in str(exc):
        return SourceFailure.PERMISSION
    if isinstance(exc, duckdb.DataError | duckdb.InvalidInputException):
        return SourceFailure.DATA
    return None


class PostgresConn:
    """PostgreSQL through psycopg, autocommit outside :meth:`transaction`."""

    dialect = "postgres"
    local = False

    def __init__(self, params: dict[str, Any], *, connect_timeout: float = 10) -> None:
        import psycopg
        from psycopg.types.string import TextLoader

        self.rows_fetched = 0
        self.bytes_fetched = 0
        password = str(params.get("password") or "")
        self._secrets = [password] if password else []
        try:
            self._conn = psycopg.connect(
                **params,
                connect_timeout=max(1, int(connect_timeout)),
                autocommit=True,
                application_name="backhaul",
            )
        except psycopg.Error as exc:
            raise SourceError(
                f"cannot connect to the postgres warehouse for planning: {self._clean(exc)}; "
                "check the source's connection settings"
            ) from None
        # Fixed text renderings: the fingerprint hashes values as text.
        self._conn.execute("SET TIME ZONE 'UTC'")
        self._conn.execute("SET DateStyle = 'ISO, YMD'")
        self._conn.execute("SET IntervalStyle = 'postgres'")
        self._conn.execute("SET extra_float_digits = 1")
        for name in ("json", "jsonb", "uuid", "interval", "money"):
            self._conn.adapters.register_loader(name, TextLoader)

    def _clean(self, exc: BaseException) -> str:
        line = next((p.strip() for p in str(exc).splitlines() if p.strip()), type(exc).__name__)
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line

    def qualify(self, schema: str) -> str:
        return schema

    def execute(self, sql: str) -> None:
        self._conn.execute(sql.encode())

    def fetchall(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self._conn.execute(sql.encode()).fetchall())

    def fetch_batches(self, sql: str, size: int = 50_000) -> Iterator[pa.Table]:
        # A server-side cursor: only one batch of rows is held in Python at a time.
        with self._conn.transaction(), self._conn.cursor(name="bh_fetch") as cur:
            cur.execute(sql.encode())
            while True:
                rows = cur.fetchmany(size)
                names = [d.name for d in cur.description or []]
                if not rows:
                    break
                columns = list(zip(*rows, strict=True))
                table = pa.table(
                    {n: pa.array(list(c)) for n, c in zip(names, columns, strict=True)}
                )
                self.rows_fetched += table.num_rows
                self.bytes_fetched += table.nbytes
                yield table

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._conn.transaction():
            yield

    def stage(self, name: str, ddl: str, table: pa.Table) -> None:
        self._conn.execute(f"CREATE TEMPORARY TABLE {name} ({ddl}) ON COMMIT DROP".encode())
        cols = ", ".join('"' + c.replace('"', '""') + '"' for c in table.column_names)
        with (
            self._conn.cursor() as cur,
            cur.copy(f"COPY {name} ({cols}) FROM STDIN".encode()) as cp,
        ):
            for row in zip(*(c.to_pylist() for c in table.columns), strict=True):
                cp.write_row(row)

    def close(self) -> None:
        self._conn.close()


class DuckDBConn:
    """A DuckDB warehouse file ATTACHed as ``wh`` on the planning connection.

    The workspace attaches the warehouse read-only; for a run it is attached again
    read-write, so the planner tables live in the warehouse file itself.
    """

    dialect = "duckdb"
    local = True

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        path: Path | None,
        *,
        writable: bool,
        owned: bool = False,
    ) -> None:
        self.rows_fetched = 0
        self.bytes_fetched = 0
        self._con = con
        self._owned = owned  # True: this adapter opened ``con`` and closes it
        if writable and path is not None:
            literal = str(path).replace("'", "''")
            try:
                con.execute("USE memory")
                con.execute("DETACH DATABASE IF EXISTS wh")
                con.execute(f"ATTACH '{literal}' AS wh")
                con.execute("USE wh")
            except duckdb.Error as exc:
                raise SourceError(
                    f"cannot open the DuckDB warehouse {path.name} for writing the planner "
                    f"tables: {exc}; make sure no other process holds it"
                ) from None

    def qualify(self, schema: str) -> str:
        return f"wh.{schema}"

    def execute(self, sql: str) -> None:
        self._con.execute(sql)

    def fetchall(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self._con.execute(sql).fetchall())

    def fetch_batches(self, sql: str, size: int = 50_000) -> Iterator[pa.Table]:
        # Materialised first: a pending DuckDB stream ends when the connection runs
        # another statement, and callers write each batch through the same connection.
        table = arrow_table(self._con, sql)
        self.rows_fetched += table.num_rows
        self.bytes_fetched += table.nbytes
        for start in range(0, table.num_rows, size):
            yield table.slice(start, size)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self._con.execute("BEGIN")
        staged = self._staged = []
        try:
            yield
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        finally:
            for name in staged:
                self._con.unregister(name)

    _staged: list[str]

    def stage(self, name: str, ddl: str, table: pa.Table) -> None:
        self._con.register(name, table)
        self._staged.append(name)

    def close(self) -> None:
        """Close the connection if this adapter opened it (not the workspace's)."""
        if self._owned:
            self._con.close()


def postgres_params(config: Any) -> dict[str, Any]:
    """psycopg connection parameters from a postgres source config."""
    from psycopg import conninfo

    url = getattr(config, "url", None)
    if url:
        try:
            params: dict[str, Any] = conninfo.conninfo_to_dict(url)
        except Exception:
            raise ConfigError(
                "postgres `url` is not a valid connection URL; use "
                "postgresql://user:password@host:5432/database",
                key="url",
            ) from None
    else:
        params = {
            "host": getattr(config, "host", None),
            "port": getattr(config, "port", None),
            "user": getattr(config, "user", None),
            "password": getattr(config, "password", None),
            "dbname": getattr(config, "database", None),
        }
    sslmode = getattr(config, "sslmode", None)
    if sslmode:
        params["sslmode"] = sslmode
    return {k: v for k, v in params.items() if v not in (None, "")}


def permission_error(exc: BaseException) -> bool:
    """Whether a driver error means Backhaul lacks a privilege."""
    return failure_of(exc) is SourceFailure.PERMISSION
