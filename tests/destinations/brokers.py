"""The real brokers on this machine, seen by a test: a fresh queue/stream/topic, a consumer.

Each broker class makes a uniquely named place for messages, the destination config that
sends there, a consumer that reads back everything that arrived (with the id the broker
carried in its own metadata), and cleans up afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol

import aio_pika
import nats
import nats.errors
import nats.js.errors
import paho.mqtt.client as paho
import pytest
import redis
from nats.js.api import AckPolicy
from nats.js.api import ConsumerConfig
from nats.js.api import StreamConfig
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backhaul.destinations.queues import message_id

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"
REDIS_URL = "redis://127.0.0.1:6379/0"
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
# A port on loopback where nothing listens (the discard port).
DEAD_PORT = 9


@dataclass(frozen=True)
class Received:
    """One message as a consumer got it."""

    meta_id: str  # the id in the broker's own metadata (message_id, Nats-Msg-Id, ...)
    body: dict[str, Any]


class Broker(Protocol):
    name: str
    deduplicates: bool  # drops a repeated message id by itself (within a window)

    def destination(self) -> dict[str, Any]: ...

    def unreachable(self) -> dict[str, Any]: ...

    def start(self) -> None: ...

    def received(self, at_least: int = 0) -> list[Received]: ...

    def close(self) -> None: ...


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def check_id(sync: str, message: Received) -> None:
    """The body's id equals the broker's id and is the id of the content it carries."""
    body = message.body
    assert body["id"] == message.meta_id, (body["id"], message.meta_id)
    records = body.get("records", [body])
    for record in records:
        fields = json.dumps(
            record["fields"], separators=(",", ":"), ensure_ascii=False, sort_keys=True
        ).encode()
        assert record["id"] == message_id(sync, record["op"], record["key"], fields), record
    if "records" in body:
        joined = ",".join(r["id"] for r in records).encode()
        assert body["id"] == message_id(sync, "batch", "", joined)


# -- RabbitMQ --------------------------------------------------------------------------------


@dataclass
class Rabbit:
    name: str = "rabbitmq"
    deduplicates: bool = False
    queue: str = field(default_factory=lambda: unique("bh_test"))
    _got: list[Received] = field(default_factory=list)

    def destination(self) -> dict[str, Any]:
        return {"type": "rabbitmq", "url": RABBIT_URL, "queue": self.queue}

    def unreachable(self) -> dict[str, Any]:
        return {
            **self.destination(),
            "url": f"amqp://guest:guest@127.0.0.1:{DEAD_PORT}/",
            "connect_timeout_seconds": 2,
        }

    def start(self) -> None:
        """Nothing: the destination declares its queue."""

    def received(self, at_least: int = 0) -> list[Received]:
        """Every message since the start (consuming takes them off the queue: kept here)."""
        self._got.extend(asyncio.run(self._drain()))
        return list(self._got)

    async def _drain(self) -> list[Received]:
        out: list[Received] = []
        connection = await aio_pika.connect(RABBIT_URL)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=5000)
            queue = await channel.declare_queue(self.queue, durable=True)
            waiting = queue.declaration_result.message_count or 0
            if not waiting:
                return out
            async with queue.iterator(no_ack=True) as messages:
                async for message in messages:
                    out.append(Received(str(message.message_id), json.loads(message.body)))
                    if len(out) >= waiting:
                        break
        finally:
            await connection.close()
        return out

    def close(self) -> None:
        async def delete() -> None:
            connection = await aio_pika.connect(RABBIT_URL)
            try:
                channel = await connection.channel()
                await channel.queue_delete(self.queue)
            finally:
                await connection.close()

        asyncio.run(delete())


# -- NATS JetStream --------------------------------------------------------------------------


@dataclass
class Nats:
    name: str = "nats"
    deduplicates: bool = True
    stream: str = field(default_factory=lambda: unique("BH_TEST"))

    @property
    def subject(self) -> str:
        return f"{self.stream.lower()}.rows"

    def destination(self) -> dict[str, Any]:
        return {"type": "nats", "servers": NATS_URL, "subject": self.subject, "stream": self.stream}

    def unreachable(self) -> dict[str, Any]:
        return {
            **self.destination(),
            "servers": f"nats://127.0.0.1:{DEAD_PORT}",
            "connect_timeout_seconds": 2,
        }

    def start(self) -> None:
        async def create() -> bool:
            nc = await nats.connect(NATS_URL)
            try:
                await nc.jetstream().add_stream(
                    StreamConfig(name=self.stream, subjects=[self.subject])
                )
            except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError):
                return False
            finally:
                await nc.close()
            return True

        if not asyncio.run(create()):
            pytest.skip(
                "NATS at 127.0.0.1:4222 runs without JetStream (start nats-server with -js): "
                "the nats destination needs it"
            )

    def received(self, at_least: int = 0) -> list[Received]:
        return asyncio.run(self._drain())

    async def _drain(self) -> list[Received]:
        out: list[Received] = []
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            total = (await js.stream_info(self.stream)).state.messages
            sub = await js.pull_subscribe(
                self.subject,
                stream=self.stream,
                config=ConsumerConfig(ack_policy=AckPolicy.NONE),
            )
            while len(out) < total:
                for msg in await sub.fetch(min(1000, total - len(out)), timeout=10):
                    headers = msg.headers or {}
                    out.append(Received(headers.get("Nats-Msg-Id", ""), json.loads(msg.data)))
            await sub.unsubscribe()
        finally:
            await nc.close()
        return out

    def close(self) -> None:
        async def delete() -> None:
            nc = await nats.connect(NATS_URL)
            try:
                await nc.jetstream().delete_stream(self.stream)
            finally:
                await nc.close()

        asyncio.run(delete())


# -- Redis Streams ---------------------------------------------------------------------------


@dataclass
class RedisStream:
    name: str = "redis_streams"
    deduplicates: bool = False
    stream: str = field(default_factory=lambda: unique("bh_test"))

    def destination(self) -> dict[str, Any]:
        return {"type": "redis_streams", "url": REDIS_URL, "stream": self.stream}

    def unreachable(self) -> dict[str, Any]:
        return {
            **self.destination(),
            "url": f"redis://127.0.0.1:{DEAD_PORT}/0",
            "connect_timeout_seconds": 2,
        }

    def start(self) -> None:
        """Nothing: XADD creates the stream."""

    def received(self, at_least: int = 0) -> list[Received]:
        out: list[Received] = []
        client = redis.Redis.from_url(REDIS_URL)
        try:
            start = "-"
            while True:
                entries = client.xrange(self.stream, min=start, count=10_000)
                if not entries:
                    return out
                for _, data in entries:
                    out.append(Received(data[b"id"].decode(), json.loads(data[b"body"])))
                start = "(" + entries[-1][0].decode()
        finally:
            client.close()

    def close(self) -> None:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            client.delete(self.stream)
        finally:
            client.close()


# -- MQTT --------------------------------------------------------------------------------------


@dataclass
class Mqtt:
    """A subscriber connected for the whole test (MQTT brokers keep nothing for a topic
    nobody subscribes to), collecting on paho's network thread."""

    name: str = "mqtt"
    deduplicates: bool = False
    topic: str = field(default_factory=lambda: f"backhaul-test/{uuid.uuid4().hex[:10]}")
    port: int = MQTT_PORT
    _got: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: paho.Client | None = None

    def destination(self) -> dict[str, Any]:
        return {"type": "mqtt", "host": MQTT_HOST, "port": self.port, "topic": self.topic, "qos": 1}

    def unreachable(self) -> dict[str, Any]:
        return {**self.destination(), "port": DEAD_PORT, "connect_timeout_seconds": 2}

    def start(self) -> None:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=unique("bh-test-sub"),
            protocol=paho.MQTTv5,
        )
        subscribed = threading.Event()

        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            props = dict(getattr(msg.properties, "UserProperty", None) or [])
            item = Received(props.get("message-id", ""), json.loads(msg.payload))
            with self._lock:
                self._got.append(item)

        client.on_message = on_message
        client.on_subscribe = lambda *_a: subscribed.set()
        # Receive Maximum: let the broker keep many messages in flight to this subscriber
        # rather than queue (and past its queue limit, drop) them.
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = 65535
        client.connect(MQTT_HOST, self.port, properties=props)
        client.loop_start()
        client.subscribe(self.topic, qos=1)
        assert subscribed.wait(10), "the MQTT test subscriber could not subscribe"
        self._client = client

    def received(self, at_least: int = 0) -> list[Received]:
        """What arrived, once ``at_least`` distinct ids did and nothing more came for 1 s."""
        deadline = time.monotonic() + 120
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                got = list(self._got)
            distinct = len({r.meta_id for r in got})
            if len(got) != last:
                last, quiet_since = len(got), time.monotonic()
            elif distinct >= at_least and time.monotonic() - quiet_since > 1.0:
                return got
            time.sleep(0.1)
        return got

    def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()


BROKERS: dict[str, type[Broker]] = {
    "rabbitmq": Rabbit,
    "nats": Nats,
    "redis_streams": RedisStream,
    "mqtt": Mqtt,
}
