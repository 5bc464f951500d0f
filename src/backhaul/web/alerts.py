"""Alerts in the web app: ``/api/v1/alerts`` and the ``/alerts`` page.

Viewers read rules, states and history; operators mute and unmute (audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter
from fastapi import Depends
from fastapi import Form
from fastapi import HTTPException
from fastapi import Query
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.responses import RedirectResponse
from fastapi.responses import Response
from pydantic import BaseModel

from backhaul.alerts.channels import Delivery
from backhaul.alerts.config import load_channels
from backhaul.alerts.status import alert_status
from backhaul.alerts.store import ALL_RULES
from backhaul.alerts.store import AlertEvent
from backhaul.alerts.store import AlertStore
from backhaul.config.alerts import RULE_NAMES
from backhaul.config.project import Project
from backhaul.state.store import RunStore
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import json_router
from backhaul.web.auth import Operator
from backhaul.web.auth import Role
from backhaul.web.auth import User
from backhaul.web.auth import Viewer
from backhaul.web.deps import ProjectDep
from backhaul.web.deps import StoreDep
from backhaul.web.deps import UsersDep
from backhaul.web.deps import templates
from backhaul.web.users import UserStore

HISTORY_SHOWN = 50

api_router = json_router("/api/v1/alerts", tag="alerts")
page_router = APIRouter(include_in_schema=False)


class RuleOut(BaseModel):
    rule: str
    condition: str
    state: str
    since: datetime | None
    message: str | None
    run_id: str | None
    muted: bool


class SyncAlertsOut(BaseModel):
    sync: str
    channels: list[str]
    recovery: bool
    muted: bool
    rules: list[RuleOut]


class DeliveryOut(BaseModel):
    channel: str
    what: str
    ok: bool
    status: int | None
    error: str | None
    at: datetime


class AlertEventOut(BaseModel):
    id: int
    at: datetime
    sync: str
    rule: str
    kind: str
    message: str
    run_id: str | None
    muted: bool
    deliveries: list[DeliveryOut]


class MuteIn(BaseModel):
    rule: str | None = None


class MuteOut(BaseModel):
    sync: str
    rule: str | None
    muted: bool
    changed: bool


class ChannelTestOut(BaseModel):
    channel: str
    ok: bool
    status: int | None
    error: str | None


def _send_test(
    project: Project, store: RunStore, users: UserStore, user: User, name: str
) -> Delivery:
    """A test notification to channel ``name`` on behalf of ``user``, audited: the CLI's
    `alerts test` (one function for both); 404 for a channel no file defines."""
    from backhaul.alerts.engine import UnknownChannel
    from backhaul.alerts.engine import send_test

    try:
        delivery = send_test(project, store, name, sent_by=f"{user.username} in the web app")
    except UnknownChannel:
        raise HTTPException(404, f"no channel `{name}`") from None
    users.audit(user.username, "alerts_test", name, {"ok": delivery.ok})
    return delivery


def _event_out(e: AlertEvent) -> AlertEventOut:
    """The event as the API shows it: the fields share their names, and a delivery's
    ``request`` (what was sent, redacted) is left out because ``DeliveryOut`` has no such
    field."""
    return AlertEventOut.model_validate(e, from_attributes=True)


def _target(project: Project, sync: str, rule: str | None) -> str:
    """The mute key of ``rule`` of ``sync``; 404/400 for names that do not exist."""
    if sync not in project.syncs:
        raise HTTPException(404, f"no sync `{sync}`")
    if rule in (None, ""):
        return ALL_RULES
    if rule not in RULE_NAMES:
        raise HTTPException(400, f"unknown rule `{rule}` (rules: {', '.join(RULE_NAMES)})")
    return str(rule)


@dataclass(frozen=True)
class Muting:
    """An operator's mute or unmute of the sync named in the path, with what it needs.

    The API's two endpoints and the page's form differ only in where the rule and the
    direction come from, so the rest arrives once, as this dependency.
    """

    sync: str
    user: Operator
    project: ProjectDep
    store: StoreDep
    users: UsersDep

    def set(self, rule: str | None, on: bool) -> MuteOut:
        """Mute (``on``) or unmute ``rule`` (None: the whole sync); audited when it changed."""
        key = _target(self.project, self.sync, rule)
        alerts = AlertStore(self.store)
        who = self.user.username
        changed = alerts.mute(self.sync, key, by=who) if on else alerts.unmute(self.sync, key)
        if changed:
            action = "alerts_mute" if on else "alerts_unmute"
            self.users.audit(who, action, self.sync, {"rule": key})
        rule_out = None if key == ALL_RULES else key
        return MuteOut(sync=self.sync, rule=rule_out, muted=on, changed=changed)


MutingDep = Annotated[Muting, Depends()]


# -- API --------------------------------------------------------------------------------


@api_router.get("", response_model=list[SyncAlertsOut], responses=ERRORS)
def list_alerts(project: ProjectDep, store: StoreDep) -> list[SyncAlertsOut]:
    """Every sync's alert rules with their current state and mutes."""
    return [SyncAlertsOut(**s.as_dict()) for s in alert_status(project, store)]


@api_router.get("/history", response_model=list[AlertEventOut], responses=ERRORS)
def alert_history(
    store: StoreDep,
    sync: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[AlertEventOut]:
    """Raises, recoveries and tests, newest first, with what each channel was sent."""
    return [_event_out(e) for e in AlertStore(store).events(sync=sync, limit=limit, offset=offset)]


@api_router.post("/{sync}/mute", response_model=MuteOut, responses=ERRORS)
def mute_sync(muting: MutingDep, body: MuteIn | None = None) -> MuteOut:
    """Silence a sync, or one of its rules (operator or above); states are still tracked."""
    return muting.set(body.rule if body else None, True)


@api_router.post("/{sync}/unmute", response_model=MuteOut, responses=ERRORS)
def unmute_sync(muting: MutingDep, body: MuteIn | None = None) -> MuteOut:
    """Hear from a sync (or one of its rules) again (operator or above)."""
    return muting.set(body.rule if body else None, False)


@api_router.post("/channels/{channel}/test", response_model=ChannelTestOut, responses=ERRORS)
def test_channel(
    channel: str, user: Operator, project: ProjectDep, store: StoreDep, users: UsersDep
) -> ChannelTestOut:
    """Send a test notification to a channel (operator or above), as `backhaul alerts test`
    does; ``ok`` says whether the channel took it, ``error`` why not."""
    sent = _send_test(project, store, users, user, channel)
    return ChannelTestOut(channel=channel, ok=sent.ok, status=sent.status, error=sent.error)


# -- page -------------------------------------------------------------------------------


@page_router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    user: Viewer,
    project: ProjectDep,
    store: StoreDep,
    sync: Annotated[str, Query(max_length=255)] = "",
    tested: Annotated[str, Query(max_length=255)] = "",
    tested_ok: bool = False,
) -> Response:
    """Rules and their state per sync, mute buttons, the channels with a test button, and
    the alert history."""
    statuses = alert_status(project, store)
    history = AlertStore(store).events(sync=sync or None, limit=HISTORY_SHOWN)
    channels, _ = load_channels(project)
    context = {
        "user": user,
        "title": "Alerts",
        "channels": [
            {"name": c.name, "type": c.config.type, "file": PurePath(c.positions.file).as_posix()}
            for c in sorted(channels.values(), key=lambda c: c.name)
        ],
        "tested": tested if tested in channels else "",
        "tested_ok": tested_ok,
        "syncs": statuses,
        "firing": sum(s.firing for s in statuses),
        "history": history,
        "sync": sync,
        "can_mute": user.role.allows(Role.OPERATOR),
        "can_edit": user.role.allows(Role.EDITOR),
    }
    return templates.TemplateResponse(request, "alerts.html", context)


@page_router.post("/alerts/{sync}/mute")
def mute_form(
    muting: MutingDep,
    rule: Annotated[str, Form()] = "",
    on: Annotated[bool, Form()] = True,
) -> Response:
    """The page's mute and unmute buttons."""
    muting.set(rule or None, on)
    return RedirectResponse("/alerts", status_code=303)


@page_router.post("/alerts/channels/{channel}/test")
def test_form(
    channel: str, user: Operator, project: ProjectDep, store: StoreDep, users: UsersDep
) -> Response:
    """The page's Send test button: back to the page, which says how it went."""
    sent = _send_test(project, store, users, user, channel)
    ok = "true" if sent.ok else "false"
    return RedirectResponse(f"/alerts?tested={channel}&tested_ok={ok}", status_code=303)


__all__ = ["api_router", "page_router"]
