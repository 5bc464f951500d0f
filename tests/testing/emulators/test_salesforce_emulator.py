"""The Salesforce emulator keeps Salesforce's contract, proven with plain HTTP calls."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.salesforce import SalesforceEmulator

pytestmark = pytest.mark.integration

V = "/services/data/v62.0"
OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


@pytest.fixture
def org() -> Iterator[tuple[SalesforceEmulator, str]]:
    emulator = SalesforceEmulator(daily_api_limit=1000, query_page_size=3)
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


def login(url: str, emulator: SalesforceEmulator, **extra: str) -> httpx.Client:
    form = {
        "grant_type": "client_credentials",
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        **extra,
    }
    answer = httpx.post(f"{url}/services/oauth2/token", data=form)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["instance_url"] == url
    client = httpx.Client(
        base_url=body["instance_url"] + V,
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    OPEN.append(client)
    return client


def contact(ext: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Contact"}, "External_Id__c": ext, **fields}


def upsert(api: httpx.Client, records: list[dict[str, Any]], **body: Any) -> httpx.Response:
    return api.patch(
        "/composite/sobjects/Contact/External_Id__c", json={"records": records, **body}
    )


def test_token_endpoint_checks_client_and_refresh_token(
    org: tuple[SalesforceEmulator, str],
) -> None:
    emulator, url = org
    token = f"{url}/services/oauth2/token"
    good = {"client_id": emulator.client_id, "client_secret": emulator.client_secret}

    wrong_secret = httpx.post(
        token, data={**good, "grant_type": "client_credentials", "client_secret": "nope"}
    )
    wrong_refresh = httpx.post(
        token, data={**good, "grant_type": "refresh_token", "refresh_token": "nope"}
    )
    wrong_client = httpx.post(token, data={**good, "grant_type": "refresh_token", "client_id": "x"})
    wrong_grant = httpx.post(token, data={**good, "grant_type": "password"})
    refreshed = httpx.post(
        token,
        data={**good, "grant_type": "refresh_token", "refresh_token": emulator.refresh_token},
    )

    assert wrong_secret.status_code == 400 and wrong_secret.json()["error"] == "invalid_client"
    assert wrong_refresh.json()["error"] == "invalid_grant"
    assert wrong_client.json()["error"] == "invalid_client_id"
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] in emulator.tokens


def test_data_calls_need_a_live_session(org: tuple[SalesforceEmulator, str]) -> None:
    emulator, url = org
    api = login(url, emulator)
    expected = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]

    anonymous = httpx.get(f"{url}{V}/sobjects/Contact/describe")
    wrong = httpx.get(
        f"{url}{V}/sobjects/Contact/describe", headers={"Authorization": "Bearer forged"}
    )
    assert api.get("/sobjects/Contact/describe").status_code == 200
    emulator.expire_sessions()
    expired = api.get("/sobjects/Contact/describe")

    for answer in (anonymous, wrong, expired):
        assert answer.status_code == 401 and answer.json() == expected


def test_describe_lists_fields_with_their_flags(org: tuple[SalesforceEmulator, str]) -> None:
    emulator, url = org
    api = login(url, emulator)

    fields = {f["name"]: f for f in api.get("/sobjects/Contact/describe").json()["fields"]}
    unknown = api.get("/sobjects/Nope__c/describe")

    assert fields["External_Id__c"]["externalId"] and fields["External_Id__c"]["idLookup"]
    assert not fields["LastName"]["nillable"] and fields["LastName"]["updateable"]
    assert not fields["Id"]["updateable"] and not fields["Email"]["externalId"]
    assert {"FirstName", "Lead_Score__c", "Email"} <= set(fields)
    assert unknown.status_code == 404 and unknown.json()[0]["errorCode"] == "NOT_FOUND"


def test_collections_upsert_creates_updates_and_reports_in_order(
    org: tuple[SalesforceEmulator, str],
) -> None:
    emulator, url = org
    api = login(url, emulator)
    emulator.faults.reject({"u-4": "Contact is on the do-not-call list"})

    first = upsert(api, [contact("u-1", LastName="Lovelace"), contact("u-2", LastName="Hopper")])
    second = upsert(
        api,
        [
            contact("u-2", LastName="Hopper", Lead_Score__c=7),
            contact("u-3", FirstName="no last name"),
            contact("u-4", LastName="Rejected"),
        ],
    )

    assert first.status_code == 200
    assert [(r["success"], r["created"]) for r in first.json()] == [(True, True), (True, True)]
    updated, missing, refused = second.json()
    assert updated["success"] and updated["created"] is False
    assert updated["id"] == first.json()[1]["id"]
    assert missing["success"] is False and missing["errors"][0]["statusCode"] == (
        "REQUIRED_FIELD_MISSING"
    )
    assert missing["errors"][0]["fields"] == ["LastName"]
    assert refused["errors"][0]["message"] == "Contact is on the do-not-call list"
    people = emulator.by_field("Contact", "External_Id__c")
    assert sorted(people) == ["u-1", "u-2"] and people["u-2"]["Lead_Score__c"] == 7
    assert "Sforce-Limit-Info" in second.headers


def test_collections_refuse_oversized_calls_and_unknown_external_ids(
    org: tuple[SalesforceEmulator, str],
) -> None:
    emulator, url = org
    api = login(url, emulator)

    oversized = upsert(api, [contact(f"u-{i}", LastName="x") for i in range(201)])
    unknown_ext = api.patch(
        "/composite/sobjects/Contact/Nope__c", json={"records": [contact("u-1", LastName="x")]}
    )
    not_external = api.patch(
        "/composite/sobjects/Contact/LastName", json={"records": [contact("u-1", LastName="x")]}
    )
    unknown_field = upsert(api, [contact("u-1", LastName="x", Shoe_Size__c=44)])
    untyped = upsert(api, [{"External_Id__c": "u-1", "LastName": "x"}])
    too_many_ids = api.delete("/composite/sobjects", params={"ids": ",".join(["003x"] * 201)})

    assert oversized.status_code == 400 and oversized.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert too_many_ids.status_code == 400
    assert too_many_ids.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert unknown_ext.status_code == 404 and "Nope__c" in unknown_ext.json()[0]["message"]
    assert not_external.status_code == 400
    assert unknown_field.status_code == 400
    assert unknown_field.json()[0]["errorCode"] == "INVALID_FIELD"
    assert untyped.status_code == 400 and untyped.json()[0]["errorCode"] == "INVALID_TYPE"
    assert emulator.by_field("Contact", "External_Id__c") == {}


def test_all_or_none_rolls_the_whole_call_back(org: tuple[SalesforceEmulator, str]) -> None:
    emulator, url = org
    api = login(url, emulator)

    answer = upsert(api, [contact("u-1", LastName="ok"), contact("u-2")], allOrNone=True)

    codes = [r["errors"][0]["statusCode"] for r in answer.json()]
    assert codes == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUIRED_FIELD_MISSING"]
    assert emulator.by_field("Contact", "External_Id__c") == {}


def test_query_finds_by_external_id_pages_and_delete_removes(
    org: tuple[SalesforceEmulator, str],
) -> None:
    emulator, url = org
    api = login(url, emulator)
    upsert(api, [contact(f"u-{i}", LastName=f"n{i}") for i in range(1, 6)])
    soql = "SELECT Id, External_Id__c FROM Contact WHERE External_Id__c IN ('u-1','u-2','u-3','u-4','nobody')"

    page = api.get("/query", params={"q": soql}).json()
    rest = api.get(page["nextRecordsUrl"].removeprefix(V)).json()
    found = {r["External_Id__c"]: r["Id"] for r in page["records"] + rest["records"]}
    gone = api.delete("/composite/sobjects", params={"ids": f"{found['u-1']},{found['u-2']}"})
    again = api.delete("/composite/sobjects", params={"ids": found["u-1"]})
    bad = api.get("/query", params={"q": "SELECT Id FROM Contact WHERE Shoe__c = 'x'"})

    assert page["totalSize"] == 4 and page["done"] is False and len(page["records"]) == 3
    assert rest["done"] is True and sorted(found) == ["u-1", "u-2", "u-3", "u-4"]
    assert [r["success"] for r in gone.json()] == [True, True]
    assert again.json()[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    assert sorted(emulator.by_field("Contact", "External_Id__c")) == ["u-3", "u-4", "u-5"]
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"


def bulk_job(api: httpx.Client, body: str, **spec: Any) -> str:
    created = api.post(
        "/jobs/ingest",
        json={
            "object": "Contact",
            "operation": "upsert",
            "externalIdFieldName": "External_Id__c",
            "contentType": "CSV",
            "lineEnding": "LF",
            **spec,
        },
    )
    assert created.status_code == 200 and created.json()["state"] == "Open", created.text
    job = created.json()["id"]
    put = api.put(f"/jobs/ingest/{job}/batches", content=body, headers={"Content-Type": "text/csv"})
    assert put.status_code == 201 and put.content == b""
    return str(job)


def rows(answer: httpx.Response) -> list[dict[str, str]]:
    assert answer.status_code == 200, answer.text
    return list(csv.DictReader(io.StringIO(answer.text)))


def test_bulk_job_moves_through_its_states_and_reports_results(
    org: tuple[SalesforceEmulator, str],
) -> None:
    emulator, url = org
    api = login(url, emulator)
    emulator.faults.reject({"b-3": "duplicate of another contact"})
    job = bulk_job(
        api,
        "External_Id__c,LastName,Lead_Score__c\nb-1,One,10\nb-2,,\nb-3,Three,#N/A\nb-4,Four,4\n",
    )

    early = api.get(f"/jobs/ingest/{job}/successfulResults/")
    closed = api.patch(f"/jobs/ingest/{job}", json={"state": "UploadComplete"}).json()["state"]
    states = [api.get(f"/jobs/ingest/{job}").json()["state"] for _ in range(3)]
    info = api.get(f"/jobs/ingest/{job}").json()
    done = rows(api.get(f"/jobs/ingest/{job}/successfulResults/"))
    failed = rows(api.get(f"/jobs/ingest/{job}/failedResults"))

    assert early.status_code == 400  # results exist only once the job has ended
    assert closed == "UploadComplete"
    assert states == ["InProgress", "JobComplete", "JobComplete"]
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (4, 2)
    assert sorted(r["External_Id__c"] for r in done) == ["b-1", "b-4"]
    assert all(r["sf__Id"] and r["sf__Created"] == "true" for r in done)
    errors = {r["External_Id__c"]: r["sf__Error"] for r in failed}
    assert errors["b-2"].startswith("REQUIRED_FIELD_MISSING:") and "LastName" in errors["b-2"]
    assert "duplicate of another contact" in errors["b-3"]
    people = emulator.by_field("Contact", "External_Id__c")
    assert people["b-1"]["Lead_Score__c"] == 10 and sorted(people) == ["b-1", "b-4"]


def test_bulk_rows_an_aborted_or_failed_job_never_reached_are_unprocessed(
    org: tuple[SalesforceEmulator, str],
) -> None:
    emulator, url = org
    api = login(url, emulator)
    aborted = bulk_job(api, "External_Id__c,LastName\na-1,One\na-2,Two\n")
    api.patch(f"/jobs/ingest/{aborted}", json={"state": "UploadComplete"})
    api.patch(f"/jobs/ingest/{aborted}", json={"state": "Aborted"})
    emulator.bulk_fail_after = 1
    partial = bulk_job(api, "External_Id__c,LastName\np-1,One\np-2,Two\np-3,Three\n")
    api.patch(f"/jobs/ingest/{partial}", json={"state": "UploadComplete"})
    final = [api.get(f"/jobs/ingest/{partial}").json() for _ in range(2)][-1]

    left = rows(api.get(f"/jobs/ingest/{aborted}/unprocessedrecords/"))
    left_partial = rows(api.get(f"/jobs/ingest/{partial}/unprocessedRecords/"))

    assert api.get(f"/jobs/ingest/{aborted}").json()["state"] == "Aborted"
    assert sorted(r["External_Id__c"] for r in left) == ["a-1", "a-2"]
    assert final["state"] == "Failed" and final["errorMessage"]
    assert sorted(r["External_Id__c"] for r in left_partial) == ["p-2", "p-3"]
    assert sorted(emulator.by_field("Contact", "External_Id__c")) == ["p-1"]


def test_bulk_refuses_bad_jobs(org: tuple[SalesforceEmulator, str]) -> None:
    emulator, url = org
    api = login(url, emulator)
    spec = {"object": "Contact", "operation": "upsert", "contentType": "CSV"}

    no_ext = api.post("/jobs/ingest", json=spec)
    unknown_ext = api.post("/jobs/ingest", json={**spec, "externalIdFieldName": "Nope__c"})
    unknown_object = api.post("/jobs/ingest", json={**spec, "object": "Nope__c"})
    bad_column = bulk_job(api, "External_Id__c,Shoe__c\nx-1,44\n")
    api.patch(f"/jobs/ingest/{bad_column}", json={"state": "UploadComplete"})
    final = [api.get(f"/jobs/ingest/{bad_column}").json() for _ in range(2)][-1]
    second_upload = api.put(
        f"/jobs/ingest/{bad_column}/batches", content="x", headers={"Content-Type": "text/csv"}
    )

    for answer in (no_ext, unknown_ext, unknown_object):
        assert answer.status_code == 400 and answer.json()[0]["errorCode"] == "INVALIDJOB"
    assert final["state"] == "Failed" and "Shoe__c" in final["errorMessage"]
    assert second_upload.status_code >= 400


def test_daily_api_quota_gives_403_request_limit_exceeded() -> None:
    emulator = SalesforceEmulator(daily_api_limit=2)
    with EmulatorServer(emulator) as server:
        api = login(server.url, emulator)
        answers = [api.get("/sobjects/Contact/describe") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 403]
    assert [a.headers["Sforce-Limit-Info"] for a in answers] == [
        "api-usage=1/2",
        "api-usage=2/2",
        "api-usage=2/2",
    ]
    assert answers[2].json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
