"""PostgreSQL tables: COPY into a staging table, then one set-based statement per batch.

The batch travels as CSV rendered by Arrow's C++ writer (no Python object per row) and is
read by ``COPY ... FROM STDIN (FORMAT csv)`` into a temporary table with the target's
column types, so Postgres parses every value with the table's own input rules. Into a
table that was empty when the run began, the CSV is copied straight into the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Literal

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import conninfo
from psycopg import errors
from psycopg import sql
from pydantic import ConfigDict
from pydantic import Field

from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import NewLoad
from backhaul.destinations.sql_common import ALL_OPERATIONS
from backhaul.destinations.sql_common import INDEX
from backhaul.destinations.sql_common import POSTGRES
from backhaul.destinations.sql_common import STAGE
from backhaul.destinations.sql_common import SqlTableDestination
from backhaul.destinations.sql_common import Statements
from backhaul.destinations.sql_common import TableInfo
from backhaul.destinations.sql_common import csv_ready
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.errors import first_line


class PostgresConfig(DestinationConfig):
    """A table in a PostgreSQL database."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["postgres"]
    url: str = Field(description="postgresql://user:password@host:5432/database")
    schema_: str = Field("public", alias="schema", description="Schema holding the table.")
    table: str | None = Field(None, description="Table name; default: the sync's `object`.")
    create_table: bool = Field(False, description="Create the table when it does not exist.")
    connect_timeout: float = Field(10, gt=0, description="Seconds to wait for a connection.")


# Configuration problems a retry cannot fix.
_CONFIG_HINTS = (
    "does not exist",
    "authentication",
    "password",
    "role",
    "resolve host",
    "permission denied",
    "no pg_hba.conf entry",
    "invalid",
    "unsupported",
)


class PostgresDestination(SqlTableDestination):
    """Upserts, updates, inserts, clears and deletes rows of one PostgreSQL table."""

    config_model: ClassVar[type[DestinationConfig]] = PostgresConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        non_finite_floats=True,
        operations=ALL_OPERATIONS,
        max_batch_size=50_000,
        default_batch_size=25_000,
        default_concurrency=4,
    )
    dialect = POSTGRES
    config: PostgresConfig

    def __init__(self, config: PostgresConfig, context: DestinationContext) -> None:
        super().__init__(config, context)
        try:
            info = conninfo.conninfo_to_dict(config.url)
        except psycopg.ProgrammingError:
            raise DestinationError(
                "postgres `url` is not a valid connection URL; use "
                "postgresql://user:password@host:5432/database",
                failure=FailureType.CONFIG,
            ) from None
        self._password = str(info.get("password") or "")
        self._where = f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"

    def _target_name(self, table: str) -> str:
        return f"{self.dialect.quote(self.config.schema_)}.{self.dialect.quote(table)}"

    def _redact(self, text: str) -> str:
        return self._masked(text, self._password)

    def _connect(self) -> Any:
        try:
            return psycopg.connect(
                self.config.url,
                connect_timeout=max(1, round(self.config.connect_timeout)),
                application_name="backhaul",
            )
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None

    def _connect_error(self, exc: BaseException) -> DestinationError:
        # psycopg prefixes the server's reason with the attempt; keep only the reason.
        reason = first_line(exc).rsplit("failed: ", 1)[-1].replace("FATAL:", "").strip()
        reason = self._redact(reason[:1].lower() + reason[1:])
        config = any(hint in reason.lower() for hint in _CONFIG_HINTS)
        return DestinationError(
            f"cannot connect to postgres at {self._where}: {reason}; "
            "check `url` in the destination file",
            failure=FailureType.CONFIG if config else FailureType.TRANSIENT,
        )

    def _describe(self, conn: Any, table: str) -> TableInfo | None:
        cur = conn.cursor()
        cur.execute("SELECT to_regclass(%s)::oid", (self._target,))
        row = cur.fetchone()
        if row is None or row[0] is None:
            conn.rollback()
            return None
        oid = row[0]
        cur.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull AND NOT atthasdef "
            "AND attidentity = '' FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            (oid,),
        )
        rows = cur.fetchall()
        # Unique indexes usable by ON CONFLICT: no expressions, no partial predicate.
        cur.execute(
            "SELECT array_agg(a.attname) FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL "
            "AND i.indexprs IS NULL GROUP BY i.indexrelid",
            (oid,),
        )
        keys = [list(r[0]) for r in cur.fetchall()]
        conn.rollback()
        return TableInfo.from_rows(rows, keys)

    def _load_stage(self, conn: Any, cur: Any, table: pa.Table) -> None:
        fields = table.column_names[1:]
        cols = sql.SQL(", ").join(sql.Identifier(f) for f in fields)
        # The stage takes the target's column types, so COPY parses values as the table would.
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
                "SELECT 0::bigint AS {idx}, {cols} FROM {target} WITH NO DATA"
            ).format(
                stage=sql.Identifier(STAGE),
                idx=sql.Identifier(INDEX),
                cols=cols,
                target=sql.SQL(self._target),
            )
        )
        copy_sql = sql.SQL("COPY {stage} ({idx}, {cols}) FROM STDIN (FORMAT csv)").format(
            stage=sql.Identifier(STAGE), idx=sql.Identifier(INDEX), cols=cols
        )
        with cur.copy(copy_sql) as copy:
            copy.write(csv_bytes(table))

    def _insert_new(self, conn: Any, cur: Any, plan: Statements, table: pa.Table) -> None:
        # Straight into the target: no stage, no second pass over the rows.
        self._copy_into_target(cur, table.column_names[1:], [table.remove_column(0)])

    def _copy_into_target(
        self, cur: Any, fields: Sequence[str], tables: Iterable[pa.Table]
    ) -> None:
        """One ``COPY ... FROM STDIN`` straight into the table, each of ``tables`` written
        as CSV as it comes."""
        cols = sql.SQL(", ").join(sql.Identifier(f) for f in fields)
        copy_sql = sql.SQL("COPY {target} ({cols}) FROM STDIN (FORMAT csv)").format(
            target=sql.SQL(self._target), cols=cols
        )
        with cur.copy(copy_sql) as copy:
            for table in tables:
                copy.write(csv_bytes(table))

    async def load_new(self, rows: pa.RecordBatchReader, load: NewLoad) -> bool:
        """Copy a whole first load straight into the table in one transaction, block by
        block as the stream yields them (see
        :class:`~backhaul.destinations.base.LoadsAtOnce`); only into a table that held no
        row when the run began. The table's key refuses a repeated match value, so
        ``load.match_unique`` changes nothing here."""
        if not self._new_table:
            return False

        def insert(conn: Any, cur: Any) -> None:
            blocks = (pa.Table.from_batches([block]) for block in rows)
            self._copy_into_target(cur, load.fields, blocks)

        loaded: bool = await self._run(self._insert_into_empty, insert)
        return loaded

    def _data_error(self, exc: BaseException) -> str | None:
        # A cardinality violation is two records with one key in a batch: split them apart.
        if isinstance(exc, errors.DataError | errors.IntegrityError | errors.CardinalityViolation):
            return first_line(exc)
        return None

    def _failure(self, exc: BaseException) -> DestinationError:
        reason = self._redact(first_line(exc))
        if isinstance(exc, psycopg.OperationalError | errors.QueryCanceled):
            return self._retried(exc, self._where, reason)
        return self._refused(exc, reason)


def csv_bytes(table: pa.Table) -> bytes:
    """The rows as Postgres CSV: unquoted empty is NULL, every text value is quoted.

    ``bytea`` reads CSV text in hex form (``\\x0a1b``); nested values become JSON.
    """
    ready = csv_ready(table, binary=lambda v: "\\x" + v.hex())
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(
        ready,
        sink,
        pa_csv.WriteOptions(include_header=False, quoting_style="needed", null_string=""),
    )
    return bytes(sink.getvalue())
