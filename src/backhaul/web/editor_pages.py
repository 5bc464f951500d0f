"""The editor pages: the project's sources, models, destinations, syncs and alert
channels, and a form each.

Only editors (and admins) reach them; viewers and operators get 403. Each form page is
rendered with its state as JSON (the file's values, its hash, the form's fields), and
``static/editor.js`` saves it through :mod:`backhaul.web.api.editing`, showing each
problem beside the field it names. Deleting asks first on a page of its own that lists
what still uses the item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated

from fastapi import APIRouter
from fastapi import Query
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.responses import Response

from backhaul.config.models import NAME_PATTERN
from backhaul.config.project import Project
from backhaul.drafts import Change
from backhaul.drafts import FileChange
from backhaul.gitsave import Repo
from backhaul.gitsave import text_hash
from backhaul.web.api.editing import editor_state
from backhaul.web.api.editing import file_of
from backhaul.web.api.editing import opened_item
from backhaul.web.api.editing import sql_file_of
from backhaul.web.auth import Editor
from backhaul.web.auth import User
from backhaul.web.auth import csrf_token
from backhaul.web.deps import ProjectDep
from backhaul.web.deps import StoreDep
from backhaul.web.deps import templates
from backhaul.web.editor_forms import KINDS
from backhaul.web.editor_forms import defs_of
from backhaul.web.opening import Opened
from backhaul.web.opening import drafted_files
from backhaul.web.pages import not_found

router = APIRouter(include_in_schema=False)
TITLES = {
    "sources": "Sources",
    "models": "Models",
    "destinations": "Destinations",
    "syncs": "Syncs",
    "channels": "Alert channels",
}


def users_of(project: Project, kind: str, name: str) -> list[str]:
    """What refers to the item (``sync leads_to_crm``): deleting it would break them."""
    out: list[str] = []
    if kind == "sources":
        out += [f"model {m}" for m, d in sorted(project.models.items()) if d.config.source == name]
    if kind == "models":
        out += [f"sync {s}" for s, d in sorted(project.syncs.items()) if d.config.model == name]
    if kind == "destinations":
        out += [
            f"sync {s}" for s, d in sorted(project.syncs.items()) if d.config.destination == name
        ]
    if kind == "channels":
        if name in (project.config.alerts.channels or []):
            out.append("the project's alerts (backhaul.yml)")
        out += [
            f"sync {s}"
            for s, d in sorted(project.syncs.items())
            if name in (d.config.alerts.channels or [])
        ]
    return out


_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Listed:
    """One row of ``/edit``: an item, its file, and how the signed-in editor's pending
    draft changes it (None: it does not; ``added``: the item is only in the draft)."""

    name: str
    file: str
    change: Change | None = None


def _item_of(kind: str, path: str) -> str | None:
    """The name of the ``kind`` item ``path`` defines, if it is one (``destinations/crm.yml``
    -> ``crm``: names are file names)."""
    file = PurePosixPath(path)
    if file.parts[0] != kind or file.suffix not in (".yml", ".yaml"):
        return None
    return file.stem if _NAME.match(file.stem) else None


def listing(project: Project, kind: str, drafted: dict[str, FileChange]) -> list[Listed]:
    """The items of ``kind`` as an editor sees them: the project's, each marked with how
    ``drafted`` (:func:`backhaul.web.opening.drafted_files`) changes it, and those only
    in ``drafted``, by name."""
    defs = defs_of(project, kind)
    rows: dict[str, Listed] = {}
    for name in defs:
        files = [file_of(project, kind, name)]
        if kind == "models":
            files.append(sql_file_of(project, name))
        own = drafted.get(files[0])
        change: Change | None = None
        if own is not None and own.change == "deleted":
            change = "deleted"
        elif any(f in drafted for f in files):  # a model's .sql changes the model too
            change = "changed"
        rows[name] = Listed(name, files[0], change)
    for path, found in drafted.items():
        new = _item_of(kind, path)
        if new is None or new in rows or found.change == "deleted":
            continue
        if file_of(project, kind, new) == path:  # the file its editor page opens
            rows[new] = Listed(new, path, "added")
    return [rows[n] for n in sorted(rows)]


@router.get("/edit", response_class=HTMLResponse)
def edit_home(request: Request, user: Editor, project: ProjectDep, store: StoreDep) -> Response:
    """Every source, model, destination, sync and alert channel, with links to edit, add and delete; for
    an editor with pending drafts, as those drafts hold them (the files they open)."""
    drafted = drafted_files(project, store, user)
    kinds = {kind: listing(project, kind, drafted) for kind in KINDS}
    context = {
        "user": user,
        "title": "Edit the project",
        "kinds": kinds,
        "labels": TITLES,
        "singular": KINDS,
        "git": Repo.find(project.root) is not None,
        "drafted": any(row.change for rows in kinds.values() for row in rows),
    }
    return templates.TemplateResponse(request, "editor_list.html", context)


def _form(
    request: Request,
    user: User,
    project: Project,
    kind: str,
    name: str,
    type_: str | None,
    files: Opened | None = None,
) -> HTMLResponse:
    state = editor_state(project, kind, name, type_, files)
    state["git"] = Repo.find(project.root) is not None
    context = {
        "user": user,
        "title": name or f"New {KINDS[kind]}",
        "state": state,
        "csrf": csrf_token(request),
        "label": TITLES[kind],
    }
    return templates.TemplateResponse(request, "editor_form.html", context)


@router.get("/edit/{kind}/new", response_class=HTMLResponse)
def new_page(
    request: Request,
    kind: str,
    user: Editor,
    project: ProjectDep,
    type: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """An empty form for a new item of ``kind`` (``type``: the connector)."""
    if kind not in KINDS:
        return not_found(request, user, "kind", kind)
    return _form(request, user, project, kind, "", type)


@router.get("/edit/{kind}/{name}", response_class=HTMLResponse)
def edit_page(
    request: Request,
    kind: str,
    name: str,
    user: Editor,
    project: ProjectDep,
    type: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """The form of a saved item, filled from its file as it is on disk now (or, for an
    editor with a pending draft of it, as that draft holds it)."""
    if kind not in KINDS:
        return not_found(request, user, "item", name)
    files = opened_item(request, project, user, kind, name)
    if files.read(file_of(project, kind, name)) is None:
        return not_found(request, user, KINDS[kind], name)
    return _form(request, user, project, kind, name, type, files)


@router.get("/edit/{kind}/{name}/delete", response_class=HTMLResponse)
def delete_page(
    request: Request, kind: str, name: str, user: Editor, project: ProjectDep
) -> Response:
    """Asks before deleting: the files that go, and what still uses the item."""
    rel = file_of(project, kind, name) if kind in KINDS else ""
    opened = opened_item(request, project, user, kind, name) if rel else None
    text = opened.read(rel) if opened is not None else None
    if opened is None or text is None:
        return not_found(request, user, KINDS.get(kind, "item"), name)
    files = [rel]
    if kind == "models" and opened.read(sql_file_of(project, name)) is not None:
        files.append(sql_file_of(project, name))
    context = {
        "user": user,
        "title": f"Delete {name}",
        "kind": kind,
        "what": KINDS[kind],
        "name": name,
        "files": files,
        "used_by": users_of(project, kind, name),
        "base": text_hash(text),
        "csrf": csrf_token(request),
        "git": Repo.find(project.root) is not None,
    }
    return templates.TemplateResponse(request, "editor_delete.html", context)


__all__ = ["Listed", "listing", "router", "users_of"]
