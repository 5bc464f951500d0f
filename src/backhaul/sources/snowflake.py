"""Snowflake warehouse: rows arrive as Arrow through the connector's ``fetch_arrow_batches``.

The driver (``snowflake-connector-python``) is imported on first use; install it with
``pip install snowflake-connector-python`` (the ``snowflake`` extra).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any
from typing import Literal

import pyarrow as pa
from pydantic import Field

from backhaul.sources.common import DbApiSource
from backhaul.sources.common import SourceConfig
from backhaul.sources.common import tables_reader


class SnowflakeSourceConfig(SourceConfig):
    """A Snowflake account, warehouse and database."""

    type: Literal["snowflake"]
    account: str = Field(description="Account identifier, e.g. `myorg-myaccount`.")
    user: str
    password: str | None = Field(None, description="Password; or use `private_key_path`.")
    private_key_path: str | None = Field(None, description="PEM key file for key-pair auth.")
    warehouse: str | None = None
    database: str | None = None
    schema_: str | None = Field(None, alias="schema")
    role: str | None = None


class SnowflakeSource(DbApiSource[SnowflakeSourceConfig]):
    """Runs model SQL in Snowflake and streams the result as Arrow batches."""

    driver = "snowflake.connector"
    package = "snowflake-connector-python"
    connect_hint = "check `account`, `user` and `password` (or `private_key_path`)"

    def _where(self) -> str:
        return f"{self.config.account}/{self.config.database or ''}"

    def _open(self, module: ModuleType) -> Any:
        cfg = self.config
        options = {
            **cfg.driver_options(
                "account", "user", "password", "warehouse", "database", "schema", "role"
            ),
            "private_key_file": cfg.private_key_path,
            "login_timeout": cfg.connect_timeout,
            "client_session_keep_alive": False,
        }
        return self._connect_with(module, options)

    def stream(self, sql: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Stream the result's Arrow chunks as Snowflake hands them out."""
        cur = self._execute(sql)

        def empty() -> pa.Schema:
            table = cur.fetch_arrow_all(force_return_table=True)
            return table.schema

        return tables_reader(
            iter(cur.fetch_arrow_batches()),
            empty,
            batch_size,
            on_error=self._query_error,
            finish=cur.close,
        )


__all__ = ["SnowflakeSource", "SnowflakeSourceConfig"]
