"""The destination protocol: the one contract every connector implements.

A connector is one small module holding a config model (a pydantic model with a
``type`` literal), a :class:`Capabilities` value and a class with ``check()`` and
``write(batch)``. Batching, concurrency, retries of whole batches, checkpoints and run
records belong to the engine, not to the connector.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar
from typing import Protocol
from typing import overload
from typing import runtime_checkable

import pyarrow as pa
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from backhaul import floats
from backhaul import pyvalues
from backhaul.calls import CallRecorder
from backhaul.observe.waits import NoWaits
from backhaul.observe.waits import WaitObserver

if TYPE_CHECKING:
    from backhaul.destinations.http.budget import AccountBudget


class Operation(StrEnum):
    """What a record asks the destination to do."""

    UPSERT = "upsert"  # create or update by the match key
    UPDATE = "update"  # update only if the record exists; otherwise reject it
    INSERT = "insert"  # create only; an existing key is left as it is and counts as ok
    DELETE = "delete"  # remove the record with this match key
    CLEAR = "clear"  # set every mapped field except the match key to null


class RecordStatus(StrEnum):
    OK = "ok"
    REJECTED = "rejected"


# A refused record's error when the destination gave none.
NO_REASON = "rejected by the destination (no reason given)"


@dataclass(frozen=True, slots=True)
class RecordResult:
    """The outcome of one record of a batch, by its position in the batch."""

    index: int
    status: RecordStatus
    error: str | None = None
    call_id: str | None = None  # the recorded HTTP call that carried it, when there was one
    # The destination's own id of the record written (a HubSpot contact id, a Salesforce
    # Id...), where it returns one: kept in the snapshot as the key's identity.
    record_id: str | None = None

    @classmethod
    def ok(
        cls, index: int, call_id: str | None = None, record_id: str | None = None
    ) -> RecordResult:
        return cls(index, RecordStatus.OK, None, call_id, record_id)

    @classmethod
    def rejected(cls, index: int, error: str, call_id: str | None = None) -> RecordResult:
        return cls(index, RecordStatus.REJECTED, error, call_id)


class BatchResults(Sequence[RecordResult]):
    """The outcome of a whole batch held as columns: its size and the rejected positions.

    Bulk destinations (SQL tables, files) accept or refuse records together, with a few
    refused ones at most, so they report ``BatchResults(n, {index: reason})`` instead of
    building one :class:`RecordResult` per row; the engine checkpoints it without looking
    at each row. It is still a sequence of :class:`RecordResult`, built on demand.

    An HTTP destination whose batch went in one call reports it the same way, with that
    call's id (``call_id``), which every record of the batch then names.
    """

    __slots__ = ("_n", "call_id", "rejected")

    def __init__(
        self, n: int, rejected: Mapping[int, str] | None = None, *, call_id: str | None = None
    ) -> None:
        self._n = n
        self.call_id = call_id
        self.rejected: dict[int, str] = dict(rejected or {})
        bad = [i for i in self.rejected if not 0 <= i < n]
        if bad:
            raise ValueError(f"rejected positions {bad} are outside a batch of {n}")

    def __len__(self) -> int:
        return self._n

    def _at(self, index: int) -> RecordResult:
        error = self.rejected.get(index)
        if error is None:
            return RecordResult.ok(index, self.call_id)
        return RecordResult.rejected(index, error, self.call_id)

    @overload
    def __getitem__(self, index: int) -> RecordResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[RecordResult]: ...

    def __getitem__(self, index: int | slice) -> RecordResult | list[RecordResult]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(self._n))]
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError("batch result index out of range")
        return self._at(index)

    def __iter__(self) -> Iterator[RecordResult]:
        return (self._at(i) for i in range(self._n))

    def __repr__(self) -> str:
        return f"BatchResults({self._n}, rejected={self.rejected!r}, call_id={self.call_id!r})"


@dataclass(frozen=True, slots=True)
class Batch:
    """Records of one operation, ready to send.

    ``table`` holds the mapped fields as columns named by their target path (``address.city``
    stays one dotted column name) in record order. ``keys`` holds each record's primary key
    rendered as text, for errors and run records. ``match_fields`` are the target fields that
    identify a record at the destination.

    ``record_ids`` (when not None) holds, per record, the destination's id of the record the
    row was last delivered as, given for rows whose match values changed since: a
    destination that declares ``update_by_id`` writes such a record by that id (its match
    field included) rather than by match value, and falls back to the match value when no
    record has that id any more. None entries are records to match as usual.
    """

    operation: Operation
    table: pa.Table
    keys: Sequence[str]
    match_fields: Sequence[str]
    object: str | None = None
    skip_null_fields: frozenset[str] = frozenset()
    batch_id: int = 0
    json_fields: frozenset[str] = frozenset()  # fields cast to json: text in ``table``
    # `non_finite: string`: NaN and infinities become "NaN", "Infinity", "-Infinity" in
    # records (the table keeps the floats).
    non_finite_text: bool = False
    # The planned change behind each record, in record order: "add", "change", "retry" or
    # "remove" (empty when the batch was built outside a run). Message destinations send it.
    changes: Sequence[str] = ()
    record_ids: Sequence[str | None] | None = None
    # `mode: membership`: upsert = add to the list or audience, delete = take out of it.
    membership: bool = False

    def __len__(self) -> int:
        return int(self.table.num_rows)

    @property
    def fields(self) -> list[str]:
        return list(self.table.column_names)

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield each record as a nested dict (dotted paths become nested objects).

        Fields listed in ``skip_null_fields`` are left out of a record when null.
        """
        names = self.table.column_names
        skip = self.skip_null_fields
        if not any("." in name for name in names):
            # Flat fields (the common case): the row dicts are the records already.
            for row in self.flat_records():
                for name in skip:
                    if row.get(name, 0) is None:
                        del row[name]
                yield row
            return
        for row in self.flat_records():
            out: dict[str, Any] = {}
            for name in names:
                value = row[name]
                if value is None and name in skip:
                    continue
                set_path(out, name, value)
            yield out

    def flat_records(self) -> Iterator[dict[str, Any]]:
        """Yield each record as a flat dict keyed by the dotted field names.

        Fields cast to ``json`` hold parsed JSON values (objects, lists, numbers...). With
        ``non_finite_text``, NaN and infinities anywhere in a record become text.
        """
        parse = [n for n in self.table.column_names if n in self.json_fields]
        for row in pyvalues.rows(self.table):
            for name in parse:
                if isinstance(row[name], str):
                    row[name] = json.loads(row[name])
            if self.non_finite_text:
                row = {k: floats.replace(v, floats.text_of) for k, v in row.items()}
            yield row


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted ``path`` inside ``target``, creating objects on the way."""
    parts = path.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a destination can do; the engine plans within these."""

    operations: frozenset[Operation]
    max_batch_size: int = 1000
    default_batch_size: int = 500
    # Batches in flight when no file sets `concurrency` and the class's `fit_run` (if it
    # has one) names none.
    default_concurrency: int = 1
    needs_match_fields: bool = True
    # Float columns store NaN and ±Infinity as they are (SQL doubles): kept unless the sync
    # sets `non_finite`.
    non_finite_floats: bool = False
    # Records travel as JSON: `non_finite: string` can send such values as text.
    json_records: bool = False
    # Rows load inside DuckDB: every date and timestamp goes as it is, `infinity` and years
    # past 9999 included. Elsewhere a row holding one is invalid (engine/finite.py).
    any_temporal: bool = False
    # Results carry the destination's record ids (RecordResult.record_id).
    record_ids: bool = False
    # Writes a record by its stored id, match field included (Batch.record_ids): a key
    # whose match value changed updates its record instead of replacing it.
    update_by_id: bool = False
    # Keeps lists or audiences (`mode: membership`): an upsert adds the record to the list,
    # a delete takes it out of the list (the person is not deleted). Batch.membership says
    # which a batch means.
    membership: bool = False


@dataclass(frozen=True, slots=True)
class SyncShape:
    """What a sync asks of its destination, known before anything runs.

    A connector may define ``check_sync(config, shape) -> list[SyncProblem]`` (a static or
    class method) to refuse, up front, a sync it could never serve: an object it does not
    have, a match field that cannot identify its records, a field it does not accept.
    ``validate``, ``run``, ``plan`` and the web app all call it before anything is sent.
    """

    object: str | None
    fields: tuple[str, ...]
    match_fields: tuple[str, ...]  # as a run resolves them (default: the primary key's fields)
    operations: frozenset[Operation]
    membership: bool = False  # `mode: membership`: the object is a list or audience


@dataclass(frozen=True, slots=True)
class SyncProblem:
    """Why a destination cannot serve a sync: ``key`` is the sync file's key at fault."""

    key: str
    message: str


class DestinationConfig(BaseModel):
    """Base of every destination config model. Subclasses add ``type: Literal[...]``."""

    model_config = ConfigDict(extra="forbid")

    type: str
    description: str | None = None
    account: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="The vendor account this destination writes to. Destinations naming the "
        "same account (and type) share one rate-limit budget across syncs and workers; "
        "without it, the syncs of this destination file share one.",
    )


@dataclass(frozen=True, slots=True)
class DestinationContext:
    """What the engine hands a destination when it opens it.

    ``waits`` receives every wait the destination's calls make (rate-limit pauses,
    retries, client-side throttling), so the run can report and count them. ``budget`` is
    the account's rate-limit budget in the shared store, when the project has one; the HTTP
    toolkit's limiter then keeps to it (see docs/rate-limits.md).
    """

    project_dir: Path
    recorder: CallRecorder
    sync_name: str = ""
    run_id: str = ""
    secrets: Sequence[str] = field(default_factory=tuple)
    waits: WaitObserver = field(default_factory=NoWaits)
    budget: AccountBudget | None = None


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One field a destination object holds, as the destination itself describes it.

    Returned by the optional ``fields(object)`` method of a destination (see
    :class:`Destination`); the web app's mapping editor lists them beside the model's
    columns.

    Attributes:
        name: The field's name as a mapping's ``field`` names it.
        type: The kind of value it holds (``text``, ``number``, ``bool``, ``date``,
            ``datetime``) or the destination's own type name; None when unknown.
        label: A human name, when the destination has one.
        required: The destination refuses a new record without it.
        unique: Its values identify a record (it can be the sync's match field).
        read_only: The destination refuses writes to it.
    """

    name: str
    type: str | None = None
    label: str | None = None
    required: bool = False
    unique: bool = False
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class RunFit:
    """What a destination file implies for the batches of a run.

    Attributes:
        concurrency: Batches in flight when neither the sync nor ``defaults:`` sets
            ``concurrency`` (a REST connector sizes it to its ``rate_limit``); ``None``:
            the capabilities' ``default_concurrency``.
        whole_run: Rows of the one batch a whole run travels in (Slack's ``run_digest``
            sums a run up in one message, so its rows are acknowledged together, only
            when that message is accepted); ``None``: batches of ``batch_size``.
    """

    concurrency: int | None = None
    whole_run: int | None = None


@runtime_checkable
class FitsRun(Protocol):
    """A destination class whose file changes how its runs are batched (see :class:`RunFit`).

    The engine asks the class, before anything is opened, so ``plan``, ``validate`` and
    ``run`` all work with the same numbers.
    """

    @classmethod
    def fit_run(cls, config: Any) -> RunFit:
        """What ``config`` (the destination file) implies for the run's batches."""
        ...


@dataclass(frozen=True, slots=True)
class NewLoad:
    """The shape of a whole first load.

    Attributes:
        fields: The destination fields, in the order of the rows' columns.
        match_fields: The fields that identify a record.
        match_unique: No two rows can share their match values (each model key column is
            mapped as it is to a match field). When False, a table with no key to refuse a
            repeated match value must look for one before the load commits.
    """

    fields: tuple[str, ...]
    match_fields: tuple[str, ...]
    match_unique: bool = False


@runtime_checkable
class LoadsAtOnce(Protocol):
    """An opened destination that can take a whole first load in one statement.

    The engine offers it a run that only adds rows, none of which needs rendering or
    screening in Python, after :meth:`Destination.prepare`. The destination inserts every
    row of ``rows`` in one transaction when its table held no row as the run began, and
    returns True once that transaction committed. It returns False, having written
    nothing, when it cannot (the table had rows, or the database refused the insert);
    the engine then sends the same rows in batches, which finds and reports the rows that
    were refused. See docs/architecture.md ("First loads in one statement").
    """

    async def load_new(self, rows: pa.RecordBatchReader, load: NewLoad) -> bool:
        """Insert every row of ``rows`` (columns named for ``load.fields``) in one
        transaction."""
        ...


@runtime_checkable
class LoadsInDuckDB(Protocol):
    """A destination whose table is in a DuckDB file: it can take a first load as statements
    on the engine's own DuckDB connection, which reads the rows where they are, without
    streaming them as Arrow from one database to another.

    Offered before :meth:`LoadsAtOnce.load_new`, with the same contract.
    """

    def load_new_in(self, con: Any, select: str, load: NewLoad) -> bool | None:
        """Insert every row of ``select`` (run on ``con``, a DuckDB connection; columns named
        for ``load.fields``) in one transaction, as :meth:`LoadsAtOnce.load_new` would.

        Returns None, having written nothing, when ``con`` cannot reach the file (the engine
        then streams the rows to ``load_new``); False and True as ``load_new``.
        """
        ...


@runtime_checkable
class Destination(Protocol):
    """One connection to an operational tool, opened for one run.

    A destination may also offer ``async def fields(self, object: str | None) ->
    list[FieldInfo]``: the fields of ``object`` (or of its configured object), read from
    the destination itself without writing anything. The web app's mapping editor uses it
    when present and falls back to free text otherwise; HubSpot, Salesforce, Zendesk,
    Intercom and the SQL tables have it.
    """

    config_model: ClassVar[type[DestinationConfig]]
    capabilities: ClassVar[Capabilities]

    def __init__(self, config: Any, context: DestinationContext) -> None:
        """Take the destination file (its secrets resolved) and what the engine hands it."""

    async def check(self) -> None:
        """Raise :class:`~backhaul.errors.DestinationError` if the destination is unusable."""

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Called once per run before the first write (create tables, look up schemas)."""

    async def write(self, batch: Batch) -> Sequence[RecordResult]:
        """Send one batch; return one result per record (a list, or :class:`BatchResults`).

        Raise :class:`~backhaul.errors.DestinationError` when the whole call failed; the
        engine retries transient failures and fails the run on config failures.
        """
        ...

    async def close(self) -> None:
        """Release connections; called once at the end of the run, even after a failure."""


__all__ = [
    "NO_REASON",
    "Batch",
    "BatchResults",
    "Capabilities",
    "Destination",
    "DestinationConfig",
    "DestinationContext",
    "FieldInfo",
    "FitsRun",
    "Operation",
    "RecordResult",
    "RecordStatus",
    "RunFit",
    "SyncProblem",
    "SyncShape",
    "set_path",
]
