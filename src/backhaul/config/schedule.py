"""When a sync runs on its own: ``schedule:`` in a sync file, ``scheduler:`` in backhaul.yml.

A schedule is one of: an interval (``every: 15m``), a cron expression with a time zone
(``cron: "0 6 * * *"``, ``timezone: Europe/Berlin``), a sequence (``after: [a, b]``: once
every parent has delivered since this sync last ran), ``after_dbt: true`` (when a dbt run
rebuilt one of the models the sync reads), or ``manual`` (the default).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated
from typing import Any
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from backhaul.config.fields import one_or_many

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
MIN_INTERVAL_S = 1


def parse_duration(text: str) -> timedelta:
    """``"15m"``, ``"1h30m"``, ``"2d"``, ``"45s"`` as a timedelta.

    Raises:
        ValueError: the text is not such a duration, with an example of one.
    """
    found = _DURATION.match(text.strip().replace(" ", "")) if text.strip() else None
    if found is None or not any(found.groups()):
        raise ValueError(f"`{text}` is not a duration; write e.g. 30s, 15m, 2h, 1h30m or 1d")
    days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


class ScheduleConfig(BaseModel):
    """``schedule:`` of a sync. Give one of ``every``, ``cron``, ``after`` or ``after_dbt``;
    ``schedule: manual`` (or no schedule) runs the sync only when asked."""

    model_config = ConfigDict(extra="forbid")

    every: str | None = Field(
        None, description="Run at this interval after the last run started: 30s, 15m, 2h, 1d."
    )
    cron: str | None = Field(
        None, description="A cron expression (five fields: minute hour day month weekday)."
    )
    timezone: str | None = Field(
        None, description="Time zone of `cron` (IANA name such as Europe/Berlin; default UTC)."
    )
    after: Annotated[list[str] | None, one_or_many] = Field(
        None,
        description="Run once every one of these syncs has delivered (succeeded or partial) "
        "since this sync last ran.",
    )
    after_dbt: bool = Field(
        False,
        description="Run when a dbt invocation rebuilt a model this sync reads (the same "
        "choice as `backhaul run --after-dbt`).",
    )

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if parse_duration(value).total_seconds() < MIN_INTERVAL_S:
            raise ValueError("the interval must be at least 1s")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        text = " ".join(value.split())
        if len(text.split(" ")) != 5 or not croniter.is_valid(text):
            raise ValueError(
                f"`{value}` is not a cron expression of five fields "
                "(minute hour day month weekday), e.g. `0 6 * * *` for 06:00 every day"
            )
        return text

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone `{value}`; use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleConfig:
        given = [k for k in ("every", "cron", "after") if getattr(self, k) is not None]
        given += ["after_dbt"] if self.after_dbt else []
        if len(given) > 1:
            raise ValueError(
                f"give one of `every`, `cron`, `after` or `after_dbt`, not {' and '.join(given)}"
            )
        if self.timezone is not None and self.cron is None:
            raise ValueError("`timezone` applies to `cron` only")
        if self.after is not None and not self.after:
            raise ValueError("`after` names at least one sync")
        return self

    @property
    def kind(self) -> str:
        """``interval``, ``cron``, ``after``, ``dbt`` or ``manual``."""
        if self.every is not None:
            return "interval"
        if self.cron is not None:
            return "cron"
        if self.after is not None:
            return "after"
        if self.after_dbt:
            return "dbt"
        return "manual"

    @property
    def interval(self) -> timedelta | None:
        return parse_duration(self.every) if self.every is not None else None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone or "UTC")

    @property
    def timed(self) -> bool:
        """Whether runs are expected at known times (the stale alert applies)."""
        return self.kind in ("interval", "cron")

    def describe(self) -> str:
        """The schedule in words: ``every 15m``, ``cron 0 6 * * * (Europe/Berlin)``..."""
        kind = self.kind
        if kind == "interval":
            return f"every {self.every}"
        if kind == "cron":
            return f"cron {self.cron} ({self.timezone or 'UTC'})"
        if kind == "after":
            return "after " + ", ".join(self.after or [])
        if kind == "dbt":
            return "after dbt"
        return "manual"


def manual_if_empty(value: Any) -> Any:
    """``schedule: manual`` (or an empty value) is the default schedule; any other text is
    refused with the form it was probably meant as."""
    if value is None or value == "manual":
        return {}
    if isinstance(value, str):
        raise ValueError(_text_schedule_hint(value.strip()))
    return value


def _text_schedule_hint(text: str) -> str:
    forms = '`every: 15m`, `cron: "0 6 * * *"`, `after: [sync]`, `after_dbt: true` or `manual`'
    if len(text.split()) == 5:
        return f'a cron text is written under `cron:`: `schedule: {{cron: "{text}"}}`'
    if text.lower().startswith("every"):
        return (
            f"an interval is written under `every:` with a unit (s, m, h, d), e.g. "
            f"`schedule: {{every: 5m}}`, not `{text}`"
        )
    return f"`schedule` is one of {forms}, not the text `{text}`"


class SchedulerConfig(BaseModel):
    """``scheduler:`` in backhaul.yml: how scheduled runs are started."""

    model_config = ConfigDict(extra="forbid")

    queue: bool = Field(
        False,
        description="Send scheduled runs to `backhaul worker` processes through the Postgres "
        "queue (needs a Postgres `state.metadata_url`); default: the scheduler runs them itself.",
    )
    max_parallel: int = Field(
        4, ge=1, le=64, description="Runs the scheduler starts at once when it runs them itself."
    )
    tick_seconds: float = Field(
        5.0, gt=0, le=300, description="How often the scheduler looks for syncs that are due."
    )
    spread_first_runs_seconds: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="A new (or resumed) interval schedule first runs at an offset fixed by its "
        "name, within this many seconds (or its interval, if shorter), so that many syncs "
        "added at once do not all start together; 0 runs each at once.",
    )
    heartbeat_seconds: float = Field(
        10.0, gt=0, le=300, description="How often each `backhaul worker` records that it lives."
    )
    stalled_after_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A worker silent this long is taken for dead: its run is marked "
        "interrupted and queued again.",
    )
    retries: int = Field(
        5,
        ge=1,
        le=100,
        description="Attempts of a queued run that a stopping worker handed back.",
    )


__all__ = ["ScheduleConfig", "SchedulerConfig", "manual_if_empty", "parse_duration"]
