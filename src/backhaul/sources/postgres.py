"""PostgreSQL warehouse: the model streams out through ``COPY ... TO STDOUT (FORMAT CSV)``.

Why CSV COPY: Arrow's C++ CSV reader parses it several times faster than psycopg can build
Python rows (see docs/benchmarks.md), and the column types come from the query's own
description, so numbers, decimals, booleans, dates and timestamps arrive typed. Arrays are
sent as JSON and bytea as hex, then turned into Arrow lists and binaries per batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import ClassVar
from typing import Literal

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql
from pydantic import Field

from backhaul.errors import SourceError
from backhaul.sources.common import ServerSource
from backhaul.sources.common import ServerSourceConfig
from backhaul.sources.common import limit_zero
from backhaul.sources.common import one_line
from backhaul.sources.common import strip_sql
from backhaul.state.warehouse_conn import postgres_params


class PostgresSourceConfig(ServerSourceConfig):
    """A PostgreSQL database (also works for compatible servers that support COPY)."""

    example_url: ClassVar[str] = "postgresql://user@host:5432/db"
    type: Literal["postgres"]
    url: str | None = Field(None, description="postgresql://user:password@host:5432/database")
    port: int = 5432
    sslmode: str | None = Field(None, description="disable, require, verify-full...")
    max_row_mb: int = Field(8, gt=0, le=1024, description="Largest row the reader accepts.")


# Postgres type names whose CSV text Arrow parses as the given type.
_SIMPLE: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "oid": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}
_ELEMENTS: dict[str, pa.DataType] = {
    **_SIMPLE,
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "uuid": pa.string(),
    "numeric": pa.string(),
    "json": pa.string(),
    "jsonb": pa.string(),
}


class PostgresSource(ServerSource[PostgresSourceConfig]):
    """Runs model SQL in PostgreSQL and streams the rows as Arrow batches."""

    config_model: ClassVar[type[PostgresSourceConfig]] = PostgresSourceConfig
    kind = "postgres"

    _conn: psycopg.Connection[Any] | None

    def __init__(self, config: PostgresSourceConfig, project_dir: Path) -> None:
        super().__init__(config, _params(config))

    def _where(self) -> str:
        params = self._params
        host = params.get("host") or "localhost"
        return f"{host}:{params.get('port') or 5432}/{params.get('dbname', '')}"

    # -- connection ---------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.connect(**self._params, autocommit=True)
            except psycopg.Error as exc:
                raise self._connect_error(exc) from None
            # Read-only on purpose: a model must never change the warehouse. UTC so that
            # timestamptz text carries a fixed offset Arrow can parse.
            conn.execute("SET default_transaction_read_only = on")
            conn.execute("SET TIME ZONE 'UTC'")
            # Generated SQL (audiences) writes backslashes as plain characters in literals;
            # a server configured the old way would read them as escapes.
            conn.execute("SET standard_conforming_strings = on")
            conn.execute("SET DateStyle = 'ISO, YMD'")
            self._conn = conn
        return self._conn

    def _connect_error(self, exc: BaseException) -> SourceError:
        text = one_line(str(exc), [self._password]).lower()
        if "password" in text or "authentication" in text or "role" in text:
            hint = "check `user` and `password`"
        elif "database" in text and "does not exist" in text:
            hint = "check `database`"
        elif "refused" in text or "timeout" in text or "resolve" in text or "unreachable" in text:
            hint = "check `host` and `port`, and that the server is running"
        else:
            hint = "check the connection settings"
        return SourceError(
            f"cannot connect to postgres source at {self.where}: "
            f"{one_line(str(exc), [self._password])}; {hint}"
        )

    def _query_error(self, exc: BaseException) -> SourceError:
        return SourceError(_pg_message(exc, [self._password]))

    # -- Source protocol ----------------------------------------------------------------
    def columns(self, sql_text: str) -> dict[str, str]:
        """Column names and Postgres types of ``sql_text`` (planned, not run)."""
        conn = self._connect()
        try:
            cur = conn.execute(limit_zero(sql_text, "postgres"))
        except psycopg.Error as exc:
            raise self._query_error(exc) from None
        return {d.name: d.type_display for d in cur.description or []}

    def stream(self, sql_text: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Stream the rows of ``sql_text`` through COPY; memory is bounded by the block size."""
        conn = self._connect()
        body = strip_sql(sql_text)
        try:
            cur = conn.execute(limit_zero(body, "postgres"))
        except psycopg.Error as exc:
            raise self._query_error(exc) from None
        names: list[str] = []
        selects: list[sql.Composable] = []
        csv_types: dict[str, pa.DataType] = {}
        fixes: dict[str, tuple[pa.DataType, Callable[[pa.Array], pa.Array]]] = {}
        for i, desc in enumerate(cur.description or []):
            col = f"c{i}"  # CSV names of our own: model columns may repeat or be odd
            names.append(desc.name)
            ref = sql.SQL("q.{}").format(sql.Identifier(desc.name))
            arrow, select, fix = self._column(conn, desc, ref)
            selects.append(sql.SQL("{} AS {}").format(select, sql.Identifier(col)))
            csv_types[col] = pa.string() if fix else arrow
            if fix:
                fixes[col] = (arrow, fix)
        if len(set(names)) != len(names):
            raise SourceError("the model returns two columns with the same name; alias them")
        query = sql.SQL("COPY (SELECT {} FROM ({}\n) AS q) TO STDOUT (FORMAT CSV)").format(
            sql.SQL(", ").join(selects),
            sql.SQL(body),
        )
        return self._copy_reader(conn, query, names, csv_types, fixes, batch_size)

    def _column(
        self, conn: psycopg.Connection[Any], desc: Any, ref: sql.Composable
    ) -> tuple[pa.DataType, sql.Composable, Callable[[pa.Array], pa.Array] | None]:
        info = conn.adapters.types.get(desc.type_code)
        name = info.name if info is not None else ""
        if info is not None and desc.type_code == info.array_oid:
            elem = _ELEMENTS.get(name)
            # Arrays travel as JSON: an unambiguous text form, parsed per batch.
            select = sql.SQL("to_json({})::text").format(ref)
            if elem is None:
                return pa.string(), select, None
            return pa.list_(elem), select, _json_list(pa.list_(elem))
        if name in _SIMPLE:
            return _SIMPLE[name], ref, None
        if name == "numeric" and desc.precision and desc.precision <= 38:
            return pa.decimal128(desc.precision, desc.scale or 0), ref, None
        if name == "bytea":
            return pa.binary(), ref, _hex_bytes
        return pa.string(), sql.SQL("{}::text").format(ref), None

    def _copy_reader(
        self,
        conn: psycopg.Connection[Any],
        query: sql.Composed,
        names: list[str],
        csv_types: dict[str, pa.DataType],
        fixes: dict[str, tuple[pa.DataType, Callable[[pa.Array], pa.Array]]],
        batch_size: int,
    ) -> pa.RecordBatchReader:
        cur = conn.cursor()
        copy_cm = cur.copy(query)
        try:
            copy = copy_cm.__enter__()
        except psycopg.Error as exc:
            cur.close()
            raise self._query_error(exc) from None
        source = _CopyStream(copy)
        block = self.config.max_row_mb * 1024 * 1024
        cols = list(csv_types)
        schema = pa.schema(
            [
                pa.field(n, fixes[c][0] if c in fixes else csv_types[c])
                for n, c in zip(names, cols, strict=True)
            ]
        )

        def finish() -> None:
            try:
                copy_cm.__exit__(None, None, None)
            except psycopg.Error:
                # A stream left unread: drop the connection rather than drain it.
                conn.close()
            finally:
                cur.close()

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                if source.at_end():
                    return  # COPY sent no data: the model has no rows
                reader = pacsv.open_csv(
                    source,
                    read_options=pacsv.ReadOptions(
                        column_names=cols, block_size=block, use_threads=False
                    ),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    convert_options=pacsv.ConvertOptions(
                        column_types=csv_types,
                        null_values=[""],
                        strings_can_be_null=True,
                        quoted_strings_can_be_null=False,
                        true_values=["t"],
                        false_values=["f"],
                    ),
                )
                for batch in reader:
                    arrays = [
                        fixes[c][1](batch.column(i)) if c in fixes else batch.column(i)
                        for i, c in enumerate(cols)
                    ]
                    out = pa.RecordBatch.from_arrays(arrays, schema=schema)
                    for start in range(0, out.num_rows, batch_size):
                        yield out.slice(start, batch_size)
            except psycopg.Error as exc:
                raise self._query_error(exc) from None
            except pa.ArrowInvalid as exc:
                raise self._arrow_error(exc) from None
            finally:
                finish()

        return pa.RecordBatchReader.from_batches(schema, batches())

    def _arrow_error(self, exc: BaseException) -> SourceError:
        text = one_line(str(exc))
        if "straddl" in text:
            return SourceError(
                f"a row of the model is larger than {self.config.max_row_mb} MB; raise "
                "`max_row_mb` in the postgres source file"
            )
        return SourceError(f"cannot read a value from postgres: {text}")

    def check(self) -> None:
        """Connect and run a trivial query."""
        try:
            self._connect().execute("SELECT 1").fetchall()
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None

    def server_version(self) -> str:
        """The server's version, e.g. ``PostgreSQL 15.20``."""
        number = self._connect().info.server_version
        return f"PostgreSQL {number // 10000}.{number % 10000}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _CopyStream:
    """A read-only file over a COPY's chunks, for Arrow's CSV reader."""

    closed = False

    def __init__(self, copy: psycopg.Copy) -> None:
        self._copy = copy
        self._buf = bytearray()
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buf) < size):
            chunk = self._copy.read()
            if not chunk:
                self._done = True
                break
            self._buf += chunk
        if size < 0 or size >= len(self._buf):
            out = bytes(self._buf)
            self._buf.clear()
            return out
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def at_end(self) -> bool:
        """True when the COPY has no data at all (reads ahead one chunk to know)."""
        if not self._buf and not self._done:
            chunk = self._copy.read()
            if chunk:
                self._buf += chunk
            else:
                self._done = True
        return self._done and not self._buf

    def close(self) -> None:
        self.closed = True


def _json_list(type_: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    def convert(column: pa.Array) -> pa.Array:
        values = [None if v is None else json.loads(v) for v in column.to_pylist()]
        return pa.array(values, type=type_)

    return convert


def _hex_bytes(column: pa.Array) -> pa.Array:
    values = [None if v is None else bytes.fromhex(v[2:]) for v in column.to_pylist()]
    return pa.array(values, type=pa.binary())


def _params(config: PostgresSourceConfig) -> dict[str, Any]:
    """The warehouse's connection parameters, with the source's connect timeout."""
    params = postgres_params(config)
    # A timeout written in the URL wins over the config field's default.
    params.setdefault("connect_timeout", max(1, int(config.connect_timeout)))
    return params


def _pg_message(exc: BaseException, secrets: list[str]) -> str:
    """The error's first line, plus the ``LINE n:`` pointer when Postgres gave one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = one_line(lines[0] if lines else type(exc).__name__, secrets)
    where = next((line for line in lines if line.startswith("LINE ")), None)
    return f"{first} ({one_line(where, secrets)})" if where else first


__all__ = ["PostgresSource", "PostgresSourceConfig"]
