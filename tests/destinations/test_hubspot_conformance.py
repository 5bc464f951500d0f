"""The conformance suite against the HubSpot destination and its emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator

pytestmark = pytest.mark.integration

TOKEN = "pat-na1-conformance-4b1d9e0c"
ENV = {"CONF_HUBSPOT_TOKEN": TOKEN}


def _destination(url: str, token: str) -> dict[str, Any]:
    return {
        "type": "hubspot",
        "base_url": url,
        "token": token,
        "rate_limit": {"requests": 1000, "per_seconds": 1.0},
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator shared by every check (each check uses its own e-mail domain)."""
    # A 1 s burst window: a 429 then asks the connector to wait 1 s, not HubSpot's 10 s.
    emulator = HubSpotEmulator(token=TOKEN, burst_limit=1000, burst_seconds=1.0)
    emulator.add_property("contacts", "score", type="number", field_type="number")
    with EmulatorServer(emulator) as server:
        yield Target(
            destination=_destination(server.url, "${env:CONF_HUBSPOT_TOKEN}"),
            env=ENV,
            match_field="email",
            read=lambda: emulator.records("contacts", key="email"),
            operations=frozenset(Operation),
            object="contacts",
            field_map={"name": "firstname", "score": "score"},
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(server.url, "pat-na1-wrong-token-000"),
            secrets=[TOKEN],
        )


@pytest.mark.parametrize("name", list(CHECKS))
def test_hubspot_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
