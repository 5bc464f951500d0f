"""Files (CSV, JSON Lines, Parquet), published atomically from a DuckDB sidecar.

``write`` makes each batch durable in a sidecar DuckDB file next to the output
(``<path>.backhaul.duckdb``) before it returns, because the engine counts a record as
delivered once ``write`` says so. ``close`` publishes the output from the sidecar (a temp
file in the same folder, then ``os.replace``); if a run dies before that, the next
``prepare`` publishes what it left.

Layouts: ``per_run`` writes one file per run with that run's records and an
``_operation`` column; ``current`` keeps the current state keyed by the match fields,
applying every operation, and rewrites the file from it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import ClassVar
from typing import Literal

import duckdb
import pyarrow as pa
from pydantic import Field

from backhaul.destinations.base import Batch
from backhaul.destinations.base import BatchResults
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.duckdb_table import DuckDBConfig
from backhaul.destinations.duckdb_table import DuckDBDestination
from backhaul.destinations.sql_common import ALL_OPERATIONS
from backhaul.destinations.sql_common import DUCKDB
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.errors import first_line
from backhaul.files import not_a_file

Format = Literal["csv", "jsonl", "parquet"]
Layout = Literal["per_run", "current"]
PENDING = "_bh_pending"  # one row while the sidecar holds changes not yet published
RECORDS = "records"  # per_run: this run's records in order
CURRENT = "current_state"  # current: the state, keyed by the match fields
q = DUCKDB.quote


class FileConfig(DestinationConfig):
    """A CSV, JSON Lines or Parquet file written on the local disk."""

    type: Literal["file"]
    format: Format = Field(description="csv, jsonl or parquet.")
    path: str = Field(
        description="Output file, relative to the project folder; may hold `{sync}` and `{run_id}`."
    )
    layout: Layout = Field(
        "per_run",
        description="per_run: one file per run with an `_operation` column; current: one "
        "file holding the current state keyed by the match fields.",
    )


class _StateTable(DuckDBDestination):
    """The ``current`` table in the sidecar; marks it unpublished in each write."""

    def __init__(self, config: DuckDBConfig, context: DestinationContext, mark: str) -> None:
        super().__init__(config, context)
        self._mark = mark

    def _in_transaction(self, cur: Any, batch: Batch) -> None:
        cur.execute(self._mark)


class FileDestination:
    """Writes a sync's records to a file, durably and atomically."""

    config_model: ClassVar[type[DestinationConfig]] = FileConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations=ALL_OPERATIONS,
        any_temporal=True,
        max_batch_size=100_000,
        default_batch_size=10_000,
        default_concurrency=1,
    )

    def __init__(self, config: FileConfig, context: DestinationContext) -> None:
        self.config = config
        self.context = context
        self.output = self._resolve(config.path.replace("{run_id}", context.run_id))
        # The sidecar must not depend on the run, so a later run finds what a dead one left.
        self.sidecar = Path(
            str(self._resolve(config.path.replace("{run_id}", "pending"))) + ".backhaul.duckdb"
        )
        self._con: duckdb.DuckDBPyConnection | None = None
        self._state: _StateTable | None = None
        self._seq = 0
        self._lock = asyncio.Lock()

    def _resolve(self, template: str) -> Path:
        path = Path(template.replace("{sync}", self.context.sync_name or "sync"))
        return path if path.is_absolute() else self.context.project_dir / path

    # -- sidecar ---------------------------------------------------------------------------
    def _open(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            try:
                self.sidecar.parent.mkdir(parents=True, exist_ok=True)
                self._con = duckdb.connect(str(self.sidecar))
                self._con.execute(
                    f"CREATE TABLE IF NOT EXISTS {PENDING} "
                    "(output VARCHAR, format VARCHAR, layout VARCHAR)"
                )
            except (OSError, duckdb.Error) as exc:
                raise DestinationError(
                    f"cannot open {self.sidecar}: {first_line(exc)}; check `path` in the "
                    "destination file and that no other run uses it",
                    failure=FailureType.TRANSIENT,
                ) from None
        return self._con

    def _mark_sql(self) -> str:
        values = ", ".join(
            "'" + v.replace("'", "''") + "'"
            for v in (str(self.output), self.config.format, self.config.layout)
        )
        return f"INSERT INTO {PENDING} SELECT {values} WHERE NOT EXISTS (SELECT 1 FROM {PENDING})"

    def _exists(self, con: duckdb.DuckDBPyConnection, table: str) -> bool:
        found = con.execute(
            "SELECT 1 FROM duckdb_tables() WHERE table_name = ? AND database_name = "
            "current_database()",
            [table],
        ).fetchall()
        return bool(found)

    # -- protocol --------------------------------------------------------------------------
    async def check(self) -> None:
        """Check that the output folder can be created and written."""
        await asyncio.to_thread(self._check)

    def _check(self) -> None:
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            probe = self.output.parent / f".backhaul-check-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise DestinationError(
                f"cannot write to {self.output.parent}: {exc.strerror}; check `path` in the "
                "destination file",
                failure=FailureType.CONFIG,
            ) from None
        # The file is read back and the sidecar opened: a named pipe at either would be
        # waited on forever, a folder never becomes a file.
        for path in (self.output, self.sidecar):
            reason = not_a_file(path)
            if reason is not None:
                raise DestinationError(
                    f"cannot write {path}: the path {reason}; move it away or check `path` "
                    "in the destination file",
                    failure=FailureType.CONFIG,
                )

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Publish what an interrupted run left, then set up this run's sidecar tables."""
        await asyncio.to_thread(self._check)
        await asyncio.to_thread(self._recover)
        await asyncio.to_thread(self._setup, dict(fields), list(match_fields))
        if self.config.layout == "current":
            state = _StateTable(
                DuckDBConfig(type="duckdb", path=str(self.sidecar), table=CURRENT),
                self.context,
                self._mark_sql(),
            )
            await state.prepare(fields, match_fields, None)
            self._state = state

    def _recover(self) -> None:
        if not self.sidecar.exists():
            return
        con = self._open()
        if con.execute(f"SELECT count(*) FROM {PENDING}").fetchall() != [(0,)]:
            self._publish(con)

    def _setup(self, fields: dict[str, pa.DataType], match: list[str]) -> None:
        con = self._open()
        empty = pa.schema([pa.field(name, dtype) for name, dtype in fields.items()]).empty_table()
        con.register("_bh_fields", empty)
        types = {
            name: str(t)
            for name, t in zip(
                empty.column_names, con.sql("SELECT * FROM _bh_fields").types, strict=True
            )
        }
        con.unregister("_bh_fields")
        if self.config.layout == "per_run":
            cols = ", ".join(f"{q(n)} {t}" for n, t in types.items())
            con.execute(f"DROP TABLE IF EXISTS {RECORDS}")
            con.execute(f"CREATE TABLE {RECORDS} (_seq BIGINT, _operation VARCHAR, {cols})")
            self._seq = 0
            return
        if not match:
            raise DestinationError(
                "a file with `layout: current` needs match fields; set `match` in the sync file",
                failure=FailureType.CONFIG,
            )
        if not self._exists(con, CURRENT):
            cols = ", ".join(f"{q(n)} {t}" for n, t in types.items())
            pk = ", ".join(q(m) for m in match)
            con.begin()
            con.execute(f"CREATE TABLE {CURRENT} ({cols}, PRIMARY KEY ({pk}))")
            if self.output.exists():
                self._seed(con, types)
            con.commit()
            return
        keys = con.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = ? "
            "AND constraint_type = 'PRIMARY KEY' AND database_name = current_database()",
            [CURRENT],
        ).fetchall()
        if not keys or sorted(keys[0][0]) != sorted(match):
            was = ", ".join(keys[0][0]) if keys else "none"
            raise DestinationError(
                f"the state of {self.output} is keyed by ({was}) but the sync matches on "
                f"({', '.join(match)}); delete {self.sidecar} and {self.output} to rebuild it",
                failure=FailureType.CONFIG,
            )
        have = {r[0] for r in con.execute(f"DESCRIBE {CURRENT}").fetchall()}
        for name, t in types.items():
            if name not in have:  # a mapping added since the last run
                con.execute(f"ALTER TABLE {CURRENT} ADD COLUMN {q(name)} {t}")

    def _seed(self, con: duckdb.DuckDBPyConnection, types: dict[str, str]) -> None:
        """Rebuild a lost state from the published file, so the next publish keeps its rows."""
        path = "'" + str(self.output).replace("'", "''") + "'"
        reader = {
            "csv": f"read_csv({path}, header = true, all_varchar = true)",
            "jsonl": f"read_json({path}, format = 'newline_delimited')",
            "parquet": f"read_parquet({path})",
        }[self.config.format]
        try:
            have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()}
            exprs = []
            for name, t in types.items():
                parts = name.split(".")
                if self.config.format == "jsonl" and name not in have and parts[0] in have:
                    expr = ".".join(q(p) for p in parts)  # a nested object in the file
                elif name in have:
                    expr = q(name)
                else:
                    expr = "NULL"
                if self.config.format == "csv" and _nested(t) and expr != "NULL":
                    expr = f"CAST({expr} AS JSON)"  # written as JSON text
                exprs.append(f"CAST({expr} AS {t})")
            con.execute(f"INSERT INTO {CURRENT} SELECT {', '.join(exprs)} FROM {reader}")
        except duckdb.Error as exc:
            con.rollback()
            raise DestinationError(
                f"the state kept in {self.sidecar} is missing and {self.output} cannot be read "
                f"back ({first_line(exc)}); move the file away to start a new state",
                failure=FailureType.CONFIG,
            ) from None

    async def write(self, batch: Batch) -> BatchResults:
        """Make the batch durable in the sidecar; the file is published by ``close``."""
        if self._con is None:
            schema = batch.table.schema
            await self.prepare(
                {n: schema.field(n).type for n in batch.fields}, batch.match_fields, batch.object
            )
        async with self._lock:
            if self._state is not None:
                return await self._state.write(batch)
            return await asyncio.to_thread(self._append, batch)

    def _append(self, batch: Batch) -> BatchResults:
        con = self._open()
        n = len(batch)
        table = batch.table.add_column(
            0, "_seq", pa.array(range(self._seq, self._seq + n), type=pa.int64())
        ).add_column(1, "_operation", pa.repeat(pa.scalar(batch.operation.value), n))
        try:
            con.begin()
            con.register("_bh_batch", table)
            con.execute(f"INSERT INTO {RECORDS} BY NAME SELECT * FROM _bh_batch")
            con.execute(self._mark_sql())
            con.commit()
        except duckdb.Error as exc:
            con.rollback()
            raise DestinationError(
                f"cannot record the batch in {self.sidecar}: {first_line(exc)}",
                failure=FailureType.TRANSIENT,
            ) from None
        finally:
            con.unregister("_bh_batch")
        self._seq += n
        return BatchResults(n)

    async def close(self) -> None:
        """Publish the output file from the sidecar and release it."""
        try:
            if self._con is not None:
                await asyncio.to_thread(self._publish_if_pending)
        finally:
            if self._state is not None:
                await self._state.close()
                self._state = None
            if self._con is not None:
                self._con.close()
                self._con = None

    def _publish_if_pending(self) -> None:
        con = self._open()
        pending = con.execute(f"SELECT count(*) FROM {PENDING}").fetchall() != [(0,)]
        if pending or (self.config.layout == "current" and not self.output.exists()):
            self._publish(con)
        if self.config.layout == "per_run":
            # Nothing is left to recover; drop the sidecar so folders stay clean.
            con.close()
            self._con = None
            for leftover in (self.sidecar, Path(f"{self.sidecar}.wal")):
                leftover.unlink(missing_ok=True)

    # -- publishing ------------------------------------------------------------------------
    def _publish(self, con: duckdb.DuckDBPyConnection) -> None:
        found = con.execute(f"SELECT output, format, layout FROM {PENDING}").fetchall()
        row = found[0] if found else None
        output, fmt, layout = (
            (Path(row[0]), row[1], row[2])
            if row
            else (self.output, self.config.format, self.config.layout)
        )
        if layout == "per_run":
            source, order = RECORDS, "_seq"
        else:
            source = CURRENT
            keys = con.execute(
                "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = ? "
                "AND constraint_type = 'PRIMARY KEY' AND database_name = current_database()",
                [CURRENT],
            ).fetchall()
            order = ", ".join(q(k) for k in keys[0][0]) if keys else "1"
        rel = con.sql(f"SELECT * FROM {source}")
        columns = [
            (name, str(t)) for name, t in zip(rel.columns, rel.types, strict=True) if name != "_seq"
        ]
        query = f"SELECT {select_list(columns, fmt)} FROM {source} ORDER BY {order}"
        write_atomically(con, query, output, fmt)
        con.begin()
        con.execute(f"DELETE FROM {PENDING}")
        if layout == "per_run":
            con.execute(f"DELETE FROM {RECORDS}")
        con.commit()


def select_list(columns: Sequence[tuple[str, str]], fmt: str) -> str:
    """The export projection: JSON text for nested values in CSV, objects for dotted JSONL."""
    if fmt == "csv":
        return ", ".join(
            f"to_json({q(n)})::VARCHAR AS {q(n)}" if _nested(t) else q(n) for n, t in columns
        )
    if fmt != "jsonl":
        return ", ".join(q(n) for n, _ in columns)
    tree: dict[str, Any] = {}
    for name, _ in columns:
        node, parts = tree, name.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a leaf already holds this name: stay flat
                node = tree
                parts = [name]
                break
            node = child
        if parts[-1] in node:
            tree[name] = name  # a clash between a leaf and an object: keep it flat
        else:
            node[parts[-1]] = name
    return ", ".join(f"{_expr(value)} AS {q(key)}" for key, value in tree.items())


def _expr(node: Any) -> str:
    if isinstance(node, str):
        return q(node)
    inner = ", ".join(f"{q(k)} := {_expr(v)}" for k, v in node.items())
    return f"struct_pack({inner})"


def _nested(type_name: str) -> bool:
    return type_name.endswith("]") or type_name.startswith(("STRUCT", "MAP", "UNION"))


def write_atomically(con: duckdb.DuckDBPyConnection, query: str, output: Path, fmt: str) -> None:
    """Export ``query`` to a temp file beside ``output``, flush it, then rename over it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.parent / f".{output.name}.{uuid.uuid4().hex}.tmp"
    options = {
        "csv": "FORMAT csv, HEADER true",
        "jsonl": "FORMAT json",
        "parquet": "FORMAT parquet",
    }[fmt]
    target = str(temp).replace("'", "''")
    try:
        con.execute(f"COPY ({query}) TO '{target}' ({options})")
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, output)
    except (OSError, duckdb.Error) as exc:
        temp.unlink(missing_ok=True)
        raise DestinationError(
            f"cannot write {output}: {first_line(exc)}; it will be published by the next run",
            failure=FailureType.TRANSIENT,
        ) from None
    # The rename is durable only once the folder entry is flushed.
    dir_fd = os.open(output.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
