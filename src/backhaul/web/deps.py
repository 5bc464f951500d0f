"""FastAPI dependencies shared by the API and the pages: project, stores, runs, templates.

Routes take them as ``ProjectDep``, ``ReaderDep`` (run history, read-only), ``StoreDep``
(the alert routes, whose ``AlertStore`` also writes mutes), ``UsersDep``, ``RunsDep`` and
``CacheDep``: those use ``async`` twins of the getters, because FastAPI runs a plain ``def`` dependency in a worker
thread, a hop that costs more than reading ``app.state``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from backhaul.config.project import Project
from backhaul.state.reader import RunReader
from backhaul.state.store import RunStore
from backhaul.web.auth import csrf_token
from backhaul.web.cache import AnswerCache
from backhaul.web.runs import RunManager
from backhaul.web.users import UserStore

TEMPLATES_DIR = Path(__file__).parent / "templates"

# Autoescape everything: any value from a model, a destination or a user is untrusted.
# Templates ship with the package, so they are loaded once: no stat of every template (and
# of every include) on each render to see whether the file changed.
templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, auto_reload=False)
)
templates.env.globals["csrf_token"] = csrf_token


def get_project(request: Request) -> Project:
    """The project the app serves (loaded once at start-up)."""
    project: Project = request.app.state.project
    return project


def get_reader(request: Request) -> RunReader:
    """The run history, read-only (shared, thread-safe)."""
    reader: RunReader = request.app.state.reader
    return reader


def get_store(request: Request) -> RunStore:
    """The run store, for the few routes that write (shared, thread-safe)."""
    store: RunStore = request.app.state.store
    return store


def get_cache(request: Request) -> AnswerCache:
    """The app's memoised answers (the overview, the list of syncs, the newest runs)."""
    cache: AnswerCache = request.app.state.cache
    return cache


def get_users(request: Request) -> UserStore:
    """Users, tokens and the audit log."""
    users: UserStore = request.app.state.users
    return users


def get_runs(request: Request) -> RunManager:
    """The app's RunManager: triggers, cancels and follows runs."""
    runs: RunManager = request.app.state.runs
    return runs


async def _project(request: Request) -> Project:
    return get_project(request)


async def _reader(request: Request) -> RunReader:
    return get_reader(request)


async def _store(request: Request) -> RunStore:
    return get_store(request)


async def _cache(request: Request) -> AnswerCache:
    return get_cache(request)


async def _users(request: Request) -> UserStore:
    return get_users(request)


async def _runs(request: Request) -> RunManager:
    return get_runs(request)


ProjectDep = Annotated[Project, Depends(_project)]
ReaderDep = Annotated[RunReader, Depends(_reader)]
StoreDep = Annotated[RunStore, Depends(_store)]
CacheDep = Annotated[AnswerCache, Depends(_cache)]
UsersDep = Annotated[UserStore, Depends(_users)]
RunsDep = Annotated[RunManager, Depends(_runs)]
