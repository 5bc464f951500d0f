"""A real webhook receiver on loopback, with fault switches, for tests and ``backhaul demo``.

:class:`WebhookReceiver` serves a small Starlette app with uvicorn in a background thread on
``127.0.0.1`` and a free port. It keeps every request it received and the current state of
the records it was sent (applying each record's operation), checks the HMAC signature and
a bearer token when configured, and can be told to misbehave: fail, rate-limit, stall or
drop the next requests, or refuse chosen records.

Example:
    >>> with WebhookReceiver(key_field="id", secret="s3cret") as hook:  # doctest: +SKIP
    ...     run_a_sync(url=hook.url)
    ...     assert hook.records["42"]["email"] == "ada@example.com"
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backhaul.testing.server import LoopbackServer

SIGNATURE_HEADER = "x-backhaul-signature"
TIMESTAMP_HEADER = "x-backhaul-timestamp"
OPERATIONS = ("upsert", "insert", "update", "delete", "clear")


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as the receiver saw it (header names in lower case)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body, or None when it was not JSON


@dataclass(frozen=True, slots=True)
class _Fault:
    kind: str  # "fail" | "rate_limit" | "delay" | "drop" | "hold"
    status: int = 500
    seconds: float = 0.0


def strict_json(body: bytes | str) -> Any:
    """Parse JSON as a strict receiver does: bare ``NaN``, ``Infinity`` and ``-Infinity``
    (which Python's parser accepts by default) are refused with :class:`ValueError`."""
    return json.loads(body, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def sign(secret: str, body: bytes) -> str:
    """The ``X-Backhaul-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookReceiver:
    """An HTTP server on loopback that records webhook calls and keeps the records' state.

    It parses bodies strictly, like most receivers: a body holding a bare ``NaN`` or
    ``Infinity`` is answered 400 and changes nothing.

    Records are kept in :attr:`records` keyed by ``str(record[key_field])`` (a dotted
    ``key_field`` reads a nested value). A body ``{"operation": ..., "records": [...]}`` is a
    batch; any other JSON object is one record whose operation is its ``_operation`` field
    (default ``upsert``). Every accepted call is answered ``200`` with
    ``{"results": [{"index": i, "ok": true|false, "error": ...}]}``.

    Args:
        key_field: Field that identifies a record.
        secret: When set, requests must carry a valid ``X-Backhaul-Signature`` (else 401).
        token: When set, requests must carry ``Authorization: Bearer <token>`` (else 401).
        max_records: When set, a call with more records is refused whole with 413.
        path: URL path the receiver advertises in :attr:`url` (every path is accepted).
    """

    def __init__(
        self,
        *,
        key_field: str = "id",
        secret: str | None = None,
        token: str | None = None,
        max_records: int | None = None,
        path: str = "/hook",
    ) -> None:
        self.key_field = key_field
        self.secret = secret
        self.token = token
        self.max_records = max_records
        self.path = path if path.startswith("/") else f"/{path}"
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._records: dict[str, dict[str, Any]] = {}
        self._faults: deque[_Fault] = deque()
        self._rejects: dict[str, str] = {}
        self._released = threading.Event()
        self._server: LoopbackServer | None = None
        self._port: int | None = None  # kept after stop() for messages that name it
        self.app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._handle,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                )
            ]
        )

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the receiver is not started; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The webhook URL to configure in a destination file."""
        return f"{self.base_url}{self.path}"

    @property
    def _stopping(self) -> threading.Event:
        return self._server.stopping if self._server is not None else threading.Event()

    def start(self, timeout: float = 10.0) -> WebhookReceiver:
        """Serve in a background thread; returns once the server accepts connections."""
        if self._server is not None:
            raise RuntimeError("the receiver is already running")
        server = LoopbackServer(self.app, name="webhook-receiver")
        server.start(timeout)
        self._server = server
        self._port = server.port
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end; safe to call twice."""
        if self._server is not None:
            self._server.stop(timeout)  # also ends injected delays at once
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what was received -------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received so far, in arrival order (faulted ones included)."""
        with self._lock:
            return list(self._requests)

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """A copy of the current state of the records, by key."""
        with self._lock:
            return copy.deepcopy(self._records)

    def reset(self) -> None:
        """Forget requests, records, pending faults and rejections."""
        with self._lock:
            self._requests.clear()
            self._records.clear()
            self._faults.clear()
            self._rejects.clear()

    # -- fault switches ----------------------------------------------------------------

    def clear_faults(self) -> None:
        """Drop pending faults and record rejections; keep requests and records."""
        with self._lock:
            self._faults.clear()
            self._rejects.clear()

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` and a JSON error, applying nothing."""
        self._add(n, _Fault("fail", status=status))

    def rate_limit_next(self, n: int = 1, retry_after: float = 1) -> None:
        """Answer the next ``n`` requests with 429 and ``Retry-After: retry_after``."""
        self._add(n, _Fault("rate_limit", status=429, seconds=retry_after))

    def delay_next(self, n: int, seconds: float) -> None:
        """Hold the next ``n`` requests ``seconds`` before handling them (to cause timeouts).

        A held request whose client has gone away by then is not applied.
        """
        self._add(n, _Fault("delay", seconds=seconds))

    def hold_next(self, n: int = 1) -> None:
        """Keep the next ``n`` requests waiting (already in :attr:`requests`) until
        :meth:`release`; then they are handled as usual. Lets a test act mid-request."""
        self._released.clear()
        self._add(n, _Fault("hold"))

    def release(self) -> None:
        """Let held requests (and those held later, until the next :meth:`hold_next`) go on."""
        self._released.set()

    def drop_next(self, n: int = 1) -> None:
        """Close the connection of the next ``n`` requests without answering."""
        self._add(n, _Fault("drop"))

    def reject_keys(self, errors: Mapping[str, str]) -> None:
        """Refuse records with these keys (answered 200 with a per-record error each)."""
        with self._lock:
            self._rejects.update({str(k): v for k, v in errors.items()})

    def _add(self, n: int, fault: _Fault) -> None:
        if n < 0:
            raise ValueError("n must not be negative")
        with self._lock:
            self._faults.extend([fault] * n)

    # -- the app -----------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        try:
            parsed: Any = strict_json(body) if body else None
        except ValueError:
            parsed = None
        received = ReceivedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=parsed,
        )
        with self._lock:
            self._requests.append(received)
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            early = await self._inject(fault, request)
            if early is not None:
                return early
        refusal = self._authorize(received)
        if refusal is not None:
            return refusal
        if request.method == "GET":
            return JSONResponse({"ok": True})
        if parsed is None:
            return JSONResponse(
                {"error": "the body is not JSON (bare NaN and Infinity are not JSON either)"},
                status_code=400,
            )
        return self._apply_body(parsed)

    async def _inject(self, fault: _Fault, request: Request) -> Response | None:
        if fault.kind == "fail":
            return JSONResponse(
                {"error": f"injected failure {fault.status}"}, status_code=fault.status
            )
        if fault.kind == "rate_limit":
            return JSONResponse(
                {"error": "too many requests"},
                status_code=429,
                headers={"Retry-After": f"{fault.seconds:g}"},
            )
        if fault.kind == "drop":
            self._abort(request)
            for _ in range(20):  # let the loop run connection_lost before we answer
                await asyncio.sleep(0)
            return Response(status_code=204)
        # delay or hold: wait in short steps so stop() and a gone client end it early
        deadline = time.monotonic() + fault.seconds
        while not self._stopping.is_set():
            if fault.kind == "hold":
                if self._released.is_set():
                    break
                step = 0.02
            else:
                step = min(0.02, deadline - time.monotonic())
                if step <= 0:
                    break
            await asyncio.sleep(step)
            if await request.is_disconnected():
                return Response(status_code=204)
        if self._stopping.is_set():
            return JSONResponse({"error": "shutting down"}, status_code=503)
        return None

    def _abort(self, request: Request) -> None:
        """Close the TCP connection that carried ``request`` without answering."""
        if self._server is not None:
            self._server.abort(request)

    def _authorize(self, received: ReceivedRequest) -> Response | None:
        if self.token is not None:
            expected = f"Bearer {self.token}"
            given = received.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return JSONResponse({"error": "invalid or missing token"}, status_code=401)
        if self.secret is not None:
            given = received.headers.get(SIGNATURE_HEADER, "")
            expected = sign(self.secret, received.body)
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return JSONResponse({"error": "invalid signature"}, status_code=401)
        return None

    def _apply_body(self, body: Any) -> Response:
        if isinstance(body, dict) and isinstance(body.get("records"), list):
            operation = body.get("operation", "upsert")
            items: list[Any] = body["records"]
            pairs = [(operation, item) for item in items]
        elif isinstance(body, dict):
            record = dict(body)
            pairs = [(record.pop("_operation", "upsert"), record)]
        else:
            return JSONResponse(
                {"error": "expected a record object or {operation, records}"}, status_code=400
            )
        for operation, _ in pairs:
            if operation not in OPERATIONS:
                return JSONResponse({"error": f"unknown operation {operation!r}"}, status_code=400)
        if self.max_records is not None and len(pairs) > self.max_records:
            return JSONResponse(
                {"error": f"too many records: {len(pairs)} > {self.max_records}"},
                status_code=413,
            )
        results = []
        with self._lock:
            for index, (operation, record) in enumerate(pairs):
                error = self._apply(operation, record)
                entry: dict[str, Any] = {"index": index, "ok": error is None}
                if error is not None:
                    entry["error"] = error
                results.append(entry)
        return JSONResponse({"results": results})

    def _apply(self, operation: str, record: Any) -> str | None:
        """Apply one record to the state (lock held); return an error text or None."""
        if not isinstance(record, dict):
            return "a record must be a JSON object"
        key_value = _lookup(record, self.key_field)
        if key_value is None:
            return f"missing key field `{self.key_field}`"
        key = str(key_value)
        if key in self._rejects:
            return self._rejects[key]
        current = self._records.get(key)
        if operation == "upsert":
            self._records[key] = {**(current or {}), **copy.deepcopy(record)}
        elif operation == "insert":
            if current is None:
                self._records[key] = copy.deepcopy(record)
        elif operation == "update":
            if current is None:
                return f"no record with {self.key_field} {key!r} to update"
            current.update(copy.deepcopy(record))
        elif operation == "delete":
            self._records.pop(key, None)
        elif operation == "clear" and current is not None:
            top = self.key_field.split(".")[0]
            fields = [f for f in record if f != top] or [f for f in current if f != top]
            for name in fields:
                current[name] = None
        return None


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
