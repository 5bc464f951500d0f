"""Zendesk: the emulator's contract with plain httpx, and the destination in real syncs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backhaul.calls import MemoryRecorder
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import FieldInfo
from backhaul.destinations.zendesk import ZendeskConfig
from backhaul.destinations.zendesk import ZendeskDestination
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.zendesk import ZendeskEmulator
from conftest import Builder

pytestmark = pytest.mark.integration

EMAIL = "agent@example.com"
TOKEN = "zd-test-token-51c2"
BASIC = "Basic " + base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()


@pytest.fixture
def zd() -> Iterator[tuple[ZendeskEmulator, str]]:
    emulator = ZendeskEmulator(email=EMAIL, api_token=TOKEN, oauth_token="zd-oauth-9a")
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


def _client(url: str, auth: str = BASIC) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": auth})


def _finish(http: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    for _ in range(5):
        job = http.get(f"/api/v2/job_statuses/{job['id']}.json").json()["job_status"]
        if job["status"] == "completed":
            return job
    raise AssertionError(f"job never completed: {job}")


# -- emulator contract -----------------------------------------------------------------------


def test_auth_basic_token_and_bearer_accepted_others_refused(
    zd: tuple[ZendeskEmulator, str],
) -> None:
    _, url = zd
    with _client(url) as http:
        assert http.get("/api/v2/users/me.json").status_code == 200
    with _client(url, "Bearer zd-oauth-9a") as http:
        assert http.get("/api/v2/users/me").status_code == 200
    wrong = base64.b64encode(f"{EMAIL}/token:nope".encode()).decode()
    for auth in (f"Basic {wrong}", "Bearer nope", ""):
        with _client(url, auth) as http:
            answer = http.get("/api/v2/users/me.json")
        assert answer.status_code == 401
        assert answer.json() == {"error": "Couldn't authenticate you"}


def test_job_moves_queued_working_completed_with_results_in_request_order(
    zd: tuple[ZendeskEmulator, str],
) -> None:
    emulator, url = zd
    emulator.faults.reject({"u-2": "blocked"})
    users = [
        {"external_id": "u-1", "email": "a@x.com", "name": "A"},
        {"external_id": "u-2", "email": "b@x.com", "name": "B"},
        {"external_id": "u-3", "email": "not-an-email", "name": "C"},
    ]
    with _client(url) as http:
        queued = http.post("/api/v2/users/create_or_update_many.json", json={"users": users})
        job = queued.json()["job_status"]
        assert (queued.status_code, job["status"], job["results"]) == (200, "queued", None)
        assert job["url"].endswith(f"/api/v2/job_statuses/{job['id']}.json")
        assert emulator.state()["users"] == []  # nothing happens before the job runs
        assert http.get(f"/api/v2/job_statuses/{job['id']}").json()["job_status"]["status"] == (
            "working"
        )
        done = http.get(f"/api/v2/job_statuses/{job['id']}.json").json()["job_status"]
    assert done["status"] == "completed"
    results = done["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert [r["status"] for r in results] == ["Created", "Failed", "Failed"]
    assert results[1]["details"] == "blocked"
    assert "not properly formatted" in results[2]["details"]
    assert [u["external_id"] for u in emulator.state()["users"]] == ["u-1"]


def test_users_match_by_external_id_then_email(zd: tuple[ZendeskEmulator, str]) -> None:
    emulator, url = zd
    with _client(url) as http:
        first = {"users": [{"email": "a@x.com", "name": "A"}]}
        _finish(
            http, http.post("/api/v2/users/create_or_update_many", json=first).json()["job_status"]
        )
        # Same email, new external_id: updates the user found by email.
        second = {
            "users": [
                {"email": "a@x.com", "external_id": "e-1", "name": "A2"},
                {"external_id": "e-1", "email": "a2@x.com", "name": "A3"},
            ]
        }
        job = _finish(
            http, http.post("/api/v2/users/create_or_update_many", json=second).json()["job_status"]
        )
    assert [r["status"] for r in job["results"]] == ["Updated", "Updated"]
    users = emulator.state()["users"]
    assert len(users) == 1
    assert (users[0]["external_id"], users[0]["email"], users[0]["name"]) == (
        "e-1",
        "a2@x.com",
        "A3",
    )


def test_more_than_100_items_refused_whole(zd: tuple[ZendeskEmulator, str]) -> None:
    emulator, url = zd
    users = [{"email": f"u{i}@x.com", "name": "n"} for i in range(101)]
    with _client(url) as http:
        answer = http.post("/api/v2/users/create_or_update_many.json", json={"users": users})
    assert answer.status_code == 400
    assert (
        answer.json()["error"] == "InvalidValue" and "at most 100" in answer.json()["description"]
    )
    assert emulator.jobs == {}


def test_organization_names_unique_and_destroy_many_by_external_id(
    zd: tuple[ZendeskEmulator, str],
) -> None:
    emulator, url = zd
    orgs = [{"external_id": "o-1", "name": "Acme"}, {"external_id": "o-2", "name": "acme"}]
    with _client(url) as http:
        job = _finish(
            http,
            http.post("/api/v2/organizations/create_many", json={"organizations": orgs}).json()[
                "job_status"
            ],
        )
        assert [r["status"] for r in job["results"]] == ["Created", "Failed"]
        assert job["results"][1]["details"] == "Name: has already been taken"
        shown = http.get("/api/v2/organizations/show_many.json?external_ids=o-1,o-2").json()
        assert [o["name"] for o in shown["organizations"]] == ["Acme"]
        gone = http.delete("/api/v2/organizations/destroy_many.json?external_ids=o-1")
        _finish(http, gone.json()["job_status"])
    assert emulator.state()["organizations"] == []


def test_rate_limit_answers_429_with_retry_after() -> None:
    emulator = ZendeskEmulator(email=EMAIL, api_token=TOKEN, rate_limit=2, rate_window=30)
    with EmulatorServer(emulator) as server, _client(server.url) as http:
        first = http.get("/api/v2/users/me.json")
        assert (first.headers["X-Rate-Limit"], first.headers["X-Rate-Limit-Remaining"]) == (
            "2",
            "1",
        )
        http.get("/api/v2/users/me.json")
        limited = http.get("/api/v2/users/me.json")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    assert "per minute exceeded" in limited.text


def test_too_many_unfinished_jobs_refused() -> None:
    emulator = ZendeskEmulator(email=EMAIL, api_token=TOKEN, max_jobs=1)
    body = {"users": [{"email": "a@x.com", "name": "A"}]}
    with EmulatorServer(emulator) as server, _client(server.url) as http:
        assert http.post("/api/v2/users/create_or_update_many", json=body).status_code == 200
        refused = http.post("/api/v2/users/create_or_update_many", json=body)
    assert refused.status_code == 429 and refused.json()["error"] == "TooManyJobs"


# -- the destination in real syncs -----------------------------------------------------------


def _project(project: Builder, url: str, **extra: Any) -> None:
    project.users(6)
    project.destination(
        "zd",
        type="zendesk",
        base_url=url,
        email=EMAIL,
        api_token=TOKEN,
        poll_interval_seconds=0.01,
        retry={"base_delay": 0.01, "max_delay": 0.05},
        **extra,
    )


USER_MAPS = [
    {"column": "id", "field": "external_id", "cast": "string"},
    {"column": "email", "field": "email"},
    {"column": "name", "field": "name"},
    {"column": "score", "field": "user_fields.score"},
]


def test_users_by_external_id_upsert_update_and_delete(
    project: Builder, zd: tuple[ZendeskEmulator, str]
) -> None:
    emulator, url = zd
    _project(project, url)
    project.sync("up", destination="zd", object="users", mode="mirror", mappings=USER_MAPS)
    assert project.run("up").status is RunStatus.SUCCEEDED
    project.sql("UPDATE users SET name = 'renamed' WHERE id = 2", "DELETE FROM users WHERE id = 6")

    run = project.run("up")

    assert run.status is RunStatus.SUCCEEDED and run.counts.removed == 1
    users = {u["external_id"]: u for u in emulator.state()["users"]}
    assert sorted(users) == ["1", "2", "3", "4", "5"]
    assert users["2"]["name"] == "renamed" and users["3"]["user_fields"] == {"score": 3}

    project.sql("INSERT INTO users VALUES (9, 'u9@example.com', 'nine', 1)")
    project.sync("upd", destination="zd", object="users", mode="update", mappings=USER_MAPS)
    update = project.run("upd", full_resync=True)
    assert update.status is RunStatus.PARTIAL
    rejected = {r.key: r.error for r in project.rows(update.run_id, status="rejected")}
    assert set(rejected) == {"9"} and "update mode creates none" in (rejected["9"] or "")


def test_rejection_mapped_to_its_key_and_retried(
    project: Builder, zd: tuple[ZendeskEmulator, str]
) -> None:
    emulator, url = zd
    _project(project, url)
    project.sync("up", destination="zd", object="users", mappings=USER_MAPS)
    emulator.faults.reject({"4": "Email: is blocked"})
    first = project.run("up")
    assert first.status is RunStatus.PARTIAL
    assert {r.key: r.error for r in project.rows(first.run_id, status="rejected")} == {
        "4": "UserUpdateError: Email: is blocked"
    }
    emulator.faults.clear()
    second = project.run("up")
    assert second.status is RunStatus.SUCCEEDED and second.counts.succeeded == 1
    assert len(emulator.state()["users"]) == 6


def test_organizations_upsert_by_external_id(
    project: Builder, zd: tuple[ZendeskEmulator, str]
) -> None:
    emulator, url = zd
    _project(project, url)
    maps = [
        {"column": "id", "field": "external_id", "cast": "string"},
        {"column": "name", "field": "name"},
        {"column": "score", "field": "organization_fields.score"},
    ]
    project.sync("orgs", destination="zd", object="organizations", mappings=maps)
    assert project.run("orgs").status is RunStatus.SUCCEEDED
    project.sql("UPDATE users SET score = 50 WHERE id = 1")
    assert project.run("orgs").counts.succeeded == 1
    orgs = {o["external_id"]: o for o in emulator.state()["organizations"]}
    assert len(orgs) == 6 and orgs["1"]["organization_fields"]["score"] == 50


def test_tickets_insert_only(project: Builder, zd: tuple[ZendeskEmulator, str]) -> None:
    emulator, url = zd
    _project(project, url)
    maps = [
        {"column": "id", "field": "external_id", "cast": "string"},
        {"column": "name", "field": "subject"},
        {"template": "Score is {{ score }}", "field": "comment.body"},
    ]
    project.sync("t", destination="zd", object="tickets", mode="insert", mappings=maps)
    assert project.run("t").status is RunStatus.SUCCEEDED
    assert project.run("t", full_resync=True).status is RunStatus.SUCCEEDED  # no duplicates
    tickets = emulator.state()["tickets"]
    assert sorted(t["external_id"] for t in tickets) == ["1", "2", "3", "4", "5", "6"]
    assert {t["comment"]["body"] for t in tickets if t["external_id"] == "2"} == {"Score is 2"}

    project.sync("t2", destination="zd", object="tickets", mode="upsert", mappings=maps)
    failed = project.run("t2")
    assert failed.status is RunStatus.FAILED
    assert "tickets can only be created" in (failed.error or "")


def test_wrong_token_fails_the_run_naming_what_to_fix(
    project: Builder, zd: tuple[ZendeskEmulator, str]
) -> None:
    emulator, url = zd
    project.users(3)
    project.destination("zd", type="zendesk", base_url=url, email=EMAIL, api_token="wrong-token")
    project.sync("up", destination="zd", object="users", mappings=USER_MAPS)
    run = project.run("up")
    assert run.status is RunStatus.FAILED
    assert (run.error or "").startswith("zendesk at 127.0.0.1:")
    assert "answered 401 Unauthorized: check `email and api_token`" in (run.error or "")
    assert "email and api_token" in (run.error or "")
    assert emulator.state()["users"] == []


def test_429_is_waited_out(project: Builder, zd: tuple[ZendeskEmulator, str]) -> None:
    emulator, url = zd
    _project(project, url)
    project.sync("up", destination="zd", object="users", mappings=USER_MAPS)
    emulator.faults.rate_limit_next(1, retry_after=1)
    run = project.run("up")
    assert run.status is RunStatus.SUCCEEDED
    statuses = [c.status for c in emulator.calls]
    assert statuses[0] == 429 and statuses.count(429) == 1
    assert len(emulator.state()["users"]) == 6


async def test_connection_test_proves_the_credentials(
    tmp_path: Path, zd: tuple[ZendeskEmulator, str]
) -> None:
    emulator, url = zd

    def open_zendesk(token: str) -> ZendeskDestination:
        config = ZendeskConfig.model_validate(
            {"type": "zendesk", "base_url": url, "email": EMAIL, "api_token": token}
        )
        return ZendeskDestination(config, DestinationContext(tmp_path, MemoryRecorder()))

    good = open_zendesk(TOKEN)
    await good.check()
    await good.close()
    bad = open_zendesk("zd-wrong-token")
    with pytest.raises(DestinationError) as refused:
        await bad.check()
    await bad.close()

    assert refused.value.failure is FailureType.CONFIG
    assert "check `email and api_token`" in refused.value.message
    assert [(c.path, c.status) for c in emulator.calls] == [
        ("/api/v2/users/me.json", 200),
        ("/api/v2/users/me.json", 401),
    ]


# -- identity that survives change ------------------------------------------------------------


def test_a_changed_email_updates_the_user_by_its_id(
    project: Builder, zd: tuple[ZendeskEmulator, str]
) -> None:
    emulator, url = zd
    _project(project, url)
    project.sql(
        "INSERT INTO users SELECT i, 'u' || i || '@example.com', 'n' || i, 0 FROM range(7, 41) t(i)"
    )
    maps = [{"column": "email", "field": "email"}, {"column": "name", "field": "name"}]
    project.sync(
        "m",
        destination="zd",
        object="users",
        mode="mirror",
        max_remove_pct=100,
        match={"fields": ["email"]},
        mappings=maps,
    )
    assert project.run("m").status is RunStatus.SUCCEEDED
    before = {u["email"]: u["id"] for u in emulator.state()["users"]}
    project.sql("UPDATE users SET email = 'moved' || id || '@example.org' WHERE id % 20 = 0")

    run = project.run("m")

    assert run.status is RunStatus.SUCCEEDED, run.error
    after = {u["email"]: u["id"] for u in emulator.state()["users"]}
    model = {str(e) for (e,) in project.sql("SELECT email FROM users")}
    assert set(after) == model  # no user left under an old e-mail
    assert after["moved20@example.org"] == before["u20@example.com"]
    assert after["moved40@example.org"] == before["u40@example.com"]


# -- fields for the mapping editor --------------------------------------------------------------

PLAN_FIELDS = [
    {"key": "plan", "type": "dropdown", "title": "Plan"},
    {"key": "seats", "type": "integer", "title": "Seats"},
    {"key": "renews_on", "type": "date", "title": "Renews on"},
    {"key": "vip", "type": "checkbox", "title": "VIP"},
    {"key": "old_code", "type": "text", "title": "Old code", "active": False},
]


def test_custom_fields_are_listed_in_offset_pages_and_set_by_the_control_api(
    zd: tuple[ZendeskEmulator, str],
) -> None:
    emulator, url = zd
    with _client(url) as http:
        default = http.get("/api/v2/user_fields.json").json()
        set_ = httpx.post(f"{url}/_emulator/faults", json={"user_fields": PLAN_FIELDS})
        first = http.get("/api/v2/user_fields.json?per_page=2").json()
        last = http.get(first["next_page"].removeprefix(url)).json()
        orgs = http.get("/api/v2/organization_fields").json()
        anonymous = httpx.get(f"{url}/api/v2/user_fields.json")

    assert [(f["key"], f["type"]) for f in default["user_fields"]] == [("score", "integer")]
    assert set_.status_code == 200 and first["count"] == 5
    assert [f["key"] for f in first["user_fields"]] == ["plan", "seats"]
    assert first["previous_page"] is None and first["next_page"].endswith("page=2&per_page=2")
    assert [f["key"] for f in last["user_fields"]] == ["renews_on", "vip"]
    assert last["user_fields"][0]["title"] == "Renews on" and not last["user_fields"][0]["system"]
    assert [f["key"] for f in orgs["organization_fields"]] == ["score"]
    assert anonymous.status_code == 401
    emulator.reset()
    assert [f["key"] for f in emulator.custom_fields["user_fields"]] == ["score"]


async def test_fields_are_the_built_in_ones_then_the_active_custom_ones(tmp_path: Path) -> None:
    emulator = ZendeskEmulator(email=EMAIL, api_token=TOKEN, user_fields=PLAN_FIELDS * 30)
    emulator.define_fields("organization_fields", [{"key": "tier", "type": "decimal"}])
    with EmulatorServer(emulator) as server:
        config = ZendeskConfig.model_validate(
            {"type": "zendesk", "base_url": server.url, "email": EMAIL, "api_token": TOKEN}
        )
        dest = ZendeskDestination(config, DestinationContext(tmp_path, MemoryRecorder()))
        try:
            users = await dest.fields(None)
            orgs = await dest.fields("organizations")
            tickets = await dest.fields("tickets")
            with pytest.raises(DestinationError) as unknown:
                await dest.fields("macros")
        finally:
            await dest.close()

    by_name = {f.name: f for f in users}
    assert by_name["name"] == FieldInfo("name", "text", label="Name", required=True)
    assert by_name["email"].unique and by_name["external_id"].unique
    assert by_name["verified"].type == "bool" and by_name["organization_id"].type == "number"
    custom = [(f.name, f.type, f.label) for f in users if "." in f.name]
    assert custom[:4] == [
        ("user_fields.plan", "text", "Plan"),
        ("user_fields.seats", "number", "Seats"),
        ("user_fields.renews_on", "date", "Renews on"),
        ("user_fields.vip", "bool", "VIP"),
    ]
    assert len(custom) == 120  # 150 fields over two pages, the 30 inactive ones left out
    assert "user_fields.old_code" not in by_name
    pages = [c.query for c in emulator.calls if c.path == "/api/v2/user_fields.json"]
    assert len(pages) == 2
    org_names = {f.name: f for f in orgs}
    assert org_names["organization_fields.tier"].type == "number"
    assert org_names["name"].required and org_names["name"].unique
    assert not any(f.name.startswith(("user_fields", "organization_fields")) for f in tickets)
    assert {f.name for f in tickets if f.required} == {"comment.body"}
    assert unknown.value.failure is FailureType.CONFIG
