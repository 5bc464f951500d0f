"""Intercom: the emulator's contract with plain httpx, and the destination in real syncs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backhaul.calls import MemoryRecorder
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import FieldInfo
from backhaul.destinations.intercom import IntercomConfig
from backhaul.destinations.intercom import IntercomDestination
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.intercom import IntercomEmulator
from conftest import Builder

pytestmark = pytest.mark.integration

TOKEN = "ic-test-token-77b1"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Intercom-Version": "2.11"}


@pytest.fixture
def ic() -> Iterator[tuple[IntercomEmulator, str]]:
    emulator = IntercomEmulator(token=TOKEN, custom_attributes={"score"})
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


def _search(field: str, value: str) -> dict[str, Any]:
    return {
        "query": {"operator": "AND", "value": [{"field": field, "operator": "=", "value": value}]},
        "pagination": {"per_page": 50, "starting_after": None},
    }


# -- emulator contract -----------------------------------------------------------------------


def test_auth_and_version_checked(ic: tuple[IntercomEmulator, str]) -> None:
    _, url = ic
    with httpx.Client(base_url=url) as http:
        assert http.get("/me", headers=HEADERS).status_code == 200
        refused = http.get("/me", headers={"Authorization": "Bearer nope"})
        bad_version = http.get("/me", headers={**HEADERS, "Intercom-Version": "9.9"})
    assert refused.status_code == 401
    body = refused.json()
    assert body["type"] == "error.list"
    assert body["errors"] == [{"code": "unauthorized", "message": "Access Token Invalid"}]
    assert bad_version.status_code == 400
    assert bad_version.json()["errors"][0]["code"] == "intercom_version_invalid"


def test_create_conflicts_on_same_external_id_or_email_then_search_finds_it(
    ic: tuple[IntercomEmulator, str],
) -> None:
    emulator, url = ic
    with httpx.Client(base_url=url, headers=HEADERS) as http:
        made = http.post("/contacts", json={"external_id": "u-1", "email": "a@x.com"})
        assert made.status_code == 200 and made.json()["type"] == "contact"
        again = http.post("/contacts", json={"email": "A@x.com"})
        found = http.post("/contacts/search", json=_search("external_id", "u-1")).json()
        updated = http.put(f"/contacts/{made.json()['id']}", json={"name": "Ann"})
        missing = http.put("/contacts/nope", json={"name": "x"})
    assert again.status_code == 409
    error = again.json()["errors"][0]
    assert error["code"] == "conflict" and error["message"].endswith(f"id={made.json()['id']}")
    assert found["type"] == "list" and found["total_count"] == 1
    assert found["data"][0]["email"] == "a@x.com"
    assert updated.json()["name"] == "Ann" and missing.status_code == 404
    assert len(emulator.state()["contacts"]) == 1


def test_unknown_custom_attribute_and_fault_rejections(ic: tuple[IntercomEmulator, str]) -> None:
    emulator, url = ic
    emulator.faults.reject({"bad@x.com": "Email is on a block list"})
    with httpx.Client(base_url=url, headers=HEADERS) as http:
        unknown = http.post("/contacts", json={"email": "a@x.com", "custom_attributes": {"x": 1}})
        blocked = http.post("/contacts", json={"email": "bad@x.com"})
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["message"] == "Custom attribute 'x' does not exist"
    assert blocked.status_code == 400
    assert blocked.json()["errors"][0]["message"] == "Email is on a block list"
    assert emulator.state()["contacts"] == []


def test_archive_hides_from_search_and_delete_removes(ic: tuple[IntercomEmulator, str]) -> None:
    emulator, url = ic
    with httpx.Client(base_url=url, headers=HEADERS) as http:
        one = http.post("/contacts", json={"email": "a@x.com"}).json()["id"]
        two = http.post("/contacts", json={"email": "b@x.com"}).json()["id"]
        assert http.post(f"/contacts/{one}/archive").json()["archived"] is True
        assert http.delete(f"/contacts/{two}").json()["deleted"] is True
        hits = http.post("/contacts/search", json=_search("email", "a@x.com")).json()
    assert hits["total_count"] == 0
    assert [c["email"] for c in emulator.state()["contacts"]] == ["a@x.com"]


def test_companies_created_or_updated_by_company_id(ic: tuple[IntercomEmulator, str]) -> None:
    emulator, url = ic
    with httpx.Client(base_url=url, headers=HEADERS) as http:
        http.post("/companies", json={"company_id": "c-1", "name": "Acme"})
        http.post("/companies", json={"company_id": "c-1", "plan": "pro"})
        found = http.get("/companies", params={"company_id": "c-1"})
        missing = http.get("/companies", params={"company_id": "c-2"})
    assert found.json()["name"] == "Acme" and found.json()["plan"] == "pro"
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "company_not_found"
    assert len(emulator.state()["companies"]) == 1


def test_rate_limit_window_and_headers() -> None:
    emulator = IntercomEmulator(token=TOKEN, rate_limit=2, rate_window=30)
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(base_url=server.url, headers=HEADERS) as http,
    ):
        first = http.get("/me")
        http.get("/me")
        limited = http.get("/me")
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == (
        "2",
        "1",
    )
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert int(limited.headers["X-RateLimit-Reset"]) >= int(time.time())
    error = limited.json()["errors"][0]
    assert error["code"] == "rate_limit_exceeded" and "Exceeded rate limit of 2" in error["message"]


# -- the destination in real syncs -----------------------------------------------------------

CONTACT_MAPS = [
    {"column": "id", "field": "external_id", "cast": "string"},
    {"column": "email", "field": "email"},
    {"column": "name", "field": "name"},
    {"column": "score", "field": "custom_attributes.score"},
]


def _project(project: Builder, url: str, **extra: Any) -> None:
    project.users(6)
    project.destination(
        "ic",
        type="intercom",
        base_url=url,
        token=TOKEN,
        retry={"base_delay": 0.01, "max_delay": 0.05},
        **extra,
    )


def test_contacts_by_external_id_every_mode(
    project: Builder, ic: tuple[IntercomEmulator, str]
) -> None:
    emulator, url = ic
    _project(project, url)
    project.sync("m", destination="ic", object="contacts", mode="mirror", mappings=CONTACT_MAPS)
    assert project.run("m").status is RunStatus.SUCCEEDED
    project.sql("UPDATE users SET name = 'renamed' WHERE id = 2", "DELETE FROM users WHERE id = 6")
    run = project.run("m")
    assert run.status is RunStatus.SUCCEEDED and run.counts.removed == 1
    contacts = {c["external_id"]: c for c in emulator.state()["contacts"]}
    assert sorted(contacts) == ["1", "2", "3", "4", "5"]
    assert contacts["2"]["name"] == "renamed"
    assert contacts["3"]["custom_attributes"] == {"score": 3}

    project.sql("INSERT INTO users VALUES (9, 'u9@example.com', 'nine', 1)")
    project.sync("u", destination="ic", object="contacts", mode="update", mappings=CONTACT_MAPS)
    update = project.run("u", full_resync=True)
    assert update.status is RunStatus.PARTIAL
    assert {r.key for r in project.rows(update.run_id, status="rejected")} == {"9"}

    project.sync("i", destination="ic", object="contacts", mode="insert", mappings=CONTACT_MAPS)
    project.sql("UPDATE users SET name = 'not sent' WHERE id = 1")
    insert = project.run("i")
    assert insert.status is RunStatus.SUCCEEDED
    contacts = {c["external_id"]: c for c in emulator.state()["contacts"]}
    assert contacts["9"]["name"] == "nine" and contacts["1"]["name"] == "name 1"


def test_conflict_on_create_falls_back_to_update(
    project: Builder, ic: tuple[IntercomEmulator, str]
) -> None:
    emulator, url = ic
    _project(project, url)
    # Another writer holds u3's email already, without an external_id.
    with httpx.Client(base_url=url, headers=HEADERS) as http:
        http.post("/contacts", json={"email": "u3@example.com", "name": "older"})
    project.sync("up", destination="ic", object="contacts", mappings=CONTACT_MAPS)
    run = project.run("up")
    assert run.status is RunStatus.SUCCEEDED
    contacts = emulator.state()["contacts"]
    assert len(contacts) == 6
    u3 = next(c for c in contacts if c["email"] == "u3@example.com")
    assert (u3["external_id"], u3["name"]) == ("3", "name 3")
    statuses = [c.status for c in emulator.calls if c.method == "POST" and c.path == "/contacts"]
    assert 409 in statuses


def test_companies_modes(project: Builder, ic: tuple[IntercomEmulator, str]) -> None:
    emulator, url = ic
    _project(project, url)
    maps = [
        {"column": "id", "field": "company_id", "cast": "string"},
        {"column": "name", "field": "name"},
        {"column": "score", "field": "custom_attributes.score"},
    ]
    project.sync(
        "c", destination="ic", object="companies", mode="mirror", on_remove="clear", mappings=maps
    )
    assert project.run("c").status is RunStatus.SUCCEEDED
    project.sql("DELETE FROM users WHERE id = 5")
    assert project.run("c").status is RunStatus.SUCCEEDED
    companies = {c["company_id"]: c for c in emulator.state()["companies"]}
    assert len(companies) == 6
    assert companies["5"]["name"] is None and companies["5"]["custom_attributes"] == {"score": None}
    assert companies["4"]["name"] == "name 4"


def test_rejection_and_429_and_wrong_token(
    project: Builder, ic: tuple[IntercomEmulator, str]
) -> None:
    emulator, url = ic
    _project(project, url)
    project.sync("up", destination="ic", object="contacts", mappings=CONTACT_MAPS)
    emulator.faults.reject({"2": "External id is reserved"})
    emulator.faults.rate_limit_next(1, retry_after=1)
    first = project.run("up")
    assert first.status is RunStatus.PARTIAL
    assert {r.key: r.error for r in project.rows(first.run_id, status="rejected")} == {
        "2": "400 Bad Request: External id is reserved"
    }
    assert [c.status for c in emulator.calls].count(429) == 1
    emulator.faults.clear()
    assert project.run("up").counts.succeeded == 1

    project.destination("ic", type="intercom", base_url=url, token="wrong-token-123")
    project.sql("UPDATE users SET score = 99")
    failed = project.run("up")
    assert failed.status is RunStatus.FAILED
    assert (failed.error or "").startswith("intercom at 127.0.0.1:")
    assert "answered 401 Unauthorized: check `token`" in (failed.error or "")


async def test_connection_test_proves_the_token(
    tmp_path: Path, ic: tuple[IntercomEmulator, str]
) -> None:
    emulator, url = ic

    def open_intercom(token: str) -> IntercomDestination:
        config = IntercomConfig.model_validate(
            {"type": "intercom", "base_url": url, "token": token}
        )
        return IntercomDestination(config, DestinationContext(tmp_path, MemoryRecorder()))

    good = open_intercom(TOKEN)
    await good.check()
    await good.close()
    bad = open_intercom("ic-wrong-token")
    with pytest.raises(DestinationError) as refused:
        await bad.check()
    await bad.close()

    assert refused.value.failure is FailureType.CONFIG
    assert refused.value.message.startswith("intercom at 127.0.0.1:")
    assert "answered 401 Unauthorized: check `token`" in refused.value.message
    assert [(c.path, c.status) for c in emulator.calls] == [("/me", 200), ("/me", 401)]


# -- identity that survives change ------------------------------------------------------------

EMAIL_MAPS = [
    {"column": "email", "field": "email"},
    {"column": "name", "field": "name"},
]


def test_a_changed_email_updates_the_contact_by_its_id(
    project: Builder, ic: tuple[IntercomEmulator, str]
) -> None:
    emulator, url = ic
    _project(project, url)
    project.sql(
        "INSERT INTO users SELECT i, 'u' || i || '@example.com', 'n', 0 FROM range(7, 41) t(i)"
    )
    project.sync(
        "m",
        destination="ic",
        object="contacts",
        mode="mirror",
        max_remove_pct=100,
        match={"fields": ["email"]},
        mappings=EMAIL_MAPS,
    )
    assert project.run("m").status is RunStatus.SUCCEEDED
    before = {c["email"]: c["id"] for c in emulator.state()["contacts"]}
    project.sql("UPDATE users SET email = 'moved' || id || '@example.org' WHERE id % 20 = 0")
    calls = len(emulator.calls)

    run = project.run("m")

    assert run.status is RunStatus.SUCCEEDED, run.error
    after = {c["email"]: c["id"] for c in emulator.state()["contacts"]}
    model = {str(e) for (e,) in project.sql("SELECT email FROM users")}
    assert set(after) == model and len(after) == 40  # no contact left under an old e-mail
    assert after["moved20@example.org"] == before["u20@example.com"]
    assert after["moved40@example.org"] == before["u40@example.com"]
    sent = [(c.method, c.path) for c in emulator.calls[calls:]]
    assert sent.count(("PUT", f"/contacts/{before['u20@example.com']}")) == 1
    assert not [c for c in sent if c[0] == "DELETE"]


def test_a_changed_company_id_replaces_the_company_in_mirror_mode(
    project: Builder, ic: tuple[IntercomEmulator, str]
) -> None:
    emulator, url = ic
    _project(project, url)
    maps = [
        {"column": "email", "field": "company_id"},
        {"column": "name", "field": "name"},
    ]
    project.sync(
        "c",
        destination="ic",
        object="companies",
        mode="mirror",
        max_remove_pct=100,
        match={"fields": ["company_id"]},
        mappings=maps,
    )
    assert project.run("c").status is RunStatus.SUCCEEDED
    project.sql("UPDATE users SET email = 'acme-' || id WHERE id = 3")

    run = project.run("c")

    assert run.status is RunStatus.SUCCEEDED, run.error
    companies = sorted(c["company_id"] for c in emulator.state()["companies"])
    assert companies == sorted(str(e) for (e,) in project.sql("SELECT email FROM users"))


# -- fields for the mapping editor --------------------------------------------------------------


def _open(url: str, tmp_path: Path) -> IntercomDestination:
    config = IntercomConfig.model_validate({"type": "intercom", "base_url": url, "token": TOKEN})
    return IntercomDestination(config, DestinationContext(tmp_path, MemoryRecorder()))


def test_data_attributes_list_standard_and_custom_ones_set_by_the_control_api(
    ic: tuple[IntercomEmulator, str],
) -> None:
    emulator, url = ic
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=auth) as http:
        before = http.get("/data_attributes?model=contact").json()
        set_ = httpx.post(
            f"{url}/_emulator/faults",
            json={"custom_attributes": {"plan": "string", "mrr": "float"}},
        )
        after = http.get("/data_attributes", params={"model": "company"}).json()
        wrong = http.post("/contacts", json={"email": "a@x.com", "custom_attributes": {"score": 1}})
        bad_model = http.get("/data_attributes?model=nope")

    assert before["type"] == "list"
    custom = [(a["full_name"], a["data_type"]) for a in before["data"] if a["custom"]]
    assert custom == [("custom_attributes.score", "string")]
    email = next(a for a in before["data"] if a["name"] == "email")
    assert email["api_writable"] and email["model"] == "contact" and not email["custom"]
    assert set_.status_code == 200
    names = [a["full_name"] for a in after["data"] if a["custom"]]
    assert names == ["custom_attributes.mrr", "custom_attributes.plan"]
    assert {a["model"] for a in after["data"]} == {"company"}
    assert wrong.status_code == 400 and "'score' does not exist" in wrong.text
    assert bad_model.status_code == 400
    emulator.reset()
    assert emulator.attribute_types == {"score": "string"}


async def test_fields_are_the_data_attributes_with_kinds_and_flags(tmp_path: Path) -> None:
    emulator = IntercomEmulator(
        token=TOKEN, custom_attributes={"plan": "string", "seats": "integer"}
    )
    with EmulatorServer(emulator) as server:
        dest = _open(server.url, tmp_path)
        try:
            contacts = await dest.fields(None)
            companies = await dest.fields("companies")
            with pytest.raises(DestinationError) as unknown:
                await dest.fields("tickets")
        finally:
            await dest.close()
    learned = IntercomEmulator(token=TOKEN)  # any name accepted: each is listed once written
    with EmulatorServer(learned) as server:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as h:
            h.post("/contacts", json={"email": "a@x.com", "custom_attributes": {"vip": True}})
        dest = _open(server.url, tmp_path)
        try:
            later = {f.name: f for f in await dest.fields("contacts")}
        finally:
            await dest.close()

    by_name = {f.name: f for f in contacts}
    assert by_name["custom_attributes.plan"] == FieldInfo(
        "custom_attributes.plan", "text", label="plan"
    )
    assert by_name["custom_attributes.seats"].type == "number"
    assert by_name["email"].unique and by_name["external_id"].unique
    assert not any(f.required for f in contacts)
    assert by_name["signed_up_at"].type == "datetime" and not by_name["signed_up_at"].read_only
    assert by_name["unsubscribed_from_emails"].type == "bool"
    assert by_name["created_at"].read_only and by_name["location.city"].read_only
    company = {f.name: f for f in companies}
    assert company["company_id"].required and company["company_id"].unique
    assert company["monthly_spend"].type == "number" and "custom_attributes.plan" in company
    assert unknown.value.failure is FailureType.CONFIG
    assert later["custom_attributes.vip"].type == "bool"
    assert [c.query for c in emulator.calls] == ["model=contact", "model=company"]
