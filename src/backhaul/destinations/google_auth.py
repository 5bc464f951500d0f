"""Google OAuth for Google's APIs: a fixed access token, or one a refresh token buys.

A destination file gives either ``access_token`` (a service account's token, say) or
``oauth`` (an OAuth client and a refresh token issued to it); :class:`GoogleTokens` hands
out the Bearer token to send, exchanging the refresh token at the token endpoint when there
is none yet or the last one expired. The exchange is recorded with the tokens masked, and
each issued token is added to the destination's redactor.
"""

from __future__ import annotations

from urllib.parse import urlencode

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from backhaul.destinations.base import DestinationContext
from backhaul.destinations.http.connector import HttpSettings
from backhaul.destinations.http.connector import client_for
from backhaul.destinations.http.tokens import TokenCallRecorder
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.observe.redact import Redactor


class GoogleOAuth(BaseModel):
    """``oauth:`` in a destination file: an OAuth client and a refresh token for it."""

    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1, description="Use ${env:NAME}.")
    refresh_token: str = Field(min_length=1, description="Use ${env:NAME}.")
    token_url: str = Field("https://oauth2.googleapis.com/token", description="Token endpoint.")


class GoogleTokens:
    """The Bearer token of a destination's calls.

    Args:
        vendor: How messages and recorded calls name the destination.
        access_token: A fixed token (``oauth`` is then ``None``).
        oauth: The client and refresh token to exchange.
        settings: The destination file's HTTP settings (retry, timeout).
        context: The run's context (its recorder).
        redactor: Learns every issued token.
    """

    def __init__(
        self,
        vendor: str,
        access_token: str | None,
        oauth: GoogleOAuth | None,
        settings: HttpSettings,
        context: DestinationContext,
        redactor: Redactor,
    ) -> None:
        self.vendor = vendor
        self.oauth = oauth
        self.token = access_token
        self.redactor = redactor
        recorder = TokenCallRecorder(context.recorder)
        self.client = client_for(
            vendor, settings, context, redactor, concurrency=1, recorder=recorder
        )

    @property
    def renewable(self) -> bool:
        return self.oauth is not None

    def expire(self) -> None:
        """Forget the token (Google refused it): the next call exchanges a new one."""
        if self.oauth is not None:
            self.token = None

    async def bearer(self) -> str:
        """The token to send, exchanged first when there is none."""
        if self.token is not None:
            return self.token
        oauth = self.oauth
        assert oauth is not None, "a fixed token is never forgotten"
        form = {
            "grant_type": "refresh_token",
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
            "refresh_token": oauth.refresh_token,
        }
        result = await self.client.request(
            "POST",
            oauth.token_url,
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        token = (result.json or {}).get("access_token") if result.ok else None
        if not isinstance(token, str) or not token:
            raise DestinationError(
                f"{self.vendor}: Google refused the refresh token ({result.error}): check "
                "`oauth` in the destination file",
                failure=FailureType.CONFIG,
            )
        self.redactor.add(token)
        self.token = token
        return token

    async def aclose(self) -> None:
        await self.client.aclose()
