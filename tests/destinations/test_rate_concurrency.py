"""Calls in flight of the REST connectors: taken from the rate limit unless a file says,
with the run keeping as many batches in flight; a fixed number where the vendor needs one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backhaul.destinations.base import DestinationContext
from backhaul.destinations.braze import BrazeDestination
from backhaul.destinations.google_sheets import GoogleSheetsDestination
from backhaul.destinations.http.destination import FIXED_CONCURRENCY
from backhaul.destinations.http.destination import HttpDestination
from backhaul.destinations.http.ratelimit import MAX_CONCURRENCY
from backhaul.destinations.hubspot import HubSpotDestination
from backhaul.destinations.iterable import IterableDestination
from backhaul.destinations.mailchimp import MailchimpDestination
from backhaul.destinations.zendesk import ZendeskDestination
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator
from conftest import Builder

OLD_HUBSPOT_DEFAULT = 4  # connections and batches in flight before they followed the limit
BATCHES = 10
LATENCY = 0.2  # seconds each emulator answer takes: long enough for calls to overlap

HUBSPOT = {"type": "hubspot", "token": "pat-na1-test"}
ZENDESK = {"type": "zendesk", "subdomain": "acme", "email": "a@acme.com", "api_token": "t"}
BRAZE = {"type": "braze", "api_key": "k", "base_url": "https://rest.iad-01.braze.com"}
ITERABLE = {"type": "iterable", "api_key": "k"}
SHEETS = {"type": "google_sheets", "spreadsheet_id": "s1", "access_token": "t"}
MAILCHIMP = {"type": "mailchimp", "api_key": "key-us6"}


def opened(
    kind: type[HttpDestination], context: DestinationContext, **config: Any
) -> HttpDestination:
    return kind(kind.config_model.model_validate(config), context)  # type: ignore[arg-type]


def calls_and_batches(
    kind: type[HttpDestination], context: DestinationContext, **config: Any
) -> tuple[int, int | None]:
    """Calls in flight (the gate and the client's connections) and the batches in flight
    the destination file implies for the run (``None``: its capabilities' number)."""
    destination = opened(kind, context, **config)
    return kind.calls_in_flight(destination.config), kind.fit_run(destination.config).concurrency


def test_hubspot_calls_in_flight_follow_its_rate_limit(context: DestinationContext) -> None:
    # 100 calls per 10 s at up to a second a call: 10 in flight reach the limit.
    assert calls_and_batches(HubSpotDestination, context, **HUBSPOT) == (10, 10)
    raised = {"requests": 190, "per_seconds": 10}  # Professional and Enterprise
    assert calls_and_batches(HubSpotDestination, context, **HUBSPOT, rate_limit=raised) == (
        19,
        19,
    )
    assert calls_and_batches(HubSpotDestination, context, **HUBSPOT, connections=3) == (3, 3)


def test_other_rest_connectors_follow_theirs(context: DestinationContext) -> None:
    # Zendesk's 200 a minute is under 4 a second: the least, as before.
    assert calls_and_batches(ZendeskDestination, context, **ZENDESK) == (4, 4)
    enterprise = {"requests": 700, "per_seconds": 60}
    assert calls_and_batches(ZendeskDestination, context, **ZENDESK, rate_limit=enterprise) == (
        12,
        12,
    )
    assert calls_and_batches(IterableDestination, context, **ITERABLE) == (5, 5)
    # Braze's 3,000 calls every 3 s would want 1,000 in flight: bounded.
    assert calls_and_batches(BrazeDestination, context, **BRAZE) == (MAX_CONCURRENCY,) * 2
    assert calls_and_batches(BrazeDestination, context, **BRAZE, concurrency=6) == (6, 6)


def test_vendors_that_need_a_fixed_number_keep_it(context: DestinationContext) -> None:
    # Rows placed by position: one batch at a time, whatever the rate limit.
    assert calls_and_batches(GoogleSheetsDestination, context, **SHEETS) == (
        FIXED_CONCURRENCY,
        None,
    )
    assert GoogleSheetsDestination.capabilities.default_concurrency == 1
    assert calls_and_batches(GoogleSheetsDestination, context, **SHEETS, concurrency=8) == (
        8,
        None,
    )
    # Mailchimp caps simultaneous connections, not calls a second.
    assert calls_and_batches(MailchimpDestination, context, **MAILCHIMP) == (4, None)
    assert MailchimpDestination.capabilities.default_concurrency == 2


@pytest.fixture
def hub() -> Iterator[HubSpotEmulator]:
    emulator = HubSpotEmulator()
    emulator.faults.latency = LATENCY
    with EmulatorServer(emulator):
        yield emulator


def contacts(project: Builder, hub: HubSpotEmulator, *, sync: dict[str, Any], **dest: Any) -> None:
    """``BATCHES`` batches of contacts to a HubSpot file keeping the default rate limit."""
    project.users(BATCHES * 100)
    project.destination("crm", **{**HUBSPOT, "token": hub.token, "base_url": hub.base_url, **dest})
    mappings = [{"column": "email", "field": "email"}, {"column": "name", "field": "firstname"}]
    project.sync(
        "s",
        destination="crm",
        object="contacts",
        match={"fields": ["email"]},
        mappings=mappings,
        **sync,
    )


def delivered(project: Builder, hub: HubSpotEmulator) -> None:
    summary = project.run("s")
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert len(hub.records("contacts", key="email")) == BATCHES * 100


def upserts(hub: HubSpotEmulator) -> int:
    return sum(c.path.endswith("/batch/upsert") for c in hub.calls)


@pytest.mark.integration
def test_hubspot_run_keeps_more_calls_in_flight_than_the_old_default(
    project: Builder, hub: HubSpotEmulator
) -> None:
    contacts(project, hub, sync={})

    delivered(project, hub)

    assert upserts(hub) == BATCHES  # one call a batch, none refused
    assert hub.most_concurrent > OLD_HUBSPOT_DEFAULT
    assert hub.most_concurrent <= 10  # the limit's 100 calls per 10 s: 10 in flight


@pytest.mark.integration
@pytest.mark.parametrize(
    ("sync", "dest", "most"),
    [
        ({"concurrency": 2}, {}, 2),  # the sync's batches in flight
        ({}, {"connections": 3}, 3),  # the destination file's calls in flight
    ],
)
def test_an_explicit_concurrency_still_wins(
    project: Builder,
    hub: HubSpotEmulator,
    sync: dict[str, Any],
    dest: dict[str, Any],
    most: int,
) -> None:
    contacts(project, hub, sync=sync, **dest)

    delivered(project, hub)

    assert 1 <= hub.most_concurrent <= most


@pytest.mark.integration
def test_project_defaults_concurrency_still_wins(project: Builder, hub: HubSpotEmulator) -> None:
    project.write("backhaul.yml", {"name": "t", "defaults": {"concurrency": 2}})
    contacts(project, hub, sync={})

    delivered(project, hub)

    assert 1 <= hub.most_concurrent <= 2
