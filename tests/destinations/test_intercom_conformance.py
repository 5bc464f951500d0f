"""The conformance suite against the Intercom destination and its emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.intercom import IntercomEmulator

pytestmark = pytest.mark.integration

TOKEN = "ic-conformance-token-2c8e44"
ENV = {"CONF_IC_TOKEN": TOKEN}


def _destination(url: str, token: str) -> dict[str, Any]:
    return {
        "type": "intercom",
        "base_url": url,
        "token": token,
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator shared by every check (each check uses its own e-mail domain)."""
    emulator = IntercomEmulator(token=TOKEN, custom_attributes={"score"})
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            return {c["email"]: c for c in emulator.state()["contacts"] if c.get("email")}

        yield Target(
            destination=_destination(server.url, "${env:CONF_IC_TOKEN}"),
            env=ENV,
            match_field="email",
            read=read,
            operations=frozenset(Operation),
            object="contacts",
            field_map={"name": "name", "score": "custom_attributes.score"},
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(server.url, "not-the-token"),
            secrets=[TOKEN],
        )


@pytest.mark.parametrize("name", list(CHECKS))
def test_intercom_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
