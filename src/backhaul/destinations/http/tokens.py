"""OAuth token calls as they are recorded: the issued tokens and the form's secrets masked.

Salesforce, Google Ads and Google Sheets exchange a refresh token (or a client secret) for
an access token; the call is recorded like any other, so its body must not carry either.
"""

from __future__ import annotations

import json as jsonlib

from backhaul.calls import CallRecorder
from backhaul.calls import HttpCall
from backhaul.observe.redact import MASK

TOKEN_FIELDS = ("access_token", "refresh_token", "id_token", "signature")
FORM_SECRETS = ("client_secret", "refresh_token")


class TokenCallRecorder:
    """Records token calls with the issued tokens and the form's secrets masked."""

    def __init__(self, inner: CallRecorder) -> None:
        self.inner = inner

    def record(self, call: HttpCall) -> None:
        if call.request_body:
            call.request_body = "&".join(
                f"{part.partition('=')[0]}={MASK}"
                if part.partition("=")[0] in FORM_SECRETS
                else part
                for part in call.request_body.split("&")
            )
        if call.response_body:
            try:
                body = jsonlib.loads(call.response_body)
            except ValueError:
                body = None
            if isinstance(body, dict):
                call.response_body = jsonlib.dumps(
                    {k: MASK if k in TOKEN_FIELDS else v for k, v in body.items()}
                )
        self.inner.record(call)


__all__ = ["FORM_SECRETS", "TOKEN_FIELDS", "TokenCallRecorder"]
