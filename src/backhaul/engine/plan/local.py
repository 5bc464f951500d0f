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

from backhaul.config.models import Mode, OnRemove
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
    elif ws.has_state and snapshots.needs_copy(con):
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


@dataclass(frozen=True)
class Identity:
    """How a run handles a key whose match values changed since it was last delivered.

    ``by_id``: the destination updates a record by its stored id, match field included, so
    the row goes as an upsert addressed by that id. Otherwise, when ``rekeys`` (upsert and
    mirror modes whose removals act), the record delivered under the old match values is
    removed (``on_remove``) before the new one is written.
    """

    by_id: bool = False
    rekeys: bool = False

    @classmethod
    def of(cls, ws: Workspace, *, update_by_id: bool) -> Identity:
        cfg = ws.config
        acts = cfg.removal is not OnRemove.NOTHING and cfg.mode in (Mode.UPSERT, Mode.MIRROR)
        return cls(by_id=update_by_id, rekeys=acts)


def build_outbox(
    ws: Workspace,
    *,
    target: str,
    limit_per_op: int | None = None,
    identity: Identity | None = None,
) -> int:
    """Materialise what to send: one row per planned key with its mapped values.

    Columns: seq, op, k.., key_text, fp, f0.. (mapped fields), t_<col> (template inputs),
    m0.. (match values), rid (the destination's record id to keep once the row is
    acknowledged, unless the destination returns a newer one) and via_id (the record id to
    address the record by: keys whose match values changed, when ``identity.by_id``).
    Removals of the old identity of rekeyed keys (op ``rekey``) come first, then rows to
    upsert, then removals, then skips. Returns the number of rows.
    """
    identity = identity or Identity()
    con = ws.con
    layout = ws.layout
    n = len(layout.key_types)
    mapper = ws.mapper
    values = mapper.value_exprs("m")
    fcols = [f"{v} AS f{i}" for i, v in enumerate(values)]
    tcols = [f"m.{quote(c)} AS t_{c}" for c in mapper.template_columns()]
    match_idx = [mapper.fields.index(f) for f in ws.match_fields]
    current = [values[j] for j in match_idx]
    # Insert mode's skips changed nothing at the destination: the old identity stays.
    mcols = [
        f"CASE WHEN p.op = 'skip' AND s.fp IS NOT NULL THEN s.m{i} ELSE {v} END AS m{i}"
        for i, v in enumerate(current)
    ]
    keys = ", ".join(f"p.k{i}" for i in range(n))
    on = " AND ".join(f"m.{quote(k)} = p.k{i}" for i, k in enumerate(ws.key_columns))
    snap_on = _on("p", "s", n)
    # A key delivered before whose match values are now different.
    if current:
        had = " OR ".join(f"s.m{i} IS NOT NULL" for i in range(len(current)))
        moved = " OR ".join(f"({v}) IS DISTINCT FROM s.m{i}" for i, v in enumerate(current))
        rekeyed = f"(s.fp IS NOT NULL AND ({had}) AND ({moved}))"
    else:
        rekeyed = "FALSE"
    via = f"({rekeyed} AND s.rid IS NOT NULL)" if identity.by_id else "FALSE"
    limit = (
        f" QUALIFY row_number() OVER (PARTITION BY p.op) <= {limit_per_op}" if limit_per_op else ""
    )
    base = f"FROM {ws.model_sql} AS m JOIN work.plan p ON {on} LEFT JOIN {ws.snapshot_rel} s ON {snap_on}"
    sent = (
        f"SELECT p.op, {keys}, {key_text_sql(layout.key_cols, 'p')} AS key_text, "
        f"p.fp AS fp, {', '.join(fcols + tcols + mcols)}, "
        f"CASE WHEN {rekeyed} AND NOT {via} THEN NULL ELSE s.rid END AS rid, "
        f"CASE WHEN {via} THEN s.rid END AS via_id "
        f"{base} WHERE p.op IN ('add', 'change', 'retry', 'skip'){limit}"
    )
    # Removed rows: their values are gone; the snapshot keeps the match values.
    null_f = [f"NULL AS f{i}" for i in range(len(values))]
    null_t = [f"NULL AS t_{c}" for c in mapper.template_columns()]
    snap_m = [f"s.m{i} AS m{i}" for i in range(len(match_idx))]
    old = ", ".join(null_f + null_t + snap_m)
    limit_r = f" LIMIT {limit_per_op}" if limit_per_op else ""
    removed = (
        f"SELECT 'remove' AS op, {keys}, {key_text_sql(layout.key_cols, 'p')} AS key_text, "
        f"s.fp AS fp, {old}, s.rid AS rid, NULL::VARCHAR AS via_id "
        f"FROM work.plan p JOIN {ws.snapshot_rel} s ON {snap_on} "
        f"WHERE p.op = 'remove'{limit_r}"
    )
    # Keys whose match values changed: the record under the old values goes first.
    rekey_where = (
        f"p.op IN ('change', 'retry') AND {rekeyed} AND NOT {via}" if identity.rekeys else "FALSE"
    )
    rekey = (
        f"SELECT 'rekey' AS op, {keys}, {key_text_sql(layout.key_cols, 'p')} AS key_text, "
        f"s.fp AS fp, {old}, s.rid AS rid, NULL::VARCHAR AS via_id "
        f"{base} WHERE {rekey_where}{limit_r}"
    )
    if limit_per_op:
        con.execute(
            f"CREATE OR REPLACE TABLE {target} AS SELECT (row_number() OVER () - 1)::BIGINT "
            f"AS seq, * FROM (SELECT * FROM ({sent}) UNION ALL BY NAME SELECT * FROM "
            f"({removed}) UNION ALL BY NAME SELECT * FROM ({rekey}))"
        )
        return int(scalar(con, f"SELECT count(*) FROM {target}") or 0)
    con.execute(
        f"CREATE OR REPLACE TABLE {target} AS SELECT 0::BIGINT AS seq, * FROM ({sent}) LIMIT 0"
    )
    # Ordered inserts: old identities, upserts, removals, skips: batches stay homogeneous.
    total = 0
    for part, where in (
        (rekey, "TRUE"),
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


def samples(
    ws: Workspace, per_op: int = 5, identity: Identity | None = None
) -> dict[str, list[dict[str, Any]]]:
    """A few planned rows of each kind with the values that would be sent (dry runs).

    ``rekey`` samples are keys whose match values changed: the record delivered under the
    old values is removed before the new one is written.
    """
    build_outbox(ws, target="work.sample", limit_per_op=per_op, identity=identity)
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
        elif op == "rekey":  # the record under the old match values, removed first
            old = {f"{f} (old)": row[f"m{i}"] for i, f in enumerate(ws.match_fields)}
            record = {"key": record["key"], **old}
        out.setdefault(op, []).append(record)
    return out
