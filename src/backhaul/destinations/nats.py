"""NATS JetStream destination: one message per changed row (or per batch) on a subject
that a JetStream stream captures.

Each message carries its id in the ``Nats-Msg-Id`` header, so the stream itself drops a
repeat inside its duplicate window. A row is acknowledged only after the stream's publish
ack. See docs/destinations/nats.md.
"""

from __future__ import annotations

import contextlib
import math
from typing import ClassVar
from typing import Literal

from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

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
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.js import JetStreamContext
    from nats.js.api import StreamConfig
except ImportError as exc:  # an optional extra
    raise ImportError('the nats destination needs nats-py: pip install "backhaul[nats]"') from exc


class NATSConfig(QueueConfig):
    """``destinations/NAME.yml`` with ``type: nats``."""

    type: Literal["nats"]
    servers: str | list[str] = Field(
        "nats://127.0.0.1:4222", description="Server URL, or a list of them for a cluster."
    )
    subject: str = Field(min_length=1, description="Subject every message is published on.")
    stream: str | None = Field(
        None,
        description="The JetStream stream expected to capture `subject`; a message landing "
        "in another stream is refused.",
    )
    create_stream: bool = Field(
        False, description="Create `stream` (capturing `subject`) when it does not exist."
    )
    user: str | None = None
    password: str | None = None
    token: str | None = None

    @field_validator("subject")
    @classmethod
    def _plain_subject(cls, value: str) -> str:
        if any(c in value for c in " \t*>") or value.startswith(".") or value.endswith("."):
            raise ValueError("must be a plain subject: no spaces, wildcards or empty tokens")
        return value

    @model_validator(mode="after")
    def _stream_to_create(self) -> NATSConfig:
        if self.create_stream and not self.stream:
            raise ValueError("`create_stream` needs `stream`: the name of the stream to create")
        return self


class NATSDestination(QueueDestination["JetStreamContext"]):
    """Publishes to JetStream and waits for each publish ack; see :class:`NATSConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = NATSConfig
    config: NATSConfig
    broker = "NATS"

    def __init__(self, config: NATSConfig, context: DestinationContext) -> None:
        servers = config.servers
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        where = ", ".join(s.rpartition("@")[2] for s in self.servers)
        super().__init__(config, context, where, config.password, config.token)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    async def _open(self) -> JetStreamContext:
        if self._js is not None and self._nc is not None and self._nc.is_connected:
            return self._js
        await self.close()

        seen: list[Exception] = []

        async def remember(exc: Exception) -> None:
            """Keep the cause for the error message instead of logging it."""
            seen.append(exc)

        try:
            # One try per server: a refused connection is reported at once, not retried
            # for minutes (the engine retries failed batches itself).
            self._nc = await nats.connect(
                servers=self.servers,
                connect_timeout=math.ceil(self.config.connect_timeout_seconds),
                allow_reconnect=False,
                max_reconnect_attempts=1,
                user=self.config.user,
                password=self.config.password,
                token=self.config.token,
                error_cb=remember,
                name="backhaul",
            )
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            cause = seen[-1] if seen and isinstance(exc, nats.errors.NoServersError) else exc
            if isinstance(cause, nats.errors.AuthorizationError):
                raise DestinationError(
                    f"NATS at {self.where} refused the sign-in: check `user`, `password` or "
                    "`token` in the destination file",
                    failure=FailureType.CONFIG,
                ) from None
            raise self.unreachable(
                cause, "check `servers` in the destination file and that the server is running"
            ) from None
        self._js = self._nc.jetstream(timeout=self.config.confirm_timeout_seconds)
        return self._js

    async def _checked(self, js: JetStreamContext) -> None:
        """Make sure a stream captures the subject (creating it when configured)."""
        stream, subject = self.config.stream, self.config.subject
        try:
            if stream is None:
                await js.find_stream_name_by_subject(subject)
                return
            try:
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                if not self.config.create_stream:
                    raise
                await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
                return
            if not any(_covers(pattern, subject) for pattern in info.config.subjects or []):
                raise DestinationError(
                    f"JetStream stream `{stream}` does not capture subject `{subject}`: add "
                    "the subject to the stream, or fix `subject`/`stream` in the destination file",
                    failure=FailureType.CONFIG,
                )
        except nats.js.errors.NotFoundError:
            what = f"stream `{stream}`" if stream else f"stream capturing `{subject}`"
            raise DestinationError(
                f"NATS at {self.where} has no JetStream {what}: create it (or set "
                "`create_stream: true` with `stream`)",
                failure=FailureType.CONFIG,
            ) from None
        except nats.js.errors.ServiceUnavailableError:
            raise _no_jetstream(self.where) from None
        except nats.errors.NoRespondersError:
            raise _no_jetstream(self.where) from None
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise self.unreachable(exc, "check that it is running") from None

    async def _publish(self, js: JetStreamContext, message: QueueMessage) -> None:
        headers = {
            "Nats-Msg-Id": message.id,
            "Content-Type": "application/json",
            "Backhaul-Sync": self.sync,
            "Backhaul-Op": message.change,
        }
        try:
            await js.publish(
                self.config.subject,
                message.body,
                timeout=self.config.confirm_timeout_seconds,
                stream=self.config.stream,
                headers=headers,
            )
        except nats.js.errors.NoStreamResponseError:
            raise DestinationError(
                f"no JetStream stream captures subject `{self.config.subject}` on NATS at "
                f"{self.where}: create one, or set `create_stream: true` with `stream`",
                failure=FailureType.CONFIG,
            ) from None
        except nats.js.errors.APIError as exc:
            raise Refused(f"{exc.description or exc} (error {exc.err_code})") from None
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise DestinationError(
                f"NATS at {self.where} did not ack a message ({reason_of(exc, self.redactor)})",
                failure=FailureType.TRANSIENT,
            ) from None

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(OSError, TimeoutError, nats.errors.Error):
                await nc.close()


def _covers(pattern: str, subject: str) -> bool:
    """Whether a stream subject ``pattern`` (``*`` one token, ``>`` the rest) matches."""
    parts, tokens = pattern.split("."), subject.split(".")
    for i, part in enumerate(parts):
        if part == ">":
            return len(tokens) > i
        if i >= len(tokens) or (part != "*" and part != tokens[i]):
            return False
    return len(parts) == len(tokens)


def _no_jetstream(where: str) -> DestinationError:
    return DestinationError(
        f"NATS at {where} does not have JetStream enabled: start nats-server with `-js` (or "
        "`jetstream {}` in its config)",
        failure=FailureType.CONFIG,
    )
