"""The HTTP client every HTTP destination uses: rate limit, retries, recording, redaction.

A connector builds one :class:`HttpClient` per run and calls :meth:`HttpClient.request`.
Every attempt is recorded (redacted) for the API-call debugger; transient failures are
retried per the :class:`~backhaul.destinations.http.retry.RetryPolicy`; a call that cannot
succeed raises :class:`~backhaul.errors.DestinationError` with a message that names the
host and says what to do. Nothing here knows about any vendor.
"""

from __future__ import annotations

import asyncio
import base64
import json as jsonlib
import random
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Container
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from typing import Generic
from typing import TypeVar
from urllib.parse import parse_qsl
from urllib.parse import quote
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import httpx

from backhaul import floats
from backhaul.calls import CallRecorder
from backhaul.calls import HttpCall
from backhaul.calls import truncate
from backhaul.destinations.http.ratelimit import Permit
from backhaul.destinations.http.ratelimit import RateLimiter
from backhaul.destinations.http.retry import Action
from backhaul.destinations.http.retry import RetryPolicy
from backhaul.destinations.http.retry import classify_exception
from backhaul.destinations.http.retry import classify_status
from backhaul.destinations.http.retry import parse_retry_after
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.observe.events import WaitKind
from backhaul.observe.redact import MASK
from backhaul.observe.redact import Redactor
from backhaul.observe.waits import NoWaits
from backhaul.observe.waits import WaitObserver

SUCCESS = range(200, 300)
ERROR_TEXT_LIMIT = 500
PAUSE_NEWS = 0.05  # seconds a pause must grow by to be announced again
HELD_MS = 1.0  # an attempt held back less than this did not wait (for its record)
# Query parameters whose values are masked even when they are not a known secret.
SENSITIVE_PARAM_WORDS = ("key", "token", "secret", "password", "signature", "auth")

PauseHint = Callable[[httpx.Response], float | None]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class HttpResult:
    """The final answer to a call (after retries).

    Attributes:
        status: HTTP status code.
        reason: HTTP reason phrase.
        headers: Response headers.
        text: Response body as text.
        json: Parsed JSON body, or ``None`` when the body is not JSON.
        call_id: Id of the recorded last attempt (for per-record results).
        attempts: How many attempts the call took.
        error: A short, redacted error message when the status is not expected.
    """

    status: int
    reason: str
    headers: Mapping[str, str]
    text: str
    json: Any
    call_id: str
    attempts: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def failed(self, message: str) -> DestinationError:
        """``message`` as the error of a call nothing can go on without: a configuration
        problem, unless the server failed (5xx) and a later run may succeed."""
        failure = FailureType.CONFIG if self.status < 500 else FailureType.TRANSIENT
        return DestinationError(message, failure=failure, status=self.status)


@dataclass(frozen=True, slots=True)
class _Held:
    """How long an attempt waited before it was sent, and why (for its record)."""

    ms: float
    reason: str | None

    def __post_init__(self) -> None:
        if self.ms < HELD_MS:  # the limiter's bookkeeping, not a wait
            object.__setattr__(self, "reason", None)
            object.__setattr__(self, "ms", 0.0)
        object.__setattr__(self, "ms", round(self.ms, 3))


def _held_reason(permit: Permit) -> str | None:
    if permit.paused_s > 0:
        return "a rate-limit pause the destination asked for"
    if permit.throttled_s > 0:
        return "the client-side rate limit"
    return None


def dumps_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON; dates, decimals and bytes get a JSON form.

    Raises:
        NonFiniteError: ``value`` holds NaN or an infinity somewhere. JSON has no token for
            them, so none ever leaves as a bare ``NaN``/``Infinity``; the engine's
            ``non_finite`` policy decides what to send instead, before this is called.
    """
    try:
        text = jsonlib.dumps(
            value,
            separators=(",", ":"),
            ensure_ascii=False,
            default=_json_default,
            allow_nan=False,
            sort_keys=sort_keys,
        )
    except ValueError:
        found = floats.find(value)
        if found is None:
            raise
        raise floats.NonFiniteError(*found) from None
    return text.encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite() or (value.is_zero() and value.is_signed()):
            return float(value)  # NaN and infinities are refused; -0 keeps its sign
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def redact_url(url: str, redactor: Redactor) -> str:
    """``url`` with its password, sensitive query values and known secrets masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}" if ":" in userinfo else f"{MASK}@{hostport}"
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if any(word in name.lower() for word in SENSITIVE_PARAM_WORDS):
            value = MASK
        query.append(f"{quote(name, safe='')}={quote(value, safe='*@:/,')}")
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, "&".join(query), ""))
    return redactor.text(rebuilt) or ""


def where(url: httpx.URL) -> str:
    """``host:port`` of ``url``, for messages (never the path or query, which may hold secrets)."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.host}:{port}"


class HttpClient:
    """One ``httpx.AsyncClient`` with a rate limiter, a retry policy and a call recorder.

    Args:
        label: What the destination is called in messages (``"webhook"``, ``"hubspot"``).
        recorder: Receives every attempt, redacted and truncated.
        redactor: Masks secret values; add every secret of the destination to it.
        limiter: Shared by every task of one destination account (default: unlimited).
            Each attempt takes a permit from it and hands it back through
            :meth:`~backhaul.destinations.http.ratelimit.RateLimiter.answered` once the
            attempt is answered or has failed.
        retry: When and how long to retry transient failures.
        timeout: Seconds to wait for connect, read and write (waiting for a pooled
            connection does not count).
        concurrency: Most calls in flight at once. Over HTTP/1.1 each holds one of as many
            keep-alive connections; over HTTP/2 they are streams of one connection, which
            would carry many more, so the client holds the others back itself.
        http2: Offer HTTP/2 to ``https://`` hosts (TLS ALPN); a host that does not take it
            is spoken to in HTTP/1.1, and ``http://`` URLs always are.
        headers: Headers sent with every request.
        transport: An httpx transport, for unusual network set-ups.
        pause_hint: Reads a vendor's own rate-limit headers from any response and returns
            seconds every task should wait (``None``: no pause). ``Retry-After`` is read
            without it.
        sleep: Waits between attempts; injected so tests need not wait.
        rand: Source of jitter in ``[0, 1)``.
        waits: Told of every wait (rate-limit pauses, retries, throttling), so the run can
            report and count them.
        hints: What to do, by HTTP status, in the message of a call that failed with that
            status: the vendor's own words, merged over the hints of
            :data:`~backhaul.destinations.http.retry.STATUS_RULES` (see :meth:`hint`).
    """

    def __init__(
        self,
        *,
        label: str,
        recorder: CallRecorder,
        redactor: Redactor | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        concurrency: int = 4,
        http2: bool = True,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        pause_hint: PauseHint | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        waits: WaitObserver | None = None,
        hints: Mapping[int, str] | None = None,
    ) -> None:
        self.label = label
        self.hints = dict(hints or {})
        self.waits: WaitObserver = waits or NoWaits()
        self.recorder = recorder
        self.redactor = redactor or Redactor()
        self.limiter = limiter or RateLimiter(None)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._pause_hint = pause_hint
        self._sleep = sleep
        self._rand = rand
        self._concurrency = concurrency
        self._limits = httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency
        )
        self._http2 = http2
        self._in_flight = asyncio.Semaphore(concurrency)
        self._headers = dict(headers or {})
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        # Pooled connections belong to the event loop that opened them: a client built outside
        # a loop, or used by check() in one loop and write() in another, gets its own pool
        # (and its own count of calls in flight, which is bound to a loop too).
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._in_flight = asyncio.Semaphore(self._concurrency)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, pool=None),
                limits=self._limits,
                headers=self._headers,
                transport=self._transport,
                follow_redirects=False,
                http2=self._http2,
            )
            self._loop = loop
        return self._client

    def hint(self, status: int) -> str:
        """What to do about a call that failed with ``status``: the connector's hint for it,
        else the toolkit's."""
        return self.hints.get(status) or classify_status(status).hint

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        expected: Container[int] = SUCCESS,
    ) -> HttpResult:
        """Send one call, retrying transient failures, and return its final answer.

        Args:
            method: HTTP method.
            url: Absolute URL.
            json: A value sent as a JSON body (give ``json`` or ``content``, not both).
            content: A body sent as is.
            headers: Extra headers for this call.
            expected: Statuses that count as success.

        Returns:
            The answer when its status is expected, or when it refuses the call's records
            (a 4xx without its own rule): then ``result.ok`` is false and ``result.error``
            holds the destination's reason.

        Raises:
            DestinationError: The call failed as a whole: a configuration problem (no retry)
                or a transient one that outlasted the retry policy.
        """
        if json is not None and content is not None:
            raise ValueError("give either json or content, not both")
        send_headers = dict(headers or {})
        body: bytes | str | None = content
        if json is not None:
            try:
                body = dumps_json(json)
            except floats.NonFiniteError as exc:
                raise DestinationError(
                    f"{self.label}: {exc}; set `non_finite: null` or `non_finite: string` "
                    "on the sync to send such values",
                    failure=FailureType.REJECTED,
                ) from None
            if not any(k.lower() == "content-type" for k in send_headers):
                send_headers["Content-Type"] = "application/json"
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise DestinationError(
                f"{self.label} URL is not valid ({exc}): check the URL in the destination file",
                failure=FailureType.CONFIG,
            ) from None
        host = where(target)
        policy = self.retry
        attempt = 0
        held = 0.0  # seconds this attempt was held back: a retry's backoff, the limiter
        why: str | None = None  # why it waited, when a retry or a pause made it wait
        while True:
            attempt += 1
            asked = time.perf_counter()
            permit = await self.limiter.acquire(observer=self.waits)
            held += time.perf_counter() - asked
            http = self._http()
            request = http.build_request(method, target, content=body, headers=send_headers)
            started = time.perf_counter()
            waited = _Held(held * 1000, why or _held_reason(permit))
            held, why = 0.0, None
            try:
                async with self._in_flight:
                    response = await http.send(request)
            except httpx.HTTPError as exc:
                self.limiter.answered(permit)
                problem = self._describe(exc)
                self._record(request, None, started, attempt, waited, error=problem)
                rule = classify_exception(exc)
                if rule.action is Action.RETRY and attempt < policy.max_attempts:
                    why = (
                        f"{self.label} at {host} {problem}; retry {attempt + 1} of "
                        f"{policy.max_attempts}"
                    )
                    held = await self._timed(self.hold(policy.delay(attempt, rand=self._rand), why))
                    continue
                times = f" ({attempt} attempts)" if attempt > 1 else ""
                raise DestinationError(
                    f"{self.label} at {host} {problem}{times}: {rule.hint}",
                    failure=rule.failure,
                    detail=self.redactor.text(f"{type(exc).__name__}: {exc}"),
                ) from None
            except BaseException:
                self.limiter.answered(permit)  # cancelled: the attempt is over all the same
                raise
            self.limiter.answered(permit)
            call = self._record(request, response, started, attempt, waited)
            paused_before = self.limiter.paused_until
            hint = self._pause_hint(response) if self._pause_hint else None
            if hint:
                self.limiter.penalize(hint)
            if response.status_code in expected:
                self._announce_pause(paused_before, response, hint)
                return self._result(response, call, attempt, error=None)
            rule = classify_status(response.status_code)
            error = self._error_text(response)
            if rule.action is Action.REJECT:
                self._announce_pause(paused_before, response, hint)
                return self._result(response, call, attempt, error=error)
            wait = parse_retry_after(response.headers.get("retry-after"))
            if wait is None:
                wait = hint
            retryable = rule.action in (Action.RETRY, Action.RATE_LIMITED)
            if (
                retryable
                and attempt < policy.max_attempts
                and (wait or 0) <= policy.max_retry_after
            ):
                if wait is not None:
                    self.limiter.penalize(wait)  # the server asked every task to wait
                elif rule.action is Action.RATE_LIMITED:
                    self.limiter.penalize(policy.delay(attempt, rand=self._rand))
                else:
                    why = (
                        f"{self.label} at {host} answered {response.status_code} "
                        f"{response.reason_phrase}; retry {attempt + 1} of {policy.max_attempts}"
                    )
                    held = await self._timed(self.hold(policy.delay(attempt, rand=self._rand), why))
                    continue
                why = self._announce_pause(paused_before, response, hint)
                continue
            times = f" {attempt} times" if attempt > 1 else ""
            raise DestinationError(
                f"{self.label} at {host} answered {response.status_code} "
                f"{response.reason_phrase}{times}: {self.hint(response.status_code)}",
                failure=rule.failure,
                status=response.status_code,
                retry_after=wait,
                detail=error,
            )

    @staticmethod
    async def _timed(waiting: Awaitable[None]) -> float:
        """Await ``waiting`` and return how many seconds it took."""
        start = time.perf_counter()
        await waiting
        return time.perf_counter() - start

    async def hold(self, seconds: float, why: str, kind: WaitKind = WaitKind.RETRY) -> None:
        """Wait ``seconds`` before trying again, announced to the run and counted as waiting.

        For connectors that retry on their own terms (a vendor's concurrency limit).
        """
        self.waits.announce(kind, seconds, why)
        await self.waits.held(kind, self._sleep(seconds))

    def _announce_pause(
        self, before: float, response: httpx.Response, hint: float | None
    ) -> str | None:
        """Announce the pause this answer started, if it started or lengthened one.

        Several tasks answered at once extend the same pause; it is announced once.
        Returns the reason, for the record of the attempt that waits.
        """
        reason = self._pause_reason(response, hint)
        if self.limiter.paused_until <= before + PAUSE_NEWS:
            return reason if self.limiter.pause_left() > 0 else None
        self.waits.announce(WaitKind.RATE_LIMIT, self.limiter.pause_left(), reason)
        return reason

    def _pause_reason(self, response: httpx.Response, hint: float | None) -> str:
        status = response.status_code
        retry_after = response.headers.get("retry-after")
        details = [str(status)]
        if retry_after is not None:
            details.append(f"Retry-After {retry_after.strip()}")
        elif hint:
            details.append("as its rate-limit headers ask")
        what = "rate limit" if status == 429 or hint else "asked to wait"
        return f"{self.label} {what} ({', '.join(details)})"

    def _describe(self, exc: httpx.HTTPError) -> str:
        if isinstance(exc, httpx.TimeoutException):
            return f"did not answer within {self.timeout:g}s"
        if isinstance(exc, httpx.ConnectError):
            return "refused the connection or could not be reached"
        if isinstance(exc, httpx.RemoteProtocolError):
            return "closed the connection without a complete answer"
        text = self.redactor.text(str(exc)) or ""
        return (
            f"failed ({type(exc).__name__}: {text})" if text else f"failed ({type(exc).__name__})"
        )

    def _record(
        self,
        request: httpx.Request,
        response: httpx.Response | None,
        started: float,
        attempt: int,
        waited: _Held,
        *,
        error: str | None = None,
    ) -> HttpCall:
        redact = self.redactor.text
        call = HttpCall(
            method=request.method,
            url=redact_url(str(request.url), self.redactor),
            status=None if response is None else response.status_code,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            request_headers=self.redactor.headers(request.headers),
            request_body=truncate(redact(request.content.decode("utf-8", "replace") or None)),
            response_body=None if response is None else truncate(redact(response.text)),
            error=error,
            attempt=attempt,
            response_headers={} if response is None else self.redactor.headers(response.headers),
            wait_ms=waited.ms,
            wait_reason=waited.reason,
        )
        self.recorder.record(call)
        return call

    def _result(
        self, response: httpx.Response, call: HttpCall, attempts: int, *, error: str | None
    ) -> HttpResult:
        try:
            parsed = response.json() if response.content else None
        except ValueError:
            parsed = None
        return HttpResult(
            status=response.status_code,
            reason=response.reason_phrase,
            headers=response.headers,
            text=response.text,
            json=parsed,
            call_id=call.call_id,
            attempts=attempts,
            error=error,
        )

    def _error_text(self, response: httpx.Response) -> str:
        """The destination's own reason for a failed call, on one line, redacted."""
        fallback = f"{response.status_code} {response.reason_phrase}"
        try:
            text = error_message(response.json()) if response.content else None
        except ValueError:
            text = response.text
        line = " ".join((text or "").split())[:ERROR_TEXT_LIMIT]
        text = self.redactor.text(line) or ""
        return f"{fallback}: {text}" if text else fallback


def error_message(body: Any) -> str | None:
    """Pull a human message out of a JSON error body of a common shape."""
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        parts = [m for m in (error_message(item) for item in body[:5]) if m]
        return "; ".join(parts) or None
    if isinstance(body, dict):
        for key in ("error_description", "message", "error", "detail", "errors", "title"):
            if key in body:
                found = error_message(body[key])
                if found:
                    return found
        return jsonlib.dumps(body, default=str)
    return None if body is None else str(body)


@dataclass(frozen=True, slots=True)
class Refused:
    """What a ``send`` function for :func:`split_batch` returns when a call is refused whole."""

    error: str
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Segment(Generic[T, R]):
    """A run of consecutive items sent together, and what came back.

    ``outcome`` is a :class:`Refused` only for a single item (or when ``min_size`` stopped
    the bisection): those are the items the destination will not take.
    """

    start: int
    items: Sequence[T]
    outcome: R | Refused

    @property
    def indexes(self) -> range:
        return range(self.start, self.start + len(self.items))


async def split_batch(
    items: Sequence[T],
    send: Callable[[Sequence[T]], Awaitable[R | Refused]],
    *,
    min_size: int = 1,
) -> list[Segment[T, R]]:
    """Send ``items``; when the destination refuses the call whole, bisect to find the culprits.

    Many APIs answer 400 or 413 for a whole batch because of one bad record. This sends the
    batch, and on :class:`Refused` sends each half, recursively, until the refused parts are
    single items (or ``min_size``). Halves are sent one after the other to stay within the
    destination's rate limit.

    Returns:
        Segments covering ``items`` in order.
    """
    if min_size < 1:
        raise ValueError("min_size must be at least 1")

    async def walk(start: int, chunk: Sequence[T]) -> list[Segment[T, R]]:
        outcome = await send(chunk)
        if not isinstance(outcome, Refused) or len(chunk) <= min_size:
            return [Segment(start, chunk, outcome)]
        mid = len(chunk) // 2
        return [*await walk(start, chunk[:mid]), *await walk(start + mid, chunk[mid:])]

    if not items:
        return []
    return await walk(0, items)
