"""The editors' API: create, change and delete sources, models, destinations and syncs.

Every route needs the editor role (admins have it too); viewers and operators get 403.
A save lays the form's values over the file as written (:mod:`backhaul.config.yamledit`)
and goes through :func:`backhaul.gitsave.save_files`: the project is validated with the
checks of ``backhaul validate --offline`` (problems come back with file, line and key, as
the CLI prints them, and nothing is kept), then the file (a model's ``.yml`` and ``.sql``
together) is committed by the signed-in user with a message naming the change. The app
then loads the project again, so every page shows the save at once. With approval on, an
editor's save goes to their draft branch instead, and until it is approved they open the
files as that draft holds them (:mod:`backhaul.web.opening`).

The helpers beside the forms use the code paths of the CLI: "Test connection" is
``backhaul test-connection`` (:mod:`backhaul.cli.connection`), on the form as it stands
(validated as a save, tried in a temporary copy of the definitions), a model preview reads
through the source connector as a run does, and a destination's fields come from its own
``fields(object)`` when it has one.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated
from typing import Any

from fastapi import Query
from fastapi import Request
from pydantic import BaseModel
from pydantic import Field

from backhaul import pyvalues
from backhaul.config.models import NAME_PATTERN
from backhaul.config.models import Cast
from backhaul.config.models import ModelConfig
from backhaul.config.project import ModelDef
from backhaul.config.project import Positions
from backhaul.config.project import Project
from backhaul.config.yamledit import edit_yaml
from backhaul.config.yamledit import load
from backhaul.config.yamledit import plain
from backhaul.errors import BackhaulError
from backhaul.errors import SaveConflict
from backhaul.gitsave import Problem
from backhaul.gitsave import project_with
from backhaul.gitsave import text_hash
from backhaul.web.api.base import SafeJSONResponse
from backhaul.web.api.base import json_router
from backhaul.web.api.base import jsonable
from backhaul.web.approvals import save_project_files
from backhaul.web.audience_api import opened_for
from backhaul.web.audience_api import problem_out
from backhaul.web.audience_api import reload_project
from backhaul.web.audience_api import save_failure
from backhaul.web.auth import Editor
from backhaul.web.auth import Role
from backhaul.web.auth import User
from backhaul.web.deps import ProjectDep
from backhaul.web.deps import UsersDep
from backhaul.web.editor_forms import KINDS
from backhaul.web.editor_forms import TYPED
from backhaul.web.editor_forms import change_message
from backhaul.web.editor_forms import coerce
from backhaul.web.editor_forms import defs_of
from backhaul.web.editor_forms import form_for
from backhaul.web.editor_forms import types_of
from backhaul.web.opening import Opened
from backhaul.web.opening import pending_note

router = json_router("/api/v1/edit", Role.EDITOR)
PREVIEW_ROWS = 20
_NAME = re.compile(NAME_PATTERN)


class SaveIn(BaseModel):
    """What an editor sends: the form's values and the hashes of the files it opened."""

    values: dict[str, Any] = Field(default_factory=dict)
    base: str = Field("", description="Hash of the file the editor opened ('' for new).")
    type: str | None = Field(None, description="Connector type of a source or destination.")
    sql: str | None = Field(None, description="A model's SQL (its .sql file).")
    sql_base: str = ""
    mappings: list[dict[str, Any]] | None = None
    match: list[str] | None = None


class CheckIn(SaveIn):
    """What Test connection may send: the editor's unsaved file, as its YAML ``text`` or as
    the form a save sends (laid over the file as a save lays it)."""

    text: str | None = Field(
        None, max_length=1_000_000, description="The file's YAML as it would be saved."
    )


class PreviewIn(BaseModel):
    source: str = Field(min_length=1, max_length=200)
    sql: str = Field(min_length=1, max_length=200_000)


def _error(status: int, code: str, message: str, **extra: Any) -> SafeJSONResponse:
    return SafeJSONResponse({"error": {"code": code, "message": message, **extra}}, status)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise BackhaulError(f"unknown kind `{kind}` (known: {', '.join(KINDS)})")
    return kind


def _check_name(name: str) -> None:
    if not _NAME.match(name) or len(name) > 200:
        raise BackhaulError(
            f"`{name}` is not a valid name: use letters, digits, `_` and `-`, starting with "
            "a letter or `_`"
        )


def file_of(project: Project, kind: str, name: str) -> str:
    """The file that defines ``name`` (``sources/warehouse.yml``), existing or to be made."""
    found = defs_of(project, kind).get(name)
    if found is not None:
        return Path(found.positions.file).as_posix()
    return f"{kind}/{name}.yml"


def sql_file_of(project: Project, name: str) -> str:
    """The ``.sql`` file of model ``name``, existing or to be made beside its ``.yml``."""
    model = project.models.get(name)
    if model is not None and model.sql_file is not None:
        return model.sql_file.resolve().relative_to(project.root.resolve()).as_posix()
    return file_of(project, "models", name).rsplit(".", 1)[0] + ".sql"


def _data(text: str | None) -> dict[str, Any]:
    found = plain(load(text)) if text else {}
    return found if isinstance(found, dict) else {}


def opened_item(request: Request, project: Project, user: User, kind: str, name: str) -> Opened:
    """Where ``user`` opens item ``name``'s files: their pending draft of it, or the
    checked-out files."""
    rel = file_of(project, kind, name) if name else ""
    return opened_for(request, project, user, rel)


def editor_state(
    project: Project,
    kind: str,
    name: str,
    type_: str | None = None,
    files: Opened | None = None,
) -> dict[str, Any]:
    """Everything an editor page needs about one file: its text, values, form and hashes.

    ``files`` is where the files are read (default: the checked-out files; the user's
    pending draft of them, see :func:`opened_item`)."""
    files = files or Opened(project)
    rel = file_of(project, kind, name) if name else ""
    text = files.read(rel) if rel else None
    data = _data(text)
    type_ = type_ or data.get("type")
    fields = form_for(kind, project, data, type_)
    out: dict[str, Any] = {
        "kind": kind,
        "what": KINDS[kind],
        "name": name,
        "is_new": text is None,
        "file": rel,
        "text": text,
        "base": text_hash(text),
        "type": type_,
        "fields": [f.__dict__ for f in fields],
        "draft": files.draft,
        "draft_note": files.note,
    }
    if kind in TYPED:
        out["types"] = types_of(project, kind)
    if kind == "models":
        sql_rel = sql_file_of(project, name) if name else ""
        inline = "sql" in data
        on_disk = None if inline or not sql_rel else files.read(sql_rel)
        shown = data.get("sql") if inline else on_disk
        out |= {"sql": shown or "", "sql_file": None if inline else sql_rel}
        out["sql_base"] = text_hash(on_disk)
    if kind == "syncs":
        out["mappings"] = data.get("mappings") or []
        out["casts"] = [c.value for c in Cast]
        match = data.get("match") or {}
        fields_ = match.get("fields") if isinstance(match, dict) else None
        out["match"] = [fields_] if isinstance(fields_, str) else list(fields_ or [])
    return out


@router.get("/{kind}/{name}")
def get_route(
    request: Request,
    kind: str,
    name: str,
    user: Editor,
    project: ProjectDep,
    type: str | None = None,
) -> Any:
    """One file as the editor shows it (``is_new`` when there is no such file yet): the
    signed-in user's pending draft of it when they have one (``draft`` names it)."""
    try:
        _check_name(name)
        kind = _kind(kind)
        files = opened_item(request, project, user, kind, name)
        return editor_state(project, kind, name, type, files)
    except BackhaulError as exc:
        return _error(400, "invalid", exc.message)


def _planned(
    project: Project, kind: str, name: str, body: SaveIn, files: Opened
) -> tuple[dict[str, str | None], dict[str, str], str, list[Problem]]:
    """The files a save writes, their bases, the commit message and the form's problems;
    the form's values are laid over the files as ``files`` reads them."""
    rel = file_of(project, kind, name)
    before = files.read(rel)
    if body.base == "" and before is not None:
        raise SaveConflict(
            f"a {KINDS[kind]} named `{name}` exists already ({rel}): choose another name, or "
            "open it to edit it"
        )
    data = _data(before)
    type_ = body.type or data.get("type")
    fields = form_for(kind, project, data, type_)
    if kind in TYPED and not fields:
        return {}, {}, "", [Problem("choose a type", key="type")]
    values, problems = coerce(fields, body.values)
    if kind in TYPED:
        values = {"type": type_, **values}
    if kind == "syncs":
        if body.match is not None:
            values["match"] = {"fields": body.match} if body.match else None
        if body.mappings is not None:
            values["mappings"] = [_mapping(m) for m in body.mappings if m.get("field")]
    model_sql = kind == "models" and body.sql is not None
    if model_sql and "sql" in data:
        values["sql"] = body.sql
    text = edit_yaml(before, values)
    saved: dict[str, str | None] = {rel: text}
    bases = {rel: body.base}
    new_data = _data(text)
    if model_sql and "sql" not in data:
        sql_rel = sql_file_of(project, name)
        sql = (body.sql or "").strip("\n") + "\n"
        saved[sql_rel] = sql
        bases[sql_rel] = body.sql_base
        old_sql = files.read(sql_rel)
        if before is not None and old_sql != sql:
            data = {**data, "sql": old_sql}
            new_data = {**new_data, "sql": sql}
    message = change_message(kind, name, None if before is None else data, new_data)
    return saved, bases, message, problems


def _form_problems(problems: list[Problem]) -> SafeJSONResponse:
    found = [problem_out(p) for p in problems]
    return _error(422, "invalid", "some values cannot be used", problems=found)


def _mapping(item: dict[str, Any]) -> dict[str, Any]:
    """A mapping as a person writes it: the source first, then ``field``, then the rest.

    A static ``value`` is kept as it is, empty text and null included (``value: null``
    sends null), when the item names no column and no template (the editor sends one of
    the three)."""
    order = ("column", "template", "field", "cast", "nulls")
    kept = {k: item[k] for k in order if k in item and item[k] not in (None, "")}
    if "value" in item and not ("column" in kept or "template" in kept):
        kept = {"value": item["value"], **kept}
    return kept


@router.put("/{kind}/{name}")
def save_route(
    request: Request,
    kind: str,
    name: str,
    body: SaveIn,
    user: Editor,
    project: ProjectDep,
    users: UsersDep,
) -> Any:
    """Write the file (and a model's ``.sql``), validate, and commit by the signed-in user."""
    try:
        _check_name(name)
        kind = _kind(kind)
        opened = opened_item(request, project, user, kind, name)
        files, bases, message, problems = _planned(project, kind, name, body, opened)
    except SaveConflict as exc:
        return _error(409, "conflict", exc.message)
    except BackhaulError as exc:
        return _error(400, "invalid", exc.message)
    if problems:
        return _form_problems(problems)
    return _save(request, project, user, users, files, bases, message, f"{KINDS[kind]}_save", name)


@router.delete("/{kind}/{name}")
def delete_route(
    request: Request,
    kind: str,
    name: str,
    user: Editor,
    project: ProjectDep,
    users: UsersDep,
    base: Annotated[str, Query(max_length=64)] = "",
) -> Any:
    """Delete the file (a model's ``.sql`` too); refused when the project would not validate
    without it (a sync still uses it...)."""
    try:
        _check_name(name)
        kind = _kind(kind)
    except BackhaulError as exc:
        return _error(400, "invalid", exc.message)
    rel = file_of(project, kind, name)
    opened = opened_item(request, project, user, kind, name)
    if opened.read(rel) is None:
        return _error(404, "not_found", f"no {KINDS[kind]} `{name}`")
    files: dict[str, str | None] = {rel: None}
    bases = {rel: base} if base else {}
    if kind == "models" and opened.read(sql_file_of(project, name)) is not None:
        files[sql_file_of(project, name)] = None
    message = f"Delete {KINDS[kind]} {name}"
    return _save(
        request, project, user, users, files, bases, message, f"{KINDS[kind]}_delete", name
    )


def _save(
    request: Request,
    project: Project,
    user: User,
    users: UsersDep,
    files: dict[str, str | None],
    bases: dict[str, str],
    message: str,
    action: str,
    name: str,
) -> Any:
    try:
        results, draft, _ = save_project_files(
            request,
            project,
            user,
            files,
            message=message,
            bases={k: v for k, v in bases.items() if v},
        )
    except BackhaulError as exc:
        return save_failure(exc)
    changed = [r for r in results if r.changed]
    warning = None
    if changed and draft is not None:
        # The checked-out files did not change: the project stays as it was until an
        # admin approves the draft.
        warning = pending_note(draft)
        users.audit(
            user.username,
            action,
            name,
            {"files": [r.path for r in changed], "commit": changed[0].commit, "draft": draft},
            request.client.host if request.client else None,
        )
    elif changed:
        users.audit(
            user.username,
            action,
            name,
            {"files": [r.path for r in changed], "commit": changed[0].commit},
            request.client.host if request.client else None,
        )
        try:
            reload_project(request)
        except BackhaulError as exc:  # another file broke meanwhile: keep serving the old
            warning = f"saved, but the project did not reload: {exc.message}"
    return {
        "files": [{"path": r.path, "base": text_hash(r.text or None)} for r in results],
        "changed": bool(changed),
        "commit": changed[0].commit if changed else None,
        "message": message,
        "warning": warning,
        "draft": draft,
    }


def preview(project: Project, source: str, sql: str, limit: int = PREVIEW_ROWS) -> dict[str, Any]:
    """Run ``sql`` on ``source`` as a run reads a model: its columns and first rows."""
    from backhaul.engine.workspace import open_source
    from backhaul.engine.workspace import strip_sql

    if source not in project.sources:
        known = ", ".join(sorted(project.sources)) or "none"
        raise BackhaulError(f"unknown source `{source}` (known: {known})")
    config = ModelConfig.model_construct(source=source, primary_key=["_"])
    model = ModelDef("preview", config, sql, None, Positions(Path("models/preview.yml")))
    handle = open_source(project, model)
    try:
        columns = handle.columns(sql)
        query = f"SELECT * FROM (\n{strip_sql(sql)}\n) AS backhaul_preview LIMIT {limit}"
        rows: list[list[Any]] = []
        for batch in handle.stream(query, batch_size=limit):
            rows += [list(r.values()) for r in pyvalues.rows(batch)]
            if len(rows) >= limit:
                break
    finally:
        handle.close()
    return {
        "columns": [{"name": n, "type": t} for n, t in columns.items()],
        "rows": jsonable(rows[:limit]),
    }


@router.post("/models/preview")
def preview_route(body: PreviewIn, project: ProjectDep) -> Any:
    """A model being edited, run on its source: columns (for the primary key) and rows."""
    try:
        return preview(project, body.source, body.sql)
    except BackhaulError as exc:
        return _error(400, "invalid", exc.message)
    except Exception as exc:  # a driver's own error (any SQL can cause one): say it
        return _error(400, "warehouse", f"the warehouse refused the query: {exc}")


@router.get("/models/{name}/columns")
def columns_route(name: str, project: ProjectDep) -> Any:
    """The saved model's columns and types (the mapping editor's left side)."""
    model = project.models.get(name)
    if model is None:
        return _error(404, "not_found", f"no model `{name}`")
    try:
        found = preview(project, model.config.source, model.sql, limit=1)
    except BackhaulError as exc:
        return _error(400, "invalid", exc.message)
    except Exception as exc:
        return _error(400, "warehouse", f"the warehouse refused the query: {exc}")
    return {"columns": found["columns"], "primary_key": list(model.config.primary_key)}


@router.post("/{kind}/{name}/check")
def check_route(
    request: Request,
    kind: str,
    name: str,
    user: Editor,
    project: ProjectDep,
    body: CheckIn | None = None,
) -> Any:
    """Test connection, exactly as ``backhaul test-connection NAME`` does: on the saved
    file, or with a body on the editor's unsaved one (validated as a save validates it,
    nothing written), so a new item or a changed password is tried before it is saved."""
    from backhaul.cli.connection import check_destination
    from backhaul.cli.connection import check_source

    if kind not in ("sources", "destinations") or (
        body is None and name not in getattr(project, kind)
    ):
        return _error(404, "not_found", f"no {KINDS.get(kind, 'item')} `{name}` to test")
    definition = None
    if body is not None:
        try:
            _check_name(name)
            text = body.text
            if text is None:
                opened = opened_item(request, project, user, kind, name)
                files, _, _, problems = _planned(project, kind, name, body, opened)
                if problems:
                    return _form_problems(problems)
                text = files[file_of(project, kind, name)] or ""
            with project_with(project.root, {file_of(project, kind, name): text}) as tried:
                definition = getattr(tried, kind)[name]
        except BackhaulError as exc:
            return save_failure(exc)
    try:
        check = check_source if kind == "sources" else check_destination
        report = check(project, name, definition)
    except BackhaulError as exc:
        return {"ok": False, "message": exc.message}
    return {
        "ok": True,
        "type": report.type,
        "version": report.version,
        "latency_ms": round(report.latency_ms, 1),
    }


def destination_fields(
    project: Project, name: str, object: str | None
) -> list[dict[str, Any]] | None:
    """The fields destination ``name`` reports for ``object`` (None: it cannot tell)."""
    from backhaul.calls import MemoryRecorder
    from backhaul.config.secrets import resolve
    from backhaul.destinations.base import DestinationContext
    from backhaul.observe.redact import Redactor

    dest = project.destinations[name]
    cls = project.registry.destination(dest.config.type)
    if getattr(cls, "fields", None) is None:
        return None
    config, secrets = resolve(dest.config, positions=dest.positions)
    context = DestinationContext(project.root, MemoryRecorder(), "", "", tuple(secrets))

    async def ask() -> list[Any]:
        handle: Any = cls(config, context)
        try:
            found: list[Any] = await handle.fields(object)
            return found
        finally:
            await handle.close()

    try:
        found = asyncio.run(ask())
    except BackhaulError as exc:
        exc.message = Redactor(secrets).text(exc.message) or ""
        raise
    return [
        {
            "name": f.name,
            "type": f.type,
            "label": f.label,
            "required": f.required,
            "unique": f.unique,
            "read_only": f.read_only,
        }
        for f in found
    ]


@router.get("/destinations/{name}/fields")
def fields_route(
    name: str, project: ProjectDep, object: Annotated[str | None, Query(max_length=200)] = None
) -> Any:
    """The destination's fields, read from the destination itself (``fields: null`` when the
    connector cannot list them: the mapping editor then takes free text)."""
    if name not in project.destinations:
        return _error(404, "not_found", f"no destination `{name}`")
    try:
        return {"fields": destination_fields(project, name, object or None)}
    except BackhaulError as exc:
        return {"fields": None, "message": exc.message}


__all__ = ["destination_fields", "editor_state", "file_of", "opened_item", "preview", "router"]
