"""The conformance suite against the webhook destination and the loopback receiver."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS, Target, run_all
from backhaul.testing.emulators.base import Call
from backhaul.testing.receiver import WebhookReceiver

pytestmark = pytest.mark.integration

TOKEN = "conformance-token-5b1f0c"
SIGNING = "conformance-signing-9e24d7"
ENV = {"CONF_HOOK_TOKEN": TOKEN, "CONF_HOOK_SIGNING": SIGNING}
RETRY = {"base_delay": 0.01, "max_delay": 0.05}


class CallLog:
    """ASGI middleware that notes when each request arrived and how it was answered.

    The receiver keeps requests without timestamps; the rate-limit check needs them.
    """

    def __init__(self, app: Any, calls: list[Call]) -> None:
        self.app = app
        self.calls = calls

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        at = time.time()
        status = {"code": 0}

        async def noting(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            self.calls.append(
                Call(scope["method"], scope["path"], "", {}, None, status["code"], at)
            )


class ReceiverFaults:
    """The emulators' fault-switch methods the checks use, mapped to the receiver's own."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        self.receiver.fail_next(n, status)

    def rate_limit_next(self, n: int = 1, retry_after: float = 1.0) -> None:
        self.receiver.rate_limit_next(n, retry_after)

    def drop_next(self, n: int = 1) -> None:
        self.receiver.drop_next(n)

    def reject(self, errors: dict[str, str]) -> None:
        self.receiver.reject_keys(errors)

    def clear(self) -> None:
        self.receiver.clear_faults()


def _hook(receiver: WebhookReceiver, token: str) -> dict[str, Any]:
    return {
        "type": "webhook",
        "url": receiver.url,
        "mode": "batch",
        "headers": {"Authorization": f"Bearer {token}"},
        "signing_secret": "${env:CONF_HOOK_SIGNING}",
        "retry": RETRY,
    }


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One receiver shared by every check (each check uses its own e-mail domain)."""
    receiver = WebhookReceiver(key_field="email", token=TOKEN, secret=SIGNING)
    calls: list[Call] = []
    receiver.app.add_middleware(CallLog, calls=calls)
    with receiver:
        yield Target(
            destination=_hook(receiver, "${env:CONF_HOOK_TOKEN}"),
            env=ENV,
            match_field="email",
            read=lambda: receiver.records,
            operations=frozenset(Operation),
            faults=ReceiverFaults(receiver),
            calls=lambda: list(calls),
            bad_destination=_hook(receiver, "not-the-token"),
            secrets=[TOKEN, SIGNING],
        )


@pytest.mark.parametrize("name", list(CHECKS))
def test_webhook_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"


def test_run_all_reports_every_check(target: Target, tmp_path: Path) -> None:
    """run_all reports each check by name; what the target cannot do is a passing skip."""
    upsert_only = dataclasses.replace(
        target,
        operations=frozenset({Operation.UPSERT}),
        faults=None,
        calls=None,
        bad_destination=None,
        secrets=[],
    )
    results = run_all(upsert_only, tmp_path)
    assert [r.name for r in results] == list(CHECKS)
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    outcome = {r.name: r.message for r in results}
    assert outcome.pop("upsert_idempotent") == "passed"
    assert all(m.startswith("skipped: ") for m in outcome.values()), outcome
