"""The suite fails destinations that get the contract wrong.

Each broken destination below is the webhook connector with one deliberate bug, registered
under ``type: webhook`` in a registry of its own; the matching check must report it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Batch
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.http import RateLimiter
from backhaul.destinations.webhook import WebhookConfig
from backhaul.destinations.webhook import WebhookDestination
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.observe.redact import Redactor
from backhaul.plugins import BUILTIN_DESTINATIONS
from backhaul.plugins import Registry
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.conformance import run_check
from backhaul.testing.receiver import WebhookReceiver

SECRET = "leaky-secret-value-71c3"


class Forgetful(WebhookDestination):
    """Acknowledges every record but never sends one in four."""

    async def write(self, batch: Batch) -> list[RecordResult]:
        keep = [i for i in range(len(batch)) if i % 4 != 3]
        part = dataclasses.replace(
            batch,
            table=batch.table.take(keep),
            keys=[batch.keys[i] for i in keep],
        )
        await super().write(part)
        return [RecordResult.ok(i) for i in range(len(batch))]


class UpdateCreates(WebhookDestination):
    """Sends updates as upserts, so records that do not exist are created."""

    async def write(self, batch: Batch) -> list[RecordResult]:
        if batch.operation is Operation.UPDATE:
            batch = dataclasses.replace(batch, operation=Operation.UPSERT)
        return await super().write(batch)


class NoPause(RateLimiter):
    def penalize(self, seconds: float) -> None:
        """Ignore the destination's request to wait."""


class Impatient(WebhookDestination):
    """Sends again at once after a 429, whatever Retry-After says."""

    def __init__(self, config: WebhookConfig, context: DestinationContext) -> None:
        super().__init__(config, context)
        self.client.limiter = NoPause(None)


class Stubborn(WebhookDestination):
    """Retries refused credentials as if the failure were transient."""

    async def write(self, batch: Batch) -> list[RecordResult]:
        last: DestinationError | None = None
        for _ in range(6):
            try:
                return await super().write(batch)
            except DestinationError as exc:
                if exc.failure is not FailureType.CONFIG:
                    raise
                last = exc
        assert last is not None
        raise last


class Leaky(WebhookDestination):
    """Records calls without masking the secrets it was given."""

    def __init__(self, config: WebhookConfig, context: DestinationContext) -> None:
        super().__init__(config, context)
        self.client.redactor = Redactor()


def registry(cls: type[WebhookDestination]) -> Registry:
    return Registry(destinations={**BUILTIN_DESTINATIONS, "webhook": f"{__name__}:{cls.__name__}"})


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(key_field="email", token="right-token") as hook:
        yield hook


def target(hook: WebhookReceiver, cls: type[WebhookDestination]) -> Target:
    def destination(token: str) -> dict[str, Any]:
        return {
            "type": "webhook",
            "url": hook.url,
            "headers": {"Authorization": f"Bearer {token}", "X-Audit": "${env:LEAKY_SECRET}"},
            "retry": {"base_delay": 0.01, "max_delay": 0.05},
        }

    return Target(
        destination=destination("right-token"),
        env={"LEAKY_SECRET": SECRET},
        match_field="email",
        read=lambda: hook.records,
        operations=frozenset(Operation),
        faults=hook.faults,
        calls=lambda: list(hook.calls),
        bad_destination=destination("wrong-token"),
        secrets=[SECRET],
        registry=registry(cls),
    )


@pytest.mark.parametrize(
    ("cls", "check", "symptom"),
    [
        (Forgetful, "upsert_idempotent", "missing"),
        (Forgetful, "transient_retried", "missing"),
        (UpdateCreates, "update_semantics", "update run"),
        (Impatient, "rate_limit_respected", "came"),
        (Stubborn, "fatal_fails_fast", "recorded calls"),
        (Leaky, "no_secret_in_calls", "a secret value appears"),
    ],
)
def test_broken_destination_fails_its_check(
    receiver: WebhookReceiver,
    tmp_path: Path,
    cls: type[WebhookDestination],
    check: str,
    symptom: str,
) -> None:
    result = run_check(check, target(receiver, cls), tmp_path)
    assert result.name == check
    assert result.passed is False, result.message
    assert symptom in result.message, result.message


def test_the_honest_webhook_passes_the_same_checks(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    honest = target(receiver, WebhookDestination)
    for check in ("upsert_idempotent", "update_semantics", "fatal_fails_fast"):
        result = run_check(check, honest, tmp_path)
        assert result.passed and result.message == "passed", result


def test_env_is_restored_after_a_check(receiver: WebhookReceiver, tmp_path: Path) -> None:
    import os

    assert "LEAKY_SECRET" not in os.environ
    CHECKS["upsert_idempotent"](target(receiver, WebhookDestination), tmp_path)
    assert "LEAKY_SECRET" not in os.environ


def test_a_check_the_target_cannot_run_is_skipped_with_a_reason(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    bare = dataclasses.replace(
        target(receiver, WebhookDestination),
        faults=None,
        operations=frozenset({Operation.UPSERT}),
    )
    for check, reason in [
        ("transient_retried", "fault switches"),
        ("update_semantics", "does not support update"),
        ("removed_rows", "neither delete nor clear"),
    ]:
        result = run_check(check, bare, tmp_path)
        assert result.passed, result
        assert result.message.startswith("skipped: ") and reason in result.message, result
