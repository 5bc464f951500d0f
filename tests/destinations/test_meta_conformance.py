"""The conformance suite against the Meta Custom Audiences destination and its emulator.

The audience holds hashed identifiers only, so the checks run in ``mode: membership``:
records are read back by the SHA-256 of each model e-mail, and ``name`` is mapped to the
first name (``FN``), kept as the hash of its normalised value.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.destinations.meta import MetaAudiencesDestination
from backhaul.destinations.pii import PiiKey
from backhaul.destinations.pii import Platform
from backhaul.destinations.pii import normalise
from backhaul.destinations.pii import sha256_hex
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.meta import MetaEmulator

pytestmark = pytest.mark.integration

TOKEN = "EAAB-conformance-token-5c81e2"
APP_SECRET = "meta-conformance-app-secret-93d0"
ENV = {"CONF_META_TOKEN": TOKEN, "CONF_META_SECRET": APP_SECRET}
PROOF = hmac.new(APP_SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()


def _destination(url: str, token: str) -> dict[str, Any]:
    return {
        "type": "meta_audiences",
        "base_url": url,
        "access_token": token,
        "app_secret": "${env:CONF_META_SECRET}",
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


def email_key(email: str) -> str:
    return sha256_hex(normalise(Platform.META, PiiKey.EMAIL, email))


def first_name(logical: str, value: Any) -> Any:
    assert logical == "name", f"only name is mapped, not {logical}"
    return sha256_hex(normalise(Platform.META, PiiKey.FIRST_NAME, value))


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator and one audience shared by every check (each has its own e-mails)."""
    emulator = MetaEmulator(access_token=TOKEN, app_secret=APP_SECRET, rate_limit=100_000)
    audience = emulator.audience_id
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            members = emulator.state()["audiences"][audience]["members"]
            found: dict[str, dict[str, Any]] = {}
            for member in members:
                key = str(member["EMAIL"])
                assert key not in found, f"the audience holds e-mail hash {key} twice"
                found[key] = member
            return found

        yield Target(
            destination=_destination(server.url, "${env:CONF_META_TOKEN}"),
            env=ENV,
            match_field="email",
            read=read,
            operations=MetaAudiencesDestination.capabilities.operations,
            object=audience,
            field_map={"name": "FN", "score": None},
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(server.url, "EAAB-not-the-token"),
            secrets=[TOKEN, APP_SECRET, PROOF],
            mode="membership",
            key_of=email_key,
            value_of=first_name,
            # Meta throttles with HTTP 400 (code 80003) and names a wait only in whole
            # minutes in X-Business-Use-Case-Usage: the check proves the retry, not a wait.
            rate_limit_status=400,
            rate_limit_wait=None,
        )


def test_the_target_keeps_to_what_an_audience_supports() -> None:
    assert MetaAudiencesDestination.capabilities.operations == {
        Operation.UPSERT,
        Operation.DELETE,
    }


@pytest.mark.parametrize("name", list(CHECKS))
def test_meta_audiences_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
