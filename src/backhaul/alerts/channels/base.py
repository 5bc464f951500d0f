"""What every alert channel shares: the messages it is given, its answer, its HTTP client.

A channel turns an :class:`Alert` (a rule raised or resolved, or a test) and, when it wants
them, a :class:`RunNotice` (a run started or ended) into its vendor's message. It returns a
:class:`Delivery` and never raises for a refused or failed send: alerting must not fail a run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any
from typing import ClassVar
from typing import Generic
from typing import Literal
from typing import Protocol
from typing import TypeVar

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from backhaul.calls import MemoryRecorder
from backhaul.destinations.http import HttpClient
from backhaul.destinations.http import RetryPolicy
from backhaul.errors import DestinationError
from backhaul.observe.redact import Redactor

AlertKind = Literal["raised", "resolved", "test"]
RunWhat = Literal["run.started", "run.succeeded", "run.failed"]
RULE_TITLES = {
    "failed": "run failed",
    "guarded": "a guard stopped the run",
    "rejected_rate": "rejected rows above the threshold",
    "volume_change": "row volume changed",
    "sla": "run slower than its SLA",
    "stale": "missed its schedule",
}
KEY_LIMIT = 100  # Datadog's aggregation_key; PagerDuty allows 255


class ChannelConfig(BaseModel):
    """Settings every channel file has."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    timeout_seconds: float = Field(10.0, gt=0, description="Seconds to wait for an answer.")
    retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(max_attempts=3, max_retry_after=60.0),
        description="Retries of transient failures (rate limits, 5xx, timeouts).",
    )

    @property
    def rate_limit(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Alert:
    """A rule of a sync entered (``raised``) or left (``resolved``) its alert state."""

    kind: AlertKind
    project: str
    sync: str
    rule: str
    message: str
    at: datetime
    run_id: str | None = None
    run_url: str | None = None

    @property
    def title(self) -> str:
        what = RULE_TITLES.get(self.rule, self.rule)
        if self.kind == "test":
            return f"test notification from Backhaul project {self.project}"
        return f"{self.sync}: {what}"

    @property
    def headline(self) -> str:
        """``ALERT``, ``RESOLVED`` or ``TEST`` followed by the title."""
        word = {"raised": "ALERT", "resolved": "RESOLVED", "test": "TEST"}[self.kind]
        return f"{word} {self.title}"

    @property
    def dedup_key(self) -> str:
        """Stable per project, sync and rule: the vendor groups raise and resolve by it."""
        key = f"backhaul/{self.project}/{self.sync}/{self.rule}"
        if len(key) <= KEY_LIMIT:
            return key
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        return f"{key[: KEY_LIMIT - 17]}~{digest}"


@dataclass(frozen=True, slots=True)
class RunNotice:
    """A run started or ended (lifecycle events and run metrics)."""

    what: RunWhat
    project: str
    sync: str
    run_id: str
    status: str
    at: datetime
    counts: Mapping[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    run_url: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one send: ``request`` is what went out, already redacted."""

    ok: bool
    status: int | None = None
    error: str | None = None
    request: str | None = None
    answer: Any = None  # the parsed JSON answer (not recorded)


class Channel(Protocol):
    """One configured channel (a file in ``channels/``)."""

    name: str

    async def alert(self, alert: Alert) -> Delivery | None:
        """Send an alert (or a test); ``None`` when the channel takes no such alert."""
        ...

    async def run_event(self, notice: RunNotice) -> Delivery | None:
        """Send a run's lifecycle event or metrics; ``None`` when the channel takes none."""
        ...


class HttpSender:
    """Posts JSON through the shared HTTP toolkit and reports each send as a Delivery."""

    def __init__(self, label: str, config: ChannelConfig, redactor: Redactor) -> None:
        self.label = label
        self.config = config
        self.redactor = redactor

    async def send(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Delivery:
        recorder = MemoryRecorder()
        client = HttpClient(
            label=self.label,
            recorder=recorder,
            redactor=self.redactor,
            retry=self.config.retry,
            timeout=self.config.timeout_seconds,
            concurrency=1,
        )
        async with client:
            try:
                result = await client.request(
                    method, url, json=json_body, content=content, headers=headers
                )
            except DestinationError as exc:
                return Delivery(False, exc.status, self._text(exc.message), _last(recorder))
        if not result.ok:
            return Delivery(False, result.status, self._text(result.error), _last(recorder))
        return Delivery(True, result.status, None, _last(recorder), result.json)

    def _text(self, value: str | None) -> str | None:
        return self.redactor.text(value)


ConfigT = TypeVar("ConfigT", bound=ChannelConfig)


class HttpChannel(Generic[ConfigT]):
    """A channel that posts through an :class:`HttpSender` labelled ``label``.

    The values :meth:`secrets` names are given to the redactor first, so no recorded or
    reported request shows them.
    """

    label: ClassVar[str]

    def __init__(self, name: str, config: ConfigT, redactor: Redactor) -> None:
        self.name = name
        self.config = config
        for secret in self.secrets():
            redactor.add(secret)
        self.sender = HttpSender(self.label, config, redactor)

    def secrets(self) -> Iterable[str]:
        """The values of ``config`` that must never be shown."""
        return ()


def _last(recorder: MemoryRecorder) -> str | None:
    """The last recorded attempt as text (the recorder's copy is already redacted)."""
    if not recorder.calls:
        return None
    call = recorder.calls[-1]
    lines = [f"{call.method} {call.url}"]
    lines += [f"{k}: {v}" for k, v in sorted(call.request_headers.items())]
    return "\n".join(lines) + "\n\n" + (call.request_body or "")


__all__ = [
    "RULE_TITLES",
    "Alert",
    "AlertKind",
    "Channel",
    "ChannelConfig",
    "Delivery",
    "HttpChannel",
    "HttpSender",
    "RunNotice",
    "RunWhat",
]
