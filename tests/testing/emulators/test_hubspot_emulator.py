"""The HubSpot emulator's contract, proven with plain HTTP calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.hubspot import HubSpotEmulator

pytestmark = pytest.mark.integration

UPSERT = "/crm/v3/objects/contacts/batch/upsert"


@pytest.fixture
def hub() -> HubSpotEmulator:
    return HubSpotEmulator(burst_limit=1000, burst_seconds=1.0)


@pytest.fixture
def http(hub: HubSpotEmulator) -> Iterator[httpx.Client]:
    with (
        EmulatorServer(hub) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {hub.token}"}
        ) as client,
    ):
        yield client


def contact(email: str, trace: str | None = None, **props: str) -> dict[str, Any]:
    item: dict[str, Any] = {"id": email, "idProperty": "email", "properties": props}
    if trace is not None:
        item["objectWriteTraceId"] = trace
    return item


def test_missing_or_wrong_token_is_401_invalid_authentication(
    hub: HubSpotEmulator, http: httpx.Client
) -> None:
    missing = http.get("/crm/v3/properties/contacts", headers={"Authorization": ""})
    wrong = http.get("/crm/v3/properties/contacts", headers={"Authorization": "Bearer nope"})

    for answer in (missing, wrong):
        assert answer.status_code == 401
        body = answer.json()
        assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
        assert body["correlationId"]
    assert hub.records("contacts") == {}


def test_upsert_creates_then_updates_by_email(hub: HubSpotEmulator, http: httpx.Client) -> None:
    first = http.post(UPSERT, json={"inputs": [contact("a@x.io", "0", firstname="Ann")]})
    second = http.post(UPSERT, json={"inputs": [contact("a@x.io", "0", lastname="Lee")]})

    assert first.status_code == 200 and second.status_code == 200
    made, again = first.json()["results"][0], second.json()["results"][0]
    assert made["new"] is True and again["new"] is False
    assert made["id"] == again["id"] == made["properties"]["hs_object_id"]
    assert first.json()["status"] == "COMPLETE"
    records = hub.records("contacts", key="email")
    assert list(records) == ["a@x.io"]
    assert records["a@x.io"]["firstname"] == "Ann" and records["a@x.io"]["lastname"] == "Lee"


def test_partial_failure_is_207_keyed_by_trace_id(hub: HubSpotEmulator, http: httpx.Client) -> None:
    hub.faults.reject({"b@x.io": "blocked address"})
    inputs = [
        contact("a@x.io", "0", firstname="Ann"),
        contact("b@x.io", "1", firstname="Bob"),
        contact("c@x.io", "2", favourite="blue"),
    ]

    answer = http.post(UPSERT, json={"inputs": inputs})

    assert answer.status_code == 207
    body = answer.json()
    assert body["numErrors"] == 2
    by_trace = {e["context"]["objectWriteTraceId"][0]: e for e in body["errors"]}
    assert by_trace["1"]["message"] == "blocked address"
    assert by_trace["2"]["category"] == "VALIDATION_ERROR"
    assert by_trace["2"]["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    assert [r["objectWriteTraceId"] for r in body["results"]] == ["0"]
    assert list(hub.records("contacts", key="email")) == ["a@x.io"]


def test_without_trace_ids_one_bad_input_fails_the_whole_batch(
    hub: HubSpotEmulator, http: httpx.Client
) -> None:
    inputs = [contact("a@x.io", firstname="Ann"), contact("b@x.io", favourite="blue")]

    answer = http.post(UPSERT, json={"inputs": inputs})

    assert answer.status_code == 400
    assert answer.json()["category"] == "VALIDATION_ERROR"
    assert "favourite" in answer.json()["message"]
    assert hub.records("contacts") == {}


def test_more_than_100_inputs_is_a_400_validation_error(
    hub: HubSpotEmulator, http: httpx.Client
) -> None:
    inputs = [contact(f"u{i}@x.io", str(i)) for i in range(101)]

    answer = http.post(UPSERT, json={"inputs": inputs})

    assert answer.status_code == 400
    body = answer.json()
    assert body["category"] == "VALIDATION_ERROR" and "101" in body["message"]
    assert hub.records("contacts") == {}
    assert http.post(UPSERT, json={"inputs": inputs[:100]}).status_code == 200


def test_id_property_must_have_unique_values(hub: HubSpotEmulator, http: httpx.Client) -> None:
    created = http.post(
        "/crm/v3/properties/contacts",
        json={
            "name": "ext_id",
            "label": "Ext id",
            "type": "string",
            "fieldType": "text",
            "groupName": "contactinformation",
            "hasUniqueValue": True,
        },
    )
    assert created.status_code == 201 and created.json()["hasUniqueValue"] is True
    not_unique = {"id": "Ann", "idProperty": "firstname", "properties": {}}

    refused = http.post(UPSERT, json={"inputs": [not_unique]})
    unknown = http.post(UPSERT, json={"inputs": [{**not_unique, "idProperty": "nope"}]})
    by_ext = http.post(
        UPSERT, json={"inputs": [{"id": "X1", "idProperty": "ext_id", "properties": {}}]}
    )

    assert refused.status_code == 400 and "not unique" in refused.json()["message"]
    assert unknown.status_code == 400 and "does not exist" in unknown.json()["message"]
    assert by_ext.status_code == 200
    assert list(hub.records("contacts", key="ext_id")) == ["X1"]
    props = http.get("/crm/v3/properties/contacts").json()["results"]
    unique = {p["name"] for p in props if p["hasUniqueValue"]}
    assert unique == {"email", "ext_id"}
    again = http.post(
        "/crm/v3/properties/contacts",
        json={
            "name": "ext_id",
            "label": "x",
            "type": "string",
            "fieldType": "text",
            "groupName": "g",
        },
    )
    assert again.status_code == 409


def test_duplicate_ids_in_one_batch_are_refused(http: httpx.Client) -> None:
    inputs = [contact("a@x.io", "0"), contact("a@x.io", "1")]

    answer = http.post(UPSERT, json={"inputs": inputs})

    assert answer.status_code == 400 and "Duplicate IDs" in answer.json()["message"]


def test_read_update_archive_lifecycle(hub: HubSpotEmulator, http: httpx.Client) -> None:
    http.post(UPSERT, json={"inputs": [contact("a@x.io", "0", firstname="Ann")]})
    read = http.post(
        "/crm/v3/objects/contacts/batch/read",
        json={
            "idProperty": "email",
            "properties": ["email"],
            "inputs": [{"id": "a@x.io"}, {"id": "zz@x.io"}],
        },
    )
    assert read.status_code == 207
    found = read.json()["results"]
    assert [r["properties"]["email"] for r in found] == ["a@x.io"]
    assert read.json()["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert read.json()["errors"][0]["context"]["ids"] == ["zz@x.io"]
    hs_id = found[0]["id"]

    update = http.post(
        "/crm/v3/objects/contacts/batch/update",
        json={"inputs": [{"id": hs_id, "properties": {"firstname": ""}}]},
    )
    assert update.status_code == 200
    assert "firstname" not in hub.records("contacts", key="email")["a@x.io"]  # "" clears it
    missing = http.post(
        "/crm/v3/objects/contacts/batch/update",
        json={"inputs": [{"id": "999999", "properties": {"firstname": "X"}}]},
    )
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"

    archive = http.post("/crm/v3/objects/contacts/batch/archive", json={"inputs": [{"id": hs_id}]})

    assert archive.status_code == 204 and archive.content == b""
    assert hub.records("contacts") == {}


def test_create_conflicts_on_an_existing_unique_value(http: httpx.Client) -> None:
    create = "/crm/v3/objects/contacts/batch/create"
    first = http.post(create, json={"inputs": [{"properties": {"email": "a@x.io"}}]})
    second = http.post(
        create, json={"inputs": [{"properties": {"email": "a@x.io"}, "objectWriteTraceId": "7"}]}
    )

    assert first.status_code == 201
    assert second.status_code == 207
    error = second.json()["errors"][0]
    assert error["category"] == "CONFLICT" and error["context"]["objectWriteTraceId"] == ["7"]


def test_single_object_endpoints_and_date_versioned_paths(
    hub: HubSpotEmulator, http: httpx.Client
) -> None:
    made = http.post("/crm/objects/2026-03/companies", json={"properties": {"domain": "x.io"}})
    assert made.status_code == 201
    patched = http.patch(
        "/crm/v3/objects/companies/x.io",
        params={"idProperty": "domain"},
        json={"properties": {"name": "X Inc"}},
    )
    assert patched.status_code == 200
    assert hub.records("companies", key="domain")["x.io"]["name"] == "X Inc"
    assert http.get("/crm/v3/objects/companies/42").status_code == 404
    assert http.delete(f"/crm/v3/objects/companies/{made.json()['id']}").status_code == 204
    assert hub.records("companies") == {}


def test_search_filters_and_pages(http: httpx.Client) -> None:
    inputs = [contact(f"u{i}@x.io", str(i), city="Oslo" if i % 2 else "Rome") for i in range(5)]
    http.post(UPSERT, json={"inputs": inputs})
    query = {
        "filterGroups": [
            {"filters": [{"propertyName": "city", "operator": "EQ", "value": "Oslo"}]},
            {"filters": [{"propertyName": "email", "operator": "IN", "values": ["u0@x.io"]}]},
        ],
        "properties": ["email"],
        "limit": 2,
    }

    page = http.post("/crm/v3/objects/contacts/search", json=query)
    rest = http.post(
        "/crm/v3/objects/contacts/search",
        json={**query, "after": page.json()["paging"]["next"]["after"]},
    )

    assert page.json()["total"] == 3
    emails = [r["properties"]["email"] for r in page.json()["results"] + rest.json()["results"]]
    assert sorted(emails) == ["u0@x.io", "u1@x.io", "u3@x.io"]
    assert "paging" not in rest.json()
    assert "x-hubspot-ratelimit-max" not in page.headers  # none on search answers
    too_big = http.post("/crm/v3/objects/contacts/search", json={**query, "limit": 201})
    assert too_big.status_code == 400


def test_burst_limit_answers_429_with_policy_and_headers() -> None:
    hub = HubSpotEmulator(burst_limit=3, burst_seconds=30.0)
    with (
        EmulatorServer(hub) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {hub.token}"}) as http,
    ):
        answers = [http.get("/crm/v3/properties/contacts") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    for a in answers:
        assert a.headers["X-HubSpot-RateLimit-Max"] == "3"
        assert a.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "30000"
    body = answers[-1].json()
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert "Retry-After" not in answers[-1].headers
    assert hub.window.refused == 1
    assert [c.status for c in hub.calls] == [200, 200, 200, 429]


def test_daily_limit_answers_429_daily() -> None:
    hub = HubSpotEmulator(daily_limit=2)
    with (
        EmulatorServer(hub) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {hub.token}"}) as http,
    ):
        answers = [http.get("/crm/v3/properties/deals") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[-1].json()["policyName"] == "DAILY"
    assert answers[1].headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"


def test_custom_objects_by_constructor_and_schema_api() -> None:
    hub = HubSpotEmulator(custom_objects={"pets": ["nickname"]})
    with (
        EmulatorServer(hub) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {hub.token}"}) as http,
    ):
        schema = http.post(
            "/crm/v3/schemas",
            json={"name": "cars", "properties": [{"name": "vin", "hasUniqueValue": True}]},
        )
        by_vin = http.post(
            "/crm/v3/objects/cars/batch/upsert",
            json={"inputs": [{"id": "V1", "idProperty": "vin", "properties": {}}]},
        )
        by_type_id = http.get(f"/crm/v3/properties/{schema.json()['objectTypeId']}")
        pets = http.get("/crm/v3/properties/pets").json()["results"]
        unknown = http.get("/crm/v3/properties/widgets")

    assert schema.status_code == 201 and by_vin.status_code == 200
    assert list(hub.records("cars", key="vin")) == ["V1"]
    assert "vin" in {p["name"] for p in by_type_id.json()["results"]}
    assert "nickname" in {p["name"] for p in pets}
    assert unknown.status_code == 400 and "widgets" in unknown.json()["message"]


def test_faults_use_hubspot_shapes_and_control_api(
    hub: HubSpotEmulator, http: httpx.Client
) -> None:
    hub.faults.fail_next(1, 503)
    hub.faults.rate_limit_next(1)

    failed = http.get("/crm/v3/properties/contacts")
    limited = http.get("/crm/v3/properties/contacts")
    state = http.get("/_emulator/state")

    assert failed.status_code == 503 and failed.json()["status"] == "error"
    assert limited.status_code == 429
    assert limited.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert "X-HubSpot-RateLimit-Remaining" in limited.headers
    assert state.json() == {"contacts": {}, "companies": {}, "deals": {}}
    assert hub.credentials() == {"HUBSPOT_TOKEN": hub.token}
    assert hub.destination_config("http://h")["token"] == "${env:HUBSPOT_TOKEN}"
