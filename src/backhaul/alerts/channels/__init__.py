"""Alert channels, one module each: Slack, PagerDuty, Datadog, e-mail and a signed webhook."""

from __future__ import annotations

from typing import Any

from backhaul.alerts.channels.base import Alert, Channel, ChannelConfig, Delivery, RunNotice
from backhaul.alerts.channels.datadog import DatadogChannel, DatadogChannelConfig
from backhaul.alerts.channels.pagerduty import PagerDutyChannel, PagerDutyChannelConfig
from backhaul.alerts.channels.slack import SlackChannel, SlackChannelConfig
from backhaul.alerts.channels.smtp import EmailChannel, EmailChannelConfig
from backhaul.alerts.channels.webhook import WebhookChannel, WebhookChannelConfig

# type -> (config model, channel class)
CHANNEL_TYPES: dict[str, tuple[type[ChannelConfig], Any]] = {
    "slack": (SlackChannelConfig, SlackChannel),
    "pagerduty": (PagerDutyChannelConfig, PagerDutyChannel),
    "datadog": (DatadogChannelConfig, DatadogChannel),
    "email": (EmailChannelConfig, EmailChannel),
    "webhook": (WebhookChannelConfig, WebhookChannel),
}

__all__ = ["CHANNEL_TYPES", "Alert", "Channel", "ChannelConfig", "Delivery", "RunNotice"]
