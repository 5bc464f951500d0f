"""ClickHouse warehouse: results stream as Arrow through ``query_arrow_stream``.

The driver (``clickhouse-connect``, HTTP interface) is imported on first use; install it
with ``pip install clickhouse-connect`` (the ``clickhouse`` extra).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any
from typing import Literal

import pyarrow as pa
from pydantic import Field

from backhaul.sources.common import DbApiSource
from backhaul.sources.common import HostSourceConfig
from backhaul.sources.common import limit_zero
from backhaul.sources.common import strip_sql
from backhaul.sources.common import tables_reader


class ClickHouseSourceConfig(HostSourceConfig):
    """A ClickHouse server (HTTP interface)."""

    type: Literal["clickhouse"]
    port: int = Field(8123, description="HTTP port: 8123, or 8443 with `secure`.")
    user: str = "default"
    password: str = ""
    database: str = "default"
    secure: bool = False


class ClickHouseSource(DbApiSource[ClickHouseSourceConfig]):
    """Runs model SQL in ClickHouse and streams the result as Arrow batches."""

    driver = "clickhouse_connect"
    package = "clickhouse-connect"
    connect_hint = "check `host`, `port`, `user` and `password`, and that the server is running"

    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}/{self.config.database}"

    def _open(self, module: ModuleType) -> Any:
        cfg = self.config
        return module.get_client(
            **cfg.driver_options("host", "port", "password", "database", "secure"),
            username=cfg.user,
            connect_timeout=cfg.connect_timeout,
        )

    def columns(self, sql: str) -> dict[str, str]:
        """Column names and ClickHouse types of ``sql``, planned with ``LIMIT 0``."""
        client = self._connect()
        try:
            result = client.query(limit_zero(sql, self.dialect))
        except Exception as exc:
            raise self._query_error(exc) from None
        names = [str(n) for n in result.column_names]
        return {n: t.name for n, t in zip(names, result.column_types, strict=True)}

    def stream(self, sql: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Stream the server's Arrow blocks (the server sends ArrowStream)."""
        client = self._connect()
        try:
            context = client.query_arrow_stream(strip_sql(sql))
            batches = iter(context.__enter__())
        except Exception as exc:
            raise self._query_error(exc) from None

        def empty() -> pa.Schema:
            table = client.query_arrow(limit_zero(sql, self.dialect))
            return table.schema

        def finish() -> None:
            context.__exit__(None, None, None)

        return tables_reader(batches, empty, batch_size, on_error=self._query_error, finish=finish)

    def check(self) -> None:
        """Run a trivial query."""
        client = self._connect()
        try:
            client.command("SELECT 1")
        except Exception as exc:
            raise self._connect_error(exc) from None


__all__ = ["ClickHouseSource", "ClickHouseSourceConfig"]
