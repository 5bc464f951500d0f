"""Google Ads Customer Match emulator: its contract, checked with plain httpx on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backhaul.destinations.pii import PiiKey
from backhaul.destinations.pii import Platform
from backhaul.destinations.pii import prepare
from backhaul.destinations.pii import sha256_hex
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.google_ads import GoogleAdsEmulator

pytestmark = pytest.mark.integration

CID = "7693729833"
DEV = "dev-token-test"
TOKEN = "ya29.test-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "developer-token": DEV}
V = f"/v23/customers/{CID}"


@pytest.fixture
def ads() -> Iterator[tuple[GoogleAdsEmulator, httpx.Client]]:
    emulator = GoogleAdsEmulator(developer_token=DEV, access_token=TOKEN, customer_id=CID)
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http,
    ):
        yield emulator, http


def email(address: str) -> dict[str, str]:
    return {"hashedEmail": prepare(Platform.GOOGLE, PiiKey.EMAIL, address).value}


def create_job(http: httpx.Client, user_list: str) -> str:
    body = {
        "job": {
            "type": "CUSTOMER_MATCH_USER_LIST",
            "customerMatchUserListMetadata": {
                "userList": user_list,
                "consent": {"adPersonalization": "GRANTED", "adUserData": "GRANTED"},
            },
        }
    }
    answer = http.post(f"{V}/offlineUserDataJobs:create", json=body)
    assert answer.status_code == 200, answer.text
    name: str = answer.json()["resourceName"]
    assert name.startswith(f"customers/{CID}/offlineUserDataJobs/")
    return name


def add_ops(http: httpx.Client, job: str, ops: list[Any], partial: bool = True) -> httpx.Response:
    body = {"enablePartialFailure": partial, "operations": ops}
    return http.post(f"/v23/{job}:addOperations", json=body)


def status(http: httpx.Client, job: str) -> str:
    query = (
        "SELECT offline_user_data_job.status FROM offline_user_data_job "
        f"WHERE offline_user_data_job.resource_name = '{job}'"
    )
    rows = http.post(f"{V}/googleAds:search", json={"query": query}).json()["results"]
    assert len(rows) == 1
    return str(rows[0]["offlineUserDataJob"]["status"])


def run_to_end(http: httpx.Client, job: str) -> str:
    assert http.post(f"/v23/{job}:run").status_code == 200
    for _ in range(5):
        state = status(http, job)
        if state in ("SUCCESS", "FAILED"):
            return state
    raise AssertionError("the job never finished")


def test_auth_needs_a_bearer_token_and_the_developer_token(
    ads: tuple[GoogleAdsEmulator, httpx.Client],
) -> None:
    emulator, http = ads
    url = f"{V}/googleAds:search"
    query = {"query": "SELECT user_list.id FROM user_list"}
    assert http.post(url, json=query).status_code == 200
    no_token = http.post(url, json=query, headers={"Authorization": "Bearer nope"})
    assert no_token.status_code == 401 and no_token.json()["error"]["status"] == "UNAUTHENTICATED"
    no_dev = http.post(url, json=query, headers={"developer-token": "nope"})
    assert no_dev.status_code == 401
    other = http.post("/v23/customers/111/googleAds:search", json=query)
    assert other.status_code == 403
    dashed = http.post(url, json=query, headers={"login-customer-id": "123-456-7890"})
    assert dashed.status_code == 400
    # The token endpoint exchanges the refresh token for a working access token.
    form = {
        "grant_type": "refresh_token",
        "client_id": emulator.oauth.client_id,
        "client_secret": emulator.oauth.client_secret,
        "refresh_token": emulator.oauth.refresh_token,
    }
    issued = httpx.post(f"{http.base_url}/token", data=form).json()
    assert issued["token_type"] == "Bearer" and issued["expires_in"] == 3599
    fresh = {"Authorization": f"Bearer {issued['access_token']}"}
    assert http.post(url, json=query, headers=fresh).status_code == 200
    bad = httpx.post(f"{http.base_url}/token", data={**form, "refresh_token": "x"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_grant")


def test_lifecycle_create_add_run_poll_then_members_change(
    ads: tuple[GoogleAdsEmulator, httpx.Client],
) -> None:
    emulator, http = ads
    ul = emulator.user_list
    job = create_job(http, ul)
    phone = prepare(Platform.GOOGLE, PiiKey.PHONE, "+1 (650) 555-1234").value
    address = {
        "hashedFirstName": sha256_hex("ann"),
        "hashedLastName": sha256_hex("lee"),
        "countryCode": "US",
        "postalCode": "94045",
    }
    ops = [
        {"create": {"userIdentifiers": [email("ann@x.com"), {"hashedPhoneNumber": phone}]}},
        {"create": {"userIdentifiers": [{"addressInfo": address}]}},
    ]
    assert add_ops(http, job, ops).json() == {}
    assert emulator.size(ul) == 0  # nothing applies before the job runs
    assert http.post(f"/v23/{job}:run").json()["name"].startswith(f"customers/{CID}/operations/")
    assert status(http, job) == "RUNNING"
    assert emulator.size(ul) == 0
    assert status(http, job) == "SUCCESS"
    assert emulator.values(ul) == {email("ann@x.com")["hashedEmail"]}
    assert emulator.values(ul, "hashedPhoneNumber") == {phone}
    assert emulator.size(ul) == 2
    late = add_ops(http, job, ops)
    assert late.status_code == 400
    assert "JOB_ALREADY_STARTED" in late.text


def test_partial_failure_keeps_the_good_operations_and_locates_the_bad(
    ads: tuple[GoogleAdsEmulator, httpx.Client],
) -> None:
    emulator, http = ads
    ul = emulator.user_list
    job = create_job(http, ul)
    ops = [
        {"create": {"userIdentifiers": [email("a@x.com")]}},
        {"create": {"userIdentifiers": [{"hashedEmail": "b@x.com"}]}},  # not hashed
        {"create": {"userIdentifiers": [email("c@x.com")] * 21}},  # over 20 per operation
        {"create": {"userIdentifiers": [{"hashedPhoneNumber": "+16505551234"}]}},
        {"create": {"userIdentifiers": [{"mobileId": "ab0c5f2e-1d3a-4e55-9c3b-0f1e2d3c4b5a"}]}},
    ]
    answer = add_ops(http, job, ops)
    assert answer.status_code == 200
    failure = answer.json()["partialFailureError"]
    assert failure["code"] == 3 and failure["message"].startswith("Multiple errors")
    errors = failure["details"][0]["errors"]
    codes = [e["errorCode"]["offlineUserDataJobError"] for e in errors]
    assert codes == [
        "INVALID_SHA256_FORMAT",
        "TOO_MANY_USER_IDENTIFIERS",
        "INVALID_SHA256_FORMAT",
        "INCOMPATIBLE_UPLOAD_KEY_TYPE",
    ]
    path = errors[0]["location"]["fieldPathElements"]
    assert path == [
        {"fieldName": "operations", "index": 1},
        {"fieldName": "create"},
        {"fieldName": "user_identifiers", "index": 0},
        {"fieldName": "hashed_email"},
    ]
    assert errors[0]["message"] == "The SHA256 encoded value is malformed."
    assert run_to_end(http, job) == "SUCCESS"
    assert emulator.values(ul) == {email("a@x.com")["hashedEmail"]}


def test_without_partial_failure_one_bad_operation_refuses_the_request(
    ads: tuple[GoogleAdsEmulator, httpx.Client],
) -> None:
    emulator, http = ads
    job = create_job(http, emulator.user_list)
    ops = [
        {"create": {"userIdentifiers": [email("a@x.com")]}},
        {"create": {"userIdentifiers": [{"hashedEmail": sha256_hex("b").upper()}]}},
    ]
    answer = add_ops(http, job, ops, partial=False)
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert run_to_end(http, job) == "SUCCESS"
    assert emulator.size(emulator.user_list) == 0


def test_request_cap_remove_all_order_and_no_mixing(
    ads: tuple[GoogleAdsEmulator, httpx.Client],
) -> None:
    emulator, http = ads
    ul = emulator.user_list
    job = create_job(http, ul)
    many = [{"create": {"userIdentifiers": [email(f"u{i}@x.com")]}} for i in range(100_001)]
    over = add_ops(http, job, many)
    assert over.status_code == 400 and "TOO_MANY_USER_IDENTIFIERS" in over.text
    assert add_ops(http, job, many[:100_000]).json() == {}
    mixed = add_ops(http, job, [{"remove": {"userIdentifiers": [email("u1@x.com")]}}])
    assert "CONFLICTING_OPERATION" in mixed.text
    late_remove_all = add_ops(http, job, [{"removeAll": True}])
    assert "INVALID_OPERATION_ORDER" in late_remove_all.text
    assert run_to_end(http, job) == "SUCCESS"
    assert emulator.size(ul) == 100_000
    # A job that starts with removeAll replaces the list.
    job2 = create_job(http, ul)
    ops = [{"removeAll": True}, {"create": {"userIdentifiers": [email("only@x.com")]}}]
    assert add_ops(http, job2, ops).json() == {}
    assert run_to_end(http, job2) == "SUCCESS"
    assert emulator.values(ul) == {email("only@x.com")["hashedEmail"]}
    # The ordering rule is a setting (unverified beyond the error's description).
    emulator.remove_all_first = False
    job3 = create_job(http, ul)
    ops = [{"create": {"userIdentifiers": [email("x@x.com")]}}, {"removeAll": True}]
    assert add_ops(http, job3, ops).json() == {}
    assert run_to_end(http, job3) == "SUCCESS"
    assert emulator.size(ul) == 0


def test_remove_takes_out_exactly_the_matching_members(
    ads: tuple[GoogleAdsEmulator, httpx.Client],
) -> None:
    emulator, http = ads
    ul = emulator.user_list
    hashes = [email(f"m{i}@example.com") for i in range(1_000)]
    job = create_job(http, ul)
    add_ops(http, job, [{"create": {"userIdentifiers": [h]}} for h in hashes])
    run_to_end(http, job)
    gone = hashes[::10]
    job = create_job(http, ul)
    add_ops(http, job, [{"remove": {"userIdentifiers": [h]}} for h in gone])
    assert run_to_end(http, job) == "SUCCESS"
    assert emulator.values(ul) == {h["hashedEmail"] for h in hashes} - {
        h["hashedEmail"] for h in gone
    }


def test_a_second_job_on_a_list_cannot_run_while_one_runs(
    ads: tuple[GoogleAdsEmulator, httpx.Client],
) -> None:
    emulator, http = ads
    ul = emulator.user_list
    first, second = create_job(http, ul), create_job(http, ul)
    for job in (first, second):
        add_ops(http, job, [{"create": {"userIdentifiers": [email("x@x.com")]}}])
    assert http.post(f"/v23/{first}:run").status_code == 200
    refused = http.post(f"/v23/{second}:run")
    assert refused.status_code == 400
    code = refused.json()["error"]["details"][0]["errors"][0]["errorCode"]
    assert code == {"databaseError": "CONCURRENT_MODIFICATION"}
    # A job on another list is not affected.
    other = create_job(http, emulator.add_user_list("Other list"))
    add_ops(http, other, [{"create": {"userIdentifiers": [email("y@x.com")]}}])
    assert http.post(f"/v23/{other}:run").status_code == 200
    emulator.finish_jobs()
    assert run_to_end(http, second) == "SUCCESS"


def test_unknown_list_failed_jobs_and_list_creation(
    ads: tuple[GoogleAdsEmulator, httpx.Client],
) -> None:
    emulator, http = ads
    bad = http.post(
        f"{V}/offlineUserDataJobs:create",
        json={
            "job": {
                "type": "CUSTOMER_MATCH_USER_LIST",
                "customerMatchUserListMetadata": {"userList": f"customers/{CID}/userLists/1"},
            }
        },
    )
    assert "INVALID_USER_LIST_ID" in bad.text
    made = http.post(
        f"{V}/userLists:mutate",
        json={"operations": [{"create": {"name": "VIPs", "crmBasedUserList": {}}}]},
    )
    ul = made.json()["results"][0]["resourceName"]
    again = http.post(f"{V}/userLists:mutate", json={"operations": [{"create": {"name": "VIPs"}}]})
    assert "NAME_ALREADY_USED" in again.text
    emulator.fail_next_jobs(1)
    job = create_job(http, ul)
    add_ops(http, job, [{"create": {"userIdentifiers": [email("z@x.com")]}}])
    assert run_to_end(http, job) == "FAILED"
    assert emulator.size(ul) == 0
    assert emulator.state()["jobs"][job]["failure_reason"] == "UNKNOWN"


def test_quota_window_and_fault_switches() -> None:
    emulator = GoogleAdsEmulator(
        developer_token=DEV, access_token=TOKEN, customer_id=CID, rate_limit=2
    )
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(base_url=server.url, headers=HEADERS) as http,
    ):
        query = {"query": "SELECT user_list.id FROM user_list"}
        answers = [http.post(f"{V}/googleAds:search", json=query) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        error = answers[2].json()["error"]
        assert error["status"] == "RESOURCE_EXHAUSTED"
        detail = error["details"][0]["errors"][0]
        assert detail["errorCode"] == {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"}
        assert detail["details"]["quotaErrorDetails"]["retryDelay"].endswith("s")
        emulator.window = type(emulator.window)(100, 60)
        emulator.faults.fail_next(1, 503)
        failed = http.post(f"{V}/googleAds:search", json=query)
        assert (failed.status_code, failed.json()["error"]["status"]) == (503, "UNAVAILABLE")
        emulator.faults.reject({sha256_hex("r@x.com"): "Blocked for this test"})
        job = create_job(http, emulator.user_list)
        ops = [{"create": {"userIdentifiers": [{"hashedEmail": sha256_hex("r@x.com")}]}}]
        rejected = add_ops(http, job, ops).json()["partialFailureError"]
        assert rejected["message"] == "Blocked for this test"


def test_job_rows_name_their_list_and_filter_by_status(
    ads: tuple[GoogleAdsEmulator, httpx.Client],
) -> None:
    emulator, http = ads
    emulator.polls_to_finish = 100
    ul = emulator.user_list
    running, pending = create_job(http, ul), create_job(http, ul)
    add_ops(http, running, [{"create": {"userIdentifiers": [email("x@x.com")]}}])
    assert http.post(f"/v23/{running}:run").status_code == 200
    query = (
        "SELECT offline_user_data_job.resource_name, "
        "offline_user_data_job.customer_match_user_list_metadata.user_list "
        "FROM offline_user_data_job WHERE offline_user_data_job.status = 'RUNNING'"
    )
    rows = http.post(f"{V}/googleAds:search", json={"query": query}).json()["results"]
    assert [r["offlineUserDataJob"]["resourceName"] for r in rows] == [running]
    assert rows[0]["offlineUserDataJob"]["customerMatchUserListMetadata"] == {"userList": ul}
    everything = "SELECT offline_user_data_job.status FROM offline_user_data_job"
    rows = http.post(f"{V}/googleAds:search", json={"query": everything}).json()["results"]
    assert {r["offlineUserDataJob"]["resourceName"] for r in rows} == {running, pending}


def test_destination_file_uses_the_emulators_token_endpoint(
    ads: tuple[GoogleAdsEmulator, httpx.Client],
) -> None:
    emulator, _ = ads
    config = emulator.destination_config("http://127.0.0.1:1")
    assert config["type"] == "google_ads"
    assert config["token_url"] == "http://127.0.0.1:1/token"
    assert config["customer_id"] == CID
    assert config["developer_token"] == "${env:GOOGLE_ADS_DEVELOPER_TOKEN}"
