from __future__ import annotations

from datetime import UTC
from datetime import datetime

from backhaul.clock import utc_now


def test_now_is_timezone_aware_in_utc() -> None:
    before = datetime.now(UTC)
    now = utc_now()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)
