"""The audience builder's API: explore an audience being edited, suggest values, save it.

Every route needs a signed-in user. Anyone may explore; saving needs the editor role, and
so does any raw SQL condition a user wrote (a preview runs it in the warehouse): a viewer
may explore a saved audience that holds one, unchanged, but not write their own.

A save goes through :func:`backhaul.gitsave.save_file`: the file is written with the
audience writer, the project validated with the CLI's checks, and, in a Git repository,
committed by the signed-in user. The app then reloads the project, so the model pages,
syncs and the builder see the saved audience. With approval on, an editor's save goes to
their draft branch, and until it is approved the builder opens the audience (and each
priority list) as that draft holds it (:mod:`backhaul.web.opening`).
"""

from __future__ import annotations

import re
from dataclasses import asdict
from dataclasses import dataclass
from typing import Annotated
from typing import Any

from fastapi import Query
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic import Field

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.cases import run_case
from backhaul.audiences.conditions import Condition
from backhaul.audiences.conditions import GroupCondition
from backhaul.audiences.conditions import SqlCondition
from backhaul.audiences.conditions import walk
from backhaul.audiences.editing import audience_text
from backhaul.audiences.editing import edited_config
from backhaul.audiences.editing import file_data
from backhaul.audiences.explore import Explorer
from backhaul.audiences.explore import describe
from backhaul.audiences.explore import open_explorer
from backhaul.audiences.priority import priority_list_text
from backhaul.audiences.typecheck import check_audience
from backhaul.config.models import NAME_PATTERN
from backhaul.config.project import Project
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import InvalidContent
from backhaul.errors import SaveConflict
from backhaul.errors import SaveError
from backhaul.gitsave import Problem
from backhaul.gitsave import text_hash
from backhaul.web.api.base import SafeJSONResponse
from backhaul.web.api.base import json_router
from backhaul.web.api.base import jsonable
from backhaul.web.approvals import save_project_file
from backhaul.web.auth import Editor
from backhaul.web.auth import Role
from backhaul.web.auth import User
from backhaul.web.auth import Viewer
from backhaul.web.charts import breakdown_svg
from backhaul.web.deps import ProjectDep
from backhaul.web.deps import UsersDep
from backhaul.web.deps import get_store
from backhaul.web.opening import Opened
from backhaul.web.opening import opened
from backhaul.web.opening import read_file
from backhaul.web.users import UserStore

router = json_router("/api/v1")
MAX_PRIORITY = 20
_NAME = re.compile(NAME_PATTERN)


class Draft(BaseModel):
    """An audience as the builder holds it (see :mod:`backhaul.audiences.editing`)."""

    name: str = Field(min_length=1, max_length=200)
    schema_: str = Field(alias="schema", min_length=1)
    audience: dict[str, Any] = Field(default_factory=dict)


class PreviewIn(Draft):
    sample: bool = True
    breakdown: str | None = None
    overlap: str | None = None
    priority: list[str] = Field(default_factory=list, max_length=MAX_PRIORITY)
    tests: bool = True


class SaveIn(Draft):
    base: str = Field("", description="Hash of the file the builder opened ('' for new).")


def problem_out(p: Problem | ConfigError) -> dict[str, Any]:
    if isinstance(p, ConfigError):
        p = Problem(p.reason, p.file, p.line, p.key)
    return {"key": p.key, "line": p.line, "file": p.file, "message": p.message, "text": p.text}


def audience_path(name: str) -> str:
    return f"audiences/{name}.yml"


def read_audience(project: Project, name: str) -> str | None:
    """The audience file's text as it is on disk now (None: no such file)."""
    return read_file(project, audience_path(name))


def opened_for(request: Request, project: Project, user: User, rel: str) -> Opened:
    """Where ``user`` opens ``rel``: their pending draft of it, or the checked-out file."""
    return opened(project, get_store(request), user, rel)


def _sql_texts(conditions: list[Condition]) -> set[str]:
    return {c.sql for _, c in walk(conditions, "conditions") if isinstance(c, SqlCondition)}


def _check_sql_allowed(project: Project, user: User, config: AudienceConfig) -> None:
    """Raw SQL runs in the warehouse: only editors may write it; others keep saved ones."""
    if user.role.allows(Role.EDITOR):
        return
    saved: set[str] = set()
    for audience in project.audiences.values():
        saved |= _sql_texts(audience.config.conditions)
    if _sql_texts(config.conditions) - saved:
        raise BackhaulError("raw SQL conditions need the editor role; remove the SQL condition")


def _draft_config(
    project: Project, draft: Draft, files: Opened
) -> tuple[AudienceConfig | None, list[dict[str, Any]], str | None]:
    """The draft as a config, its problems (beside their keys) and the file's text as
    ``files`` opens it (the user's pending draft of it, or the checked-out file)."""
    if not _NAME.match(draft.name):
        raise BackhaulError(
            f"`{draft.name}` is not a valid name: use letters, digits, `_` and `-`, "
            "starting with a letter or `_`"
        )
    schema = project.audience_schemas.get(draft.schema_)
    if schema is None:
        known = ", ".join(sorted(project.audience_schemas)) or "none"
        raise BackhaulError(f"unknown audience schema `{draft.schema_}` (known: {known})")
    rel = audience_path(draft.name)
    original = files.read(rel)
    config, errors = edited_config(rel, draft.schema_, draft.audience, original)
    if config is None:
        return None, [problem_out(e) for e in errors], original
    if config.schema_ != draft.schema_:
        raise BackhaulError(f"audience `{draft.name}` uses schema `{config.schema_}`")
    configs = {n: a.config for n, a in project.audiences.items()} | {draft.name: config}
    problems = check_audience(draft.name, config, schema.catalog, configs, dialect=schema.dialect)
    found = [problem_out(Problem(p.message, rel, None, p.key)) for p in problems]
    return (None if found else config), found, original


def _group_sizes(ex: Explorer, name: str, config: AudienceConfig) -> dict[str, int]:
    """People matching each condition and group of the tree on its own, by its key."""
    nodes = walk(config.conditions, "conditions")
    if not nodes:
        return {}
    flat = config.model_copy(
        update={"conditions": [c for _, c in nodes], "match": "all", "splits": None}
    )
    size = ex.size(name, flat)
    return {key: part.alone for (key, _), part in zip(nodes, size.conditions, strict=True)}


def preview(project: Project, body: PreviewIn, config: AudienceConfig) -> dict[str, Any]:
    """Size, per-group sizes, sample, SQL, breakdown, overlap, priority and test results."""
    name = body.name
    configs = {n: a.config for n, a in project.audiences.items()} | {name: config}
    out: dict[str, Any] = {"errors": []}
    schema = project.audience_schemas[body.schema_]
    if body.tests and config.tests:
        out["tests"] = [
            asdict(run_case(schema, configs, name, config, case)) | {"passed": None}
            for case in config.tests
        ]
        for item in out["tests"]:
            item["passed"] = not item["missing"] and not item["unexpected"] and not item["error"]
            item["missing"] = jsonable(item["missing"])
            item["unexpected"] = jsonable(item["unexpected"])
    with open_explorer(project, body.schema_, audiences=configs) as ex:
        out["sql"] = ex.sql(name, config)
        size = ex.size(name, config)
        out["size"] = {
            "parent": size.parent,
            "matched": size.matched,
            "holdout": size.holdout,
            "members": size.members,
            "splits": size.splits,
            "conditions": [
                {"key": c.key, "label": c.label, "alone": c.alone, "cumulative": c.cumulative}
                for c in size.conditions
            ],
        }
        out["groups"] = _group_sizes(ex, name, config)
        if body.sample:
            sample = ex.sample(name, config)
            out["sample"] = {
                "columns": sample.columns,
                "rows": jsonable(sample.rows),
                "masked": sample.masked,
            }
        if body.breakdown:
            parts = ex.breakdown(name, config, body.breakdown)
            values = [("null" if v is None else str(v), n) for v, n in parts.values]
            out["breakdown"] = {
                "column": parts.column,
                "values": jsonable(parts.values),
                "other": parts.other,
                "svg": str(
                    breakdown_svg(
                        values,
                        other=parts.other,
                        title=f"Members by {parts.column}",
                        chart_id="breakdown-chart",
                    )
                ),
            }
        if body.overlap:
            other = project.audiences.get(body.overlap)
            if other is None or other.schema != body.schema_:
                raise BackhaulError(f"`{body.overlap}` is not an audience of `{body.schema_}`")
            both = ex.overlap(config, other.config)
            out["overlap"] = {
                "with": body.overlap,
                "first": both.first,
                "second": both.second,
                "both": both.both,
                "only_first": both.only_first,
                "only_second": both.only_second,
            }
        if body.priority:
            for item in body.priority:
                if item not in configs:
                    raise BackhaulError(f"`{item}` is not an audience")
            out["priority"] = [[n, c] for n, c in ex.priority(list(dict.fromkeys(body.priority)))]
    return out


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return SafeJSONResponse({"error": {"code": code, "message": message, **extra}}, status)


def save_failure(exc: BackhaulError) -> JSONResponse:
    """The answer to a save that did not happen: 422 with every problem when the project
    would not validate, 409 on a conflict or a refused commit, 400 otherwise."""
    if isinstance(exc, InvalidContent):
        found = [problem_out(p) for p in exc.problems]
        return _error(422, "invalid", "the project would not validate", problems=found)
    if isinstance(exc, SaveConflict):
        return _error(409, "conflict", exc.message)
    if isinstance(exc, SaveError):
        return _error(409, "not_saved", exc.message)
    return _error(400, "invalid", exc.message)


@router.post("/audiences/preview")
def preview_route(request: Request, body: PreviewIn, user: Viewer, project: ProjectDep) -> Any:
    """Explore an audience being edited: nothing is saved."""
    try:
        files = opened_for(request, project, user, audience_path(body.name))
        config, problems, _ = _draft_config(project, body, files)
        if config is None:
            return {"errors": problems}
        _check_sql_allowed(project, user, config)
        return preview(project, body, config)
    except BackhaulError as exc:
        return _error(400, "invalid", exc.message)
    except Exception as exc:  # a driver's own error (raw SQL can cause any): say it, no 500
        return _error(400, "warehouse", f"the warehouse refused the query: {exc}")


@router.get("/audience-schemas/{schema}/values")
def values_route(
    schema: str,
    user: Viewer,
    project: ProjectDep,
    table: Annotated[str, Query(max_length=200)] = "parent",
    column: Annotated[str, Query(min_length=1, max_length=200)] = "",
) -> Any:
    """Suggested values of a column: all of them when few (None when many, or personal)."""
    if schema not in project.audience_schemas:
        return _error(404, "not_found", f"unknown audience schema `{schema}`")
    try:
        with open_explorer(project, schema) as ex:
            found = ex.values(table, column)
    except BackhaulError as exc:
        return _error(400, "invalid", exc.message)
    return {"values": None if found is None else jsonable(found)}


def _message(name: str, original: str | None, config: AudienceConfig) -> str:
    if original is None:
        return f"Create audience {name}\n\nConditions: {_summary(config.conditions)}"
    old = file_data(original)
    new = file_data(audience_text(config, None))
    changed = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    what = ", ".join(changed) or "formatting"
    return f"Edit audience {name}: {what}\n\nConditions: {_summary(config.conditions)}"


def _summary(conditions: list[Condition]) -> str:
    if not conditions:
        return "none (everyone)"
    return "; ".join(describe(c) for c in conditions if not isinstance(c, GroupCondition)) or (
        f"{len(conditions)} groups"
    )


def reload_project(request: Request) -> Project:
    """Load the project again after a save, for every page and the run manager."""
    from backhaul.api import load_project
    from backhaul.web.reload import adopt

    project = load_project(request.app.state.project.root)
    adopt(request.app.state, project)
    return project


@router.put("/audiences/{name}")
def save_route(
    request: Request, name: str, body: SaveIn, user: Editor, project: ProjectDep, users: UsersDep
) -> Any:
    """Write ``audiences/<name>.yml`` and, in Git, commit it by the signed-in user."""
    body.name = name
    try:
        files = opened_for(request, project, user, audience_path(name))
        config, problems, original = _draft_config(project, body, files)
        if config is None:
            return _error(422, "invalid", "the audience has problems", problems=problems)
        if name in project.models and project.models[name].audience is None:
            raise BackhaulError(f"`{name}` is the name of a model; choose another name")
        if body.base == "" and original is not None:
            return _error(
                409,
                "conflict",
                f"an audience named `{name}` exists already: choose another name, or open "
                f"/audiences/{name} to edit it",
            )
        text = audience_text(config, original)
    except BackhaulError as exc:
        return _error(400, "invalid", exc.message)
    saving = _Saving(audience_path(name), text, _message(name, original, config), body.base)
    return _save(request, project, user, users, saving, "audience_save", name)


class PriorityListIn(BaseModel):
    audiences: list[str] = Field(min_length=1, max_length=MAX_PRIORITY)
    base: str = Field("", description="Hash of the file the editor opened ('' for new).")


def priority_list_path(name: str) -> str:
    if not _NAME.match(name):
        raise BackhaulError(f"`{name}` is not a valid name: use letters, digits, _ and -")
    return f"priority_lists/{name}.yml"


@router.get("/priority-lists")
def priority_lists_route(request: Request, user: Viewer, project: ProjectDep) -> Any:
    """Every saved priority list: its schema, audiences in order and the file's ``base``
    (of the signed-in user's pending draft of it, when they have one)."""
    out = []
    for name, plist in sorted(project.priority_lists.items()):
        rel = f"priority_lists/{name}.yml"
        text = opened_for(request, project, user, rel).read(rel)
        out.append(
            {
                "name": name,
                "schema": plist.schema,
                "audiences": list(plist.config.audiences),
                "description": plist.config.description,
                "base": text_hash(text),
            }
        )
    return {"priority_lists": out}


@router.put("/priority-lists/{name}")
def save_priority_list_route(
    request: Request,
    name: str,
    body: PriorityListIn,
    user: Editor,
    project: ProjectDep,
    users: UsersDep,
) -> Any:
    """Write ``priority_lists/<name>.yml`` (its order) and, in Git, commit it by the user."""
    try:
        rel = priority_list_path(name)
        original = opened_for(request, project, user, rel).read(rel)
        if body.base == "" and original is not None:
            return _error(
                409,
                "conflict",
                f"a priority list named `{name}` exists already: choose another name",
            )
        text = priority_list_text(body.audiences, original)
    except BackhaulError as exc:
        return _error(400, "invalid", exc.message)
    verb = "Add" if original is None else "Update"
    message = f"{verb} priority list {name}: {' > '.join(body.audiences)}"
    saving = _Saving(rel, text, message, body.base)
    return _save(request, project, user, users, saving, "priority_list_save", name)


@dataclass(frozen=True)
class _Saving:
    rel: str
    text: str
    message: str
    base: str


def _save(
    request: Request,
    project: Project,
    user: User,
    users: UserStore,
    saving: _Saving,
    action: str,
    name: str,
) -> Any:
    """Write, validate and commit one builder file; reload the project when it changed.

    With approval on, an editor's save goes to a draft branch (``web/approvals.py``) and
    the checked-out files, so the project, stay as they are."""
    try:
        saved = save_project_file(
            request,
            project,
            user,
            saving.rel,
            saving.text,
            message=saving.message,
            base=saving.base,
        )
    except BackhaulError as exc:
        return save_failure(exc)
    result = saved.result
    warning = saved.note
    if result.changed:
        details: dict[str, Any] = {"file": result.path, "commit": result.commit}
        if saved.draft:
            details["draft"] = saved.draft
        users.audit(
            user.username,
            action,
            name,
            details,
            request.client.host if request.client else None,
        )
        if saved.draft is None:
            try:
                reload_project(request)
            except BackhaulError as exc:  # another file broke meanwhile: keep the old
                warning = f"saved, but the project did not reload: {exc.message}"
    return {
        "path": result.path,
        "changed": result.changed,
        "commit": result.commit,
        "base": text_hash(result.text),
        "yaml": result.text,
        "warning": warning,
        "draft": saved.draft,
    }


__all__ = [
    "audience_path",
    "opened_for",
    "preview",
    "priority_list_path",
    "read_audience",
    "reload_project",
    "router",
]
