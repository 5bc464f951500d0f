"""The Customer.io emulator's contract, proven with plain HTTP calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators._http import json_size
from backhaul.testing.emulators.customerio import CustomerIoEmulator

pytestmark = pytest.mark.integration

SITE, KEY = "site-42", "track-key-9f"
BATCH = "/api/v2/batch"


@contextmanager
def serve(emulator: CustomerIoEmulator) -> Iterator[httpx.Client]:
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(base_url=server.url, auth=(SITE, KEY)) as client,
    ):
        yield client


@pytest.fixture
def cio() -> CustomerIoEmulator:
    return CustomerIoEmulator(site_id=SITE, api_key=KEY)


@pytest.fixture
def http(cio: CustomerIoEmulator) -> Iterator[httpx.Client]:
    with serve(cio) as client:
        yield client


def identify(kind: str, value: str, **attributes: Any) -> dict[str, Any]:
    return {
        "type": "person",
        "identifiers": {kind: value},
        "action": "identify",
        "attributes": attributes,
    }


def post_raw(http: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, int]:
    raw = json.dumps(body, separators=(",", ":")).encode()
    answer = http.post(BATCH, content=raw, headers={"Content-Type": "application/json"})
    return answer, len(raw)


def test_basic_site_id_and_key_are_required(cio: CustomerIoEmulator, http: httpx.Client) -> None:
    for auth in ((SITE, "nope"), ("other", KEY)):
        refused = http.put("/api/v1/customers/u-1", json={"plan": "pro"}, auth=auth)
        assert refused.status_code == 401 and "error" in refused.json()["meta"]
    refused = httpx.put(f"{http.base_url}/api/v1/customers/u-1", json={})  # no credentials
    assert refused.status_code == 401
    assert cio.state()["people"] == []


def test_v1_identify_creates_updates_and_respects_update_only(
    cio: CustomerIoEmulator, http: httpx.Client
) -> None:
    first = http.put("/api/v1/customers/u-1", json={"email": "Ann@x.io", "plan": "pro"})
    by_email = http.put("/api/v1/customers/ann@x.io", json={"plan": "team"})
    update_only = http.put("/api/v1/customers/u-2", json={"plan": "x", "_update": True})

    assert (first.status_code, first.json()) == (200, {})
    assert by_email.status_code == update_only.status_code == 200
    [person] = cio.state()["people"]
    assert (person["id"], person["email"]) == ("u-1", "Ann@x.io")
    assert person["attributes"]["plan"] == "team"
    assert http.put(f"/api/v1/customers/cio_{person['cio_id']}", json={"v": 1}).status_code == 200
    assert cio.person("id", "u-1")["attributes"]["v"] == 1  # type: ignore[index]


def test_an_email_of_someone_else_is_a_silent_attribute_update_failure(
    cio: CustomerIoEmulator, http: httpx.Client
) -> None:
    http.put("/api/v1/customers/u-1", json={"email": "ann@x.io"})
    clash = http.put("/api/v1/customers/u-2", json={"email": "ANN@x.io", "plan": "x"})

    assert clash.status_code == 200
    state = cio.state()
    assert [p["id"] for p in state["people"]] == ["u-1"]
    assert state["attribute_failures"][0]["identifier"] == "id:u-2"


def test_v1_data_limits_are_400_with_meta_error(
    cio: CustomerIoEmulator, http: httpx.Client
) -> None:
    many = {f"a{i}": i for i in range(301)}
    cases = {
        "cannot identify more than 300 attributes in one request": many,
        "attribute name cannot be longer than 150 bytes": {"n" * 151: 1},
        "property value cannot be longer than 1000 bytes": {"v": "x" * 1001},
    }
    for message, body in cases.items():
        answer = http.put("/api/v1/customers/u-1", json=body)
        assert answer.status_code == 400
        assert answer.json() == {"meta": {"error": message}}
    assert http.put("/api/v1/customers/u-1", json=dict(list(many.items())[:300])).status_code == 200
    no_name = http.post("/api/v1/customers/u-1/events", json={"data": {}})
    assert no_name.json() == {"meta": {"error": "name cannot be blank"}}


def test_v2_batch_partial_failure_is_207_by_batch_index(
    cio: CustomerIoEmulator, http: httpx.Client
) -> None:
    cio.faults.reject({"blocked": "refused by the emulator"})
    entries = [
        identify("id", "u-1", plan="pro"),
        identify("id", "u-2", plan="x" * 1001),
        identify("id", "blocked", plan="p"),
        {"type": "person", "identifiers": {"id": "u-1", "email": "a@x.io"}, "action": "identify"},
        {"type": "person", "identifiers": {"id": "u-1"}, "action": "merge"},
        {
            "type": "person",
            "identifiers": {"email": "b@x.io"},
            "action": "event",
            "name": "x",
            "id": "ev1",
        },
        {
            "type": "person",
            "identifiers": {"email": "b@x.io"},
            "action": "event",
            "name": "x",
            "id": "ev1",
        },
    ]

    answer = http.post(BATCH, json={"batch": entries})

    assert answer.status_code == 207
    errors = {e["batch_index"]: e for e in answer.json()["errors"]}
    assert set(errors) == {1, 2, 3, 4}
    assert errors[1] == {
        "batch_index": 1,
        "reason": "invalid",
        "field": "attributes.plan",
        "message": "property value cannot be longer than 1000 bytes",
    }
    assert errors[2]["message"] == "refused by the emulator"
    people = {p["id"] or p["email"]: p for p in cio.state()["people"]}
    assert set(people) == {"u-1", "b@x.io"}
    assert len(people["b@x.io"]["events"]) == 1  # the repeated event id counted once
    ok = http.post(
        BATCH,
        json={"batch": [{"type": "person", "identifiers": {"id": "u-1"}, "action": "delete"}]},
    )
    assert (ok.status_code, ok.json()) == (200, {})
    assert cio.person("id", "u-1") is None


def test_v2_body_must_be_under_500_kb_and_entries_at_most_32_kb(
    cio: CustomerIoEmulator, http: httpx.Client
) -> None:
    big = {f"k{i}": "v" * 900 for i in range(30)}
    entries = [identify("id", f"u-{n}", **big) for n in range(20)]  # about 550 KB
    refused, size = post_raw(http, {"batch": entries})
    assert size >= 500 * 1024 and refused.status_code == 400
    assert cio.state()["people"] == []

    body = {"batch": entries[:2]}
    raw_size = len(json.dumps(body, separators=(",", ":")))
    cio.max_batch_bytes = raw_size  # must be smaller than the cap
    assert post_raw(http, body)[0].status_code == 400
    cio.max_batch_bytes = raw_size + 1
    assert post_raw(http, body)[0].status_code == 200

    entry = identify("id", "u-big", **{f"k{i}": "v" * 900 for i in range(40)})
    cio.max_entry_bytes = json_size(entry) - 1
    over = http.post(BATCH, json={"batch": [identify("id", "u-small"), entry]})
    assert over.status_code == 207
    [error] = over.json()["errors"]
    assert (error["batch_index"], error["reason"]) == (1, "too_large")
    assert "larger than" in error["message"]
    assert cio.person("id", "u-small") is not None and cio.person("id", "u-big") is None
    cio.max_entry_bytes = json_size(entry)
    assert http.post(BATCH, json={"batch": [entry]}).status_code == 200


def test_suppressed_people_are_deleted_and_not_re_added(
    cio: CustomerIoEmulator, http: httpx.Client
) -> None:
    http.put("/api/v1/customers/u-1", json={"email": "a@x.io"})
    assert http.post("/api/v1/customers/u-1/suppress").status_code == 200
    http.put("/api/v1/customers/u-1", json={"plan": "back"})
    http.post(BATCH, json={"batch": [identify("email", "A@x.io", plan="back")]})
    assert cio.state()["people"] == []

    http.post(
        BATCH,
        json={"batch": [{"type": "person", "identifiers": {"id": "u-1"}, "action": "unsuppress"}]},
    )
    http.put("/api/v1/customers/u-1", json={"plan": "back"})
    assert cio.person("id", "u-1")["attributes"] == {"plan": "back"}  # type: ignore[index]


def test_objects_and_relationships(cio: CustomerIoEmulator, http: httpx.Client) -> None:
    acme = {"object_type_id": "1", "object_id": "acme"}
    http.post(
        BATCH,
        json={
            "batch": [
                identify("id", "u-1"),
                {
                    "type": "object",
                    "identifiers": acme,
                    "action": "identify",
                    "attributes": {"name": "Acme"},
                },
                {
                    "type": "person",
                    "identifiers": {"id": "u-1"},
                    "action": "add_relationships",
                    "cio_relationships": [{"identifiers": acme}],
                },
            ]
        },
    )
    [obj] = cio.state()["objects"]
    assert obj["attributes"] == {"name": "Acme"}
    assert obj["people"] == [cio.person("id", "u-1")["cio_id"]]  # type: ignore[index]
    missing = http.post(
        BATCH,
        json={
            "batch": [
                {
                    "type": "person",
                    "identifiers": {"id": "nobody"},
                    "action": "add_relationships",
                    "cio_relationships": [{"identifiers": acme}],
                }
            ]
        },
    )
    assert missing.json()["errors"][0]["reason"] == "not_found"


def test_rate_limit_is_a_plain_429() -> None:
    cio = CustomerIoEmulator(site_id=SITE, api_key=KEY, rate_limit=2, rate_window=60)
    with serve(cio) as http:
        codes = [http.put("/api/v1/customers/u-1", json={}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = http.put("/api/v1/customers/u-1", json={})
        assert "error" in limited.json()["meta"]
        assert "retry-after" not in limited.headers


def test_fault_switches_answer_in_customerio_shapes(
    cio: CustomerIoEmulator, http: httpx.Client
) -> None:
    http.post("/_emulator/faults", json={"fail_next": 1, "status": 500, "drop_next": 1})
    failed = http.post(BATCH, json={"batch": [identify("id", "u-1")]})
    with pytest.raises(httpx.TransportError):
        http.post(BATCH, json={"batch": [identify("id", "u-1")]})

    assert failed.status_code == 500 and "error" in failed.json()["meta"]
    assert cio.state()["people"] == []
    assert http.post(BATCH, json={"batch": [identify("id", "u-1")]}).status_code == 200
