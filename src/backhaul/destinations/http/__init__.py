"""The shared HTTP toolkit: rate limits, retries, recording and split-batch for connectors.

A connector builds an :class:`HttpClient` and calls :meth:`HttpClient.request`; the toolkit
waits for the :class:`RateLimiter`, retries transient failures per the :class:`RetryPolicy`,
records every attempt (redacted) and raises :class:`~backhaul.errors.DestinationError`
with the right failure type when a call cannot succeed. A REST connector subclasses
:class:`HttpDestination` and :class:`HttpDestinationConfig`, which own that client, its
settings, ``check()`` and ``close()``.
"""

from __future__ import annotations

from backhaul.destinations.http.client import (
    SUCCESS,
    HttpClient,
    HttpResult,
    Refused,
    Segment,
    dumps_json,
    error_message,
    redact_url,
    split_batch,
)
from backhaul.destinations.http.destination import HttpDestination, HttpDestinationConfig
from backhaul.destinations.http.ratelimit import (
    Permit,
    RateLimit,
    RateLimiter,
    RollingWindowLimiter,
)
from backhaul.destinations.http.retry import (
    EXCEPTION_RULES,
    STATUS_RULES,
    Action,
    RetryPolicy,
    Rule,
    classify_exception,
    classify_status,
    parse_retry_after,
)

__all__ = [
    "EXCEPTION_RULES",
    "STATUS_RULES",
    "SUCCESS",
    "Action",
    "HttpClient",
    "HttpDestination",
    "HttpDestinationConfig",
    "HttpResult",
    "Permit",
    "RateLimit",
    "RateLimiter",
    "Refused",
    "RetryPolicy",
    "RollingWindowLimiter",
    "Rule",
    "Segment",
    "classify_exception",
    "classify_status",
    "dumps_json",
    "error_message",
    "parse_retry_after",
    "redact_url",
    "split_batch",
]
