"""A PagerDuty Events API v2 emulator: ``POST /v2/enqueue`` with PagerDuty's dedup rules.

What it keeps, as PagerDuty does:

* no authentication header: the 32-character integration key travels in the body as
  ``routing_key``; a key of another length is ``400 invalid event``;
* ``trigger`` needs ``payload.summary`` (≤ 1024 characters), ``payload.source`` and
  ``payload.severity`` (critical, error, warning, info); ``acknowledge`` and ``resolve``
  need only ``routing_key``, ``dedup_key`` and ``event_action``; ``dedup_key`` ≤ 255;
* every accepted event is answered ``202`` with ``{"status": "success", "message":
  "Event processed", "dedup_key": ...}``; a trigger without ``dedup_key`` gets a new one;
* a trigger with the ``dedup_key`` of an open alert joins it; after a resolve the same key
  opens a **new** alert; acknowledge and resolve of no open alert are dropped (still 202);
* bodies over 512 KB are refused; about 120 events a minute per integration key, beyond
  which the answer is ``429``.

Alerts are kept per integration key with their events, for tests to inspect.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import InitVar
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._http import KB
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow

DEFAULT_ROUTING_KEY = "R0UT1NGKEY0EMULATOR0000000000000"  # 32 characters
SEVERITIES = frozenset({"critical", "error", "warning", "info"})
ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})


@dataclass
class PagerDutyAlert:
    """One alert: opened by a trigger, closed by a resolve."""

    routing_key: str
    dedup_key: str
    status: str  # "triggered" | "acknowledged" | "resolved"
    summary: str
    severity: str
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(eq=False, repr=False, kw_only=True)
class PagerDutyEmulator(Emulator):
    """PagerDuty's Events API v2 in memory.

    Args:
        routing_keys: Integration keys that exist; ``None`` accepts any well-formed key.
        events_per_minute: Events accepted per integration key in a sliding minute.
        max_body_bytes: Largest body accepted (PagerDuty: 512 KB).
        seed: Seed of the fault switches.
    """

    vendor = "pagerduty"

    routing_keys: set[str] | None = None
    events_per_minute: int = 120
    max_body_bytes: int = 512 * KB
    seed: InitVar[int] = 0

    def __post_init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self.alerts: list[PagerDutyAlert] = []
        self._windows: dict[str, SlidingWindow] = {}

    # -- inspection -------------------------------------------------------------------

    def open_alerts(self, routing_key: str | None = None) -> list[PagerDutyAlert]:
        """Alerts not resolved, oldest first."""
        with self.lock:
            return [
                a
                for a in self.alerts
                if a.status != "resolved" and routing_key in (None, a.routing_key)
            ]

    def alerts_for(self, dedup_key: str) -> list[PagerDutyAlert]:
        """Every alert (open or resolved) ever opened with ``dedup_key``, oldest first."""
        with self.lock:
            return [a for a in self.alerts if a.dedup_key == dedup_key]

    # -- Emulator hooks -----------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [Route("/v2/enqueue", self._enqueue, methods=["POST"])]

    def vendor_error(self, status: int, message: str) -> Response:
        return JSONResponse({"status": "error", "message": message}, status_code=status)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        # PagerDuty answers 429 without a Retry-After; clients wait and try again.
        return JSONResponse(
            {"status": "throttle event", "message": "Request Limit Exceeded"}, status_code=429
        )

    def vendor_state(self) -> dict[str, Any]:
        return {"alerts": [asdict(a) for a in self.alerts]}

    def vendor_reset(self) -> None:
        self.alerts.clear()
        self._windows.clear()

    def credentials(self) -> dict[str, str]:
        return {"PAGERDUTY_ROUTING_KEY": DEFAULT_ROUTING_KEY}

    # -- the endpoint -------------------------------------------------------------------

    async def _enqueue(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > self.max_body_bytes:
            return _invalid(
                f"Event object is too large (limit {self.max_body_bytes} bytes)", status=413
            )
        try:
            event = json.loads(raw)
        except ValueError:
            return _invalid("Could not parse the body as JSON")
        if not isinstance(event, dict):
            return _invalid("Event object must be a JSON object")
        problems = self._problems(event)
        if problems:
            return _invalid(*problems)
        key = str(event["routing_key"])
        with self.lock:
            window = self._windows.setdefault(key, SlidingWindow(self.events_per_minute, 60.0))
        allowed, _, wait = window.hit()
        if not allowed:
            return self.vendor_rate_limited(wait)
        dedup = str(event.get("dedup_key") or uuid.uuid4().hex)
        with self.lock:
            self._apply(key, dedup, event)
        return JSONResponse(
            {"status": "success", "message": "Event processed", "dedup_key": dedup},
            status_code=202,
        )

    def _problems(self, event: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        key = event.get("routing_key")
        if not isinstance(key, str) or len(key) != 32:
            problems.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        elif self.routing_keys is not None and key not in self.routing_keys:
            problems.append("Invalid routing key")
        action = event.get("event_action")
        if action not in ACTIONS:
            problems.append("'event_action' is invalid (must be trigger, acknowledge or resolve)")
        dedup = event.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
            problems.append("'dedup_key' must be a string of at most 255 characters")
        if action in ("acknowledge", "resolve") and not dedup:
            problems.append(f"'dedup_key' is required for {action}")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                return [*problems, "'payload' is missing or not an object"]
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary:
                problems.append("'payload.summary' is missing")
            elif len(summary) > 1024:
                problems.append("'payload.summary' is longer than 1024 characters")
            if not isinstance(payload.get("source"), str) or not payload.get("source"):
                problems.append("'payload.source' is missing")
            if payload.get("severity") not in SEVERITIES:
                problems.append("'payload.severity' must be critical, error, warning or info")
        return problems

    def _apply(self, key: str, dedup: str, event: dict[str, Any]) -> None:
        action = event["event_action"]
        current = next(
            (
                a
                for a in reversed(self.alerts)
                if a.routing_key == key and a.dedup_key == dedup and a.status != "resolved"
            ),
            None,
        )
        if action == "trigger":
            payload = event["payload"]
            if current is None:
                current = PagerDutyAlert(
                    key, dedup, "triggered", payload["summary"], payload["severity"]
                )
                self.alerts.append(current)
            current.events.append(event)
            return
        if current is None:
            return  # nothing open under this key: PagerDuty drops the event
        current.events.append(event)
        current.status = "acknowledged" if action == "acknowledge" else "resolved"


def _invalid(*errors: str, status: int = 400) -> Response:
    return JSONResponse(
        {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)},
        status_code=status,
    )
