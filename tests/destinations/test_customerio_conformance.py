"""The conformance suite against the Customer.io destination and its emulator.

Customer.io identifies (upserts) and deletes people; it cannot update only or insert only
(the Track API never says whether a person existed), so those checks skip themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.customerio import CustomerIoEmulator

pytestmark = pytest.mark.integration

SITE = "conformance-site-1"
KEY = "cio-conformance-key-8d2e55"
ENV = {"CONF_CIO_SITE": SITE, "CONF_CIO_KEY": KEY}


def _destination(url: str, key: str) -> dict[str, Any]:
    return {
        "type": "customerio",
        "base_url": url,
        "site_id": "${env:CONF_CIO_SITE}",
        "api_key": key,
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator shared by every check (each check uses its own e-mail domain)."""
    emulator = CustomerIoEmulator(site_id=SITE, api_key=KEY, rate_limit=100_000)
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            # A person's attributes sit beside its identifiers, as the sync mapped them.
            people = emulator.state()["people"]
            return {p["email"]: {**p, **p["attributes"]} for p in people if p.get("email")}

        yield Target(
            destination=_destination(server.url, "${env:CONF_CIO_KEY}"),
            env=ENV,
            match_field="email",
            read=read,
            operations=frozenset({Operation.UPSERT, Operation.DELETE}),
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(server.url, "not-the-key"),
            secrets=[KEY],
        )


@pytest.mark.parametrize("name", list(CHECKS))
def test_customerio_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
