"""The conformance suite against the Zendesk destination and its emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.zendesk import ZendeskEmulator

pytestmark = pytest.mark.integration

EMAIL = "agent@conformance.example.com"
TOKEN = "zd-conformance-token-7f3a91"
ENV = {"CONF_ZD_EMAIL": EMAIL, "CONF_ZD_TOKEN": TOKEN}


def _destination(url: str, token: str) -> dict[str, Any]:
    return {
        "type": "zendesk",
        "base_url": url,
        "email": "${env:CONF_ZD_EMAIL}",
        "api_token": token,
        "poll_interval_seconds": 0.01,
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator shared by every check (each check uses its own e-mail domain)."""
    emulator = ZendeskEmulator(email=EMAIL, api_token=TOKEN, rate_limit=100_000)
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            return {u["email"]: u for u in emulator.state()["users"] if u.get("email")}

        yield Target(
            destination=_destination(server.url, "${env:CONF_ZD_TOKEN}"),
            env=ENV,
            match_field="email",
            read=read,
            operations=frozenset(Operation),
            object="users",
            field_map={"name": "name", "score": "user_fields.score"},
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(server.url, "not-the-token"),
            secrets=[TOKEN],
        )


@pytest.mark.parametrize("name", list(CHECKS))
def test_zendesk_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
