"""The conformance suite against the Iterable destination and its emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.destinations.iterable import IterableDestination
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.iterable import IterableEmulator

pytestmark = pytest.mark.integration

KEY = "iterable-conformance-key-91d0"
ENV = {"CONF_ITERABLE_KEY": KEY}


def _destination(url: str, key: str) -> dict[str, Any]:
    return {
        "type": "iterable",
        "base_url": url,
        "api_key": key,
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator shared by every check (each check uses its own e-mail domain), with
    Iterable's own per-endpoint rates."""
    emulator = IterableEmulator(api_key=KEY)
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            users = emulator.state()["users"]
            return {u["email"]: {**u, **u["dataFields"]} for u in users if u.get("email")}

        yield Target(
            destination=_destination(server.url, "${env:CONF_ITERABLE_KEY}"),
            env=ENV,
            match_field="email",
            read=read,
            operations=IterableDestination.capabilities.operations,
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(server.url, "not-the-key"),
            secrets=[KEY],
            # Iterable names no reason per user, only the failure list it puts the user in;
            # the emulator lists an injected refusal under `invalidData`.
            reject_reason="invalidData",
        )


def test_iterable_supports_upsert_delete_and_clear() -> None:
    assert IterableDestination.capabilities.operations == {
        Operation.UPSERT,
        Operation.DELETE,
        Operation.CLEAR,
    }


@pytest.mark.parametrize("name", list(CHECKS))
def test_iterable_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
