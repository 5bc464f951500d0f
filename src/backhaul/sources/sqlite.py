"""SQLite warehouse: a database file opened read-only, rows fetched in batches.

SQLite columns have no fixed type, so Arrow types are taken from the values of the first
batch; a later value of another type is reported as an error naming the fix (a cast).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import ClassVar
from typing import Literal

import pyarrow as pa
from pydantic import Field

from backhaul.errors import SourceError
from backhaul.files import MISSING
from backhaul.files import problem
from backhaul.sources.common import SourceConfig
from backhaul.sources.common import StreamedSource
from backhaul.sources.common import dbapi_reader
from backhaul.sources.common import limit_zero
from backhaul.sources.common import one_line
from backhaul.sources.common import strip_sql


class SQLiteSourceConfig(SourceConfig):
    """A SQLite database file, relative to the project folder."""

    type: Literal["sqlite"]
    path: str = Field(description="Database file, relative to the project.")


class SQLiteSource(StreamedSource):
    """Runs model SQL in SQLite and streams the rows as Arrow batches.

    Never attached: DuckDB's sqlite extension is not assumed.
    """

    config_model: ClassVar[type[SQLiteSourceConfig]] = SQLiteSourceConfig
    kind = "sqlite"

    def __init__(self, config: SQLiteSourceConfig, project_dir: Path) -> None:
        self.config = config
        path = Path(config.path)
        self.path = path if path.is_absolute() else project_dir / path
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            reason = problem(self.path)
            if reason == MISSING:
                reason += "; check `path` in the source file"
            if reason is not None:
                raise SourceError(f"SQLite file {self.path} {reason}", key="path")
            try:
                # Read-only: a model must never change the warehouse.
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(
                    uri, uri=True, timeout=self.config.connect_timeout, check_same_thread=False
                )
            except sqlite3.Error as exc:
                raise SourceError(
                    f"cannot open SQLite source {self.path}: {one_line(str(exc))}"
                ) from None
        return self._conn

    def columns(self, sql: str) -> dict[str, str]:
        """Column names of ``sql`` (SQLite reports no types for a query: all ``ANY``)."""
        try:
            cur = self._connect().execute(limit_zero(sql, "sqlite"))
        except sqlite3.Error as exc:
            raise SourceError(one_line(str(exc))) from None
        return {d[0]: "ANY" for d in cur.description or []}

    def stream(self, sql: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Stream the rows of ``sql``; SQLite steps the statement as rows are fetched."""
        conn = self._connect()
        try:
            cur = conn.execute(strip_sql(sql))
        except sqlite3.Error as exc:
            raise SourceError(one_line(str(exc))) from None
        names = [d[0] for d in cur.description or []]
        return dbapi_reader(
            cur.fetchmany,
            names,
            [None] * len(names),
            batch_size,
            on_error=lambda exc: SourceError(one_line(str(exc))),
            finish=cur.close,
        )

    def check(self) -> None:
        """Open the file and run a trivial query."""
        try:
            self._connect().execute("SELECT 1").fetchall()
        except sqlite3.Error as exc:
            raise SourceError(
                f"cannot read SQLite source {self.path}: {one_line(str(exc))}"
            ) from None

    def server_version(self) -> str:
        """The SQLite library version."""
        return f"SQLite {sqlite3.sqlite_version}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


__all__ = ["SQLiteSource", "SQLiteSourceConfig"]
