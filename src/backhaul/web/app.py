"""The web app: REST API, pages, login, static files and the security layers around them."""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from backhaul.config.project import Project
from backhaul.errors import ConfigError
from backhaul.state.store import RunStore
from backhaul.web import security
from backhaul.web.auth import LoginLimiter
from backhaul.web.auth import router as auth_router
from backhaul.web.runs import RunManager
from backhaul.web.users import UserStore

STATIC_DIR = Path(__file__).parent / "static"
SECRET_FILE = "web_secret"
SESSION_COOKIE = "backhaul_session"


class WebSettings(BaseModel):
    """Settings of the web app.

    Attributes:
        secret_key: Signs session cookies. Default: generated once and kept in
            ``<state dir>/web_secret`` (mode 0600), so sessions survive a restart.
        session_max_age: Seconds a session stays valid after sign-in.
        login_rate: Failed sign-ins allowed per minute per client IP and username.
        max_body_bytes: Larger request bodies are refused with 413.
    """

    secret_key: str | None = Field(None, min_length=32)
    session_max_age: int = Field(8 * 3600, gt=0)
    login_rate: int = Field(5, gt=0)
    max_body_bytes: int = Field(1024 * 1024, gt=0)


def load_secret(state_dir: Path) -> str:
    """The app's signing key from ``state_dir/web_secret``, created (0600) on first use."""
    path = state_dir / SECRET_FILE
    if path.exists():
        text = path.read_text(encoding="utf-8").strip()
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
    """Signed-cookie sessions whose cookie is marked Secure when the request came over https."""

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


def create_app(project_dir: Path, *, settings: WebSettings | None = None) -> FastAPI:
    """Build the web app for the project in ``project_dir``.

    Loads the project, opens (and migrates) its run store, and wires the API, the pages,
    login and static files. Call :func:`close_app` (or serve with lifespan on) to release
    the store and stop runs in progress.
    """
    from backhaul.api import load_project

    settings = settings or WebSettings()
    project = load_project(project_dir)
    secret_key = settings.secret_key or load_secret(project.state_dir)
    store = RunStore.open(project.metadata_url)
    users = UserStore(store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
    app.state.store = store
    app.state.users = users
    app.state.runs = RunManager(project, store, users)
    app.state.login_limiter = LoginLimiter(settings.login_rate)

    from backhaul.web.api import docs_router
    from backhaul.web.api import router as api_router

    # Routes are matched in order: the pages (the overview is the busiest) come first. No
    # page path overlaps an API, docs or login path, so the order changes nothing else.
    pages = _pages_router()
    if pages is not None:
        app.include_router(pages)
    app.include_router(auth_router)
    app.include_router(api_router)
    app.include_router(docs_router)
    if pages is None:

        @app.get("/", include_in_schema=False)
        async def home() -> RedirectResponse:
            return RedirectResponse("/api/docs", status_code=303)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    app.add_middleware(_Sessions, secret_key=secret_key, max_age=settings.session_max_age)
    security.install(app, max_body_bytes=settings.max_body_bytes)
    return app


PROJECT_ENV = "BACKHAUL_WEB_PROJECT_DIR"


def app_from_env() -> FastAPI:
    """The app for the project named by ``$BACKHAUL_WEB_PROJECT_DIR``.

    The factory each worker process calls when ``backhaul serve --workers N`` runs several.
    """
    folder = os.environ.get(PROJECT_ENV)
    if not folder:
        raise ConfigError(f"set {PROJECT_ENV} to the project folder to serve")
    return create_app(Path(folder))


def _pages_router() -> APIRouter | None:
    try:
        module = importlib.import_module("backhaul.web.pages")
    except ModuleNotFoundError as exc:
        if exc.name != "backhaul.web.pages":
            raise
        return None
    router = getattr(module, "router", None)
    return router if isinstance(router, APIRouter) else None


def close_app(app: FastAPI) -> None:
    """Cancel runs in progress and close the run store; safe to call twice."""
    runs: RunManager = app.state.runs
    runs.shutdown()
    store: RunStore = app.state.store
    store.close()


__all__ = ["Project", "WebSettings", "app_from_env", "close_app", "create_app", "load_secret"]
