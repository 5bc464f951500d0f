"""Judging runs and the clock against a project's rules, and delivering what changed.

:class:`AlertEngine` is the part without threads: :meth:`judge_run` and :meth:`judge_stale`
record verdicts and return the changes of state; :meth:`deliver` and :meth:`run_event` send
them to the sync's channels and record every delivery. :class:`~backhaul.alerts.sink.AlertSink`
runs it from run events, off the run's thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath

from backhaul.alerts.channels import Alert
from backhaul.alerts.channels import Channel
from backhaul.alerts.channels import Delivery
from backhaul.alerts.channels import RunNotice
from backhaul.alerts.channels.base import RunWhat
from backhaul.alerts.config import ChannelDef
from backhaul.alerts.config import load_channels
from backhaul.alerts.config import open_channel
from backhaul.alerts.rules import NextRun
from backhaul.alerts.rules import SyncRules
from backhaul.alerts.rules import Verdict
from backhaul.alerts.rules import sync_rules
from backhaul.alerts.store import AlertStore
from backhaul.alerts.store import Transition
from backhaul.clock import Clock
from backhaul.clock import utc_now
from backhaul.config.project import DestinationDef
from backhaul.config.project import Project
from backhaul.config.project import SourceDef
from backhaul.config.secrets import resolve
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.observe.redact import Redactor
from backhaul.state.store import RunStore
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary

log = logging.getLogger("backhaul.alerts")
SUCCEEDED = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIAL})


@dataclass(frozen=True, slots=True)
class Sent:
    """One delivery to one channel."""

    channel: str
    delivery: Delivery


class AlertEngine:
    """Rules, state and channels of one project.

    Args:
        project: The loaded project.
        store: The run store; alert state lives in the same database.
        next_run: Each sync's expected next run, for the stale rule (from the scheduler;
            without it the stale rule is never judged).
        clock: "Now", injectable for tests.
    """

    def __init__(
        self,
        project: Project,
        store: RunStore,
        *,
        next_run: NextRun | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.project = project
        self.runs = store
        self.store = AlertStore(store)
        self.next_run = next_run
        self.clock = clock
        self.redactor = Redactor(_project_secrets(project))
        self.definitions, self.problems = load_channels(project)
        self._opened: dict[str, Channel | str] = {}
        self.web_url = _web_url(project)

    # -- rules -----------------------------------------------------------------------------

    def rules(self, sync: str) -> SyncRules:
        return sync_rules(self.project, sync)

    def judge_run(self, run: RunSummary) -> list[Transition]:
        """Judge a finished run with every rule of its sync; return the changes of state."""
        if run.sync not in self.project.syncs or run.dry_run:
            return []
        rules = self.rules(run.sync)
        depth = max(
            (getattr(getattr(r, "setting", None), "runs", 0) for r in rules.run_rules), default=0
        )
        earlier = [r for r in self.runs.runs(run.sync, limit=depth + 2) if r.run_id != run.run_id]
        changes: list[Transition] = []
        for rule in rules.run_rules:
            verdict = rule.judge(run, earlier)
            if verdict is None:
                continue
            found = self._record(run.sync, rule.name, verdict, run.run_id)
            if found is not None:
                changes.append(found)
        if self.next_run is not None and rules.stale is not None:
            changes += self._judge_stale_of(run.sync, rules, self.clock())
        return changes

    def judge_stale(self, now: datetime | None = None) -> list[Transition]:
        """Judge every sync's stale rule against its expected next run at ``now``."""
        if self.next_run is None:
            return []
        at = now or self.clock()
        changes: list[Transition] = []
        for name in sorted(self.project.syncs):
            rules = self.rules(name)
            if rules.stale is not None:
                changes += self._judge_stale_of(name, rules, at)
        return changes

    def judge_hung(self, now: datetime | None = None) -> list[Transition]:
        """Raise the SLA rule of every sync whose latest run is still running past its SLA.

        A run that hangs never finishes, so judging finished runs alone would never see it;
        the run's own end (or the next run) clears the state as usual.
        """
        from backhaul.alerts.rules import Sla

        at = now or self.clock()
        changes: list[Transition] = []
        for name in sorted(self.project.syncs):
            sla = next((r for r in self.rules(name).run_rules if isinstance(r, Sla)), None)
            if sla is None:
                continue
            latest = self.runs.last_run(name)
            if latest is None or latest.status is not RunStatus.RUNNING or latest.dry_run:
                continue
            verdict = sla.judge_running(latest.started_at, at)
            if verdict is not None:
                found = self._record(name, sla.name, verdict, latest.run_id, at=at)
                if found is not None:
                    changes.append(found)
        return changes

    def _judge_stale_of(self, sync: str, rules: SyncRules, now: datetime) -> list[Transition]:
        assert self.next_run is not None and rules.stale is not None
        expected = self.next_run(sync)
        if expected is None:
            return []  # not scheduled: nothing can be late
        verdict = rules.stale.judge(expected, now)
        found = self._record(sync, "stale", verdict, None, at=now)
        return [found] if found is not None else []

    def _record(
        self, sync: str, rule: str, verdict: Verdict, run_id: str | None, at: datetime | None = None
    ) -> Transition | None:
        text = self.redactor.text(verdict.message) or ""
        return self.store.transition(
            sync,
            rule,
            firing=verdict.firing,
            message=text,
            run_id=run_id,
            muted=self.store.is_muted(sync, rule),
            at=at or self.clock(),
        )

    # -- channels --------------------------------------------------------------------------

    def channel(self, name: str) -> Channel | str:
        """The opened channel, or why it cannot be used."""
        if name not in self._opened:
            definition: ChannelDef | None = self.definitions.get(name)
            if definition is None:
                self._opened[name] = f"no channel file channels/{name}.yml (or it is invalid)"
            else:
                try:
                    self._opened[name] = open_channel(definition, self.redactor)
                except ConfigError as exc:
                    self._opened[name] = exc.message
        return self._opened[name]

    def run_url(self, run_id: str | None) -> str | None:
        if not run_id or not self.web_url:
            return None
        return f"{self.web_url.rstrip('/')}/runs/{run_id}"

    def alert_of(self, change: Transition) -> Alert:
        return Alert(
            kind="raised" if change.raised else "resolved",
            project=self.project.config.name,
            sync=change.sync,
            rule=change.rule,
            message=change.message,
            at=change.at,
            run_id=change.run_id,
            run_url=self.run_url(change.run_id),
        )

    async def deliver(self, change: Transition) -> list[Sent]:
        """Send one change of state to the sync's channels, as muting and recovery allow."""
        if change.sync not in self.project.syncs:
            return []
        rules = self.rules(change.sync)
        if change.raised and change.muted:
            return []
        if not change.raised and not (
            rules.recovery and self.store.raise_delivered(change.sync, change.rule, change.event_id)
        ):
            return []  # the raise was never announced (muted, or no channel took it)
        alert = self.alert_of(change)
        what = f"alert.{alert.kind}"
        sent = await self._fan_out(rules.channels, lambda c: c.alert(alert), what, change.event_id)
        if change.raised and any(s.delivery.ok for s in sent):
            self.store.mark_notified(change.sync, change.rule)
        return sent

    async def run_event(self, notice: RunNotice) -> list[Sent]:
        """Send a run's lifecycle event (and metrics) to the channels that take them."""
        if notice.sync not in self.project.syncs:
            return []
        channels = self.rules(notice.sync).channels
        return await self._fan_out(
            channels, lambda c: c.run_event(notice), notice.what, None, run_id=notice.run_id
        )

    async def test(self, name: str, *, sent_by: str | None = None) -> Delivery:
        """Send a test notification to one channel and record it in the history;
        ``sent_by`` says who asked (default: the CLI command)."""
        by = sent_by or f"`backhaul alerts test {name}`"
        message = f"This is a test notification sent by {by}."
        event_id = self.store.test_event(name, message)
        alert = Alert(
            kind="test",
            project=self.project.config.name,
            sync="",
            rule="test",
            message=message,
            at=self.clock(),
            run_url=self.web_url.rstrip("/") + "/alerts" if self.web_url else None,
        )
        sent = await self._fan_out([name], lambda c: c.alert(alert), "alert.test", event_id)
        return sent[0].delivery if sent else Delivery(False, error="the channel sent nothing")

    async def _fan_out(
        self,
        names: Sequence[str],
        send: Callable[[Channel], Awaitable[Delivery | None]],
        what: str,
        event_id: int | None,
        *,
        run_id: str | None = None,
    ) -> list[Sent]:
        async def one(name: str) -> Sent | None:
            channel = self.channel(name)
            if isinstance(channel, str):
                delivery: Delivery | None = Delivery(False, error=f"channel `{name}`: {channel}")
            else:
                delivery = await send(channel)
            if delivery is None:
                return None
            self.store.add_delivery(
                channel=name,
                what=what,
                ok=delivery.ok,
                event_id=event_id,
                run_id=run_id,
                status=delivery.status,
                error=self.redactor.text(delivery.error),
                request=self.redactor.text(delivery.request),
            )
            if not delivery.ok:
                log.warning("alerts: %s to channel `%s` failed: %s", what, name, delivery.error)
            return Sent(name, delivery)

        found = await asyncio.gather(*(one(n) for n in dict.fromkeys(names)))
        return [s for s in found if s is not None]


def run_notice(
    project: Project, run: RunSummary, web_url: str | None, redactor: Redactor
) -> RunNotice:
    """The lifecycle event of a finished run (its error masked by ``redactor``)."""
    what: RunWhat = "run.succeeded" if run.status in SUCCEEDED else "run.failed"
    return RunNotice(
        what=what,
        project=project.config.name,
        sync=run.sync,
        run_id=run.run_id,
        status=run.status.value,
        at=run.finished_at or utc_now(),
        counts=run.counts.as_dict(),
        duration_s=run.duration_s,
        error=redactor.text(run.error),
        run_url=f"{web_url.rstrip('/')}/runs/{run.run_id}" if web_url else None,
    )


def _web_url(project: Project) -> str | None:
    url = project.config.alerts.web_url
    if not url:
        return None
    try:
        resolved, _ = resolve(url, positions=project.positions, key_prefix="alerts.web_url")
    except BackhaulError as exc:
        log.warning("alerts: links to runs are left out: %s", exc.message)
        return None
    return resolved


def _project_secrets(project: Project) -> list[str]:
    """Every secret value the project's sources and destinations resolve to.

    Alert texts quote run errors; masking these too means no alert can carry one.
    """
    found: list[str] = []
    definitions: list[SourceDef | DestinationDef] = [*project.sources.values()]
    definitions += project.destinations.values()
    for definition in definitions:
        try:
            _, values = resolve(definition.config, positions=definition.positions)
        except BackhaulError:
            continue  # an unset variable resolves to nothing that could leak
        found += values
    return found


class UnknownChannel(ConfigError):
    """No channel file defines the name a test was asked for."""


def send_test(
    project: Project, store: RunStore, name: str, *, sent_by: str | None = None
) -> Delivery:
    """Send a test notification to channel ``name``: `backhaul alerts test` and the web
    app's Send test both call this.

    Raises:
        UnknownChannel: no channel file defines ``name``.
        ConfigError: its file is not valid (its own problem, with file, line and key).
    """
    engine = AlertEngine(project, store)
    if name not in engine.definitions:
        problems = [p for p in engine.problems if p.file and PurePath(p.file).stem == name]
        if problems:
            raise problems[0]
        known = ", ".join(sorted(engine.definitions)) or "none"
        raise UnknownChannel(f"unknown channel `{name}` (known: {known})")
    return asyncio.run(engine.test(name, sent_by=sent_by))


__all__ = ["AlertEngine", "Sent", "UnknownChannel", "run_notice", "send_test"]
