"""SQL for planning inside the warehouse, generated with sqlglot for each dialect.

Every statement is written once (in DuckDB's SQL, with placeholders for the model
and the fingerprint) and transpiled by sqlglot to the target dialect. The model SQL is
spliced in after transpiling, so the user's SQL reaches the warehouse exactly as written.

Tables (in the schema Backhaul owns, prefixed with the sync's table prefix ``p``):

* ``p_snapshot (k.., fp, m.., rid)``: what the destination acknowledged, with the identity
  each key was delivered as (match values, and the destination's record id where it
  returns one).
* ``p_acks (run_id, op, k.., fp, m.., acked_at, rid)``: append-only checkpoint log, folded
  into the snapshot at the start and end of each run.
* ``p_rejected (k.., key_text, op, error, attempts, run_id, rejected_at)``: retried later.
* ``p_meta (name, value)``: layout, fingerprint version and canary; ``identity`` once the
  snapshot has its ``rid`` column (tables made before it gain the column on the next run).
* ``p_plan (k.., n, fp, op, reason)``: the planned keys of the run in progress.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from backhaul.config.models import ColumnMapping
from backhaul.config.models import Mapping
from backhaul.config.models import StaticMapping
from backhaul.config.models import TemplateMapping

DIALECTS = ("postgres", "duckdb", "snowflake", "bigquery", "redshift", "databricks")
FINGERPRINT_VERSION = "w1"
_MODEL = "bh_model_placeholder"
_FP = "bh_fp_placeholder"

# The warehouse's own 64-bit hash of a text, per dialect. md5-based where the warehouse has
# md5, so the value never changes with a warehouse upgrade; the canary guards the rest.
FP_HASH = {
    "postgres": "CAST(CAST('x' || SUBSTR(MD5({t}), 1, 16) AS BIT(64)) AS BIGINT)",
    "duckdb": "md5_number_upper({t})",
    "snowflake": "MD5_NUMBER_UPPER64({t})",
    "bigquery": "FARM_FINGERPRINT({t})",
    "redshift": "STRTOL(SUBSTRING(MD5({t}), 1, 15), 16)",
    "databricks": "XXHASH64({t})",
}
# Written in DuckDB's spelling, like every template here; sqlglot renders each dialect's.
FP_TYPE = {
    "postgres": "BIGINT",
    "duckdb": "UBIGINT",
    "snowflake": "DECIMAL(20, 0)",
    "bigquery": "BIGINT",
    "redshift": "BIGINT",
    "databricks": "BIGINT",
}
# Scratch tables that live only for the session, where the warehouse has them.
TEMP = {"postgres", "duckdb", "snowflake", "redshift"}
RID_TYPE = "VARCHAR(1024)"  # a destination's record id, as text
IDENTITY_VERSION = "1"  # meta ``identity``: the snapshot and acks have ``rid``
_UNSIGNED = {"UTINYINT": "SMALLINT", "USMALLINT": "INT", "UINTEGER": "BIGINT"}


def table_prefix(sync: str) -> str:
    """A lower-case identifier for the sync's tables, unique per sync name."""
    safe = re.sub(r"[^a-z0-9_]", "_", sync.lower())
    if safe != sync:
        # Two names that clean up the same ("a-b", "a_b") must not share tables.
        safe += "_" + hashlib.sha256(sync.encode()).hexdigest()[:6]
    return safe


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def portable_type(duck_type: str, dialect: str) -> str:
    """A type every ``dialect`` has for a column DuckDB sees as ``duck_type``.

    Spelled the DuckDB way (sqlglot renders it in the dialect); DuckDB-only types become
    the nearest common one.
    """
    if dialect == "duckdb":
        return duck_type
    upper = duck_type.upper()
    if upper in _UNSIGNED:
        return _UNSIGNED[upper]
    if upper in ("UBIGINT", "HUGEINT", "UHUGEINT"):
        return "DECIMAL(38, 0)"
    if upper.endswith("]") or upper.startswith(("STRUCT", "MAP", "UNION")):
        return "JSON"  # nested match values are kept as JSON text
    try:
        exp.DataType.build(upper, dialect="duckdb")
    except (sqlglot.errors.ParseError, ValueError):
        return "VARCHAR"
    return upper


def mapping_spec(mappings: Sequence[Mapping], non_finite: str | None = None) -> str:
    """A short digest of everything in the mappings that is not a source value.

    Folded into every fingerprint, so a changed static value, cast, template or
    ``non_finite`` policy resends (a sync that never set the policy keeps its digest).
    """
    parts: list[object] = []
    for m in mappings:
        data = m.model_dump(mode="json", exclude_none=True)
        parts.append(data)
    if non_finite is not None:
        parts.append({"non_finite": non_finite})
    text = json.dumps([FINGERPRINT_VERSION, parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint_columns(
    mappings: Sequence[Mapping], template_vars: dict[str, tuple[str, ...]]
) -> list[str]:
    """The model columns whose values the fingerprint covers, in mapping order."""
    cols: list[str] = []
    for m in mappings:
        if isinstance(m, ColumnMapping):
            cols.append(m.column)
        elif isinstance(m, TemplateMapping):
            cols.extend(template_vars.get(m.field, ()))
        elif isinstance(m, StaticMapping):
            continue
    return cols


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class PlannerSql:
    """The statements of one sync's warehouse planner, in one dialect.

    Args:
        dialect: one of :data:`DIALECTS`.
        schema: the (qualified) schema holding the planner tables, e.g. ``backhaul_planner``.
        prefix: the sync's table prefix (:func:`table_prefix`).
        key_columns: the model's primary-key columns.
        key_types: types of the key columns (:func:`portable_type`).
        match_types: types of the match values (:func:`portable_type`).
        fp_columns: model columns covered by the fingerprint.
        spec: the mapping digest (:func:`mapping_spec`).
    """

    dialect: str
    schema: str
    prefix: str
    key_columns: tuple[str, ...]
    key_types: tuple[str, ...]
    match_types: tuple[str, ...]
    fp_columns: tuple[str, ...]
    spec: str
    plan_name: str = "plan"  # "preview" for dry runs, so they never touch a run's plan
    plan_in_schema: bool = True  # False: the plan is a session temp table (DuckDB)

    # -- helpers --------------------------------------------------------------------------
    def _sql(self, template: str, model: str | None = None) -> str:
        out = sqlglot.transpile(template, read="duckdb", write=self.dialect)[0]
        out = out.replace(_FP, self.fp_expr())
        if model is not None:
            out = out.replace(_MODEL, f"(\n{model}\n)")
        return out

    def table(self, name: str) -> str:
        return f"{self.schema}.{self.prefix}_{name}"

    @property
    def plan_table(self) -> str:
        """Where the planned keys live: in the schema when another session must read them."""
        return self.table(self.plan_name) if self.plan_in_schema else self.scratch("plan")

    def scratch(self, name: str) -> str:
        """A per-run work table: a session temp table where the warehouse has them."""
        return f"bh_{name}" if self.dialect in TEMP else self.table(f"work_{name}")

    def _create_scratch(self, name: str, select: str) -> str:
        temp = "TEMPORARY " if self.dialect in TEMP else ""
        return f"CREATE {temp}TABLE {self.scratch(name)} AS {select}"

    @property
    def n(self) -> int:
        return len(self.key_columns)

    @property
    def keys(self) -> list[str]:
        return [f"k{i}" for i in range(self.n)]

    @property
    def matches(self) -> list[str]:
        return [f"m{i}" for i in range(len(self.match_types))]

    def _on(self, a: str, b: str) -> str:
        return " AND ".join(f"{a}.{k} = {b}.{k}" for k in self.keys)

    def _cols_ddl(self, *, with_match: bool = True) -> list[str]:
        cols = [f"k{i} {t}" for i, t in enumerate(self.key_types)]
        cols.append(f"fp {FP_TYPE[self.dialect]}")
        if with_match:
            cols += [f"m{i} {t}" for i, t in enumerate(self.match_types)]
        return cols

    @property
    def snapshot_cols(self) -> list[str]:
        return [*self.keys, "fp", *self.matches, "rid"]

    def fp_expr(self, alias: str = "m") -> str:
        """The fingerprint of a model row: the warehouse hash of a canonical text."""
        pieces = [quote_literal(self.spec)]
        for col in self.fp_columns:
            ref = f"{alias}.{_ident(col)}"
            # Length-prefixed text, so no two different rows render the same.
            pieces.append(
                f"COALESCE(CAST(LENGTH(CAST({ref} AS TEXT)) AS TEXT) || ':' || "
                f"CAST({ref} AS TEXT), '~')"
            )
        text = " || '|' || ".join(pieces)
        rendered = sqlglot.transpile(f"SELECT {text}", read="duckdb", write=self.dialect)[0]
        return FP_HASH[self.dialect].format(t=rendered[len("SELECT ") :])

    def canary(self) -> str:
        """A fixed row of common types through the fingerprint's text rendering and hash."""
        text = (
            "'backhaul' || CAST(CAST(42 AS BIGINT) AS TEXT) || CAST(CAST(3.25 AS DOUBLE) AS TEXT)"
            " || CAST(CAST('2024-01-02' AS DATE) AS TEXT)"
            " || CAST(CAST('2024-01-02 03:04:05' AS TIMESTAMP) AS TEXT)"
            " || CAST(TRUE AS TEXT) || CAST(CAST(12.34 AS DECIMAL(10, 2)) AS TEXT)"
        )
        rendered = sqlglot.transpile(f"SELECT {text}", read="duckdb", write=self.dialect)[0]
        return "SELECT " + FP_HASH[self.dialect].format(t=rendered[len("SELECT ") :])

    # -- schema ---------------------------------------------------------------------------
    def create_schema(self) -> str:
        return self._sql(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")

    def create_tables(self) -> list[str]:
        keys = [f"k{i} {t}" for i, t in enumerate(self.key_types)]
        snap = ", ".join([*self._cols_ddl(), f"rid {RID_TYPE}"])
        acks = ", ".join(
            [
                "run_id VARCHAR(64)",
                "op VARCHAR(16)",
                *self._cols_ddl(),
                "acked_at TIMESTAMP",
                f"rid {RID_TYPE}",
            ]
        )
        rejected = ", ".join(
            [
                *keys,
                "key_text VARCHAR(4096)",
                "op VARCHAR(16)",
                "error VARCHAR(4096)",
                "attempts INT",
                "run_id VARCHAR(64)",
                "rejected_at TIMESTAMP",
            ]
        )
        out = []
        for name, ddl in (
            ("snapshot", snap),
            ("acks", acks),
            ("rejected", rejected),
            ("meta", "name VARCHAR(64), value VARCHAR(4096)"),
        ):
            out.append(self._sql(f"CREATE TABLE IF NOT EXISTS {self.table(name)} ({ddl})"))
        return out

    def add_record_ids(self) -> list[str]:
        """Give tables made before record ids were kept their ``rid`` column."""
        return [
            self._sql(f"ALTER TABLE {self.table(name)} ADD COLUMN IF NOT EXISTS rid {RID_TYPE}")
            for name in ("snapshot", "acks")
        ]

    def get_meta(self) -> str:
        return self._sql(f"SELECT name, value FROM {self.table('meta')}")

    def set_meta(self, name: str, value: str) -> list[str]:
        return [
            self._sql(f"DELETE FROM {self.table('meta')} WHERE name = {quote_literal(name)}"),
            self._sql(
                f"INSERT INTO {self.table('meta')} (name, value) VALUES "
                f"({quote_literal(name)}, {quote_literal(value)})"
            ),
        ]

    # -- the diff -------------------------------------------------------------------------
    def current(self, model: str) -> str:
        """Key and fingerprint of every model row (scratch ``cur``)."""
        keys = ", ".join(
            f"CAST(m.{_ident(c)} AS {t}) AS k{i}"
            for i, (c, t) in enumerate(zip(self.key_columns, self.key_types, strict=True))
        )
        select = self._sql(f"SELECT {keys}, {_FP} AS fp FROM {_MODEL} AS m", model)
        return self._create_scratch("cur", select)

    def drop_current(self) -> str:
        return self._sql(f"DROP TABLE IF EXISTS {self.scratch('cur')}")

    def plan(self, *, resend_all: bool, has_rejected: bool) -> list[str]:
        """Classify keys into ``p_plan``: add, change, remove, retry, invalid."""
        n = self.n
        cur = self.scratch("cur")
        coalesced = ", ".join(f"COALESCE(c.k{i}, s.k{i}) AS k{i}" for i in range(n))
        null_key = " OR ".join(f"c.k{i} IS NULL" for i in range(n))
        resend = "TRUE" if resend_all else "c.fp <> s.fp"
        retry_on = " AND ".join(f"COALESCE(c.k{i}, s.k{i}) = r.k{i}" for i in range(n))
        retry_join = (
            f"LEFT JOIN {self.table('rejected')} AS r ON {retry_on}" if has_rejected else ""
        )
        retried = "r.k0 IS NOT NULL" if has_rejected else "FALSE"
        select = f"""
            SELECT {coalesced}, CAST(1 AS BIGINT) AS n, c.fp AS fp,
                CAST(CASE
                    WHEN c.fp IS NULL THEN 'remove'
                    WHEN {null_key} THEN 'invalid'
                    WHEN {retried} THEN 'retry'
                    WHEN s.fp IS NULL THEN 'add'
                    ELSE 'change'
                END AS VARCHAR(16)) AS op,
                CAST(CASE WHEN c.fp IS NULL THEN NULL
                    WHEN {null_key} THEN 'null primary key' ELSE NULL END AS VARCHAR(200)) AS reason
            FROM {cur} AS c FULL OUTER JOIN {self.table("snapshot")} AS s ON {self._on("c", "s")}
            {retry_join}
            WHERE c.fp IS NULL OR s.fp IS NULL OR ({resend}) OR {retried}
        """
        kcols = ", ".join(self.keys)
        not_null = " AND ".join(f"{k} IS NOT NULL" for k in self.keys)
        plan = self.plan_table
        dups = self.scratch("dups")
        return [
            self._sql(f"DROP TABLE IF EXISTS {plan}"),
            self._sql(f"CREATE TABLE {plan} AS {select}")
            if self.plan_in_schema
            else self._create_scratch("plan", self._sql(select)),
            self._sql(f"DROP TABLE IF EXISTS {dups}"),
            self._create_scratch(
                "dups",
                self._sql(
                    f"SELECT {kcols}, COUNT(*) AS n FROM {cur} WHERE {not_null} "
                    f"GROUP BY {kcols} HAVING COUNT(*) > 1"
                ),
            ),
            # Every row sharing a key is invalid; the key is neither sent nor removed.
            self._sql(
                f"DELETE FROM {plan} WHERE EXISTS (SELECT 1 FROM {dups} AS d "
                f"WHERE {self._on('d', plan.rsplit('.', 1)[-1])})"
            ),
            self._sql(
                f"INSERT INTO {plan} ({kcols}, n, fp, op, reason) SELECT {kcols}, n, NULL, "
                f"'invalid', 'duplicate primary key (' || CAST(n AS TEXT) || ' rows share it)' "
                f"FROM {dups}"
            ),
        ]

    def drop_removals(self) -> str:
        return self._sql(f"DELETE FROM {self.plan_table} WHERE op = 'remove'")

    def count_current(self) -> str:
        return self._sql(f"SELECT COUNT(*) FROM {self.scratch('cur')}")

    def count_rejected(self) -> str:
        return self._sql(f"SELECT COUNT(*) FROM {self.table('rejected')}")

    def plan_counts(self) -> str:
        return self._sql(f"SELECT op, SUM(n) FROM {self.plan_table} GROUP BY op")

    def plan_rows(self) -> str:
        cols = ", ".join([*self.keys, "n", "fp", "op", "reason"])
        return self._sql(f"SELECT {cols} FROM {self.plan_table}")

    def extract(self, model: str) -> str:
        """Model rows of the keys to send: the only model rows that leave the warehouse."""
        on = " AND ".join(
            f"p.k{i} = CAST(m.{_ident(c)} AS {t})"
            for i, (c, t) in enumerate(zip(self.key_columns, self.key_types, strict=True))
        )
        return self._sql(
            f"SELECT m.* FROM {_MODEL} AS m WHERE EXISTS (SELECT 1 FROM {self.plan_table} "
            f"AS p WHERE {on} AND p.op IN ('add', 'change', 'retry'))",
            model,
        )

    def snapshot_rows(self, *, with_rid: bool = True) -> str:
        """Snapshot rows of the planned keys that have one: removed keys (their match values
        are what a removal sends) and changed or retried keys (the identity they were
        delivered as, to tell a changed match value). ``with_rid=False`` reads a snapshot
        from before record ids were kept."""
        cols = ", ".join(f"s.{c}" for c in [*self.keys, "fp", *self.matches])
        rid = "s.rid" if with_rid else f"CAST(NULL AS {RID_TYPE}) AS rid"
        return self._sql(
            f"SELECT {cols}, {rid} FROM {self.table('snapshot')} AS s WHERE EXISTS (SELECT 1 "
            f"FROM {self.plan_table} AS p WHERE {self._on('p', 's')} "
            "AND p.op IN ('remove', 'change', 'retry'))"
        )

    def drop_scratch(self) -> list[str]:
        return [self._sql(f"DROP TABLE IF EXISTS {self.scratch(n)}") for n in ("cur", "dups")]

    def drop_plan(self) -> str:
        return self._sql(f"DROP TABLE IF EXISTS {self.plan_table}")

    def drop_resolved_rejections(self, ops: Sequence[str]) -> str:
        """Forget rejections of keys the plan no longer sends."""
        rej = self.table("rejected")
        listed = ", ".join(quote_literal(o) for o in ops)
        on = " AND ".join(f"p.{k} = {self.prefix}_rejected.{k}" for k in self.keys)
        return self._sql(
            f"DELETE FROM {rej} WHERE NOT EXISTS (SELECT 1 FROM {self.plan_table} AS p "
            f"WHERE {on} AND p.op IN ({listed}))"
        )

    # -- checkpoints ----------------------------------------------------------------------
    def acked_ddl(self) -> str:
        """Columns of a staged batch of acknowledged rows (``bh_acked``)."""
        return ", ".join(["op VARCHAR(16)", *self._cols_ddl(), f"rid {RID_TYPE}"])

    def rejected_ddl(self) -> str:
        keys = [f"k{i} {t}" for i, t in enumerate(self.key_types)]
        return ", ".join([*keys, "key_text VARCHAR(4096)", "op VARCHAR(16)", "error VARCHAR(4096)"])

    def commit_acked(self, run_id: str, staged: str) -> list[str]:
        cols = ", ".join(self.snapshot_cols)
        rej = self.table("rejected")
        on = " AND ".join(f"x.{k} = {self.prefix}_rejected.{k}" for k in self.keys)
        return [
            self._sql(
                f"INSERT INTO {self.table('acks')} (run_id, op, {cols}, acked_at) SELECT "
                f"{quote_literal(run_id)}, op, {cols}, CURRENT_TIMESTAMP FROM {staged}"
            ),
            self._sql(f"DELETE FROM {rej} WHERE EXISTS (SELECT 1 FROM {staged} AS x WHERE {on})"),
        ]

    def commit_rejected(self, run_id: str, staged: str) -> str:
        """Add rejected rows, or count one more attempt of a key rejected before."""
        kcols = ", ".join(self.keys)
        xcols = ", ".join(f"x.{k}" for k in self.keys)
        run = quote_literal(run_id)
        return self._sql(
            f"MERGE INTO {self.table('rejected')} AS r USING {staged} AS x ON {self._on('r', 'x')} "
            f"WHEN MATCHED THEN UPDATE SET error = x.error, op = x.op, attempts = r.attempts + 1, "
            f"run_id = {run}, rejected_at = CURRENT_TIMESTAMP "
            f"WHEN NOT MATCHED THEN INSERT ({kcols}, key_text, op, error, attempts, run_id, "
            f"rejected_at) VALUES ({xcols}, x.key_text, x.op, x.error, 1, {run}, CURRENT_TIMESTAMP)"
        )

    def count_acks(self) -> str:
        return self._sql(f"SELECT COUNT(*) FROM {self.table('acks')}")

    def fold(self) -> tuple[list[str], list[str], list[str]]:
        """(before, in one transaction, after): apply the ack log to the snapshot.

        The newest ack of a key wins, except that a key's new record beats the removal of
        its old one (``rekey``) whatever their timestamps. A ``remove`` or ``rekey`` takes
        the key out of the snapshot. The latest-acks table is built outside the
        transaction: some warehouses refuse a transaction writing two databases (DuckDB's
        temp catalog and the warehouse file).
        """
        keys = ", ".join(self.keys)
        cols = ", ".join(self.snapshot_cols)
        latest = self.scratch("latest")
        on = " AND ".join(f"a.{k} = {self.prefix}_snapshot.{k}" for k in self.keys)
        before = [
            self._sql(f"DROP TABLE IF EXISTS {latest}"),
            self._create_scratch(
                "latest",
                self._sql(
                    f"SELECT {cols}, op FROM (SELECT a.*, ROW_NUMBER() OVER (PARTITION BY {keys} "
                    f"ORDER BY CASE WHEN op = 'rekey' THEN 1 ELSE 0 END, acked_at DESC) AS rn "
                    f"FROM {self.table('acks')} AS a) AS x "
                    f"WHERE rn = 1"
                ),
            ),
        ]
        txn = [
            self._sql(
                f"DELETE FROM {self.table('snapshot')} WHERE EXISTS (SELECT 1 FROM {latest} AS a "
                f"WHERE {on})"
            ),
            self._sql(
                f"INSERT INTO {self.table('snapshot')} ({cols}) SELECT {cols} FROM {latest} "
                f"WHERE op NOT IN ('remove', 'rekey')"
            ),
            self._sql(f"DELETE FROM {self.table('acks')} WHERE TRUE"),
        ]
        after = [self._sql(f"DROP TABLE IF EXISTS {latest}")]
        return before, txn, after

    def snapshot_size(self) -> str:
        return self._sql(f"SELECT COUNT(*) FROM {self.table('snapshot')}")
