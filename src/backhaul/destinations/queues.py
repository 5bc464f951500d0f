"""What the message-queue destinations share: the message shape, ids and confirmed sends.

Every queue connector (RabbitMQ, NATS JetStream, Redis Streams, MQTT) sends the same JSON
messages, one per changed row or one per batch (see docs/destinations/rabbitmq.md and its
siblings). A message counts as delivered only once the broker confirmed it (publisher
confirm, publish ack, stream entry id, PUBACK); only those rows are acknowledged to the
engine, so the snapshot never advances past what the broker holds.

Message ids are derived from the sync, the change, the key and the record's content, so
the same change sent again after a crash carries the same id, and a consumer can drop the
repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar
from typing import Generic
from typing import Literal
from typing import TypeVar
from urllib.parse import urlsplit

import pyarrow as pa
from pydantic import Field

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.http import dumps_json
from backhaul.destinations.http.connector import redactor_for
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.floats import NonFiniteError
from backhaul.observe.redact import Redactor

Conn = TypeVar("Conn")

# The change a record carries, by what the planner decided for its row.
CHANGE_OF = {"add": "add", "change": "change", "retry": "change", "remove": "remove"}
ERROR_LIMIT = 300

CAPABILITIES = Capabilities(
    json_records=True,
    operations=frozenset(Operation),
    max_batch_size=10_000,
    default_batch_size=1_000,
    default_concurrency=2,
    needs_match_fields=False,
)


class QueueConfig(DestinationConfig):
    """Settings every queue destination has."""

    message_per: Literal["row", "batch"] = Field(
        "row",
        description="`row`: one message per changed row; `batch`: one message holding every "
        "record of a batch (each record keeps its own id).",
    )
    in_flight: int = Field(
        500, ge=1, le=10_000, description="Messages sent and not yet confirmed, at most."
    )
    connect_timeout_seconds: float = Field(10.0, gt=0, le=600)
    confirm_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long to wait for the broker to confirm a message."
    )


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One message ready to publish.

    Attributes:
        id: Stable id for de-duplication (32 hex digits).
        body: The JSON body.
        rows: Positions in the batch of the records it carries.
        change: ``add``, ``change`` or ``remove`` (``batch`` for a message per batch).
        key: The row's key as text (empty for a message per batch).
    """

    id: str
    body: bytes
    rows: tuple[int, ...]
    change: str
    key: str


class Refused(Exception):
    """The broker answered and refused one message; its rows are rejected, not retried now."""


def message_id(sync: str, change: str, key: str, fields_json: bytes) -> str:
    """The id of one change: SHA-256 over sync, change, key and the fields' sorted JSON."""
    digest = hashlib.sha256()
    for part in (sync.encode(), change.encode(), key.encode()):
        digest.update(part)
        digest.update(b"\x00")
    digest.update(fields_json)
    return digest.hexdigest()[:32]


def change_of(batch: Batch, index: int) -> str:
    """``add``, ``change`` or ``remove`` for the record at ``index``."""
    if index < len(batch.changes):
        return CHANGE_OF.get(batch.changes[index], "change")
    if batch.operation in (Operation.DELETE, Operation.CLEAR):
        return "remove"
    return "change"


def build_messages(
    batch: Batch, sync: str, per: Literal["row", "batch"]
) -> tuple[list[QueueMessage], list[RecordResult]]:
    """The messages for ``batch``, plus rejections of records that cannot be JSON.

    A row message is ``{"id", "sync", "op", "operation", "key", "fields"}``; a batch message
    is ``{"id", "sync", "operation", "records": [row messages without "sync"]}`` and its id
    is derived from the ids of its records.
    """
    rejected: list[RecordResult] = []
    parts: list[tuple[int, str, str, bytes]] = []  # index, change, id, record JSON
    operation = dumps_json(batch.operation.value)
    sync_json = dumps_json(sync)
    for index, (record, key) in enumerate(zip(batch.records(), batch.keys, strict=True)):
        change = change_of(batch, index)
        try:
            fields = dumps_json(record, sort_keys=True)
        except NonFiniteError as exc:
            error = f"not sent: {exc}; set `non_finite` on the sync to send such values"
            rejected.append(RecordResult.rejected(index, error))
            continue
        mid = message_id(sync, change, key, fields)
        head = b'{"id":"' + mid.encode() + b'",'
        tail = (
            b'"op":"'
            + change.encode()
            + b'","operation":'
            + operation
            + b',"key":'
            + dumps_json(key)
            + b',"fields":'
            + fields
            + b"}"
        )
        if per == "row":
            body = head + b'"sync":' + sync_json + b"," + tail
            parts.append((index, change, mid, body))
        else:
            parts.append((index, change, mid, head + tail))
    if per == "row":
        messages = [
            QueueMessage(mid, body, (index,), change, batch.keys[index])
            for index, change, mid, body in parts
        ]
        return messages, rejected
    if not parts:
        return [], rejected
    batch_id = message_id(sync, "batch", "", ",".join(p[2] for p in parts).encode())
    body = (
        b'{"id":"'
        + batch_id.encode()
        + b'","sync":'
        + sync_json
        + b',"operation":'
        + operation
        + b',"records":['
        + b",".join(p[3] for p in parts)
        + b"]}"
    )
    return [QueueMessage(batch_id, body, tuple(p[0] for p in parts), "batch", "")], rejected


async def publish_all(
    messages: Sequence[QueueMessage],
    publish: Callable[[QueueMessage], Awaitable[None]],
    *,
    in_flight: int,
    what: str,
) -> list[RecordResult]:
    """Publish every message, at most ``in_flight`` unconfirmed at once.

    ``publish`` returns once the broker confirmed the message; it raises :class:`Refused`
    when the broker refused it (its rows are rejected and go again next run) and
    :class:`~backhaul.errors.DestinationError` for anything else. Any such error fails the
    whole call after every message settled, so the engine retries the batch: confirmed
    messages are sent again with the same ids, which consumers drop.
    """
    gate = asyncio.Semaphore(in_flight)
    results: list[RecordResult] = []
    failures: list[DestinationError] = []

    async def one(message: QueueMessage) -> None:
        async with gate:
            if failures:
                return  # the connection is gone; the batch goes again as a whole
            try:
                await publish(message)
            except Refused as exc:
                error = f"{what} refused the message: {trim(str(exc))}"
                results.extend(RecordResult.rejected(i, error) for i in message.rows)
                return
            except DestinationError as exc:
                failures.append(exc)
                return
            results.extend(RecordResult.ok(i) for i in message.rows)

    await asyncio.gather(*(one(m) for m in messages))
    if failures:
        raise failures[0]
    return results


def trim(text: str) -> str:
    """One line of at most ``ERROR_LIMIT`` characters."""
    return " ".join(text.split())[:ERROR_LIMIT]


def reason_of(exc: BaseException, redactor: Redactor) -> str:
    """A short reason for a failed connection or call, secrets masked."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return trim(redactor.text(str(exc)) or "") or type(exc).__name__


def unreachable(what: str, where: str, reason: str, fix: str) -> DestinationError:
    """The one-line error for a broker that does not take the connection (``reason`` from
    :func:`reason_of`)."""
    return DestinationError(
        f"{what} at {where} is not reachable ({reason}): {fix}", failure=FailureType.TRANSIENT
    )


class QueueDestination(Generic[Conn]):
    """What the queue destinations share: the sync name, a redactor, the place named in
    errors, ``check``/``prepare`` by opening a connection, and ``write`` as one publish per
    message with at most ``in_flight`` waiting for the broker's confirmation.

    A broker's class sets ``broker`` (how errors name it) and implements ``_open`` (connect,
    or return the live connection), ``_publish`` (send one message and wait for its
    confirmation, raising :class:`Refused` or a :class:`DestinationError`) and ``close``.
    A broker that batches differently (Redis pipelines) overrides ``write``.
    """

    capabilities: ClassVar[Capabilities] = CAPABILITIES
    broker: ClassVar[str]
    config: QueueConfig  # each broker narrows it to its own config class

    def __init__(
        self, config: QueueConfig, context: DestinationContext, where: str, *secrets: str | None
    ) -> None:
        self.config = config
        self.sync = context.sync_name
        self.redactor = redactor_for(context, *secrets)
        self.where = where

    def unreachable(self, exc: BaseException, fix: str, what: str = "") -> DestinationError:
        """:func:`unreachable` for this broker (``what`` names it when ``broker`` does not
        read well before "at"), the reason taken from ``exc`` with secrets masked."""
        return unreachable(what or self.broker, self.where, reason_of(exc, self.redactor), fix)

    async def _open(self) -> Conn:
        raise NotImplementedError

    async def _publish(self, conn: Conn, message: QueueMessage) -> None:
        raise NotImplementedError

    async def _checked(self, conn: Conn) -> None:
        """What ``check`` and ``prepare`` verify once connected; nothing by default."""

    async def close(self) -> None:
        raise NotImplementedError

    async def check(self) -> None:
        """Connect and verify, then disconnect (a check may run in its own event loop)."""
        try:
            await self._checked(await self._open())
        finally:
            await self.close()

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Open the connection the writes use."""
        await self._checked(await self._open())

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Publish ``batch``; acknowledge the rows of the messages the broker confirmed."""
        config = self.config
        messages, rejected = build_messages(batch, self.sync, config.message_per)
        conn = await self._open()

        async def publish(message: QueueMessage) -> None:
            await self._publish(conn, message)

        try:
            sent = await publish_all(
                messages, publish, in_flight=config.in_flight, what=self.broker
            )
        except DestinationError:
            await self.close()  # reconnect on the engine's retry
            raise
        return rejected + sent


def url_place(url: str, default_port: int) -> tuple[str, str | None]:
    """``host:port`` of a broker URL for error messages, and the URL's password to redact."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or default_port}", parts.password


__all__ = [
    "CAPABILITIES",
    "QueueConfig",
    "QueueDestination",
    "QueueMessage",
    "Refused",
    "build_messages",
    "message_id",
    "publish_all",
    "reason_of",
    "unreachable",
    "url_place",
]
