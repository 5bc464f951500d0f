"""First loads in one statement: a plan that only adds rows, taken by a destination that
can insert a whole stream at once (:class:`~backhaul.destinations.base.LoadsAtOnce`).

Sending such a plan in batches means writing every row to the outbox, reading it back,
cutting it into batches, committing the destination's key index once per batch and
checkpointing each batch. Here the model's mapped rows stream from the workspace straight
into one destination transaction; then the run records its counts, the snapshot takes
every added key in one statement, and the row log is written whole from the plan: the same
order of durable writes as a batch (engine/commits.py), with the whole load as the one
batch in flight. A process killed after the destination committed resends that load
next run, where the table is no longer empty and the rows go in batches as upserts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

from backhaul.config.models import ColumnMapping
from backhaul.config.models import Mode
from backhaul.destinations.base import Destination
from backhaul.destinations.base import LoadsAtOnce
from backhaul.destinations.base import NewLoad
from backhaul.destinations.base import Operation
from backhaul.duck import arrow_reader
from backhaul.duck import arrow_table
from backhaul.engine.batches import destination_operation
from backhaul.engine.finite import screened
from backhaul.engine.mapping import quote
from backhaul.engine.plan.backend import PlanBackend
from backhaul.engine.plan.local import LocalBackend
from backhaul.engine.plan.values import SyncPlan
from backhaul.engine.workspace import Workspace
from backhaul.state import snapshots
from backhaul.state.rowlog import COLUMNS as ROW_LOG_COLUMNS
from backhaul.state.snapshots import key_text_sql
from backhaul.summary import RowOp
from backhaul.summary import RowStatus

# Row-log rows appended at a time once the load is checkpointed.
OUTCOME_BLOCK = 1_000_000
# Rows per Arrow batch streamed into the destination's insert.
STREAM_BATCH = 100_000


@dataclass(frozen=True, slots=True)
class FirstLoad:
    """A plan found fit to go in one statement.

    Attributes:
        rows: How many rows it adds.
        fields: The destination fields, in the order of the select's columns.
        types: Their Arrow types (what :meth:`Destination.prepare` is given).
        operation: The operation the rows stand for in the run's outcomes.
        match_unique: No two rows can share their match values: each model key column is
            mapped, uncast, to a match field.
    """

    rows: int
    fields: tuple[str, ...]
    types: dict[str, pa.DataType]
    operation: Operation
    match_unique: bool
    _select: str
    _added: str  # FROM ... WHERE of the plan's added keys joined to their model rows
    _plan: str  # the plan's relation

    @property
    def select(self) -> str:
        """The mapped rows, named for their fields, as a select on the workspace."""
        return self._select

    def shape(self, ws: Workspace) -> NewLoad:
        """What the destination is told of the load."""
        return NewLoad(self.fields, tuple(ws.match_fields), self.match_unique)

    def stream(self, ws: Workspace) -> pa.RecordBatchReader:
        """The mapped rows, named for their fields, as a stream (on the database thread).

        The workspace keeps rows in order until :meth:`streamed`: DuckDB streams them
        faster so."""
        ws.keep_order(True)
        try:
            return arrow_reader(ws.con, self._select, STREAM_BATCH)
        except BaseException:
            ws.keep_order()
            raise

    def streamed(self, ws: Workspace) -> None:
        """The stream is closed: the workspace is back to planning's settings."""
        ws.keep_order()

    def checkpoint(self, ws: Workspace) -> None:
        """Every added key into the snapshot, as a batch's acknowledgement would put it
        (keys, fingerprint, match values, no record id), in one transaction."""
        layout = ws.layout
        mapper = ws.mapper
        values = mapper.value_exprs("m")
        match = [values[mapper.fields.index(f)] for f in ws.match_fields]
        keys = [f"p.{k}" for k in layout.key_cols]
        model_keys = [f"m.{quote(k)}" for k in ws.key_columns]
        if all(value in model_keys for value in match):
            # Matched on key columns as they stand (the common case): the plan holds every
            # value the snapshot takes, and the model need not be read again.
            from_plan = [keys[model_keys.index(value)] for value in match]
            picked = ", ".join([*keys, "p.fp", *from_plan, "NULL"])
            rows = f"SELECT {picked} FROM {self._plan} p WHERE p.op = 'add'"
        else:
            picked = ", ".join([*keys, "p.fp", *match, "NULL"])
            rows = f"SELECT {picked} {self._added}"
        snapshots.add_new(ws.con, layout, rows)

    def outcomes_sql(self, ws: Workspace) -> str:
        """The load's row outcomes (every row ok, ``add``), as a select on the workspace."""
        key = key_text_sql(ws.layout.key_cols, "p")
        return (
            f"SELECT {key} AS key, {_constant(RowOp.ADD)} AS op, "
            f"{_constant(RowStatus.OK)} AS status, NULL::VARCHAR AS error, "
            f"{_constant(self.operation)} AS operation, "
            "NULL::VARCHAR AS call_id FROM work.plan p WHERE p.op = 'add'"
        )

    def outcomes(self, ws: Workspace) -> Iterator[pa.Table]:
        """The load's row outcomes in blocks (every column a string), for a store that
        appends them."""
        text = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in ROW_LOG_COLUMNS)
        sql = f"SELECT {text} FROM ({self.outcomes_sql(ws)})"
        for batch in arrow_reader(ws.con, sql, OUTCOME_BLOCK):
            yield pa.Table.from_batches([batch])


def _constant(value: StrEnum) -> str:
    """A value every row of the row log shares, as a one-value ENUM: the row log writes it
    several times faster than a string (state/rowlog.py) and reads it back as one."""
    return f"CAST('{value.value}' AS ENUM('{value.value}'))"


def _match_unique(ws: Workspace) -> bool:
    """Whether the match fields tell every model key apart: each key column is mapped as
    it is (no cast, which could make two values one) to a match field."""
    mapped = {
        m.column
        for m in ws.mapper.mappings
        if isinstance(m, ColumnMapping) and m.cast is None and m.field in ws.match_fields
    }
    return set(ws.key_columns) <= mapped


def first_load(
    ws: Workspace, plan: SyncPlan, kind: type[Destination], backend: PlanBackend
) -> FirstLoad | None:
    """The plan as one statement's load, or None when it must go in batches.

    It must only add rows (a first run, or a model whose every row is new), in a mode
    that upserts or inserts, with the local backend (whose snapshot is in the sync's
    state file) and a destination of a ``kind`` that loads at once (which then still
    declines a table that has rows). No mapped value may need Python
    on its way: no template field, and no field the non-finite policy screens. A sync
    whose files set ``batch_size`` asked for transactions of that size (a production
    table's locks, a replica's lag) and keeps them.
    """
    c = plan.counts
    settings = plan.settings
    operation = destination_operation("add", settings.mode, settings.removal)
    if (
        not issubclass(kind, LoadsAtOnce)
        or not isinstance(backend, LocalBackend)
        or c.added <= 0
        or c.changed
        or c.removed
        or c.retried
        or settings.batch_size_set
        or settings.mode is Mode.MEMBERSHIP
        or operation not in (Operation.UPSERT, Operation.INSERT)
        or ws.mapper.template_columns()
    ):
        return None
    mapper = ws.mapper
    values = mapper.value_exprs("m")
    named = ", ".join(f"{v} AS {quote(f)}" for v, f in zip(values, mapper.fields, strict=True))
    on = " AND ".join(f"m.{quote(k)} = p.k{i}" for i, k in enumerate(ws.key_columns))
    added = (
        f"FROM {plan.relations.model} AS m JOIN {plan.relations.plan} p ON {on} WHERE p.op = 'add'"
    )
    # Every model row new and valid (no null, repeated or uncastable key): the model is
    # the load as it stands, and no join with the plan holds every key in memory while
    # the destination loads.
    whole = c.added == c.queried and not c.invalid
    select = (
        f"SELECT {named} FROM {plan.relations.model} AS m" if whole else f"SELECT {named} {added}"
    )
    schema = arrow_table(ws.con, f"{select} LIMIT 0").schema
    types = [schema.field(i).type for i in range(len(schema))]
    if any(pa.types.is_null(t) for t in types) or screened(mapper, types):
        return None
    return FirstLoad(
        rows=c.added,
        fields=tuple(mapper.fields),
        types=dict(zip(mapper.fields, types, strict=True)),
        operation=operation,
        match_unique=_match_unique(ws),
        _select=select,
        _added=added,
        _plan=plan.relations.plan,
    )
