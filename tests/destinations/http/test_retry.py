"""Backoff, Retry-After parsing, and the status/exception classification table."""

from __future__ import annotations

import random
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import ValidationError

from backhaul.destinations.http import Action
from backhaul.destinations.http import RetryPolicy
from backhaul.destinations.http import classify_exception
from backhaul.destinations.http import classify_status
from backhaul.destinations.http import parse_retry_after
from backhaul.errors import FailureType


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3, jitter=False)
    assert [policy.delay(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_stays_within_the_backoff() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30)
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(30, 0.5 * 2 ** (attempt - 1))
        for _ in range(50):
            assert 0 <= policy.delay(attempt, rand=rng.random) <= ceiling
    assert policy.delay(3, rand=lambda: 0.0) == 0.0
    assert policy.delay(3, rand=lambda: 0.5) == pytest.approx(1.0)


def test_retry_after_wins_over_backoff() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=2)
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(9, retry_after=0.0) == 0.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("1.5", 1.5), (" 0 ", 0.0), ("-4", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_parse_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(90.0)
    assert parse_retry_after(earlier, now=now) == 0.0
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:30", now=now) == pytest.approx(30.0)


def test_policy_validation_errors_are_clear() -> None:
    with pytest.raises(ValidationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError, match="base_delay"):
        RetryPolicy(base_delay=-1)
    with pytest.raises(ValidationError, match=r"max_delay \(1.0\) must be at least base_delay"):
        RetryPolicy(base_delay=2, max_delay=1)
    with pytest.raises(ValidationError, match="Extra inputs"):
        RetryPolicy.model_validate({"retries": 3})
    assert RetryPolicy() == RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=30, jitter=True)


@pytest.mark.parametrize(
    ("status", "action", "failure"),
    [
        (429, Action.RATE_LIMITED, FailureType.TRANSIENT),
        (408, Action.RETRY, FailureType.TRANSIENT),
        (500, Action.RETRY, FailureType.TRANSIENT),
        (502, Action.RETRY, FailureType.TRANSIENT),
        (503, Action.RETRY, FailureType.TRANSIENT),
        (504, Action.RETRY, FailureType.TRANSIENT),
        (507, Action.RETRY, FailureType.TRANSIENT),
        (401, Action.FAIL, FailureType.CONFIG),
        (403, Action.FAIL, FailureType.CONFIG),
        (404, Action.FAIL, FailureType.CONFIG),
        (400, Action.REJECT, FailureType.REJECTED),
        (409, Action.REJECT, FailureType.REJECTED),
        (413, Action.REJECT, FailureType.REJECTED),
        (422, Action.REJECT, FailureType.REJECTED),
        (301, Action.FAIL, FailureType.CONFIG),
    ],
)
def test_status_table(status: int, action: Action, failure: FailureType) -> None:
    rule = classify_status(status)
    assert (rule.action, rule.failure) == (action, failure)
    assert rule.hint


def test_credentials_hint() -> None:
    assert classify_status(401).hint == "check the credentials in the destination file"


@pytest.mark.parametrize(
    ("exc", "action", "failure"),
    [
        (httpx.ReadTimeout("slow"), Action.RETRY, FailureType.TRANSIENT),
        (httpx.ConnectTimeout("slow"), Action.RETRY, FailureType.TRANSIENT),
        (httpx.ConnectError("refused"), Action.RETRY, FailureType.TRANSIENT),
        (httpx.RemoteProtocolError("dropped"), Action.RETRY, FailureType.TRANSIENT),
        (httpx.ReadError("reset"), Action.RETRY, FailureType.TRANSIENT),
        (httpx.UnsupportedProtocol("ftp"), Action.FAIL, FailureType.CONFIG),
        (httpx.DecodingError("bad gzip"), Action.FAIL, FailureType.CONFIG),
    ],
)
def test_exception_table(exc: Exception, action: Action, failure: FailureType) -> None:
    rule = classify_exception(exc)
    assert (rule.action, rule.failure) == (action, failure)
