"""Dry runs from the web app: what a run of a sync would add, change and remove, with
samples, made by the same function as `backhaul plan` (:func:`backhaul.api.plan`: every
check `validate` makes, then the plan; nothing is sent and no state changes).

A plan reads the model from the warehouse, so it takes the operator role, as a run does.
"""

from __future__ import annotations

from typing import Annotated
from typing import Any

from fastapi import APIRouter
from fastapi import Form
from fastapi import HTTPException
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic import Field

from backhaul import api
from backhaul.config.project import Project
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigErrors
from backhaul.pyvalues import shown
from backhaul.summary import RunSummary
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import json_router
from backhaul.web.api.base import jsonable
from backhaul.web.auth import Operator
from backhaul.web.auth import Role
from backhaul.web.deps import ProjectDep
from backhaul.web.deps import templates
from backhaul.web.pages import not_found

api_router = json_router("/api/v1/syncs", Role.OPERATOR, tag="syncs")
page_router = APIRouter(include_in_schema=False)

# Rows shown per kind of change on the page (the API takes `sample`).
PAGE_SAMPLE = 10
# The order the kinds of change are shown in, as `backhaul plan` prints them.
KINDS = ("rekey", "add", "change", "retry", "remove", "skip")


class PlanIn(BaseModel):
    sample: int = Field(5, ge=0, le=100, description="Rows to return per kind of change.")
    full_resync: bool = Field(False, description="Plan a full resync (every row resent).")


def _plan(project: Project, name: str, sample: int, full_resync: bool) -> RunSummary:
    if name not in project.syncs and not project.broken_errors("syncs", name):
        raise HTTPException(404, f"no sync `{name}`")
    return api.plan(project, name, full_resync=full_resync, sample=sample)


@api_router.post("/{name}/plan", responses=ERRORS)
def plan_sync(name: str, project: ProjectDep, body: PlanIn | None = None) -> dict[str, Any]:
    """A dry run (operator or above): the JSON of `backhaul plan SYNC --json`."""
    wanted = body or PlanIn()
    summary = _plan(project, name, wanted.sample, wanted.full_resync)
    found: dict[str, Any] = jsonable(summary.plan_dict())
    return found


@page_router.post("/syncs/{name}/plan", response_class=HTMLResponse)
def plan_page(
    request: Request,
    name: str,
    user: Operator,
    project: ProjectDep,
    full_resync: Annotated[bool, Form()] = False,
) -> Response:
    """The sync page's Preview changes button: counts and sampled rows of each kind."""
    if name not in project.syncs and not project.broken_errors("syncs", name):
        return not_found(request, user, "sync", name)
    summary: RunSummary | None = None
    problems: list[str] = []
    try:
        summary = _plan(project, name, PAGE_SAMPLE, full_resync)
    except ConfigErrors as exc:
        problems = [e.message for e in exc.errors]
    except BackhaulError as exc:
        problems = [exc.message]
    tables = []
    if summary is not None:
        for kind in KINDS:
            rows = summary.samples.get(kind) or []
            if rows:
                columns = list(rows[0])
                cells = [[shown(row.get(c), 200) for c in columns] for row in rows]
                tables.append({"kind": kind, "columns": columns, "rows": cells})
    context = {
        "user": user,
        "title": f"Dry run of {name}",
        "name": name,
        "summary": summary,
        "counts": summary.counts if summary is not None else None,
        "tables": tables,
        "invalid": [
            {"key": shown(r.get("key"), 200), "reason": str(r.get("reason"))}
            for r in (summary.invalid_samples if summary is not None else [])
        ],
        "problems": problems,
        "full_resync": full_resync,
    }
    status = 200 if summary is not None else 400
    return templates.TemplateResponse(request, "plan.html", context, status_code=status)


__all__ = ["api_router", "page_router"]
