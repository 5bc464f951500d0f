"""Webhook channel: JSON lifecycle events, signed with HMAC-SHA256 like the webhook destination.

Events: ``run.started``, ``run.succeeded`` (status succeeded or partial), ``run.failed``
(failed, guarded or cancelled; the body says which), ``alert.raised``, ``alert.resolved``
and ``alert.test``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any
from typing import Literal

from pydantic import Field
from pydantic import field_validator

from backhaul.alerts.channels.base import Alert
from backhaul.alerts.channels.base import ChannelConfig
from backhaul.alerts.channels.base import Delivery
from backhaul.alerts.channels.base import HttpChannel
from backhaul.alerts.channels.base import RunNotice
from backhaul.destinations.http import dumps_json
from backhaul.destinations.webhook import PLAIN_HEADERS
from backhaul.destinations.webhook import SIGNATURE_HEADER
from backhaul.destinations.webhook import TIMESTAMP_HEADER
from backhaul.destinations.webhook import signature
from backhaul.destinations.webhook import url_problem

EventName = Literal["run.started", "run.succeeded", "run.failed", "alert.raised", "alert.resolved"]
ALL_EVENTS: list[EventName] = [
    "run.started",
    "run.succeeded",
    "run.failed",
    "alert.raised",
    "alert.resolved",
]


class WebhookChannelConfig(ChannelConfig):
    """``channels/NAME.yml`` with ``type: webhook``."""

    type: Literal["webhook"]
    url: str = Field(description="Where events are posted (http or https).")
    signing_secret: str | None = Field(
        None,
        description="Sign each body with HMAC-SHA256 (header X-Backhaul-Signature: sha256=<hex>).",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent with every call (values are redacted)."
    )
    events: list[EventName] = Field(
        default_factory=lambda: list(ALL_EVENTS), description="Which events to send."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if "${" not in value:
            problem = url_problem(value)
            if problem:
                raise ValueError(problem)
        return value


class WebhookChannel(HttpChannel[WebhookChannelConfig]):
    label = "webhook"

    def secrets(self) -> Iterable[str]:
        yield self.config.signing_secret or ""
        for header, value in self.config.headers.items():
            if header.lower() not in PLAIN_HEADERS:
                yield value
                yield value.partition(" ")[2]

    async def alert(self, alert: Alert) -> Delivery | None:
        event = f"alert.{alert.kind}"
        if alert.kind != "test" and event not in self.config.events:
            return None
        return await self._post(
            {
                "event": event,
                "project": alert.project,
                "sync": alert.sync or None,
                "rule": alert.rule,
                "title": alert.title,
                "message": alert.message,
                "at": alert.at.isoformat(),
                "dedup_key": alert.dedup_key,
                "run_id": alert.run_id,
                "run_url": alert.run_url,
            }
        )

    async def run_event(self, notice: RunNotice) -> Delivery | None:
        if notice.what not in self.config.events:
            return None
        return await self._post(
            {
                "event": notice.what,
                "project": notice.project,
                "sync": notice.sync,
                "run_id": notice.run_id,
                "status": notice.status,
                "at": notice.at.isoformat(),
                "counts": dict(notice.counts),
                "duration_s": round(notice.duration_s, 3),
                "error": notice.error,
                "run_url": notice.run_url,
            }
        )

    async def _post(self, payload: dict[str, Any]) -> Delivery:
        body = dumps_json({"id": uuid.uuid4().hex, **payload})
        headers = {**self.config.headers, "Content-Type": "application/json"}
        if self.config.signing_secret:
            headers[SIGNATURE_HEADER] = signature(self.config.signing_secret, body)
            headers[TIMESTAMP_HEADER] = str(int(time.time()))
        return await self.sender.send("POST", self.config.url, content=body, headers=headers)
