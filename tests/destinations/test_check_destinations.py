"""`validate --check-destinations` asks each destination, read-only, whether a sync fits:
a HubSpot property that does not exist and a Salesforce field of the wrong type are found
against the emulators, one line each, and nothing is written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.conftest import Builder

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator
from backhaul.testing.emulators.salesforce import SalesforceEmulator

pytestmark = pytest.mark.integration


@pytest.fixture
def hubspot(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HubSpotEmulator, str]]:
    emulator = HubSpotEmulator()
    monkeypatch.setenv("HUBSPOT_TOKEN", emulator.token)
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


@pytest.fixture
def salesforce(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SalesforceEmulator, str]]:
    emulator = SalesforceEmulator()
    for name, value in emulator.credentials().items():
        monkeypatch.setenv(name, value)
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


def _errors(project: Builder) -> tuple[int, list[str]]:
    result = project.cli("validate", "--check-destinations")
    return result.returncode, [ln for ln in result.stderr.splitlines() if ln.strip()]


def test_a_missing_hubspot_property_is_found(
    project: Builder, hubspot: tuple[HubSpotEmulator, str]
) -> None:
    emulator, url = hubspot
    project.users(3)
    project.destination("crm", type="hubspot", token="${env:HUBSPOT_TOKEN}", base_url=url)
    mappings = [
        {"column": "email", "field": "email"},
        {"column": "name", "field": "firstname"},
        {"column": "score", "field": "lead_scoore"},
    ]
    project.sync(
        "s", destination="crm", object="contacts", mappings=mappings, match={"fields": ["email"]}
    )

    assert project.cli("validate").returncode == 0  # the files alone look fine
    code, lines = _errors(project)

    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: syncs/s.yml:") and ": mappings: " in lines[0]
    assert "lead_scoore" in lines[0]
    assert emulator.records("contacts") == {}  # read-only: nothing was written
    assert all(c.method == "GET" for c in emulator.calls)


def test_a_salesforce_field_of_the_wrong_type_is_found(
    project: Builder, salesforce: tuple[SalesforceEmulator, str]
) -> None:
    emulator, url = salesforce
    project.users(3)
    project.destination(
        "sf",
        type="salesforce",
        login_url=url,
        auth={
            "type": "client_credentials",
            "client_id": "${env:SALESFORCE_CLIENT_ID}",
            "client_secret": "${env:SALESFORCE_CLIENT_SECRET}",
        },
        external_id_field="External_Id__c",
    )
    mappings = [
        {"column": "id", "field": "External_Id__c"},
        {"column": "email", "field": "LastName"},
        {"column": "name", "field": "Lead_Score__c"},  # text into a double field
    ]
    project.sync("s", destination="sf", object="Contact", mappings=mappings)

    code, lines = _errors(project)

    assert code == 2 and len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith("error: syncs/s.yml:") and ": mappings.2: " in lines[0]
    assert "`Lead_Score__c` holds number values at the destination" in lines[0]
    assert "`name` (VARCHAR)" in lines[0]

    # Cast to a number, it fits; the check passes and still writes nothing.
    mappings[2] = {"column": "score", "field": "Lead_Score__c"}
    project.sync("s", destination="sf", object="Contact", mappings=mappings)
    assert _errors(project) == (0, [])
    assert emulator.by_field("Contact", "External_Id__c") == {}


def test_wrong_credentials_are_found(
    project: Builder, hubspot: tuple[HubSpotEmulator, str]
) -> None:
    _, url = hubspot
    project.users(3)
    project.destination("crm", type="hubspot", token="not-the-token", base_url=url)
    project.sync(
        "s",
        destination="crm",
        object="contacts",
        mappings=[{"column": "email", "field": "email"}],
        match={"fields": ["email"]},
    )

    code, lines = _errors(project)

    assert code == 2 and len(lines) == 1, lines
    assert ": destination: " in lines[0] and "401" in lines[0]
