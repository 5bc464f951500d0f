"""Security headers, a request body limit, and JSON errors for every failure.

Every error leaves as ``{"error": {"code": ..., "message": ...}}`` with a 4xx status (a
500 only for a bug, and then without detail). Pages get the same errors as a small HTML
page, and an anonymous page request is redirected to the login form.
"""

from __future__ import annotations

import contextlib
import html
import logging
from typing import Any

from fastapi import FastAPI
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.responses import JSONResponse
from fastapi.responses import RedirectResponse
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from backhaul.errors import AuthError
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.errors import RowLogError

log = logging.getLogger(__name__)

# Scripts, styles and everything else only from this server: no inline script or style,
# no third-party origin, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class SecurityHeaders:
    """Adds the security headers to every response; API answers are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = not scope["path"].startswith("/static/")

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if no_store and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, wrapped)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(send)
                    return
        seen = 0
        exceeded = False
        answered = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def replacing(message: Message) -> None:
            # The app may turn the interrupted read into its own error answer; whatever it
            # answers, the client gets the 413 instead.
            nonlocal answered
            if not exceeded:
                answered = answered or message["type"] == "http.response.start"
                await send(message)
            elif not answered:
                answered = True
                await self._refuse(send)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, counted, replacing)
        if exceeded and not answered:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = error_json(413, f"the request body is larger than {self.max_bytes} bytes")
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def error_json(
    status: int, message: str, *, code: str | None = None, details: Any = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code or CODES.get(status, "error"), "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def wants_json(request: Request) -> bool:
    """API paths (and clients that do not ask for HTML) get JSON errors."""
    if request.url.path.startswith("/api/v1") or "authorization" in request.headers:
        return True
    return "text/html" not in request.headers.get("accept", "")


def _error(
    request: Request,
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if wants_json(request):
        response: Response = error_json(status, message, code=code, details=details)
    else:
        text = html.escape(message)
        response = HTMLResponse(
            f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{text}</p>"
            '<p><a href="/">Back to the overview</a></p>',
            status_code=status,
        )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


async def _auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    if exc.status == 401 and not wants_json(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _error(request, exc.status, exc.message, code=exc.code, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    return _error(request, exc.status_code, message, headers=dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _error(request, 400, "the request body is not valid JSON", code="malformed_json")
    # Location and reason only: echoing the input back could reflect it into a page.
    details = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    return _error(request, 422, "the request is not valid", details=details)


async def _backhaul_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackhaulError)
    status = 400 if isinstance(exc, ConfigError) else 409
    code = "row_log_unreadable" if isinstance(exc, RowLogError) else None
    return _error(request, status, exc.message, code=code)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(request, 500, "internal error; see the server log", code="internal")


def install(app: FastAPI, *, max_body_bytes: int) -> None:
    """Add the error handlers and the security middleware to ``app``."""
    app.add_exception_handler(AuthError, _auth_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(BackhaulError, _backhaul_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeaders)
