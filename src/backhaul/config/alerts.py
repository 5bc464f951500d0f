"""Alert settings in project files: ``alerts:`` in ``backhaul.yml`` and in a sync file.

The project block holds defaults (channels, rules, the web app's address for links); a sync's
block replaces the project's channel list when it gives one, and replaces a rule's setting
rule by rule. Channel files (``channels/NAME.yml``) are read by :mod:`backhaul.alerts.config`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

RULE_NAMES = ("failed", "guarded", "rejected_rate", "volume_change", "sla", "stale")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RejectedRateRule(_Strict):
    """Alert while a run's rejected rows are at or above a share of the rows it sent."""

    above_pct: float = Field(gt=0, le=100, description="Rejected share of sent rows, in %.")
    min_rows: int = Field(1, ge=1, description="Judge only runs that sent at least this many.")


class VolumeChangeRule(_Strict):
    """Alert when a run's row volume moves by more than a share of the recent average."""

    above_pct: float = Field(gt=0, description="Change against the average, in %.")
    runs: int = Field(5, ge=1, le=100, description="How many earlier runs make the average.")
    measure: Literal["queried", "changes"] = Field(
        "queried",
        description="`queried`: rows the model returned; `changes`: rows added, changed and "
        "removed.",
    )


class SlaRule(_Strict):
    """Alert when a run takes longer than this."""

    minutes: float = Field(gt=0, description="Longest acceptable run, in minutes.")


class StaleRule(_Strict):
    """Alert when a scheduled sync has not run by its expected time plus a grace period."""

    grace_minutes: float = Field(10.0, ge=0, description="Minutes allowed past the expected run.")


class RulesConfig(_Strict):
    """Which rules apply. Leave a rule out to inherit it; `false` turns it off.

    `failed`, `guarded` and `stale` are on by default (stale only for scheduled syncs);
    the others are on once they are given their thresholds.
    """

    failed: bool | None = Field(None, description="A run failed (default on).")
    guarded: bool | None = Field(None, description="A guard stopped a run (default on).")
    rejected_rate: RejectedRateRule | Literal[False] | None = None
    volume_change: VolumeChangeRule | Literal[False] | None = None
    sla: SlaRule | Literal[False] | None = None
    stale: StaleRule | bool | None = Field(
        None, description="A scheduled sync missed its expected run (default on)."
    )


class AlertsConfig(_Strict):
    """``alerts:`` in ``backhaul.yml``: the defaults of every sync."""

    channels: list[str] = Field(
        default_factory=list, description="Channels (files in channels/) every sync alerts."
    )
    web_url: str | None = Field(
        None,
        description="Base URL of the web app (https://backhaul.example.com), for links to runs.",
    )
    recovery: bool = Field(True, description="Send a message when an alert clears.")
    rules: RulesConfig = Field(default_factory=RulesConfig)


class SyncAlertsConfig(_Strict):
    """``alerts:`` in a sync file: overrides of the project's alert defaults."""

    channels: list[str] | None = Field(
        None, description="Channels for this sync (replaces the project's list)."
    )
    recovery: bool | None = None
    rules: RulesConfig = Field(default_factory=RulesConfig)


__all__ = [
    "RULE_NAMES",
    "AlertsConfig",
    "RejectedRateRule",
    "RulesConfig",
    "SlaRule",
    "StaleRule",
    "SyncAlertsConfig",
    "VolumeChangeRule",
]
