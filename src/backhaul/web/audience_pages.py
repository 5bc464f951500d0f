"""The audience pages: the list of audiences and the visual builder.

The builder page is rendered with everything it needs as JSON (the schema's columns and
operators, the audience as written, who may save): ``static/builder.js`` draws the
condition tree from it and asks :mod:`backhaul.web.audience_api` for sizes as it changes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from typing import Any

from fastapi import APIRouter
from fastapi import Query
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.responses import Response

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.catalog import Table
from backhaul.audiences.conditions import OPS_BY_TYPE
from backhaul.audiences.conditions import TIME_OPS
from backhaul.audiences.conditions import Op
from backhaul.audiences.defs import AudienceSchemaDef
from backhaul.audiences.editing import editor_view
from backhaul.audiences.editing import file_data
from backhaul.audiences.schema import ColumnSpec
from backhaul.config.loader import validate
from backhaul.config.models import NAME_PATTERN
from backhaul.config.project import Positions
from backhaul.config.project import Project
from backhaul.gitsave import Repo
from backhaul.gitsave import text_hash
from backhaul.web.audience_api import audience_path
from backhaul.web.audience_api import opened_for
from backhaul.web.auth import Role
from backhaul.web.auth import User
from backhaul.web.auth import Viewer
from backhaul.web.auth import csrf_token
from backhaul.web.deps import ProjectDep
from backhaul.web.deps import templates
from backhaul.web.opening import Opened
from backhaul.web.pages import not_found

router = APIRouter(include_in_schema=False)
_NAME = re.compile(NAME_PATTERN)


def _columns(table: Table, specs: dict[str, ColumnSpec]) -> list[dict[str, Any]]:
    out = []
    for name, kind in table.columns.items():
        spec = specs.get(name)
        out.append(
            {
                "name": name,
                "type": kind.value if kind is not None else None,
                "personal": name in table.personal,
                "label": (spec.label if spec else None) or name,
            }
        )
    return out


def catalog_view(schema: AudienceSchemaDef) -> dict[str, Any]:
    """What the builder offers: tables, columns with types, and operators by type."""
    cat, conf = schema.catalog, schema.config
    every = sorted(op.value for op in Op)
    return {
        "name": schema.name,
        "parent": {
            "model": cat.parent.model,
            "key": cat.parent.key,
            "columns": _columns(cat.parent, conf.parent.columns),
        },
        "related": {
            n: {
                "model": t.model,
                "cardinality": t.cardinality,
                "columns": _columns(t, conf.related[n].columns),
            }
            for n, t in cat.related.items()
        },
        "events": {
            n: {
                "model": t.model,
                "timestamp": t.timestamp,
                "columns": [
                    c for c in _columns(t, conf.events[n].columns) if c["name"] != t.timestamp
                ],
            }
            for n, t in cat.events.items()
        },
        "ops": {kind.value: sorted(op.value for op in ops) for kind, ops in OPS_BY_TYPE.items()}
        | {"": every},
        "time_ops": sorted(op.value for op in TIME_OPS),
    }


def builder_state(
    project: Project,
    user: User,
    schema: AudienceSchemaDef,
    name: str,
    config: AudienceConfig,
    files: Opened | None = None,
    lists: dict[str, Opened] | None = None,
) -> dict[str, Any]:
    """The builder page's JSON: schema, audience as written, other audiences, rights.

    ``files`` is where the audience's file is opened from (default: the checked-out file;
    the user's pending draft of it, see :mod:`backhaul.web.opening`), ``lists`` the same
    for each priority list."""
    files = files or Opened(project)
    lists = lists or {}
    text = files.read(audience_path(name)) if name else None
    return {
        "name": name,
        "schema": schema.name,
        "is_new": text is None,
        "base": text_hash(text),
        "draft": files.draft,
        "draft_note": files.note,
        "audience": editor_view(config),
        "catalog": catalog_view(schema),
        "audiences": sorted(
            n for n, a in project.audiences.items() if a.schema == schema.name and n != name
        ),
        "can_save": user.role.allows(Role.EDITOR),
        "can_sql": user.role.allows(Role.EDITOR),
        "has_tests": bool(config.tests),
        "priority_lists": [
            {
                "name": n,
                "audiences": list(p.config.audiences),
                "base": text_hash(lists.get(n, Opened(project)).read(f"priority_lists/{n}.yml")),
            }
            for n, p in sorted(project.priority_lists.items())
            if p.schema == schema.name
        ],
        "file": audience_path(name) if name else "",
        "git": Repo.find(project.root) is not None,
    }


def _render(
    request: Request,
    user: User,
    project: Project,
    schema: AudienceSchemaDef,
    name: str,
    config: AudienceConfig,
    files: Opened | None = None,
) -> HTMLResponse:
    files = files or Opened(project)
    lists = {
        n: opened_for(request, project, user, f"priority_lists/{n}.yml")
        for n, p in project.priority_lists.items()
        if p.schema == schema.name
    }
    state = builder_state(project, user, schema, name, config, files, lists)
    context = {
        "user": user,
        "title": name or "New audience",
        "state": state,
        "csrf": csrf_token(request),
        "yaml": files.read(audience_path(name)) if name else None,
    }
    return templates.TemplateResponse(request, "audience_builder.html", context)


@router.get("/audiences", response_class=HTMLResponse)
def audiences_page(request: Request, user: Viewer, project: ProjectDep) -> Response:
    """Every audience by schema, with a link to build a new one on each schema."""
    by_schema = {
        s: sorted(n for n, a in project.audiences.items() if a.schema == s)
        for s in sorted(project.audience_schemas)
    }
    context = {
        "user": user,
        "title": "Audiences",
        "schemas": project.audience_schemas,
        "by_schema": by_schema,
        "audiences": project.audiences,
        "can_save": user.role.allows(Role.EDITOR),
    }
    return templates.TemplateResponse(request, "audiences.html", context)


@router.get("/audiences/new", response_class=HTMLResponse)
def new_audience(
    request: Request,
    user: Viewer,
    project: ProjectDep,
    schema: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The builder on an empty audience of ``schema``."""
    found = project.audience_schemas.get(schema)
    if found is None:
        return not_found(request, user, "audience schema", schema)
    return _render(
        request, user, project, found, "", AudienceConfig.model_validate({"schema": schema})
    )


@router.get("/audiences/{name}", response_class=HTMLResponse)
def edit_audience(request: Request, name: str, user: Viewer, project: ProjectDep) -> Response:
    """The builder on a saved audience, as its file is written on disk now (or, for an
    editor with a pending draft of it, as that draft holds it)."""
    files = opened_for(request, project, user, audience_path(name)) if _NAME.match(name) else None
    text = files.read(audience_path(name)) if files is not None else None
    if text is None:
        return not_found(request, user, "audience", name)
    config, errors = validate(AudienceConfig, file_data(text), Positions(Path(audience_path(name))))
    schema = project.audience_schemas.get(config.schema_) if config is not None else None
    if config is None or schema is None:
        problems = [e.message for e in errors] or [
            f"{audience_path(name)}: schema: unknown audience schema"
        ]
        context = {"user": user, "title": name, "name": name, "problems": problems, "yaml": text}
        return templates.TemplateResponse(
            request, "audience_invalid.html", context, status_code=422
        )
    return _render(request, user, project, schema, name, config, files)


__all__ = ["builder_state", "catalog_view", "router"]
