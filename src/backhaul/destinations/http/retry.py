"""Retry policy and the table that says what to do with each HTTP answer or failure.

The classification is data (:data:`STATUS_RULES`, :data:`EXCEPTION_RULES`) so that a reader
sees every decision in one place and a test can walk the table.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import model_validator

from backhaul.errors import FailureType


class RetryPolicy(BaseModel):
    """``retry:`` in a destination file: how often and how patiently to retry a call.

    Only transient failures are retried (rate limits, 5xx, timeouts, dropped connections).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(5, ge=1, le=50, description="Attempts per call, the first included.")
    base_delay: float = Field(0.5, gt=0, description="Seconds before the first retry (doubles).")
    max_delay: float = Field(30.0, gt=0, description="Longest wait between two attempts.")
    jitter: bool = Field(True, description="Wait a random share of the delay (full jitter).")
    max_retry_after: float = Field(
        300.0,
        gt=0,
        description="Longest Retry-After to honour within a call; a longer one fails the call "
        "as transient so the run can be resumed later.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.max_delay < self.base_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) must be at least base_delay ({self.base_delay})"
            )
        return self

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        *,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first).

        A ``Retry-After`` from the server wins over the backoff. Otherwise the backoff is
        ``base_delay * 2 ** (attempt - 1)`` capped at ``max_delay``; with jitter the wait
        is a uniform draw in ``[0, backoff]`` so that many clients do not retry in step.
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        backoff: float = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempt - 1))
        return backoff * rand() if self.jitter else backoff


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Read a ``Retry-After`` header: delay in seconds, or an HTTP date. ``None`` if absent."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; be lenient with ones that omit it
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Action(StrEnum):
    """What the HTTP client does with an answer that is not a success."""

    RETRY = "retry"  # transient: wait (backoff) and send again
    RATE_LIMITED = "rate_limited"  # wait as told (Retry-After) for every task, then again
    FAIL = "fail"  # stop at once: retrying cannot help
    REJECT = "reject"  # hand the answer back: the records of this call are refused


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the classification table."""

    action: Action
    failure: FailureType
    hint: str  # what the user should do, for error messages


_SLOW = Rule(Action.RATE_LIMITED, FailureType.TRANSIENT, "lower `rate_limit` or retry later")
_BUSY = Rule(Action.RETRY, FailureType.TRANSIENT, "the destination is failing; retry later")
_CREDENTIALS = Rule(
    Action.FAIL, FailureType.CONFIG, "check the credentials in the destination file"
)
_FORBIDDEN = Rule(
    Action.FAIL,
    FailureType.CONFIG,
    "check that the credentials in the destination file have the needed permissions",
)
_NOT_FOUND = Rule(Action.FAIL, FailureType.CONFIG, "check the URL in the destination file")
_REFUSED = Rule(Action.REJECT, FailureType.REJECTED, "the records of this call were refused")
_NETWORK = Rule(
    Action.RETRY, FailureType.TRANSIENT, "check that the destination is up and reachable"
)
_BAD_REQUEST = Rule(Action.FAIL, FailureType.CONFIG, "check the URL in the destination file")

STATUS_RULES: dict[int, Rule] = {
    429: _SLOW,
    408: _BUSY,
    500: _BUSY,
    502: _BUSY,
    503: _BUSY,
    504: _BUSY,
    401: _CREDENTIALS,
    403: _FORBIDDEN,
    404: _NOT_FOUND,
    405: Rule(
        Action.FAIL, FailureType.CONFIG, "check `method` and the URL in the destination file"
    ),
}
"""Statuses with their own rule; other 4xx reject the call's records, other 5xx retry."""

EXCEPTION_RULES: tuple[tuple[type[Exception], Rule], ...] = (
    (httpx.TimeoutException, _NETWORK),
    (httpx.ConnectError, _NETWORK),
    (httpx.RemoteProtocolError, _NETWORK),  # the server dropped the connection
    (httpx.ReadError, _NETWORK),
    (httpx.WriteError, _NETWORK),
    (httpx.UnsupportedProtocol, _BAD_REQUEST),
    (httpx.HTTPError, Rule(Action.FAIL, FailureType.CONFIG, "check the destination file")),
)
"""First match wins, so the more specific exception types come first."""


def classify_status(status: int) -> Rule:
    """The rule for a status the caller did not expect."""
    rule = STATUS_RULES.get(status)
    if rule is not None:
        return rule
    if 400 <= status < 500:
        return _REFUSED
    if status >= 500:
        return _BUSY
    # 1xx/3xx left over (redirects are not followed): the URL is not the endpoint.
    return Rule(Action.FAIL, FailureType.CONFIG, "use the final URL (redirects are not followed)")


def classify_exception(exc: Exception) -> Rule:
    """The rule for an exception raised while sending a request."""
    for kind, rule in EXCEPTION_RULES:
        if isinstance(exc, kind):
            return rule
    return Rule(Action.FAIL, FailureType.CONFIG, "check the destination file")
