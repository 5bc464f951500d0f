"""The Google Ads Customer Match destination in real syncs against the Google Ads emulator.

Every test runs the engine (a DuckDB model, ``backhaul.api``) in ``mode: membership`` and
compares the emulator's user list with the model: the hashes it holds, not the requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backhaul import api
from backhaul.destinations.pii import sha256_hex
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.google_ads import GoogleAdsEmulator
from conftest import Builder

pytestmark = pytest.mark.integration

# Worked examples of the vendor reference (§7, §8a): what Google hashes, byte for byte.
ANN_SHA256 = "0b2d6603047b0e23d4fc76b502153865296189b7d3a170d1a7b2dcda4e2b6d10"
GOOGLE_PHONE_SHA256 = "a2996076d3ad4af5dc818b908b3d8e354f26ededf7df0e0aa6ac354143805ee0"
FAST_RETRY = {"base_delay": 0.01, "max_delay": 0.05}

Ads = tuple[GoogleAdsEmulator, EmulatorServer]


@pytest.fixture
def ads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Ads]:
    emulator = GoogleAdsEmulator(rate_limit=100_000, rate_window=1.0)
    with EmulatorServer(emulator) as server:
        for name, value in emulator.credentials().items():
            monkeypatch.setenv(name, value)
        yield emulator, server


def setup(
    project: Builder,
    ads: Ads,
    *,
    fields: tuple[str, ...] = ("email",),
    sync: dict[str, Any] | None = None,
    **destination: Any,
) -> str:
    """A ``gads`` destination at the emulator and an ``aud`` sync keeping its user list."""
    emulator, server = ads
    config = {
        **emulator.destination_config(server.url),
        "retry": FAST_RETRY,
        "poll_interval_seconds": 0.01,
        **destination,
    }
    project.destination("gads", **config)
    spec: dict[str, Any] = {
        "mode": "membership",
        "object": emulator.user_list,
        "mappings": [{"column": f, "field": f} for f in fields],
        "match": {"fields": ["email"]},
        "max_remove_pct": 100,
        **(sync or {}),
    }
    project.sync("aud", destination="gads", **spec)
    return emulator.user_list


def model_hashes(project: Builder) -> set[str]:
    return {sha256_hex(str(e).strip().lower()) for (e,) in project.sql("SELECT email FROM users")}


def statuses(emulator: GoogleAdsEmulator) -> list[str]:
    return [job["status"] for job in emulator.state()["jobs"].values()]


# -- acceptance ------------------------------------------------------------------------------


def test_acceptance_100k_list_shrunk_by_10_percent_loses_exactly_those(
    project: Builder, ads: Ads
) -> None:
    emulator, _ = ads
    project.users(100_000)
    user_list = setup(project, ads)

    first = project.run("aud")
    assert (first.status, first.counts.succeeded) == (RunStatus.SUCCEEDED, 100_000)
    assert emulator.values(user_list) == model_hashes(project)

    before = emulator.values(user_list)
    project.sql("DELETE FROM users WHERE id % 10 = 0")
    shrink = project.run("aud")

    assert shrink.status is RunStatus.SUCCEEDED, shrink.error
    assert (shrink.counts.removed, shrink.counts.succeeded) == (10_000, 10_000)
    after = emulator.values(user_list)
    assert after == model_hashes(project)
    assert before - after == {sha256_hex(f"u{i}@example.com") for i in range(10, 100_001, 10)}
    assert emulator.size(user_list) == 90_000
    assert set(statuses(emulator)) == {"SUCCESS"}


def test_a_run_with_no_change_sends_nothing_and_a_full_resync_adds_no_duplicate(
    project: Builder, ads: Ads
) -> None:
    emulator, _ = ads
    project.users(30)
    user_list = setup(project, ads)
    assert project.run("aud").status is RunStatus.SUCCEEDED
    calls = len(emulator.calls)

    again = project.run("aud")
    assert (again.status, again.counts.planned, len(emulator.calls)) == (
        RunStatus.SUCCEEDED,
        0,
        calls,
    )
    resync = project.run("aud", full_resync=True)

    assert (resync.status, resync.counts.succeeded) == (RunStatus.SUCCEEDED, 30)
    assert emulator.values(user_list) == model_hashes(project)
    assert emulator.size(user_list) == 30


# -- what is sent --------------------------------------------------------------------------


def test_identifiers_are_hashed_as_google_documents_with_the_headers_as_configured(
    project: Builder, ads: Ads
) -> None:
    emulator, _ = ads
    prehashed = sha256_hex("pre@hashed.com").upper()
    project.sql(
        "CREATE TABLE users (id BIGINT, email VARCHAR, phone VARCHAR, first_name VARCHAR, "
        "last_name VARCHAR, country VARCHAR, zip VARCHAR)",
        "INSERT INTO users VALUES (1, ' Ann@X.com', '+1 (650) 555-1234', ' Ann ', 'Lee', 'us', "
        f"'94045'), (2, '{prehashed}', NULL, 'Bo', NULL, NULL, NULL)",
    )
    project.model("users", "SELECT * FROM users")
    fields = ("email", "phone", "first_name", "last_name", "country", "zip")
    user_list = setup(project, ads, fields=fields, login_customer_id="123-456-7890")

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    members = emulator.state()["user_lists"][user_list]["members"]
    address = (
        f"hashedFirstName={sha256_hex('ann')},hashedLastName={sha256_hex('lee')},"
        "countryCode=US,postalCode=94045"
    )
    assert {
        "hashedEmail": ANN_SHA256,
        "hashedPhoneNumber": GOOGLE_PHONE_SHA256,
        "addressInfo": address,
    } in members
    # A pre-hashed e-mail is not hashed again; an incomplete address is left out.
    assert {"hashedEmail": prehashed.lower()} in members
    api_calls = [c for c in emulator.calls if c.path != "/token"]
    assert {c.headers["login-customer-id"] for c in api_calls} == {"1234567890"}
    assert {c.headers["developer-token"] for c in api_calls} == {emulator.developer_token}
    [add] = [c for c in api_calls if c.path.endswith(":addOperations")]
    assert add.json["enablePartialFailure"] is True
    assert "Ann" not in json.dumps(add.json)


def test_a_job_takes_its_operations_in_several_calls_and_runs_once(
    project: Builder, ads: Ads
) -> None:
    emulator, _ = ads
    project.users(100)
    user_list = setup(project, ads, operations_per_request=30)

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    adds = [c for c in emulator.calls if c.path.endswith(":addOperations")]
    assert [len(c.json["operations"]) for c in adds] == [30, 30, 30, 10]
    assert len({c.path for c in adds}) == 1  # one job
    assert [j["operations"] for j in emulator.state()["jobs"].values()] == [100]
    assert emulator.values(user_list) == model_hashes(project)


def test_a_changed_email_leaves_under_the_old_one_and_joins_under_the_new(
    project: Builder, ads: Ads
) -> None:
    emulator, _ = ads
    project.users(20)
    user_list = setup(project, ads)
    assert project.run("aud").status is RunStatus.SUCCEEDED

    project.sql("UPDATE users SET email = 'moved' || id || '@example.org' WHERE id IN (3, 4)")
    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert emulator.values(user_list) == model_hashes(project)
    assert emulator.size(user_list) == 20


# -- operations Google refuses, jobs ---------------------------------------------------------


def test_partial_failures_are_mapped_back_to_their_rows_by_operation_index(
    project: Builder, ads: Ads
) -> None:
    emulator, _ = ads
    bad = {i: sha256_hex(f"u{i}@example.com") for i in (2, 9, 14)}
    emulator.faults.reject({h: "bad record" for h in bad.values()})
    project.users(20, "CASE WHEN i = 5 THEN 'nope' ELSE NULL END AS phone")
    user_list = setup(project, ads, fields=("email", "phone"), operations_per_request=8)

    first = project.run("aud")

    assert first.status is RunStatus.PARTIAL
    rejected = {r.key: r.error for r in project.rows(first.run_id, "rejected")}
    assert set(rejected) == {"2", "5", "9", "14"}
    for key in ("2", "9", "14"):
        assert rejected[key] == "google_ads refused the operation: UNKNOWN: bad record"
    assert rejected["5"] == "phone: has no digits"
    wanted = model_hashes(project) - set(bad.values()) - {sha256_hex("u5@example.com")}
    assert emulator.values(user_list) == wanted

    emulator.faults.clear()
    project.sql("UPDATE users SET phone = NULL")
    second = project.run("aud")
    assert second.status is RunStatus.SUCCEEDED, second.error
    assert emulator.values(user_list) == model_hashes(project)


def test_a_job_running_on_the_list_is_waited_for_before_ours_runs(
    project: Builder, ads: Ads
) -> None:
    emulator, server = ads
    emulator.polls_to_finish = 4
    project.users(10)
    user_list = setup(project, ads)
    other = sha256_hex("other@example.com")
    headers = {
        "Authorization": f"Bearer {emulator.access_token}",
        "developer-token": emulator.developer_token,
    }
    root = f"{server.url}/v23/customers/{emulator.customer_id}/offlineUserDataJobs"
    with httpx.Client(headers=headers) as http:
        spec = {"type": "CUSTOMER_MATCH_USER_LIST"}
        spec["customerMatchUserListMetadata"] = {"userList": user_list}  # type: ignore[assignment]
        job = http.post(f"{root}:create", json={"job": spec}).json()["resourceName"]
        job_id = job.rsplit("/", 1)[1]
        ops = [{"create": {"userIdentifiers": [{"hashedEmail": other}]}}]
        assert http.post(f"{root}/{job_id}:addOperations", json={"operations": ops}).is_success
        assert http.post(f"{root}/{job_id}:run", json={}).is_success

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert emulator.values(user_list) == model_hashes(project) | {other}
    assert not any(c.status == 400 for c in emulator.calls)  # no CONCURRENT_MODIFICATION
    ours = [c for c in emulator.calls if c.path.endswith(":run") and job_id not in c.path]
    assert len(ours) == 1 and statuses(emulator) == ["SUCCESS", "SUCCESS"]


def test_a_failed_job_is_sent_again_and_nothing_is_acknowledged_before(
    project: Builder, ads: Ads
) -> None:
    emulator, _ = ads
    emulator.fail_next_jobs(1, "PROCESSING_FAILURE")
    project.users(10)
    user_list = setup(project, ads)

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert statuses(emulator) == ["FAILED", "SUCCESS"]
    assert emulator.values(user_list) == model_hashes(project)


def test_a_job_that_outlasts_the_timeout_fails_the_run_and_the_rows_stay_pending(
    project: Builder, ads: Ads
) -> None:
    emulator, _ = ads
    emulator.polls_to_finish = 1_000_000
    project.users(5)
    user_list = setup(project, ads, job_timeout_seconds=0.05)

    run = project.run("aud")

    assert run.status is RunStatus.FAILED
    assert "raise `job_timeout_seconds`" in (run.error or "")
    emulator.polls_to_finish = 1
    emulator.finish_jobs()
    again = project.run("aud")
    assert (again.status, again.counts.succeeded) == (RunStatus.SUCCEEDED, 5)
    assert emulator.values(user_list) == model_hashes(project)


# -- the sync checks -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["upsert", "mirror"])
def test_modes_other_than_membership_are_refused_before_anything_is_sent(
    project: Builder, ads: Ads, mode: str
) -> None:
    emulator, _ = ads
    project.users(3)
    setup(project, ads, sync={"mode": mode})

    result = project.cli("run", "aud")

    assert result.returncode == 2
    assert "mode: a google_ads user list only has members: set `mode: membership`" in (
        result.stderr
    )
    assert emulator.calls == []


def test_a_user_list_given_by_id_works_and_an_unknown_one_fails_with_what_to_fix(
    project: Builder, ads: Ads
) -> None:
    emulator, _ = ads
    project.users(3)
    setup(project, ads, sync={"object": "42"})

    run = project.run("aud")

    assert run.status is RunStatus.FAILED
    assert "no user list `customers/7693729833/userLists/42`" in (run.error or "")
    assert "check the sync's `object`" in (run.error or "")
    user_list = setup(project, ads, sync={"object": emulator.user_list.rsplit("/", 1)[1]})
    assert project.run("aud").status is RunStatus.SUCCEEDED
    assert emulator.values(user_list) == model_hashes(project)


# -- the generic checks that apply: rate limit, transient, fatal, secrets -------------------


def test_a_429_is_waited_out_for_its_retry_delay(project: Builder, ads: Ads) -> None:
    emulator, _ = ads
    project.users(10)
    # A fixed access token: no token call for the fault to land on.
    user_list = setup(project, ads, access_token=emulator.access_token, refresh_token=None)
    emulator.faults.rate_limit_next(1, retry_after=1.0)

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    calls = emulator.calls
    limited = next(i for i, c in enumerate(calls) if c.status == 429)
    assert calls[limited + 1].at - calls[limited].at >= 0.95
    assert not any(c.path == "/token" for c in calls)
    assert emulator.values(user_list) == model_hashes(project)


def test_a_429_on_the_token_call_is_waited_out_too(project: Builder, ads: Ads) -> None:
    emulator, _ = ads
    project.users(10)
    user_list = setup(project, ads)  # the refresh token: the run's first call gets a token
    emulator.faults.rate_limit_next(1, retry_after=1.0)

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    calls = emulator.calls
    limited = next(i for i, c in enumerate(calls) if c.status == 429)
    assert calls[limited].path == "/token"
    assert calls[limited + 1].path == "/token"
    assert calls[limited + 1].at - calls[limited].at >= 0.95
    assert emulator.values(user_list) == model_hashes(project)


def test_5xx_and_dropped_connections_are_retried(project: Builder, ads: Ads) -> None:
    emulator, _ = ads
    project.users(20)
    user_list = setup(project, ads)
    emulator.faults.fail_next(2, 503)
    emulator.faults.drop_next(1)

    run = project.run("aud")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert emulator.values(user_list) == model_hashes(project)


def test_a_wrong_developer_token_fails_fast_and_no_secret_is_recorded(
    project: Builder, ads: Ads
) -> None:
    emulator, _ = ads
    project.users(5)
    user_list = setup(project, ads)
    assert project.run("aud").status is RunStatus.SUCCEEDED
    project.sql("DELETE FROM users WHERE id = 1")
    setup(project, ads, developer_token="not-the-developer-token")
    calls = len(emulator.calls)

    run = project.run("aud")

    assert run.status is RunStatus.FAILED and run.exit_code == 1
    assert "google_ads" in (run.error or "") and "check `developer_token`" in (run.error or "")
    assert len(emulator.calls) - calls <= 3
    assert emulator.size(user_list) == 5
    issued = {c.headers.get("authorization", "")[7:] for c in emulator.calls} - {""}
    secrets = {
        emulator.developer_token,
        emulator.oauth.client_secret,
        emulator.oauth.refresh_token,
        "not-the-developer-token",
        *issued,
    }
    with api.open_store(project.load()) as store:
        texts = [r.error or "" for r in store.runs(limit=10)]
        for record in store.runs(limit=10):
            for call in store.calls(record.run_id, limit=1000):
                texts += [call.url, json.dumps(call.request_headers), call.request_body or ""]
                texts += [call.response_body or "", call.error or ""]
    assert any(":addOperations" in t for t in texts)
    for secret in secrets:
        assert not any(secret in t for t in texts), secret
