"""The wall clock as a value: classes that need "now" take a :data:`Clock`, so tests can
pass a fixed one, and default to :func:`utc_now`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from datetime import datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (the only zone the state stores)."""
    return datetime.now(UTC)


__all__ = ["Clock", "utc_now"]
