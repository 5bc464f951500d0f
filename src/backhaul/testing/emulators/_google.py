"""What Google's APIs share, for the Google Ads and Google Sheets emulators.

Errors come as a ``google.rpc.Status`` envelope (``{"error": {code, message, status,
details}}``); access tokens are Bearer tokens that a standard OAuth 2.0 token endpoint
issues for a refresh token (``grant_type=refresh_token``).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response

from backhaul.testing.emulators._http import authorization

GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_error(
    status: int,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error answer in the ``google.rpc.Status`` shape."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": GRPC_STATUS.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def retry_info(seconds: float) -> dict[str, Any]:
    """A ``google.rpc.RetryInfo`` detail."""
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds:g}s"}


@dataclass(eq=False, repr=False, kw_only=True)
class GoogleOAuth:
    """Bearer tokens: fixed ones, plus those the token endpoint issues for the refresh token.

    Args:
        client_id: The OAuth client id.
        client_secret: Its secret.
        refresh_token: The refresh token the endpoint exchanges.
        tokens: Access tokens accepted from the start.
        scope: The scope reported with an issued token.
    """

    client_id: str
    client_secret: str
    refresh_token: str
    tokens: tuple[str, ...]
    scope: str
    _issued: set[str] = field(default_factory=set, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def valid(self, request: Request) -> str | None:
        """The Bearer token of ``request`` when it is accepted, else ``None``."""
        token = authorization(request, "Bearer")
        if token is None:
            return None
        with self._lock:
            known = token in self._issued
        if known or any(hmac.compare_digest(token, t) for t in self.tokens):
            return token
        return None

    def revoke_all(self) -> None:
        """Forget issued tokens (as if they expired)."""
        with self._lock:
            self._issued.clear()

    async def token_endpoint(self, request: Request) -> Response:
        """``POST /token`` with ``grant_type=refresh_token``, as Google's OAuth server."""
        form = await request.form()
        if form.get("grant_type") != "refresh_token":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"},
                status_code=400,
            )
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "The OAuth client was not found."},
                status_code=401,
            )
        if form.get("refresh_token") != self.refresh_token:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Bad Request"}, status_code=400
            )
        token = "ya29.emulator-" + secrets.token_urlsafe(24)
        with self._lock:
            self._issued.add(token)
        return JSONResponse(
            {"access_token": token, "expires_in": 3599, "scope": self.scope, "token_type": "Bearer"}
        )
