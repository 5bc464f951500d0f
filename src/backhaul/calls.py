"""The API-call recorder: every HTTP call a destination makes, for the debugger.

Connectors never write records themselves; the shared HTTP toolkit records each attempt
through a :class:`CallRecorder` it is given. Bodies are truncated and secrets redacted
before they reach the recorder's sink.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Protocol

BODY_LIMIT = 16 * 1024


@dataclass(slots=True)
class HttpCall:
    """One HTTP attempt as recorded (already redacted and truncated).

    ``wait_ms`` is how long the attempt was held back before it was sent (a rate-limit
    pause, the backoff before a retry, client-side throttling) and ``wait_reason`` why,
    when it waited.
    """

    method: str
    url: str
    status: int | None
    latency_ms: float
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: str | None = None
    response_body: str | None = None
    error: str | None = None
    attempt: int = 1
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    response_headers: dict[str, str] = field(default_factory=dict)
    wait_ms: float = 0.0
    wait_reason: str | None = None


def truncate(body: str | None, limit: int = BODY_LIMIT) -> str | None:
    if body is None or len(body) <= limit:
        return body
    return body[:limit] + f"... [{len(body) - limit} more characters]"


class CallRecorder(Protocol):
    """Where recorded calls go (the metadata store, a list in tests, nowhere)."""

    def record(self, call: HttpCall) -> None: ...


class MemoryRecorder:
    """Keeps calls in a list; used by tests and by ``plan``/``check`` outside a run."""

    def __init__(self) -> None:
        self.calls: list[HttpCall] = []

    def record(self, call: HttpCall) -> None:
        self.calls.append(call)


class NullRecorder:
    def record(self, call: HttpCall) -> None:
        return None
