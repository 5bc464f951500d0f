"""Salesforce sessions: OAuth login, authenticated calls, renewal and API limits.

A :class:`SalesforceSession` logs in at the token endpoint (client credentials or refresh
token), sends every data call with the session's bearer token, renews the session once when
Salesforce answers ``INVALID_SESSION_ID``, backs off on the concurrent request limit and
stops a batch when the org's daily API allocation is used up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Literal
from urllib.parse import urlencode
from urllib.parse import urlsplit

from pydantic import BaseModel
from pydantic import ConfigDict

from backhaul.destinations.http import HttpClient
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import RetryPolicy
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.observe.events import WaitKind
from backhaul.observe.redact import Redactor


class ClientCredentials(BaseModel):
    """OAuth client credentials flow of a connected app (with a run-as user)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["client_credentials"]
    client_id: str
    client_secret: str


class RefreshTokenAuth(BaseModel):
    """A refresh token issued to the connected app for a user."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["refresh_token"]
    client_id: str
    client_secret: str
    refresh_token: str


def sf_errors(body: Any) -> list[tuple[str, str]]:
    """``(errorCode, message)`` pairs of a Salesforce REST error array."""
    items = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
    out = []
    for item in items:
        if isinstance(item, dict):
            code = item.get("errorCode") or item.get("statusCode") or item.get("error") or ""
            message = item.get("message") or item.get("error_description") or ""
            out.append((str(code), str(message)))
    return out


# No repr: it would show the credentials. Compared by identity, like any live session.
@dataclass(kw_only=True, eq=False, repr=False)
class SalesforceSession:
    """One org's session, shared by every task of a destination.

    Attributes:
        auth: The connected app's credentials.
        login_url: Where tokens come from.
        instance_url: API host; ``None``: the ``instance_url`` of the token answer.
        api_version: ``v62.0`` and the like.
        retry: How often to retry a call refused by the concurrent request limit.
        client: Sends data calls (rate limited, recorded).
        token_client: Sends token calls (recorded with the tokens masked).
        redactor: Learns each issued access token.
    """

    auth: ClientCredentials | RefreshTokenAuth
    login_url: str
    instance_url: str | None
    api_version: str
    retry: RetryPolicy
    client: HttpClient
    token_client: HttpClient
    redactor: Redactor
    _token: str | None = field(default=None, init=False)
    _instance: str | None = field(default=None, init=False)
    _auth_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def start(self) -> None:
        """Log in now (a connection test), whether or not a session is open."""
        async with self._auth_lock:
            await self.login()

    async def aclose(self) -> None:
        """Close both clients' connections; the session itself stays valid."""
        await self.client.aclose()
        await self.token_client.aclose()

    async def login(self) -> None:
        """Get a new access token from the OAuth token endpoint."""
        auth = self.auth
        form = {
            "grant_type": auth.type,
            "client_id": auth.client_id,
            "client_secret": auth.client_secret,
        }
        if isinstance(auth, RefreshTokenAuth):
            form["refresh_token"] = auth.refresh_token
        url = self.login_url.rstrip("/") + "/services/oauth2/token"
        result = await self.token_client.request(
            "POST",
            url,
            content=urlencode(form).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            expected=range(200, 500),
        )
        body = result.json if isinstance(result.json, dict) else {}
        if result.status != 200 or not body.get("access_token"):
            raise DestinationError(
                self._login_problem(result, body), failure=FailureType.CONFIG, status=result.status
            )
        self._token = str(body["access_token"])
        self.redactor.add(self._token)
        self._instance = (self.instance_url or str(body.get("instance_url") or "")).rstrip(
            "/"
        ) or self.login_url.rstrip("/")

    def _login_problem(self, result: HttpResult, body: dict[str, Any]) -> str:
        host = urlsplit(self.login_url).netloc or self.login_url
        code = str(body.get("error") or "")
        said = self.redactor.text(f"{code}: {body.get('error_description', '')}".strip(": "))
        if not code:
            return (
                f"salesforce login at {host} answered {result.status} {result.reason}: "
                "check `login_url` in the destination file"
            )
        fix = {
            "invalid_client_id": "check `auth.client_id` (the connected app's consumer key)",
            "invalid_client": "check `auth.client_id` and `auth.client_secret` (the connected "
            "app's consumer key and secret)",
            "unsupported_grant_type": f"enable the {self.auth.type} flow for the connected app",
        }.get(code)
        if fix is None and code == "invalid_grant":
            fix = (
                "check `auth.refresh_token` (it may be revoked or expired)"
                if isinstance(self.auth, RefreshTokenAuth)
                else "check that the connected app allows the client credentials flow and "
                "has a run-as user"
            )
        return (
            f"salesforce login at {host} refused the credentials ({said}): "
            f"{fix or 'check `auth` in the destination file'}"
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        """One data call (``path`` relative to ``/services/data/<version>``, or absolute).

        Renews the session once on ``INVALID_SESSION_ID``; backs off on the concurrent
        request limit; fails the batch when the org's daily API allocation is used up.
        Other 4xx answers are returned for the caller to read.
        """
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            async with self._auth_lock:
                if self._token is None:
                    await self.login()
                token, base = self._token, self._instance
            url = (
                path
                if path.startswith("/services/")
                else f"/services/data/{self.api_version}{path}"
            )
            result = await self.client.request(
                method,
                f"{base}{url}",
                json=json,
                content=content,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                expected=range(200, 500),
            )
            codes = [c for c, _ in sf_errors(result.json)] if result.status >= 400 else []
            if result.status == 401 and not renewed:
                renewed = True
                async with self._auth_lock:
                    if self._token == token:  # another task may have renewed it already
                        self._token = None
                continue
            if result.status == 401:
                raise DestinationError(
                    "salesforce refused the new session too (INVALID_SESSION_ID): check that "
                    "the user of `auth` has API access and the org allows it",
                    failure=FailureType.CONFIG,
                    status=401,
                )
            if result.status == 403 and "REQUEST_LIMIT_EXCEEDED" in codes:
                usage = result.headers.get("sforce-limit-info", "")
                message = " ".join(m for _, m in sf_errors(result.json))
                if "TotalRequests" in message:
                    raise DestinationError(
                        f"salesforce org has used its daily API request allocation ({usage}): "
                        "rows stay pending; run again when the rolling 24-hour window frees "
                        "requests, or raise the org's limit",
                        failure=FailureType.TRANSIENT,
                        status=403,
                    )
                policy = self.retry
                if attempt < policy.max_attempts:
                    wait = result.headers.get("retry-after")
                    await self.client.hold(
                        float(wait) if wait and wait.isdigit() else policy.delay(attempt),
                        "salesforce concurrent request limit (403 REQUEST_LIMIT_EXCEEDED); "
                        f"retry {attempt + 1} of {policy.max_attempts}",
                        WaitKind.RATE_LIMIT,
                    )
                    continue
                raise DestinationError(
                    f"salesforce kept refusing calls ({message}, {attempt} attempts): lower "
                    "`concurrency` or `rate_limit`",
                    failure=FailureType.TRANSIENT,
                    status=403,
                )
            return result
