"""Turning a chunk of the outbox into destination batches, and results into checkpoints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from backhaul.config.models import Mode
from backhaul.config.models import NonFinite
from backhaul.config.models import OnRemove
from backhaul.destinations.base import NO_REASON
from backhaul.destinations.base import Batch
from backhaul.destinations.base import BatchResults
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import RecordStatus
from backhaul.engine.commits import Landed
from backhaul.engine.finite import screen
from backhaul.engine.mapping import Mapper
from backhaul.summary import SKIP_INSERT
from backhaul.summary import SKIP_REMOVE
from backhaul.summary import Counts
from backhaul.summary import RowOp
from backhaul.summary import RowOutcome
from backhaul.summary import RowStatus

SMALL_TALLY = 5_000  # rows below which outcomes are counted in Python, not by Acero
ROW_OPS = {
    "add": RowOp.ADD,
    "change": RowOp.CHANGE,
    "retry": RowOp.RETRY,
    "remove": RowOp.REMOVE,
    "rekey": RowOp.CHANGE,  # the old record of a key whose match values changed
}


def rename_fields(table: pa.Table, fields: Sequence[str]) -> pa.Table:
    """``f0..fn`` → the mapped field names; other columns keep their names."""
    names = []
    for name in table.column_names:
        if name.startswith("f") and name[1:].isdigit():
            names.append(fields[int(name[1:])])
        else:
            names.append(name)
    return table.rename_columns(names)


def destination_operation(op: str, mode: Mode, removal: OnRemove) -> Operation | None:
    """The destination operation for a planned row, or None when nothing is sent.

    ``rekey`` rows (the record a key was delivered as before its match values changed)
    are removed the way removals are.
    """
    if op in ("remove", "rekey"):
        return {OnRemove.DELETE: Operation.DELETE, OnRemove.CLEAR: Operation.CLEAR}.get(removal)
    if op == "skip":
        return None
    return {
        Mode.UPSERT: Operation.UPSERT,
        Mode.MIRROR: Operation.UPSERT,
        Mode.MEMBERSHIP: Operation.UPSERT,  # add the member (again: adding is idempotent)
        Mode.UPDATE: Operation.UPDATE,
        Mode.INSERT: Operation.INSERT,
    }[mode]


@dataclass
class Prepared:
    """One destination batch plus what the engine needs to checkpoint it."""

    batch: Batch | None  # None: nothing to send (skip rows, removals with on_remove=nothing)
    rows: pa.Table  # the outbox rows (op, k.., key_text, fp, m.., rid, via_id) in batch order
    operation: Operation | None


@dataclass
class Split:
    prepared: list[Prepared]
    invalid: list[RowOutcome]  # template failures: reported, not sent, not checkpointed


def split_chunk(
    chunk: pa.Table,
    mapper: Mapper,
    *,
    mode: Mode,
    removal: OnRemove,
    match_fields: Sequence[str],
    object: str | None,
    batch_id: int,
) -> Split:
    """Render templates, screen non-finite floats, drop rows that failed, and group the rest
    by operation."""
    invalid: list[RowOutcome] = []
    membership = mode is Mode.MEMBERSHIP
    chunk, errors = mapper.render(chunk, mapper.template_columns())
    chunk, unsendable = screen(chunk, mapper)
    for row, reason in unsendable.items():
        errors.setdefault(row, reason)
    if errors:
        keep = [i for i in range(chunk.num_rows) if i not in errors]
        keys = chunk.column("key_text").to_pylist()
        ops = chunk.column("op").to_pylist()
        for i, reason in errors.items():
            invalid.append(
                RowOutcome(keys[i], ROW_OPS.get(ops[i], RowOp.CHANGE), RowStatus.INVALID, reason)
            )
        chunk = chunk.take(pa.array(keep, pa.int64()))
    out: list[Prepared] = []
    present = set(pc.unique(chunk.column("op")).to_pylist())
    for op in ("rekey", "add", "change", "retry", "skip", "remove"):
        if op not in present:
            continue
        # A chunk of one operation (most are) goes on whole, without a filter.
        part = chunk if len(present) == 1 else chunk.filter(pc.equal(chunk.column("op"), op))
        operation = destination_operation(op, mode, removal)
        out.append(_prepare(part, mapper, operation, match_fields, object, batch_id, membership))
    # Merge add/change/retry: they share one destination operation.
    merged: list[Prepared] = []
    for p in out:
        if (
            merged
            and p.operation is not None
            and merged[-1].operation == p.operation
            and p.batch
            and merged[-1].batch
        ):
            rows = pa.concat_tables([merged[-1].rows, p.rows])
            merged[-1] = _prepare(
                rows, mapper, p.operation, match_fields, object, batch_id, membership
            )
        else:
            merged.append(p)
    return Split(merged, invalid)


def _prepare(
    rows: pa.Table,
    mapper: Mapper,
    operation: Operation | None,
    match_fields: Sequence[str],
    object: str | None,
    batch_id: int,
    membership: bool = False,
) -> Prepared:
    if operation is None:
        return Prepared(None, rows, None)
    keys = rows.column("key_text").to_pylist()
    fields = mapper.fields
    if operation is Operation.DELETE:
        cols = {f: rows.column(f"m{i}") for i, f in enumerate(match_fields)}
        table = pa.table(cols) if cols else pa.table({"_key": pa.array(keys, pa.string())})
    elif operation is Operation.CLEAR:
        cols = {}
        for i, f in enumerate(fields):
            if f in match_fields:
                cols[f] = rows.column(f"m{list(match_fields).index(f)}")
            else:
                cols[f] = pa.nulls(rows.num_rows, rows.column(f"f{i}").type)
        table = pa.table(cols)
    else:
        table = pa.table({f: rows.column(f"f{i}") for i, f in enumerate(fields)})
    record_ids = None
    if operation in (Operation.UPSERT, Operation.UPDATE) and "via_id" in rows.column_names:
        via = rows.column("via_id")
        if via.null_count < rows.num_rows:
            record_ids = [None if v is None else str(v) for v in via.to_pylist()]
    batch = Batch(
        operation=operation,
        table=table,
        keys=[str(k) for k in keys],
        match_fields=list(match_fields),
        object=object,
        skip_null_fields=mapper.skip_null_fields
        if operation is not Operation.CLEAR
        else frozenset(),
        batch_id=batch_id,
        json_fields=mapper.json_fields,
        non_finite_text=mapper.finite.mode is NonFinite.STRING,
        # The old record of a rekeyed key goes as part of that key's change.
        changes=["change" if op == "rekey" else str(op) for op in rows.column("op").to_pylist()],
        record_ids=record_ids,
        membership=membership,
    )
    return Prepared(batch, rows, operation)


def partition_results(
    prepared: Prepared,
    results: Sequence[RecordResult] | None,
    key_cols: Sequence[str],
    match_cols: Sequence[str],
) -> Landed:
    """Part a batch's rows by what the destination answered: the rows it accepted, the ones
    it refused, and every row's outcome.

    ``acked`` has op, k.., fp, m.., rid (``rid``: the record id the destination returned,
    else the one the row was sent with); ``rejected`` has k.., key_text, op, error, or is
    ``None`` when nothing was refused; ``outcomes`` has key, op, status, error, operation,
    call_id. A :class:`BatchResults` that accepted everything is turned into columns
    without visiting a row.
    """
    rows = prepared.rows
    n = rows.num_rows
    ops = rows.column("op")
    known = rows.column("rid") if "rid" in rows.column_names else pa.nulls(n, pa.string())
    acked = rows.select(["op", *key_cols, "fp", *match_cols])
    operation = prepared.operation.value if prepared.operation else None
    outcome = {
        "key": rows.column("key_text"),
        # Insert mode's "skip" rows are changes that were not sent.
        "op": pc.if_else(pc.equal(ops, "skip"), "change", ops),
        "status": pa.repeat(pa.scalar(RowStatus.OK.value, pa.string()), n),
        "error": pa.nulls(n, pa.string()),
        "operation": pa.repeat(pa.scalar(operation, pa.string()), n),
        "call_id": pa.nulls(n, pa.string()),
    }
    if isinstance(results, BatchResults) and results.call_id is not None:
        outcome["call_id"] = pa.repeat(pa.scalar(results.call_id, pa.string()), n)
    if prepared.batch is None:
        # Nothing was sent: insert mode's changes, or removals with on_remove nothing.
        outcome["status"] = pa.repeat(pa.scalar(RowStatus.SKIPPED.value, pa.string()), n)
        outcome["error"] = pc.if_else(pc.equal(ops, "skip"), SKIP_INSERT, SKIP_REMOVE)
    if prepared.batch is None or (
        isinstance(results, BatchResults) and len(results) == n and not results.rejected
    ):
        # Every row checkpointed as it stands: skipped ones move the snapshot on too.
        return Landed(acked.append_column("rid", known.cast(pa.string())), None, pa.table(outcome))
    ok_mask = [True] * n
    errors: list[str | None] = [None] * n
    calls: list[str | None] = [None] * n
    returned: list[str | None] = [None] * n
    if isinstance(results, BatchResults) and len(results) == n:
        # Columnar results: only the rejected positions are visited.
        for i, error in results.rejected.items():
            ok_mask[i] = False
            errors[i] = error or NO_REASON
        calls = [results.call_id] * n
    elif results is not None:
        seen = [False] * n
        for r in results:
            if not 0 <= r.index < n:
                continue
            seen[r.index] = True
            calls[r.index] = r.call_id
            returned[r.index] = r.record_id
            if r.status is RecordStatus.REJECTED:
                ok_mask[r.index] = False
                errors[r.index] = r.error or NO_REASON
        for i in range(n):
            if not seen[i]:
                ok_mask[i] = False
                errors[i] = "the destination returned no result for this record"
    mask = pa.array(ok_mask, pa.bool_())
    outcome["status"] = pc.if_else(mask, RowStatus.OK.value, RowStatus.REJECTED.value)
    outcome["error"] = pa.array(errors, pa.string())
    outcome["call_id"] = pa.array(calls, pa.string())
    rid = pc.coalesce(pa.array(returned, pa.string()), known.cast(pa.string()))
    return Landed(
        acked.append_column("rid", rid).filter(mask),
        _refused(rows, key_cols, mask, outcome["error"]),
        pa.table(outcome),
    )


def _refused(
    rows: pa.Table, key_cols: Sequence[str], ok: pa.BooleanArray, errors: pa.Array
) -> pa.Table | None:
    """The rows ``ok`` does not mark, with their errors; ``None`` when there are none."""
    bad = pc.invert(ok)
    if not pc.any(bad).as_py():
        return None
    return (
        rows.filter(bad)
        .select([*key_cols, "key_text", "op"])
        .append_column("error", errors.filter(bad))
    )


def tally_outcomes(counts: Counts, outcomes: pa.Table) -> None:
    """Add one batch's row outcomes to the run's counts: delivered rows by kind (never
    skipped ones), rejected and skipped."""
    if not outcomes.num_rows:
        return
    if outcomes.num_rows <= SMALL_TALLY:
        # An Acero group-by costs milliseconds whatever the size; a batch of an HTTP
        # destination (100 rows) is counted faster in Python.
        pairs = Counter(
            zip(
                outcomes.column("op").to_pylist(),
                outcomes.column("status").to_pylist(),
                strict=True,
            )
        )
        tallied = [(op, status, n) for (op, status), n in pairs.items()]
    else:
        grouped = outcomes.group_by(["op", "status"]).aggregate([("key", "count")])
        tallied = list(
            zip(
                grouped.column("op").to_pylist(),
                grouped.column("status").to_pylist(),
                grouped.column("key_count").to_pylist(),
                strict=True,
            )
        )
    for op, status, n in tallied:
        tally(counts, op, status, n)


def tally(counts: Counts, op: str, status: str, n: int) -> None:
    """Add ``n`` rows planned as ``op`` that ended ``status`` to the run's counts."""
    if status == RowStatus.OK:
        counts.succeeded += n
        name = {"add": "added", "change": "changed", "remove": "removed", "retry": "retried"}
        attr = f"delivered_{name.get(op, 'changed')}"
        setattr(counts, attr, getattr(counts, attr) + n)
    elif status == RowStatus.REJECTED:
        counts.rejected += n
    elif status == RowStatus.SKIPPED:
        counts.skipped += n
