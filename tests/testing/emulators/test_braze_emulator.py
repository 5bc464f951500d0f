"""The Braze emulator's contract, proven with plain HTTP calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.braze import BrazeEmulator

pytestmark = pytest.mark.integration

KEY = "braze-test-key-7c1"
TIME = "2024-05-01T10:00:00Z"


@contextmanager
def serve(emulator: BrazeEmulator) -> Iterator[httpx.Client]:
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as client,
    ):
        yield client


@pytest.fixture
def braze() -> BrazeEmulator:
    return BrazeEmulator(api_key=KEY)


@pytest.fixture
def http(braze: BrazeEmulator) -> Iterator[httpx.Client]:
    with serve(braze) as client:
        yield client


def attrs(external_id: str, **values: Any) -> dict[str, Any]:
    return {"external_id": external_id, **values}


def test_missing_or_wrong_key_is_401_invalid_api_key(
    braze: BrazeEmulator, http: httpx.Client
) -> None:
    body = {"attributes": [attrs("u-1", plan="pro")]}
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}):
        answer = http.post("/users/track", json=body, headers=headers)
        assert answer.status_code == 401
        assert answer.json() == {"message": "Invalid API Key"}
        assert "x-ratelimit-remaining" not in answer.headers
    assert braze.state()["users"] == []


def test_attributes_merge_by_external_id_and_events_are_never_deduplicated(
    braze: BrazeEmulator, http: httpx.Client
) -> None:
    event = {"external_id": "u-1", "name": "trial_started", "time": TIME}
    first = http.post(
        "/users/track",
        json={"attributes": [attrs("u-1", first_name="Ann", plan="pro")], "events": [event]},
    )
    second = http.post(
        "/users/track",
        json={"attributes": [attrs("u-1", plan="team", first_name=None)], "events": [event]},
    )

    assert first.status_code == 201
    assert first.json() == {
        "message": "success",
        "attributes_processed": 1,
        "events_processed": 1,
    }
    assert second.status_code == 201
    [user] = braze.state()["users"]
    assert user["external_id"] == "u-1"
    assert user["attributes"] == {"plan": "team"}  # null removed first_name
    assert [e["name"] for e in user["events"]] == ["trial_started", "trial_started"]
    assert first.headers["x-ratelimit-limit"] == "3000"
    assert int(first.headers["x-ratelimit-remaining"]) == 2999
    assert int(first.headers["x-ratelimit-reset"]) >= int(time.time())


def test_one_object_over_the_combined_cap_is_refused_whole(
    braze: BrazeEmulator, http: httpx.Client
) -> None:
    at_cap = {
        "attributes": [attrs(f"u-{i}") for i in range(50)],
        "events": [{"external_id": f"u-{i}", "name": "e", "time": TIME} for i in range(25)],
    }
    over = {**at_cap, "purchases": [{"external_id": "u-0"}]}

    refused = http.post("/users/track", json=over)
    assert refused.status_code == 400
    assert refused.json()["message"] == "Max Input Length Exceeded"
    assert braze.state()["users"] == []
    assert http.post("/users/track", json=at_cap).status_code == 201
    assert len(braze.state()["users"]) == 50


def test_per_array_cap_counts_each_array_on_its_own() -> None:
    braze = BrazeEmulator(api_key=KEY, cap_mode="per_array", max_objects=3)
    with serve(braze) as http:
        three_each = {
            "attributes": [attrs(f"u-{i}") for i in range(3)],
            "events": [{"external_id": "u-0", "name": "e", "time": TIME}] * 3,
        }
        assert http.post("/users/track", json=three_each).status_code == 201
        four = {"attributes": [attrs(f"u-{i}") for i in range(4)]}
        assert http.post("/users/track", json=four).json() == {
            "message": "Max Input Length Exceeded"
        }


def test_partial_errors_point_at_array_and_index_and_the_rest_is_applied(
    braze: BrazeEmulator, http: httpx.Client
) -> None:
    braze.faults.reject({"u-blocked": "blocked by the emulator"})
    body = {
        "attributes": [attrs("u-1", plan="pro"), attrs("u-blocked", plan="x")],
        "events": [
            {"external_id": "u-1", "name": "opened", "time": TIME},
            {"name": "orphan", "time": TIME},
        ],
        "purchases": [
            {
                "external_id": "u-1",
                "product_id": "sku",
                "currency": "USD",
                "price": 1,
                "quantity": 101,
                "time": TIME,
            },
            {
                "external_id": "u-1",
                "product_id": "sku",
                "currency": "USD",
                "price": 2.5,
                "time": TIME,
            },
        ],
    }

    answer = http.post("/users/track", json=body)

    assert answer.status_code == 201
    out = answer.json()
    assert out["message"] == "success"
    assert (out["attributes_processed"], out["events_processed"], out["purchases_processed"]) == (
        1,
        1,
        1,
    )
    assert sorted((e["input_array"], e["index"], e["type"]) for e in out["errors"]) == [
        ("attributes", 1, "blocked by the emulator"),
        ("events", 1, "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"),
        ("purchases", 0, "'quantity' is not valid"),
    ]
    [user] = braze.state()["users"]
    assert user["attributes"] == {"plan": "pro"}
    assert [p["price"] for p in user["purchases"]] == [2.5]


def test_no_valid_object_is_a_fatal_400_with_the_errors(
    braze: BrazeEmulator, http: httpx.Client
) -> None:
    answer = http.post("/users/track", json={"attributes": [attrs("u-1", email="not-an-email")]})

    assert answer.status_code == 400
    body = answer.json()
    assert body["message"].startswith("Valid data must be provided")
    assert body["errors"] == [
        {
            "type": "The value provided for the 'email' field is not a valid email.",
            "input_array": "attributes",
            "index": 0,
        }
    ]
    assert http.post("/users/track", json={}).status_code == 400
    assert braze.state()["users"] == []


def test_alias_email_and_most_recent_external_id_identity_rules(
    braze: BrazeEmulator, http: httpx.Client
) -> None:
    alias = {"alias_name": "a-1", "alias_label": "crm"}
    http.post("/users/track", json={"attributes": [{"user_alias": alias, "plan": "x"}]})
    assert braze.state()["users"] == []  # alias-only updates existing profiles by default

    http.post(
        "/users/track",
        json={"attributes": [{"user_alias": alias, "_update_existing_only": False, "plan": "x"}]},
    )
    assert braze.user(user_alias=alias)["attributes"] == {"plan": "x"}  # type: ignore[index]

    http.post("/users/track", json={"attributes": [{"email": "solo@x.io", "plan": "solo"}]})
    solo = braze.user(email="SOLO@x.io")
    assert solo is not None and solo["external_id"] is None and solo["email"] == "solo@x.io"

    http.post(
        "/users/track",
        json={"attributes": [attrs("old", email="ann@x.io"), attrs("new", email="ann@x.io")]},
    )
    http.post("/users/track", json={"attributes": [{"email": "ann@x.io", "vip": True}]})
    assert braze.user(external_id="new")["attributes"] == {"vip": True}  # type: ignore[index]
    assert braze.user(external_id="old")["attributes"] == {}  # type: ignore[index]


def test_rate_limit_is_429_with_rate_headers_and_no_retry_after() -> None:
    braze = BrazeEmulator(api_key=KEY, track_rate_limit=2, track_rate_window=60)
    with serve(braze) as http:
        body = {"attributes": [attrs("u-1")]}
        assert [http.post("/users/track", json=body).status_code for _ in range(2)] == [201, 201]
        limited = http.post("/users/track", json=body)
        assert limited.status_code == 429
        assert limited.headers["x-ratelimit-limit"] == "2"
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert int(limited.headers["x-ratelimit-reset"]) > int(time.time())
        assert "retry-after" not in limited.headers
        # the other user endpoints count in their own window
        assert http.post("/users/delete", json={"external_ids": ["u-1"]}).status_code == 201
        assert braze.windows["/users/track"].refused == 1


def test_delete_caps_at_50_identifiers_and_removes_profiles(
    braze: BrazeEmulator, http: httpx.Client
) -> None:
    http.post(
        "/users/track",
        json={"attributes": [attrs("u-1"), attrs("u-2"), {"email": "e@x.io", "plan": "p"}]},
    )

    over = http.post("/users/delete", json={"external_ids": [f"u-{i}" for i in range(51)]})
    assert over.status_code == 400
    assert "max number of external_ids" in over.json()["message"]
    assert len(braze.state()["users"]) == 3

    done = http.post(
        "/users/delete", json={"external_ids": ["u-1", "nobody"], "email_addresses": ["E@x.io"]}
    )
    assert done.json() == {"deleted": 2, "message": "success"}
    assert [u["external_id"] for u in braze.state()["users"]] == ["u-2"]
    exported = http.post(
        "/users/export/ids",
        json={"external_ids": ["u-2", "u-1"], "fields_to_export": ["external_id"]},
    ).json()
    assert exported["users"] == [{"external_id": "u-2"}]
    assert exported["invalid_user_ids"] == ["u-1"]


def test_subscription_groups_set_membership(braze: BrazeEmulator, http: httpx.Client) -> None:
    groups = [
        {"subscription_group_id": "g-news", "subscription_state": "subscribed"},
        {"subscription_group_id": "g-promo", "subscription_state": "unsubscribed"},
    ]
    http.post("/users/track", json={"attributes": [attrs("u-1", subscription_groups=groups)]})
    bad = [{"subscription_group_id": "g-news", "subscription_state": "maybe"}]
    refused = http.post(
        "/users/track", json={"attributes": [attrs("u-1", subscription_groups=bad)]}
    )

    assert refused.status_code == 400
    assert braze.user(external_id="u-1")["subscription_groups"] == {  # type: ignore[index]
        "g-news": "subscribed",
        "g-promo": "unsubscribed",
    }


def test_fault_switches_answer_in_braze_shapes(braze: BrazeEmulator, http: httpx.Client) -> None:
    body = {"attributes": [attrs("u-1")]}
    http.post("/_emulator/faults", json={"fail_next": 1, "status": 503})
    failed = http.post("/users/track", json=body)
    braze.faults.fail_next(1, 202)
    queued = http.post("/users/track", json=body)
    braze.faults.rate_limit_next(1)
    limited = http.post("/users/track", json=body)

    assert failed.status_code == 503 and "message" in failed.json()
    assert queued.status_code == 202 and queued.json() == {"message": "queued"}
    assert limited.status_code == 429 and "x-ratelimit-reset" in limited.headers
    assert braze.state()["users"] == []
    assert http.post("/users/track", json=body).status_code == 201
    assert [c.status for c in braze.calls] == [503, 202, 429, 201]


def test_an_injected_rate_limit_names_the_reset_it_asks_for(
    braze: BrazeEmulator, http: httpx.Client
) -> None:
    braze.faults.rate_limit_next(1, retry_after=30)
    asked = time.time()

    limited = http.post("/users/track", json={"attributes": [attrs("u-1")]})

    assert limited.status_code == 429
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.headers["x-ratelimit-reset"]) >= asked + 30
    assert "retry-after" not in limited.headers


def test_destination_config_is_a_braze_destination_file() -> None:
    config = BrazeEmulator().destination_config("http://127.0.0.1:1")
    assert config == {
        "type": "braze",
        "base_url": "http://127.0.0.1:1",
        "api_key": "${env:BRAZE_API_KEY}",
    }
