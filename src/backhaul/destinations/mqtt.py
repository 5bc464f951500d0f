"""MQTT destination: one QoS 1 or 2 message per changed row (or per batch) on a topic.

Uses the Eclipse Paho client with its network loop on its own thread; each publish is
settled on the run's event loop when the broker's PUBACK (QoS 1) or PUBCOMP (QoS 2)
arrives. A row is acknowledged only then, and only when an MQTT 5 broker's reason code is
a success. See docs/destinations/mqtt.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from typing import Any
from typing import ClassVar
from typing import Literal

from pydantic import Field
from pydantic import field_validator

from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.queues import QueueConfig
from backhaul.destinations.queues import QueueDestination
from backhaul.destinations.queues import QueueMessage
from backhaul.destinations.queues import Refused
from backhaul.destinations.queues import reason_of
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

try:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode
except ImportError as exc:  # an optional extra
    raise ImportError('the mqtt destination needs paho-mqtt: pip install "backhaul[mqtt]"') from exc


class MQTTConfig(QueueConfig):
    """``destinations/NAME.yml`` with ``type: mqtt``."""

    type: Literal["mqtt"]
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    tls: bool = Field(False, description="Connect with TLS (system CA certificates).")
    topic: str = Field(min_length=1, description="Topic every message is published on.")
    qos: Literal[1, 2] = Field(
        1, description="1: at least once (PUBACK); 2: exactly once to the broker (PUBCOMP)."
    )
    retain: bool = False
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT 5 carries the id in user properties and reports refusals."
    )
    username: str | None = None
    password: str | None = None
    client_id: str | None = Field(None, description="Default: backhaul-<random>.")
    keepalive_seconds: int = Field(60, ge=5, le=65535)

    @field_validator("topic")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if "+" in value or "#" in value or "\x00" in value:
            raise ValueError("must be a plain topic: wildcards (+, #) are for subscribers")
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


class _Connection:
    """One Paho client, its network thread, and the publishes awaiting their ack."""

    def __init__(self, config: MQTTConfig, loop: asyncio.AbstractEventLoop) -> None:
        v5 = config.protocol == "5"
        self.loop = loop
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id or f"backhaul-{uuid.uuid4().hex[:12]}",
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        )
        if config.username is not None:
            self.client.username_pw_set(config.username, config.password)
        if config.tls:
            self.client.tls_set()
        self.client.connect_timeout = config.connect_timeout_seconds
        self.client.max_inflight_messages_set(config.in_flight)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.connected: asyncio.Future[ReasonCode] = loop.create_future()
        self.lost: str | None = None
        # Acks can arrive before publish() returned the mid: keep them until it is known.
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[ReasonCode]] = {}
        self._early: dict[int, ReasonCode] = {}

    # Paho calls these on its network thread.
    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.loop.call_soon_threadsafe(_settle, self.connected, reason)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            future = self._pending.pop(mid, None)
            if future is None:
                self._early[mid] = reason
                return
        self.loop.call_soon_threadsafe(_settle, future, reason)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.lost = str(reason)
        with self._lock:
            waiting, self._pending = list(self._pending.values()), {}
        error = ConnectionError(f"disconnected: {reason}")
        for future in [self.connected, *waiting]:
            self.loop.call_soon_threadsafe(_fail, future, error)

    def ack_for(self, mid: int) -> asyncio.Future[ReasonCode]:
        future: asyncio.Future[ReasonCode] = self.loop.create_future()
        with self._lock:
            reason = self._early.pop(mid, None)
            if reason is None:
                self._pending[mid] = future
                if self.lost is not None:
                    future.set_exception(ConnectionError(f"disconnected: {self.lost}"))
                return future
        future.set_result(reason)
        return future

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.client.disconnect()
        self.client.loop_stop()


def _settle(future: asyncio.Future[ReasonCode], reason: ReasonCode) -> None:
    if not future.done():
        future.set_result(reason)


def _fail(future: asyncio.Future[ReasonCode], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # retrieved: nobody may be waiting for a connect that ended


class MQTTDestination(QueueDestination["_Connection"]):
    """Publishes with QoS 1 or 2 and waits for each ack; see :class:`MQTTConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = MQTTConfig
    config: MQTTConfig
    broker = "the MQTT broker"

    def __init__(self, config: MQTTConfig, context: DestinationContext) -> None:
        super().__init__(config, context, f"{config.host}:{config.port}", config.password)
        self._conn: _Connection | None = None

    async def _open(self) -> _Connection:
        if self._conn is not None and self._conn.lost is None:
            return self._conn
        await self.close()
        conn = _Connection(self.config, asyncio.get_running_loop())
        timeout = self.config.connect_timeout_seconds
        try:
            await asyncio.wait_for(
                asyncio.to_thread(
                    conn.client.connect,
                    self.config.host,
                    self.config.port,
                    self.config.keepalive_seconds,
                ),
                timeout,
            )
            conn.client.loop_start()
            reason = await asyncio.wait_for(conn.connected, timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            conn.stop()
            raise self.unreachable(
                exc,
                "check `host` and `port` in the destination file and that the broker is running",
                what="MQTT broker",
            ) from None
        if reason.is_failure:
            conn.stop()
            raise DestinationError(
                f"MQTT broker at {self.where} refused the connection ({reason}): check "
                "`username`, `password` and `client_id` in the destination file",
                failure=FailureType.CONFIG,
            )
        self._conn = conn
        return conn

    async def _publish(self, conn: _Connection, message: QueueMessage) -> None:
        props = None
        if self.config.protocol == "5":
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = "application/json"
            props.PayloadFormatIndicator = 1
            props.UserProperty = [
                ("message-id", message.id),
                ("sync", self.sync),
                ("op", message.change),
            ]
        info = conn.client.publish(
            self.config.topic,
            message.body,
            qos=self.config.qos,
            retain=self.config.retain,
            properties=props,
        )
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise DestinationError(
                f"MQTT broker at {self.where} lost the connection while publishing "
                f"({paho.error_string(info.rc)})",
                failure=FailureType.TRANSIENT,
            )
        try:
            reason = await asyncio.wait_for(
                conn.ack_for(info.mid), self.config.confirm_timeout_seconds
            )
        except (OSError, TimeoutError) as exc:
            raise DestinationError(
                f"MQTT broker at {self.where} did not ack a message "
                f"({reason_of(exc, self.redactor)})",
                failure=FailureType.TRANSIENT,
            ) from None
        if reason.is_failure:
            raise Refused(str(reason))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.stop)
