"""``/api/v1/syncs``: every sync with its last run and next run, one sync's definition and
history, and starting a run."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from typing import Any

from fastapi import Query
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic import Field
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from backhaul.config.project import Project
from backhaul.config.project import SyncDef
from backhaul.files import NotReadable
from backhaul.files import read_text
from backhaul.schedule.timetable import NextRun
from backhaul.state.reader import RunReader
from backhaul.state.reader import RunRecord
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import json_bytes
from backhaul.web.api.base import not_found
from backhaul.web.api.base import resource_router
from backhaul.web.api.runs import RunOut
from backhaul.web.api.runs import run_out
from backhaul.web.auth import Operator
from backhaul.web.cache import AnswerCache
from backhaul.web.cache import SharedMemo
from backhaul.web.deps import CacheDep
from backhaul.web.deps import ProjectDep
from backhaul.web.deps import ReaderDep
from backhaul.web.deps import RunsDep
from backhaul.web.runs import RunManager
from backhaul.web.runs import latest_runs

# The list of syncs is the same for every caller; it is built at most once per this many
# seconds (sooner when a run starts or ends here) and its JSON shared meanwhile.
SYNCS_TTL = 1.0

router = resource_router()


class SyncSummary(BaseModel):
    name: str
    model: str
    destination: str
    mode: str
    enabled: bool
    tags: list[str]
    schedule: str = Field(
        "manual",
        description="`every 15m`, `cron 0 6 * * * (UTC)`, `after a, b`, `after dbt`, "
        "`manual` (`disabled` for a disabled sync).",
    )
    paused: bool = False
    next_run_at: datetime | None = Field(
        None, description="The expected next run of an interval or cron schedule (UTC)."
    )
    running: bool
    last_run: RunOut | None


class SyncOut(SyncSummary):
    definition: dict[str, Any]
    yaml: str
    runs: list[RunOut]


class TriggerIn(BaseModel):
    full_resync: bool = False


class TriggerOut(BaseModel):
    run_id: str
    sync: str
    status: str = "running"


_SYNC_LIST = TypeAdapter(list[SyncSummary])


def _sync_summary(
    s: SyncDef, last: RunRecord | None, running: bool, upcoming: NextRun | None = None
) -> SyncSummary:
    c = s.config
    return SyncSummary(
        schedule=upcoming.schedule if upcoming else c.schedule.describe(),
        paused=upcoming.paused if upcoming else False,
        next_run_at=upcoming.at if upcoming else None,
        name=s.name,
        model=c.model,
        destination=c.destination,
        mode=c.mode.value,
        enabled=c.enabled,
        tags=c.tags,
        running=running,
        last_run=run_out(last) if last else None,
    )


def sync_summaries(
    project: Project, reader: RunReader, runs: RunManager, cache: AnswerCache
) -> list[SyncSummary]:
    """Every sync with its last run and whether it is running now."""
    last = latest_runs(reader, cache)
    running = runs.running_syncs()
    upcoming = runs.timetable.next_runs()
    return [
        _sync_summary(s, last.get(n), n in running, upcoming.get(n))
        for n, s in sorted(project.syncs.items())
    ]


@router.get("/syncs", response_model=list[SyncSummary], responses=ERRORS)
async def list_syncs(
    project: ProjectDep, reader: ReaderDep, runs: RunsDep, cache: CacheDep
) -> Response:
    """Every sync with its last run."""
    shared: SharedMemo[bytes] = cache.memo("api_syncs", SYNCS_TTL)
    body = shared.peek()
    if body is None:
        body = await run_in_threadpool(
            shared.get, lambda: json_bytes(_SYNC_LIST, sync_summaries(project, reader, runs, cache))
        )
    return Response(body, media_type="application/json")


@router.get("/syncs/{name}", response_model=SyncOut, responses=ERRORS)
def get_sync(
    name: str,
    project: ProjectDep,
    reader: ReaderDep,
    runs: RunsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SyncOut:
    """A sync's definition (parsed and as the file shows it) and its recent runs."""
    sync = project.syncs.get(name)
    if sync is None:
        raise not_found(f"sync `{name}`")
    history = reader.runs(name, limit=limit)
    summary = _sync_summary(
        sync,
        history[0] if history else None,
        name in runs.running_syncs(),
        runs.timetable.next_runs().get(name),
    )
    try:
        file = sync.positions.file
        text = read_text(file if file.is_absolute() else project.root / file)
    except NotReadable:
        text = ""
    return SyncOut(
        **summary.model_dump(),
        definition=sync.config.model_dump(mode="json"),
        yaml=text,
        runs=[run_out(r) for r in history],
    )


@router.post("/syncs/{name}/runs", status_code=202, response_model=TriggerOut, responses=ERRORS)
def trigger_run(
    name: str, user: Operator, project: ProjectDep, runs: RunsDep, body: TriggerIn | None = None
) -> TriggerOut:
    """Start a run (operator or above); 409 when the sync is already running."""
    if name not in project.syncs:
        raise not_found(f"sync `{name}`")
    full = body.full_resync if body is not None else False
    run_id = runs.trigger(name, full_resync=full, user=user)
    return TriggerOut(run_id=run_id, sync=name)


__all__ = ["SyncOut", "SyncSummary", "TriggerIn", "TriggerOut", "router", "sync_summaries"]
