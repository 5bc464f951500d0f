"""The local backend: the snapshot in the sync's DuckDB file, the diff in local DuckDB.

Pass 1 computes, for every model row, its key, a fingerprint of the mapped fields and
any reason it is invalid, then one aggregate + full outer join against the snapshot
classifies keys as added / changed / removed / retried / invalid. Only the keys that
need sending are kept (``work.plan``). Pass 2 (:func:`~backhaul.engine.plan.outbox.build_outbox`)
reads the model again joined to that plan, so the values of unchanged rows are never
materialised.
"""

from __future__ import annotations

import pyarrow as pa

from backhaul.config.models import Mode
from backhaul.duck import scalar
from backhaul.engine.failures import Phase
from backhaul.engine.failures import model_guard
from backhaul.engine.mapping import quote
from backhaul.engine.plan.values import Diff
from backhaul.engine.plan.values import Relations
from backhaul.engine.workspace import Workspace
from backhaul.state import snapshots
from backhaul.state.snapshots import key_text_sql
from backhaul.summary import Counts


class LocalBackend:
    """The snapshot in ``.backhaul/syncs/<sync>.duckdb``; the diff runs in local DuckDB.

    One backend serves one workspace (one plan or run): it remembers whether the sync's
    rejected list holds rows, so checkpoints need not search an empty list.
    """

    def __init__(self) -> None:
        self._rejections: bool | None = None  # unknown until the first checkpoint

    def compute(self, ws: Workspace, *, full_resync: bool) -> Diff:
        with ws.guard(Phase.PLAN):
            return diff(ws, full_resync=full_resync, model=ws.model_sql)

    def drop_resolved_rejections(self, ws: Workspace) -> None:
        with ws.guard(Phase.PLAN):
            snapshots.drop_resolved_rejections(ws.con, ws.layout)

    def commit_batch(
        self, ws: Workspace, run_id: str, acked: pa.Table | None, rejected: pa.Table | None
    ) -> None:
        with ws.guard(Phase.CHECKPOINT):
            if self._rejections is None:
                self._rejections = snapshots.holds_rejections(ws.con)
            snapshots.commit_batch(
                ws.con, ws.layout, run_id, acked, rejected, rejections_held=self._rejections
            )
        if rejected is not None and rejected.num_rows:
            self._rejections = True

    def finish(self, ws: Workspace, *, adopt_fingerprint: bool) -> None:
        with ws.guard(Phase.FINISH):
            snapshots.fold_acks(ws.con, ws.layout)
            if adopt_fingerprint:
                snapshots.set_meta(ws.con, "fp_canary", snapshots.canary(ws.con))


def _on(left: str, right: str, n: int) -> str:
    return " AND ".join(f"{left}.k{i} = {right}.k{i}" for i in range(n))


def diff(ws: Workspace, *, full_resync: bool, model: str) -> Diff:
    """Classify every row of the relation ``model``; leaves ``work.plan`` (k.., op,
    reason, fp, n) behind."""
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

    stored = snapshots.get_meta(con, "fp_canary")
    drift = stored is not None and stored != snapshots.canary(con)
    notes: tuple[str, ...] = ()
    if drift:
        notes = (
            "the fingerprint function changed (DuckDB was upgraded); every row is resent "
            "once so no change can be missed",
        )

    keys = [f"m.{quote(k)} AS k{i}" for i, k in enumerate(ws.key_columns)]
    bad = ws.mapper.cast_failure_expr("m") or "NULL"
    pass_one = (
        f"SELECT {', '.join(keys)}, {ws.mapper.fingerprint_expr('m')} AS fp, {bad} AS bad "
        f"FROM {model} AS m"
    )
    null_key = " OR ".join(f"c.k{i} IS NULL" for i in range(n))
    has_rejected = snapshots.holds_rejections(con)
    snapshot_rows = snapshots.snapshot_size(con, snap)
    if not snapshot_rows and not has_rejected:
        # Nothing stored and nothing to retry (a first run): every valid row is new, and
        # one pass over the model is the plan, with no table of keys to join.
        with model_guard(ws.project, ws.model):
            con.execute(
                f"""
                CREATE OR REPLACE TABLE work.plan AS
                SELECT {", ".join(f"c.k{i}" for i in range(n))}, 1::BIGINT AS n, c.fp,
                    CASE WHEN {null_key} OR c.bad IS NOT NULL THEN 'invalid' ELSE 'add' END
                        AS op,
                    CASE WHEN {null_key} THEN 'null primary key' ELSE c.bad END AS reason
                FROM ({pass_one}) c
                """
            )
        every_row = "work.plan"
    else:
        with model_guard(ws.project, ws.model):  # pass 1 reads every model row
            con.execute(f"CREATE OR REPLACE TABLE work.cur AS {pass_one}")
        resend = "TRUE" if (full_resync or drift) else "c.fp <> s.fp"
        # A key rejected last time is a retry, whatever else changed since.
        retry_on = " AND ".join(f"coalesce(c.k{i}, s.k{i}) = r.k{i}" for i in range(n))
        retry_join = f"LEFT JOIN st.rejected r ON {retry_on}" if has_rejected else ""
        retried = "r.k0 IS NOT NULL" if has_rejected else "FALSE"
        # fp is never null for a model row, so it tells which side of the join a row came
        # from.
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
        every_row = "work.cur"
    # Counted before duplicated keys are folded into one plan row each.
    queried = int(scalar(con, f"SELECT count(*) FROM {every_row}") or 0)
    # Duplicated keys: every row sharing the key is invalid; the key is neither sent nor removed.
    kcols = ", ".join(f"k{i}" for i in range(n))
    not_null = " AND ".join(f"k{i} IS NOT NULL" for i in range(n))
    con.execute(
        f"CREATE OR REPLACE TABLE work.dups AS SELECT {kcols}, count(*) AS n FROM {every_row} "
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
    # Every model key and fingerprint: free them before the rows are read again to send.
    con.execute("DROP TABLE IF EXISTS work.cur")
    con.execute("DROP TABLE work.dups")
    counts = count_plan(ws, queried)
    return Diff(counts, snapshot_rows, drift, Relations(model=model, snapshot=snap), notes)


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


NULL_KEY = "(null)"  # the key text of a row whose (single) key is null


def invalid_rows(ws: Workspace, limit: int | None = None) -> list[tuple[str, str]]:
    """(key text, reason) of each invalid key in the plan; a null key is :data:`NULL_KEY`,
    as the run store records it and every command shows it."""
    sql = (
        f"SELECT {key_text_sql(ws.layout.key_cols)} AS key_text, reason FROM work.plan "
        "WHERE op = 'invalid' ORDER BY reason"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [(NULL_KEY if r[0] is None else r[0], str(r[1])) for r in ws.con.execute(sql).fetchall()]
