"""The shared HTTP toolkit: rate limits, retries, recording and split-batch for connectors.

A connector builds an :class:`HttpClient` and calls :meth:`HttpClient.request`; the toolkit
waits for the :class:`RateLimiter`, retries transient failures per the :class:`RetryPolicy`,
records every attempt (redacted) and raises :class:`~backhaul.errors.DestinationError`
with the right failure type when a call cannot succeed. A REST connector subclasses
:class:`HttpDestination` and :class:`HttpDestinationConfig`, which own that client, its
settings, ``check()`` and ``close()``.
"""

from __future__ import annotations

from backhaul.destinations.http.client import SUCCESS
from backhaul.destinations.http.client import HttpClient
from backhaul.destinations.http.client import HttpResult
from backhaul.destinations.http.client import Refused
from backhaul.destinations.http.client import Segment
from backhaul.destinations.http.client import dumps_json
from backhaul.destinations.http.client import error_message
from backhaul.destinations.http.client import redact_url
from backhaul.destinations.http.client import split_batch
from backhaul.destinations.http.destination import HttpDestination
from backhaul.destinations.http.destination import HttpDestinationConfig
from backhaul.destinations.http.ratelimit import Permit
from backhaul.destinations.http.ratelimit import RateLimit
from backhaul.destinations.http.ratelimit import RateLimiter
from backhaul.destinations.http.ratelimit import RollingWindowLimiter
from backhaul.destinations.http.retry import EXCEPTION_RULES
from backhaul.destinations.http.retry import STATUS_RULES
from backhaul.destinations.http.retry import Action
from backhaul.destinations.http.retry import RetryPolicy
from backhaul.destinations.http.retry import Rule
from backhaul.destinations.http.retry import classify_exception
from backhaul.destinations.http.retry import classify_status
from backhaul.destinations.http.retry import parse_retry_after

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
