"""FastAPI dependencies shared by the API and the pages: project, stores, runs, templates."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from backhaul.config.project import Project
from backhaul.state.store import RunStore
from backhaul.web.auth import csrf_token

if TYPE_CHECKING:
    from backhaul.web.runs import RunManager
    from backhaul.web.users import UserStore

TEMPLATES_DIR = Path(__file__).parent / "templates"

# Autoescape everything: any value from a model, a destination or a user is untrusted.
templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)
)
templates.env.globals["csrf_token"] = csrf_token


def get_project(request: Request) -> Project:
    """The project the app serves (loaded once at start-up)."""
    project: Project = request.app.state.project
    return project


def get_store(request: Request) -> RunStore:
    """The run store (shared, thread-safe)."""
    store: RunStore = request.app.state.store
    return store


def get_users(request: Request) -> UserStore:
    """Users, tokens and the audit log."""
    users: UserStore = request.app.state.users
    return users


def get_runs(request: Request) -> RunManager:
    """The app's RunManager: triggers, cancels and follows runs."""
    runs: RunManager = request.app.state.runs
    return runs
