"""RabbitMQ destination: one persistent message per changed row (or per batch).

Messages go to an exchange with ``mandatory`` set on a channel in publisher-confirm mode;
a row is acknowledged only when the broker confirmed its message (``basic.ack``). A
message the broker returns as unroutable or refuses (``basic.nack``) rejects its rows, so
they go again next run. See docs/destinations/rabbitmq.md.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar
from typing import Literal

from pydantic import Field
from pydantic import model_validator

from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.queues import QueueConfig
from backhaul.destinations.queues import QueueDestination
from backhaul.destinations.queues import QueueMessage
from backhaul.destinations.queues import Refused
from backhaul.destinations.queues import reason_of
from backhaul.destinations.queues import trim
from backhaul.destinations.queues import url_place
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

try:
    import aio_pika
    import aiormq.exceptions
except ImportError as exc:  # an optional extra
    raise ImportError(
        'the rabbitmq destination needs aio-pika: pip install "backhaul[rabbitmq]"'
    ) from exc


class RabbitMQConfig(QueueConfig):
    """``destinations/NAME.yml`` with ``type: rabbitmq``."""

    type: Literal["rabbitmq"]
    url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/",
        description="AMQP URL with user, password and virtual host (use ${env:...} for the password).",
    )
    exchange: str = Field("", description="Exchange to publish to; empty: the default exchange.")
    routing_key: str | None = Field(
        None, description="Routing key of every message; defaults to `queue`."
    )
    queue: str | None = Field(
        None,
        description="Declare this durable queue before the first message (and bind it to "
        "`exchange` with `routing_key` when an exchange is named).",
    )
    persistent: bool = Field(True, description="Mark messages persistent (delivery mode 2).")

    @model_validator(mode="after")
    def _routed(self) -> RabbitMQConfig:
        if not self.routing_key and not self.queue:
            raise ValueError("set `routing_key` or `queue`: messages need somewhere to go")
        if not self.url.startswith(("amqp://", "amqps://", "${")):
            raise ValueError("`url` must start with amqp:// or amqps://")
        return self


class RabbitMQDestination(QueueDestination["aio_pika.abc.AbstractExchange"]):
    """Publishes to RabbitMQ with publisher confirms; see :class:`RabbitMQConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = RabbitMQConfig
    config: RabbitMQConfig
    broker = "RabbitMQ"

    def __init__(self, config: RabbitMQConfig, context: DestinationContext) -> None:
        super().__init__(config, context, *url_place(config.url, 5672))
        self.delivery = (
            aio_pika.DeliveryMode.PERSISTENT
            if config.persistent
            else aio_pika.DeliveryMode.NOT_PERSISTENT
        )
        self.routing_key = config.routing_key or config.queue or ""
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def _connect(self) -> aio_pika.abc.AbstractConnection:
        try:
            return await aio_pika.connect(
                self.config.url, timeout=self.config.connect_timeout_seconds
            )
        except aiormq.exceptions.ProbableAuthenticationError as exc:
            raise DestinationError(
                f"RabbitMQ at {self.where} refused the sign-in: check the user and password "
                "in `url`",
                failure=FailureType.CONFIG,
                detail=self.redactor.text(repr(exc)),
            ) from None
        except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
            raise self.unreachable(
                exc, "check `url` in the destination file and that the broker is running"
            ) from None

    async def _open(self) -> aio_pika.abc.AbstractExchange:
        """Connect, open a confirming channel and find (or declare) where messages go."""
        if self._exchange is not None and self._channel and not self._channel.is_closed:
            return self._exchange
        await self.close()
        self._connection = await self._connect()
        try:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            if self.config.exchange:
                exchange = await channel.get_exchange(self.config.exchange, ensure=True)
            else:
                exchange = channel.default_exchange
            if self.config.queue:
                queue = await channel.declare_queue(self.config.queue, durable=True)
                if self.config.exchange:
                    await queue.bind(exchange, self.routing_key)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise DestinationError(
                f"RabbitMQ has no exchange `{self.config.exchange}`: declare it, or fix "
                "`exchange` in the destination file",
                failure=FailureType.CONFIG,
                detail=repr(exc),
            ) from None
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise DestinationError(
                f"RabbitMQ queue `{self.config.queue}` exists with other settings "
                f"({trim(str(exc))}): use another `queue` or declare it durable",
                failure=FailureType.CONFIG,
            ) from None
        except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
            raise self.unreachable(exc, "check that the broker is running") from None
        self._channel, self._exchange = channel, exchange
        return exchange

    async def _publish(
        self, exchange: aio_pika.abc.AbstractExchange, message: QueueMessage
    ) -> None:
        amqp = aio_pika.Message(
            message.body,
            message_id=message.id,
            content_type="application/json",
            delivery_mode=self.delivery,
            type=message.change,
            app_id="backhaul",
            headers={"backhaul-sync": self.sync},
        )
        try:
            await exchange.publish(
                amqp,
                self.routing_key,
                mandatory=True,
                timeout=self.config.confirm_timeout_seconds,
            )
        except aiormq.exceptions.PublishError as exc:
            raise Refused(
                f"unroutable ({_reply_text(exc)}): no queue is bound to "
                f"routing key `{self.routing_key}`"
            ) from None
        except aiormq.exceptions.DeliveryError as exc:
            raise Refused(f"nack ({_reply_text(exc)})") from None
        except (OSError, TimeoutError, aiormq.exceptions.AMQPError, RuntimeError) as exc:
            raise DestinationError(
                f"RabbitMQ at {self.where} lost the connection while publishing "
                f"({reason_of(exc, self.redactor)})",
                failure=FailureType.TRANSIENT,
            ) from None

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(OSError, aiormq.exceptions.AMQPError):  # already gone
                await connection.close()


def _reply_text(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    frame = getattr(message, "delivery", None) or getattr(exc, "frame", None)
    text = getattr(frame, "reply_text", None)
    return str(text or type(exc).__name__)
