"""The Iterable emulator's contract, proven with plain HTTP calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.iterable import IterableEmulator

pytestmark = pytest.mark.integration

KEY = "it-test-key-3b9"
UPDATE = "/api/users/bulkUpdate"


@contextmanager
def serve(emulator: IterableEmulator) -> Iterator[httpx.Client]:
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(base_url=server.url, headers={"Api-Key": KEY}) as client,
    ):
        yield client


@pytest.fixture
def it() -> IterableEmulator:
    return IterableEmulator(api_key=KEY, rate_limits={})


@pytest.fixture
def http(it: IterableEmulator) -> Iterator[httpx.Client]:
    with serve(it) as client:
        yield client


def users(*items: dict[str, Any]) -> dict[str, Any]:
    return {"users": list(items)}


def test_missing_or_wrong_key_is_401_bad_api_key_and_api_key_header_also_works(
    it: IterableEmulator, http: httpx.Client
) -> None:
    body = users({"email": "a@x.io"})
    for headers in ({"Api-Key": ""}, {"Api-Key": "nope"}):
        answer = http.post(UPDATE, json=body, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["code"] == "BadApiKey"
    assert it.state()["users"] == []
    other = httpx.post(f"{http.base_url}{UPDATE}", json=body, headers={"api_key": KEY})
    assert other.status_code == 200 and other.json()["successCount"] == 1


def test_bulk_update_creates_then_merges_by_case_insensitive_email(
    it: IterableEmulator, http: httpx.Client
) -> None:
    first = http.post(
        UPDATE,
        json=users({"email": "Ann@X.io", "userId": "u-1", "dataFields": {"a": {"x": 1}, "p": 1}}),
    )
    second = http.post(
        UPDATE,
        json=users(
            {"email": "ann@x.io", "dataFields": {"a": {"y": 2}}, "mergeNestedObjects": True}
        ),
    )
    same = http.post(UPDATE, json=users({"userId": "u-1", "dataFields": {"p": 1}}))

    assert first.json()["successCount"] == 1 and first.json()["createdFields"] == ["a", "p"]
    assert second.json()["successCount"] == 1 and second.json()["failCount"] == 0
    assert same.json()["noOpUserIds"] == ["u-1"]
    [user] = it.state()["users"]
    assert (user["email"], user["userId"]) == ("ann@x.io", "u-1")
    assert user["dataFields"] == {"a": {"x": 1, "y": 2}, "p": 1}


def test_failures_are_200_listed_by_identifier(it: IterableEmulator, http: httpx.Client) -> None:
    http.post(UPDATE, json=users({"email": "a@x.io", "userId": "u-a"}, {"email": "b@x.io"}))
    it.project_type = "email"
    it.faults.reject({"blocked@x.io": "refused"})

    answer = http.post(
        UPDATE,
        json=users(
            {"email": "shrouti"},
            {"userId": "u-new"},
            {"userId": "u-new2", "preferUserId": True},
            {"email": "b@x.io", "userId": "u-a"},
            {"email": "blocked@x.io"},
            {"email": "c@x.io", "dataFields": {"k": 1}},
        ),
    )

    assert answer.status_code == 200
    body = answer.json()
    assert (body["successCount"], body["failCount"]) == (2, 4)
    assert body["invalidEmails"] == ["shrouti"]
    failed = body["failedUpdates"]
    assert failed["invalidEmails"] == ["shrouti"]
    assert failed["notFoundUserIds"] == ["u-new"]
    assert failed["conflictEmails"] == ["b@x.io"] and failed["conflictUserIds"] == ["u-a"]
    assert failed["invalidDataEmails"] == ["blocked@x.io"]
    assert {u["email"] or u["userId"] for u in it.state()["users"]} == {
        "a@x.io",
        "b@x.io",
        "c@x.io",
        "u-new2",
    }


def test_one_byte_over_the_request_cap_is_refused() -> None:
    body = json.dumps(users(*({"email": f"u{i}@x.io"} for i in range(40)))).encode()
    it = IterableEmulator(api_key=KEY, rate_limits={}, max_request_bytes=len(body) - 1)
    with serve(it) as http:
        headers = {"Content-Type": "application/json"}
        refused = http.post(UPDATE, content=body, headers=headers)
        assert refused.status_code == 413
        assert set(refused.json()) == {"msg", "code", "params"}
        assert it.state()["users"] == []
        it.max_request_bytes = len(body)
        assert http.post(UPDATE, content=body, headers=headers).json()["successCount"] == 40


def test_endpoint_rate_limit_is_429_and_others_are_not_counted() -> None:
    it = IterableEmulator(api_key=KEY, rate_limits={UPDATE: (2, 60.0)})
    with serve(it) as http:
        codes = [http.post(UPDATE, json=users({"email": "a@x.io"})).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = http.post(UPDATE, json=users({"email": "a@x.io"}))
        assert limited.json()["code"] == "RateLimitExceeded"
        assert http.get("/api/lists").status_code == 200


def test_track_bulk_appends_events_and_a_repeated_id_replaces(
    it: IterableEmulator, http: httpx.Client
) -> None:
    events = [
        {"email": "a@x.io", "eventName": "opened", "id": "ev-1", "dataFields": {"n": 1}},
        {"email": "a@x.io", "eventName": "opened", "id": "ev-1", "dataFields": {"n": 2}},
        {"email": "a@x.io", "eventName": "clicked"},
        {"email": "a@x.io"},
    ]
    body = http.post("/api/events/trackBulk", json={"events": events}).json()

    assert (body["successCount"], body["failCount"]) == (3, 1)
    state = it.state()
    assert [(e["eventName"], e["dataFields"]) for e in state["events"]] == [
        ("opened", {"n": 2}),
        ("clicked", {}),
    ]
    assert [u["email"] for u in state["users"]] == ["a@x.io"]


def test_list_subscribe_and_unsubscribe_set_membership(
    it: IterableEmulator, http: httpx.Client
) -> None:
    list_id = http.post("/api/lists", json={"name": "VIP"}).json()["listId"]
    subscribers = [{"email": "a@x.io"}, {"email": "b@x.io"}, {"userId": "u-c"}]
    added = http.post(
        "/api/lists/subscribe", json={"listId": list_id, "subscribers": subscribers}
    ).json()
    removed = http.post(
        "/api/lists/unsubscribe",
        json={"listId": list_id, "subscribers": [{"email": "b@x.io"}, {"email": "z@x.io"}]},
    ).json()
    only_existing = http.post(
        "/api/lists/subscribe",
        json={
            "listId": list_id,
            "subscribers": [{"email": "new@x.io"}],
            "updateExistingUsersOnly": True,
        },
    ).json()
    unknown = http.post("/api/lists/subscribe", json={"listId": 9, "subscribers": []})

    assert added["successCount"] == 3
    assert (removed["successCount"], removed["notFoundEmails"]) == (1, ["z@x.io"])
    assert only_existing["notFoundEmails"] == ["new@x.io"]
    assert unknown.status_code == 400
    vip = next(lst for lst in it.state()["lists"] if lst["id"] == list_id)
    emails = {u["id"]: u["email"] or u["userId"] for u in it.state()["users"]}
    assert sorted(emails[m] for m in vip["members"]) == ["a@x.io", "u-c"]


def test_delete_and_forget(it: IterableEmulator, http: httpx.Client) -> None:
    http.post(UPDATE, json=users({"email": "a@x.io"}, {"userId": "u-b"}, {"email": "c@x.io"}))

    assert http.delete("/api/users/A@x.io").json()["code"] == "Success"
    assert http.delete("/api/users/byUserId/u-b").status_code == 200
    assert http.delete("/api/users/byUserId/u-b").status_code == 400
    assert http.get("/api/users/getByEmail", params={"email": "c@x.io"}).json()["user"]["email"]
    assert http.post("/api/users/forget", json={"email": "c@x.io"}).status_code == 200
    again = http.post(UPDATE, json=users({"email": "c@x.io"})).json()

    assert again["failedUpdates"]["forgottenEmails"] == ["c@x.io"]
    assert it.state()["users"] == []
    assert http.get("/api/users/getByEmail", params={"email": "c@x.io"}).json() == {}


def test_fault_switches_answer_in_iterable_shapes(it: IterableEmulator, http: httpx.Client) -> None:
    http.post("/_emulator/faults", json={"fail_next": 1, "status": 500, "rate_limit_next": 1})
    failed = http.post(UPDATE, json=users({"email": "a@x.io"}))
    limited = http.post(UPDATE, json=users({"email": "a@x.io"}))

    assert failed.status_code == 500 and set(failed.json()) == {"msg", "code", "params"}
    assert limited.status_code == 429 and limited.json()["code"] == "RateLimitExceeded"
    assert it.state()["users"] == []
    assert http.post(UPDATE, json=users({"email": "a@x.io"})).json()["successCount"] == 1
