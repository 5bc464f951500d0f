"""Databricks SQL warehouse: rows arrive as Arrow through the cursor's ``fetchmany_arrow``.

The driver (``databricks-sql-connector``) is imported on first use; install it with
``pip install databricks-sql-connector`` (the ``databricks`` extra).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any
from typing import Literal

import pyarrow as pa
from pydantic import Field

from backhaul.sources.common import DbApiSource
from backhaul.sources.common import SourceConfig
from backhaul.sources.common import tables_reader


class DatabricksSourceConfig(SourceConfig):
    """A Databricks SQL warehouse."""

    type: Literal["databricks"]
    server_hostname: str = Field(description="e.g. `dbc-1234.cloud.databricks.com`.")
    http_path: str = Field(description="The warehouse's HTTP path, `/sql/1.0/warehouses/...`.")
    token: str = Field(description="A personal access token; write `${env:DATABRICKS_TOKEN}`.")
    catalog: str | None = None
    schema_: str | None = Field(None, alias="schema")


class DatabricksSource(DbApiSource[DatabricksSourceConfig]):
    """Runs model SQL on a Databricks SQL warehouse and streams Arrow batches."""

    driver = "databricks.sql"
    package = "databricks-sql-connector"
    connect_hint = "check `server_hostname`, `http_path` and `token`"

    def _where(self) -> str:
        return f"{self.config.server_hostname}{self.config.http_path}"

    def _open(self, module: ModuleType) -> Any:
        cfg = self.config
        options = {
            **cfg.driver_options("server_hostname", "http_path", "catalog", "schema"),
            "access_token": cfg.token,
            "_socket_timeout": cfg.connect_timeout,
        }
        return self._connect_with(module, options)

    def stream(self, sql: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Stream ``fetchmany_arrow`` tables of at most ``batch_size`` rows."""
        cur = self._execute(sql)
        first: list[pa.Table] = []

        def tables() -> Iterator[pa.Table]:
            while True:
                table = cur.fetchmany_arrow(batch_size)
                if not first:
                    first.append(table)  # kept for its schema when the result is empty
                if table.num_rows == 0:
                    return
                yield table

        def empty() -> pa.Schema:
            return first[0].schema

        return tables_reader(
            tables(), empty, batch_size, on_error=self._query_error, finish=cur.close
        )


__all__ = ["DatabricksSource", "DatabricksSourceConfig"]
