"""The conformance suite against the Braze destination and its emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.destinations.braze import BrazeDestination
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.braze import BrazeEmulator

pytestmark = pytest.mark.integration

KEY = "braze-conformance-key-5c81e2"
ENV = {"CONF_BRAZE_KEY": KEY}


def _destination(url: str, key: str) -> dict[str, Any]:
    return {
        "type": "braze",
        "base_url": url,
        "api_key": key,
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator shared by every check (each check uses its own e-mail domain)."""
    emulator = BrazeEmulator(api_key=KEY)
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            # Custom attributes are what the sync maps; Braze keeps them apart from identity.
            users = emulator.state()["users"]
            return {u["email"]: {**u, **u["attributes"]} for u in users if u.get("email")}

        yield Target(
            destination=_destination(server.url, "${env:CONF_BRAZE_KEY}"),
            env=ENV,
            match_field="email",
            read=read,
            operations=BrazeDestination.capabilities.operations,
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(server.url, "not-the-key"),
            secrets=[KEY],
        )


def test_braze_supports_upsert_delete_and_clear() -> None:
    assert BrazeDestination.capabilities.operations == {
        Operation.UPSERT,
        Operation.DELETE,
        Operation.CLEAR,
    }


@pytest.mark.parametrize("name", list(CHECKS))
def test_braze_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
