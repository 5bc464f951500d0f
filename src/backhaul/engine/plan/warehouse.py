"""Planning inside the warehouse (``planner: warehouse``).

The snapshot, the checkpoint log and the rejected rows live in a schema Backhaul owns in
the source warehouse, and the diff runs there as SQL (:mod:`backhaul.engine.plan.warehouse_sql`).
Only the planned keys, the model rows of keys to send and the snapshot rows of removed and
changed keys leave the warehouse; they land in the workspace as ``work.plan``,
``work.extract`` and ``work.removed`` (the :class:`Relations` of its :class:`Diff`), and the
outbox is built locally from them as with the local planner.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import replace

import pyarrow as pa

from backhaul.config.models import Mode
from backhaul.duck import scalar
from backhaul.engine.failures import model_error
from backhaul.engine.mapping import quote
from backhaul.engine.plan import local
from backhaul.engine.plan.local import count_plan
from backhaul.engine.plan.values import Diff
from backhaul.engine.plan.values import Relations
from backhaul.engine.plan.warehouse_sql import FINGERPRINT_VERSION
from backhaul.engine.plan.warehouse_sql import FP_TYPE
from backhaul.engine.plan.warehouse_sql import IDENTITY_VERSION
from backhaul.engine.plan.warehouse_sql import PlannerSql
from backhaul.engine.plan.warehouse_sql import fingerprint_columns
from backhaul.engine.plan.warehouse_sql import mapping_spec
from backhaul.engine.plan.warehouse_sql import portable_type
from backhaul.engine.plan.warehouse_sql import table_prefix
from backhaul.engine.workspace import Workspace
from backhaul.engine.workspace import strip_sql
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import SourceFailure
from backhaul.errors import first_line
from backhaul.state.warehouse_conn import DuckDBConn
from backhaul.state.warehouse_conn import PostgresConn
from backhaul.state.warehouse_conn import WarehouseConn
from backhaul.state.warehouse_conn import failure_of

SUPPORTED = ("postgres", "duckdb")
# Where the planned keys' model rows and the snapshot rows they need land in the workspace.
EXTRACT = "work.extract"
REMOVED = "work.removed"


def supports(ws: Workspace) -> bool:
    """Whether the sync's source can plan in the warehouse."""
    kind = ws.source.config.type
    if kind == "duckdb":
        # An in-memory DuckDB or one built by setup SQL has no file to keep state in.
        return getattr(ws.source, "path", None) is not None and not ws.source.config.setup_sql
    return bool(kind == "postgres")


def grants(dialect: str, schema: str, user: str = "<backhaul_user>") -> str:
    """The statements an admin runs so Backhaul can keep its planner tables in ``schema``."""
    if dialect == "postgres":
        return (
            f"CREATE SCHEMA {schema} AUTHORIZATION {user};  -- or: "
            f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {user};"
        )
    return f"create the schema `{schema}` and let the user create and write tables in it"


def open_backend(ws: Workspace) -> WarehouseBackend:
    """Connect to the warehouse with the source's settings and return the backend."""
    kind = ws.source.config.type
    conn: WarehouseConn
    if kind == "postgres":
        from backhaul.state.warehouse_conn import postgres_params

        cfg = ws.source.config
        conn = PostgresConn(postgres_params(cfg), connect_timeout=cfg.connect_timeout)
    else:
        conn = DuckDBConn(ws.con, getattr(ws.source, "path", None), writable=not ws.read_only)
    return WarehouseBackend(ws, conn)


class WarehouseBackend:
    """A :class:`~backhaul.engine.plan.backend.PlanBackend` whose snapshot lives in the warehouse."""

    def __init__(self, ws: Workspace, conn: WarehouseConn) -> None:
        self.conn = conn
        self.schema = ws.config.planner_schema
        self.dialect = conn.dialect
        layout = ws.layout
        self.local_key_types = layout.key_types
        self.local_match_types = layout.match_types
        vars_by_field = {t.field: t.variables for t in ws.mapper.templates.values()}
        self.sql = PlannerSql(
            dialect=conn.dialect,
            schema=conn.qualify(self.schema),
            prefix=table_prefix(ws.sync.name),
            key_columns=tuple(ws.key_columns),
            key_types=tuple(portable_type(t, conn.dialect) for t in layout.key_types),
            match_types=tuple(portable_type(t, conn.dialect) for t in layout.match_types),
            fp_columns=tuple(fingerprint_columns(ws.mapper.mappings, vars_by_field)),
            spec=mapping_spec(ws.mapper.mappings, ws.config.non_finite),
            plan_name="preview" if ws.read_only else "plan",
            plan_in_schema=not conn.local,
        )
        self._finalizer = weakref.finalize(self, conn.close)
        self._has_plan = False

    # -- errors -----------------------------------------------------------------------
    def _denied(self, exc: BaseException, doing: str) -> ConfigError:
        return ConfigError(
            f"Backhaul cannot {doing} for `planner: warehouse` (schema `{self.schema}`) "
            f"({first_line(exc)}). An admin can run: {grants(self.dialect, self.schema)} "
            "See docs/warehouse-planning.md for every warehouse's GRANT statements; the "
            "planner state was left as it was.",
            key="planner_schema",
        )

    def _run(self, statements: list[str], doing: str) -> None:
        try:
            for stmt in statements:
                self.conn.execute(stmt)
        except Exception as exc:
            if _is_permission(exc):
                raise self._denied(exc, doing) from None
            raise

    # -- state tables -----------------------------------------------------------------
    def _meta(self) -> dict[str, str] | None:
        try:
            rows = self.conn.fetchall(self.sql.get_meta())
        except Exception as exc:
            if _is_missing(exc):
                return None
            if _is_permission(exc):
                raise self._denied(exc, "read its planner tables") from None
            raise
        return {str(k): str(v) for k, v in rows}

    def _ensure_tables(self) -> dict[str, str]:
        meta = self._meta()
        wanted = "|".join(self.local_key_types) + "/" + "|".join(self.local_match_types)
        if meta is None:
            try:
                self.conn.execute(self.sql.create_schema())
            except Exception as exc:
                # Some warehouses refuse even `IF NOT EXISTS` without the privilege to
                # create schemas: an admin may have created it, so try the tables first.
                if not _is_permission(exc):
                    raise
                try:
                    self._run(self.sql.create_tables(), "create its planner tables")
                except ConfigError:
                    raise self._denied(exc, "create the schema") from None
                except Exception as missing:
                    if not _is_missing(missing):
                        raise
                    raise self._denied(exc, "create the schema") from None
            self._run(self.sql.create_tables(), "create its planner tables")
            meta = {}
        stored = meta.get("layout")
        if stored is not None and stored != wanted:
            raise BackhaulError(
                f"the model's primary-key or match-field types changed (the warehouse "
                f"snapshot has {stored}, the model now gives {wanted}); the snapshot was left "
                f"as it is. Restore the types in the model, or drop the `{self.sql.prefix}_*` "
                f"tables in `{self.schema}` and run a full resync"
            )
        if stored is None:
            canary = str(self.conn.fetchall(self.sql.canary())[0][0])
            with self.conn.transaction():
                for name, value in (
                    ("layout", wanted),
                    ("fp_version", FINGERPRINT_VERSION),
                    ("fp_canary", canary),
                ):
                    self._run(self.sql.set_meta(name, value), "write its planner tables")
            meta = {"layout": wanted, "fp_version": FINGERPRINT_VERSION, "fp_canary": canary}
        if meta.get("identity") != IDENTITY_VERSION:
            # Tables from before record ids were kept: add the column, null until delivered.
            self._run(self.sql.add_record_ids(), "add a column to its planner tables")
            with self.conn.transaction():
                self._run(
                    self.sql.set_meta("identity", IDENTITY_VERSION), "write its planner tables"
                )
            meta["identity"] = IDENTITY_VERSION
        return meta

    def _fold(self) -> None:
        if not int(self.conn.fetchall(self.sql.count_acks())[0][0] or 0):
            return
        before, txn, after = self.sql.fold()
        self._run(before, "fold checkpoints into the snapshot")
        with self.conn.transaction():
            self._run(txn, "fold checkpoints into the snapshot")
        self._run(after, "fold checkpoints into the snapshot")

    # -- PlanBackend ------------------------------------------------------------------
    def compute(self, ws: Workspace, *, full_resync: bool) -> Diff:
        try:
            if ws.read_only:
                meta = self._meta()
                if meta is None:
                    # A dry run before the first run: the snapshot is empty, every row is new.
                    return self._plan_locally(ws, full_resync)
            else:
                meta = self._ensure_tables()
                self._fold()
            return self._compute(ws, meta, full_resync=full_resync)
        finally:
            if ws.read_only:
                self._drop_plan()
                self.close()

    def _compute(self, ws: Workspace, meta: dict[str, str], *, full_resync: bool) -> Diff:
        sql = self.sql
        canary = str(self.conn.fetchall(sql.canary())[0][0])
        drift = meta.get("fp_canary") != canary or meta.get("fp_version") != FINGERPRINT_VERSION
        notes: list[str] = []
        if drift:
            notes.append(
                "the warehouse's fingerprint function changed (an upgrade changed how values "
                "render as text); every row is resent once so no change can be missed"
            )
        model = strip_sql(ws.model.sql)
        has_rejected = bool(self.conn.fetchall(sql.count_rejected())[0][0])
        try:  # the statement that runs the model over every row
            self._run([sql.drop_current(), sql.current(model)], "create its work tables")
        except Exception as exc:
            if not _is_data_error(exc):
                raise
            raise model_error(ws.project, ws.model, first_line(exc)) from None
        self._run(
            sql.plan(resend_all=full_resync or drift, has_rejected=has_rejected),
            "create its work tables",
        )
        self._has_plan = True
        if full_resync:
            self._run([sql.drop_removals()], "create its work tables")
        queried = int(self.conn.fetchall(sql.count_current())[0][0] or 0)
        self._run(sql.drop_scratch(), "drop its work tables")

        self._pull_plan(ws)
        self._pull_extract(ws, model)
        self._pull_removed(ws, with_rid=meta.get("identity") == IDENTITY_VERSION)
        self._mark_cast_failures(ws)

        counts = count_plan(ws, queried)
        snapshot_rows = int(self.conn.fetchall(sql.snapshot_size())[0][0] or 0)
        rows, nbytes = self.conn.rows_fetched, self.conn.bytes_fetched
        notes.append(f"planned in the warehouse: {rows} rows ({nbytes / 1e6:.1f} MB) left it")
        relations = Relations(model=EXTRACT, snapshot=REMOVED)
        return Diff(counts, snapshot_rows, drift, relations, tuple(notes), rows, nbytes)

    def _plan_locally(self, ws: Workspace, full_resync: bool) -> Diff:
        model = ws.model_sql
        if not self.conn.local:
            reader = _counting(ws.source.stream(strip_sql(ws.model.sql)), self)
            ws.con.register("bh_model_stream", reader)
            ws.con.execute(f"CREATE OR REPLACE TABLE {EXTRACT} AS SELECT * FROM bh_model_stream")
            ws.con.unregister("bh_model_stream")
            model = EXTRACT
        found = local.diff(ws, full_resync=full_resync, model=model)
        return replace(
            found,
            transferred_rows=self.conn.rows_fetched,
            transferred_bytes=self.conn.bytes_fetched,
        )

    def _pull(self, ws: Workspace, target: str, sql: str, casts: list[tuple[str, str]]) -> None:
        """Copy a warehouse result into a workspace table with the given column types."""
        select = ", ".join(f"CAST(q.{c} AS {t}) AS {c}" for c, t in casts)
        if self.conn.local:
            ws.con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT {select} FROM ({sql}) q")
            rows = int(scalar(ws.con, f"SELECT count(*) FROM {target}") or 0)
            self.conn.rows_fetched += rows
            return
        empty = ", ".join(f"NULL AS {c}" for c, _ in casts)
        ws.con.execute(
            f"CREATE OR REPLACE TABLE {target} AS SELECT {select} FROM (SELECT {empty}) q "
            "WHERE FALSE"
        )
        for batch in self.conn.fetch_batches(sql):
            ws.con.register("bh_pull", batch)
            ws.con.execute(f"INSERT INTO {target} SELECT {select} FROM bh_pull q")
            ws.con.unregister("bh_pull")

    def _pull_plan(self, ws: Workspace) -> None:
        keys = [(f"k{i}", t) for i, t in enumerate(self.local_key_types)]
        fp_type = FP_TYPE[self.dialect]
        casts = [*keys, ("n", "BIGINT"), ("fp", fp_type), ("op", "VARCHAR"), ("reason", "VARCHAR")]
        self._pull(ws, "work.plan", self.sql.plan_rows(), casts)

    def _pull_extract(self, ws: Workspace, model: str) -> None:
        sql = self.sql.extract(model)
        if self.conn.local:
            ws.con.execute(f"CREATE OR REPLACE TABLE work.extract AS {sql}")
            self.conn.rows_fetched += int(scalar(ws.con, "SELECT count(*) FROM work.extract") or 0)
        elif scalar(
            ws.con, "SELECT count(*) FROM work.plan WHERE op IN ('add', 'change', 'retry')"
        ):
            # The source's own reader, so values arrive typed exactly as the local planner
            # would see them; it reads the plan table from its own (read-only) session.
            reader = _counting(ws.source.stream(sql), self)
            ws.con.register("bh_extract", reader)
            ws.con.execute("CREATE OR REPLACE TABLE work.extract AS SELECT * FROM bh_extract")
            ws.con.unregister("bh_extract")
        else:
            ws.con.execute("DELETE FROM work.extract")  # nothing to send: no model row needed

    def _pull_removed(self, ws: Workspace, *, with_rid: bool) -> None:
        """Snapshot rows of removed, changed and retried keys into ``work.removed``."""
        keys = [(f"k{i}", t) for i, t in enumerate(self.local_key_types)]
        match = [(f"m{i}", t) for i, t in enumerate(self.local_match_types)]
        casts = [*keys, ("fp", FP_TYPE[self.dialect]), *match, ("rid", "VARCHAR")]
        self._pull(ws, REMOVED, self.sql.snapshot_rows(with_rid=with_rid), casts)

    def _mark_cast_failures(self, ws: Workspace) -> None:
        """Rows whose mapped casts fail are invalid, found locally on the fetched rows."""
        bad = ws.mapper.cast_failure_expr("m")
        if bad is None:
            return
        on = " AND ".join(f"b.{quote(k)} = p.k{i}" for i, k in enumerate(ws.key_columns))
        ws.con.execute(
            f"UPDATE work.plan p SET op = 'invalid', reason = b.bad FROM (SELECT m.*, {bad} AS bad "
            f"FROM work.extract m) b WHERE b.bad IS NOT NULL AND p.op IN ('add', 'change', "
            f"'retry') AND {on}"
        )

    def drop_resolved_rejections(self, ws: Workspace) -> None:
        ops = (
            ["add", "remove"]
            if ws.config.mode is Mode.INSERT
            else ["add", "change", "retry", "remove"]
        )
        self._run([self.sql.drop_resolved_rejections(ops)], "write its planner tables")

    def commit_batch(
        self, ws: Workspace, run_id: str, acked: pa.Table | None, rejected: pa.Table | None
    ) -> None:
        sql = self.sql
        with self.conn.transaction():
            if acked is not None and acked.num_rows:
                staged = sql.scratch("acked")
                self.conn.stage(staged, sql.acked_ddl(), acked)
                self._run(sql.commit_acked(run_id, staged), "write checkpoints")
            if rejected is not None and rejected.num_rows:
                staged = sql.scratch("rejected")
                cols = [*ws.layout.key_cols, "key_text", "op", "error"]
                self.conn.stage(staged, sql.rejected_ddl(), rejected.select(cols))
                self._run([sql.commit_rejected(run_id, staged)], "write rejected rows")

    def finish(self, ws: Workspace, *, adopt_fingerprint: bool) -> None:
        try:
            self._fold()
            if adopt_fingerprint:
                canary = str(self.conn.fetchall(self.sql.canary())[0][0])
                with self.conn.transaction():
                    self._run(self.sql.set_meta("fp_canary", canary), "write its planner tables")
                    self._run(
                        self.sql.set_meta("fp_version", FINGERPRINT_VERSION),
                        "write its planner tables",
                    )
            self._drop_plan()
        finally:
            self.close()

    def _drop_plan(self) -> None:
        if self._has_plan:
            self.conn.execute(self.sql.drop_plan())
            self._has_plan = False

    def close(self) -> None:
        """Close the warehouse connection (also done when the backend is collected)."""
        self._finalizer()


def _counting(reader: pa.RecordBatchReader, backend: WarehouseBackend) -> pa.RecordBatchReader:
    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            backend.conn.rows_fetched += batch.num_rows
            backend.conn.bytes_fetched += batch.nbytes
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _is_data_error(exc: BaseException) -> bool:
    """A value the model's query could not compute (a failed cast, a division by zero, an
    exception raised in SQL)."""
    return failure_of(exc) is SourceFailure.DATA


def _is_permission(exc: BaseException) -> bool:
    return failure_of(exc) is SourceFailure.PERMISSION


def _is_missing(exc: BaseException) -> bool:
    return failure_of(exc) is SourceFailure.MISSING
