"""Who is asking, and may they: roles, the current user, CSRF tokens, login and logout.

A request is authenticated by the signed session cookie set at login, or by an API token
in ``Authorization: Bearer <token>``. Cookie-authenticated requests that change state
must carry the session's CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``); token-authenticated requests are exempt, because a browser never adds
that header on its own.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from backhaul.web.users import UserStore

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
_SESSION_USER = "uid"
_SESSION_CSRF = "csrf"


class Role(StrEnum):
    """What a user may do; each role includes the ones before it."""

    VIEWER = "viewer"  # read everything (but secrets)
    OPERATOR = "operator"  # run and cancel syncs
    EDITOR = "editor"  # change audiences and syncs
    ADMIN = "admin"  # manage users and tokens

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, required: Role) -> bool:
        """True when this role has at least the rights of ``required``."""
        return self.rank >= Role(required).rank


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in user."""

    id: int
    username: str
    role: Role


class AuthError(Exception):
    """Raised by the auth dependencies; turned into 401/403 (or a login redirect)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _users(request: Request) -> UserStore:
    users: UserStore = request.app.state.users
    return users


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use); put it in forms and hx-headers."""
    session = request.session
    token = session.get(_SESSION_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[_SESSION_CSRF] = token
    return token


def _csrf_ok(request: Request, sent: object) -> bool:
    expected = request.session.get(_SESSION_CSRF)
    return (
        isinstance(expected, str)
        and isinstance(sent, str)
        and bool(expected)
        and hmac.compare_digest(expected.encode(), sent.encode())
    )


async def _check_csrf(request: Request) -> None:
    sent: object = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            sent = form.get(CSRF_FIELD)
    if not _csrf_ok(request, sent):
        raise AuthError(403, "csrf_failed", "missing or wrong CSRF token; reload the page")


async def current_user(request: Request) -> User:
    """The authenticated user (session cookie or API token).

    Raises AuthError 401 for anonymous requests and 403 when a cookie-authenticated request
    that changes state lacks the CSRF token.
    """
    cached = request.scope.get("backhaul.user")
    if isinstance(cached, User):
        return cached
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "unauthorized", "use `Authorization: Bearer <api token>`")
        user = await run_in_threadpool(_users(request).user_for_token, token.strip())
        if user is None:
            raise AuthError(401, "unauthorized", "unknown or revoked API token")
    else:
        uid = request.session.get(_SESSION_USER)
        found = await run_in_threadpool(_users(request).get, uid) if isinstance(uid, int) else None
        if found is None:
            raise AuthError(401, "unauthorized", "sign in first")
        user = found
        if request.method not in SAFE_METHODS:
            await _check_csrf(request)
    request.scope["backhaul.user"] = user
    return user


def require(role: Role) -> Callable[[Request], Awaitable[User]]:
    """A dependency that returns the current user when their role allows ``role``, else 403."""

    async def dependency(request: Request) -> User:
        user = await current_user(request)
        if not user.role.allows(role):
            raise AuthError(403, "forbidden", f"this needs the {role.value} role")
        return user

    dependency.__name__ = f"require_{role.value}"
    return dependency


CurrentUser = Annotated[User, Depends(current_user)]


class LoginLimiter:
    """Counts failed logins per (client IP, username) in a sliding one-minute window."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > 60:
            times.popleft()
        return times

    def retry_after(self, ip: str, username: str) -> int:
        """Seconds to wait before another attempt is allowed (0: allowed now)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent((ip, username.lower()), now)
            if len(times) < self.per_minute:
                return 0
            return max(1, int(60 - (now - times[0])) + 1)

    def failed(self, ip: str, username: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 10_000:  # bound memory under a spray of names
                self._failures.clear()
            self._recent((ip, username.lower()), now).append(now)

    def succeeded(self, ip: str, username: str) -> None:
        with self._lock:
            self._failures.pop((ip, username.lower()), None)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


router = APIRouter(include_in_schema=False)
_LOGIN_TEMPLATE = Path(__file__).parent / "templates" / "login.html"


def _safe_next(target: str | None) -> str:
    # Only local paths: an absolute or protocol-relative URL would make login an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_page(
    request: Request,
    *,
    error: str | None = None,
    status: int = 200,
    next_url: str = "/",
    username: str = "",
) -> HTMLResponse:
    from backhaul.web.deps import templates

    context: dict[str, Any] = {"error": error, "next": next_url, "username": username}
    response = templates.TemplateResponse(request, "login.html", context, status_code=status)
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in form."""
    return _login_page(request, next_url=_safe_next(next))


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """Check the password and start a session (rate limited per IP and username)."""
    next_url = _safe_next(next)
    if not _csrf_ok(request, csrf):
        return _login_page(
            request,
            error="Your session expired: try again.",
            status=403,
            next_url=next_url,
            username=username,
        )
    ip = client_ip(request)
    limiter: LoginLimiter = request.app.state.login_limiter
    users = _users(request)
    wait = limiter.retry_after(ip, username)
    if wait:
        await run_in_threadpool(users.audit, None, "login_throttled", username, None, ip)
        response = _login_page(
            request,
            error=f"Too many failed attempts: wait {wait} seconds.",
            status=429,
            next_url=next_url,
            username=username,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    user = await run_in_threadpool(users.authenticate, username, password)
    if user is None:
        limiter.failed(ip, username)
        await run_in_threadpool(users.audit, None, "login_failed", username, None, ip)
        return _login_page(
            request,
            error="Wrong username or password.",
            status=401,
            next_url=next_url,
            username=username,
        )
    limiter.succeeded(ip, username)
    # A fresh session (and CSRF token) at login, so a planted cookie cannot be reused.
    request.session.clear()
    request.session[_SESSION_USER] = user.id
    csrf_token(request)
    await run_in_threadpool(users.audit, user.username, "login", user.username, None, ip)
    return RedirectResponse(next_url, status_code=303)


@router.post("/logout")
async def logout(request: Request, user: CurrentUser) -> Response:
    """End the session."""
    request.session.clear()
    await run_in_threadpool(
        _users(request).audit, user.username, "logout", user.username, None, client_ip(request)
    )
    return RedirectResponse("/login", status_code=303)
