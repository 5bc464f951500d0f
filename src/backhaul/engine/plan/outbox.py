"""Pass 2 of planning, shared by both backends: the outbox of rows to send, built from
the model and snapshot relations a :class:`~backhaul.engine.plan.values.SyncPlan` names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backhaul import pyvalues
from backhaul.config.models import Mode
from backhaul.config.models import OnRemove
from backhaul.duck import arrow_table
from backhaul.duck import scalar
from backhaul.engine.mapping import quote
from backhaul.engine.plan.values import Relations
from backhaul.engine.settings import SyncSettings
from backhaul.engine.workspace import Workspace
from backhaul.state.snapshots import key_text_sql


def _on(left: str, right: str, n: int) -> str:
    return " AND ".join(f"{left}.k{i} = {right}.k{i}" for i in range(n))


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
    def of(cls, settings: SyncSettings) -> Identity:
        acts = settings.removal is not OnRemove.NOTHING and settings.mode in (
            Mode.UPSERT,
            Mode.MIRROR,
            Mode.MEMBERSHIP,
        )
        return cls(by_id=settings.update_by_id, rekeys=acts)


# An outbox row's position in sending order: rows are only ever appended to the outbox,
# so its rowids run 0..n-1 in the order the parts were inserted.
SEQ = "rowid"


def build_outbox(
    ws: Workspace,
    relations: Relations,
    *,
    target: str,
    limit_per_op: int | None = None,
    identity: Identity | None = None,
) -> int:
    """Materialise what to send: one row per planned key with its mapped values.

    Columns: op, k.., key_text, fp, f0.. (mapped fields), t_<col> (template inputs),
    m0.. (match values), rid (the destination's record id to keep once the row is
    acknowledged, unless the destination returns a newer one) and via_id (the record id to
    address the record by: keys whose match values changed, when ``identity.by_id``).
    Removals of the old identity of rekeyed keys (op ``rekey``) come first, then rows to
    upsert, then removals, then skips, at positions (:data:`SEQ`) 0..n-1 in that order.
    Returns the number of rows.
    """
    model, snapshot = relations.model, relations.snapshot
    identity = identity or Identity()
    con = ws.con
    layout = ws.layout
    n = len(layout.key_types)
    mapper = ws.mapper
    values = mapper.value_exprs("m")
    fcols = [f"{v} AS f{i}" for i, v in enumerate(values)]
    tcols = mapper.template_input_exprs("m")
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
    base = f"FROM {model} AS m JOIN {relations.plan} p ON {on} LEFT JOIN {snapshot} s ON {snap_on}"
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
        f"FROM {relations.plan} p JOIN {snapshot} s ON {snap_on} "
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
            f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM ({sent}) UNION ALL BY NAME "
            f"SELECT * FROM ({removed}) UNION ALL BY NAME SELECT * FROM ({rekey})"
        )
        return int(scalar(con, f"SELECT count(*) FROM {target}") or 0)
    con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM ({sent}) LIMIT 0")
    # Ordered inserts: old identities, upserts, removals, skips: batches stay homogeneous.
    # A row's position is its rowid (:data:`SEQ`): appends to a table nothing is deleted
    # from take the next rowids, so each part follows the one before without numbering
    # its rows (a window over every row cost a fifth of the outbox's time).
    for part, where in (
        (rekey, "TRUE"),
        (sent, "op IN ('add', 'change', 'retry')"),
        (removed, "TRUE"),
        (sent, "op = 'skip'"),
    ):
        con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM ({part}) WHERE {where}")
    return int(scalar(con, f"SELECT count(*) FROM {target}") or 0)


def samples(
    ws: Workspace, relations: Relations, per_op: int = 5, identity: Identity | None = None
) -> dict[str, list[dict[str, Any]]]:
    """A few planned rows of each kind with the values that would be sent (dry runs).

    ``rekey`` samples are keys whose match values changed: the record delivered under the
    old values is removed before the new one is written.
    """
    build_outbox(ws, relations, target="work.sample", limit_per_op=per_op, identity=identity)
    fields = ws.mapper.fields
    out: dict[str, list[dict[str, Any]]] = {}
    table = arrow_table(ws.con, "SELECT * FROM work.sample ORDER BY op, key_text")
    from backhaul.engine.batches import rename_fields

    rendered, _ = ws.mapper.render(table, ws.mapper.template_columns())
    for row in pyvalues.rows(rename_fields(rendered, fields)):
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
