"""MySQL and MariaDB warehouse: an unbuffered server-side cursor (pymysql ``SSCursor``).

Rows come over the wire one batch at a time, so memory stays bounded by ``batch_size``.
Column types are read from the result's description; the session runs in UTC so that
``TIMESTAMP`` columns are exact instants.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import unquote
from urllib.parse import urlsplit

import pyarrow as pa
from pydantic import Field

from backhaul.errors import ConfigError
from backhaul.errors import SourceError
from backhaul.sources.common import ServerSource
from backhaul.sources.common import ServerSourceConfig
from backhaul.sources.common import dbapi_reader
from backhaul.sources.common import import_driver
from backhaul.sources.common import limit_zero
from backhaul.sources.common import one_line
from backhaul.sources.common import strip_sql


class MySQLSourceConfig(ServerSourceConfig):
    """A MySQL or MariaDB database."""

    example_url: ClassVar[str] = "mysql://user@host:3306/db"
    type: Literal["mysql"]
    url: str | None = Field(None, description="mysql://user:password@host:3306/database")
    port: int = 3306


# pymysql field type codes (pymysql.constants.FIELD_TYPE) that map to a fixed Arrow type.
_TYPES: dict[int, pa.DataType] = {
    1: pa.int64(),  # TINY
    2: pa.int64(),  # SHORT
    3: pa.int64(),  # LONG
    8: pa.int64(),  # LONGLONG
    9: pa.int64(),  # INT24
    13: pa.int64(),  # YEAR
    4: pa.float64(),  # FLOAT
    5: pa.float64(),  # DOUBLE
    10: pa.date32(),  # DATE
    14: pa.date32(),  # NEWDATE
    12: pa.timestamp("us"),  # DATETIME: wall-clock time, no zone
    7: pa.timestamp("us", tz="UTC"),  # TIMESTAMP: an instant (the session is UTC)
    11: pa.duration("us"),  # TIME
    6: pa.string(),  # NULL
}
_DECIMAL = (0, 246)
# MySQL error numbers that mean "fix the configuration".
_AUTH, _NO_DB, _NO_HOST, _BAD_HOST = 1045, 1049, 2003, 2005


class MySQLSource(ServerSource[MySQLSourceConfig]):
    """Runs model SQL in MySQL/MariaDB and streams the rows as Arrow batches."""

    config_model: ClassVar[type[MySQLSourceConfig]] = MySQLSourceConfig
    kind = "mysql"

    def __init__(self, config: MySQLSourceConfig, project_dir: Path) -> None:
        super().__init__(config, _params(config))
        self._streams: list[Callable[[], None]] = []  # how to end streams not read to the end

    def _where(self) -> str:
        params = self._params
        return f"{params['host']}:{params['port']}/{params.get('database') or ''}"

    def _open(self) -> Any:
        pymysql = import_pymysql()
        try:
            conn = pymysql.connect(
                **self._params,
                charset="utf8mb4",
                connect_timeout=max(1, int(self.config.connect_timeout)),
                autocommit=True,
                init_command="SET time_zone = '+00:00'",
            )
            with conn.cursor() as cur:
                # Read-only on purpose: a model must never change the warehouse.
                cur.execute("SET SESSION TRANSACTION READ ONLY")
        except pymysql.Error as exc:
            raise self._connect_error(exc) from None
        return conn

    def _connect(self) -> Any:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _connect_error(self, exc: BaseException) -> SourceError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        text = one_line(str(exc.args[1] if len(exc.args) > 1 else exc), [self._password])
        hints = {
            _AUTH: "check `user` and `password`",
            _NO_DB: "check `database`",
            _NO_HOST: "check `host` and `port`, and that the server is running",
            _BAD_HOST: "check `host`",
        }
        hint = hints.get(code or 0, "check the connection settings")
        return SourceError(f"cannot connect to mysql source at {self.where}: {text}; {hint}")

    def _query_error(self, exc: BaseException) -> SourceError:
        text = exc.args[1] if len(exc.args) > 1 else str(exc)
        return SourceError(one_line(str(text), [self._password]))

    def columns(self, sql: str) -> dict[str, str]:
        """Column names and MySQL type codes of ``sql`` (planned with ``LIMIT 0``)."""
        pymysql = import_pymysql()
        from pymysql.constants import FIELD_TYPE

        names: dict[int, str] = {}
        for key, value in vars(FIELD_TYPE).items():
            if isinstance(value, int):
                names.setdefault(value, key)  # TINY before its alias CHAR
        try:
            with self._connect().cursor() as cur:
                cur.execute(limit_zero(sql, "mysql"))
                return {d[0]: names.get(d[1], str(d[1])) for d in cur.description or []}
        except pymysql.Error as exc:
            raise self._query_error(exc) from None

    def stream(self, sql: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Stream the rows of ``sql`` through an unbuffered cursor on its own connection."""
        pymysql = import_pymysql()
        # An unbuffered result blocks its connection until read: use one just for it.
        conn = self._open()
        cur = conn.cursor(pymysql.cursors.SSCursor)
        try:
            cur.execute(strip_sql(sql))
        except pymysql.Error as exc:
            conn.close()
            raise self._query_error(exc) from None
        names = [d[0] for d in cur.description or []]
        types = [_arrow_type(d) for d in cur.description or []]

        def finish() -> None:
            if finish in self._streams:
                self._streams.remove(finish)
            with contextlib.suppress(pymysql.Error):
                cur.close()
            with contextlib.suppress(pymysql.Error):
                conn.close()

        self._streams.append(finish)

        return dbapi_reader(
            cur.fetchmany, names, types, batch_size, on_error=self._query_error, finish=finish
        )

    def check(self) -> None:
        """Connect and run a trivial query."""
        pymysql = import_pymysql()
        try:
            with self._connect().cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
        except pymysql.Error as exc:
            raise self._connect_error(exc) from None

    def server_version(self) -> str:
        """The server's version string, e.g. ``10.11.6-MariaDB``."""
        return str(self._connect().get_server_info())

    def close(self) -> None:
        for finish in list(self._streams):
            finish()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def import_pymysql() -> ModuleType:
    """The pymysql driver, imported on first use."""
    return import_driver("pymysql", "pymysql", "mysql", "mysql")


def _arrow_type(desc: tuple[Any, ...]) -> pa.DataType | None:
    code, size, scale = desc[1], desc[3], desc[5]
    if code in _DECIMAL:
        precision = min(int(size or 38), 38)
        return pa.decimal128(precision, min(int(scale or 0), precision))
    return _TYPES.get(code)  # None: text or bytes, told apart by the values


def _params(config: MySQLSourceConfig) -> dict[str, Any]:
    if not config.url:
        params: dict[str, Any] = {
            "host": config.host,
            "port": config.port,
            "user": config.user,
            "password": config.password or "",
            "database": config.database,
        }
        return {k: v for k, v in params.items() if v is not None}
    parts = urlsplit(config.url)
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql") or not parts.hostname:
        raise ConfigError(
            "mysql `url` is not a valid connection URL; use mysql://user:password@host:3306/db",
            key="url",
        )
    params = {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
    }
    if parts.path.strip("/"):
        params["database"] = unquote(parts.path.strip("/"))
    return params


__all__ = ["MySQLSource", "MySQLSourceConfig"]
