"""Alert rules: each judges a finished run (or the clock) and says firing, ok, or nothing.

A rule returns ``None`` when a run tells it nothing (a guarded run says nothing about
whether an earlier failure is fixed); the rule's state then holds. Which rules apply to a
sync is the project's ``alerts:`` block overlaid rule by rule with the sync's.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Protocol

from backhaul.config.alerts import RejectedRateRule
from backhaul.config.alerts import RulesConfig
from backhaul.config.alerts import SlaRule
from backhaul.config.alerts import StaleRule
from backhaul.config.alerts import VolumeChangeRule
from backhaul.config.project import Project
from backhaul.state.store import RunRecord
from backhaul.summary import Counts
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary

# Runs that delivered: they show a failure or a guard is behind the sync.
DELIVERED = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIAL})
# Runs whose row counts describe the model (volume rule).
COUNTED = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.GUARDED})

NextRun = Callable[[str], datetime | None]
"""A sync's expected next run, or ``None`` when it has no schedule.

:meth:`backhaul.schedule.timetable.Timetable.expected` provides it; without one the stale
rule is never judged.
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    firing: bool
    message: str


class RunRule(Protocol):
    """A rule judged on every finished run."""

    @property
    def name(self) -> str: ...

    def judge(self, run: RunSummary, earlier: Sequence[RunRecord]) -> Verdict | None:
        """The rule's verdict on ``run`` (``earlier``: the sync's previous runs, newest first)."""
        ...


@dataclass(frozen=True)
class EndedAs:
    """Raised by a run that ends in ``status``; recovered by the next run that delivers."""

    name: str
    status: RunStatus
    condition: str  # when it is raised, in words
    said: str  # the message, before the run's error
    no_error: str  # in place of a missing error

    def judge(self, run: RunSummary, earlier: Sequence[RunRecord]) -> Verdict | None:
        if run.status is self.status:
            return Verdict(True, f"{self.said}: {run.error or self.no_error}")
        if run.status in DELIVERED:
            return Verdict(False, f"runs {run.status.value} again")
        return None


FAILED = EndedAs("failed", RunStatus.FAILED, "a run failed", "run failed", "no error message")
GUARDED = EndedAs(
    "guarded", RunStatus.GUARDED, "a guard stopped a run", "a guard stopped the run", "no message"
)


@dataclass(frozen=True)
class RejectedRate:
    setting: RejectedRateRule
    name: str = "rejected_rate"

    def judge(self, run: RunSummary, earlier: Sequence[RunRecord]) -> Verdict | None:
        c = run.counts
        sent = c.succeeded + c.rejected
        if run.status not in DELIVERED or sent < self.setting.min_rows:
            return None
        pct = 100.0 * c.rejected / sent
        text = (
            f"{c.rejected:,} of {sent:,} rows sent were rejected ({pct:.1f}%; "
            f"alert at {self.setting.above_pct:g}%)"
        )
        return Verdict(pct >= self.setting.above_pct, text)


@dataclass(frozen=True)
class VolumeChange:
    setting: VolumeChangeRule
    name: str = "volume_change"

    def _measure(self, counts: Counts) -> int:
        if self.setting.measure == "changes":
            return counts.added + counts.changed + counts.removed
        return counts.queried

    def judge(self, run: RunSummary, earlier: Sequence[RunRecord]) -> Verdict | None:
        if run.status not in COUNTED or run.dry_run:
            return None
        base = [
            r for r in earlier if r.status in COUNTED and not r.dry_run and r.run_id != run.run_id
        ][: self.setting.runs]
        if len(base) < self.setting.runs:
            return None  # not enough history yet for an average worth comparing with
        average = sum(self._measure(r.counts) for r in base) / len(base)
        now = self._measure(run.counts)
        what = "rows queried" if self.setting.measure == "queried" else "rows changed"
        if average == 0:
            pct = 0.0 if now == 0 else float("inf")
        else:
            pct = 100.0 * abs(now - average) / average
        shown = "∞" if pct == float("inf") else f"{pct:.0f}%"
        text = (
            f"{now:,} {what}, {shown} {'above' if now >= average else 'below'} the average "
            f"of the last {len(base)} runs ({average:,.0f}; alert above "
            f"{self.setting.above_pct:g}%)"
        )
        return Verdict(pct > self.setting.above_pct, text)


@dataclass(frozen=True)
class Sla:
    setting: SlaRule
    name: str = "sla"

    def judge(self, run: RunSummary, earlier: Sequence[RunRecord]) -> Verdict | None:
        if run.started_at is None or run.finished_at is None:
            return None
        limit = self.setting.minutes * 60
        took = run.duration_s
        text = f"the run took {_duration(took)} (SLA {_duration(limit)})"
        return Verdict(took > limit, text)

    def judge_running(self, started_at: datetime, now: datetime) -> Verdict | None:
        """A run still running at ``now``: firing once it is past the SLA, else nothing."""
        limit = self.setting.minutes * 60
        took = (now - started_at).total_seconds()
        if took <= limit:
            return None
        return Verdict(
            True, f"the run has been running for {_duration(took)} (SLA {_duration(limit)})"
        )


@dataclass(frozen=True)
class Stale:
    """Judged on a clock: a sync that should have run by ``next_run`` + grace has not."""

    setting: StaleRule
    name: str = "stale"

    def judge(self, next_run: datetime, now: datetime) -> Verdict:
        grace = timedelta(minutes=self.setting.grace_minutes)
        late = now - next_run
        if late > grace:
            return Verdict(
                True,
                f"missed its schedule: expected to run at {next_run:%Y-%m-%d %H:%M:%S %Z}, "
                f"{_duration(late.total_seconds())} ago",
            )
        return Verdict(False, f"on schedule (next run {next_run:%Y-%m-%d %H:%M:%S %Z})")


@dataclass(frozen=True)
class SyncRules:
    """The rules, channels and recovery setting that apply to one sync."""

    sync: str
    run_rules: tuple[RunRule, ...]
    stale: Stale | None
    channels: tuple[str, ...]
    recovery: bool

    @property
    def names(self) -> list[str]:
        out = [r.name for r in self.run_rules]
        return out + ([self.stale.name] if self.stale else [])

    def describe(self) -> dict[str, str]:
        """Each enabled rule with its setting in words (for the CLI and the web page)."""
        out: dict[str, str] = {}
        for rule in self.run_rules:
            out[rule.name] = _describe(rule)
        if self.stale is not None:
            out["stale"] = (
                f"no run {self.stale.setting.grace_minutes:g} min after the expected time "
                "(needs a schedule)"
            )
        return out


def _describe(rule: RunRule) -> str:
    if isinstance(rule, EndedAs):
        return rule.condition
    if isinstance(rule, RejectedRate):
        return f"rejected rows ≥ {rule.setting.above_pct:g}% of rows sent"
    if isinstance(rule, VolumeChange):
        s = rule.setting
        return f"{s.measure} moved > {s.above_pct:g}% from the average of the last {s.runs} runs"
    if isinstance(rule, Sla):
        return f"a run took longer than {_duration(rule.setting.minutes * 60)}"
    return rule.name


def _merge(project: RulesConfig, sync: RulesConfig) -> RulesConfig:
    chosen = {
        name: getattr(sync, name) if name in sync.model_fields_set else getattr(project, name)
        for name in RulesConfig.model_fields
    }
    return RulesConfig.model_construct(**chosen)


def sync_rules(project: Project, sync: str) -> SyncRules:
    """The effective alert settings of ``sync`` (project defaults overlaid by the sync's)."""
    defaults = project.config.alerts
    own = project.syncs[sync].config.alerts
    rules = _merge(defaults.rules, own.rules)
    run_rules: list[RunRule] = []
    if rules.failed is not False:
        run_rules.append(FAILED)
    if rules.guarded is not False:
        run_rules.append(GUARDED)
    if isinstance(rules.rejected_rate, RejectedRateRule):
        run_rules.append(RejectedRate(rules.rejected_rate))
    if isinstance(rules.volume_change, VolumeChangeRule):
        run_rules.append(VolumeChange(rules.volume_change))
    if isinstance(rules.sla, SlaRule):
        run_rules.append(Sla(rules.sla))
    stale: Stale | None = None
    if isinstance(rules.stale, StaleRule):
        stale = Stale(rules.stale)
    elif rules.stale is not False:
        stale = Stale(StaleRule())
    channels = own.channels if own.channels is not None else defaults.channels
    recovery = own.recovery if own.recovery is not None else defaults.recovery
    return SyncRules(sync, tuple(run_rules), stale, tuple(channels), recovery)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


__all__ = [
    "FAILED",
    "GUARDED",
    "EndedAs",
    "NextRun",
    "RejectedRate",
    "RunRule",
    "Sla",
    "Stale",
    "SyncRules",
    "Verdict",
    "VolumeChange",
    "sync_rules",
]
