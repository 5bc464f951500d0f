"""Amazon Redshift warehouse: a server-side cursor (``DECLARE`` / ``FETCH FORWARD``).

The driver (``redshift-connector``) is imported on first use; install it with ``pip install
redshift-connector`` (the ``redshift`` extra). Redshift buffers a plain query's whole result
in the client, so rows are fetched through a declared cursor, one batch at a time.
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
from backhaul.sources.common import dbapi_reader
from backhaul.sources.common import strip_sql


class RedshiftSourceConfig(HostSourceConfig):
    """A Redshift cluster or serverless workgroup."""

    type: Literal["redshift"]
    host: str = Field(description="e.g. `my-cluster.abc123.eu-west-1.redshift.amazonaws.com`.")
    port: int = 5439
    password: str
    database: str = "dev"


# Postgres type OIDs that Redshift reports, with a fixed Arrow type.
_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    25: pa.string(),
    1043: pa.string(),
    1042: pa.string(),
}


class RedshiftSource(DbApiSource[RedshiftSourceConfig]):
    """Runs model SQL in Redshift and streams the rows as Arrow batches."""

    driver = "redshift_connector"
    package = "redshift-connector"
    connect_hint = "check `host`, `port`, `user` and `password`, and the cluster's network access"

    def _where(self) -> str:
        cfg = self.config
        return f"{cfg.host}:{cfg.port}/{cfg.database}"

    def _open(self, module: ModuleType) -> Any:
        cfg = self.config
        return module.connect(
            **cfg.driver_options("host", "port", "user", "password", "database"),
            timeout=int(cfg.connect_timeout),
        )

    def _arrow_type(self, desc: Sequence[Any]) -> pa.DataType | None:
        return _TYPES.get(int(desc[1])) if isinstance(desc[1], int) else None

    def stream(self, sql: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Declare a cursor for ``sql`` and fetch it ``batch_size`` rows at a time."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(declare_sql(sql))
            cur.execute(f"FETCH FORWARD {int(batch_size)} FROM backhaul_cursor")
        except Exception as exc:
            conn.rollback()
            raise self._query_error(exc) from None
        desc = cur.description or []
        pending = [cur.fetchall()]

        def fetch(n: int) -> Sequence[Sequence[Any]]:
            if pending:
                return list(pending.pop())
            cur.execute(f"FETCH FORWARD {int(n)} FROM backhaul_cursor")
            return list(cur.fetchall())

        def finish() -> None:
            cur.close()
            conn.rollback()  # ends the read transaction and so the cursor

        return dbapi_reader(
            fetch,
            [str(d[0]) for d in desc],
            [self._arrow_type(d) for d in desc],
            batch_size,
            on_error=self._query_error,
            finish=finish,
        )


def declare_sql(sql: str) -> str:
    """The statement that opens the server-side cursor for ``sql``."""
    return f"DECLARE backhaul_cursor NO SCROLL CURSOR FOR {strip_sql(sql)}"


__all__ = ["RedshiftSource", "RedshiftSourceConfig", "declare_sql"]
