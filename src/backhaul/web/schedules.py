"""Schedules in the web app: ``/api/v1/schedules`` and pause/resume of a sync (audited).

Viewers read schedules and next runs; operators pause and resume.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import HTTPException
from fastapi import Request
from pydantic import BaseModel
from pydantic import Field

from backhaul.config.project import Project
from backhaul.schedule.state import ScheduleStore
from backhaul.schedule.timetable import NextRun
from backhaul.schedule.timetable import Timetable
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import json_router
from backhaul.web.auth import Operator
from backhaul.web.auth import User
from backhaul.web.cache import AnswerCache
from backhaul.web.deps import ProjectDep

api_router = json_router("/api/v1", tag="schedules")


class ScheduleOut(BaseModel):
    sync: str
    schedule: str = Field(description="`every 15m`, `cron 0 6 * * * (UTC)`, `after a, b`, ...")
    kind: str = Field(description="interval, cron, after, dbt or manual")
    paused: bool
    next_run_at: datetime | None = Field(
        None, description="The expected next run of an interval or cron schedule (UTC)."
    )
    next_run: str = Field(description="The next run in words, as the overview shows it.")


class PauseOut(BaseModel):
    sync: str
    paused: bool
    changed: bool


def schedule_out(found: NextRun) -> ScheduleOut:
    return ScheduleOut(
        sync=found.sync,
        schedule=found.schedule,
        kind=found.kind,
        paused=found.paused,
        next_run_at=found.at,
        next_run=found.label(),
    )


def set_paused(state: Any, sync: str, user: User, paused: bool) -> bool:
    """Pause or resume ``sync`` for ``user`` (audited); True when that changed anything."""
    schedules = ScheduleStore(state.store)
    changed = schedules.pause(sync, user.username) if paused else schedules.resume(sync)
    if changed:
        state.users.audit(user.username, "schedule_pause" if paused else "schedule_resume", sync)
    timetable: Timetable = state.timetable
    timetable.refresh()
    cache: AnswerCache = state.cache
    cache.invalidate()
    return changed


@api_router.get("/schedules", response_model=list[ScheduleOut], responses=ERRORS)
def list_schedules(request: Request) -> list[ScheduleOut]:
    """Every sync's schedule, whether it is paused, and its next run."""
    timetable: Timetable = request.app.state.timetable
    return [schedule_out(n) for n in timetable.next_runs().values()]


def _pause(request: Request, name: str, user: User, project: Project, paused: bool) -> PauseOut:
    if name not in project.syncs:
        raise HTTPException(404, f"no sync `{name}`")
    changed = set_paused(request.app.state, name, user, paused)
    return PauseOut(sync=name, paused=paused, changed=changed)


@api_router.post("/syncs/{name}/pause", response_model=PauseOut, responses=ERRORS)
def pause_sync(request: Request, name: str, user: Operator, project: ProjectDep) -> PauseOut:
    """Pause the sync's schedule (operator or above): the scheduler starts none of its runs."""
    return _pause(request, name, user, project, True)


@api_router.post("/syncs/{name}/resume", response_model=PauseOut, responses=ERRORS)
def resume_sync(request: Request, name: str, user: Operator, project: ProjectDep) -> PauseOut:
    """Resume the sync's schedule (operator or above); its next run is counted from now."""
    return _pause(request, name, user, project, False)


__all__ = ["api_router", "schedule_out", "set_paused"]
