"""The base of the REST destinations: settings, client, redactor, check and close.

A REST connector (HubSpot, Zendesk, Intercom, Salesforce) is a subclass of
:class:`HttpDestination` with a config that subclasses :class:`HttpDestinationConfig`. The
base owns what is the same for all of them: the HTTP settings of the destination file, the
redactor of its secrets, one :class:`~backhaul.destinations.http.client.HttpClient`, a gate
for calls made one record at a time, ``check()`` and ``close()``. What a vendor says about a
failed call is data: a table of hints by HTTP status, merged over the toolkit's own
(:data:`~backhaul.destinations.http.retry.STATUS_RULES`). See docs/connectors.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import ClassVar
from typing import TypeVar

from pydantic import Field

from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import RunFit
from backhaul.destinations.http.client import HttpResult
from backhaul.destinations.http.client import PauseHint
from backhaul.destinations.http.connector import Http2
from backhaul.destinations.http.connector import client_for
from backhaul.destinations.http.connector import redactor_for
from backhaul.destinations.http.connector import run_bounded
from backhaul.destinations.http.ratelimit import RateLimit
from backhaul.destinations.http.ratelimit import RateLimiter
from backhaul.destinations.http.ratelimit import default_concurrency
from backhaul.destinations.http.retry import RetryPolicy
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

T = TypeVar("T")
R = TypeVar("R")


class HttpDestinationConfig(DestinationConfig):
    """The keys every REST destination file has.

    A vendor's config adds its own keys and redeclares one of these only to change its
    default or bounds (HubSpot's rolling burst window, Salesforce's longer timeout).
    """

    rate_limit: RateLimit | None = Field(
        None,
        description="Requests per window, at most (none: no limit of our own; the "
        "destination's 429 answers are still waited out).",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_seconds: float = Field(30.0, gt=0)
    concurrency: int | None = Field(
        None,
        ge=1,
        le=32,
        description="Calls in flight at once (default: enough to reach `rate_limit`, 16 "
        "without one; a few connectors keep a fixed number; see docs/rate-limits.md).",
    )
    http2: Http2 = True


# Calls in flight of a connector that keeps a fixed number, when its file sets none.
FIXED_CONCURRENCY = 4


class HttpDestination:
    """What the REST destinations share; a vendor's class adds its calls.

    A subclass sets ``config_model``, ``capabilities`` and ``vendor`` (how messages and
    recorded waits name it), calls ``super().__init__`` with its secrets, headers and status
    hints, and implements :meth:`probe`, :meth:`prepare` and :meth:`write`.

    Args:
        config: The destination file.
        context: What the engine hands every destination.
        *secrets: Values to mask in recorded calls and errors (``None`` skipped).
        headers: Sent with every call (authentication, API version).
        hints: What to do, by HTTP status, when a call fails with it: merged over the
            toolkit's hints, used in the client's errors and in :meth:`check`'s.
        limiter: Replaces the token bucket built from ``rate_limit`` (a rolling window).
        pause_hint: Reads the vendor's own rate-limit headers (see ``HttpClient``).
    """

    config_model: ClassVar[type[DestinationConfig]]
    capabilities: ClassVar[Capabilities]
    vendor: ClassVar[str]
    # Keys of the destination file holding URLs, checked before the first call.
    url_keys: ClassVar[tuple[str, ...]] = ("base_url",)
    # Calls in flight follow `rate_limit` (default_concurrency) unless the file sets
    # `concurrency`, and the run keeps as many batches in flight. A vendor whose batches
    # must go one at a time, or that caps connections rather than calls a second, sets
    # False: FIXED_CONCURRENCY calls, and its capabilities' number of batches.
    concurrency_from_rate_limit: ClassVar[bool] = True
    config: HttpDestinationConfig  # each vendor narrows it to its own config class

    def __init__(
        self,
        config: HttpDestinationConfig,
        context: DestinationContext,
        *secrets: str | None,
        headers: Mapping[str, str] | None = None,
        hints: Mapping[int, str] | None = None,
        limiter: RateLimiter | None = None,
        pause_hint: PauseHint | None = None,
    ) -> None:
        self.config = config
        self.redactor = redactor_for(context, *secrets)
        calls = self.calls_in_flight(config)
        self.gate = asyncio.Semaphore(calls)
        self.client = client_for(
            self.vendor,
            config,
            context,
            self.redactor,
            concurrency=calls,
            headers=headers,
            limiter=limiter,
            pause_hint=pause_hint,
            hints=hints,
        )

    @classmethod
    def calls_in_flight(cls, config: HttpDestinationConfig) -> int:
        """Calls in flight at once: the file's ``concurrency``, else enough to reach its
        ``rate_limit`` (:func:`default_concurrency`), or :data:`FIXED_CONCURRENCY` for a
        connector that keeps a fixed number."""
        if config.concurrency:
            return config.concurrency
        if cls.concurrency_from_rate_limit:
            return default_concurrency(config.rate_limit)
        return FIXED_CONCURRENCY

    @classmethod
    def fit_run(cls, config: HttpDestinationConfig) -> RunFit:
        """As many batches in flight as calls, for a connector that follows its rate limit
        (the engine asks before the run; a file's ``concurrency`` still wins)."""
        if cls.concurrency_from_rate_limit:
            return RunFit(concurrency=cls.calls_in_flight(config))
        return RunFit()

    async def probe(self) -> HttpResult | None:
        """The call that proves credentials and settings (read the account, an object).

        Raise :class:`DestinationError` for what it finds wrong; a refused answer it
        returns fails the check with the hint for its status.
        """
        raise NotImplementedError

    async def check(self) -> None:
        """Check the URLs of the destination file, then :meth:`probe`; close after it.

        Raises:
            DestinationError: CONFIG when a URL is not http(s) or the probe was refused.
        """
        for key in self.url_keys:
            url = getattr(self.config, key, None)
            if url is not None and not url.startswith(("http://", "https://")):
                raise DestinationError(
                    f"{self.vendor} `{key}` must start with http:// or https://: fix it in the "
                    "destination file",
                    failure=FailureType.CONFIG,
                )
        try:
            result = await self.probe()
        finally:
            await self.close()  # a connection test runs in an event loop of its own
        if result is not None and not result.ok:
            raise DestinationError(
                f"{self.vendor} refused the check ({result.error}): "
                f"{self.client.hint(result.status)}",
                failure=FailureType.CONFIG,
                status=result.status,
            )

    async def close(self) -> None:
        """Close the client's connections (a later call opens new ones)."""
        await self.client.aclose()

    async def each(self, items: Iterable[T], send: Callable[[T], Awaitable[R]]) -> dict[T, R]:
        """``send`` each item, at most ``concurrency`` at once; results by item."""
        listed = list(items)
        return dict(zip(listed, await run_bounded(self.gate, listed, send), strict=True))


__all__ = ["HttpDestination", "HttpDestinationConfig"]
