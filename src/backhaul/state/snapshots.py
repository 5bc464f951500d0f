"""Local snapshot state: one DuckDB file per sync.

Tables (all in the attached catalog ``st``):

* ``snapshot``: what the destination has acknowledged, one row per primary key: key columns
  ``k0..``, the fingerprint ``fp`` of the mapped fields, and the identity the key was last
  delivered as: the values ``m0..`` of the match fields (needed to delete or clear a record
  once its row has left the model, or once its match values changed) and ``rid``, the
  destination's own record id where the destination returns one (null otherwise).
* ``acks``: an append-only log written after every acknowledged batch (the checkpoint).
  It is folded into ``snapshot`` at the start and end of each run, so a checkpoint costs an
  append, not a rewrite of a large table.
* ``rejected``: rows the destination refused, with its error; retried on every later run.
* ``meta``: key types, fingerprint version and canary.

Snapshots written before ``rid`` existed gain the column (null) the first time a run opens
them; a dry run reads them as if it were there.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import duckdb
import pyarrow as pa

from backhaul.duck import scalar
from backhaul.errors import BackhaulError
from backhaul.errors import StateError
from backhaul.errors import StateLocked
from backhaul.files import problem

FINGERPRINT_VERSION = "1"
# A fixed row of every common type. If a DuckDB upgrade changes hash(), this value changes
# and the planner resends everything once rather than miss a change.
CANARY_SQL = (
    "SELECT hash('backhaul', 42::BIGINT, 'text', 3.25::DOUBLE, DATE '2024-01-02', "
    "TIMESTAMP '2024-01-02 03:04:05', TRUE, 12.34::DECIMAL(10,2), [1, 2], {'a': 1})::VARCHAR"
)
# The destination's record id column of ``snapshot`` and ``acks``.
RECORD_ID = "rid"
# Ack ops that take a key out of the snapshot: a removal, and the removal of the record a
# key was delivered as before its match values changed (a new record follows in the run).
FORGETTING_OPS = ("remove", "rekey")


# How DuckDB words a write the disk refused (it quotes strerror) and a file that is damaged.
_DISK_FULL = tuple(os.strerror(code) for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG))
_DAMAGED = ("not a valid DuckDB database file", "Corrupt database file")
_SHORT_READ = "Could not read enough bytes from file"


class Failure(StrEnum):
    """What a DuckDB error says went wrong underneath a run."""

    DAMAGED = "damaged"  # a file's bytes are not what DuckDB wrote: truncated, overwritten
    DISK_FULL = "disk full"  # a write was refused: no space, quota, file size limit
    MEMORY = "memory"  # out of memory with no room left to spill to disk


def failure(exc: duckdb.Error, path: Path | None = None) -> Failure | None:
    """Classify ``exc``; None when it is none of :class:`Failure` (a bug, a bad query...).

    With ``path``, a short read counts as damage only when DuckDB names that file.
    """
    text = str(exc)
    if isinstance(exc, duckdb.OutOfMemoryException):
        return Failure.MEMORY
    if any(marker in text for marker in _DISK_FULL):
        return Failure.DISK_FULL
    if _SHORT_READ in text:
        return Failure.DAMAGED if path is None or str(path) in text else None
    if any(marker in text for marker in _DAMAGED):
        return Failure.DAMAGED
    return None


@dataclass(frozen=True)
class KeyLayout:
    """Column types of the key and match columns kept in the snapshot."""

    key_types: tuple[str, ...]
    match_types: tuple[str, ...]

    @property
    def key_cols(self) -> list[str]:
        return [f"k{i}" for i in range(len(self.key_types))]

    @property
    def match_cols(self) -> list[str]:
        return [f"m{i}" for i in range(len(self.match_types))]

    @property
    def snapshot_cols(self) -> list[str]:
        """Columns of a snapshot row: keys, fingerprint, match values, record id."""
        return [*self.key_cols, "fp", *self.match_cols, RECORD_ID]

    def ddl(self) -> str:
        keys = [f"k{i} {t}" for i, t in enumerate(self.key_types)]
        match = [f"m{i} {t}" for i, t in enumerate(self.match_types)]
        return ", ".join([*keys, "fp UBIGINT", *match, f"{RECORD_ID} VARCHAR"])


def state_path(state_dir: Path, sync: str) -> Path:
    return state_dir / "syncs" / f"{sync}.duckdb"


def attach(con: duckdb.DuckDBPyConnection, path: Path, *, read_only: bool) -> bool:
    """Attach the sync's state as ``st``; returns False if there is none yet (read-only).

    Raises:
        StateLocked: Another process holds the file.
        StateError: The path is not a regular file (never opened: a pipe would block).
        duckdb.Error: DuckDB could not open it; :func:`failure` tells damage from the rest.
    """
    exists = path.exists() or path.is_symlink()
    if read_only and not exists:
        con.execute("ATTACH ':memory:' AS st")
        return False
    if exists and (reason := problem(path)) is not None:
        raise StateError(
            f"the snapshot file {path} {reason}; nothing was sent. Move it away and run "
            "again: with no snapshot, every model row is sent again (a full resync)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = " (READ_ONLY)" if read_only else ""
    literal = str(path).replace("'", "''")
    try:
        con.execute(f"ATTACH '{literal}' AS st{mode}")
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StateLocked(
                f"the state of this sync is in use by another process ({path.name}); "
                "wait for the other run to finish"
            ) from None
        raise
    if not read_only:
        con.execute("CREATE TABLE IF NOT EXISTS st.meta (name VARCHAR PRIMARY KEY, value VARCHAR)")
    return True


def get_meta(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    if not has_table(con, "meta"):
        return None
    value = scalar(con, "SELECT value FROM st.meta WHERE name = ?", [name])
    return None if value is None else str(value)


def set_meta(con: duckdb.DuckDBPyConnection, name: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO st.meta VALUES (?, ?)", [name, value])


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        scalar(
            con,
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'st' AND table_name = ?",
            [name],
        )
    )


def has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    return bool(
        scalar(
            con,
            "SELECT count(*) FROM duckdb_columns() WHERE database_name = 'st' "
            "AND table_name = ? AND column_name = ?",
            [table, column],
        )
    )


def _rid(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """``rid``, or a null in its place for a table written before record ids were kept."""
    return RECORD_ID if has_column(con, table, RECORD_ID) else f"NULL::VARCHAR AS {RECORD_ID}"


def _newest_first(keys: str) -> str:
    """Window order of a key's acks: the newest wins, but a new record beats the removal of
    the old one (``rekey``) whatever their order."""
    return f"PARTITION BY {keys} ORDER BY CASE WHEN op = 'rekey' THEN 1 ELSE 0 END, rowid DESC"


def canary(con: duckdb.DuckDBPyConnection) -> str:
    return str(scalar(con, CANARY_SQL))


def _checked_layout(
    con: duckdb.DuckDBPyConnection, layout: KeyLayout, *, writing: bool
) -> tuple[str | None, str]:
    """The layout the snapshot has (None before its tables exist) and the one ``layout`` wants.

    Raises:
        BackhaulError: the snapshot has another layout (``writing``: its tables were about
            to be created or changed, and were not).
    """
    stored = get_meta(con, "layout")
    wanted = "|".join(layout.key_types) + "/" + "|".join(layout.match_types)
    if stored is not None and stored != wanted:
        fix = "the snapshot was left as it is. Restore" if writing else "restore"
        raise BackhaulError(
            f"the model's primary-key or match-field types changed (snapshot has {stored}, "
            f"the model now gives {wanted}); {fix} the types in the model, or run "
            "`backhaul reset SYNC` and then a full resync"
        )
    return stored, wanted


def ensure_tables(con: duckdb.DuckDBPyConnection, layout: KeyLayout) -> None:
    """Create the state tables for ``layout`` (or check the existing ones match it)."""
    stored, wanted = _checked_layout(con, layout, writing=True)
    keys = ", ".join(layout.key_cols)
    con.execute(f"CREATE TABLE IF NOT EXISTS st.snapshot ({layout.ddl()})")
    con.execute(f"CREATE TABLE IF NOT EXISTS st.acks (run_id VARCHAR, op VARCHAR, {layout.ddl()})")
    # A snapshot from before record ids were kept: add the column (null until delivered).
    for table in ("snapshot", "acks"):
        con.execute(f"ALTER TABLE st.{table} ADD COLUMN IF NOT EXISTS {RECORD_ID} VARCHAR")
    key_ddl = ", ".join(f"k{i} {t}" for i, t in enumerate(layout.key_types))
    con.execute(
        f"CREATE TABLE IF NOT EXISTS st.rejected ({key_ddl}, key_text VARCHAR, op VARCHAR, "
        f"error VARCHAR, attempts INTEGER, run_id VARCHAR, rejected_at TIMESTAMPTZ, PRIMARY KEY ({keys}))"
    )
    if stored is None:
        set_meta(con, "layout", wanted)
        set_meta(con, "fp_version", FINGERPRINT_VERSION)
        set_meta(con, "fp_canary", canary(con))


def ensure_tables_compatible(con: duckdb.DuckDBPyConnection, layout: KeyLayout) -> None:
    """Read-only check that existing state tables fit ``layout``."""
    _checked_layout(con, layout, writing=False)


def fold_acks(con: duckdb.DuckDBPyConnection, layout: KeyLayout) -> int:
    """Apply the checkpoint log to the snapshot; returns how many acks were folded."""
    pending = int(scalar(con, "SELECT count(*) FROM st.acks") or 0)
    if not pending:
        return 0
    keys = ", ".join(layout.key_cols)
    cols = ", ".join(layout.snapshot_cols)
    on = " AND ".join(f"s.{k} = a.{k}" for k in layout.key_cols)
    con.execute("BEGIN")
    try:
        # The newest ack of a key wins (the log is in commit order: rowid).
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE latest_acks AS SELECT {cols}, op FROM ("
            f"SELECT *, row_number() OVER ({_newest_first(keys)}) AS rn "
            f"FROM st.acks) WHERE rn = 1"
        )
        con.execute(f"DELETE FROM st.snapshot s USING latest_acks a WHERE {on}")
        con.execute(
            f"INSERT INTO st.snapshot ({cols}) SELECT {cols} FROM latest_acks "
            f"WHERE op NOT IN {FORGETTING_OPS}"
        )
        con.execute("DELETE FROM st.acks")
        con.execute("DROP TABLE latest_acks")
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise
    return pending


def commit_batch(
    con: duckdb.DuckDBPyConnection,
    layout: KeyLayout,
    run_id: str,
    acked: pa.Table | None,
    rejected: pa.Table | None,
    *,
    rejections_held: bool = True,
) -> None:
    """Checkpoint one batch in one transaction.

    ``acked`` has columns op, k0.., fp, m0.., rid; ``rejected`` has k0.., key_text, op, error.
    Acknowledged keys leave the rejected list; rejected keys are added or counted again.
    ``rejections_held=False`` says the rejected list is known to be empty, which spares
    the search of it for acknowledged keys.
    """
    keys = layout.key_cols
    on = " AND ".join(f"r.{k} = x.{k}" for k in keys)
    con.execute("BEGIN")
    try:
        if acked is not None and acked.num_rows:
            con.register("acked_batch", acked)
            cols = ", ".join(layout.snapshot_cols)
            con.execute(
                f"INSERT INTO st.acks (run_id, op, {cols}) SELECT ?, op, {cols} FROM acked_batch",
                [run_id],
            )
            if rejections_held:
                con.execute(f"DELETE FROM st.rejected r USING acked_batch x WHERE {on}")
            con.unregister("acked_batch")
        if rejected is not None and rejected.num_rows:
            con.register("rejected_batch", rejected)
            kc = ", ".join(keys)
            con.execute(
                f"INSERT INTO st.rejected ({kc}, key_text, op, error, attempts, run_id, rejected_at) "
                f"SELECT {kc}, key_text, op, error, 1, ?, now() FROM rejected_batch "
                f"ON CONFLICT DO UPDATE SET error = excluded.error, op = excluded.op, "
                f"attempts = st.rejected.attempts + 1, run_id = excluded.run_id, rejected_at = excluded.rejected_at",
                [run_id],
            )
            con.unregister("rejected_batch")
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise


def holds_rejections(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the rejected list holds any row."""
    return bool(scalar(con, "SELECT count(*) FROM (SELECT 1 FROM st.rejected LIMIT 1)"))


def add_new(con: duckdb.DuckDBPyConnection, layout: KeyLayout, rows: str) -> None:
    """Checkpoint keys the snapshot does not hold yet, straight into it in one statement:
    ``rows`` is a select of the snapshot's columns (:attr:`KeyLayout.snapshot_cols`).

    What acknowledging them batch by batch and folding the log would leave, for keys no
    ack or snapshot row names (a first load; the log was folded as planning began).
    """
    cols = ", ".join(layout.snapshot_cols)
    con.execute(f"INSERT INTO st.snapshot ({cols}) {rows}")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    # A COMMIT that failed (a full disk) has rolled back already; say nothing more then.
    with contextlib.suppress(duckdb.TransactionException):
        con.execute("ROLLBACK")


def drop_resolved_rejections(con: duckdb.DuckDBPyConnection, layout: KeyLayout) -> None:
    """Forget rejections of keys the current plan no longer sends (the row reverted or left)."""
    on = " AND ".join(f"r.{k} = p.{k}" for k in layout.key_cols)
    con.execute(
        f"DELETE FROM st.rejected r WHERE NOT EXISTS (SELECT 1 FROM work.plan p WHERE {on} "
        "AND p.op IN ('add', 'change', 'retry', 'remove'))"
    )


def snapshot_size(con: duckdb.DuckDBPyConnection, relation: str = "st.snapshot") -> int:
    if relation == "st.snapshot" and not has_table(con, "snapshot"):
        return 0
    return int(scalar(con, f"SELECT count(*) FROM {relation}") or 0)


def folded_copy(con: duckdb.DuckDBPyConnection, layout: KeyLayout) -> str:
    """For read-only dry runs: the snapshot with unfolded acks applied, as a work table.

    A snapshot written before record ids were kept reads with a null ``rid``.
    """
    keys = ", ".join(layout.key_cols)
    base = [*layout.key_cols, "fp", *layout.match_cols]
    cols = ", ".join(layout.snapshot_cols)
    on = " AND ".join(f"s.{k} = a.{k}" for k in layout.key_cols)
    pending = has_table(con, "acks") and bool(scalar(con, "SELECT count(*) FROM st.acks"))
    if not pending:
        con.execute(
            f"CREATE OR REPLACE TABLE work.snapshot AS SELECT {', '.join(base)}, "
            f"{_rid(con, 'snapshot')} FROM st.snapshot"
        )
        return "work.snapshot"
    con.execute(
        f"CREATE OR REPLACE TABLE work.latest_acks AS SELECT {cols}, op FROM ("
        f"SELECT {', '.join(base)}, {_rid(con, 'acks')}, op, "
        f"row_number() OVER ({_newest_first(keys)}) AS rn FROM st.acks) WHERE rn = 1"
    )
    con.execute(
        f"CREATE OR REPLACE TABLE work.snapshot AS SELECT {', '.join(base)}, "
        f"{_rid(con, 'snapshot')} FROM st.snapshot s "
        f"WHERE NOT EXISTS (SELECT 1 FROM work.latest_acks a WHERE {on}) "
        f"UNION ALL SELECT {cols} FROM work.latest_acks WHERE op NOT IN {FORGETTING_OPS}"
    )
    return "work.snapshot"


def needs_copy(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether a read-only plan must read the snapshot through :func:`folded_copy`: acks
    not yet folded, or a snapshot from before record ids were kept."""
    if not has_table(con, "snapshot"):
        return False
    if not has_column(con, "snapshot", RECORD_ID):
        return True
    return has_table(con, "acks") and bool(scalar(con, "SELECT count(*) FROM st.acks"))


def reset(state_dir: Path, sync: str) -> bool:
    """Forget a sync's state; returns True if there was any."""
    path = state_path(state_dir, sync)
    existed = path.exists() or path.is_symlink()
    for candidate in (path, path.with_suffix(".duckdb.wal")):
        if candidate.is_dir() and not candidate.is_symlink():
            raise StateError(f"{candidate} is a directory, not a snapshot file; move it away")
        if candidate.exists() or candidate.is_symlink():
            candidate.unlink()
    return existed


def key_text_sql(key_cols: Sequence[str], alias: str = "") -> str:
    """SQL rendering a (possibly composite) key as text for run records."""
    prefix = f"{alias}." if alias else ""
    if len(key_cols) == 1:
        return f"CAST({prefix}{key_cols[0]} AS VARCHAR)"
    parts = " || ', ' || ".join(f"coalesce(CAST({prefix}{k} AS VARCHAR), 'null')" for k in key_cols)
    return f"('(' || {parts} || ')')"


BUSY = -1  # read_counts: a run holds the snapshot right now
DAMAGED = -2  # read_counts: the snapshot cannot be read (`backhaul run` says why)


def read_counts(state_dir: Path, sync: str) -> tuple[int, int]:
    """(snapshot rows, pending rejections) of a sync, read without locking it for long.

    Both are :data:`BUSY` while a run holds the snapshot and :data:`DAMAGED` when it
    cannot be read.
    """
    path = state_path(state_dir, sync)
    if not path.exists() and not path.is_symlink():
        return 0, 0
    con = duckdb.connect(":memory:")
    try:
        try:
            attach(con, path, read_only=True)
        except StateLocked:
            return BUSY, BUSY
        except (StateError, duckdb.Error):
            return DAMAGED, DAMAGED
        try:
            return _counts(con)
        except duckdb.Error:
            return DAMAGED, DAMAGED
    finally:
        con.close()


def _counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    rows = snapshot_size(con)
    pending = 0
    if has_table(con, "rejected"):
        pending = int(scalar(con, "SELECT count(*) FROM st.rejected") or 0)
    if has_table(con, "acks") and scalar(con, "SELECT count(*) FROM st.acks"):
        layout_text = get_meta(con, "layout")
        if layout_text:
            con.execute("ATTACH ':memory:' AS work")
            keys, match = layout_text.split("/")
            layout = KeyLayout(tuple(keys.split("|")), tuple(t for t in match.split("|") if t))
            rows = snapshot_size(con, folded_copy(con, layout))
    return rows, pending
