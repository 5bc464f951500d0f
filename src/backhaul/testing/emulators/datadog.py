"""A Datadog emulator: events v1 and v2, and metric series v1 and v2, behind ``DD-API-KEY``.

What it keeps, as Datadog does:

* every submission needs ``DD-API-KEY`` (a wrong or missing key is ``403`` with
  ``{"errors": ["Forbidden"]}``);
* bodies over 512,000 bytes are ``413``; ``Content-Encoding: gzip`` or ``deflate`` bodies are
  inflated first and must stay under 5,242,880 bytes;
* ``POST /api/v2/series`` checks each series (``metric``, ``points`` with ``timestamp`` and
  ``value``, ``type`` 0-3) and answers ``202 {"errors": []}``, or ``400 {"errors": [...]}``;
  ``POST /api/v1/series`` takes ``points`` as ``[[ts, value]]`` and answers
  ``202 {"status": "ok"}``;
* ``POST /api/v1/events`` needs ``title`` and ``text`` (text kept to 4,000 characters) and
  answers ``202`` with the event and its id; ``POST /api/v2/events`` takes the JSON:API body
  (category ``alert`` with status ok, warn or error, or ``change``) and answers ``202``;
* events are limited per organisation per minute (250,000 by default, a knob); an event over
  it is ``429`` with ``X-RateLimit-*`` headers. Metric submission is not limited.
"""

from __future__ import annotations

import gzip
import itertools
import json
import zlib
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import FixedWindow

DEFAULT_API_KEY = "dd0emulator0api0key0000000000000"
MAX_BODY = 512_000
MAX_INFLATED = 5_242_880
TEXT_LIMIT = 4000
METRIC_TYPES = frozenset({0, 1, 2, 3})
V1_ALERT_TYPES = frozenset({"error", "warning", "info", "success", "user_update"})
V2_STATUSES = frozenset({"ok", "warn", "error"})


@dataclass(frozen=True)
class DatadogEvent:
    id: int
    api: str  # "v1" | "v2"
    title: str
    text: str
    tags: list[str]
    status: str  # v1 alert_type, or v2 attributes.status
    aggregation_key: str | None
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Point:
    metric: str
    timestamp: int
    value: float
    type: int
    tags: list[str]


class DatadogEmulator(Emulator):
    """Datadog's submission APIs in memory.

    Args:
        api_key: The API key accepted in ``DD-API-KEY``.
        events_per_minute: Events accepted per minute (Datadog: 250,000 per org).
        seed: Seed of the fault switches.
    """

    vendor = "datadog"

    def __init__(
        self, *, api_key: str = DEFAULT_API_KEY, events_per_minute: int = 250_000, seed: int = 0
    ) -> None:
        super().__init__(seed=seed)
        self.api_key = api_key
        self.events: list[DatadogEvent] = []
        self.points: list[Point] = []
        self._ids = itertools.count(1_000_000)
        self._events_window = FixedWindow(events_per_minute, 60.0)

    def series(self, metric: str) -> list[Point]:
        """Points received for ``metric``, oldest first."""
        with self.lock:
            return [p for p in self.points if p.metric == metric]

    # -- Emulator hooks -----------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        handlers = {
            "/api/v1/events": self._events_v1,
            "/api/v2/events": self._events_v2,
            "/api/v1/series": self._series_v1,
            "/api/v2/series": self._series_v2,
        }
        return [
            Route(path, self._with_body(handler), methods=["POST"])
            for path, handler in handlers.items()
        ]

    def vendor_error(self, status: int, message: str) -> Response:
        return JSONResponse({"errors": [message]}, status_code=status)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        return JSONResponse(
            {"errors": ["Too many requests"]},
            status_code=429,
            headers={
                "X-RateLimit-Limit": str(self._events_window.limit),
                "X-RateLimit-Period": "60",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(max(1, round(retry_after))),
                "X-RateLimit-Name": "events_submission",
            },
        )

    def vendor_state(self) -> dict[str, Any]:
        return {
            "events": [asdict(e) for e in self.events],
            "points": [asdict(p) for p in self.points],
        }

    def vendor_reset(self) -> None:
        self.events.clear()
        self.points.clear()

    def credentials(self) -> dict[str, str]:
        return {"DATADOG_API_KEY": self.api_key}

    async def before_request(self, request: Request) -> Response | None:
        if request.headers.get("dd-api-key") != self.api_key:
            return JSONResponse({"errors": ["Forbidden"]}, status_code=403)
        return None

    # -- routes -----------------------------------------------------------------------------

    def _with_body(
        self, handler: Callable[[Any], Response]
    ) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint answering ``handler``'s response to the request's body (see
        :meth:`_body`), or the body's refusal."""

        async def endpoint(request: Request) -> Response:
            body = await self._body(request)
            return body if isinstance(body, Response) else handler(body)

        return endpoint

    async def _body(self, request: Request) -> Any:
        """The JSON body, inflated; a Response when Datadog would refuse it."""
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return JSONResponse({"errors": ["Payload too large"]}, status_code=413)
        encoding = request.headers.get("content-encoding", "").lower()
        try:
            if encoding == "gzip":
                raw = gzip.decompress(raw)
            elif encoding == "deflate":
                raw = zlib.decompress(raw)
        except (OSError, zlib.error):
            return JSONResponse({"errors": ["Bad Request"]}, status_code=400)
        if len(raw) > MAX_INFLATED:
            return JSONResponse({"errors": ["Payload too large"]}, status_code=413)
        try:
            return json.loads(raw)
        except ValueError:
            return JSONResponse({"errors": ["Bad Request"]}, status_code=400)

    def _event_allowed(self) -> Response | None:
        allowed, _, wait = self._events_window.hit()
        return None if allowed else self.vendor_rate_limited(wait)

    def _keep_event(
        self, api: str, title: Any, text: Any, status: str, body: dict[str, Any], fields: Any
    ) -> DatadogEvent:
        """Store an accepted event under the next id; ``fields`` holds its tags and
        aggregation key (the body for v1, the attributes for v2)."""
        event = DatadogEvent(
            next(self._ids),
            api,
            str(title),
            str(text)[:TEXT_LIMIT],
            [str(t) for t in fields.get("tags") or []],
            status,
            fields.get("aggregation_key"),
            body,
        )
        with self.lock:
            self.events.append(event)
        return event

    def _events_v1(self, body: Any) -> Response:
        if not isinstance(body, dict) or not body.get("title") or "text" not in body:
            return JSONResponse({"errors": ["Event title and text are required"]}, 400)
        alert_type = body.get("alert_type", "info")
        if alert_type not in V1_ALERT_TYPES:
            return JSONResponse({"errors": [f"Invalid alert_type: {alert_type}"]}, 400)
        if (refused := self._event_allowed()) is not None:
            return refused
        event = self._keep_event("v1", body["title"], body["text"], str(alert_type), body, body)
        event_id = event.id
        return JSONResponse(
            {
                "status": "ok",
                "event": {
                    "id": event_id,
                    "id_str": str(event_id),
                    "title": event.title,
                    "text": event.text,
                    "tags": event.tags,
                    "url": f"https://app.datadoghq.com/event/event?id={event_id}",
                },
            },
            status_code=202,
        )

    def _events_v2(self, body: Any) -> Response:
        data = body.get("data") if isinstance(body, dict) else None
        attrs = data.get("attributes") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("type") != "event" or not isinstance(attrs, dict):
            return JSONResponse({"errors": ["data.type must be `event` with attributes"]}, 400)
        problems = []
        if not attrs.get("title"):
            problems.append("attributes.title is required")
        category = attrs.get("category")
        found = attrs.get("attributes")
        inner: dict[str, Any] = found if isinstance(found, dict) else {}
        if category == "alert":
            if inner.get("status") not in V2_STATUSES:
                problems.append("attributes.attributes.status must be ok, warn or error")
        elif category != "change":
            problems.append("attributes.category must be alert or change")
        if problems:
            return JSONResponse({"errors": problems}, 400)
        if (refused := self._event_allowed()) is not None:
            return refused
        status = str(inner.get("status") or category)
        message = attrs.get("message") or ""
        event_id = self._keep_event("v2", attrs["title"], message, status, body, attrs).id
        uid = f"AZ{event_id:020d}"
        return JSONResponse(
            {
                "data": {
                    "id": uid,
                    "type": "event",
                    "attributes": {"attributes": {"evt": {"id": str(event_id), "uid": uid}}},
                }
            },
            status_code=202,
        )

    def _series_v2(self, body: Any) -> Response:
        series = body.get("series") if isinstance(body, dict) else None
        if not isinstance(series, list) or not series:
            return JSONResponse({"errors": ["series is required"]}, 400)
        points: list[Point] = []
        for i, item in enumerate(series):
            if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
                return JSONResponse({"errors": [f"series[{i}].metric is required"]}, 400)
            kind = item.get("type", 0)
            if kind not in METRIC_TYPES:
                return JSONResponse({"errors": [f"series[{i}].type must be 0-3"]}, 400)
            raw = item.get("points")
            if not isinstance(raw, list) or not raw:
                return JSONResponse({"errors": [f"series[{i}].points is required"]}, 400)
            for point in raw:
                if not isinstance(point, dict) or not _number(point.get("value")):
                    return JSONResponse({"errors": [f"series[{i}] has a bad point"]}, 400)
                if not isinstance(point.get("timestamp"), int):
                    return JSONResponse({"errors": [f"series[{i}] has a bad timestamp"]}, 400)
                points.append(
                    Point(
                        item["metric"],
                        point["timestamp"],
                        float(point["value"]),
                        int(kind),
                        [str(t) for t in item.get("tags") or []],
                    )
                )
        with self.lock:
            self.points += points
        return JSONResponse({"errors": []}, status_code=202)

    def _series_v1(self, body: Any) -> Response:
        series = body.get("series") if isinstance(body, dict) else None
        if not isinstance(series, list) or not series:
            return JSONResponse({"errors": ["series is required"]}, 400)
        points: list[Point] = []
        kinds = {"count": 1, "rate": 2, "gauge": 3}
        for i, item in enumerate(series):
            if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
                return JSONResponse({"errors": [f"series[{i}].metric is required"]}, 400)
            for pair in item.get("points") or []:
                ok = isinstance(pair, list) and len(pair) == 2 and all(_number(v) for v in pair)
                if not ok:
                    return JSONResponse({"errors": [f"series[{i}] has a bad point"]}, 400)
                points.append(
                    Point(
                        item["metric"],
                        int(pair[0]),
                        float(pair[1]),
                        kinds.get(str(item.get("type", "gauge")), 3),
                        [str(t) for t in item.get("tags") or []],
                    )
                )
        with self.lock:
            self.points += points
        return JSONResponse({"status": "ok"}, status_code=202)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
