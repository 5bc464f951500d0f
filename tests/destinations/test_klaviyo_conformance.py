"""The conformance suite against the Klaviyo destination and its emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.klaviyo import KlaviyoEmulator

pytestmark = pytest.mark.integration

API_KEY = "pk_conformance_6c1d9e3f0a7b4e2d8c5f1a9b"
ENV = {"CONF_KLAVIYO_KEY": API_KEY}


def _destination(url: str, key: str) -> dict[str, Any]:
    return {
        "type": "klaviyo",
        "base_url": url,
        "api_key": key,
        "poll_interval_seconds": 0.01,
        "rate_limit": {"requests": 200, "per_seconds": 1},
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator shared by every check (each check uses its own e-mail domain).

    The emulator's per-endpoint windows are widened: the checks run many short syncs
    back to back, and the rate-limit check injects its own 429.
    """
    emulator = KlaviyoEmulator(api_key=API_KEY, burst=1000, steady=100_000)
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            profiles = emulator.state()["profiles"]
            return {str(p["email"]): p for p in profiles if p.get("email")}

        yield Target(
            destination=_destination(server.url, "${env:CONF_KLAVIYO_KEY}"),
            env=ENV,
            match_field="email",
            read=read,
            operations=frozenset({Operation.UPSERT}),
            field_map={"name": "first_name", "score": "properties.score"},
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(server.url, "pk_not_the_key"),
            secrets=[API_KEY],
        )


@pytest.mark.parametrize("name", list(CHECKS))
def test_klaviyo_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
