"""Alert tests: a project whose syncs alert to every channel, each backed by a real server.

Slack, PagerDuty and Datadog are the emulators in ``backhaul.testing.emulators``; e-mail goes
to a real aiosmtpd SMTP server; the webhook channel posts to a signing-checking receiver.
Every secret comes from an environment variable with a fresh random value, so tests can
scan everything that was sent or recorded for it.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from aiosmtpd.smtp import Envelope
from aiosmtpd.smtp import LoginPassword
from aiosmtpd.smtp import Session
from tests.conftest import Builder

from backhaul import api
from backhaul.alerts.store import AlertStore
from backhaul.testing.emulators.base import EmulatorServer
from backhaul.testing.emulators.datadog import DatadogEmulator
from backhaul.testing.emulators.pagerduty import PagerDutyEmulator
from backhaul.testing.emulators.slack import SlackEmulator
from backhaul.testing.receiver import WebhookReceiver

WEB_URL = "http://backhaul.test:8080"


class Mailbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.raw: list[bytes] = []
        self.logins: list[bool] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        self.raw.append(data)
        self.messages.append(message_from_bytes(data))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    mailbox: Mailbox
    host: str
    port: int
    user: str
    password: str


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback that checks AUTH (over plain text, for the test)."""
    mailbox = Mailbox()
    user, password = "alerts", "smtp-" + secrets.token_hex(12)

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        ok = (
            isinstance(auth, LoginPassword)
            and auth.login.decode() == user
            and auth.password.decode() == password
        )
        mailbox.logins.append(ok)
        return AuthResult(success=ok)

    with socket.socket() as probe:  # aiosmtpd's Controller cannot pick a free port itself
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free,
        authenticator=authenticate,
        auth_require_tls=False,  # AUTH is offered (and checked) without TLS here
    )
    controller.start()
    try:
        yield SmtpServer(mailbox, "127.0.0.1", free, user, password)
    finally:
        controller.stop()


@dataclass
class Channels:
    """Every channel's server, and the secret values the project's files refer to."""

    slack: SlackEmulator
    pagerduty: PagerDutyEmulator
    datadog: DatadogEmulator
    smtp: SmtpServer
    hook: WebhookReceiver
    secrets: dict[str, str] = field(default_factory=dict)

    def slack_messages(self) -> list[dict[str, Any]]:
        return [{"text": m.text, "blocks": m.blocks} for m in self.slack.posted("alerts")]

    def alert_hooks(self) -> list[dict[str, Any]]:
        return [
            r.json
            for r in self.hook.calls
            if isinstance(r.json, dict) and str(r.json.get("event", "")).startswith("alert.")
        ]


@pytest.fixture
def channels(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Channels]:
    slack = SlackEmulator(messages_per_second=50, burst=20)
    routing_key = secrets.token_hex(16)  # 32 characters, as PagerDuty's keys are
    pagerduty = PagerDutyEmulator(routing_keys={routing_key})
    datadog = DatadogEmulator(api_key="dd" + secrets.token_hex(15))
    hook_secret = "whsec-" + secrets.token_hex(12)
    with (
        EmulatorServer(slack),
        EmulatorServer(pagerduty) as pd_server,
        EmulatorServer(datadog) as dd_server,
        WebhookReceiver(key_field="id", secret=hook_secret) as hook,
    ):
        webhook_url = slack.webhook_url("alerts")
        values = {
            "SLACK_ALERTS_WEBHOOK": webhook_url,
            "PD_ROUTING_KEY": routing_key,
            "DD_API_KEY": datadog.api_key,
            "SMTP_PASSWORD": smtp_server.password,
            "ALERT_HOOK_SECRET": hook_secret,
            "PD_URL": f"{pd_server.url}/v2/enqueue",
            "DD_SITE": dd_server.url,
        }
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        secret_values = {
            "slack webhook secret": webhook_url.rsplit("/", 1)[1],
            "pagerduty routing key": routing_key,
            "datadog api key": datadog.api_key,
            "smtp password": smtp_server.password,
            "webhook signing secret": hook_secret,
        }
        yield Channels(slack, pagerduty, datadog, smtp_server, hook, secret_values)


def write_channels(project: Builder, ch: Channels, hook_events: list[str] | None = None) -> None:
    """One channel file per kind, every secret through ${env:NAME}."""
    project.write(
        "channels/team_slack.yml", {"type": "slack", "webhook_url": "${env:SLACK_ALERTS_WEBHOOK}"}
    )
    project.write(
        "channels/oncall.yml",
        {"type": "pagerduty", "routing_key": "${env:PD_ROUTING_KEY}", "url": "${env:PD_URL}"},
    )
    project.write(
        "channels/datadog.yml",
        {
            "type": "datadog",
            "api_key": "${env:DD_API_KEY}",
            "site_url": "${env:DD_SITE}",
            "tags": ["env:test"],
        },
    )
    project.write(
        "channels/mail.yml",
        {
            "type": "email",
            "host": ch.smtp.host,
            "port": ch.smtp.port,
            "security": "none",
            "username": ch.smtp.user,
            "password": "${env:SMTP_PASSWORD}",
            "from": "Backhaul <backhaul@example.com>",
            "to": ["data-team@example.com"],
        },
    )
    hook: dict[str, Any] = {
        "type": "webhook",
        "url": ch.hook.url,
        "signing_secret": "${env:ALERT_HOOK_SECRET}",
    }
    if hook_events is not None:
        hook["events"] = hook_events
    project.write("channels/hook.yml", hook)


ALL_CHANNELS = ["team_slack", "oncall", "datadog", "mail", "hook"]


def alert_project(
    project: Builder,
    ch: Channels,
    rules: dict[str, Any] | None = None,
    *,
    destination: WebhookReceiver,
    rows: int = 10,
    sync_extra: dict[str, Any] | None = None,
) -> None:
    """A users model sent to a webhook destination; every channel on by default."""
    project.write(
        "backhaul.yml",
        {
            "name": "t",
            "alerts": {"channels": ALL_CHANNELS, "web_url": WEB_URL, "rules": rules or {}},
            "scheduler": {"spread_first_runs_seconds": 0},  # a new schedule is due at once
        },
    )
    write_channels(project, ch)
    project.users(rows)
    project.webhook_destination(destination)
    project.sync("users_hook", destination="hook", **(sync_extra or {}))


def run(project: Builder, sync: str = "users_hook") -> Any:
    """A run with alerts attached; returns once its notifications were sent."""
    return api.run(project.load(), sync, alerts=True)


def history(project: Builder) -> list[Any]:
    with api.open_store(project.load()) as store:
        return list(reversed(AlertStore(store).events(limit=1000)))
