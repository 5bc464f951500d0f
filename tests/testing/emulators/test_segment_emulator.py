"""The Segment emulator's contract, proven with plain HTTP calls."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.segment import SegmentEmulator

pytestmark = pytest.mark.integration

KEY = "sgTestWriteKey000000000000000042"


@contextmanager
def serve(emulator: SegmentEmulator) -> Iterator[httpx.Client]:
    with EmulatorServer(emulator) as server, httpx.Client(base_url=server.url) as client:
        yield client


@pytest.fixture
def seg() -> SegmentEmulator:
    return SegmentEmulator(write_key=KEY)


@pytest.fixture
def http(seg: SegmentEmulator) -> Iterator[httpx.Client]:
    with serve(seg) as client:
        yield client


def send(
    http: httpx.Client, path: str, body: dict[str, Any], key: str | None = KEY
) -> httpx.Response:
    payload = {**body, "writeKey": key} if key is not None else body
    return http.post(path, json=payload)


def raw(http: httpx.Client, path: str, text: str) -> httpx.Response:
    return http.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


def test_write_key_in_body_or_basic_missing_is_400_unknown_is_a_silent_drop(
    seg: SegmentEmulator, http: httpx.Client
) -> None:
    assert send(http, "/v1/identify", {"userId": "u-1"}).json() == {"success": True}
    for user in (f"{KEY}:", KEY):  # with the colon, and without (still accepted)
        basic = "Basic " + base64.b64encode(user.encode()).decode()
        answer = http.post("/v1/identify", json={"userId": "u-2"}, headers={"Authorization": basic})
        assert answer.status_code == 200
    missing = send(http, "/v1/identify", {"userId": "u-3"}, key=None)
    unknown = send(http, "/v1/identify", {"userId": "u-4", "messageId": "m-4"}, key="nope")

    assert missing.status_code == 400 and missing.json()["success"] is False
    assert unknown.status_code == 200 and unknown.json() == {"success": True}
    state = seg.state()
    assert sorted(state["users"]) == ["u-1", "u-2"]
    assert {"messageId": "m-4", "reason": "invalid write key"} in state["dropped"]


def test_content_type_must_be_json(seg: SegmentEmulator, http: httpx.Client) -> None:
    answer = http.post(
        "/v1/track",
        content=json.dumps({"userId": "u", "event": "e", "writeKey": KEY}),
        headers={"Content-Type": "text/plain"},
    )
    assert answer.status_code == 400
    assert seg.state()["events"] == []


def test_a_call_over_32_kb_is_400_and_one_of_exactly_32_kb_passes(
    seg: SegmentEmulator, http: httpx.Client
) -> None:
    def body_of(size: int) -> str:
        head = json.dumps({"userId": "u-1", "writeKey": KEY, "traits": {"pad": ""}})
        return head.replace('"pad": ""', '"pad": "' + "x" * (size - len(head)) + '"')

    exact, over = body_of(32 * 1024), body_of(32 * 1024 + 1)
    assert (len(exact), len(over)) == (32768, 32769)
    assert raw(http, "/v1/identify", over).status_code == 400
    assert seg.state()["users"] == {}
    assert raw(http, "/v1/identify", exact).status_code == 200


def test_batch_caps_500_kb_per_request_and_32_kb_per_message(
    seg: SegmentEmulator, http: httpx.Client
) -> None:
    message = {"type": "identify", "userId": "u", "traits": {"pad": "x" * 20_000}}
    big = [{**message, "userId": f"u-{i}"} for i in range(26)]  # about 520 KB
    over_batch = send(http, "/v1/batch", {"batch": big})
    assert len(json.dumps({"batch": big})) > 500 * 1024
    assert over_batch.status_code == 400

    huge = {"type": "identify", "userId": "h", "traits": {"pad": "x" * 33_000}}
    over_message = send(http, "/v1/batch", {"batch": [{"type": "identify", "userId": "s"}, huge]})
    assert over_message.status_code == 400
    assert seg.state()["users"] == {} and seg.state()["accepted"] == 0
    assert send(http, "/v1/batch", {"batch": big[:24]}).status_code == 200
    assert len(seg.state()["users"]) == 24


def test_messages_past_2500_in_one_batch_are_dropped_with_a_200(
    seg: SegmentEmulator, http: httpx.Client
) -> None:
    batch = [
        {"type": "track", "userId": "u", "event": "e", "messageId": f"m{i}"} for i in range(2501)
    ]
    assert send(http, "/v1/batch", {"batch": batch}).status_code == 200
    state = seg.state()
    assert state["accepted"] == 2500 and len(state["events"]) == 2500
    assert state["dropped"] == [
        {"messageId": "m2500", "reason": "more than 2500 messages in a batch"}
    ]


def test_invalid_messages_are_answered_200_and_dropped_with_a_reason(
    seg: SegmentEmulator, http: httpx.Client
) -> None:
    seg.faults.reject({"u-blocked": "refused by the emulator"})
    batch = [
        {"type": "track", "event": "no user", "messageId": "a"},
        {"type": "track", "userId": "u-1", "messageId": "b"},
        {"type": "identify", "userId": "u-1", "messageId": "c" * 100},
        {"type": "bogus", "userId": "u-1", "messageId": "d"},
        {"type": "identify", "userId": "u-blocked", "messageId": "e"},
        {"type": "track", "userId": "u-1", "event": "kept", "messageId": "f"},
    ]
    assert send(http, "/v1/batch", {"batch": batch}).json() == {"success": True}
    reasons = {d["messageId"]: d["reason"] for d in seg.state()["dropped"]}
    assert reasons["a"] == "no_user_anon_id"
    assert reasons["b"] == "track event is missing name"
    assert reasons["c" * 100].startswith("messageId must be fewer than 100")
    assert reasons["d"].startswith("type must be one of")
    assert reasons["e"] == "refused by the emulator"
    assert [e["event"] for e in seg.state()["events"]] == ["kept"]


def test_message_ids_are_deduplicated(seg: SegmentEmulator, http: httpx.Client) -> None:
    first = {"userId": "u-1", "traits": {"plan": "pro"}, "messageId": "m-1"}
    send(http, "/v1/identify", first)
    send(http, "/v1/batch", {"batch": [{**first, "type": "identify", "traits": {"plan": "x"}}]})
    send(http, "/v1/identify", {"userId": "u-1", "traits": {"seats": 3}})  # id assigned

    state = seg.state()
    assert state["duplicates"] == ["m-1"]
    assert state["accepted"] == 2
    assert state["users"]["u-1"]["traits"] == {"plan": "pro", "seats": 3}


def test_identity_anonymous_ids_aliases_and_batch_context(
    seg: SegmentEmulator, http: httpx.Client
) -> None:
    batch = [
        {"type": "identify", "anonymousId": "anon-1", "traits": {"source": "ad", "plan": "free"}},
        {"type": "identify", "userId": "u-1", "anonymousId": "anon-1", "traits": {"plan": "pro"}},
        {"type": "track", "userId": "u-1", "event": "Paid", "context": {"ip": "1.2.3.4"}},
        {"type": "identify", "userId": "old-id", "traits": {"legacy": True}},
        {"type": "alias", "previousId": "old-id", "userId": "u-1"},
        {"type": "group", "userId": "u-1", "groupId": "acme", "traits": {"name": "Acme"}},
    ]
    send(http, "/v1/batch", {"batch": batch, "context": {"ip": "0.0.0.0", "app": "crm"}})

    state = seg.state()
    assert list(state["users"]) == ["u-1"]
    user = state["users"]["u-1"]
    assert user["traits"] == {"source": "ad", "plan": "pro", "legacy": True}
    assert sorted(user["anonymousIds"]) == ["anon-1", "old-id"]
    [event] = state["events"]
    assert event["context"] == {"ip": "1.2.3.4", "app": "crm"}
    assert state["groups"]["acme"] == {"traits": {"name": "Acme"}, "members": ["u-1"]}


def test_rate_limit_is_429_with_retry_after_and_reset_seconds() -> None:
    seg = SegmentEmulator(write_key=KEY, rate_limit=2, rate_window=30)
    with serve(seg) as http:
        codes = [send(http, "/v1/identify", {"userId": "u"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = send(http, "/v1/identify", {"userId": "u"})
        wait = int(limited.headers["retry-after"])
        assert 1 <= wait <= 30 and limited.headers["x-ratelimit-reset"] == str(wait)


def test_fault_switches_answer_in_segment_shapes(seg: SegmentEmulator, http: httpx.Client) -> None:
    http.post("/_emulator/faults", json={"fail_next": 1, "status": 502, "rate_limit_next": 1})
    failed = send(http, "/v1/identify", {"userId": "u"})
    limited = send(http, "/v1/identify", {"userId": "u"})

    assert failed.status_code == 502 and failed.json()["success"] is False
    assert limited.status_code == 429 and "retry-after" in limited.headers
    assert seg.state()["users"] == {}
