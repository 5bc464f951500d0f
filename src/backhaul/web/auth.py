"""Who is asking, and may they: roles, the current user, CSRF tokens, login and logout.

A request is authenticated by the session cookie set at login, or by an API token in
``Authorization: Bearer <token>``. The cookie is signed and holds a random session id and
the CSRF token; the session itself lives in the run store (``backhaul.web.sessions``) and
is looked up on every request, so signing out ends it for every copy of the cookie.
Cookie-authenticated requests that change state must carry the session's CSRF token (form
field ``csrf_token`` or header ``X-CSRF-Token``); token-authenticated requests are exempt,
because a browser never adds that header on its own.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any

from fastapi import APIRouter
from fastapi import Depends
from fastapi import Form
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.responses import RedirectResponse
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from backhaul.errors import AuthError
from backhaul.web.app_state import FromApp

if TYPE_CHECKING:
    from backhaul.state.accounts import AccountStore
    from backhaul.web.sessions import SessionStore
    from backhaul.web.users import UserStore

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
_SESSION_ID = "sid"
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


_users: FromApp[UserStore] = FromApp("users")
_sessions: FromApp[SessionStore] = FromApp("sessions")


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
        sid = request.session.get(_SESSION_ID)
        if not isinstance(sid, str):
            raise AuthError(401, "unauthorized", "sign in first")
        found = await run_in_threadpool(_sessions(request).user_for, sid)
        if found is None:
            # Signed out, expired or the user changed: drop the dead id from the cookie.
            request.session.pop(_SESSION_ID, None)
            raise AuthError(401, "unauthorized", "the session has ended: sign in again")
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
# The current user when their role allows at least the one named (else 403).
Viewer = Annotated[User, Depends(require(Role.VIEWER))]
Operator = Annotated[User, Depends(require(Role.OPERATOR))]
Editor = Annotated[User, Depends(require(Role.EDITOR))]
Admin = Annotated[User, Depends(require(Role.ADMIN))]


@dataclass(frozen=True, slots=True)
class Throttle:
    """Why sign-ins are refused for now: which count is full and for how long."""

    seconds: int
    scope: str  # "address" or "name"


class LoginLimiter:
    """Counts failed sign-ins in a moving one-minute window, in the run store.

    The counts live in the store (``sign_in_failures``), so every process of
    ``backhaul serve --workers N`` and every machine serving the same store count together:
    more processes never mean more guesses. Two counts: per client address, whatever the
    names (what slows guessing across many accounts), and per address and user name (what
    stops guessing one account early). A successful sign-in clears only its own name's
    count: signing in to one's own account must not reset the count of an address that is
    guessing others. Each method is a short blocking transaction (call it from a thread).

    Args:
        accounts: The store of the web app's own tables.
        per_name: Failures allowed per minute for one name from one address.
        per_address: Failures allowed per minute from one address.
    """

    WINDOW = timedelta(minutes=1)
    KEEP = timedelta(hours=1)  # older failures are pruned: no count looks back that far

    def __init__(
        self,
        accounts: AccountStore,
        per_name: int,
        per_address: int,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._accounts = accounts
        self._per_name = per_name
        self._per_address = per_address
        self._clock = clock or (lambda: datetime.now(UTC))

    def throttle(self, ip: str, username: str) -> Throttle | None:
        """What refuses another attempt now, or None when one is allowed."""
        now = self._clock()
        since = now - self.WINDOW
        counts = [
            ("address", self._per_address, None),
            ("name", self._per_name, username),
        ]
        for scope, limit, name in counts:
            failures = self._accounts.recent_sign_in_failures(ip, since, name)
            if len(failures) >= limit:
                # Allowed again once the oldest of the last `limit` failures leaves the window.
                frees = failures[len(failures) - limit] + self.WINDOW
                return Throttle(max(1, math.ceil((frees - now).total_seconds())), scope)
        return None

    def failed(self, ip: str, username: str) -> None:
        """Count one failed attempt against both counts."""
        now = self._clock()
        self._accounts.sign_in_failed(ip, username, now)
        self._accounts.prune_sign_in_failures(now - self.KEEP)

    def succeeded(self, ip: str, username: str) -> None:
        """Forget the failures of this name from this address (not the address's)."""
        self._accounts.forget_sign_in_failures(ip, username)


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or a trusted proxy's ``X-Forwarded-For`` value."""
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
    """Check the password and start a session (rate limited per address and per name)."""
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
    throttle = await run_in_threadpool(limiter.throttle, ip, username)
    if throttle is not None:
        details = {"limit": throttle.scope}
        await run_in_threadpool(users.audit, None, "login_throttled", username, details, ip)
        response = _login_page(
            request,
            error=f"Too many failed attempts: wait {throttle.seconds} seconds.",
            status=429,
            next_url=next_url,
            username=username,
        )
        response.headers["Retry-After"] = str(throttle.seconds)
        return response
    user = await run_in_threadpool(users.authenticate, username, password)
    if user is None:
        await run_in_threadpool(limiter.failed, ip, username)
        await run_in_threadpool(users.audit, None, "login_failed", username, None, ip)
        return _login_page(
            request,
            error="Wrong username or password.",
            status=401,
            next_url=next_url,
            username=username,
        )
    await run_in_threadpool(limiter.succeeded, ip, username)
    sessions = _sessions(request)
    previous = request.session.get(_SESSION_ID)
    if isinstance(previous, str):
        await run_in_threadpool(sessions.end, previous)
    # A new session id (and CSRF token) at every sign-in: an id planted before sign-in is
    # never the one that gets signed in.
    request.session.clear()
    request.session[_SESSION_ID] = await run_in_threadpool(sessions.start, user.id)
    csrf_token(request)
    await run_in_threadpool(users.audit, user.username, "login", user.username, None, ip)
    return RedirectResponse(next_url, status_code=303)


@router.post("/logout")
async def logout(request: Request, user: CurrentUser) -> Response:
    """End every session of the user, in every browser and server process."""
    ended = await run_in_threadpool(_sessions(request).end_all, user.id)
    request.session.clear()
    await run_in_threadpool(
        _users(request).audit,
        user.username,
        "logout",
        user.username,
        {"sessions_ended": ended},
        client_ip(request),
    )
    return RedirectResponse("/login", status_code=303)
