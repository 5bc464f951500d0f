"""A real webhook receiver on loopback, with fault switches, for tests and ``backhaul demo``.

:class:`WebhookReceiver` is an emulator (:class:`~backhaul.testing.emulators.base.Emulator`)
of a generic webhook endpoint: it keeps the current state of the records it was sent
(applying each record's operation) and checks the HMAC signature and a bearer token when
configured. Serving, the call log (``receiver.calls``), the fault switches
(``receiver.faults``: fail, rate-limit, delay, hold or drop the next requests, refuse
chosen records) and the ``/_emulator`` control API come from the emulator base.

Example:
    >>> with WebhookReceiver(key_field="id", secret="s3cret") as hook:  # doctest: +SKIP
    ...     run_a_sync(url=hook.url)
    ...     assert hook.records["42"]["email"] == "ada@example.com"
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._http import strict_json
from backhaul.testing.emulators.base import Emulator

SIGNATURE_HEADER = "x-backhaul-signature"
OPERATIONS = ("upsert", "insert", "update", "delete", "clear")


def sign(secret: str, body: bytes) -> str:
    """The ``X-Backhaul-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookReceiver(Emulator):
    """An HTTP endpoint on loopback that keeps the state of the records it is sent.

    It parses bodies strictly, like most receivers: a body holding a bare ``NaN`` or
    ``Infinity`` is answered 400 and changes nothing.

    Records are kept in :attr:`records` keyed by ``str(record[key_field])`` (a dotted
    ``key_field`` reads a nested value). A body ``{"operation": ..., "records": [...]}`` is a
    batch; any other JSON object is one record whose operation is its ``_operation`` field
    (default ``upsert``). Every accepted call is answered ``200`` with
    ``{"results": [{"index": i, "ok": true|false, "error": ...}]}``; a ``GET`` with
    ``{"ok": true}``. A key given to ``faults.reject`` is refused with its error.

    Args:
        key_field: Field that identifies a record.
        secret: When set, requests must carry a valid ``X-Backhaul-Signature`` (else 401).
        token: When set, requests must carry ``Authorization: Bearer <token>`` (else 401).
        max_records: When set, a call with more records is refused whole with 413.
        path: URL path the receiver advertises in :attr:`url` (every path is accepted).
    """

    vendor = "webhook"

    def __init__(
        self,
        *,
        key_field: str = "id",
        secret: str | None = None,
        token: str | None = None,
        max_records: int | None = None,
        path: str = "/hook",
    ) -> None:
        super().__init__()
        self.key_field = key_field
        self.secret = secret
        self.token = token
        self.max_records = max_records
        self.path = path if path.startswith("/") else f"/{path}"
        self._records: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        """The webhook URL to configure in a destination file."""
        return f"{self.base_url}{self.path}"

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """A copy of the current state of the records, by key."""
        with self.lock:
            return copy.deepcopy(self._records)

    # -- the emulator's hooks ------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return [Route("/{path:path}", self._handle, methods=methods)]

    def vendor_rate_limited(self, retry_after: float) -> Response:
        return JSONResponse(
            {"error": "too many requests"},
            status_code=429,
            headers={"Retry-After": f"{retry_after:g}"},
        )

    def vendor_state(self) -> dict[str, Any]:
        return {"records": self._records}

    def vendor_reset(self) -> None:
        self._records.clear()

    async def before_request(self, request: Request) -> Response | None:
        if self.token is not None:
            expected = f"Bearer {self.token}"
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return JSONResponse({"error": "invalid or missing token"}, status_code=401)
        if self.secret is not None:
            given = request.headers.get(SIGNATURE_HEADER, "")
            expected = sign(self.secret, await request.body())
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return JSONResponse({"error": "invalid signature"}, status_code=401)
        return None

    # -- the route -----------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"ok": True})
        body = await request.body()
        try:
            parsed: Any = strict_json(body) if body else None
        except ValueError:
            parsed = None
        if parsed is None:
            return JSONResponse(
                {"error": "the body is not JSON (bare NaN and Infinity are not JSON either)"},
                status_code=400,
            )
        return self._apply_body(parsed)

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
        with self.lock:
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
        key_value = field_at(record, self.key_field)
        if key_value is None:
            return f"missing key field `{self.key_field}`"
        key = str(key_value)
        refused = self.faults.rejects.get(key)
        if refused is not None:
            return refused
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


def field_at(record: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` inside nested objects; ``None`` where a part is missing."""
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


__all__ = [
    "OPERATIONS",
    "SIGNATURE_HEADER",
    "WebhookReceiver",
    "field_at",
    "sign",
    "strict_json",
]
