"""SQLite tables through the standard library driver."""

from __future__ import annotations

import sqlite3
from typing import Any
from typing import ClassVar
from typing import Literal

import pyarrow as pa
from pydantic import Field

from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.sql_common import ALL_OPERATIONS
from backhaul.destinations.sql_common import SQLITE
from backhaul.destinations.sql_common import STAGE
from backhaul.destinations.sql_common import FileDatabaseConfig
from backhaul.destinations.sql_common import FileDatabaseDestination
from backhaul.destinations.sql_common import TableInfo
from backhaul.destinations.sql_common import python_rows
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.errors import first_line


class SQLiteConfig(FileDatabaseConfig):
    """A table in a SQLite database file."""

    type: Literal["sqlite"]
    timeout: float = Field(30, gt=0, description="Seconds to wait for another writer's lock.")


class SQLiteDestination(FileDatabaseDestination):
    """Upserts, updates, inserts, clears and deletes rows of one SQLite table."""

    config_model: ClassVar[type[DestinationConfig]] = SQLiteConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations=ALL_OPERATIONS,
        max_batch_size=50_000,
        default_batch_size=5_000,
        default_concurrency=1,
    )
    dialect = SQLITE
    config: SQLiteConfig

    def _connect(self) -> Any:
        self._check_path()
        try:
            # Transactions are explicit (BEGIN in _begin); worker threads take turns.
            return sqlite3.connect(
                self.path,
                timeout=self.config.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise DestinationError(
                f"cannot open sqlite database {self.path}: {first_line(exc)}; "
                "check `path` in the destination file",
                failure=FailureType.CONFIG,
            ) from None

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _describe(self, conn: Any, table: str) -> TableInfo | None:
        q = self.dialect.quote(table)
        info = conn.execute(f"PRAGMA table_info({q})").fetchall()
        if not info:
            return None
        columns = [r[1] for r in info]
        types = {r[1]: (str(r[2]), bool(r[3]) and r[4] is None) for r in info}
        pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5] > 0]
        keys = [pk] if pk else []
        for _seq, name, unique, _origin, partial in conn.execute(f"PRAGMA index_list({q})"):
            if unique and not partial:
                cols = [
                    r[2] for r in conn.execute(f"PRAGMA index_info({self.dialect.quote(name)})")
                ]
                if None not in cols:  # expression indexes cannot serve ON CONFLICT
                    keys.append(cols)
        return TableInfo(columns, keys, types)

    def _load_stage(self, conn: Any, cur: Any, table: pa.Table) -> None:
        q = self.dialect.quote
        cols = ", ".join(q(f) for f in table.column_names)
        cur.execute(f"DROP TABLE IF EXISTS temp.{STAGE}")
        # Untyped stage columns keep values as given; the target's affinity converts them.
        cur.execute(f"CREATE TEMP TABLE {STAGE} ({cols})")
        marks = ", ".join("?" * table.num_columns)
        cur.executemany(f"INSERT INTO {STAGE} VALUES ({marks})", python_rows(table, plain=True))

    def _drop_stage(self, conn: Any, cur: Any) -> None:
        cur.execute(f"DROP TABLE temp.{STAGE}")

    def _data_error(self, exc: BaseException) -> str | None:
        if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
            return first_line(exc)
        return None

    def _failure(self, exc: BaseException) -> DestinationError:
        text = first_line(exc)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            return DestinationError(
                f"sqlite database {self.path} is locked by another writer; "
                "the batch will be retried",
                failure=FailureType.TRANSIENT,
            )
        return self._refused(exc, text)
