"""Meta Custom Audiences emulator: its contract, checked with plain httpx on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backhaul.destinations.pii import PiiKey
from backhaul.destinations.pii import Platform
from backhaul.destinations.pii import prepare
from backhaul.destinations.pii import sha256_hex
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.meta import MetaEmulator

pytestmark = pytest.mark.integration

TOKEN = "EAAB-test-token-7f"
SECRET = "app-secret-31"
V = "/v25.0"


@pytest.fixture
def meta() -> Iterator[tuple[MetaEmulator, httpx.Client]]:
    emulator = MetaEmulator(access_token=TOKEN, app_secret=SECRET, rate_limit=10_000)
    with EmulatorServer(emulator) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield emulator, http


def email_hash(email: str) -> str:
    return prepare(Platform.META, PiiKey.EMAIL, email).value


def users(
    http: httpx.Client,
    audience: str,
    data: list[Any],
    *,
    schema: Any = "EMAIL_SHA256",
    method: str = "POST",
    session: dict[str, Any] | None = None,
    path: str = "users",
) -> httpx.Response:
    body: dict[str, Any] = {"access_token": TOKEN, "payload": {"schema": schema, "data": data}}
    if session is not None:
        body["session"] = session
    return http.request(method, f"{V}/{audience}/{path}", json=body)


def test_auth_token_bearer_and_appsecret_proof(meta: tuple[MetaEmulator, httpx.Client]) -> None:
    emulator, http = meta
    aud = emulator.audience_id
    assert http.get(f"{V}/{aud}").json()["error"]["code"] == 104
    bad = http.get(f"{V}/{aud}", params={"access_token": "nope"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, 190)
    assert bad.json()["error"]["type"] == "OAuthException" and bad.json()["error"]["fbtrace_id"]
    ok = http.get(f"{V}/{aud}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["id"] == aud
    proof = hmac.new(SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
    good = http.get(f"{V}/{aud}", params={"access_token": TOKEN, "appsecret_proof": proof})
    assert good.status_code == 200
    wrong = http.get(f"{V}/{aud}", params={"access_token": TOKEN, "appsecret_proof": "0" * 64})
    assert wrong.status_code == 400 and "appsecret_proof" in wrong.json()["error"]["message"]
    emulator.require_appsecret_proof = True
    assert http.get(f"{V}/{aud}", params={"access_token": TOKEN}).status_code == 400
    assert emulator.calls[-1].status == 400


def test_multi_key_rows_are_stored_and_unhashed_pii_is_counted_invalid(
    meta: tuple[MetaEmulator, httpx.Client],
) -> None:
    emulator, http = meta
    aud = emulator.audience_id
    schema = ["EMAIL", "PHONE", "FN", "COUNTRY", "EXTERN_ID"]
    good = [
        email_hash("ann@x.com"),
        prepare(Platform.META, PiiKey.PHONE, "+1 (650) 555-1234").value,
        sha256_hex("ann"),
        sha256_hex("us"),
        "cust-1",
    ]
    data = [
        good,
        [email_hash("bob@x.com"), "", "", "", "cust-2"],
        ["carol@x.com", "", "", "", "cust-3"],  # e-mail not hashed
        [email_hash("dan@x.com").upper(), "", "", "", ""],  # upper-case hex
        ["", "", "", "", ""],
    ]
    answer = users(http, aud, data, schema=schema)
    body = answer.json()
    assert answer.status_code == 200
    assert (body["audience_id"], body["num_received"], body["num_invalid_entries"]) == (aud, 5, 3)
    assert "carol@x.com" in body["invalid_entry_samples"]
    assert "not a SHA-256" in body["invalid_entry_samples"]["carol@x.com"]
    assert emulator.values(aud, "EMAIL") == {email_hash("ann@x.com"), email_hash("bob@x.com")}
    assert emulator.values(aud, "EXTERN_ID") == {"cust-1", "cust-2"}
    assert emulator.state()["audiences"][aud]["size"] == 2


def test_caps_and_payload_shape(meta: tuple[MetaEmulator, httpx.Client]) -> None:
    emulator, http = meta
    aud = emulator.audience_id
    rows = [sha256_hex(f"u{i}@x.com") for i in range(10_001)]
    over = users(http, aud, rows)
    assert over.status_code == 400
    assert over.json()["error"]["code"] == 100 and "10000" in over.json()["error"]["message"]
    assert emulator.size(aud) == 0
    assert users(http, aud, rows[:10_000]).json()["num_received"] == 10_000
    assert emulator.size(aud) == 10_000
    short = users(http, aud, [[sha256_hex("a")]], schema=["EMAIL", "PHONE"])
    assert short.status_code == 400 and "2 values" in short.json()["error"]["message"]
    assert users(http, aud, ["x"], schema=["NOPE"]).status_code == 400
    assert users(http, aud, [], schema="EMAIL_SHA256").status_code == 400


def test_form_encoded_payload_is_accepted(meta: tuple[MetaEmulator, httpx.Client]) -> None:
    emulator, http = meta
    aud = emulator.audience_id
    payload = {"schema": "EMAIL_SHA256", "data": [email_hash("f@x.com")]}
    answer = http.post(
        f"{V}/{aud}/users", data={"access_token": TOKEN, "payload": json.dumps(payload)}
    )
    assert answer.status_code == 200, answer.text
    assert emulator.values(aud) == {email_hash("f@x.com")}


def test_remove_takes_out_exactly_the_matching_members(
    meta: tuple[MetaEmulator, httpx.Client],
) -> None:
    emulator, http = meta
    aud = emulator.audience_id
    emails = [f"user{i}@example.com" for i in range(2_000)]
    hashes = [email_hash(e) for e in emails]
    for i in range(0, 2_000, 1_000):
        users(http, aud, hashes[i : i + 1_000])
    users(http, aud, hashes[:5])  # re-adding is a no-op
    gone = hashes[::10]
    answer = users(http, aud, gone, method="DELETE")
    assert answer.status_code == 200 and answer.json()["num_received"] == 200
    assert emulator.values(aud) == set(hashes) - set(gone)
    users(http, aud, gone, method="DELETE")  # removing absent users is a no-op
    assert emulator.size(aud) == 1_800


def test_session_batches_in_any_order_and_nothing_after_the_last(
    meta: tuple[MetaEmulator, httpx.Client],
) -> None:
    emulator, http = meta
    aud = emulator.audience_id
    hashes = [email_hash(f"s{i}@x.com") for i in range(30)]

    def batch(seq: int, last: bool = False, method: str = "POST") -> httpx.Response:
        session = {"session_id": 9778993, "batch_seq": seq, "last_batch_flag": last}
        session["estimated_num_total"] = 30
        return users(
            http,
            aud,
            hashes[(seq - 1) * 10 : seq * 10] or hashes[:1],
            method=method,
            session=session,
        )

    first = batch(2)
    assert first.status_code == 200 and first.json()["session_id"] == "9778993"
    assert batch(3, last=True).status_code == 200
    assert emulator.state()["sessions"]["9778993"]["done"] is False  # batch 1 still to come
    assert batch(2).status_code == 200  # a resent batch is harmless
    assert batch(1).status_code == 200
    state = emulator.state()["sessions"]["9778993"]
    assert (state["done"], state["batches"], state["num_received"]) == (True, [1, 2, 3], 40)
    late = batch(4)
    assert late.status_code == 400 and "ended with batch 3" in late.json()["error"]["message"]
    other_op = batch(1, method="DELETE")
    assert other_op.status_code == 400 and "another upload" in other_op.json()["error"]["message"]
    assert emulator.values(aud) == set(hashes)
    bad = users(http, aud, hashes[:1], session={"session_id": "x", "batch_seq": 1})
    assert bad.status_code == 400


def test_usersreplace_swaps_the_audience_when_its_session_completes(
    meta: tuple[MetaEmulator, httpx.Client],
) -> None:
    emulator, http = meta
    aud = emulator.audience_id
    users(http, aud, [email_hash("old@x.com")])
    assert users(http, aud, [email_hash("n1@x.com")], path="usersreplace").status_code == 400
    s1 = {"session_id": 7, "batch_seq": 1, "last_batch_flag": False}
    users(http, aud, [email_hash("n1@x.com")], path="usersreplace", session=s1)
    assert emulator.values(aud) == {email_hash("old@x.com")}  # staged until the last batch
    s2 = {"session_id": 7, "batch_seq": 2, "last_batch_flag": True}
    users(http, aud, [email_hash("n2@x.com")], path="usersreplace", session=s2)
    assert emulator.values(aud) == {email_hash("n1@x.com"), email_hash("n2@x.com")}


def test_rate_window_throttles_with_400_and_code_80003() -> None:
    emulator = MetaEmulator(access_token=TOKEN, rate_limit=3, rate_window=3600)
    with EmulatorServer(emulator) as server, httpx.Client(base_url=server.url) as http:
        aud = emulator.audience_id
        answers = [http.get(f"{V}/{aud}", params={"access_token": TOKEN}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 400]
    assert answers[3].json()["error"]["code"] == 80003
    usage = json.loads(answers[2].headers["x-business-use-case-usage"])
    entry = usage[emulator.business_id][0]
    assert (entry["type"], entry["call_count"]) == ("custom_audience", 100)
    regain = json.loads(answers[3].headers["x-business-use-case-usage"])
    assert regain[emulator.business_id][0]["estimated_time_to_regain_access"] == 60
    assert emulator.window.refused == 1


def test_fault_switches_use_graph_shapes(meta: tuple[MetaEmulator, httpx.Client]) -> None:
    emulator, http = meta
    aud = emulator.audience_id
    emulator.faults.fail_next(1, 503)
    failed = users(http, aud, [email_hash("a@x.com")])
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == 2 and failed.json()["error"]["is_transient"] is True
    emulator.faults.rate_limit_next(1)
    throttled = users(http, aud, [email_hash("a@x.com")])
    assert (throttled.status_code, throttled.json()["error"]["code"]) == (400, 80003)
    assert emulator.size(aud) == 0
    emulator.faults.reject({email_hash("b@x.com"): "Flagged by review"})
    mixed = users(http, aud, [email_hash("a@x.com"), email_hash("b@x.com")]).json()
    assert mixed["num_invalid_entries"] == 1
    assert mixed["invalid_entry_samples"] == {email_hash("b@x.com"): "Flagged by review"}
    assert emulator.values(aud) == {email_hash("a@x.com")}


def test_audiences_created_read_and_deleted(meta: tuple[MetaEmulator, httpx.Client]) -> None:
    emulator, http = meta
    created = http.post(
        f"{V}/act_{emulator.ad_account_id}/customaudiences",
        data={"access_token": TOKEN, "name": "Churn risk", "subtype": "CUSTOM"},
    )
    new_id = created.json()["id"]
    assert http.get(f"{V}/{new_id}", params={"access_token": TOKEN}).json()["name"] == "Churn risk"
    missing = http.get(f"{V}/999", params={"access_token": TOKEN}).json()["error"]
    assert missing["error_subcode"] == 33
    emulator.delete_audience(new_id)
    deleted = users(http, new_id, [email_hash("a@x.com")])
    assert deleted.json()["error"]["error_subcode"] == 1487366
    wrong_version = http.get(f"/latest/{emulator.audience_id}", params={"access_token": TOKEN})
    assert wrong_version.status_code == 400
    emulator.reset()
    assert emulator.state()["sessions"] == {} and len(emulator.audiences) == 1


def test_me_answers_for_a_valid_token_only(meta: tuple[MetaEmulator, httpx.Client]) -> None:
    _, http = meta
    me = http.get(f"{V}/me", params={"access_token": TOKEN})
    assert me.status_code == 200 and me.json()["id"]
    bad = http.get(f"{V}/me", params={"access_token": "nope"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, 190)


def test_destination_file_is_one_for_meta_audiences(
    meta: tuple[MetaEmulator, httpx.Client],
) -> None:
    emulator, _ = meta
    config = emulator.destination_config("http://127.0.0.1:1")
    assert config == {
        "type": "meta_audiences",
        "access_token": "${env:META_ACCESS_TOKEN}",
        "app_secret": "${env:META_APP_SECRET}",
        "base_url": "http://127.0.0.1:1",
    }
