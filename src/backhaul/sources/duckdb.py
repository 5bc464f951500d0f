"""The embedded default warehouse: DuckDB, from a file or in memory."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import duckdb
import pyarrow as pa

from backhaul.config.models import DuckDBSourceConfig
from backhaul.duck import arrow_reader
from backhaul.errors import SourceError
from backhaul.files import MISSING
from backhaul.files import problem
from backhaul.sources.common import strip_sql


class DuckDBSource:
    """Runs model SQL in DuckDB and streams the result as Arrow batches."""

    config_model: ClassVar[type[DuckDBSourceConfig]] = DuckDBSourceConfig

    def __init__(self, config: DuckDBSourceConfig, project_dir: Path) -> None:
        self.config = config
        self.path: Path | None = None
        if config.path != ":memory:":
            path = Path(config.path)
            self.path = path if path.is_absolute() else project_dir / path
        self._con: duckdb.DuckDBPyConnection | None = None

    def _check_path(self) -> None:
        """Refuse a warehouse path that is missing or not a file (a pipe would block)."""
        if self.path is None:
            return
        reason = problem(self.path)
        if reason == MISSING:
            reason += "; fix `path` or create the warehouse there"
        if reason is not None:
            raise SourceError(f"DuckDB file {self.path} {reason}", key="path")

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._check_path()
            try:
                if self.path is None:
                    self._con = duckdb.connect(":memory:")
                else:
                    self._con = duckdb.connect(str(self.path), read_only=self.config.read_only)
                if self.config.setup_sql:
                    self._con.execute(self.config.setup_sql)
            except duckdb.Error as exc:
                raise SourceError(f"cannot open DuckDB source: {exc}") from None
        return self._con

    def columns(self, sql: str) -> dict[str, str]:
        con = self._connect()
        try:
            # Nested as a run reads it (engine/workspace.py), so what passes here runs
            # there; the model's first line stays line 1 of the warehouse's messages.
            rel = con.sql(f"SELECT * FROM ({strip_sql(sql)}\n) AS backhaul_q")
        except duckdb.Error as exc:
            raise SourceError(_message(exc)) from None
        return {name: str(type_) for name, type_ in zip(rel.columns, rel.types, strict=True)}

    def stream(self, sql: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        con = self._connect()
        try:
            return arrow_reader(con, sql, batch_size)
        except duckdb.Error as exc:
            raise SourceError(_message(exc)) from None

    def attach(self, con: duckdb.DuckDBPyConnection, alias: str) -> bool:
        if self.path is None or self.config.setup_sql:
            return False
        self._check_path()
        self.close()  # a file is opened by one process configuration at a time
        path = str(self.path).replace("'", "''")
        try:
            con.execute(f"ATTACH '{path}' AS {alias} (READ_ONLY)")
        except duckdb.Error as exc:
            raise SourceError(f"cannot attach DuckDB source: {_message(exc)}") from None
        return True

    def check(self) -> None:
        self._connect().execute("SELECT 1").fetchall()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _message(exc: BaseException) -> str:
    """DuckDB's whole message: for a model's SQL its context lines say where it failed."""
    return str(exc).strip()
