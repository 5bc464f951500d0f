"""MySQL and MariaDB tables through PyMySQL (blocking calls run in worker threads).

A batch is staged in a temporary table with the target's column types, then applied with
one set-based statement. The stage is filled with multi-row ``INSERT`` statements (PyMySQL
packs ``executemany`` into statements of up to 1 MB), or, with ``local_infile: true`` and a
server that allows it, with ``LOAD DATA LOCAL INFILE`` from a CSV file Arrow writes. The
server turns conversion errors of a ``LOCAL`` load into warnings, so a load with any warning
is undone and the batch is staged with ``INSERT`` instead, where a bad value is an error
that the per-record search can pin to its record.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import unquote
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.csv as pa_csv
import pymysql
from pydantic import Field

from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.sql_common import ALL_OPERATIONS
from backhaul.destinations.sql_common import INDEX
from backhaul.destinations.sql_common import MYSQL
from backhaul.destinations.sql_common import STAGE
from backhaul.destinations.sql_common import SqlTableDestination
from backhaul.destinations.sql_common import TableInfo
from backhaul.destinations.sql_common import csv_ready
from backhaul.destinations.sql_common import python_rows
from backhaul.errors import DestinationError
from backhaul.errors import FailureType


class MySQLConfig(DestinationConfig):
    """A table in a MySQL or MariaDB database."""

    type: Literal["mysql"]
    url: str = Field(description="mysql://user:password@host:3306/database")
    table: str | None = Field(None, description="Table name; default: the sync's `object`.")
    create_table: bool = Field(False, description="Create the table when it does not exist.")
    connect_timeout: float = Field(10, gt=0, description="Seconds to wait for a connection.")
    local_infile: bool = Field(
        False,
        description="Stage batches with LOAD DATA LOCAL INFILE when the server allows it "
        "(faster for large batches). It lets the server ask this client for local files, so "
        "enable it only for a server you trust.",
    )


_SCHEMES = {"mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql"}
# Server error numbers caused by the records themselves: bad values, NULL in a NOT NULL
# column, duplicate or dangling keys, CHECK constraints (MySQL 3819, MariaDB 4025).
_DATA_ERRNOS = {
    1048,
    1062,
    1264,
    1265,
    1292,
    1366,
    1406,
    1416,
    1451,
    1452,
    1690,
    3140,
    3819,
    4025,
    4078,
}
_CONFIG_ERRNOS = {1044, 1045, 1049, 1698, 1142, 1143, 1146, 1054, 1064, 2005}


class MySQLDestination(SqlTableDestination):
    """Upserts, updates, inserts, clears and deletes rows of one MySQL/MariaDB table."""

    config_model: ClassVar[type[DestinationConfig]] = MySQLConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations=ALL_OPERATIONS,
        max_batch_size=20_000,
        default_batch_size=2_000,
        default_concurrency=2,
    )
    dialect = MYSQL
    config: MySQLConfig

    def __init__(self, config: MySQLConfig, context: DestinationContext) -> None:
        super().__init__(config, context)
        parts = urlsplit(config.url)
        database = unquote(parts.path.lstrip("/"))
        try:
            port = parts.port or 3306
        except ValueError:
            port = -1
        if parts.scheme not in _SCHEMES or not database or port < 0:
            raise DestinationError(
                "mysql `url` must look like mysql://user:password@host:3306/database",
                failure=FailureType.CONFIG,
            )
        self._params: dict[str, Any] = {
            "host": parts.hostname or "127.0.0.1",
            "port": port,
            "user": unquote(parts.username or "root"),
            "password": unquote(parts.password or ""),
            "database": database,
        }
        self._where = f"{self._params['host']}:{port}"
        self._server_infile: bool | None = None  # the server's @@local_infile, once asked

    def _message(self, exc: BaseException) -> str:
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        text = str(args[1]) if len(args) >= 2 else str(exc)
        text = self._masked(text, self._params["password"])
        return text.strip().splitlines()[0] if text.strip() else type(exc).__name__

    @staticmethod
    def _errno(exc: BaseException) -> int | None:
        args = getattr(exc, "args", ())
        return args[0] if args and isinstance(args[0], int) else None

    def _connect(self) -> Any:
        try:
            return pymysql.connect(
                **self._params,
                connect_timeout=self.config.connect_timeout,
                charset="utf8mb4",
                autocommit=False,
                local_infile=self.config.local_infile,
            )
        except pymysql.Error as exc:
            errno, reason = self._errno(exc), self._message(exc)
            for short in ("connection refused", "timed out", "name or service not known"):
                if short in reason.lower():
                    reason = short
            config = errno in _CONFIG_ERRNOS or reason == "name or service not known"
            raise DestinationError(
                f"cannot connect to mysql at {self._where}: {reason}; "
                "check `url` in the destination file",
                failure=FailureType.CONFIG if config else FailureType.TRANSIENT,
            ) from None

    def _describe(self, conn: Any, table: str) -> TableInfo | None:
        cur = conn.cursor()
        cur.execute(
            "SELECT column_name, column_type, is_nullable = 'NO' AND column_default IS NULL "
            "AND extra NOT LIKE '%%auto_increment%%' FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position",
            (table,),
        )
        rows = cur.fetchall()
        if not rows:
            conn.rollback()
            return None
        cur.execute(
            "SELECT index_name, column_name FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND table_name = %s AND non_unique = 0 "
            "ORDER BY index_name, seq_in_index",
            (table,),
        )
        keys: dict[str, list[str]] = {}
        for index, column in cur.fetchall():
            keys.setdefault(index, []).append(column)
        conn.rollback()
        return TableInfo.from_rows(rows, list(keys.values()))

    def _load_stage(self, conn: Any, cur: Any, table: pa.Table) -> None:
        q = self.dialect.quote
        fields = table.column_names[1:]
        cols = ", ".join(q(f) for f in fields)
        # Temporary tables outlive a rollback in MySQL, so drop any left by a failed attempt.
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {STAGE}")
        # The stage copies the target's column types, so values convert as the table would.
        cur.execute(
            f"CREATE TEMPORARY TABLE {STAGE} AS "
            f"SELECT CAST(0 AS SIGNED) AS {INDEX}, {cols} FROM {self._target} LIMIT 0"
        )
        if self._load_file(cur, table, cols):
            return
        marks = ", ".join(["%s"] * (len(fields) + 1))
        cur.executemany(
            f"INSERT INTO {STAGE} ({INDEX}, {cols}) VALUES ({marks})", python_rows(table)
        )

    def _load_file(self, cur: Any, table: pa.Table, cols: str) -> bool:
        """Stage ``table`` with LOAD DATA LOCAL INFILE; False when it cannot or did not load
        cleanly (the stage is then empty again)."""
        if not self.config.local_infile or any(
            pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            for t in table.schema.types
        ):
            return False
        if self._server_infile is None:
            cur.execute("SELECT @@local_infile")
            self._server_infile = bool(cur.fetchone()[0])
        if not self._server_infile:
            return False
        fd, path = tempfile.mkstemp(prefix="backhaul-", suffix=".csv")
        try:
            with os.fdopen(fd, "wb") as out:
                pa_csv.write_csv(
                    csv_ready(table, binary=lambda v: v.hex(), boolean=pa.int8()),
                    out,
                    pa_csv.WriteOptions(
                        include_header=False, quoting_style="needed", null_string="NULL"
                    ),
                )
            name = path.replace("\\", "\\\\").replace("'", "\\'")
            loaded = cur.execute(
                f"LOAD DATA LOCAL INFILE '{name}' INTO TABLE {STAGE} CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                f"LINES TERMINATED BY '\\n' ({INDEX}, {cols})"
            )
        finally:
            os.unlink(path)
        cur.execute("SELECT @@warning_count")
        if loaded == table.num_rows and cur.fetchone()[0] == 0:
            return True
        cur.execute(f"DELETE FROM {STAGE}")
        return False

    def _drop_stage(self, conn: Any, cur: Any) -> None:
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {STAGE}")

    def _data_error(self, exc: BaseException) -> str | None:
        if isinstance(exc, pymysql.err.DataError | pymysql.err.IntegrityError):
            return self._message(exc)
        if isinstance(exc, pymysql.Error) and self._errno(exc) in _DATA_ERRNOS:
            return self._message(exc)
        return None

    def _failure(self, exc: BaseException) -> DestinationError:
        errno = self._errno(exc)
        if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError) and (
            errno not in _CONFIG_ERRNOS
        ):
            return self._retried(exc, self._where, self._message(exc))
        return self._refused(exc, self._message(exc))
