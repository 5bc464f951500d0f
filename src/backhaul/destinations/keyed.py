"""Keyed records: found by a match value, then created, updated, deleted or cleared by id.

HubSpot, Zendesk, Intercom and Salesforce identify a record by a match value (an e-mail, an
external id) and address it by an id of their own. :func:`write_keyed` is the one place that
decides which record of a batch needs which call; a connector implements the calls
(:class:`KeyedApi`) and nothing else. For each record of a batch:

1. Without a match value it is rejected. Records sharing one go in turns, in batch order,
   so the last one wins, as it would a batch later.
2. Delivered before under another match value (``Batch.record_ids``, upsert and update
   only), it is updated by the id it was delivered as, new match value included; when no
   record has that id any more it is matched by value as below (docs/state.md, "Identity
   tracking").
3. An upsert goes to the vendor's native upsert when there is one. Otherwise the record is
   looked up by its match value and this table decides:

   ========= ============================== ==========================================
   operation the record exists              the record is missing
   ========= ============================== ==========================================
   upsert    update it by its id            create it (found existing after all: update)
   update    update it by its id            rejected: update mode creates none
   insert    ok, left as it is              create it (found existing after all: ok)
   delete    delete it (gone meanwhile: ok) ok, nothing to delete
   clear     update it (fields are null)    ok, nothing to clear
   ========= ============================== ==========================================

4. A record that no answer speaks of is rejected.

Each outcome has one wording (:data:`NO_KEY`, :data:`MISSING`, :data:`REMOVED`,
:data:`NO_RESULT`), whichever the vendor. :class:`KeyedDestination` is the connector
skeleton around it: an :class:`~backhaul.destinations.http.HttpDestination` whose
``prepare`` settles the object and its match field and whose ``write`` is
:func:`write_keyed`. See docs/connectors.md.
"""

from __future__ import annotations

from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import ClassVar
from typing import Protocol
from typing import TypeAlias

import pyarrow as pa

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.destinations.http.connector import identity_field
from backhaul.destinations.http.connector import identity_problems
from backhaul.destinations.http.destination import HttpDestination

NO_KEY = "no {field} value: {vendor} needs it to find the record"
MISSING = "{vendor} {object} has no record with {field} = {key}: update mode creates none"
REMOVED = (
    "{vendor} {object} record with {field} = {key} was removed while it was written: "
    "it is sent again next run"
)
NO_RESULT = "{vendor} answered without a result for this record"


@dataclass(frozen=True, slots=True)
class Exists:
    """A create's answer: a record with this match value exists after all (created
    meanwhile, or a search that had not caught up). ``record_id`` when the refusal names it."""

    error: str
    call_id: str | None = None
    record_id: str | None = None


@dataclass(frozen=True, slots=True)
class Gone:
    """An update's or delete's answer: no record has this id (any more)."""

    error: str
    call_id: str | None = None


Answer: TypeAlias = RecordResult | Exists | Gone
Answers: TypeAlias = Mapping[int, Answer]
# A lookup's answer, by position: the vendor id of the record that has the position's match
# value, or why the lookup was refused; a position left out has no record.
Found: TypeAlias = Mapping[int, str | RecordResult]


@dataclass(frozen=True, slots=True)
class Identity:
    """How the records of one object are identified, and how messages name them.

    Attributes:
        vendor: The vendor as messages name it (``HubSpot``, ``zendesk``).
        object: The object written (``contacts``, ``Contact``).
        field: The match field.
        text: A match value as the vendor compares it (default ``str``).
        ignore_case: Match values equal but for case name one record.
    """

    vendor: str
    object: str
    field: str
    text: Callable[[Any], str] = str
    ignore_case: bool = False

    def key(self, record: Mapping[str, Any]) -> str:
        """The record's match value as text; ``""`` when it has none."""
        value = record.get(self.field)
        return "" if value is None else self.text(value)

    def same(self, key: str) -> str:
        """What two keys of one record have in common."""
        return key.lower() if self.ignore_case else key

    def say(self, wording: str, key: str = "") -> str:
        """One of this module's wordings, for this object."""
        return wording.format(vendor=self.vendor, object=self.object, field=self.field, key=key)


@dataclass(frozen=True, slots=True)
class Rows:
    """A batch as the vendor sends it. Every call names the positions it concerns."""

    batch: Batch
    records: Sequence[dict[str, Any]]
    keys: Sequence[str]  # each record's match value as text
    identity: Identity

    @property
    def operation(self) -> Operation:
        return self.batch.operation


class KeyedApi(Protocol):
    """The calls of a vendor :func:`write_keyed` makes; each answers by batch position.

    ``ids`` are vendor ids by position. An update writes every field of its records, the
    match field included; for a clear they hold nulls but for the match field.
    """

    async def find(self, rows: Rows, idx: Sequence[int]) -> Found: ...

    async def create(self, rows: Rows, idx: Sequence[int]) -> Answers: ...

    async def update(self, rows: Rows, ids: Mapping[int, str]) -> Answers: ...

    async def delete(self, rows: Rows, ids: Mapping[int, str]) -> Answers: ...


# A native upsert by match value: creates what is missing, updates what exists.
Upsert: TypeAlias = Callable[[Rows, Sequence[int]], Awaitable[Answers]]


async def write_keyed(
    api: KeyedApi,
    batch: Batch,
    records: Sequence[dict[str, Any]],
    identity: Identity,
    *,
    upsert: Upsert | None = None,
) -> list[RecordResult]:
    """Write ``records`` (the batch's records as the vendor takes them) and return one
    result per record; see the module's docstring for what each record gets."""
    rows = Rows(batch, records, [identity.key(r) for r in records], identity)
    out: dict[int, RecordResult] = {}
    todo: list[int] = []
    for i, key in enumerate(rows.keys):
        if key:
            todo.append(i)
        else:
            out[i] = RecordResult.rejected(i, identity.say(NO_KEY))
    # A vendor refuses (or muddles) a call naming one record twice: such records go in turns.
    for turn in turns(todo, [identity.same(k) for k in rows.keys]):
        out.update(await _write(api, rows, turn, identity, upsert))
    return [out[i] if i in out else _settle(identity, i, None) for i in range(len(records))]


async def _write(
    api: KeyedApi, rows: Rows, idx: list[int], identity: Identity, upsert: Upsert | None
) -> dict[int, RecordResult]:
    """One turn: positions whose match values are all different."""
    op = rows.operation
    out: dict[int, RecordResult] = {}
    delivered = rows.batch.record_ids
    if delivered is not None and op in (Operation.UPSERT, Operation.UPDATE):
        moved = {i: rid for i in idx if (rid := delivered[i])}
        if moved:  # match values that changed: the record each was delivered as, by its id
            answers = await api.update(rows, moved)
            for i in moved:
                if not isinstance(answers.get(i), Gone):  # gone: matched by value below
                    out[i] = _settle(identity, i, answers.get(i))
            idx = [i for i in idx if i not in out]
    if not idx:
        return out
    if op is Operation.UPSERT and upsert is not None:
        answers = await upsert(rows, idx)
        return {**out, **{i: _settle(identity, i, answers.get(i)) for i in idx}}
    present: dict[int, str] = {}
    missing: list[int] = []
    found = await api.find(rows, idx)
    for i in idx:
        hit = found.get(i)
        if isinstance(hit, RecordResult):
            out[i] = hit  # the lookup itself was refused
        elif hit is None:
            missing.append(i)
        else:
            present[i] = hit
    if op is Operation.INSERT:
        out.update({i: RecordResult.ok(i) for i in present})  # left as it is
        present = {}
    elif op is Operation.UPDATE:
        out.update({i: _missing(identity, rows, i) for i in missing})
    elif op in (Operation.DELETE, Operation.CLEAR):
        out.update({i: RecordResult.ok(i) for i in missing})  # nothing to remove or clear
    if missing and op in (Operation.UPSERT, Operation.INSERT):
        existing: dict[int, Exists] = {}
        answers = await api.create(rows, missing)
        for i in missing:
            answer = answers.get(i)
            if not isinstance(answer, Exists):
                out[i] = _settle(identity, i, answer)
            elif op is Operation.INSERT:
                out[i] = RecordResult.ok(i, answer.call_id)  # it exists: all insert asks
            else:
                existing[i] = answer
        if existing:  # created by someone else meanwhile: update it
            present.update(await _found_again(api, rows, existing, out))
    if not present:
        return out
    if op is Operation.DELETE:
        answers = await api.delete(rows, present)
        for i in present:
            answer = answers.get(i)
            if isinstance(answer, Gone):  # already gone: what delete asks
                out[i] = RecordResult.ok(i, answer.call_id)
            else:
                out[i] = _settle(identity, i, answer)
        return out
    answers = await api.update(rows, present)
    for i in present:
        answer = answers.get(i)
        if isinstance(answer, Gone):
            error = identity.say(REMOVED, rows.keys[i])
            out[i] = RecordResult.rejected(i, error, answer.call_id)
        else:
            out[i] = _settle(identity, i, answer)
    return out


async def _found_again(
    api: KeyedApi, rows: Rows, existing: Mapping[int, Exists], out: dict[int, RecordResult]
) -> dict[int, str]:
    """Ids of the records creates found existing: as the refusal named them, else looked up
    again. One not found is rejected with the create's refusal (in ``out``)."""
    ids = {i: e.record_id for i, e in existing.items() if e.record_id}
    rest = [i for i in existing if i not in ids]
    found = await api.find(rows, rest) if rest else {}
    for i in rest:
        hit = found.get(i)
        if isinstance(hit, str):
            ids[i] = hit
        else:
            out[i] = RecordResult.rejected(i, existing[i].error, existing[i].call_id)
    return ids


def _missing(identity: Identity, rows: Rows, i: int) -> RecordResult:
    return RecordResult.rejected(i, identity.say(MISSING, rows.keys[i]))


def _settle(identity: Identity, i: int, answer: Answer | None) -> RecordResult:
    """The result of an answer that needs no further call."""
    if answer is None:
        return RecordResult.rejected(i, identity.say(NO_RESULT))
    if isinstance(answer, RecordResult):
        return answer
    return RecordResult.rejected(i, answer.error, answer.call_id)


def keyed_capabilities(
    *, max_batch_size: int, default_batch_size: int, default_concurrency: int = 1
) -> Capabilities:
    """What a keyed destination can do: every operation, on JSON records, answered with
    the vendor's record ids, and a record written by its id when its match value changed.

    ``default_concurrency`` matters only to a connector with a fixed number of batches in
    flight; one that follows its rate limit takes its number from ``fit_run``."""
    return Capabilities(
        operations=frozenset(Operation),
        max_batch_size=max_batch_size,
        default_batch_size=default_batch_size,
        default_concurrency=default_concurrency,
        json_records=True,
        record_ids=True,
        update_by_id=True,
    )


class KeyedDestination(HttpDestination):
    """A REST destination of keyed records: implements :class:`KeyedApi` and writes with
    :func:`write_keyed`.

    With ``identities`` (object -> the fields its records can be matched by), ``check_sync``
    and ``prepare`` refuse a sync whose object or match field is not in it; a vendor that
    learns its objects at run time (HubSpot, Salesforce) overrides ``prepare`` instead. Either
    way ``prepare`` sets ``identity``, and ``write`` sends every batch through
    :func:`write_keyed`, with :meth:`native_upsert` when the vendor has one.
    """

    identities: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    # Where identities are learnt at run time: what to say after "set `object` in the sync"
    # when no object is named (None: the object is checked against ``identities``).
    object_hint: ClassVar[str | None] = None
    nested: ClassVar[bool] = False  # records as nested objects (``address.city`` expanded)
    ignore_case: ClassVar[bool] = False  # match values equal but for case: one record
    identity: Identity | None = None

    @classmethod
    def check_sync(cls, config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
        """The object and its match field, before anything runs: with ``identities``, both
        against them; with ``object_hint`` (objects learnt at run time), that one object is
        named, in the sync or the destination file but not differently in both."""
        configured = getattr(config, "object", None)
        if cls.object_hint is not None:
            if shape.object and configured and shape.object != configured:
                message = (
                    f"the sync's object `{shape.object}` differs from the {cls.vendor} "
                    f"destination's object `{configured}`: set it in one place only"
                )
                return [SyncProblem("object", message)]
            if not (shape.object or configured):
                message = f"{cls.vendor} needs an object: set `object` in the sync{cls.object_hint}"
                return [SyncProblem("object", message)]
        if not cls.identities:
            return []
        name = shape.object or configured or ""
        return identity_problems(cls.vendor, cls.identities, name, list(shape.match_fields))

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Check the object (the sync's, else the destination file's) and its match field."""
        name = object or getattr(self.config, "object", None) or ""
        field = identity_field(self.vendor, self.identities, name, list(match_fields))
        self.identity = Identity(self.vendor, name, field, ignore_case=self.ignore_case)

    def native_upsert(self, identity: Identity) -> Upsert | None:
        """The vendor's upsert by match value for this object, if it has one."""
        return None

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Send one batch; one result per record (see :func:`write_keyed`)."""
        if self.identity is None:  # prepare() was not called
            types = {f: pa.string() for f in batch.fields}
            await self.prepare(types, batch.match_fields, batch.object)
        assert self.identity is not None
        if self.nested:
            records = list(batch.records())
        else:
            skip = batch.skip_null_fields
            records = [
                {k: v for k, v in r.items() if v is not None or k not in skip}
                for r in batch.flat_records()
            ]
        upsert = self.native_upsert(self.identity)
        return await write_keyed(self, batch, records, self.identity, upsert=upsert)

    # The calls of KeyedApi, which each vendor implements.

    async def find(self, rows: Rows, idx: Sequence[int]) -> Found:
        raise NotImplementedError

    async def create(self, rows: Rows, idx: Sequence[int]) -> Answers:
        raise NotImplementedError

    async def update(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        raise NotImplementedError

    async def delete(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        raise NotImplementedError


def turns(idx: Sequence[int], keys: Sequence[str]) -> Iterator[list[int]]:
    """Split ``idx`` into runs in which each key (``keys[i]``) appears once, in batch order."""
    pending = list(idx)
    while pending:
        seen: set[str] = set()
        turn: list[int] = []
        later: list[int] = []
        for i in pending:
            if keys[i] in seen:
                later.append(i)
            else:
                seen.add(keys[i])
                turn.append(i)
        yield turn
        pending = later


__all__ = [
    "MISSING",
    "NO_KEY",
    "NO_RESULT",
    "REMOVED",
    "Answer",
    "Answers",
    "Exists",
    "Found",
    "Gone",
    "Identity",
    "KeyedApi",
    "KeyedDestination",
    "Rows",
    "Upsert",
    "keyed_capabilities",
    "turns",
    "write_keyed",
]
