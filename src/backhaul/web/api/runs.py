"""``/api/v1/runs``: run history, per-row outcomes, recorded HTTP calls, live progress
(polled or as server-sent events) and cancelling a run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict
from dataclasses import fields
from datetime import datetime

from fastapi import HTTPException
from fastapi.responses import Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from pydantic import Field
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from backhaul.errors import RowLogError
from backhaul.state.reader import RunReader
from backhaul.state.reader import RunRecord
from backhaul.state.reader import store_if_log_unreadable
from backhaul.summary import Counts
from backhaul.summary import RowOutcome
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import MAX_PAGE
from backhaul.web.api.base import Limit
from backhaul.web.api.base import Offset
from backhaul.web.api.base import json_bytes
from backhaul.web.api.base import not_found
from backhaul.web.api.base import resource_router
from backhaul.web.auth import Operator
from backhaul.web.deps import ReaderDep
from backhaul.web.deps import RunsDep
from backhaul.web.runs import RunManager

router = resource_router()


class RunOut(BaseModel):
    run_id: str
    sync: str
    status: str
    trigger: str
    full_resync: bool
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    duration_s: float
    error: str | None
    git_commit: str | None
    git_dirty: bool | None = Field(
        None,
        description="The project's files differed from `git_commit` when the run started "
        "(null: not in Git, or recorded before this was kept).",
    )
    counts: dict[str, int]
    wait_s: float = Field(
        0.0,
        description="Seconds during which at least one call waited for the destination "
        "(rate-limit pauses, retries, client-side throttling).",
    )


class RowCount(BaseModel):
    op: str
    status: str
    count: int


class ProgressOut(BaseModel):
    run_id: str
    sync: str
    status: str
    phase: str
    live: bool
    total: int | None = None
    sent: int = 0
    succeeded: int = 0
    rejected: int = 0
    error: str | None = None
    waiting: str | None = Field(
        None, description="The latest wait of a live run, as one line (`waiting 10 s: ...`)."
    )


_ROW_LOG_ERROR = (
    "Why the run's row log (its ok and skipped rows) could not be read; null when it was. "
    "When set, the rows and counts beside it are those the store keeps (rejected, invalid)."
)


class RunDetail(RunOut):
    row_counts: list[RowCount]
    progress: ProgressOut
    row_log_error: str | None = Field(None, description=_ROW_LOG_ERROR)


class RowOut(BaseModel):
    key: str
    op: str
    status: str
    operation: str | None
    error: str | None
    call_id: str | None


class CallOut(BaseModel):
    call_id: str
    method: str
    url: str
    status: int | None
    latency_ms: float
    attempt: int
    error: str | None
    started_at: datetime
    wait_ms: float = Field(
        0.0, description="How long the attempt was held back before it was sent."
    )
    wait_reason: str | None = Field(
        None, description="Why it waited: a rate-limit pause, a retry's backoff, throttling."
    )


class CallDetail(CallOut):
    request_headers: dict[str, str]
    response_headers: dict[str, str] = Field(
        default_factory=dict, description="Redacted like the request headers."
    )
    request_body: str | None
    response_body: str | None
    rows: list[RowOut]
    row_log_error: str | None = Field(None, description=_ROW_LOG_ERROR)


class CancelOut(BaseModel):
    run_id: str
    cancelled: bool


_RUN_LIST = TypeAdapter(list[RunOut])
_COUNT_NAMES = tuple(f.name for f in fields(Counts))


def counts_dict(counts: Counts) -> dict[str, int]:
    """``counts.as_dict()`` without ``dataclasses.asdict``'s deep copy (10x faster)."""
    return {name: getattr(counts, name) for name in _COUNT_NAMES}


def run_out(r: RunRecord) -> RunOut:
    return RunOut(
        run_id=r.run_id,
        sync=r.sync,
        status=r.status.value,
        trigger=r.trigger,
        full_resync=r.full_resync,
        dry_run=r.dry_run,
        started_at=r.started_at,
        finished_at=r.finished_at,
        duration_s=r.duration_s,
        error=r.error,
        git_commit=r.git_commit,
        git_dirty=r.git_dirty,
        counts=counts_dict(r.counts),
        wait_s=round(r.wait_s, 3),
    )


def _progress(runs: RunManager, record: RunRecord) -> ProgressOut:
    live = runs.progress(record.run_id)
    c = record.counts
    base = ProgressOut(
        run_id=record.run_id,
        sync=record.sync,
        status=record.status.value,
        phase="running" if record.status.value == "running" else "done",
        live=False,
        total=c.planned,
        sent=c.succeeded + c.rejected,
        succeeded=c.succeeded,
        rejected=c.rejected,
        error=record.error,
    )
    if live is None or record.status.value != "running":
        return base
    return base.model_copy(
        update={
            "live": True,
            "phase": live.get("phase", "running"),
            "total": live.get("total"),
            "sent": live.get("sent", 0),
            "succeeded": live.get("succeeded", 0),
            "rejected": live.get("rejected", 0),
            "waiting": live.get("waiting"),
        }
    )


def _run_or_404(reader: RunReader, run_id: str) -> RunRecord:
    record = reader.run(run_id)
    if record is None:
        raise not_found(f"run `{run_id}`")
    return record


def _row_out(r: RowOutcome) -> RowOut:
    return RowOut(
        key=r.key,
        op=str(r.op),
        status=r.status,
        operation=r.operation,
        error=r.error,
        call_id=r.call_id,
    )


@router.get("/runs", response_model=list[RunOut], responses=ERRORS)
def list_runs(
    reader: ReaderDep, sync: str | None = None, limit: Limit = 50, offset: Offset = 0
) -> Response:
    """Runs newest first, of one sync or all."""
    found = [run_out(r) for r in reader.runs(sync, limit=limit, offset=offset)]
    # Serialised here: the models are already valid, and FastAPI would validate them again.
    return Response(json_bytes(_RUN_LIST, found), media_type="application/json")


@router.get("/runs/{run_id}", response_model=RunDetail, responses=ERRORS)
def get_run(run_id: str, reader: ReaderDep, runs: RunsDep) -> RunDetail:
    """One run with its counts, rows per operation and status, and progress."""
    record = _run_or_404(reader, run_id)
    found, why = store_if_log_unreadable(lambda log: reader.row_counts(record.run_id, row_log=log))
    counts = [RowCount(op=op, status=st, count=n) for (op, st), n in sorted(found.items())]
    return RunDetail(
        **run_out(record).model_dump(),
        row_counts=counts,
        progress=_progress(runs, record),
        row_log_error=why,
    )


@router.get("/runs/{run_id}/rows", response_model=list[RowOut], responses=ERRORS)
def get_rows(
    run_id: str,
    reader: ReaderDep,
    status: str | None = None,
    key: str | None = None,
    op: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[RowOut]:
    """Per-row outcomes, filtered by status, primary key or operation.

    When the run's row log cannot be read, a filter that needs it (no status, or `ok` or
    `skipped`) answers 409 `row_log_unreadable` saying why, rather than a list short of
    rows; `status=rejected` and `status=invalid` still answer from the store.
    """
    record = _run_or_404(reader, run_id)
    try:
        rows = reader.rows(record.run_id, status=status, key=key, op=op, limit=limit, offset=offset)
    except RowLogError as exc:
        raise RowLogError(
            f"{exc.message}; list those with status=rejected or status=invalid"
        ) from None
    return [_row_out(r) for r in rows]


@router.get("/runs/{run_id}/calls", response_model=list[CallOut], responses=ERRORS)
def get_calls(
    run_id: str, reader: ReaderDep, limit: Limit = 100, offset: Offset = 0
) -> list[CallOut]:
    """The run's HTTP calls (bodies in the call detail), oldest first."""
    record = _run_or_404(reader, run_id)
    calls = reader.calls(record.run_id, limit=limit, offset=offset)
    return [CallOut.model_validate(c, from_attributes=True) for c in calls]


@router.get("/runs/{run_id}/calls/{call_id}", response_model=CallDetail, responses=ERRORS)
def get_call(run_id: str, call_id: str, reader: ReaderDep) -> CallDetail:
    """One HTTP call with its (redacted) headers and bodies and the rows it carried."""
    record = _run_or_404(reader, run_id)
    call = reader.call(record.run_id, call_id)
    if call is None:
        raise not_found(f"call `{call_id}` in run `{record.run_id}`")
    rows, why = store_if_log_unreadable(
        lambda log: reader.rows(record.run_id, call_id=call_id, limit=MAX_PAGE, row_log=log)
    )
    return CallDetail(**asdict(call), rows=[_row_out(r) for r in rows], row_log_error=why)


@router.get("/runs/{run_id}/progress", response_model=ProgressOut, responses=ERRORS)
def get_progress(run_id: str, reader: ReaderDep, runs: RunsDep) -> ProgressOut:
    """Live progress of a run (final counts once it ended)."""
    return _progress(runs, _run_or_404(reader, run_id))


@router.get("/runs/{run_id}/events", responses=ERRORS, response_class=StreamingResponse)
async def run_events(run_id: str, reader: ReaderDep, runs: RunsDep) -> StreamingResponse:
    """Server-sent events: a `progress` event twice a second until the run ends."""
    await run_in_threadpool(_run_or_404, reader, run_id)

    async def stream() -> AsyncIterator[str]:
        for _ in range(2 * 3600 * 2):  # at most two hours
            record = await run_in_threadpool(_run_or_404, reader, run_id)
            progress = _progress(runs, record)
            yield f"event: progress\ndata: {progress.model_dump_json()}\n\n"
            if progress.status != "running":
                return
            await asyncio.sleep(0.5)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )


@router.post("/runs/{run_id}/cancel", status_code=202, response_model=CancelOut, responses=ERRORS)
def cancel_run(run_id: str, user: Operator, reader: ReaderDep, runs: RunsDep) -> CancelOut:
    """Stop a run after its current batches (operator or above); 409 if it is not running."""
    record = _run_or_404(reader, run_id)
    # A run that has stored its final status is over, even while its thread still tidies up.
    finished = record.status.value != "running"
    if finished or not runs.cancel(record.run_id, user=user):
        raise HTTPException(409, f"run `{record.run_id}` is not running in this server")
    return CancelOut(run_id=record.run_id, cancelled=True)


__all__ = [
    "CallDetail",
    "CallOut",
    "CancelOut",
    "ProgressOut",
    "RowCount",
    "RowOut",
    "RunDetail",
    "RunOut",
    "counts_dict",
    "router",
    "run_out",
]
