"""The Klaviyo emulator's contract, proven with plain HTTP calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.klaviyo import KlaviyoEmulator

pytestmark = pytest.mark.integration

KEY = "pk_test_5d1e9a"
JOBS = "/api/profile-bulk-import-jobs"
MEDIA = "application/vnd.api+json"
HEADERS = {"Authorization": f"Klaviyo-API-Key {KEY}", "revision": "2025-01-15"}


class FrozenClock:
    """A clock that does not move, so fixed windows never roll over during a test."""

    def __call__(self) -> float:
        return 1000.0


@contextmanager
def serve(emulator: KlaviyoEmulator) -> Iterator[httpx.Client]:
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(base_url=server.url, headers=HEADERS) as client,
    ):
        yield client


@pytest.fixture
def kl() -> KlaviyoEmulator:
    return KlaviyoEmulator(api_key=KEY, lists={"L1": "Customers"}, burst=1000, steady=10_000)


@pytest.fixture
def http(kl: KlaviyoEmulator) -> Iterator[httpx.Client]:
    with serve(kl) as client:
        yield client


def profile(**attributes: Any) -> dict[str, Any]:
    return {"type": "profile", "attributes": attributes}


def job_body(profiles: list[dict[str, Any]], list_id: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "profile-bulk-import-job",
        "attributes": {"profiles": {"data": profiles}},
    }
    if list_id is not None:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
    return {"data": data}


def post(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    return http.post(path, content=json.dumps(body), headers={"Content-Type": MEDIA})


def run_job(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    created = post(http, JOBS, body)
    assert created.status_code == 202, created.text
    job_id = created.json()["data"]["id"]
    for _ in range(5):
        job: dict[str, Any] = http.get(f"{JOBS}/{job_id}").json()["data"]
        if job["attributes"]["status"] == "complete":
            return job
    raise AssertionError(f"job never completed: {job}")


def test_key_revision_and_media_type_are_required(kl: KlaviyoEmulator, http: httpx.Client) -> None:
    body = job_body([profile(email="a@x.io")])
    wrong_key = post(http, JOBS, body)
    for answer, status, code in (
        (http.get("/api/lists", headers={"Authorization": "Klaviyo-API-Key nope"}), 401, None),
        (http.get("/api/lists", headers={"Authorization": ""}), 401, None),
        (http.get("/api/lists", headers={"revision": ""}), 400, "invalid"),
        (http.post(JOBS, json=body), 415, "unsupported_media_type"),
    ):
        assert answer.status_code == status, answer.text
        [error] = answer.json()["errors"]
        assert error["status"] == status
        assert error["code"] == (code or "not_authenticated")
    assert wrong_key.status_code == 202  # the right key, revision and media type
    assert http.get("/api/lists").status_code == 200


def test_job_moves_from_queued_through_processing_to_complete(
    kl: KlaviyoEmulator, http: httpx.Client
) -> None:
    body = job_body(
        [
            profile(email="ann@x.io", external_id="u-1", first_name="Ann", properties={"p": 1}),
            profile(phone_number="+15005550006"),
        ],
        "L1",
    )
    created = post(http, JOBS, body)

    assert created.status_code == 202
    job = created.json()["data"]
    assert job["attributes"]["status"] == "queued" and job["attributes"]["total_count"] == 2
    assert kl.state()["profiles"] == []  # nothing is written before the job runs
    seen = []
    for _ in range(2):
        attrs = http.get(f"{JOBS}/{job['id']}").json()["data"]["attributes"]
        seen.append((attrs["status"], attrs["completed_count"], attrs["failed_count"]))
    assert seen == [("processing", 0, 0), ("complete", 2, 0)]
    assert kl.members("L1") == {"ann@x.io", kl.profile("phone_number", "+15005550006")["id"]}  # type: ignore[index]
    ids = http.get(f"{JOBS}/{job['id']}/relationships/profiles").json()["data"]
    assert len(ids) == 2 and {i["type"] for i in ids} == {"profile"}


def test_profiles_upsert_by_identifier_and_merge_properties(
    kl: KlaviyoEmulator, http: httpx.Client
) -> None:
    run_job(
        http,
        job_body(
            [profile(email="ann@x.io", properties={"a": 1, "b": 1}), profile(email="bob@x.io")]
        ),
    )
    again = run_job(
        http,
        job_body(
            [
                profile(email="ANN@x.io", external_id="u-1", properties={"b": 2}),
                profile(email="bob@x.io", external_id="u-1"),
            ]
        ),
    )

    assert again["attributes"]["completed_count"] == 1
    ann, bob = kl.state()["profiles"]
    assert ann["external_id"] == "u-1" and ann["properties"] == {"a": 1, "b": 2}
    assert bob.get("external_id") is None
    [error] = http.get(f"{JOBS}/{again['id']}/import-errors").json()["data"]
    assert error["attributes"]["code"] == "duplicate_profile"


def test_refused_profiles_are_import_errors_with_pointer_and_payload(
    kl: KlaviyoEmulator, http: httpx.Client
) -> None:
    kl.faults.reject({"blocked@x.io": "refused by the emulator"})
    entries = [
        profile(email="ok@x.io"),
        profile(email="not-an-email"),
        profile(phone_number="5550006"),
        profile(first_name="No identifier"),
        profile(email="c@x.io", plan="pro"),
        profile(email="blocked@x.io"),
    ]
    job = run_job(http, job_body(entries, "L1"))

    assert (job["attributes"]["completed_count"], job["attributes"]["failed_count"]) == (1, 5)
    errors = http.get(f"{JOBS}/{job['id']}/import-errors").json()["data"]
    by_pointer = {e["attributes"]["source"]["pointer"]: e["attributes"] for e in errors}
    base = "/data/attributes/profiles/data"
    assert set(by_pointer) == {
        f"{base}/1/attributes/email",
        f"{base}/2/attributes/phone_number",
        f"{base}/3/attributes",
        f"{base}/4/attributes/plan",
        f"{base}/5/attributes/email",
    }
    assert by_pointer[f"{base}/1/attributes/email"]["original_payload"] == entries[1]
    assert by_pointer[f"{base}/5/attributes/email"]["detail"] == "refused by the emulator"
    assert kl.members("L1") == {"ok@x.io"}


def test_import_errors_come_in_cursor_pages_of_20(kl: KlaviyoEmulator, http: httpx.Client) -> None:
    job = run_job(http, job_body([profile(email=f"bad{i}") for i in range(25)]))
    first = http.get(f"{JOBS}/{job['id']}/import-errors").json()
    second = httpx.get(first["links"]["next"], headers=HEADERS).json()

    assert len(first["data"]) == 20 and len(second["data"]) == 5
    assert second["links"]["next"] is None and second["links"]["prev"] is not None


def test_caps_one_over_is_refused() -> None:
    kl = KlaviyoEmulator(api_key=KEY, burst=1000, steady=10_000)
    with serve(kl) as http:
        over = post(http, JOBS, job_body([profile(email=f"u{i}@x.io") for i in range(10_001)]))
        assert over.status_code == 400
        assert over.json()["errors"][0]["source"]["pointer"] == "/data/attributes/profiles/data"
        assert kl.jobs == {}
        small = json.dumps(job_body([profile(email="a@x.io")]))
        kl.max_request_bytes = len(small) - 1
        too_big = http.post(JOBS, content=small, headers={"Content-Type": MEDIA})
        assert too_big.status_code == 413
        kl.max_request_bytes = len(small)
        assert http.post(JOBS, content=small, headers={"Content-Type": MEDIA}).status_code == 202


def test_rate_limit_is_per_endpoint_with_ratelimit_headers_and_retry_after() -> None:
    kl = KlaviyoEmulator(api_key=KEY, burst=2, steady=150, clock=FrozenClock())
    with serve(kl) as http:
        first, second, third = (http.get("/api/lists") for _ in range(3))
        assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
        assert first.headers["ratelimit-limit"] == "2"
        assert (first.headers["ratelimit-remaining"], second.headers["ratelimit-remaining"]) == (
            "1",
            "0",
        )
        assert int(first.headers["ratelimit-reset"]) == 1
        assert third.json()["errors"][0]["code"] == "throttled"
        assert third.headers["retry-after"] == "1"
        assert "ratelimit-limit" not in third.headers
        assert http.get("/api/profiles").status_code == 200  # its own window


def test_held_jobs_stay_processing_and_cancelled_jobs_write_nothing(
    kl: KlaviyoEmulator, http: httpx.Client
) -> None:
    http.post("/_emulator/faults", json={"hold_jobs": True})
    job_id = post(http, JOBS, job_body([profile(email="a@x.io")], "L1")).json()["data"]["id"]
    statuses = {
        http.get(f"{JOBS}/{job_id}").json()["data"]["attributes"]["status"] for _ in range(4)
    }
    assert statuses == {"processing"}
    assert kl.state()["profiles"] == []
    http.post("/_emulator/faults", json={"hold_jobs": False})
    assert http.get(f"{JOBS}/{job_id}").json()["data"]["attributes"]["status"] == "complete"

    other = post(http, JOBS, job_body([profile(email="b@x.io")])).json()["data"]["id"]
    http.post("/_emulator/faults", json={"cancel_job": other})
    assert http.get(f"{JOBS}/{other}").json()["data"]["attributes"]["status"] == "cancelled"
    assert [p["email"] for p in kl.state()["profiles"]] == ["a@x.io"]


def test_list_membership_filters_and_deletion(kl: KlaviyoEmulator, http: httpx.Client) -> None:
    run_job(http, job_body([profile(email="a@x.io"), profile(email="b@x.io")], "L1"))
    found = http.get("/api/profiles", params={"filter": 'any(email,["A@x.io","b@x.io"])'})
    ids = {r["attributes"]["email"]: r["id"] for r in found.json()["data"]}
    assert set(ids) == {"a@x.io", "b@x.io"}
    one = http.get("/api/profiles", params={"filter": 'equals(email,"b@x.io")'}).json()["data"]
    assert [r["id"] for r in one] == [ids["b@x.io"]]
    assert http.get("/api/profiles", params={"filter": "contains(email,x)"}).status_code == 400

    removed = http.request(
        "DELETE",
        "/api/lists/L1/relationships/profiles",
        content=json.dumps({"data": [{"type": "profile", "id": ids["a@x.io"]}]}),
        headers={"Content-Type": MEDIA},
    )
    assert removed.status_code == 204
    assert kl.members("L1") == {"b@x.io"}
    unknown = post(http, "/api/lists/L1/relationships/profiles", {"data": [{"id": "nope"}]})
    assert unknown.status_code == 400

    deletion = {
        "data": {
            "type": "data-privacy-deletion-job",
            "attributes": {
                "profile": {"data": {"type": "profile", "attributes": {"email": "b@x.io"}}}
            },
        }
    }
    assert post(http, "/api/data-privacy-deletion-jobs", deletion).status_code == 202
    assert [p["email"] for p in kl.state()["profiles"]] == ["a@x.io"]
    assert kl.members("L1") == set()


def test_fault_switches_answer_in_json_api_shape(kl: KlaviyoEmulator, http: httpx.Client) -> None:
    kl.faults.fail_next(1, 503)
    kl.faults.rate_limit_next(1, retry_after=3)
    failed = post(http, JOBS, job_body([profile(email="a@x.io")]))
    limited = post(http, JOBS, job_body([profile(email="a@x.io")]))

    assert failed.status_code == 503 and failed.json()["errors"][0]["status"] == 503
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert kl.jobs == {}
