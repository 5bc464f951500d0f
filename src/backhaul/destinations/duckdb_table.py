"""DuckDB tables: the batch is registered as an Arrow view and applied with set SQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import ClassVar
from typing import Literal

import duckdb
import pyarrow as pa

from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import NewLoad
from backhaul.destinations.sql_common import ALL_OPERATIONS
from backhaul.destinations.sql_common import DUCKDB
from backhaul.destinations.sql_common import STAGE
from backhaul.destinations.sql_common import FileDatabaseConfig
from backhaul.destinations.sql_common import FileDatabaseDestination
from backhaul.destinations.sql_common import Statements
from backhaul.destinations.sql_common import TableInfo
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.errors import first_line

# The name this file is attached under in the engine's DuckDB for a first load.
LOAD_ALIAS = "backhaul_load"


class DuckDBConfig(FileDatabaseConfig):
    """A table in a DuckDB database file."""

    type: Literal["duckdb"]


class DuckDBDestination(FileDatabaseDestination):
    """Upserts, updates, inserts, clears and deletes rows of one DuckDB table."""

    config_model: ClassVar[type[DestinationConfig]] = DuckDBConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        non_finite_floats=True,
        any_temporal=True,
        operations=ALL_OPERATIONS,
        max_batch_size=100_000,
        # Each commit maintains a keyed table's index, and each merge joins its batch with
        # the whole table: 1M rows merged in 10 batches of 100,000 take about half the time
        # of 100 batches of 10,000 (0.17 s against 0.36 s, docs/benchmarks.md).
        default_batch_size=100_000,
        default_concurrency=1,
    )
    dialect = DUCKDB
    config: DuckDBConfig

    def _connect(self) -> Any:
        self._check_path()
        try:
            return duckdb.connect(str(self.path))
        except duckdb.ResourceInUseException:
            # This process has the file open already: as the warehouse this sync reads
            # (attached read-only to plan), which will not let go during the run.
            raise DestinationError(
                f"cannot open duckdb database {self.path}: this run already has it open, "
                "as the warehouse its model reads from; write to another DuckDB file",
                failure=FailureType.CONFIG,
            ) from None
        except duckdb.Error as exc:
            # Another process holding the file is the usual cause; it may let go soon.
            raise DestinationError(
                f"cannot open duckdb database {self.path}: {first_line(exc)}",
                failure=FailureType.TRANSIENT,
            ) from None

    def _cursor(self, conn: Any) -> Any:
        # A DuckDB cursor is a second connection; statements must share the transaction.
        return conn

    def _begin(self, conn: Any) -> None:
        conn.begin()

    def _describe(self, conn: Any, table: str) -> TableInfo | None:
        found = conn.execute(
            "SELECT column_name, data_type, NOT is_nullable AND column_default IS NULL "
            "FROM duckdb_columns() WHERE table_name = ? "
            "AND schema_name = current_schema() AND database_name = current_database() "
            "ORDER BY column_index",
            [table],
        ).fetchall()
        if not found:
            return None
        keys = conn.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = ? "
            "AND schema_name = current_schema() AND database_name = current_database() "
            "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
            [table],
        ).fetchall()
        return TableInfo.from_rows(found, [list(r[0]) for r in keys])

    async def load_new(self, rows: pa.RecordBatchReader, load: NewLoad) -> bool:
        """Insert a whole first load with one ``INSERT ... SELECT`` from the Arrow stream
        (see :class:`~backhaul.destinations.base.LoadsAtOnce`); only into a table that
        held no row when the run began."""
        if not self._new_table:
            return False
        insert = self._inserter(self._target, load, rows)
        loaded: bool = await self._run(self._insert_into_empty, insert)
        return loaded

    def load_new_in(
        self, con: duckdb.DuckDBPyConnection, select: str, load: NewLoad
    ) -> bool | None:
        """The first load of :meth:`load_new`, run on the engine's DuckDB connection with
        this file attached (see :class:`~backhaul.destinations.base.LoadsInDuckDB`): the
        rows go from the model to the table inside one database, as a raw ``INSERT ...
        SELECT`` does. None when ``con`` cannot attach the file (it has it open already,
        say as the warehouse itself)."""
        if not self._new_table:
            return False
        self._check_path()
        self._close_all()  # one DuckDB instance may hold a file at a time
        path = str(self.path).replace("'", "''")
        try:
            con.execute(f"ATTACH '{path}' AS {LOAD_ALIAS}")
        except duckdb.Error:
            return None
        try:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {STAGE} AS {select}")
            try:
                insert = self._inserter(f"{LOAD_ALIAS}.{self._target}", load, None)
                return bool(self._insert_into_empty(con, insert))
            finally:
                con.execute(f"DROP VIEW IF EXISTS {STAGE}")
        finally:
            con.execute(f"DETACH {LOAD_ALIAS}")

    def _inserter(
        self,
        target: str,
        load: NewLoad,
        rows: pa.RecordBatchReader | None,
    ) -> Callable[[Any, Any], None]:
        """A first load's statements as ``insert(conn, cur)``: from ``rows``, or (None) from
        the stage view the caller made.

        A table without a key cannot refuse two rows that share match values, which
        batches would have merged into one row; unless the engine vouches that no two
        rows can (``load.match_unique``), the load looks for such a pair before it commits and
        raises, undoing itself, when it finds one.
        """
        plan = Statements(self.dialect, target, load.fields, load.match_fields)
        check = not self._keyed and not load.match_unique
        cols = ", ".join(self.dialect.quote(m) for m in load.match_fields)
        repeated = f"SELECT 1 FROM {target} GROUP BY {cols} HAVING count(*) > 1 LIMIT 1"

        def insert(conn: Any, cur: Any) -> None:
            if rows is not None:
                conn.register(STAGE, rows)  # scanned as it streams: never held whole
            cur.execute(plan.insert_new())
            if rows is not None:
                conn.unregister(STAGE)
            if check and cur.execute(repeated).fetchone() is not None:
                raise duckdb.ConstraintException(
                    f"two rows share the match values ({cols}); merging them in batches"
                )

        return insert

    def _load_stage(self, conn: Any, cur: Any, table: pa.Table) -> None:
        conn.register(STAGE, table)

    def _drop_stage(self, conn: Any, cur: Any) -> None:
        conn.unregister(STAGE)

    def _data_error(self, exc: BaseException) -> str | None:
        if isinstance(exc, duckdb.IntegrityError | duckdb.DataError):
            return first_line(exc)
        # Two records with one key in a batch: bisection applies them one after the other.
        if isinstance(exc, duckdb.InvalidInputException) and "twice" in str(exc):
            return first_line(exc)
        return None

    def _failure(self, exc: BaseException) -> DestinationError:
        text = first_line(exc)
        if isinstance(exc, duckdb.TransactionException | duckdb.IOException):
            return DestinationError(
                f"duckdb database {self.path} failed: {text}; the batch will be retried",
                failure=FailureType.TRANSIENT,
            )
        return self._refused(exc, text)
