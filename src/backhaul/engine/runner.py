"""One run of one sync: extract, plan, guard, map, load, checkpoint, record.

The snapshot advances only through the plan backend's ``commit_batch``, called
once per acknowledged batch with exactly the records the destination accepted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from backhaul import approval
from backhaul import gitinfo
from backhaul.calls import CallRecorder
from backhaul.config.models import Cast
from backhaul.config.models import OnRemove
from backhaul.config.models import TemplateMapping
from backhaul.config.project import DestinationDef
from backhaul.config.project import Project
from backhaul.config.project import SyncDef
from backhaul.destinations.base import Batch
from backhaul.destinations.base import Destination
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import FitsRun
from backhaul.destinations.base import LoadsAtOnce
from backhaul.destinations.base import LoadsInDuckDB
from backhaul.destinations.base import RecordResult
from backhaul.destinations.http.budget import BudgetStore
from backhaul.duck import arrow_table
from backhaul.duck import scalar
from backhaul.engine.batches import partition_results
from backhaul.engine.batches import rename_fields
from backhaul.engine.batches import split_chunk
from backhaul.engine.batches import tally
from backhaul.engine.batches import tally_outcomes
from backhaul.engine.budgets import budget_for
from backhaul.engine.budgets import budget_store
from backhaul.engine.budgets import estimated_calls
from backhaul.engine.budgets import opened
from backhaul.engine.budgets import quota_of
from backhaul.engine.budgets import quota_warning
from backhaul.engine.commits import CommitGroup
from backhaul.engine.failures import Phase
from backhaul.engine.guards import check_guards
from backhaul.engine.hooks import hook_list
from backhaul.engine.hooks import post_variables
from backhaul.engine.hooks import pre_variables
from backhaul.engine.hooks import run_hooks
from backhaul.engine.hooks import skipped_hooks_note
from backhaul.engine.plan import SEQ
from backhaul.engine.plan import FirstLoad
from backhaul.engine.plan import Identity
from backhaul.engine.plan import LocalBackend
from backhaul.engine.plan import PlanBackend
from backhaul.engine.plan import SyncPlan
from backhaul.engine.plan import backend_for
from backhaul.engine.plan import build_outbox
from backhaul.engine.plan import compute
from backhaul.engine.plan import first_load
from backhaul.engine.plan import invalid_rows
from backhaul.engine.plan import samples
from backhaul.engine.settings import SyncSettings
from backhaul.engine.settings import resolve_settings
from backhaul.engine.workspace import Workspace
from backhaul.engine.workspace import open_workspace
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.errors import GuardError
from backhaul.errors import HookError
from backhaul.errors import ModelError
from backhaul.errors import QuotaSpentError
from backhaul.errors import StateError
from backhaul.errors import first_line
from backhaul.observe.events import BatchDone
from backhaul.observe.events import EventSink
from backhaul.observe.events import Notice
from backhaul.observe.events import PhaseStarted
from backhaul.observe.events import Planned
from backhaul.observe.events import RunFinished
from backhaul.observe.events import RunPhase
from backhaul.observe.events import RunStarted
from backhaul.observe.events import WaitKind
from backhaul.observe.events import ignore
from backhaul.observe.waits import NoWaits
from backhaul.observe.waits import WaitObserver
from backhaul.observe.waits import WaitTracker
from backhaul.summary import Counts
from backhaul.summary import RowOp
from backhaul.summary import RowOutcome
from backhaul.summary import RowStatus
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary
from backhaul.summary import final_status

if TYPE_CHECKING:
    from backhaul.state.recorder import StoreRecorder
    from backhaul.state.store import RunStore

T = TypeVar("T")
log = logging.getLogger(__name__)
READ_AHEAD_ROWS = 10_000  # outbox rows read in one query (more when one batch is larger)
ENGINE_RETRIES = 2  # whole-batch retries of transient failures, on top of the HTTP toolkit's
TEMPLATE_TYPES = {Cast.INT: pa.int64(), Cast.FLOAT: pa.float64(), Cast.BOOL: pa.bool_()}


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def open_destination(
    project: Project,
    sync: SyncDef,
    recorder: CallRecorder,
    run_id: str,
    waits: WaitObserver | None = None,
    budgets: BudgetStore | None = None,
) -> tuple[Destination, list[str]]:
    """Resolve the destination's secrets and open its connector.

    ``waits`` is told of every wait the destination's calls make; ``budgets`` holds the
    shared rate-limit budgets (``None``: the connector's limiter is this run's own).
    """
    from backhaul.config.secrets import resolve

    dest = destination_def(project, sync)
    cls = project.registry.destination(dest.config.type)
    config, secrets = resolve(dest.config, positions=dest.positions)
    context = DestinationContext(
        project.root,
        recorder,
        sync.name,
        run_id,
        tuple(secrets),
        waits or NoWaits(),
        budget_for(dest, budgets),
    )
    return cls(config, context), secrets


def settings_for(project: Project, sync: SyncDef) -> SyncSettings:
    """The sync's settings, resolved once for its plan and its run."""
    dest = destination_def(project, sync)
    cls = project.registry.destination(dest.config.type)
    fit = cls.fit_run(dest.config) if issubclass(cls, FitsRun) else None
    return resolve_settings(project, sync, cls.capabilities, fit)


def open_planning(
    project: Project, sync: SyncDef, settings: SyncSettings, *, read_only: bool
) -> Workspace:
    """The workspace a plan is computed in (read-only for a dry run)."""
    return open_workspace(
        project,
        sync,
        read_only=read_only,
        needs_match=settings.needs_match,
        finite=settings.finite,
    )


def destination_def(project: Project, sync: SyncDef) -> DestinationDef:
    dest = project.destinations.get(sync.config.destination)
    if dest is None:
        raise ConfigError(
            f"unknown destination `{sync.config.destination}`",
            file=str(sync.positions.file),
            line=sync.positions.line("destination"),
            key="destination",
        )
    return dest


@dataclass
class RunOptions:
    full_resync: bool = False
    force: bool = False
    trigger: str = "cli"
    head: gitinfo.Head | None = None  # as the approval gate read it (None: read at the start)


class SyncRun:
    """State of one run in progress."""

    def __init__(
        self,
        project: Project,
        sync: SyncDef,
        store: RunStore,
        events: EventSink,
        cancel: threading.Event | None = None,
    ) -> None:
        self.cancel = cancel or threading.Event()
        self.project = project
        self.sync = sync
        self.store = store
        self.events = events
        self.run_id = new_run_id()
        self.summary = RunSummary(
            self.run_id, sync.name, RunStatus.RUNNING, started_at=datetime.now(UTC)
        )
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backhaul-db")
        self.ws: Workspace | None = None
        self.backend: PlanBackend = LocalBackend()
        self.settings = settings_for(project, sync)
        self.waits = WaitTracker(self.run_id, sync.name, events)
        self.held: set[str] = set()  # keys whose old record could not be removed this run
        self.budgets: BudgetStore | None = None
        self.recorder: StoreRecorder | None = None
        self.commits: CommitGroup | None = None
        self._block: tuple[int, int, pa.Table] | None = None  # outbox rows read ahead

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.db, fn, *args)

    def execute(self, options: RunOptions) -> RunSummary:
        from backhaul.state.recorder import StoreRecorder

        recorder = StoreRecorder(self.store, self.run_id)
        self.recorder = recorder
        self.budgets = budget_store(self.project, getattr(self.store, "engine", None))
        dest, _secrets = open_destination(
            self.project, self.sync, recorder, self.run_id, self.waits, self.budgets
        )
        self.summary.full_resync = options.full_resync
        try:
            # Before the model is read: a hook may refresh what it reads.
            run_hooks(
                self.project, self.sync, "pre", pre_variables(self.summary, trigger=options.trigger)
            )
        except HookError as exc:
            asyncio.run(dest.close())
            self._close_budgets()
            return self._failed_before_start(exc)
        try:
            ws = open_planning(self.project, self.sync, self.settings, read_only=False)
        except ModelError as exc:  # the warehouse failed on a row while streaming the model
            asyncio.run(dest.close())
            self._close_budgets()
            return self._failed_before_start(exc)
        self.ws = ws
        self.store.mark_abandoned(self.sync.name)
        revision = options.head or gitinfo.head(self.project.root)
        self.store.start_run(
            self.run_id,
            self.sync.name,
            full_resync=options.full_resync,
            trigger=options.trigger,
            git_commit=revision.commit if revision else None,
            git_dirty=revision.dirty if revision else None,
        )
        self.events(RunStarted(self.run_id, self.sync.name))
        try:
            self.events(PhaseStarted(self.run_id, self.sync.name, RunPhase.PLAN))
            self.backend = backend_for(ws)
            plan = compute(
                ws,
                self.backend,
                self.settings,
                full_resync=options.full_resync,
                force=options.force,
            )
            self.summary.counts = plan.planned_counts()
            for note in plan.notes:
                self.events(Notice(self.run_id, self.sync.name, note))
            self._record_invalid(ws)
            check_guards(plan.verdict)
            self.backend.drop_resolved_rejections(ws)
            load = None if self.cancel.is_set() else first_load(ws, plan, type(dest), self.backend)
            total = load.rows if load else self._apply(ws, plan)
            self.events(Planned(self.run_id, self.sync.name, plan.counts, total))
            warning = self._quota_warning(plan.counts) if total else None
            if warning:
                self.events(Notice(self.run_id, self.sync.name, warning))
            if total:
                self.events(PhaseStarted(self.run_id, self.sync.name, RunPhase.SEND))
                if load is None or not asyncio.run(self._load_at_once(dest, load)):
                    if load is not None:  # declined, nothing written: the rows go in batches
                        log.info("run %s: first load declined; sending in batches", self.run_id)
                        total = self._apply(ws, plan)
                    asyncio.run(self._send(dest, total))
            else:
                asyncio.run(dest.close())
            with ws.guard(Phase.FINISH):
                ws.con.execute("DROP TABLE IF EXISTS st.outbox")
            c = self.summary.counts
            clean = not c.rejected and self.summary.error is None and not self.cancel.is_set()
            self.events(PhaseStarted(self.run_id, self.sync.name, RunPhase.COMMIT))
            self.backend.finish(ws, adopt_fingerprint=plan.fingerprint_drift and clean)
            if self.cancel.is_set() and self.summary.error is None:
                self.summary.status = RunStatus.CANCELLED
                self.summary.error = "cancelled on request; rows not yet sent stay pending"
            elif self.summary.error is not None:
                self.summary.status = RunStatus.FAILED
            else:
                self.summary.status, self.summary.error = final_status(c, self.run_id)
            ws.close()  # committed; the warehouse file is free for the post hooks
            self._post_hooks(options.trigger)
        except GuardError as exc:
            self.summary.status = RunStatus.GUARDED
            self.summary.error = exc.message
        except BackhaulError as exc:
            self.summary.status = RunStatus.FAILED
            # The first failure is the cause (a full disk that stopped sending also fails
            # the clean-up after it).
            self.summary.error = self.summary.error or exc.message
        except KeyboardInterrupt:
            self.summary.status = RunStatus.CANCELLED
            self.summary.error = "cancelled"
            raise
        except Exception as exc:  # a bug: recorded as a failed run (never left `running`),
            # then raised on for its traceback
            self.summary.status = RunStatus.FAILED
            self.summary.error = self.summary.error or (
                f"the run stopped on an unexpected error ({type(exc).__name__}: "
                f"{first_line(exc)}); rows not acknowledged stay pending for the next run. "
                "This is a bug: please report it with the traceback"
            )
            raise
        finally:
            recorder.flush()
            self.summary.wait_s = self.waits.total_s
            self.summary.finished_at = datetime.now(UTC)
            self.store.finish_run(self.summary)
            self.db.shutdown(wait=True)
            ws.close()
            self._prune_row_logs()
            self._close_budgets()
            self._write_back()
            self.events(RunFinished(self.summary))
        return self.summary

    def _apply(self, ws: Workspace, plan: SyncPlan) -> int:
        """Turn a plan that passed the guards into the outbox; returns its rows."""
        with ws.guard(Phase.PLAN):
            return build_outbox(
                ws, plan.relations, target="st.outbox", identity=Identity.of(plan.settings)
            )

    def _quota_warning(self, counts: Counts) -> str | None:
        """The plan's quota warning, said again as the run starts sending."""
        dest = destination_def(self.project, self.sync)
        calls = estimated_calls(counts, self.settings.batch_size, self.settings.removal)
        try:
            return quota_warning(dest, calls, self.budgets)
        except Exception:  # the budget store is checked again on every call; say nothing
            return None

    def _close_budgets(self) -> None:
        close = getattr(self.budgets, "close", None)
        if close is not None:
            close()

    def _post_hooks(self, trigger: str) -> None:
        """The sync's post hooks; one failing fails the run, what was delivered stays."""
        if hook_list(self.project, self.sync, "post").statements:
            self.events(PhaseStarted(self.run_id, self.sync.name, RunPhase.HOOKS))
        try:
            run_hooks(
                self.project, self.sync, "post", post_variables(self.summary, trigger=trigger)
            )
        except HookError as exc:
            earlier = self.summary.error if self.summary.status is RunStatus.FAILED else None
            self.summary.status = RunStatus.FAILED
            self.summary.error = exc.message + (
                f" (the run had failed before: {earlier})" if earlier else ""
            )

    def _prune_row_logs(self) -> None:
        """Row-log retention, after every run; a failure is logged, the run stands."""
        prune = getattr(self.store, "prune_row_logs", None)
        if prune is None:
            return
        try:
            prune()
        except Exception as exc:
            log.warning("row-log retention failed after run %s: %s", self.run_id, exc)

    def _failed_before_start(self, exc: BackhaulError) -> RunSummary:
        """Record a run that failed before its state was opened (nothing was sent)."""
        self.events(RunStarted(self.run_id, self.sync.name))
        self.summary.status = RunStatus.FAILED
        self.summary.error = exc.message
        self.summary.finished_at = datetime.now(UTC)
        self.store.finish_run(self.summary)
        self.db.shutdown(wait=True)
        self.events(RunFinished(self.summary))
        return self.summary

    def _write_back(self) -> None:
        """Append the run and its row outcomes to the warehouse when the sync asks for it."""
        config = self.sync.config.writeback
        if not config.enabled:
            return
        from backhaul.observe.writeback import write_back

        try:
            write_back(self.project, self.sync.name, self.summary, self.store, config)
        except Exception as exc:  # the run's own result stands; say why the log is missing
            message = exc.message if isinstance(exc, BackhaulError) else str(exc).split("\n")[0]
            self.events(
                Notice(self.run_id, self.sync.name, f"sync logs were not written back: {message}")
            )

    def _record_invalid(self, ws: Workspace) -> None:
        rows = invalid_rows(ws)
        if not rows:
            return
        self.store.add_rows(
            self.run_id,
            [RowOutcome(k, RowOp.INVALID, RowStatus.INVALID, reason) for k, reason in rows],
        )
        self.summary.invalid_samples = [{"key": k, "reason": r} for k, r in rows[:20]]

    def _sends_anything(self) -> bool:
        """Whether any outbox row needs the destination (skips and ignored removals do not)."""
        assert self.ws is not None
        ops = ["'add'", "'change'", "'retry'"]
        if self.sync.config.removal is not OnRemove.NOTHING:
            ops += ["'remove'", "'rekey'"]
        sql = f"SELECT count(*) FROM st.outbox WHERE op IN ({', '.join(ops)})"
        return bool(scalar(self.ws.con, sql))

    def _field_types(self) -> dict[str, pa.DataType]:
        assert self.ws is not None
        ws = self.ws
        cols = ", ".join(f"f{i}" for i in range(len(ws.mapper.fields)))
        schema = arrow_table(ws.con, f"SELECT {cols} FROM st.outbox LIMIT 0")
        table = rename_fields(schema, ws.mapper.fields)
        types = {f.name: f.type for f in table.schema}
        for m in ws.mapper.mappings:
            if isinstance(m, TemplateMapping):
                types[m.field] = TEMPLATE_TYPES.get(m.cast, pa.string()) if m.cast else pa.string()
            elif pa.types.is_null(types[m.field]):
                types[m.field] = pa.string()
        return types

    async def _send(self, dest: Destination, total: int) -> None:
        assert self.ws is not None
        ws = self.ws
        cfg = self.sync.config
        tasks: list[asyncio.Task[None]] = []  # every batch started, finished or not
        try:
            if await self._db(self._sends_anything):
                await dest.check()
                await dest.prepare(self._field_types(), ws.match_fields, cfg.object)
            self.commits = CommitGroup(
                store=self.store,
                run_id=self.run_id,
                calls=self.recorder,
                checkpoint=lambda acked, rejected: self.backend.commit_batch(
                    ws, self.run_id, acked, rejected
                ),
                counts=lambda: self.summary.counts,
                wait_s=lambda: self.waits.total_s,
                offload=self._db,
            )
            batch_size = self.settings.batch_size
            sem = asyncio.Semaphore(self.settings.concurrency)
            stop = asyncio.Event()
            progress = {"sent": 0}

            async def handle(idx: int, lo: int, hi: int) -> None:
                try:
                    if stop.is_set() or self.cancel.is_set():
                        return
                    await self._chunk(dest, idx, lo, hi, total, progress)
                except (DestinationError, StateError) as exc:  # stop sending what cannot land
                    if self.summary.error is None:
                        self.summary.error = exc.message
                    stop.set()
                finally:
                    sem.release()

            # Old records of rekeyed keys (the outbox's first rows) are all removed before
            # any new record is written, so no write can land on a record about to go.
            rekeys = await self._db(
                lambda: int(
                    scalar(ws.con, "SELECT count(*) FROM st.outbox WHERE op = 'rekey'") or 0
                )
            )
            idx = 0
            for first, end in ((0, rekeys), (rekeys, total)):
                group: list[asyncio.Task[None]] = []
                for lo in range(first, end, batch_size):
                    await sem.acquire()
                    if stop.is_set() or self.cancel.is_set():
                        sem.release()
                        break
                    hi = min(lo + batch_size, end)
                    task = asyncio.create_task(handle(idx, lo, hi))
                    group.append(task)
                    tasks.append(task)
                    idx += 1
                await asyncio.gather(*group)
        except DestinationError as exc:
            self.summary.error = exc.message
        finally:
            # A batch that failed in a way no connector foresaw stops the others before the
            # destination closes: one still running could open a connection on a closed
            # client, and nothing would ever close it.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await dest.close()

    async def _load_at_once(self, dest: Destination, load: FirstLoad) -> bool:
        """Send a plan that only adds rows in one statement (engine/plan/first_load.py).

        Returns False when the destination declined and wrote nothing: the caller sends
        the same rows in batches. A destination error ends sending, as in :meth:`_send`.
        """
        assert self.ws is not None and isinstance(dest, LoadsAtOnce)
        ws = self.ws
        declined = False
        try:
            await dest.check()
            await dest.prepare(load.types, ws.match_fields, self.sync.config.object)
            loaded: bool | None = None
            if isinstance(dest, LoadsInDuckDB):
                loaded = await self._db(self._load_in_workspace, dest, load)
            where = " inside the workspace" if loaded is not None else ""
            if loaded is None:
                rows = await self._db(load.stream, ws)
                try:
                    loaded = await dest.load_new(rows, load.shape(ws))
                finally:
                    rows.close()
                    await self._db(load.streamed, ws)
            declined = not loaded
        except DestinationError as exc:
            self.summary.error = exc.message
            return True
        finally:
            # Closed before the snapshot is written, so its memory is free by then; the
            # batches that follow a declined load use it still.
            if not declined:
                await dest.close()
        if declined:
            return False
        log.info("run %s: %d rows loaded in one statement%s", self.run_id, load.rows, where)
        await self._db(self._commit_load, load)
        counts = self.summary.counts
        self.events(
            BatchDone(
                self.run_id, self.sync.name, load.rows, counts.succeeded, counts.rejected, load.rows
            )
        )
        return True

    def _load_in_workspace(self, dest: LoadsInDuckDB, load: FirstLoad) -> bool | None:
        """The load run in the workspace itself, its rows in order (on the database
        thread); None when the destination cannot take it there."""
        assert self.ws is not None
        ws = self.ws
        ws.keep_order(True)
        try:
            return dest.load_new_in(ws.con, load.select, load.shape(ws))
        finally:
            ws.keep_order()

    def _commit_load(self, load: FirstLoad) -> None:
        """Record a load that committed, in a batch's order (engine/commits.py): the
        counts, then the snapshot, then the row log (on the database thread)."""
        assert self.ws is not None
        ws = self.ws
        done = dataclasses.replace(self.summary.counts)
        tally(done, RowOp.ADD.value, RowStatus.OK, load.rows)
        self.store.record_batches(self.run_id, [], [], done, wait_s=self.waits.total_s)
        with ws.guard(Phase.CHECKPOINT):
            load.checkpoint(ws)
        self.summary.counts = done
        if not self.store.write_row_log(self.run_id, ws.con, load.outcomes_sql(ws)):
            for block in load.outcomes(ws):
                self.store.append_row_log(self.run_id, [block])

    async def _chunk(
        self, dest: Destination, idx: int, lo: int, hi: int, total: int, progress: dict[str, int]
    ) -> None:
        assert self.ws is not None
        ws = self.ws
        cfg = self.sync.config
        chunk = await self._db(self._outbox_rows, lo, hi, total)
        chunk = self._hold_rekeyed(chunk)
        split = await asyncio.to_thread(
            split_chunk,
            chunk,
            ws.mapper,
            mode=cfg.mode,
            removal=cfg.removal,
            match_fields=ws.match_fields,
            object=cfg.object,
            batch_id=idx,
        )
        counts: Counts = self.summary.counts
        if split.invalid:
            self.store.add_rows(self.run_id, split.invalid)
            counts.invalid += len(split.invalid)
            for outcome in split.invalid:  # they were planned as sends; now they are invalid
                if outcome.op is RowOp.ADD:
                    counts.added -= 1
                elif outcome.op is RowOp.RETRY:
                    counts.retried -= 1
                else:
                    counts.changed -= 1
        for prepared in split.prepared:
            results = None
            if prepared.batch is not None:
                results = await self._write(dest, prepared.batch)
            landed = partition_results(prepared, results, ws.layout.key_cols, ws.layout.match_cols)
            rekey = _is_rekey(prepared.rows)
            if rekey:
                landed = dataclasses.replace(landed, outcomes=self._rekey_outcomes(landed.outcomes))
            outcomes = landed.outcomes
            # Outcomes first, then the checkpoint, grouped with the batches that finished
            # alongside (engine/commits.py); durable when this returns.
            assert self.commits is not None  # made by _send
            await self.commits.commit(landed)
            if rekey:
                progress["sent"] += prepared.rows.num_rows - outcomes.num_rows
                if not outcomes.num_rows:
                    continue
            tally_outcomes(counts, outcomes)
            progress["sent"] += outcomes.num_rows
            self.events(
                BatchDone(
                    self.run_id,
                    self.sync.name,
                    progress["sent"],
                    counts.succeeded,
                    counts.rejected,
                    total,
                )
            )

    def _outbox_rows(self, lo: int, hi: int, total: int) -> pa.Table:
        """Outbox rows ``lo <= seq < hi`` (on the database thread).

        One query per batch cost more than a fast destination's call (each scans the
        outbox's row group), so rows are read ahead up to :data:`READ_AHEAD_ROWS` at a
        time and later batches are cut from that block.
        """
        assert self.ws is not None
        block = self._block
        if block is None or not block[0] <= lo < hi <= block[1]:
            stop = min(total, max(hi, lo + READ_AHEAD_ROWS))
            table = arrow_table(
                self.ws.con,
                f"SELECT {SEQ} AS seq, * FROM st.outbox WHERE {SEQ} >= ? AND {SEQ} < ? "
                f"ORDER BY {SEQ}",
                [lo, stop],
            )
            block = self._block = (lo, stop, table)
        first, last, table = block
        if (first, hi) == (lo, last):
            return table
        if table.num_rows == last - first:  # every seq of the block present: cut by position
            return table.slice(lo - first, hi - lo)
        seq = table.column("seq")
        return table.filter(pc.and_(pc.greater_equal(seq, lo), pc.less(seq, hi)))

    def _hold_rekeyed(self, chunk: pa.Table) -> pa.Table:
        """Drop the new records of keys whose old record could not be removed this run:
        written now, the old one would be left behind. Both go again next run."""
        if not self.held or not chunk.num_rows:
            return chunk
        held = pa.array(sorted(self.held), pa.string())
        keep = pc.invert(
            pc.and_(
                pc.is_in(chunk.column("key_text"), held), pc.not_equal(chunk.column("op"), "remove")
            )
        )
        return chunk.filter(keep)

    def _rekey_outcomes(self, outcomes: pa.Table) -> pa.Table:
        """Outcomes worth a row of their own among a batch of old records removed: only the
        refused ones, which stand for their key's change (its new record is held back)."""
        refused = outcomes.filter(pc.equal(outcomes.column("status"), "rejected"))
        self.held.update(str(k) for k in refused.column("key").to_pylist())
        errors = pc.binary_join_element_wise(
            "the record under the old match values could not be removed (",
            refused.column("error"),
            "); the new one was not written",
            "",
        )
        refused = refused.set_column(refused.schema.get_field_index("error"), "error", errors)
        change = pa.array(["change"] * refused.num_rows, pa.string())
        return refused.set_column(refused.schema.get_field_index("op"), "op", change)

    async def _write(self, dest: Destination, batch: Batch) -> Sequence[RecordResult]:
        attempt = 0
        while True:
            try:
                return await dest.write(batch)
            except DestinationError as exc:
                attempt += 1
                if exc.failure is FailureType.REJECTED:
                    msg = exc.message
                    return [RecordResult.rejected(i, msg) for i in range(len(batch))]
                if (
                    exc.failure is not FailureType.TRANSIENT
                    or attempt > ENGINE_RETRIES
                    or isinstance(exc, QuotaSpentError)  # no retry helps before it resets
                ):
                    raise
                delay = exc.retry_after or 0.5 * 2**attempt
                kind = WaitKind.RATE_LIMIT if exc.status == 429 else WaitKind.RETRY
                self.waits.announce(
                    kind,
                    delay,
                    f"batch {batch.batch_id} failed ({exc.message}); "
                    f"batch retry {attempt} of {ENGINE_RETRIES}",
                )
                await self.waits.held(kind, asyncio.sleep(delay))


def _is_rekey(rows: pa.Table) -> bool:
    return bool(rows.num_rows) and rows.column("op")[0].as_py() == "rekey"


def run_sync(
    project: Project,
    name: str,
    *,
    store: RunStore,
    full_resync: bool = False,
    force: bool = False,
    events: EventSink = ignore,
    trigger: str = "cli",
    cancel: threading.Event | None = None,
) -> RunSummary:
    """Run one sync to completion and return its summary.

    Setting ``cancel`` stops the run between batches: what was acknowledged stays
    committed, the rest stays pending, and the run ends with status ``cancelled``.
    Raises :class:`ConfigError` (before any state changes) when the sync cannot start, and
    :class:`~backhaul.errors.ApprovalRequired` (before anything is opened) when the project
    requires approval and its commit is not approved or its files are not committed.
    """
    sync = project.sync(name)
    head = approval.check(project, store)  # the one gate of every run (docs/git.md)
    return SyncRun(project, sync, store, events, cancel).execute(
        RunOptions(full_resync=full_resync, force=force, trigger=trigger, head=head)
    )


def plan_sync(
    project: Project, name: str, *, full_resync: bool = False, sample: int = 5, force: bool = False
) -> RunSummary:
    """A dry run: what a run would send, with samples. Nothing is sent; state is untouched."""
    sync = project.sync(name)
    settings = settings_for(project, sync)
    started = datetime.now(UTC)
    ws = open_planning(project, sync, settings, read_only=True)
    try:
        # The same computation a run makes; the dry run stops before the outbox.
        backend = backend_for(ws)
        plan = compute(ws, backend, settings, full_resync=full_resync, force=force)
        summary = RunSummary(
            "dry-run",
            name,
            RunStatus.SUCCEEDED,
            plan.planned_counts(),
            started_at=started,
            full_resync=full_resync,
            dry_run=True,
        )
        if plan.verdict.guarded:
            summary.status = RunStatus.GUARDED
            summary.error = plan.verdict.message
        summary.warnings = _plan_warnings(project, sync, plan)
        if sample:
            summary.samples = samples(ws, plan.relations, sample, Identity.of(settings))
        summary.invalid_samples = [{"key": k, "reason": r} for k, r in invalid_rows(ws, 20)]
        summary.notes = [
            *plan.notes,
            *skipped_hooks_note(project, sync),
            *_load_note(project, sync, ws, plan, backend),
        ]
        summary.finished_at = datetime.now(UTC)
        return summary
    finally:
        ws.close()


def _load_note(
    project: Project, sync: SyncDef, ws: Workspace, plan: SyncPlan, backend: PlanBackend
) -> list[str]:
    """Whether a first run would send the plan in one statement (engine/plan/first_load.py).

    Said only when every model row is new, as on a first run: new rows added to a synced
    model fit the same path, but their table has rows, and the destination declines."""
    c = plan.counts
    if c.added != c.queried - c.invalid:
        return []
    kind = project.registry.destination(destination_def(project, sync).config.type)
    load = first_load(ws, plan, kind, backend)
    if load is None:
        return []
    return [
        f"first load: the {load.rows} added row(s) go in one statement if the table holds "
        "no row when the run begins (else in batches)"
    ]


def _plan_warnings(project: Project, sync: SyncDef, plan: SyncPlan) -> list[str]:
    """What the plan should say before anything is sent: a daily quota it would exceed."""
    dest = destination_def(project, sync)
    if quota_of(dest) is None:
        return []
    settings = plan.settings
    calls = estimated_calls(plan.counts, settings.batch_size, settings.removal)
    engine = None
    store: RunStore | None = None
    if not project.config.state.budget_url and project.metadata_url.startswith("postgres"):
        from backhaul.state.store import RunStore

        store = RunStore.open(project.metadata_url)
        engine = store.engine
    try:
        with opened(project, engine) as budgets:
            warning = quota_warning(dest, calls, budgets)
    finally:
        if store is not None:
            store.close()
    return [warning] if warning else []


__all__ = ["plan_sync", "run_sync"]
