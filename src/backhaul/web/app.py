"""The web app: REST API, pages, login, static files and the security layers around them."""

from __future__ import annotations

import importlib
import os
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import ExitStack
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi import FastAPI
from fastapi import Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from backhaul.alerts import AlertSink
from backhaul.clock import Clock
from backhaul.clock import utc_now
from backhaul.config.models import WebConfig
from backhaul.config.project import Project
from backhaul.errors import ConfigError
from backhaul.errors import StateError
from backhaul.files import NotReadable
from backhaul.files import read_text_if_any
from backhaul.observe.events import tee
from backhaul.observe.logs import LogSink
from backhaul.observe.metrics import registry_for
from backhaul.schedule.timetable import Timetable
from backhaul.state.accounts import AccountStore
from backhaul.state.store import RunStore
from backhaul.web import security
from backhaul.web.auth import LoginLimiter
from backhaul.web.auth import router as auth_router
from backhaul.web.cache import AnswerCache
from backhaul.web.reload import ProjectWatcher
from backhaul.web.reload import reload_if_changed
from backhaul.web.runs import RunManager
from backhaul.web.sessions import SessionLifetimes
from backhaul.web.sessions import SessionStore
from backhaul.web.users import UserStore

STATIC_DIR = Path(__file__).parent / "static"
SECRET_FILE = "web_secret"
SESSION_COOKIE = "backhaul_session"


class WebSettings(WebConfig):
    """Settings of the web app: the ``web:`` keys of ``backhaul.yml`` and two more.

    The inherited fields are ``session_idle_timeout`` and ``session_max_age`` (seconds),
    ``login_rate`` and ``login_rate_per_address`` (failed sign-ins per minute) and
    ``trusted_proxies``; see :class:`backhaul.config.models.WebConfig`.

    Attributes:
        secret_key: Signs session cookies. Default: generated once and kept in
            ``<state dir>/web_secret`` (mode 0600), so cookies survive a restart.
        max_body_bytes: Larger request bodies are refused with 413.
        reload_seconds: How often, at most, a request first looks whether the project's
            files changed (and loads them again when they did).
    """

    secret_key: str | None = Field(None, min_length=32)
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    reload_seconds: float = Field(2.0, ge=0)

    @classmethod
    def for_project(cls, project: Project, **overrides: Any) -> WebSettings:
        """The project's ``web:`` settings with ``overrides`` (those not None) on top."""
        values = project.config.web.model_dump()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)


def load_secret(state_dir: Path) -> str:
    """The app's signing key from ``state_dir/web_secret``, created (0600) on first use."""
    path = state_dir / SECRET_FILE
    try:
        text = (read_text_if_any(path, limit=4096) or "").strip()
    except NotReadable as exc:  # a pipe would be waited on, a folder never read
        raise StateError(
            f"the web app's signing key {path} {exc.reason}; move it away and start "
            "again (a new key signs every user out)"
        ) from None
    if len(text) >= 32:
        return text
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Create with 0600 from the start, so the key is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    os.chmod(path, 0o600)
    return key


class _Sessions:
    """The signed session cookie (session id and CSRF token), Secure when served over https."""

    def __init__(self, app: ASGIApp, secret_key: str, max_age: int) -> None:
        options = {
            "secret_key": secret_key,
            "session_cookie": SESSION_COOKIE,
            "max_age": max_age,
            "same_site": "lax",
        }
        self._plain = SessionMiddleware(app, https_only=False, **options)  # type: ignore[arg-type]
        self._secure = SessionMiddleware(app, https_only=True, **options)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        https = scope.get("scheme") in ("https", "wss")
        await (self._secure if https else self._plain)(scope, receive, send)


def create_app(
    project_dir: Path,
    *,
    settings: WebSettings | None = None,
    clock: Clock = utc_now,
    scheduler: bool = False,
) -> FastAPI:
    """Build the web app for the project in ``project_dir``.

    Loads the project, opens (and migrates) its run store, and wires the API, the pages,
    login and static files. Call :func:`close_app` (or serve with lifespan on) to release
    the store and stop runs in progress.

    Args:
        project_dir: The project folder.
        settings: Default: the ``web:`` keys of the project's ``backhaul.yml``.
        clock: The time sessions are judged by (UTC); tests pass one they can move.
        scheduler: Also run the scheduler while the app is served (from its lifespan's
            start to its end): scheduled runs are started by the app's run manager, or
            queued for workers when ``scheduler.queue`` is set.
    """
    from backhaul.api import load_project

    project = load_project(project_dir)
    settings = settings or WebSettings.for_project(project)
    secret_key = settings.secret_key or load_secret(project.state_dir)
    store = RunStore.open(project.metadata_url, project.row_logs)
    users = UserStore(store)
    lifetimes = SessionLifetimes(
        idle_timeout=timedelta(seconds=settings.session_idle_timeout),
        max_age=timedelta(seconds=settings.session_max_age),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if scheduler:
            start_scheduler(app)
        yield
        close_app(app)

    app = FastAPI(
        title="Backhaul",
        version="1",
        description="REST API of Backhaul: models, destinations, syncs, runs and their rows "
        "and HTTP calls. Authenticate with `Authorization: Bearer <api token>`.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.project = project
    app.state.store = store  # for the routes that write (mutes, pauses) and the runs
    app.state.reader = store  # the same store, as the read-only RunReader most routes use
    app.state.cache = cache = AnswerCache()
    app.state.users = users
    timetable = Timetable(project, store)
    alerts = AlertSink.open(project, store, next_run=timetable.expected)
    app.state.alerts = alerts
    app.state.runs = RunManager(project, store, users, cache, events=tee(alerts, LogSink()))
    app.state.timetable = app.state.runs.timetable
    app.state.scheduler_running = False
    app.state.metrics = registry_for(project, store)
    app.state.sessions = SessionStore(store, lifetimes, clock)
    app.state.login_limiter = LoginLimiter(
        AccountStore(store), settings.login_rate, settings.login_rate_per_address, clock
    )

    from backhaul.web.alerts import api_router as alerts_api_router
    from backhaul.web.alerts import page_router as alerts_page_router
    from backhaul.web.api import docs_router
    from backhaul.web.api import router as api_router
    from backhaul.web.api.editing import router as editing_api_router
    from backhaul.web.approvals import api_router as approvals_api_router
    from backhaul.web.approvals import page_router as approvals_page_router
    from backhaul.web.audience_api import router as audience_api_router
    from backhaul.web.audience_pages import router as audience_pages_router
    from backhaul.web.dbt_cloud import router as dbt_cloud_router
    from backhaul.web.editor_pages import router as editor_pages_router
    from backhaul.web.metrics import router as metrics_router
    from backhaul.web.plans import api_router as plans_api_router
    from backhaul.web.plans import page_router as plans_page_router
    from backhaul.web.schedules import api_router as schedules_api_router

    # Routes are matched in order: the pages (the overview is the busiest) come first. No
    # page path overlaps an API, docs or login path, so the order changes nothing else.
    pages = _pages_router()
    if pages is not None:
        app.include_router(pages)
    app.include_router(auth_router)
    app.include_router(audience_api_router)
    app.include_router(editing_api_router)
    app.include_router(api_router)
    app.include_router(editor_pages_router)
    app.include_router(audience_pages_router)
    app.include_router(dbt_cloud_router)
    app.include_router(alerts_api_router)
    app.include_router(schedules_api_router)
    app.include_router(metrics_router)
    app.include_router(alerts_page_router)
    app.include_router(plans_api_router)
    app.include_router(plans_page_router)
    app.include_router(approvals_api_router)
    app.include_router(approvals_page_router)
    app.include_router(docs_router)
    if pages is None:

        @app.get("/", include_in_schema=False)
        async def home() -> RedirectResponse:
            return RedirectResponse("/api/docs", status_code=303)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    app.state.watcher = ProjectWatcher(project.root, settings.reload_seconds)

    @app.middleware("http")
    async def follow_project_files(request: Request, call_next: Any) -> Any:
        # Files changed by a pull, an editor or another worker's save: load them again.
        await run_in_threadpool(reload_if_changed, request.app.state)
        return await call_next(request)

    app.add_middleware(_Sessions, secret_key=secret_key, max_age=settings.session_max_age)
    security.install(app, max_body_bytes=settings.max_body_bytes)
    if settings.trusted_proxies:
        # Outermost, so the session cookie's Secure flag, the sign-in limits and the audit
        # log all see the client's address and scheme. Only these peers are believed.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    return app


PROJECT_ENV = "BACKHAUL_WEB_PROJECT_DIR"
SETTINGS_ENV = "BACKHAUL_WEB_SETTINGS"


def app_from_env() -> FastAPI:
    """The app for the project named by ``$BACKHAUL_WEB_PROJECT_DIR``.

    The factory each worker process calls when ``backhaul serve --workers N`` runs several;
    ``$BACKHAUL_WEB_SETTINGS`` (JSON of :class:`WebSettings`) carries the command line's
    settings, else the project's ``backhaul.yml`` gives them.
    """
    folder = os.environ.get(PROJECT_ENV)
    if not folder:
        raise ConfigError(f"set {PROJECT_ENV} to the project folder to serve")
    raw = os.environ.get(SETTINGS_ENV)
    settings = WebSettings.model_validate_json(raw) if raw else None
    return create_app(Path(folder), settings=settings)


def _pages_router() -> APIRouter | None:
    try:
        module = importlib.import_module("backhaul.web.pages")
    except ModuleNotFoundError as exc:
        if exc.name != "backhaul.web.pages":
            raise
        return None
    router = getattr(module, "router", None)
    return router if isinstance(router, APIRouter) else None


def start_scheduler(app: FastAPI) -> None:
    """Run the scheduler in a thread of this app until :func:`close_app`.

    Scheduled runs go through the app's run manager (so pages follow them live and a run
    button cannot start a second run of a busy sync), or to the queue with
    ``scheduler.queue``.
    """
    from backhaul.cli.schedule import open_scheduler

    project: Project = app.state.project
    launcher = None if project.config.scheduler.queue else app.state.runs
    stack = ExitStack()
    scheduler = stack.enter_context(open_scheduler(project, app.state.store, launcher=launcher))
    # The app's alert sink judges the app's own runs; the scheduler's judges the clock.
    stop = threading.Event()
    thread = threading.Thread(
        target=scheduler.run_forever, args=(stop,), name="backhaul-scheduler", daemon=True
    )
    thread.start()
    app.state.scheduler_stop = (stop, thread, stack)
    app.state.scheduler_running = True


def stop_scheduler(app: FastAPI, timeout: float = 30.0) -> None:
    """Stop the scheduler thread started by :func:`start_scheduler` (if any)."""
    found = getattr(app.state, "scheduler_stop", None)
    if found is None:
        return
    stop, thread, stack = found
    app.state.scheduler_stop = None
    app.state.scheduler_running = False
    stop.set()
    thread.join(timeout)
    stack.close()


def close_app(app: FastAPI) -> None:
    """Cancel runs in progress, send queued alerts and close the run store; safe to call twice."""
    stop_scheduler(app)
    runs: RunManager = app.state.runs
    runs.shutdown()
    alerts: AlertSink = app.state.alerts
    alerts.close()
    store: RunStore = app.state.store
    store.close()


__all__ = [
    "Project",
    "WebSettings",
    "app_from_env",
    "close_app",
    "create_app",
    "load_secret",
    "start_scheduler",
    "stop_scheduler",
]
