"""PagerDuty channel: Events API v2, a trigger per raise and a resolve per recovery.

Raise and resolve share a ``dedup_key`` per project, sync and rule, so PagerDuty keeps one
incident per problem and closes it when the problem clears.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from typing import Literal

from pydantic import Field

from backhaul.alerts.channels.base import Alert
from backhaul.alerts.channels.base import ChannelConfig
from backhaul.alerts.channels.base import Delivery
from backhaul.alerts.channels.base import HttpChannel
from backhaul.alerts.channels.base import RunNotice

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_LIMIT = 1024


class PagerDutyChannelConfig(ChannelConfig):
    """``channels/NAME.yml`` with ``type: pagerduty``."""

    type: Literal["pagerduty"]
    routing_key: str = Field(
        description="The integration key of an Events API v2 service (a secret: ${env:NAME})."
    )
    url: str = Field(DEFAULT_URL, description="Events API endpoint (EU accounts differ).")
    severity: Literal["critical", "error", "warning", "info"] = "error"
    source: str = Field("backhaul", description="`payload.source` of each event.")


class PagerDutyChannel(HttpChannel[PagerDutyChannelConfig]):
    label = "pagerduty"

    def secrets(self) -> Iterable[str]:
        return [self.config.routing_key]

    async def alert(self, alert: Alert) -> Delivery:
        if alert.kind == "resolved":
            return await self._send(resolve(self.config.routing_key, alert.dedup_key))
        sent = await self._send(trigger(self.config, alert))
        if alert.kind == "test" and sent.ok:
            # A test should not leave an open incident behind.
            return await self._send(resolve(self.config.routing_key, alert.dedup_key))
        return sent

    async def run_event(self, notice: RunNotice) -> Delivery | None:
        return None

    async def _send(self, body: dict[str, Any]) -> Delivery:
        return await self.sender.send("POST", self.config.url, json_body=body)


def trigger(config: PagerDutyChannelConfig, alert: Alert) -> dict[str, Any]:
    summary = f"{alert.title}: {alert.message}"
    if len(summary) > SUMMARY_LIMIT:
        summary = summary[: SUMMARY_LIMIT - 1] + "…"
    body: dict[str, Any] = {
        "routing_key": config.routing_key,
        "event_action": "trigger",
        "dedup_key": alert.dedup_key,
        "payload": {
            "summary": summary,
            "source": config.source,
            "severity": "info" if alert.kind == "test" else config.severity,
            "timestamp": alert.at.isoformat(),
            "component": alert.sync or None,
            "group": alert.project,
            "class": alert.rule,
            "custom_details": {
                "sync": alert.sync,
                "rule": alert.rule,
                "message": alert.message,
                "run_id": alert.run_id,
            },
        },
        "client": "Backhaul",
    }
    if alert.run_url:
        body["client_url"] = alert.run_url
        body["links"] = [{"href": alert.run_url, "text": "Run in Backhaul"}]
    return body


def resolve(routing_key: str, dedup_key: str) -> dict[str, Any]:
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
