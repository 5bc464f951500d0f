"""Slack channel: a Block Kit message through an incoming webhook or ``chat.postMessage``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from backhaul.alerts.channels.base import Alert
from backhaul.alerts.channels.base import ChannelConfig
from backhaul.alerts.channels.base import Delivery
from backhaul.alerts.channels.base import HttpChannel
from backhaul.alerts.channels.base import RunNotice
from backhaul.destinations.slack import DEFAULT_API
from backhaul.destinations.slack import check_one_way_in
from backhaul.destinations.slack import checked_webhook_url
from backhaul.destinations.slack_digest import clip

ICONS = {"raised": ":red_circle:", "resolved": ":large_green_circle:", "test": ":wave:"}


class SlackChannelConfig(ChannelConfig):
    """``channels/NAME.yml`` with ``type: slack``."""

    type: Literal["slack"]
    webhook_url: str | None = Field(
        None, description="Incoming webhook URL (a secret: use ${env:NAME}). Or set `token`."
    )
    token: str | None = Field(None, description="Bot token (xoxb-...) with chat:write.")
    channel: str | None = Field(None, description="Channel id or #name (with `token`).")
    base_url: str = Field(DEFAULT_API, description="Slack Web API base URL.")

    @field_validator("webhook_url")
    @classmethod
    def _webhook_shape(cls, value: str | None) -> str | None:
        return checked_webhook_url(value)

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackChannelConfig:
        check_one_way_in(self.webhook_url, self.token, self.channel)
        return self


class SlackChannel(HttpChannel[SlackChannelConfig]):
    """Posts one message per alert; the button opens the run in the web app."""

    label = "slack"

    def secrets(self) -> Iterable[str]:
        yield self.config.token or ""
        if url := self.config.webhook_url:
            # The whole URL is the secret; its path and last segment alone are enough too.
            path = urlsplit(url).path
            yield from (url, path, path.rstrip("/").rpartition("/")[2])

    async def alert(self, alert: Alert) -> Delivery:
        return await self._post(message(alert))

    async def run_event(self, notice: RunNotice) -> Delivery | None:
        return None

    async def _post(self, body: dict[str, Any]) -> Delivery:
        if self.config.webhook_url is not None:
            return await self.sender.send("POST", self.config.webhook_url, json_body=body)
        url = f"{self.config.base_url.rstrip('/')}/chat.postMessage"
        headers = {"Authorization": f"Bearer {self.config.token}"}
        sent = await self.sender.send(
            "POST", url, json_body={**body, "channel": self.config.channel}, headers=headers
        )
        if not sent.ok:
            return sent
        # The Web API answers 200 with {"ok": false, "error": ...} when it refuses a message.
        answer = _answer(sent)
        if answer is not None:
            return Delivery(
                False, sent.status, f"slack refused the message: {answer}", sent.request
            )
        return sent


def _answer(sent: Delivery) -> str | None:
    """Slack's error code when the Web API refused the message, else ``None``."""
    body = sent.answer
    if isinstance(body, dict) and body.get("ok") is True:
        return None
    if isinstance(body, dict):
        return str(body.get("error") or "unknown_error")
    return "the answer was not Slack's JSON"


def message(alert: Alert) -> dict[str, Any]:
    """The Block Kit message of an alert (text is the notification's fallback)."""
    fields = [
        {"type": "mrkdwn", "text": f"*Sync*\n{alert.sync or '—'}"},
        {"type": "mrkdwn", "text": f"*Rule*\n{alert.rule}"},
        {"type": "mrkdwn", "text": f"*Project*\n{alert.project}"},
    ]
    if alert.run_id:
        fields.append({"type": "mrkdwn", "text": f"*Run*\n{alert.run_id}"})
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(alert.headline, 150), "emoji": True},
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{ICONS[alert.kind]} {clip(alert.message, 2900)}"},
        },
        {"type": "section", "fields": fields},
    ]
    if alert.run_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open run"},
                        "url": alert.run_url,
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"Backhaul · {alert.at:%Y-%m-%d %H:%M:%S %Z}"}],
        }
    )
    return {"text": f"{alert.headline}: {alert.message}", "blocks": blocks}
