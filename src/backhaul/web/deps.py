"""FastAPI dependencies shared by the API and the pages: project, stores, runs, templates.

Routes take them as ``ProjectDep``, ``ReaderDep`` (run history, read-only), ``StoreDep``
(the alert routes, whose ``AlertStore`` also writes mutes), ``UsersDep``, ``RunsDep`` and
``CacheDep``; plain code calls the getters (``get_runs(request)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.templating import Jinja2Templates
from jinja2 import Environment
from jinja2 import FileSystemLoader

from backhaul.config.project import Project
from backhaul.state.reader import RunReader
from backhaul.state.store import RunStore
from backhaul.web.app_state import FromApp
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


get_project: FromApp[Project] = FromApp("project")  # loaded once at start-up
get_reader: FromApp[RunReader] = FromApp("reader")  # run history, read-only (shared, thread-safe)
get_store: FromApp[RunStore] = FromApp("store")  # for the few routes that write (thread-safe)
get_cache: FromApp[AnswerCache] = FromApp("cache")  # memoised answers (overview, syncs, runs)
get_users: FromApp[UserStore] = FromApp("users")  # users, tokens and the audit log
get_runs: FromApp[RunManager] = FromApp("runs")  # triggers, cancels and follows runs

ProjectDep = Annotated[Project, Depends(get_project.dependency)]
ReaderDep = Annotated[RunReader, Depends(get_reader.dependency)]
StoreDep = Annotated[RunStore, Depends(get_store.dependency)]
CacheDep = Annotated[AnswerCache, Depends(get_cache.dependency)]
UsersDep = Annotated[UserStore, Depends(get_users.dependency)]
RunsDep = Annotated[RunManager, Depends(get_runs.dependency)]
