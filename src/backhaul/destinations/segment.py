"""Segment destination: rows sent as identify (or track) calls through ``/v1/batch``.

The sync's match field is the message's ``userId`` (or ``anonymousId``); every other mapped
field becomes a trait (identify) or a property (track). Messages are packed into batches of
at most 500 KB with messages of at most 32 KB; a message that could never fit is rejected
under its key. Segment accepts a batch whole (200) or refuses it whole (400, a size or
JSON problem): a refused batch is bisected so that only the messages at fault are rejected.

Each message carries a ``messageId`` derived from the sync, the row's key and the content
sent, so a change sent again (a retried call, a run resumed after a failure) has the same
id and Segment keeps it once.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Literal

from pydantic import Field
from pydantic import model_validator

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.http import HttpDestinationConfig
from backhaul.destinations.http import RateLimit
from backhaul.destinations.http import Refused
from backhaul.destinations.http import dumps_json
from backhaul.destinations.http.connector import send_packed
from backhaul.destinations.http.packing import Caps
from backhaul.destinations.http.packing import listed_size
from backhaul.destinations.identifiers import IdentifiedDestination
from backhaul.destinations.identifiers import identified
from backhaul.destinations.identifiers import refusal
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

IDENTITIES = ("userId", "anonymousId")
REGIONS = {"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"}
Message = tuple[int, dict[str, Any]]


class SegmentConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: segment``."""

    type: Literal["segment"]
    write_key: str = Field(min_length=1, description="The source's write key (use ${env:NAME}).")
    region: Literal["us", "eu"] = Field(
        "us", description="Where the workspace lives: us (api.segment.io) or eu."
    )
    base_url: str | None = Field(None, description="Tracking API root; overrides `region`.")
    call: Literal["identify", "track"] = Field(
        "identify", description="identify: fields become traits; track: an event per change."
    )
    event: str | None = Field(
        None, min_length=1, description="The event name of `call: track` (required there)."
    )
    integrations: dict[str, Any] | None = Field(
        None, description="Segment's `integrations` object, sent with every batch."
    )
    max_request_bytes: int = Field(
        500_000, ge=1024, description="Largest batch body (Segment: 500 KB)."
    )
    max_message_bytes: int = Field(
        32_000, ge=256, description="Largest message of a batch (Segment: 32 KB)."
    )
    max_messages: int = Field(500, ge=1, le=2500, description="Messages per batch at most.")
    rate_limit: RateLimit | None = Field(
        RateLimit(requests=1000, per_seconds=1),
        description="Requests per window (Segment recommends at most 1,000/s per workspace).",
    )

    @model_validator(mode="after")
    def _event_for_track(self) -> SegmentConfig:
        if self.call == "track" and not self.event:
            raise ValueError("`call` track needs `event`: the name of the event sent per change")
        if self.call == "identify" and self.event:
            raise ValueError("`event` names track events: set `call: track` or remove `event`")
        return self

    @property
    def root(self) -> str:
        return (self.base_url or REGIONS[self.region]).rstrip("/")


CAPABILITIES = Capabilities(
    operations=frozenset({Operation.UPSERT}),
    max_batch_size=10_000,
    default_batch_size=500,
    json_records=True,
)


class SegmentDestination(IdentifiedDestination):
    """Sends rows to a Segment source; see :class:`SegmentConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = SegmentConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    vendor = "segment"
    config: SegmentConfig
    identifiers = IDENTITIES
    identifier_problem = (
        "segment messages are identified by userId or anonymousId: map the user's id to "
        "one of them and make it the sync's only match field"
    )
    object_problem = "segment has no objects: remove `object` from the sync"

    def __init__(self, config: SegmentConfig, context: DestinationContext) -> None:
        # Basic auth with the write key as user and no password keeps the key out of bodies.
        token = base64.b64encode(f"{config.write_key}:".encode()).decode("ascii")
        super().__init__(
            config,
            context,
            config.write_key,
            token,
            headers={"Authorization": f"Basic {token}"},
        )
        self.sync = context.sync_name
        self.envelope = len(dumps_json(self._body([])))
        self.caps = Caps(
            items=config.max_messages,
            request_bytes=config.max_request_bytes - self.envelope - 1,
            item_bytes=config.max_message_bytes,
        )

    async def probe(self) -> None:
        """Nothing to call: Segment answers 200 to any write key and drops the messages of a
        wrong one, so only the URL is checked."""

    def _body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {"batch": messages}
        if self.config.integrations:
            body["integrations"] = self.config.integrations
        return body

    def message(self, key: str, identity: str, record: dict[str, Any]) -> dict[str, Any]:
        """The Segment message of one row: identity, traits or properties, a stable id."""
        user = record.pop(identity)
        config = self.config
        message: dict[str, Any] = {"type": config.call, identity: str(user)}
        if config.call == "track":
            message.update(event=config.event, properties=record)
        else:
            message["traits"] = record
        message["messageId"] = message_id(self.sync, key, message)
        return message

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Send the batch's rows as messages, packed within Segment's caps."""
        if batch.operation is not Operation.UPSERT:
            raise DestinationError(
                f"segment cannot {batch.operation.value} records: use mode upsert",
                failure=FailureType.CONFIG,
            )
        [identity] = batch.match_fields[:1] or ["userId"]
        missing = f"no {identity} value: segment needs it to tell whose message it is"
        results, found = identified(batch.records(), identity, missing)
        messages = [(i, self.message(batch.keys[i], identity, r)) for i, r in found.items()]
        results.update(
            await send_packed(
                self.gate, self.vendor, messages, self.caps, self._send, size=listed_size
            )
        )
        return [results[i] for i in sorted(results)]

    async def _send(self, chunk: Sequence[Message]) -> dict[int, RecordResult] | Refused:
        """Every message of an accepted batch delivered, or why the batch was refused."""
        body = self._body([message for _, message in chunk])
        result = await self.client.request("POST", f"{self.config.root}/v1/batch", json=body)
        if not result.ok:
            return refusal(result)
        return {i: RecordResult.ok(i, result.call_id) for i, _ in chunk}


def message_id(sync: str, key: str, message: dict[str, Any]) -> str:
    """The same id for the same change of the same row of the same sync."""
    content = json.dumps(message, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{sync}\x00{key}\x00{content}".encode()).hexdigest()
    return f"backhaul-{digest[:48]}"
