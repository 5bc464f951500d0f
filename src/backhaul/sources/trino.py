"""Trino (and Presto-compatible) warehouse: DB-API ``fetchmany`` batches turned into Arrow.

The driver (``trino``) is imported on first use; install it with ``pip install trino`` (the
``trino`` extra). Trino pages results over HTTP, so memory stays bounded by the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any
from typing import Literal

import pyarrow as pa
from pydantic import Field

from backhaul.sources.common import DbApiSource
from backhaul.sources.common import HostSourceConfig


class TrinoSourceConfig(HostSourceConfig):
    """A Trino coordinator, catalog and schema."""

    type: Literal["trino"]
    port: int = 8080
    password: str | None = Field(None, description="Basic auth (needs `http_scheme: https`).")
    catalog: str | None = None
    schema_: str | None = Field(None, alias="schema")
    http_scheme: Literal["http", "https"] = "http"


# Trino type names (the start of the description's type) with a fixed Arrow type.
_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double": pa.float64(),
    "date": pa.date32(),
    "varchar": pa.string(),
    "char": pa.string(),
    "json": pa.string(),
    "varbinary": pa.binary(),
}


class TrinoSource(DbApiSource[TrinoSourceConfig]):
    """Runs model SQL in Trino and streams the rows as Arrow batches."""

    driver = "trino.dbapi"
    package = "trino"
    connect_hint = "check `host`, `port`, `user` and `password`, and that Trino is running"

    def _where(self) -> str:
        cfg = self.config
        return f"{cfg.host}:{cfg.port}/{cfg.catalog or ''}"

    def _open(self, module: ModuleType) -> Any:
        cfg = self.config
        auth = None
        if cfg.password is not None:
            auth = self_auth(cfg.user, cfg.password)
        return module.connect(
            **cfg.driver_options("host", "port", "user", "catalog", "schema", "http_scheme"),
            auth=auth,
            request_timeout=cfg.connect_timeout,
        )

    def _arrow_type(self, desc: Sequence[Any]) -> pa.DataType | None:
        name = str(desc[1]).split("(")[0].lower()
        if name.startswith("timestamp"):
            return pa.timestamp("us", tz="UTC") if "with time zone" in str(desc[1]) else None
        return _TYPES.get(name)


def self_auth(user: str, password: str) -> Any:
    """Trino basic authentication (imported from the driver on use)."""
    from backhaul.sources.common import import_driver

    auth = import_driver("trino.auth", "trino", "trino", "trino")
    return auth.BasicAuthentication(user, password)


__all__ = ["TrinoSource", "TrinoSourceConfig"]
