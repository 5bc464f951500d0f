"""The conformance suite against the webhook destination and the loopback receiver."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.conformance import run_all
from backhaul.testing.receiver import WebhookReceiver

pytestmark = pytest.mark.integration

TOKEN = "conformance-token-5b1f0c"
SIGNING = "conformance-signing-9e24d7"
ENV = {"CONF_HOOK_TOKEN": TOKEN, "CONF_HOOK_SIGNING": SIGNING}
RETRY = {"base_delay": 0.01, "max_delay": 0.05}


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
    with WebhookReceiver(key_field="email", token=TOKEN, secret=SIGNING) as receiver:
        yield Target(
            destination=_hook(receiver, "${env:CONF_HOOK_TOKEN}"),
            env=ENV,
            match_field="email",
            read=lambda: receiver.records,
            operations=frozenset(Operation),
            faults=receiver.faults,
            calls=lambda: list(receiver.calls),
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
