"""The Klaviyo destination through real syncs against the Klaviyo emulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backhaul.destinations.klaviyo import KlaviyoConfig
from backhaul.destinations.klaviyo import KlaviyoDestination
from backhaul.plugins import Registry
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.klaviyo import KlaviyoEmulator
from backhaul.testing.sandbox import Sandbox
from backhaul.testing.sandbox import describe
from conftest import Builder
from conftest import keys_of

pytestmark = pytest.mark.integration

KEY = "pk_test_3b8e1f0c9d2a4e6b8c0d1e2f"
LIST = "Y6nRLr"
JOBS = "/api/profile-bulk-import-jobs"
FAST = {
    "poll_interval_seconds": 0.01,
    "retry": {"max_attempts": 4, "base_delay": 0.01, "max_delay": 0.05},
}
MAPPINGS = [
    {"column": "email", "field": "email"},
    {"column": "name", "field": "first_name"},
    {"column": "score", "field": "properties.score"},
]


@pytest.fixture
def klaviyo() -> KlaviyoEmulator:
    return KlaviyoEmulator(api_key=KEY, lists={LIST: "Newsletter"}, burst=100, steady=10_000)


@pytest.fixture
def server(klaviyo: KlaviyoEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(klaviyo) as running:
        yield running


@pytest.fixture
def proj(project: Builder, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Builder:
    monkeypatch.setenv("KLAVIYO_API_KEY", KEY)
    destination(project, server)
    return project


def destination(project: Builder, server: EmulatorServer, **extra: Any) -> None:
    project.destination(
        "kl",
        type="klaviyo",
        api_key="${env:KLAVIYO_API_KEY}",
        base_url=server.url,
        **{**FAST, **extra},
    )


def profiles_sync(project: Builder, n: int, **extra: Any) -> None:
    project.users(n)
    options: dict[str, Any] = {"match": {"fields": ["email"]}, **extra}
    project.sync("s", destination="kl", mappings=MAPPINGS, **options)


def profiles(klaviyo: KlaviyoEmulator) -> dict[str, dict[str, Any]]:
    return {p["email"]: p for p in klaviyo.state()["profiles"] if p.get("email")}


def job_posts(klaviyo: KlaviyoEmulator) -> list[Any]:
    return [c for c in klaviyo.calls if c.method == "POST" and c.path == JOBS]


def seed(server: EmulatorServer, email: str, list_id: str | None = None) -> None:
    """A profile made outside the sync (in the list, when given)."""
    data: dict[str, Any] = {
        "type": "profile-bulk-import-job",
        "attributes": {"profiles": {"data": [{"type": "profile", "attributes": {"email": email}}]}},
    }
    if list_id:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
    headers = {
        "Authorization": f"Klaviyo-API-Key {KEY}",
        "revision": "2025-01-15",
        "Content-Type": "application/vnd.api+json",
    }
    made = httpx.post(f"{server.url}{JOBS}", json={"data": data}, headers=headers)
    assert made.status_code == 202, made.text
    job = made.json()["data"]["id"]
    for _ in range(5):
        polled = httpx.get(f"{server.url}{JOBS}/{job}", headers=headers).json()
        if polled["data"]["attributes"]["status"] == "complete":
            return
    raise AssertionError("the seeding job did not complete")


def test_registered_with_membership_and_a_dated_revision() -> None:
    assert Registry.discover().destination("klaviyo") is KlaviyoDestination
    assert KlaviyoDestination.capabilities.membership
    config = KlaviyoConfig.model_validate({"type": "klaviyo", "api_key": "pk"})
    assert (config.revision, config.max_profiles_per_job, config.max_job_bytes) == (
        "2025-01-15",
        10_000,
        5_000_000,
    )


def test_upserts_profiles_through_jobs_with_the_configured_revision(
    proj: Builder, klaviyo: KlaviyoEmulator, server: EmulatorServer
) -> None:
    destination(proj, server, revision="2024-10-15")
    profiles_sync(proj, 5)

    run = proj.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    found = profiles(klaviyo)
    assert found["u3@example.com"]["first_name"] == "name 3"
    assert found["u3@example.com"]["properties"] == {"score": 3}
    assert {c.headers.get("revision") for c in klaviyo.calls} == {"2024-10-15"}
    assert len(job_posts(klaviyo)) == 1
    assert "relationships" not in job_posts(klaviyo)[0].json["data"]


def test_jobs_keep_the_profile_and_byte_caps(
    project: Builder, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLAVIYO_API_KEY", KEY)
    klaviyo = server.emulator
    assert isinstance(klaviyo, KlaviyoEmulator)
    # The emulator refuses a job over either cap, so a passing run proves both were kept.
    klaviyo.max_profiles = 40
    klaviyo.max_request_bytes = 6000
    destination(project, server, max_profiles_per_job=40, max_job_bytes=6000)
    profiles_sync(project, 100)
    project.sql("UPDATE users SET name = repeat('x', 7000) WHERE id = 50")

    run = project.run("s")

    assert run.status is RunStatus.PARTIAL
    rejected = {o.key: o.error for o in project.rows(run.run_id, status="rejected")}
    assert list(rejected) == ["50"]
    assert "klaviyo takes at most" in (rejected["50"] or "")
    assert len(profiles(klaviyo)) == 99
    jobs = job_posts(klaviyo)
    sizes = [len(c.json["data"]["attributes"]["profiles"]["data"]) for c in jobs]
    assert sum(sizes) == 99 and max(sizes) <= 40 and len(jobs) >= 3
    assert all(c.status == 202 for c in jobs)


def test_import_errors_are_mapped_to_rows_and_only_accepted_rows_advance(
    proj: Builder, klaviyo: KlaviyoEmulator
) -> None:
    profiles_sync(proj, 30)
    proj.sql("UPDATE users SET email = 'not-an-address' WHERE id = 4")
    klaviyo.faults.reject({"u27@example.com": "Profile is suppressed"})
    # One import error per page: both are found only by following the cursor.
    klaviyo.errors_page_size = 1

    first = proj.run("s")

    assert first.status is RunStatus.PARTIAL
    rejected = {o.key: o.error for o in proj.rows(first.run_id, status="rejected")}
    assert set(rejected) == {"4", "27"}
    assert "Invalid email address" in (rejected["4"] or "")
    assert "Profile is suppressed" in (rejected["27"] or "")
    assert len(profiles(klaviyo)) == 28

    klaviyo.faults.clear()
    second = proj.run("s")

    assert second.counts.planned == 2
    assert keys_of(proj.rows(second.run_id, status="ok")) == {"27"}
    assert keys_of(proj.rows(second.run_id, status="rejected")) == {"4"}


def test_a_job_that_never_completes_acknowledges_nothing(
    proj: Builder, klaviyo: KlaviyoEmulator, server: EmulatorServer
) -> None:
    destination(proj, server, poll_timeout_seconds=0.2)
    profiles_sync(proj, 5)
    klaviyo.hold(True)

    held = proj.run("s")

    assert held.status is RunStatus.FAILED
    assert "did not finish" in (held.error or "")
    assert not keys_of(proj.rows(held.run_id, status="ok"))

    klaviyo.hold(False)
    later = proj.run("s")

    assert later.status is RunStatus.SUCCEEDED, later.error
    assert later.counts.succeeded == 5
    assert set(profiles(klaviyo)) == {f"u{i}@example.com" for i in range(1, 6)}


def test_membership_adds_and_removes_exactly_the_rows_that_leave(
    proj: Builder, klaviyo: KlaviyoEmulator, server: EmulatorServer
) -> None:
    seed(server, "outsider@example.com", LIST)
    seed(server, "u2@example.com")  # a profile before the sync, in no list
    profiles_sync(proj, 6, mode="membership", object=LIST, max_remove_pct=100)
    env = {"KLAVIYO_API_KEY": KEY}

    first = proj.cli("run", "s", env=env)

    assert first.returncode == 0, first.stdout + first.stderr
    everyone = {f"u{i}@example.com" for i in range(1, 7)}
    assert klaviyo.members(LIST) == everyone | {"outsider@example.com"}
    lists = job_posts(klaviyo)[-1].json["data"]["relationships"]["lists"]["data"]
    assert lists == [{"type": "list", "id": LIST}]

    proj.sql("DELETE FROM users WHERE id IN (2, 5)")
    second = proj.cli("run", "s", env=env)

    assert second.returncode == 0, second.stdout + second.stderr
    assert klaviyo.members(LIST) == everyone - {"u2@example.com", "u5@example.com"} | {
        "outsider@example.com"
    }
    # The people who left the list are still there.
    assert set(profiles(klaviyo)) == everyone | {"outsider@example.com"}
    removals = [c for c in klaviyo.calls if c.method == "DELETE"]
    assert len(removals) == 1
    removed = {d["id"] for d in removals[0].json["data"]}
    kept = profiles(klaviyo)
    assert removed == {kept["u2@example.com"]["id"], kept["u5@example.com"]["id"]}
    assert not [c for c in klaviyo.calls if "data-privacy" in c.path]


def test_validate_refuses_bad_files_with_file_line_and_key(proj: Builder) -> None:
    proj.users(2)
    good = (proj.root / "destinations/kl.yml").read_text()
    proj.write("destinations/kl.yml", "type: klaviyo\napi_key: pk_x\nrevision: latest\n")
    sync = {"destination": "kl", "mappings": MAPPINGS, "match": {"fields": ["email"]}}
    proj.sync("s", **sync)

    refused = proj.cli("validate", "--offline")

    assert refused.returncode == 2
    assert re.search(r"^error: destinations/kl\.yml:3: revision: ", refused.stderr, re.M), (
        refused.stderr
    )

    proj.write("destinations/kl.yml", good)
    proj.sync("mirror", mode="mirror", **sync)
    proj.sync("nolist", mode="membership", **sync)
    proj.sync("listed", object=LIST, **sync)
    wrong = [MAPPINGS[0], {"column": "score", "field": "score"}]
    proj.sync("fields", destination="kl", mappings=wrong, match=sync["match"])

    result = proj.cli("validate", "--offline")

    assert result.returncode == 2
    expected = [
        r"syncs/mirror\.yml:\d+: mode: klaviyo profiles are not deleted by a sync: use "
        r"`mode: membership`",
        r"syncs/nolist\.yml: object: klaviyo membership needs a list",  # no key, no line
        r"syncs/listed\.yml:\d+: object: klaviyo writes `profiles`; to keep list `Y6nRLr` use "
        r"`mode: membership`",
        r"syncs/fields\.yml:\d+: mappings: klaviyo profiles have no field `score`: map custom "
        r"values to `properties.NAME`",
    ]
    for pattern in expected:
        assert re.search("^error: " + pattern, result.stderr, re.M), (pattern, result.stderr)


def test_the_sandbox_destination_file_runs_a_membership_sync(project: Builder) -> None:
    """`backhaul sandbox klaviyo` prints a destination file that works as pasted."""
    project.users(3)
    with Sandbox(["klaviyo"]) as sandbox:
        [entry] = sandbox.entries
        text = describe(entry)
        pasted = text.split("destinations/klaviyo.yml:\n")[1].split("\n\n")[0]
        project.write("destinations/klaviyo.yml", "\n".join(ln[2:] for ln in pasted.splitlines()))
        sync = {"match": {"fields": ["email"]}, "mode": "membership", "object": LIST}
        project.sync("s", destination="klaviyo", mappings=MAPPINGS, **sync)
        result = project.cli("run", "s", env=entry.credentials)
        assert result.returncode == 0, result.stdout + result.stderr
        emulator = entry.emulator
        assert isinstance(emulator, KlaviyoEmulator)
        assert emulator.members(LIST) == {f"u{i}@example.com" for i in range(1, 4)}


def test_the_default_rate_limit_keeps_within_klaviyos_windows(
    project: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Klaviyo's own windows (10/s, 150/min per endpoint) and the default `rate_limit`:
    many small jobs, their polls and error reads go through without a single 429."""
    klaviyo = KlaviyoEmulator(api_key=KEY, lists={LIST: "Newsletter"}, max_profiles=5)
    monkeypatch.setenv("KLAVIYO_API_KEY", KEY)
    with EmulatorServer(klaviyo) as server:
        project.destination(
            "kl",
            type="klaviyo",
            api_key="${env:KLAVIYO_API_KEY}",
            base_url=server.url,
            poll_interval_seconds=0.01,
            max_profiles_per_job=5,
        )
        profiles_sync(project, 40)

        run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert len(job_posts(klaviyo)) == 8
    assert len(profiles(klaviyo)) == 40
    assert [c for c in klaviyo.calls if c.status == 429] == []
