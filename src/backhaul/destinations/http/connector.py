"""Pieces every HTTP connector needs the same way: redactor, client, bounded fan-out, errors.

Each connector keeps its vendor's logic; what is here is only what is the same for all of
them, so that it is written (and fixed) once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Container
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Annotated
from typing import Any
from typing import Protocol
from typing import TypeVar

from pydantic import Field

from backhaul.calls import CallRecorder
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.http.client import HttpClient
from backhaul.destinations.http.client import HttpResult
from backhaul.destinations.http.client import PauseHint
from backhaul.destinations.http.client import Refused
from backhaul.destinations.http.client import split_batch
from backhaul.destinations.http.packing import Caps
from backhaul.destinations.http.packing import json_size
from backhaul.destinations.http.packing import pack
from backhaul.destinations.http.packing import too_big_results
from backhaul.destinations.http.ratelimit import RateLimit
from backhaul.destinations.http.ratelimit import RateLimiter
from backhaul.destinations.http.ratelimit import RollingWindowLimiter
from backhaul.destinations.http.retry import RetryPolicy
from backhaul.destinations.http.shared import SharedLimiter
from backhaul.errors import BackhaulError
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.observe.redact import Redactor

T = TypeVar("T")
R = TypeVar("R")

# The `http2` key of an HTTP destination file (default true).
Http2 = Annotated[
    bool,
    Field(
        description="Offer HTTP/2 to an https:// host: negotiated in the TLS handshake (ALPN), "
        "falling back to HTTP/1.1 when the host does not offer it. Turn it off for a proxy "
        "that mishandles HTTP/2."
    ),
]


class HttpSettings(Protocol):
    """The settings of a destination file that shape its HTTP client."""

    @property
    def rate_limit(self) -> RateLimit | None: ...

    @property
    def retry(self) -> RetryPolicy: ...

    @property
    def timeout_seconds(self) -> float: ...

    @property
    def http2(self) -> bool: ...


class JobPolling(Protocol):
    """The settings of a destination file that bound the polling of a vendor's job."""

    @property
    def poll_interval_seconds(self) -> float: ...

    @property
    def poll_timeout_seconds(self) -> float: ...


def redactor_for(context: DestinationContext, *secrets: str | None) -> Redactor:
    """A redactor for the run's resolved secrets and the connector's own (``None`` skipped)."""
    redactor = Redactor(context.secrets)
    for secret in secrets:
        if secret:
            redactor.add(secret)
    return redactor


def client_for(
    label: str,
    config: HttpSettings,
    context: DestinationContext,
    redactor: Redactor,
    *,
    concurrency: int,
    headers: Mapping[str, str] | None = None,
    limiter: RateLimiter | None = None,
    recorder: CallRecorder | None = None,
    pause_hint: PauseHint | None = None,
    hints: Mapping[int, str] | None = None,
) -> HttpClient:
    """The :class:`HttpClient` a destination file asks for: its retry policy, timeout, HTTP/2
    and rate limit (``limiter`` replaces the token bucket built from ``rate_limit``); ``hints``
    says what to do about a failed call, by status (see :meth:`HttpClient.hint`).

    When the run has a shared budget for the destination's account and the file sets a
    ``rate_limit``, the limiter also keeps to that budget (:class:`SharedLimiter`), so every
    process writing to the account shares one window, pause and daily quota.
    """
    local = limiter or RateLimiter.from_config(config.rate_limit)
    if context.budget is not None and config.rate_limit is not None:
        local = SharedLimiter(
            local, context.budget, config.rate_limit, stale_after=config.timeout_seconds * 3
        )
    return HttpClient(
        label=label,
        recorder=recorder or context.recorder,
        redactor=redactor,
        limiter=local,
        retry=config.retry,
        timeout=config.timeout_seconds,
        concurrency=concurrency,
        http2=config.http2,
        headers=headers,
        pause_hint=pause_hint,
        waits=context.waits,
        hints=hints,
    )


def rolling_window(config: HttpSettings) -> RollingWindowLimiter | None:
    """A rolling window of ``rate_limit`` (``None`` without one), for vendors that count
    calls in a window; a permit lost without an answer frees its slot after three timeouts."""
    limit = config.rate_limit
    if limit is None:
        return None
    return RollingWindowLimiter(
        limit.requests, limit.per_seconds, stale_after=config.timeout_seconds * 3
    )


async def send_bisecting(
    request: Sequence[tuple[int, T]],
    send: Callable[[Sequence[tuple[int, T]]], Awaitable[dict[int, RecordResult] | Refused]],
) -> dict[int, RecordResult]:
    """Send one request of ``(position, item)`` pairs; a request refused whole is halved
    (:func:`split_batch`) until the refused items stand alone, each rejected with the refusal.

    ``send`` answers a result for every position of the part it sent, or :class:`Refused`.
    """
    out: dict[int, RecordResult] = {}
    for segment in await split_batch(request, send):
        outcome = segment.outcome
        for i, _ in segment.items:
            if isinstance(outcome, Refused):
                out[i] = RecordResult.rejected(i, outcome.error, outcome.call_id)
            else:
                out[i] = outcome[i]
    return out


async def send_all_bisecting(
    gate: asyncio.Semaphore,
    requests: Iterable[Sequence[tuple[int, T]]],
    send: Callable[[Sequence[tuple[int, T]]], Awaitable[dict[int, RecordResult] | Refused]],
) -> dict[int, RecordResult]:
    """Every request through :func:`send_bisecting`, as many at once as ``gate`` allows;
    the results of all, by position."""
    out: dict[int, RecordResult] = {}
    for answers in await run_bounded(gate, requests, lambda r: send_bisecting(r, send)):
        out.update(answers)
    return out


async def send_packed(
    gate: asyncio.Semaphore,
    vendor: str,
    items: Iterable[tuple[int, T]],
    caps: Caps,
    send: Callable[[Sequence[tuple[int, T]]], Awaitable[dict[int, RecordResult] | Refused]],
    *,
    size: Callable[[T], int] = json_size,
) -> dict[int, RecordResult]:
    """Pack ``(position, item)`` pairs into requests within ``caps`` (an item measured by
    ``size``) and ``send`` each, as many at once as ``gate`` allows; results by position.

    An item too big to ever fit is rejected without a call, in ``vendor``'s name. ``send``
    answers a result for every position of the request it is given, or :class:`Refused`
    for a request refused whole, which is then halved until the refused items stand alone
    (see :func:`send_all_bisecting`).
    """
    packed = pack(items, caps, size=size)
    results = too_big_results(packed, caps, vendor)
    results.update(await send_all_bisecting(gate, packed.requests, send))
    return results


async def poll_job(
    vendor: str,
    job: str,
    state: dict[str, Any],
    finished: Container[Any],
    poll: Callable[[], Awaitable[HttpResult]],
    read: Callable[[HttpResult], dict[str, Any]],
    config: JobPolling,
) -> dict[str, Any]:
    """Poll a vendor's asynchronous job until its ``status`` is one of ``finished``; its
    last state (``read`` from each answer to ``poll``). ``job`` names it in errors
    (``import job 7``).

    Raises:
        DestinationError: TRANSIENT, when the job does not finish within
            ``poll_timeout_seconds`` or a poll fails.
    """
    deadline = time.monotonic() + config.poll_timeout_seconds
    while state.get("status") not in finished:
        if time.monotonic() > deadline:
            raise DestinationError(
                f"{vendor} {job} did not finish within {config.poll_timeout_seconds:g}s: retry "
                "later or raise `poll_timeout_seconds`",
                failure=FailureType.TRANSIENT,
            )
        await asyncio.sleep(config.poll_interval_seconds)
        result = await poll()
        if not result.ok:
            raise DestinationError(
                f"{vendor} could not report {job} ({result.error}): retry the run",
                failure=FailureType.TRANSIENT,
            )
        state = read(result)
    return state


async def run_bounded(
    gate: asyncio.Semaphore, items: Iterable[T], send: Callable[[T], Awaitable[R]]
) -> list[R]:
    """``send`` each item, as many at once as ``gate`` allows; results in item order.

    When one fails, the others are cancelled and the error that says most is raised
    (see :func:`first_error`).
    """

    async def one(item: T) -> R:
        async with gate:
            return await send(item)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
    except BaseExceptionGroup as failed:
        raise first_error(failed) from None
    return [task.result() for task in tasks]


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to raise for a failed batch: a config problem first, then any of ours."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    for exc in leaves:
        if isinstance(exc, DestinationError) and exc.failure is FailureType.CONFIG:
            return exc
    return next((e for e in leaves if isinstance(e, BackhaulError)), leaves[0])


def identity_field(
    vendor: str, identities: Mapping[str, tuple[str, ...]], object: str, match_fields: list[str]
) -> str:
    """The match field of a sync writing ``object``, which must be one of its identities.

    Raises:
        DestinationError: CONFIG, naming the objects or identity fields there are.
    """
    if object not in identities:
        names = list(identities)
        known = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
        raise DestinationError(
            f"{vendor} has no object `{object}`: use {known}", failure=FailureType.CONFIG
        )
    allowed = identities[object]
    if len(match_fields) != 1 or match_fields[0] not in allowed:
        which = "one of them" if len(allowed) > 1 else "it"
        raise DestinationError(
            f"{vendor} {object} are matched by {' or '.join(allowed)}: map {which} and make "
            "it the sync's match field",
            failure=FailureType.CONFIG,
        )
    return match_fields[0]


def identity_problems(
    vendor: str, identities: Mapping[str, tuple[str, ...]], object: str, match_fields: list[str]
) -> list[SyncProblem]:
    """:func:`identity_field`'s refusal as a problem of the sync file (none when it fits)."""
    try:
        identity_field(vendor, identities, object, match_fields)
    except DestinationError as exc:
        key = "object" if object not in identities else "match.fields"
        return [SyncProblem(key, exc.message)]
    return []


def refuse_problems(problems: Sequence[SyncProblem]) -> None:
    """Refuse at run time what ``check_sync`` reports before it: the first problem, as a
    configuration error.

    Raises:
        DestinationError: CONFIG, when there is a problem.
    """
    if problems:
        raise DestinationError(problems[0].message, failure=FailureType.CONFIG)


def template_field_problems(
    vendor: str, key: str, source: str | None, provided: Iterable[str], fields: Iterable[str]
) -> list[SyncProblem]:
    """Variables a destination's template (``key`` of its file) reads that the sync does not
    map: at run time each would fail every record."""
    if source is None:
        return []
    from backhaul.templates import check_template

    roots = {f.split(".")[0] for f in fields}
    known = set(provided) | roots
    missing = sorted(check_template(source).variables - known)
    if not missing:
        return []
    names = ", ".join(f"`{n}`" for n in missing)
    message = (
        f"the {vendor} destination's `{key}` reads {names}, which the sync does not map "
        f"(mapped: {', '.join(sorted(roots))}; also known there: "
        f"{', '.join(sorted(set(provided)))}): map it or change the template"
    )
    return [SyncProblem("mappings", message)]
