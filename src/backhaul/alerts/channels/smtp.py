"""E-mail channel: a plain-text message per alert over SMTP (STARTTLS, SMTPS and AUTH)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from email.utils import make_msgid
from typing import Literal

from pydantic import ConfigDict
from pydantic import Field

from backhaul.alerts.channels.base import Alert
from backhaul.alerts.channels.base import ChannelConfig
from backhaul.alerts.channels.base import Delivery
from backhaul.alerts.channels.base import RunNotice
from backhaul.observe.redact import Redactor


class EmailChannelConfig(ChannelConfig):
    """``channels/NAME.yml`` with ``type: email``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["email"]
    host: str = Field(description="SMTP server host.")
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls",
        description="`starttls` (port 587), `ssl` (SMTPS, port 465) or `none` (a local relay).",
    )
    username: str | None = Field(None, description="Sign in with this user (AUTH).")
    password: str | None = Field(None, description="Its password (a secret: ${env:NAME}).")
    from_address: str = Field(alias="from", description="The sender, `Name <a@b.c>` or `a@b.c`.")
    to: list[str] = Field(min_length=1, description="Recipients.")
    subject_prefix: str = Field("[Backhaul]", description="Starts every subject.")


class EmailChannel:
    def __init__(self, name: str, config: EmailChannelConfig, redactor: Redactor) -> None:
        self.name = name
        self.config = config
        self.redactor = redactor
        redactor.add(config.password or "")

    async def alert(self, alert: Alert) -> Delivery:
        message = compose(self.config, alert)
        text = self.redactor.text(message.as_string()) or ""
        try:
            await asyncio.to_thread(self._send, message)
        except (smtplib.SMTPException, OSError) as exc:
            problem = self.redactor.text(f"{type(exc).__name__}: {exc}")
            where = f"{self.config.host}:{self.config.port}"
            code = getattr(exc, "smtp_code", None)
            return Delivery(
                False,
                code if isinstance(code, int) else None,
                f"e-mail via {where} failed ({problem}): check host, port, security and "
                "credentials in the channel file",
                text,
            )
        return Delivery(True, 250, None, text)

    async def run_event(self, notice: RunNotice) -> Delivery | None:
        return None

    def _send(self, message: EmailMessage) -> None:
        c = self.config
        timeout = c.timeout_seconds
        smtp: smtplib.SMTP
        if c.security == "ssl":
            context = ssl.create_default_context()
            smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=timeout)
        with smtp:
            if c.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if c.username:
                smtp.login(c.username, c.password or "")
            smtp.send_message(message)


def compose(config: EmailChannelConfig, alert: Alert) -> EmailMessage:
    """The message for one alert."""
    message = EmailMessage()
    message["Subject"] = f"{config.subject_prefix} {alert.headline}".strip()
    message["From"] = config.from_address
    message["To"] = ", ".join(config.to)
    message["Date"] = formatdate(alert.at.timestamp(), localtime=False)
    message["Message-ID"] = make_msgid(domain="backhaul.local")
    lines = [alert.headline, "", alert.message, ""]
    lines += [f"Project: {alert.project}"]
    if alert.sync:
        lines += [f"Sync:    {alert.sync}", f"Rule:    {alert.rule}"]
    if alert.run_id:
        lines.append(f"Run:     {alert.run_id}")
    if alert.run_url:
        lines += ["", f"Open the run: {alert.run_url}"]
    lines += ["", f"Sent by Backhaul at {alert.at:%Y-%m-%d %H:%M:%S %Z}."]
    message.set_content("\n".join(lines) + "\n")
    return message
