"""Customer.io destination: people identified and deleted through the Track API v2 batch.

Every batch goes to ``POST /api/v2/batch`` as entries ``{"type": "person", "identifiers":
{<match field>: value}, "action": "identify" | "delete", "attributes": {...}}``, packed into
requests under Customer.io's caps (a body under 500 KB, an entry of at most 32 KB). A 207
answer lists the refused entries by ``batch_index``; they are rejected under their own key
while the rest are acknowledged. A request refused whole (400) is bisected to find the
entries at fault.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Literal

import httpx
from pydantic import Field

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.http import HttpDestinationConfig
from backhaul.destinations.http import RateLimit
from backhaul.destinations.http import Refused
from backhaul.destinations.http.connector import send_packed
from backhaul.destinations.http.packing import Caps
from backhaul.destinations.http.packing import listed_size
from backhaul.destinations.identifiers import IdentifiedDestination
from backhaul.destinations.identifiers import identified
from backhaul.destinations.identifiers import refusal
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

IDENTIFIERS = ("id", "email", "cio_id")
REGIONS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
ENVELOPE = len(b'{"batch":[]}')
# Customer.io counts requests per second and its 429 carries no Retry-After: a refused
# call waits out the window before anything else is sent.
RATE_WINDOW_SECONDS = 1.0
Entry = tuple[int, dict[str, Any]]


class CustomerIoConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: customerio``."""

    type: Literal["customerio"]
    site_id: str = Field(min_length=1, description="Tracking site id (Basic auth user).")
    api_key: str = Field(min_length=1, description="Tracking API key (use ${env:NAME}).")
    region: Literal["us", "eu"] = Field(
        "us", description="Your workspace's data center: us (track.customer.io) or eu."
    )
    base_url: str | None = Field(None, description="Track API root; overrides `region`.")
    max_request_bytes: int = Field(
        500_000,
        ge=1024,
        description="A batch body stays under this many bytes (Customer.io: under 500 KB).",
    )
    max_entry_bytes: int = Field(
        32_000, ge=256, description="Largest entry of a batch (Customer.io: 32 KB)."
    )
    max_entries: int = Field(
        1000, ge=1, le=10_000, description="Entries per request at most (not a documented cap)."
    )
    rate_limit: RateLimit | None = Field(
        RateLimit(requests=100, per_seconds=1),
        description="Requests per window (Customer.io: 100/s in older pages, 1,000/s now).",
    )

    @property
    def root(self) -> str:
        return (self.base_url or REGIONS[self.region]).rstrip("/")


CAPABILITIES = Capabilities(
    operations=frozenset({Operation.UPSERT, Operation.DELETE}),
    max_batch_size=10_000,
    default_batch_size=1000,
    json_records=True,
)


class CustomerIoDestination(IdentifiedDestination):
    """Identifies and deletes Customer.io people; see :class:`CustomerIoConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = CustomerIoConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    vendor = "customerio"
    config: CustomerIoConfig
    identifiers = IDENTIFIERS
    identifier_problem = (
        "customerio identifies people by id, email or cio_id: map one of them and make it the "
        "sync's only match field"
    )
    objects = (None, "people")
    object_problem = "customerio writes people: set `object: people` or leave it out"

    def __init__(self, config: CustomerIoConfig, context: DestinationContext) -> None:
        token = base64.b64encode(f"{config.site_id}:{config.api_key}".encode()).decode("ascii")
        fix = "check `site_id` and `api_key` (a Track API key) and `region` in the destination file"
        super().__init__(
            config,
            context,
            config.api_key,
            token,
            headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
            hints={401: fix, 403: fix},
            pause_hint=_pause,
        )
        self.caps = Caps(
            items=config.max_entries,
            request_bytes=config.max_request_bytes - ENVELOPE - 1,
            item_bytes=config.max_entry_bytes,
        )

    async def probe(self) -> None:
        """An empty batch: a wrong key is answered 401 (raised), anything else proves it."""
        await self.client.request("POST", self._url(), json={"batch": []}, expected={200, 207, 400})

    def _url(self) -> str:
        return f"{self.config.root}/api/v2/batch"

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Send the batch as v2 entries, packed within the caps; results by position."""
        if batch.operation not in CAPABILITIES.operations:
            raise DestinationError(
                f"customerio cannot {batch.operation.value} people: use mode upsert or mirror "
                "(on_remove delete)",
                failure=FailureType.CONFIG,
            )
        [kind] = batch.match_fields[:1] or ["id"]
        missing = f"no {kind} value: customerio needs it to identify the person"
        results, found = identified(batch.flat_records(), kind, missing)
        entries: list[Entry] = []
        for i, record in found.items():
            value = record.pop(kind)
            entry: dict[str, Any] = {"type": "person", "identifiers": {kind: str(value)}}
            if batch.operation is Operation.DELETE:
                entry["action"] = "delete"
            else:
                skip = batch.skip_null_fields
                attributes = {k: v for k, v in record.items() if v is not None or k not in skip}
                entry.update(action="identify", attributes=attributes)
            entries.append((i, entry))
        results.update(
            await send_packed(
                self.gate, self.vendor, entries, self.caps, self._send, size=listed_size
            )
        )
        return [results[i] for i in sorted(results)]

    async def _send(self, chunk: Sequence[Entry]) -> dict[int, RecordResult] | Refused:
        body = {"batch": [entry for _, entry in chunk]}
        result = await self.client.request("POST", self._url(), json=body, expected={200, 207})
        call = result.call_id
        if not result.ok:
            return refusal(result)
        errors: dict[int, str] = {}
        found = result.json.get("errors") if isinstance(result.json, dict) else None
        for error in found or []:
            at = error.get("batch_index") if isinstance(error, dict) else None
            if isinstance(at, int) and 0 <= at < len(chunk):
                errors[at] = _describe(error)
        if result.status == 207 and not errors:
            # A partial answer that names no entry: nothing can be counted as delivered.
            return Refused(f"customerio answered 207 without errors: {result.text[:200]}", call)
        return {
            i: RecordResult.rejected(i, self.redactor.text(errors[n]) or "refused", call)
            if n in errors
            else RecordResult.ok(i, call)
            for n, (i, _) in enumerate(chunk)
        }


def _pause(response: httpx.Response) -> float | None:
    return RATE_WINDOW_SECONDS if response.status_code == 429 else None


def _describe(error: dict[str, Any]) -> str:
    """Customer.io's reason for a refused entry, on one line."""
    parts = [str(error.get(k)) for k in ("reason", "field") if error.get(k)]
    message = str(error.get("message") or "refused")
    return f"{' '.join(parts)}: {message}" if parts else message
