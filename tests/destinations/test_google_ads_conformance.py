"""The conformance suite against the Google Ads Customer Match destination and its emulator.

A user list holds hashed identifiers only, so the checks run in ``mode: membership``:
members are read back by the SHA-256 of each model e-mail. ``name`` and ``score`` are left
unmapped (a name counts only inside a full address: first and last name, country and
postal code), so membership is checked as presence.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.destinations.google_ads import GoogleAdsDestination
from backhaul.destinations.pii import PiiKey
from backhaul.destinations.pii import Platform
from backhaul.destinations.pii import normalise
from backhaul.destinations.pii import sha256_hex
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.google_ads import GoogleAdsEmulator

pytestmark = pytest.mark.integration

DEVELOPER_TOKEN = "gads-conformance-developer-token-2b7c"
CLIENT_SECRET = "gads-conformance-client-secret-e41a"
REFRESH_TOKEN = "1//gads-conformance-refresh-token-90fd"
ENV = {
    "CONF_GADS_DEVELOPER_TOKEN": DEVELOPER_TOKEN,
    "CONF_GADS_CLIENT_SECRET": CLIENT_SECRET,
    "CONF_GADS_REFRESH_TOKEN": REFRESH_TOKEN,
}


def _destination(emulator: GoogleAdsEmulator, url: str, refresh_token: str) -> dict[str, Any]:
    return {
        "type": "google_ads",
        "base_url": url,
        "token_url": f"{url}/token",
        "customer_id": emulator.customer_id,
        "developer_token": "${env:CONF_GADS_DEVELOPER_TOKEN}",
        "client_id": emulator.oauth.client_id,
        "client_secret": "${env:CONF_GADS_CLIENT_SECRET}",
        "refresh_token": refresh_token,
        "poll_interval_seconds": 0.01,
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


def email_key(email: str) -> str:
    return sha256_hex(normalise(Platform.GOOGLE, PiiKey.EMAIL, email))


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator and one user list shared by every check (each has its own e-mails)."""
    emulator = GoogleAdsEmulator(
        developer_token=DEVELOPER_TOKEN,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH_TOKEN,
        rate_limit=100_000,
    )
    user_list = emulator.user_list
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            members = emulator.state()["user_lists"][user_list]["members"]
            found: dict[str, dict[str, Any]] = {}
            for member in members:
                key = str(member["hashedEmail"])
                assert key not in found, f"the user list holds e-mail hash {key} twice"
                found[key] = member
            return found

        yield Target(
            destination=_destination(emulator, server.url, "${env:CONF_GADS_REFRESH_TOKEN}"),
            env=ENV,
            match_field="email",
            read=read,
            operations=GoogleAdsDestination.capabilities.operations,
            object=user_list,
            field_map={"name": None, "score": None},
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(emulator, server.url, "1//not-the-refresh-token"),
            secrets=[DEVELOPER_TOKEN, CLIENT_SECRET, REFRESH_TOKEN],
            mode="membership",
            key_of=email_key,
        )


def test_the_target_keeps_to_what_a_user_list_supports() -> None:
    assert GoogleAdsDestination.capabilities.operations == {Operation.UPSERT, Operation.DELETE}


@pytest.mark.parametrize("name", list(CHECKS))
def test_google_ads_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
