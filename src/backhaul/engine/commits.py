"""Group commits: batches that finish together are recorded and checkpointed together.

Every answered batch needs two durable writes: its row outcomes (and the calls that
carried them) in the run store, then its checkpoint in the sync's state. Written one
batch at a time, those commits cost more than the HTTP calls of a fast destination, and
they blocked the event loop. :class:`CommitGroup` runs them on the run's database thread
and takes, each time, every batch that finished while the previous group was being
written: one run-store transaction and one checkpoint per group.

Order, which is what crash safety rests on:

1. the group's row outcomes, the calls they name and the run's counts *as of the last
   checkpoint* are committed in one run-store transaction;
2. then the group's acknowledged and rejected rows are checkpointed;
3. only then does each batch's ``commit`` return (and its concurrency slot free up).

So a checkpoint never claims a row whose outcome is not recorded, the stored counts never
run ahead of the checkpoints, and a process killed at any instant has at most the batches
in flight (one per slot) delivered without a checkpoint: they are sent again next run.

Bodies of recorded calls follow :class:`BodyPolicy`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from backhaul.calls import HttpCall
from backhaul.summary import Counts
from backhaul.summary import RowStatus

if TYPE_CHECKING:
    from backhaul.state.store import RunStore

# Calls whose records were all accepted keep their bodies for the first few of a run and
# then one in every SAMPLE_EVERY; see docs/runs.md ("Recorded bodies").
SAMPLE_FIRST = 10
SAMPLE_EVERY = 100
NOT_KEPT = "[body not kept: every record of this call was accepted; see docs/runs.md]"


class CallSource(Protocol):
    """Where recorded calls wait until the rows they carried are written."""

    def take(self, call_ids: Collection[str]) -> list[HttpCall]: ...


@dataclass(frozen=True, slots=True)
class Landed:
    """One answered batch: its checkpoint (acked and rejected rows) and its row outcomes."""

    acked: pa.Table | None
    rejected: pa.Table | None
    outcomes: pa.Table


class BodyPolicy:
    """Which bodies of recorded calls are kept in the run store.

    A call is kept whole (its bodies truncated at ``calls.BODY_LIMIT`` as always) when it
    failed, was answered outside 2xx, or carried a record the destination refused, so the
    debugger shows the call behind every rejected row. A call whose records were all
    accepted keeps its bodies for the first ``first`` such calls of the run and then one in
    every ``every``; the others are recorded with method, URL, status, headers, latency
    and waits, and :data:`NOT_KEPT` in place of their bodies.
    """

    def __init__(self, first: int = SAMPLE_FIRST, every: int = SAMPLE_EVERY) -> None:
        self.first = first
        self.every = max(1, every)
        self.accepted = 0  # all-accepted calls seen so far in the run

    def apply(self, calls: Sequence[HttpCall], refused: Collection[str]) -> list[HttpCall]:
        """``calls`` as they are to be stored; ``refused`` holds the ids of calls that
        carried a rejected record."""
        kept: list[HttpCall] = []
        for call in calls:
            whole = (
                call.call_id in refused
                or call.error is not None
                or call.status is None
                or not 200 <= call.status < 300
            )
            if not whole:
                self.accepted += 1
                whole = self.accepted <= self.first or self.accepted % self.every == 0
            if whole:
                kept.append(call)
            else:
                kept.append(
                    dataclasses.replace(
                        call,
                        request_body=None if call.request_body is None else NOT_KEPT,
                        response_body=None if call.response_body is None else NOT_KEPT,
                    )
                )
        return kept


@dataclass(kw_only=True, eq=False)
class CommitGroup:
    """Records and checkpoints answered batches in groups; see the module docstring.

    Args:
        store: The run store.
        run_id: The run the rows belong to.
        calls: Recorded calls not yet written (``None``: calls are written elsewhere).
        checkpoint: Checkpoints acknowledged and rejected rows (durable when it returns).
        counts: The run's counts as of the last checkpoint (read on the event loop).
        wait_s: The run's waiting time so far.
        offload: Runs a function on the run's database thread.
        policy: Which call bodies are kept.
    """

    store: RunStore
    run_id: str
    calls: CallSource | None
    checkpoint: Callable[[pa.Table | None, pa.Table | None], None]
    counts: Callable[[], Counts]
    wait_s: Callable[[], float]
    offload: Callable[[Callable[[], None]], Awaitable[None]]
    policy: BodyPolicy = field(default_factory=BodyPolicy)
    groups: int = field(default=0, init=False)  # groups written, for tests and benchmarks
    _pending: list[tuple[Landed, asyncio.Future[None]]] = field(
        default_factory=list, init=False, repr=False
    )
    _writer: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    async def commit(self, landed: Landed) -> None:
        """Record and checkpoint ``landed`` with whatever else is waiting; returns once both
        are durable. A failed write is raised in every batch of its group."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((landed, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            items = [landed for landed, _ in group]
            # Taken on the event loop, where batches are tallied after their checkpoint:
            # these counts cover checkpointed rows only.
            counts = dataclasses.replace(self.counts())
            wait_s = self.wait_s()
            try:
                await self.offload(functools.partial(self._write, items, counts, wait_s))
            except BaseException as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.groups += 1
            for _, future in group:
                if not future.done():
                    future.set_result(None)

    def _write(self, items: list[Landed], counts: Counts, wait_s: float) -> None:
        outcomes = [i.outcomes for i in items if i.outcomes.num_rows]
        calls: list[HttpCall] = []
        if self.calls is not None and outcomes:
            named, refused = _call_ids(outcomes)
            calls = self.policy.apply(self.calls.take(named), refused)
        logged = self.store.record_batches(self.run_id, outcomes, calls, counts, wait_s=wait_s)
        acked = _concat([i.acked for i in items])
        rejected = _concat([i.rejected for i in items])
        if acked is _MIXED or rejected is _MIXED:
            for item in items:
                self.checkpoint(item.acked, item.rejected)
        else:
            self.checkpoint(acked, rejected)
        # Only now: a row log never shows a row whose checkpoint did not commit.
        self.store.append_row_log(self.run_id, logged)


_MIXED = pa.table({"mixed": pa.array([], pa.null())})  # tables that do not concatenate


def _concat(tables: list[pa.Table | None]) -> pa.Table | None:
    present = [t for t in tables if t is not None and t.num_rows]
    if len(present) <= 1:
        return present[0] if present else None
    try:
        return pa.concat_tables(present)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _MIXED


def _call_ids(outcomes: list[pa.Table]) -> tuple[set[str], set[str]]:
    """Ids of the calls these outcomes name, and of those that carried a refused row."""
    named: set[str] = set()
    refused: set[str] = set()
    for table in outcomes:
        ids = table.column("call_id")
        named.update(i for i in pc.unique(ids).to_pylist() if i is not None)
        bad = pc.equal(table.column("status"), RowStatus.REJECTED.value)
        refused.update(i for i in pc.unique(ids.filter(bad)).to_pylist() if i is not None)
    return named, refused
