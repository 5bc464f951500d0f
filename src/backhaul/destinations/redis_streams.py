"""Redis Streams destination: one stream entry per changed row (or per batch).

Entries are appended with XADD in pipelines; a row is acknowledged only when Redis
answered its XADD with the new entry's id. See docs/destinations/redis-streams.md.
"""

from __future__ import annotations

from typing import ClassVar
from typing import Literal

from pydantic import Field
from pydantic import field_validator

from backhaul.destinations.base import Batch
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import RecordResult
from backhaul.destinations.queues import QueueConfig
from backhaul.destinations.queues import QueueDestination
from backhaul.destinations.queues import build_messages
from backhaul.destinations.queues import reason_of
from backhaul.destinations.queues import trim
from backhaul.destinations.queues import url_place
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

try:
    import redis.asyncio as aioredis
    import redis.exceptions
except ImportError as exc:  # an optional extra
    raise ImportError(
        'the redis_streams destination needs redis-py: pip install "backhaul[redis]"'
    ) from exc


class RedisStreamsConfig(QueueConfig):
    """``destinations/NAME.yml`` with ``type: redis_streams``."""

    type: Literal["redis_streams"]
    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis:// or rediss:// URL (user, password and database number).",
    )
    stream: str = Field(min_length=1, description="The stream key entries are added to.")
    maxlen: int | None = Field(
        None,
        ge=1,
        description="Trim the stream to about this many entries on each XADD (MAXLEN ~); "
        "unset: never trim.",
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://", "${")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class RedisStreamsDestination(QueueDestination["aioredis.Redis"]):
    """Appends entries with XADD; see :class:`RedisStreamsConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = RedisStreamsConfig
    config: RedisStreamsConfig
    broker = "Redis"

    def __init__(self, config: RedisStreamsConfig, context: DestinationContext) -> None:
        super().__init__(config, context, *url_place(config.url, 6379))
        self._client: aioredis.Redis | None = None

    async def _open(self) -> aioredis.Redis:
        return self._connection()

    def _connection(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.config.url,
                socket_connect_timeout=self.config.connect_timeout_seconds,
                socket_timeout=self.config.confirm_timeout_seconds,
            )
        return self._client

    def _failed(self, exc: BaseException) -> DestinationError:
        if isinstance(
            exc, redis.exceptions.AuthenticationError | redis.exceptions.NoPermissionError
        ):
            return DestinationError(
                f"Redis at {self.where} refused the sign-in or the command "
                f"({reason_of(exc, self.redactor)}): check the user and password in `url`",
                failure=FailureType.CONFIG,
            )
        return self.unreachable(
            exc, "check `url` in the destination file and that the server is running"
        )

    async def check(self) -> None:
        """Connect and make sure ``stream`` is a stream (or absent), then disconnect."""
        try:
            kind = await self._connection().type(self.config.stream)
        except (OSError, redis.exceptions.RedisError) as exc:
            raise self._failed(exc) from None
        finally:
            await self.close()
        name = kind.decode() if isinstance(kind, bytes) else str(kind)
        if name not in ("none", "stream"):
            raise DestinationError(
                f"Redis key `{self.config.stream}` holds a {name}, not a stream: use another "
                "`stream` in the destination file",
                failure=FailureType.CONFIG,
            )

    async def write(self, batch: Batch) -> list[RecordResult]:
        """XADD every message of ``batch``; acknowledge the rows Redis gave an entry id."""
        messages, results = build_messages(batch, self.sync, self.config.message_per)
        client = self._connection()
        step = self.config.in_flight
        for start in range(0, len(messages), step):
            part = messages[start : start + step]
            pipe = client.pipeline(transaction=False)
            for message in part:
                fields: dict[str | bytes, str | bytes] = {
                    "id": message.id,
                    "op": message.change,
                    "key": message.key,
                    "sync": self.sync,
                    "body": message.body,
                }
                pipe.xadd(
                    self.config.stream,
                    fields,  # type: ignore[arg-type]  # redis-py's field types are too narrow
                    maxlen=self.config.maxlen,
                    approximate=True,
                )
            try:
                answers = await pipe.execute(raise_on_error=False)
            except (OSError, redis.exceptions.RedisError) as exc:
                await self.close()  # a new connection on the engine's retry
                raise self._failed(exc) from None
            for message, answer in zip(part, answers, strict=True):
                if isinstance(answer, redis.exceptions.ConnectionError | OSError):
                    await self.close()
                    raise self._failed(answer)
                if isinstance(answer, BaseException):
                    error = f"Redis refused the entry: {trim(str(answer))}"
                    results.extend(RecordResult.rejected(i, error) for i in message.rows)
                else:
                    results.extend(RecordResult.ok(i) for i in message.rows)
        return results

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
