"""Change detection: the diff of the model against the snapshot, as DuckDB SQL.

Pass 1 computes, for every model row, its key, a fingerprint of the mapped fields and
any reason it is invalid, then one aggregate + full outer join against the snapshot
classifies keys as added / changed / removed / retried / invalid. Only the keys that
need sending are kept (``work.plan``). Pass 2 (``build_outbox``) reads the model again
joined to that plan, so the values of unchanged rows are never materialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backhaul.config.models import Mode
from backhaul.duck import arrow_table, scalar
from backhaul.engine.failures import model_guard
from backhaul.engine.mapping import quote
from backhaul.engine.summary import Counts
from backhaul.engine.workspace import Workspace
from backhaul.state import snapshots
from backhaul.state.snapshots import key_text_sql


@dataclass
class Plan:
    """What a run will do, before anything is sent."""

    counts: Counts
    snapshot_rows: int
    full_resync: bool
    fingerprint_drift: bool = False
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invalid_samples: list[dict[str, Any]] = field(default_factory=list)
    transferred_rows: int = 0  # rows read out of the warehouse to plan (warehouse planner)
    transferred_bytes: int = 0


def _on(left: str, right: str, n: int) -> str:
    return " AND ".join(f"{left}.k{i} = {right}.k{i}" for i in range(n))


def compute_plan(ws: Workspace, *, full_resync: bool) -> Plan:
    """Classify every row; leaves ``work.plan`` (k.., op, reason, fp, n) behind."""
    con = ws.con
    layout = ws.layout
    n = len(layout.key_types)
    if not ws.read_only:
        snapshots.fold_acks(con, layout)
        snap = "st.snapshot"
    elif (
        ws.has_state
        and snapshots.has_table(con, "acks")
        and scalar(con, "SELECT count(*) FROM st.acks")
    ):
        snap = snapshots.folded_copy(con, layout)
    else:
        snap = "st.snapshot"
    ws.snapshot_rel = snap

    stored = snapshots.get_meta(con, "fp_canary")
    drift = stored is not None and stored != snapshots.canary(con)
    if drift:
        ws.notes.append(
            "the fingerprint function changed (DuckDB was upgraded); every row is resent "
            "once so no change can be missed"
        )

    keys = [f"m.{quote(k)} AS k{i}" for i, k in enumerate(ws.key_columns)]
    bad = ws.mapper.cast_failure_expr("m") or "NULL"
    with model_guard(ws.project, ws.model):  # pass 1 reads every model row
        con.execute(
            f"CREATE OR REPLACE TABLE work.cur AS SELECT {', '.join(keys)}, "
            f"{ws.mapper.fingerprint_expr('m')} AS fp, {bad} AS bad FROM {ws.model_sql} AS m"
        )

    null_key = " OR ".join(f"c.k{i} IS NULL" for i in range(n))
    resend = "TRUE" if (full_resync or drift) else "c.fp <> s.fp"
    has_rejected = bool(scalar(con, "SELECT count(*) FROM st.rejected"))
    # A key rejected last time is a retry, whatever else changed since.
    retry_on = " AND ".join(f"coalesce(c.k{i}, s.k{i}) = r.k{i}" for i in range(n))
    retry_join = f"LEFT JOIN st.rejected r ON {retry_on}" if has_rejected else ""
    retried = "r.k0 IS NOT NULL" if has_rejected else "FALSE"
    # fp is never null for a model row, so it tells which side of the join a row came from.
    con.execute(
        f"""
        CREATE OR REPLACE TABLE work.plan AS
        SELECT {", ".join(f"coalesce(c.k{i}, s.k{i}) AS k{i}" for i in range(n))},
            1::BIGINT AS n, c.fp,
            CASE
                WHEN c.fp IS NULL THEN 'remove'
                WHEN {null_key} THEN 'invalid'
                WHEN c.bad IS NOT NULL THEN 'invalid'
                WHEN {retried} THEN 'retry'
                WHEN s.fp IS NULL THEN 'add'
                WHEN {resend} THEN 'change'
                ELSE 'unchanged'
            END AS op,
            CASE
                WHEN c.fp IS NULL THEN NULL
                WHEN {null_key} THEN 'null primary key'
                ELSE c.bad
            END AS reason
        FROM work.cur c FULL OUTER JOIN {snap} s ON {_on("c", "s", n)}
        {retry_join}
        WHERE c.fp IS NULL OR s.fp IS NULL OR c.bad IS NOT NULL OR ({resend}) OR {retried}
        """
    )
    # Duplicated keys: every row sharing the key is invalid; the key is neither sent nor removed.
    kcols = ", ".join(f"k{i}" for i in range(n))
    not_null = " AND ".join(f"k{i} IS NOT NULL" for i in range(n))
    con.execute(
        f"CREATE OR REPLACE TABLE work.dups AS SELECT {kcols}, count(*) AS n FROM work.cur "
        f"WHERE {not_null} GROUP BY ALL HAVING count(*) > 1"
    )
    if scalar(con, "SELECT count(*) FROM work.dups"):
        con.execute(f"DELETE FROM work.plan p USING work.dups d WHERE {_on('p', 'd', n)}")
        con.execute(
            f"INSERT INTO work.plan BY NAME SELECT {kcols}, n, NULL AS fp, 'invalid' AS op, "
            "'duplicate primary key (' || n || ' rows share it)' AS reason FROM work.dups"
        )
    con.execute("DELETE FROM work.plan WHERE op = 'unchanged'")
    if full_resync:
        con.execute("DELETE FROM work.plan WHERE op = 'remove'")  # deletes stay off
    queried = int(scalar(con, "SELECT count(*) FROM work.cur") or 0)
    counts = count_plan(ws, queried)
    snapshot_rows = snapshots.snapshot_size(con, snap)
    return Plan(counts, snapshot_rows, full_resync, drift)


def count_plan(ws: Workspace, queried: int) -> Counts:
    """Counts of ``work.plan`` by kind; in insert mode, changes become skips (never sent)."""
    by_op = dict(ws.con.execute("SELECT op, sum(n)::BIGINT FROM work.plan GROUP BY op").fetchall())
    counts = Counts(queried=queried)
    counts.added = int(by_op.get("add", 0))
    counts.changed = int(by_op.get("change", 0))
    counts.removed = int(by_op.get("remove", 0))
    counts.retried = int(by_op.get("retry", 0))
    counts.invalid = int(by_op.get("invalid", 0))
    counts.unchanged = max(
        queried - counts.invalid - counts.added - counts.changed - counts.retried, 0
    )
    if ws.config.mode is Mode.INSERT:
        # Insert mode never touches existing records: changes advance the snapshot silently.
        ws.con.execute("UPDATE work.plan SET op = 'skip' WHERE op IN ('change', 'retry')")
    return counts


def invalid_rows(ws: Workspace, limit: int | None = None) -> list[tuple[str | None, str]]:
    """(key text, reason) of each invalid key in the plan."""
    sql = (
        f"SELECT {key_text_sql(ws.layout.key_cols)} AS key_text, reason FROM work.plan "
        "WHERE op = 'invalid' ORDER BY reason"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [(r[0], str(r[1])) for r in ws.con.execute(sql).fetchall()]


def build_outbox(ws: Workspace, *, target: str, limit_per_op: int | None = None) -> int:
    """Materialise what to send: one row per planned key with its mapped values.

    Columns: seq, op, k0.., key_text, fp, f0.. (mapped fields), t_<col> (template inputs),
    m0.. (match values). Rows to upsert come first, then removals, then skips. Returns the
    number of rows.
    """
    con = ws.con
    layout = ws.layout
    n = len(layout.key_types)
    mapper = ws.mapper
    values = mapper.value_exprs("m")
    fcols = [f"{v} AS f{i}" for i, v in enumerate(values)]
    tcols = [f"m.{quote(c)} AS t_{c}" for c in mapper.template_columns()]
    match_idx = [mapper.fields.index(f) for f in ws.match_fields]
    mcols = [f"{values[j]} AS m{i}" for i, j in enumerate(match_idx)]
    keys = ", ".join(f"p.k{i}" for i in range(n))
    on = " AND ".join(f"m.{quote(k)} = p.k{i}" for i, k in enumerate(ws.key_columns))
    limit = (
        f" QUALIFY row_number() OVER (PARTITION BY p.op) <= {limit_per_op}" if limit_per_op else ""
    )
    sent = (
        f"SELECT p.op, {keys}, {key_text_sql(layout.key_cols, 'p')} AS key_text, "
        f"p.fp AS fp, {', '.join(fcols + tcols + mcols)} "
        f"FROM {ws.model_sql} AS m JOIN work.plan p ON {on} "
        f"WHERE p.op IN ('add', 'change', 'retry', 'skip'){limit}"
    )
    # Removed rows: their values are gone; the snapshot keeps the match values.
    null_f = [f"NULL AS f{i}" for i in range(len(values))]
    null_t = [f"NULL AS t_{c}" for c in mapper.template_columns()]
    snap_m = [f"s.m{i} AS m{i}" for i in range(len(match_idx))]
    limit_r = f" LIMIT {limit_per_op}" if limit_per_op else ""
    removed = (
        f"SELECT 'remove' AS op, {keys}, {key_text_sql(layout.key_cols, 'p')} AS key_text, "
        f"s.fp AS fp, {', '.join(null_f + null_t + snap_m)} "
        f"FROM work.plan p JOIN {ws.snapshot_rel} s ON {_on('p', 's', n)} "
        f"WHERE p.op = 'remove'{limit_r}"
    )
    con.execute(
        f"CREATE OR REPLACE TABLE {target} AS SELECT (row_number() OVER () - 1)::BIGINT AS seq, * "
        f"FROM (SELECT * FROM ({sent}) UNION ALL BY NAME SELECT * FROM ({removed}))"
        if limit_per_op
        else f"CREATE OR REPLACE TABLE {target} AS SELECT 0::BIGINT AS seq, * FROM ({sent}) LIMIT 0"
    )
    if limit_per_op:
        return int(scalar(con, f"SELECT count(*) FROM {target}") or 0)
    # Ordered inserts: upserts, then removals, then skips, so batches stay homogeneous.
    total = 0
    for part, where in (
        (sent, "op IN ('add', 'change', 'retry')"),
        (removed, "TRUE"),
        (sent, "op = 'skip'"),
    ):
        con.execute(
            f"INSERT INTO {target} BY NAME SELECT ({total} + row_number() OVER () - 1)::BIGINT "
            f"AS seq, * FROM ({part}) WHERE {where}"
        )
        total = int(scalar(con, f"SELECT count(*) FROM {target}") or 0)
    return total


def samples(ws: Workspace, per_op: int = 5) -> dict[str, list[dict[str, Any]]]:
    """A few planned rows of each kind with the values that would be sent (dry runs)."""
    build_outbox(ws, target="work.sample", limit_per_op=per_op)
    fields = ws.mapper.fields
    out: dict[str, list[dict[str, Any]]] = {}
    table = arrow_table(ws.con, "SELECT * FROM work.sample ORDER BY op, key_text")
    from backhaul.engine.batches import rename_fields

    rendered, _ = ws.mapper.render(table, ws.mapper.template_columns())
    for row in rename_fields(rendered, fields).to_pylist():
        op = row.pop("op")
        record = {"key": row.pop("key_text")}
        record.update({f: row[f] for f in fields})
        if op == "remove":
            record = {"key": record["key"]}
        out.setdefault(op, []).append(record)
    return out
