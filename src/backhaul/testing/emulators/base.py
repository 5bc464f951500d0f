"""What every emulator shares: serving, fault switches, rate windows, inspection.

An emulator (a vendor's API, or the webhook receiver) subclasses :class:`Emulator`, keeps
its records in memory, declares its routes, and says how it answers a rate limit and an
error. The base wraps every route so the fault switches apply uniformly, records each
call, and adds a control API under ``/_emulator`` so tests (and people using
``backhaul sandbox``) can inspect state and inject faults over HTTP. ``emulator.start()``
(or ``with emulator:``) serves it on loopback; :class:`EmulatorServer` does the same for
code that wants the server object.

Every request to a vendor route is recorded in :attr:`Emulator.calls` as it arrives (and
counted in :attr:`Emulator.most_concurrent` while it is being answered), then
goes through, in order: :meth:`Emulator.before_request` (the vendor's edge:
authentication, rate windows), the fault switches, the route itself; then
:meth:`Emulator.response_headers` adds its headers to whichever answer came out, and the
recorded call gets the answer's status.

Tests assert on the emulator's resulting records (``emulator.state()``), not on requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import InitVar
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import ClassVar
from typing import Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._http import strict_json
from backhaul.testing.server import LoopbackServer
from backhaul.testing.server import StartStop

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Call:
    """One request an emulator received, refused and faulted ones included.

    Attributes:
        headers: Header names in lower case.
        json: The parsed body; the body's text when it is not JSON; ``None`` when empty.
        status: The answer's status; ``0`` while the request is still being answered.
        at: When it arrived (``time.time()``).
        body: The body's bytes, as sent.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any
    status: int = 0
    at: float = field(default_factory=time.time)
    body: bytes = b""


@dataclass(frozen=True)
class Fault:
    kind: str  # "status" | "rate_limit" | "timeout" | "drop" | "hold"
    status: int = 500
    seconds: float = 0.0


@dataclass(frozen=True)
class DestinationFile:
    """The destination file that reaches an emulator, as a user would write it.

    Its ``type`` is the emulator's :attr:`Emulator.vendor`. Secrets are written as
    ``${env:NAME}`` references, never as values; the emulator attribute named like the
    setting holds the value that variable must have.

    Attributes:
        secrets: ``{setting: environment variable}``, in the order they are written.
        settings: Plain settings written after the secrets.
    """

    secrets: Mapping[str, str]
    settings: Mapping[str, Any] = field(default_factory=dict)

    def content(self, destination_type: str, base_url: str) -> dict[str, Any]:
        """The file's content, for a destination of ``destination_type`` at ``base_url``."""
        references = {key: f"${{env:{name}}}" for key, name in self.secrets.items()}
        return {"type": destination_type, "base_url": base_url, **references, **self.settings}


class Faults:
    """Fault switches. Queued faults hit the next requests in order; the rest persist."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self.latency = 0.0
        self.transient_rate = 0.0
        self._rng = random.Random(seed)
        self.rejects: dict[str, str] = {}
        self.released = threading.Event()

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` (the vendor's error shape)."""
        self._push(n, Fault("status", status=status))

    def rate_limit_next(self, n: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``n`` requests the way the vendor signals a rate limit."""
        self._push(n, Fault("rate_limit", seconds=retry_after))

    def timeout_next(self, n: int = 1, seconds: float = 5.0) -> None:
        """Hold the next ``n`` requests this long before answering (client timeouts).

        A held request whose client has gone away by then is not applied.
        """
        self._push(n, Fault("timeout", seconds=seconds))

    def hold_next(self, n: int = 1) -> None:
        """Keep the next ``n`` requests waiting (already in the call log) until
        :meth:`release`; then they go on as usual. Lets a test act mid-request."""
        self.released.clear()
        self._push(n, Fault("hold"))

    def release(self) -> None:
        """Let held requests (and those held later, until the next :meth:`hold_next`) go on."""
        self.released.set()

    def drop_next(self, n: int = 1) -> None:
        """Close the connection of the next ``n`` requests without an answer."""
        self._push(n, Fault("drop"))

    def fail_randomly(self, rate: float, seed: int | None = None) -> None:
        """Fail this share of requests with a 503 (seeded, so runs repeat)."""
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        with self._lock:
            self.transient_rate = rate
            if seed is not None:
                self._rng = random.Random(seed)

    def reject(self, errors: dict[str, str]) -> None:
        """Refuse records whose identity value is a key of ``errors``, with that error."""
        with self._lock:
            self.rejects.update({str(k): v for k, v in errors.items()})

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.latency = 0.0
            self.transient_rate = 0.0
            self.rejects.clear()

    def next(self) -> Fault | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self.transient_rate and self._rng.random() < self.transient_rate:
                return Fault("status", status=503)
        return None

    def _push(self, n: int, fault: Fault) -> None:
        if n < 0:
            raise ValueError("n must not be negative")
        with self._lock:
            self._queue.extend([fault] * n)


class SlidingWindow:
    """A rolling-window request counter, as vendors describe their burst limits."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()
        self.refused = 0

    def hit(self) -> tuple[bool, int, float]:
        """Count one request: (allowed, remaining in window, seconds until a slot frees)."""
        now = self.clock()
        with self._lock:
            while self._hits and self._hits[0] <= now - self.seconds:
                self._hits.popleft()
            if len(self._hits) >= self.limit:
                self.refused += 1
                return False, 0, self._hits[0] + self.seconds - now
            self._hits.append(now)
            return True, self.limit - len(self._hits), 0.0

    def reset_in(self) -> float:
        """Seconds until the oldest counted request leaves the window (a slot frees)."""
        with self._lock:
            if not self._hits:
                return self.seconds
            return max(0.0, self._hits[0] + self.seconds - self.clock())

    def used(self) -> int:
        """Requests counted in the window as it stands now."""
        now = self.clock()
        with self._lock:
            while self._hits and self._hits[0] <= now - self.seconds:
                self._hits.popleft()
            return len(self._hits)


class FixedWindow:
    """A counter that empties at fixed boundaries, for vendors that document fixed windows.

    Same interface as :class:`SlidingWindow`. The first window starts at the first request.
    """

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self._start: float | None = None
        self._count = 0
        self._lock = threading.Lock()
        self.refused = 0

    def _roll(self, now: float) -> None:
        if self._start is None or now >= self._start + self.seconds:
            passed = 0 if self._start is None else (now - self._start) // self.seconds
            self._start = now if self._start is None else self._start + passed * self.seconds
            self._count = 0

    def hit(self) -> tuple[bool, int, float]:
        """Count one request: (allowed, remaining in window, seconds until the window resets)."""
        now = self.clock()
        with self._lock:
            self._roll(now)
            assert self._start is not None
            wait = self._start + self.seconds - now
            if self._count >= self.limit:
                self.refused += 1
                return False, 0, wait
            self._count += 1
            return True, self.limit - self._count, wait

    def reset_in(self) -> float:
        """Seconds until the current window ends."""
        now = self.clock()
        with self._lock:
            self._roll(now)
            assert self._start is not None
            return self._start + self.seconds - now


def count_request(
    request: Request, window: SlidingWindow, reset_in: Callable[[], float]
) -> tuple[bool, float]:
    """Count ``request`` in ``window`` and keep on ``request.state`` what
    :func:`rate_limit_headers` reports: the requests left and the reset (epoch seconds: when
    a refused request may retry, else ``reset_in()`` seconds from now).

    Returns:
        Whether the window allowed it, and the seconds to wait when it did not.
    """
    allowed, remaining, wait = window.hit()
    request.state.remaining = remaining
    request.state.reset = math.ceil(time.time() + (wait or reset_in()))
    return allowed, wait


def rate_limit_headers(request: Request, limit: int) -> dict[str, str]:
    """``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` of a request :func:`count_request`
    counted; none for a request refused before its window."""
    if not hasattr(request.state, "remaining"):
        return {}
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(request.state.remaining),
        "X-RateLimit-Reset": str(request.state.reset),
    }


class Emulator(StartStop):
    """Base of an emulator. Subclasses implement the ``vendor_*`` hooks.

    ``with emulator:`` (or :meth:`start`) serves it on loopback; :attr:`base_url` is then
    where it listens.
    """

    vendor: ClassVar[str] = "vendor"
    # The destination file of the vendor's connector, when it fits that shape; an emulator
    # whose file does not overrides :meth:`credentials` and :meth:`destination_config`.
    destination_file: ClassVar[DestinationFile | None] = None

    def __init__(self, *, seed: int = 0) -> None:
        self.faults = Faults(seed)
        self.lock = threading.RLock()
        self.calls: list[Call] = []
        self.server: EmulatorServer | None = None
        # Requests being answered now, and the most there have been at once (since reset).
        self.concurrent = 0
        self.most_concurrent = 0

    # -- hooks for subclasses ------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        """The vendor's API routes."""
        raise NotImplementedError

    def vendor_error(self, status: int, message: str) -> Response:
        """An error answer in the vendor's shape."""
        return JSONResponse({"error": message}, status_code=status)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        """How the vendor answers a request over its rate limit."""
        return JSONResponse(
            {"error": "rate limited"},
            status_code=429,
            headers={"Retry-After": f"{max(1, round(retry_after))}"},
        )

    async def before_request(self, request: Request) -> Response | None:
        """Check a request before the fault switches see it, as the vendor's edge would.

        Override for what every route of the vendor checks first: authentication, rate
        windows, quotas. Values the answer's headers need can be kept on ``request.state``.

        Returns:
            An answer to send instead of running the route (it is recorded), or ``None`` to
            let the request through to the fault switches and the route.
        """
        return None

    def after_request(self, request: Request) -> None:
        """Called once the answer to a vendor route is built (or the route failed).

        Override to release what :meth:`before_request` took, e.g. a connection slot of a
        vendor that limits concurrent requests.
        """

    def vendor_control(self, spec: dict[str, Any]) -> None:
        """Apply vendor-specific switches from a ``POST /_emulator/faults`` body.

        Keys the base does not know are passed here (e.g. holding asynchronous jobs).
        """

    def response_headers(self, request: Request) -> dict[str, str]:
        """Headers added to every answer of a vendor route (e.g. rate-limit counters).

        Runs once the answer is built, whatever built it (:meth:`before_request`, a fault
        switch or the route); a header the answer already has is left as it is.
        """
        return {}

    def vendor_state(self) -> dict[str, Any]:
        """The records the emulator holds, for inspection."""
        return {}

    def vendor_reset(self) -> None:
        """Forget every record."""

    def credentials(self) -> dict[str, str]:
        """The environment a destination file reaching this emulator reads its secrets from.

        By default, each secret of :attr:`destination_file` set to the attribute of the
        same name as its setting.
        """
        if self.destination_file is None:
            return {}
        return {
            name: str(getattr(self, key)) for key, name in self.destination_file.secrets.items()
        }

    def destination_config(self, base_url: str) -> dict[str, Any]:
        """A destination file's content pointing at this emulator."""
        if self.destination_file is None:
            return {}
        return self.destination_file.content(self.vendor, base_url)

    # -- shared behaviour ------------------------------------------------------------------

    def start(self, timeout: float = 10.0, *, port: int = 0) -> Self:
        """Serve on ``127.0.0.1`` (``port``, or a free one) from a background thread;
        returns once connections are accepted."""
        if self.server is not None and self.server.running:
            raise RuntimeError(f"the {self.vendor} emulator is already running")
        EmulatorServer(self, port=port).start(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (held and delayed requests are answered 503); safe to call twice."""
        if self.server is not None:
            self.server.stop(timeout)

    @property
    def port(self) -> int:
        """The port it is (or was last) served on."""
        if self.server is None:
            raise RuntimeError(f"the {self.vendor} emulator is not started; call start() first")
        return self.server.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, where it is (or was last) served."""
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        with self.lock:
            snapshot: dict[str, Any] = json.loads(json.dumps(self.vendor_state(), default=str))
        return snapshot

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.most_concurrent = self.concurrent
            self.vendor_reset()
        self.faults.clear()

    def app(self) -> Starlette:
        routes: list[BaseRoute] = [
            Route("/_emulator/state", self._control_state, methods=["GET"]),
            Route("/_emulator/calls", self._control_calls, methods=["GET"]),
            Route("/_emulator/reset", self._control_reset, methods=["POST"]),
            Route("/_emulator/faults", self._control_faults, methods=["POST"]),
        ]
        for route in self.vendor_routes():
            if isinstance(route, Route):
                routes.append(
                    Route(route.path, self._wrap(route.endpoint), methods=list(route.methods or []))
                )
            else:
                routes.append(route)
        return Starlette(routes=routes)

    def record(self, request: Request, body: Any, raw: bytes) -> Call:
        """Add a request to :attr:`calls` as it arrives (status 0 until :meth:`answered`)."""
        call = Call(
            request.method,
            request.url.path,
            request.url.query,
            {k.lower(): v for k, v in request.headers.items()},
            body,
            body=raw,
        )
        with self.lock:
            self.calls.append(call)
        return call

    def answered(self, call: Call, status: int) -> None:
        """Note the status ``call`` was answered with (unless a reset forgot the call)."""
        with self.lock:
            for i in range(len(self.calls) - 1, -1, -1):
                if self.calls[i] is call:
                    self.calls[i] = dataclasses.replace(call, status=status)
                    return

    def _wrap(self, endpoint: Any) -> Endpoint:
        async def handler(request: Request) -> Response:
            raw = await request.body()
            bare_constant = False
            try:
                body: Any = strict_json(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
                bare_constant = _lenient_json(raw)
            call = self.record(request, body, raw)
            self._arrived()
            try:
                response = await self.before_request(request)
                if response is None and bare_constant:
                    # Python's parser takes bare NaN/Infinity; a vendor's refuses the call.
                    response = self.vendor_error(
                        400, "Invalid input JSON: NaN and Infinity are not JSON values"
                    )
                if response is None:
                    if self.faults.latency:
                        await asyncio.sleep(self.faults.latency)
                    fault = self.faults.next()
                    if fault is not None:
                        response = await self._inject(fault, request)
                if response is None:
                    response = await endpoint(request)
            finally:
                self.after_request(request)
                self._left()
            for name, value in self.response_headers(request).items():
                if name not in response.headers:
                    response.headers[name] = value
            self.answered(call, response.status_code)
            return response

        return handler

    def _arrived(self) -> None:
        with self.lock:
            self.concurrent += 1
            self.most_concurrent = max(self.most_concurrent, self.concurrent)

    def _left(self) -> None:
        with self.lock:
            self.concurrent -= 1

    async def _inject(self, fault: Fault, request: Request) -> Response | None:
        if fault.kind == "status":
            return self.vendor_error(fault.status, f"injected failure {fault.status}")
        if fault.kind == "rate_limit":
            return self.vendor_rate_limited(fault.seconds)
        if fault.kind == "drop":
            if self.server is not None:
                self.server.abort(request)
            for _ in range(20):
                await asyncio.sleep(0)
            return Response(status_code=204)
        # timeout or hold: wait in short steps so stop() and a gone client end it early
        deadline = time.monotonic() + fault.seconds
        stopping = self.server.stopping if self.server else threading.Event()
        while not stopping.is_set():
            if fault.kind == "hold":
                if self.faults.released.is_set():
                    break
                step = 0.02
            else:
                step = min(0.02, deadline - time.monotonic())
                if step <= 0:
                    break
            await asyncio.sleep(step)
            if await request.is_disconnected():
                return Response(status_code=204)
        if stopping.is_set():
            return self.vendor_error(503, "shutting down")
        return None

    async def _control_state(self, request: Request) -> Response:
        return JSONResponse(self.state())

    async def _control_calls(self, request: Request) -> Response:
        with self.lock:
            calls = [
                {"method": c.method, "path": c.path, "status": c.status, "at": c.at}
                for c in self.calls
            ]
        return JSONResponse({"calls": calls})

    async def _control_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    async def _control_faults(self, request: Request) -> Response:
        """``{"fail_next": 2, "status": 500}``, ``{"rate_limit_next": 1}``,
        ``{"timeout_next": 1, "seconds": 3}``, ``{"drop_next": 1}``, ``{"hold_next": 1}``,
        ``{"release": true}``, ``{"latency": 0.2}``, ``{"fail_randomly": 0.2}``,
        ``{"reject": {"key": "error"}}``, ``{"clear": true}``; the whole body also goes to
        :meth:`vendor_control` for vendor-specific keys."""
        try:
            spec = await request.json()
        except ValueError:
            return JSONResponse({"error": "send a JSON object"}, status_code=400)
        f = self.faults
        if spec.get("clear"):
            f.clear()
        if "fail_next" in spec:
            f.fail_next(int(spec["fail_next"]), int(spec.get("status", 500)))
        if "rate_limit_next" in spec:
            f.rate_limit_next(int(spec["rate_limit_next"]), float(spec.get("retry_after", 1)))
        if "timeout_next" in spec:
            f.timeout_next(int(spec["timeout_next"]), float(spec.get("seconds", 5)))
        if "drop_next" in spec:
            f.drop_next(int(spec["drop_next"]))
        if "hold_next" in spec:
            f.hold_next(int(spec["hold_next"]))
        if spec.get("release"):
            f.release()
        if "latency" in spec:
            f.latency = float(spec["latency"])
        if "fail_randomly" in spec:
            f.fail_randomly(float(spec["fail_randomly"]))
        if "reject" in spec:
            f.reject({str(k): str(v) for k, v in dict(spec["reject"]).items()})
        with self.lock:
            self.vendor_control(spec)
        return JSONResponse({"ok": True})


@dataclass(eq=False, repr=False, kw_only=True)
class WindowedEmulator(Emulator):
    """An emulator whose requests all count in one rolling window, :attr:`window`.

    Subclasses are keyword-only dataclasses too, and give ``rate_limit`` and
    ``rate_window`` the vendor's defaults.

    Args:
        rate_limit: Requests allowed per ``rate_window`` seconds.
        rate_window: The window's length in seconds.
        clock: Monotonic clock of the window.
        seed: Seed of the random fault switches.
    """

    rate_limit: InitVar[int]
    rate_window: InitVar[float]
    clock: InitVar[Callable[[], float]] = time.monotonic
    seed: InitVar[int] = 0

    def __post_init__(
        self, rate_limit: int, rate_window: float, clock: Callable[[], float], seed: int
    ) -> None:
        super().__init__(seed=seed)
        self.window = SlidingWindow(rate_limit, rate_window, clock)


def _lenient_json(raw: bytes) -> bool:
    """Whether ``raw`` parses once bare NaN and Infinity are allowed."""
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


class EmulatorServer(LoopbackServer):
    """Serves one emulator on loopback; ``.url`` is its base URL."""

    def __init__(self, emulator: Emulator, *, port: int = 0) -> None:
        super().__init__(emulator.app(), name=f"{emulator.vendor}-emulator", port=port)
        self.emulator = emulator
        emulator.server = self
