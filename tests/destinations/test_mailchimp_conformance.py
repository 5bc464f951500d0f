"""The conformance suite against the Mailchimp destination and its emulator."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.mailchimp import MailchimpEmulator

pytestmark = pytest.mark.integration

API_KEY = "5f3c9e0d7a1b4c2e8f6a0b9d1c3e5f7a-us6"
LIST_ID = "c0nf0rm4nc"
ENV = {"CONF_MC_KEY": API_KEY}


def _destination(url: str, key: str) -> dict[str, Any]:
    return {
        "type": "mailchimp",
        "base_url": url,
        "api_key": key,
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator shared by every check (each check uses its own e-mail domain)."""
    emulator = MailchimpEmulator(api_key=API_KEY, lists={LIST_ID: "Conformance"})
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            members = emulator.state()["lists"][LIST_ID]["members"]
            return {str(email): member for email, member in members.items()}

        yield Target(
            destination=_destination(server.url, "${env:CONF_MC_KEY}"),
            env=ENV,
            match_field="email_address",
            read=read,
            operations=frozenset({Operation.UPSERT, Operation.INSERT, Operation.DELETE}),
            object=LIST_ID,
            field_map={"name": "merge_fields.FNAME", "score": "merge_fields.SCORE"},
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(server.url, "0000000000000000000000000000dead-us6"),
            # The key, and the Basic credentials it travels in.
            secrets=[API_KEY, base64.b64encode(f"backhaul:{API_KEY}".encode()).decode()],
        )


@pytest.mark.parametrize("name", list(CHECKS))
def test_mailchimp_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
