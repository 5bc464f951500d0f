"""Where every sync's alert rules stand: the data of ``backhaul alerts`` and the alerts page."""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backhaul.alerts.rules import sync_rules
from backhaul.alerts.store import ALL_RULES
from backhaul.alerts.store import AlertStore
from backhaul.config.project import Project
from backhaul.state.store import RunStore


@dataclass(frozen=True, slots=True)
class RuleStatus:
    rule: str
    condition: str  # when it alerts, in words
    state: str  # "ok" | "firing" | "unknown" (never judged yet)
    since: datetime | None
    message: str | None
    run_id: str | None
    muted: bool

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "since": self.since.isoformat() if self.since else None}


@dataclass(frozen=True, slots=True)
class SyncAlertStatus:
    sync: str
    channels: list[str]
    recovery: bool
    muted: bool
    rules: list[RuleStatus]

    @property
    def firing(self) -> int:
        return sum(r.state == "firing" for r in self.rules)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rules": [r.as_dict() for r in self.rules]}


def alert_status(project: Project, store: RunStore) -> list[SyncAlertStatus]:
    """Every sync with its enabled rules, their current state and mutes, by sync name."""
    alerts = AlertStore(store)
    states = {(s.sync, s.rule): s for s in alerts.states()}
    mutes = {(m.sync, m.rule) for m in alerts.mutes()}
    out = []
    for name in sorted(project.syncs):
        rules = sync_rules(project, name)
        sync_muted = (name, ALL_RULES) in mutes
        entries = []
        for rule, condition in rules.describe().items():
            state = states.get((name, rule))
            entries.append(
                RuleStatus(
                    rule,
                    condition,
                    state.state if state else "unknown",
                    state.since if state else None,
                    state.message if state else None,
                    state.run_id if state else None,
                    sync_muted or (name, rule) in mutes,
                )
            )
        out.append(SyncAlertStatus(name, list(rules.channels), rules.recovery, sync_muted, entries))
    return out


__all__ = ["RuleStatus", "SyncAlertStatus", "alert_status"]
