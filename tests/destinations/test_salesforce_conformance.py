"""The conformance suite against the Salesforce destination and its emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.salesforce import SalesforceEmulator
from backhaul.testing.emulators.salesforce import SField

pytestmark = pytest.mark.integration

CLIENT_ID = "3MVG9-conformance-client"
SECRET = "sf-conformance-secret-5d21c8"
ENV = {"CONF_SF_CLIENT_ID": CLIENT_ID, "CONF_SF_SECRET": SECRET}
# A custom object without required fields, so on_remove clear can empty every mapped field
# (on Contact, clearing the required LastName is refused, as Salesforce refuses it).
PERSON = [
    SField("Id", "id", updateable=False),
    SField("External_Id__c", external_id=True),
    SField("Full_Name__c"),
    SField("Score__c", "double"),
]
# Salesforce signals throttling with 403 REQUEST_LIMIT_EXCEEDED, never with the 429 this
# check looks for; test_salesforce_connector.py proves the 403 back-off instead.
NOT_APPLICABLE = {"rate_limit_respected"}
# Through Bulk API 2.0 too: the checks whose records take the bulk path differently.
BULK_CHECKS = ["rejection_mapped_to_key", "removed_rows"]
CASES = [("never", n) for n in CHECKS if n not in NOT_APPLICABLE] + [
    ("always", n) for n in BULK_CHECKS
]


def _destination(url: str, secret: str, bulk: str) -> dict[str, Any]:
    return {
        "type": "salesforce",
        "login_url": url,
        "auth": {
            "type": "client_credentials",
            "client_id": "${env:CONF_SF_CLIENT_ID}",
            "client_secret": secret,
        },
        "external_id_field": "External_Id__c",
        "bulk": bulk,
        "poll_interval_seconds": 0.01,
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
    }


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, Target]]:
    """One emulator per API (``never``: collections, ``always``: Bulk 2.0) for every check."""
    emulators = {
        bulk: SalesforceEmulator(
            client_id=CLIENT_ID, client_secret=SECRET, objects={"Person__c": PERSON}
        )
        for bulk in ("never", "always")
    }
    servers = {bulk: EmulatorServer(e).start() for bulk, e in emulators.items()}
    try:
        yield {
            bulk: Target(
                destination=_destination(servers[bulk].url, "${env:CONF_SF_SECRET}", bulk),
                env=ENV,
                match_field="External_Id__c",
                read=lambda e=emulator: e.by_field("Person__c", "External_Id__c"),
                operations=frozenset(Operation),
                object="Person__c",
                field_map={"name": "Full_Name__c", "score": "Score__c"},
                faults=emulator.faults,
                calls=lambda e=emulator: list(e.calls),
                bad_destination=_destination(servers[bulk].url, "not-the-secret", bulk),
                secrets=[SECRET],
            )
            for bulk, emulator in emulators.items()
        }
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize(("bulk", "name"), CASES)
def test_salesforce_passes(
    bulk: str, name: str, targets: dict[str, Target], tmp_path: Path
) -> None:
    CHECKS[name](targets[bulk], tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
