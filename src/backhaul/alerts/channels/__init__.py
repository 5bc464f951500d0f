"""Alert channels, one module each: Slack, PagerDuty, Datadog, e-mail and a signed webhook."""

from __future__ import annotations

from typing import Any

from backhaul.alerts.channels.base import Alert
from backhaul.alerts.channels.base import Channel
from backhaul.alerts.channels.base import ChannelConfig
from backhaul.alerts.channels.base import Delivery
from backhaul.alerts.channels.base import RunNotice
from backhaul.alerts.channels.datadog import DatadogChannel
from backhaul.alerts.channels.datadog import DatadogChannelConfig
from backhaul.alerts.channels.pagerduty import PagerDutyChannel
from backhaul.alerts.channels.pagerduty import PagerDutyChannelConfig
from backhaul.alerts.channels.slack import SlackChannel
from backhaul.alerts.channels.slack import SlackChannelConfig
from backhaul.alerts.channels.smtp import EmailChannel
from backhaul.alerts.channels.smtp import EmailChannelConfig
from backhaul.alerts.channels.webhook import WebhookChannel
from backhaul.alerts.channels.webhook import WebhookChannelConfig

# type -> (config model, channel class)
CHANNEL_TYPES: dict[str, tuple[type[ChannelConfig], Any]] = {
    "slack": (SlackChannelConfig, SlackChannel),
    "pagerduty": (PagerDutyChannelConfig, PagerDutyChannel),
    "datadog": (DatadogChannelConfig, DatadogChannel),
    "email": (EmailChannelConfig, EmailChannel),
    "webhook": (WebhookChannelConfig, WebhookChannel),
}

__all__ = ["CHANNEL_TYPES", "Alert", "Channel", "ChannelConfig", "Delivery", "RunNotice"]
