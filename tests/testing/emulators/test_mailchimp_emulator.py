"""The Mailchimp emulator's contract, proven with plain HTTP calls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.mailchimp import MailchimpEmulator

pytestmark = pytest.mark.integration

KEY = "5f0c2a9e7d1b4c3a8e6f0d2b9c7a1e35-us6"
LIST = "/3.0/lists/list01"
URIST_HASH = "62eeb292278cc15f5817cb78f7790b08"  # md5 of the lower-cased example address


@contextmanager
def serve(emulator: MailchimpEmulator) -> Iterator[httpx.Client]:
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(base_url=server.url, auth=("anystring", KEY), timeout=30) as client,
    ):
        yield client


@pytest.fixture
def mc() -> MailchimpEmulator:
    return MailchimpEmulator(api_key=KEY, lists={"list01": "Customers"})


@pytest.fixture
def http(mc: MailchimpEmulator) -> Iterator[httpx.Client]:
    with serve(mc) as client:
        yield client


def member(email: str, **fields: Any) -> dict[str, Any]:
    return {"email_address": email, **fields}


def batch(http: httpx.Client, *members: dict[str, Any], **options: Any) -> dict[str, Any]:
    answer = http.post(LIST, json={"members": list(members), **options})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_auth_is_basic_with_the_key_as_password_or_bearer(
    mc: MailchimpEmulator, http: httpx.Client
) -> None:
    assert http.get("/3.0/ping").json() == {"health_status": "Everything's Chimpy!"}
    assert http.get("/3.0/ping", auth=("someone-else", KEY)).status_code == 200
    bearer = http.get("/3.0/ping", headers={"Authorization": f"Bearer {mc.oauth_token}"})
    assert bearer.status_code == 200
    for auth in (("anystring", "wrong-us6"), (KEY, "")):
        refused = http.get("/3.0/ping", auth=auth)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["title"] == "API Key Invalid"


def test_members_are_addressed_by_the_md5_of_the_lower_cased_email(
    mc: MailchimpEmulator, http: httpx.Client
) -> None:
    put = http.put(
        f"{LIST}/members/{URIST_HASH}",
        json=member("Urist.McVankab@FreddiesJokes.com", status_if_new="subscribed"),
    )
    assert put.status_code == 200 and put.json()["id"] == URIST_HASH

    by_hash = http.get(f"{LIST}/members/{URIST_HASH}").json()
    by_address = http.get(f"{LIST}/members/urist.mcvankab@freddiesjokes.com").json()
    assert by_hash["status"] == by_address["status"] == "subscribed"
    mismatch = http.put(
        f"{LIST}/members/{URIST_HASH}", json=member("other@x.io", status="subscribed")
    )
    assert mismatch.status_code == 400 and mismatch.json()["title"] == "Invalid Resource"
    missing = http.get(f"{LIST}/members/{'0' * 32}")
    assert missing.status_code == 404 and missing.json()["title"] == "Resource Not Found"
    assert http.get("/3.0/lists/nolist/members").status_code == 404


def test_batch_over_500_members_is_refused_whole() -> None:
    mc = MailchimpEmulator(api_key=KEY, lists={"list01": "Customers"})
    with serve(mc) as http:
        members = [member(f"u{i}@x.io", status="subscribed") for i in range(501)]
        refused = http.post(LIST, json={"members": members})
        assert refused.status_code == 400
        assert refused.json()["title"] == "Invalid Resource"
        assert mc.state()["lists"]["list01"]["members"] == {}
        assert batch(http, *members[:500])["total_created"] == 500


def test_batch_upsert_reports_new_updated_and_per_member_errors(
    mc: MailchimpEmulator, http: httpx.Client
) -> None:
    batch(http, member("ann@x.io", status="subscribed", merge_fields={"FNAME": "Ann"}))
    mc.faults.reject({"blocked@x.io": "blocked by the emulator"})

    body = batch(
        http,
        member("ANN@x.io", merge_fields={"LNAME": "Lee"}, status_if_new="pending"),
        member("bob@x.io", status_if_new="pending", status="subscribed"),
        member("bad@x", status="subscribed"),
        member("nostatus@x.io"),
        member("weird@x.io", status="maybe"),
        member("blocked@x.io", status="subscribed"),
        update_existing=True,
    )

    assert (body["total_created"], body["total_updated"], body["error_count"]) == (1, 1, 4)
    assert body["updated_members"][0]["status"] == "subscribed"  # status_if_new ignored
    assert body["new_members"][0]["status"] == "pending"
    errors = {e["email_address"]: e for e in body["errors"]}
    assert errors["bad@x"]["error_code"] == "ERROR_GENERIC"
    assert "looks fake or invalid" in errors["bad@x"]["error"]
    assert errors["nostatus@x.io"]["field"] == "status"
    assert errors["weird@x.io"]["field"] == "status"
    assert errors["blocked@x.io"]["error"] == "blocked by the emulator"
    ann = mc.member("list01", "ann@x.io")
    assert ann is not None and ann["merge_fields"] == {"FNAME": "Ann", "LNAME": "Lee"}

    again = batch(http, member("bob@x.io", status="unsubscribed"), update_existing=False)
    assert again["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"
    assert mc.member("list01", "bob@x.io")["status"] == "pending"  # type: ignore[index]


def test_archive_can_be_undone_but_a_permanent_delete_cannot(
    mc: MailchimpEmulator, http: httpx.Client
) -> None:
    batch(
        http,
        member("a@x.io", status="subscribed"),
        member("b@x.io", status="subscribed"),
    )
    assert http.delete(f"{LIST}/members/a@x.io").status_code == 204
    assert http.get(f"{LIST}/members/a@x.io").json()["status"] == "archived"
    assert list(mc.state()["lists"]["list01"]["members"]) == ["b@x.io"]
    assert batch(http, member("a@x.io", status="subscribed"))["total_created"] == 1

    gone = http.post(f"{LIST}/members/b@x.io/actions/delete-permanent")
    assert gone.status_code == 204
    assert http.get(f"{LIST}/members/b@x.io").status_code == 404
    error = batch(http, member("b@x.io", status="subscribed"), update_existing=True)["errors"][0]
    assert "permanently deleted" in error["error"]
    put = http.put(f"{LIST}/members/b@x.io", json=member("b@x.io", status_if_new="subscribed"))
    assert put.status_code == 400 and put.json()["title"] == "Forgotten Email Not Subscribed"
    assert list(mc.state()["lists"]["list01"]["members"]) == ["a@x.io"]


def test_tags_are_added_and_removed_by_name(mc: MailchimpEmulator, http: httpx.Client) -> None:
    batch(http, member("a@x.io", status="subscribed", tags=["vip", "beta"]))

    changed = http.post(
        f"{LIST}/members/a@x.io/tags",
        json={"tags": [{"name": "beta", "status": "inactive"}, {"name": "q3", "status": "active"}]},
    )
    bad = http.post(f"{LIST}/members/a@x.io/tags", json={"tags": [{"name": "x"}]})

    assert changed.status_code == 204
    assert bad.status_code == 400
    names = [t["name"] for t in http.get(f"{LIST}/members/a@x.io/tags").json()["tags"]]
    assert names == ["vip", "q3"]
    state = mc.state()["lists"]["list01"]["members"]["a@x.io"]
    assert state["tags_count"] == 2


def test_members_page_counts_and_caps(mc: MailchimpEmulator, http: httpx.Client) -> None:
    batch(http, *(member(f"u{i}@x.io", status="subscribed") for i in range(5)))
    page = http.get(f"{LIST}/members", params={"count": 2, "offset": 4}).json()
    assert page["total_items"] == 5 and len(page["members"]) == 1
    assert http.get(f"{LIST}/members", params={"count": 1001}).status_code == 400


def test_more_simultaneous_connections_than_allowed_get_429_without_headers() -> None:
    mc = MailchimpEmulator(api_key=KEY, lists={"list01": "Customers"}, max_connections=2)
    with serve(mc) as http:
        mc.faults.latency = 1.0  # keeps the admitted requests open while the third arrives
        answers: list[httpx.Response] = []

        def call() -> None:
            answers.append(http.get("/3.0/ping"))

        threads = [threading.Thread(target=call) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        mc.faults.latency = 0

        assert sorted(a.status_code for a in answers) == [200, 200, 429]
        [limited] = [a for a in answers if a.status_code == 429]
        assert limited.json()["title"] == "Too Many Requests"
        assert "retry-after" not in limited.headers
        assert not any(h.startswith("x-ratelimit") for h in limited.headers)
        assert mc.in_flight == 0  # every slot was released
        assert http.get("/3.0/ping").status_code == 200


def test_fault_switches_answer_in_problem_json(mc: MailchimpEmulator, http: httpx.Client) -> None:
    http.post("/_emulator/faults", json={"fail_next": 1, "status": 503, "rate_limit_next": 1})
    failed = http.post(LIST, json={"members": [member("a@x.io", status="subscribed")]})
    limited = http.get("/3.0/ping")

    assert failed.status_code == 503
    assert failed.headers["content-type"] == "application/problem+json"
    assert limited.status_code == 429 and limited.json()["title"] == "Too Many Requests"
    assert mc.state()["lists"]["list01"]["members"] == {}
    assert mc.in_flight == 0
