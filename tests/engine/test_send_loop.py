"""The send loop when a connector fails in a way it did not foresee."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from backhaul import api
from backhaul.config.loader import load_project
from backhaul.destinations.base import Batch
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import RecordResult
from backhaul.destinations.webhook import WebhookConfig
from backhaul.destinations.webhook import WebhookDestination
from backhaul.plugins import BUILTIN_DESTINATIONS
from backhaul.plugins import Registry
from backhaul.testing.receiver import WebhookReceiver
from conftest import Builder


class Crashing(WebhookDestination):
    """The webhook connector with a bug: its second batch raises a plain error while the
    first is still being sent."""

    writing_at_close: ClassVar[list[int]] = []

    def __init__(self, config: WebhookConfig, context: DestinationContext) -> None:
        super().__init__(config, context)
        self.writing = 0

    async def write(self, batch: Batch) -> list[RecordResult]:
        self.writing += 1
        try:
            if batch.batch_id == 1:
                await asyncio.sleep(0.05)
                raise RuntimeError("a bug in the connector")
            await asyncio.sleep(0.5)  # batch 0: still on its way when batch 1 fails
            return list(await super().write(batch))
        finally:
            self.writing -= 1

    async def close(self) -> None:
        Crashing.writing_at_close.append(self.writing)
        await super().close()


def test_a_connector_bug_stops_every_batch_before_the_destination_closes(
    project: Builder, receiver: WebhookReceiver
) -> None:
    project.users(10)
    project.webhook_destination(receiver, batch_size=5, concurrency=2)
    project.sync("s", destination="hook", batch_size=5, concurrency=2)
    registry = Registry(destinations={**BUILTIN_DESTINATIONS, "webhook": f"{__name__}:Crashing"})
    loaded = load_project(project.root, registry=registry)
    Crashing.writing_at_close.clear()

    with pytest.raises(RuntimeError, match="a bug in the connector"):
        api.run(loaded, "s")

    # Batch 0 was cancelled and waited for: no batch can open a connection on a
    # destination that is closed (it would never be closed again).
    assert Crashing.writing_at_close == [0]
    assert receiver.calls == []
    assert project.plan("s").counts.added == 10  # nothing was checkpointed
    # The run is recorded as failed, saying why, not left `running`.
    with api.open_store(loaded) as store:
        [record] = store.runs("s")
    assert record.status.value == "failed"
    assert record.error is not None
    assert record.error.startswith(
        "the run stopped on an unexpected error (RuntimeError: a bug in the connector)"
    )
