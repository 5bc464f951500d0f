"""The Salesforce destination end to end: real syncs against the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from backhaul import api
from backhaul.calls import MemoryRecorder
from backhaul.cli.app import app
from backhaul.destinations.base import Batch
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import FieldInfo
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordStatus
from backhaul.destinations.salesforce import SalesforceConfig
from backhaul.destinations.salesforce import SalesforceDestination
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.salesforce import SalesforceEmulator
from conftest import Builder
from conftest import keys_of

pytestmark = pytest.mark.integration

MAPPINGS = [
    {"column": "id", "field": "External_Id__c"},
    {"column": "name", "field": "LastName"},
    {"column": "score", "field": "Lead_Score__c"},
]
REFUSED = {"3": "Contact is on the do-not-call list", "7": "Duplicate of an existing contact"}
FAST = {"base_delay": 0.01, "max_delay": 0.05}


@pytest.fixture
def org() -> Iterator[tuple[SalesforceEmulator, str]]:
    emulator = SalesforceEmulator()
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, org: tuple[SalesforceEmulator, str]) -> None:
    for name, value in org[0].credentials().items():
        monkeypatch.setenv(name, value)


def setup(project: Builder, url: str, n: int = 10, **dest: Any) -> None:
    project.users(n)
    config: dict[str, Any] = {
        "type": "salesforce",
        "login_url": url,
        "auth": {
            "type": "client_credentials",
            "client_id": "${env:SALESFORCE_CLIENT_ID}",
            "client_secret": "${env:SALESFORCE_CLIENT_SECRET}",
        },
        "external_id_field": "External_Id__c",
        "poll_interval_seconds": 0.01,
        "retry": FAST,
        **dest,
    }
    project.destination("sf", **config)
    project.sync("s", destination="sf", object="Contact", mappings=MAPPINGS)


def contacts(emulator: SalesforceEmulator) -> dict[str, dict[str, Any]]:
    return emulator.by_field("Contact", "External_Id__c")


def test_bulk_failed_rows_are_mapped_to_their_keys_shown_and_retried(
    project: Builder, org: tuple[SalesforceEmulator, str], env: None
) -> None:
    emulator, url = org
    setup(project, url, bulk="always")
    emulator.faults.reject(REFUSED)

    first = project.run("s")

    assert first.status is RunStatus.PARTIAL and first.counts.succeeded == 8
    assert len(emulator.jobs) == 1  # the batch went through one Bulk API job
    rejected = {r.key: r.error or "" for r in project.rows(first.run_id, status="rejected")}
    assert set(rejected) == set(REFUSED)
    for key, error in REFUSED.items():
        assert rejected[key] == f"FIELD_CUSTOM_VALIDATION_EXCEPTION: {error}"
    assert sorted(contacts(emulator), key=int) == [str(i) for i in range(1, 11) if i not in (3, 7)]
    shown = CliRunner().invoke(app, ["run-show", first.run_id[:8], "-C", str(project.root)])
    assert shown.exit_code == 0
    for key, error in REFUSED.items():
        line = next(ln for ln in shown.stdout.splitlines() if error in ln)
        assert f" {key} " in f" {line} "

    second = project.run("s")
    assert second.counts.planned == 2 and second.counts.rejected == 2
    assert keys_of(project.rows(second.run_id, status="rejected")) == set(REFUSED)

    emulator.faults.clear()
    third = project.run("s")
    assert third.status is RunStatus.SUCCEEDED and third.counts.succeeded == 2
    assert contacts(emulator)["7"]["LastName"] == "name 7"
    assert len(contacts(emulator)) == 10
    assert project.run("s").counts.planned == 0


def test_bulk_rows_a_failed_job_did_not_reach_are_sent_again(
    project: Builder, org: tuple[SalesforceEmulator, str], env: None
) -> None:
    emulator, url = org
    setup(project, url, bulk="always")
    emulator.bulk_fail_after = 4

    first = project.run("s")

    assert first.status is RunStatus.PARTIAL and first.counts.succeeded == 4
    errors = [r.error or "" for r in project.rows(first.run_id, status="rejected")]
    assert len(errors) == 6
    assert all(e.startswith("not processed by Salesforce (job 750") for e in errors)
    emulator.bulk_fail_after = None
    second = project.run("s")
    assert second.status is RunStatus.SUCCEEDED and second.counts.succeeded == 6
    assert len(contacts(emulator)) == 10


def test_auto_uses_bulk_for_batches_at_the_threshold(
    project: Builder, org: tuple[SalesforceEmulator, str], env: None
) -> None:
    emulator, url = org
    setup(project, url, n=12, bulk="auto", bulk_threshold=5)
    project.sync("s", destination="sf", object="Contact", mappings=MAPPINGS, batch_size=5)

    run = project.run("s")

    # Batches of 5, 5 and 2: two Bulk jobs, and one collections call for the last 2.
    assert run.status is RunStatus.SUCCEEDED and len(contacts(emulator)) == 12
    assert len(emulator.jobs) == 2
    assert sum(c.path.endswith("/External_Id__c") for c in emulator.calls) == 1


@pytest.mark.parametrize(
    ("auth", "fix"),
    [
        ({"client_secret": "wrong-secret"}, "`auth.client_secret`"),
        ({"client_id": "wrong-client"}, "`auth.client_id`"),
        (
            {"type": "refresh_token", "refresh_token": "revoked-token"},
            "`auth.refresh_token`",
        ),
    ],
)
def test_wrong_credentials_give_one_clear_error(
    project: Builder,
    org: tuple[SalesforceEmulator, str],
    env: None,
    auth: dict[str, str],
    fix: str,
) -> None:
    emulator, url = org
    setup(project, url)
    base = {
        "type": "client_credentials",
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
    }
    project.destination(
        "sf",
        type="salesforce",
        login_url=url,
        external_id_field="External_Id__c",
        auth={**base, **auth},
    )

    run = project.run("s")

    assert run.status is RunStatus.FAILED and run.exit_code == 1
    error = run.error or ""
    assert error.startswith("salesforce login at 127.0.0.1") and fix in error
    assert "\n" not in error and "wrong-secret" not in error and "revoked-token" not in error
    assert [c.path for c in emulator.calls] == ["/services/oauth2/token"]  # no retry storm
    assert contacts(emulator) == {}


def test_the_cli_prints_the_credential_error_without_a_traceback(
    project: Builder,
    org: tuple[SalesforceEmulator, str],
    env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, url = org
    setup(project, url)
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", "not-the-secret")

    result = CliRunner().invoke(app, ["run", "s", "--json", "-C", str(project.root)])

    assert result.exit_code == 1
    [summary] = json.loads(result.stdout)
    assert "check `auth.client_id` and `auth.client_secret`" in summary["error"]
    assert "Traceback" not in result.stdout + result.stderr


def test_expired_session_is_renewed_once_and_no_token_is_recorded(
    project: Builder, org: tuple[SalesforceEmulator, str], env: None
) -> None:
    emulator, url = org
    setup(project, url)
    project.run("s")
    project.sql("UPDATE users SET score = score + 1")
    emulator.expire_sessions()

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED
    assert all(r["Lead_Score__c"] == int(k) % 97 + 1 for k, r in contacts(emulator).items())
    with api.open_store(project.load()) as store:
        calls = [c for r in store.runs(limit=10) for c in store.calls(r.run_id, limit=1000)]
    texts = [
        " ".join(
            [c.url, json.dumps(c.request_headers), c.request_body or "", c.response_body or ""]
        )
        for c in calls
    ]
    assert [c.status for c in calls].count(401) == 0  # a session lives for one run
    secrets = [*emulator.issued, emulator.client_secret]
    assert len(emulator.issued) == 2
    assert not [s for s in secrets for t in texts if s in t]


def make_batch(rows: list[dict[str, Any]], operation: Operation = Operation.UPSERT) -> Batch:
    table = pa.Table.from_pylist(rows)
    return Batch(
        operation,
        table,
        [str(r["External_Id__c"]) for r in rows],
        ["External_Id__c"],
        object="Contact",
    )


def destination(url: str, emulator: SalesforceEmulator, **extra: Any) -> SalesforceDestination:
    config = SalesforceConfig.model_validate(
        {
            "type": "salesforce",
            "login_url": url,
            "auth": {
                "type": "refresh_token",
                "client_id": emulator.client_id,
                "client_secret": emulator.client_secret,
                "refresh_token": emulator.refresh_token,
            },
            "object": "Contact",
            "external_id_field": "External_Id__c",
            "retry": {**FAST, "max_attempts": 3},
            **extra,
        }
    )
    context = DestinationContext(Path("."), MemoryRecorder(), secrets=(emulator.client_secret,))
    return SalesforceDestination(config, context)


async def test_a_session_that_expires_mid_run_is_renewed(
    org: tuple[SalesforceEmulator, str],
) -> None:
    emulator, url = org
    dest = destination(url, emulator)
    await dest.prepare(
        {"External_Id__c": pa.string(), "LastName": pa.string()}, ["External_Id__c"], "Contact"
    )
    first = await dest.write(make_batch([{"External_Id__c": "a", "LastName": "A"}]))
    emulator.expire_sessions()
    second = await dest.write(make_batch([{"External_Id__c": "b", "LastName": "B"}]))
    await dest.close()

    assert [r.status for r in first + second] == [RecordStatus.OK, RecordStatus.OK]
    assert sorted(contacts(emulator)) == ["a", "b"]
    assert [c.status for c in emulator.calls if "oauth2" in c.path] == [200, 200]
    assert [c.status for c in emulator.calls].count(401) == 1


async def test_modes_update_insert_clear_and_delete(org: tuple[SalesforceEmulator, str]) -> None:
    emulator, url = org
    dest = destination(url, emulator)
    fields = {"External_Id__c": pa.string(), "LastName": pa.string(), "FirstName": pa.string()}
    await dest.prepare(fields, ["External_Id__c"], "Contact")
    seed = [{"External_Id__c": k, "LastName": k.upper(), "FirstName": "f"} for k in "ab"]
    await dest.write(make_batch(seed))

    update = await dest.write(
        make_batch(
            [
                {"External_Id__c": "a", "LastName": "A2", "FirstName": "g"},
                {"External_Id__c": "z", "LastName": "Z", "FirstName": "g"},
            ],
            Operation.UPDATE,
        )
    )
    insert = await dest.write(
        make_batch(
            [
                {"External_Id__c": "b", "LastName": "ignored", "FirstName": None},
                {"External_Id__c": "c", "LastName": "C", "FirstName": None},
            ],
            Operation.INSERT,
        )
    )
    clear = await dest.write(
        make_batch([{"External_Id__c": "a", "LastName": None, "FirstName": None}], Operation.CLEAR)
    )
    delete = await dest.write(
        make_batch([{"External_Id__c": "b"}, {"External_Id__c": "gone"}], Operation.DELETE)
    )
    await dest.close()

    assert update[0].status is RecordStatus.OK and update[1].status is RecordStatus.REJECTED
    assert update[1].error == (
        "salesforce Contact has no record with External_Id__c = z: update mode creates none"
    )
    assert [r.status for r in insert] == [RecordStatus.OK, RecordStatus.OK]
    # LastName is required: Salesforce refuses to clear it, and says so for that record.
    assert clear[0].status is RecordStatus.REJECTED
    assert "REQUIRED_FIELD_MISSING" in (clear[0].error or "")
    assert [r.status for r in delete] == [RecordStatus.OK, RecordStatus.OK]
    people = contacts(emulator)
    assert sorted(people) == ["a", "c"] and "z" not in people
    assert people["a"]["LastName"] == "A2" and people["a"]["FirstName"] == "g"


async def test_bulk_delete_removes_by_looked_up_ids(org: tuple[SalesforceEmulator, str]) -> None:
    emulator, url = org
    dest = destination(url, emulator, bulk="always", poll_interval_seconds=0.01)
    await dest.prepare(
        {"External_Id__c": pa.string(), "LastName": pa.string()}, ["External_Id__c"], "Contact"
    )
    await dest.write(make_batch([{"External_Id__c": k, "LastName": k} for k in "abc"]))
    results = await dest.write(make_batch([{"External_Id__c": k} for k in "ac"], Operation.DELETE))
    await dest.close()

    assert [r.status for r in results] == [RecordStatus.OK, RecordStatus.OK]
    assert sorted(contacts(emulator)) == ["b"]
    assert [j.operation for j in emulator.jobs.values()] == ["upsert", "delete"]


@pytest.mark.parametrize(
    ("extra", "fields", "message"),
    [
        ({"object": "Nope__c"}, ["External_Id__c"], "has no object `Nope__c`"),
        ({"external_id_field": "Nope__c"}, ["Nope__c"], "has no field `Nope__c`"),
        ({"external_id_field": "Email"}, ["Email"], "is not an External ID field"),
        ({}, ["External_Id__c", "Shoe__c"], "has no field `Shoe__c`"),
        ({}, ["External_Id__c", "CreatedDate"], "`CreatedDate` cannot be updated"),
    ],
)
async def test_object_and_fields_are_checked_before_anything_is_sent(
    org: tuple[SalesforceEmulator, str], extra: dict[str, str], fields: list[str], message: str
) -> None:
    emulator, url = org
    dest = destination(url, emulator, **extra)

    try:
        with pytest.raises(DestinationError) as caught:
            await dest.prepare({f: pa.string() for f in fields}, [fields[0]], "Contact")
    finally:
        await dest.close()

    assert caught.value.failure is FailureType.CONFIG and message in caught.value.message
    assert caught.value.message.startswith("salesforce ")
    assert not any("composite" in c.path or "jobs" in c.path for c in emulator.calls)


async def test_throttled_calls_wait_and_the_daily_quota_stops_the_batch(
    org: tuple[SalesforceEmulator, str],
) -> None:
    emulator, url = org
    dest = destination(url, emulator)
    await dest.prepare(
        {"External_Id__c": pa.string(), "LastName": pa.string()}, ["External_Id__c"], "Contact"
    )
    emulator.faults.rate_limit_next(1, retry_after=1)
    ok = await dest.write(make_batch([{"External_Id__c": "a", "LastName": "A"}]))
    throttled = next(i for i, c in enumerate(emulator.calls) if c.status == 403)
    waited = emulator.calls[throttled + 1].at - emulator.calls[throttled].at
    emulator.use_up_api_quota()
    try:
        with pytest.raises(DestinationError) as caught:
            await dest.write(make_batch([{"External_Id__c": "b", "LastName": "B"}]))
    finally:
        await dest.close()

    assert ok[0].status is RecordStatus.OK and waited >= 0.95
    assert caught.value.failure is FailureType.TRANSIENT
    assert "daily API request allocation (api-usage=" in caught.value.message
    assert sorted(contacts(emulator)) == ["a"]


async def test_connection_test_logs_in_and_describes_the_object(
    org: tuple[SalesforceEmulator, str],
) -> None:
    emulator, url = org
    good = destination(url, emulator)
    await good.check()
    await good.close()
    bad = destination(url, emulator)
    bad.config.auth.client_secret = "wrong-secret"
    with pytest.raises(DestinationError) as refused:
        await bad.check()
    await bad.close()

    assert refused.value.failure is FailureType.CONFIG
    assert "refused the credentials (invalid_client" in refused.value.message
    assert [(c.path, c.status) for c in emulator.calls] == [
        ("/services/oauth2/token", 200),
        ("/services/data/v62.0/sobjects/Contact/describe", 200),
        ("/services/oauth2/token", 400),
    ]


async def test_fields_come_from_the_describe_with_kinds_and_flags(
    org: tuple[SalesforceEmulator, str],
) -> None:
    emulator, url = org
    dest = destination(url, emulator, object=None)
    try:
        listed = await dest.fields("Contact")
        again = await dest.fields("Contact")
        with pytest.raises(DestinationError) as unknown:
            await dest.fields("Nope__c")
    finally:
        await dest.close()

    by_name = {f.name: f for f in listed}
    assert [f.name for f in listed] == sorted(by_name) and again == listed
    assert by_name["External_Id__c"] == FieldInfo(
        "External_Id__c", "text", label="External Id", unique=True
    )
    assert by_name["LastName"].required and not by_name["LastName"].read_only
    assert by_name["Lead_Score__c"].type == "number" and not by_name["Lead_Score__c"].required
    assert by_name["HasOptedOutOfEmail"].type == "bool"
    assert not by_name["HasOptedOutOfEmail"].required  # not nillable, but defaulted on create
    assert by_name["CreatedDate"].type == "datetime" and by_name["CreatedDate"].read_only
    assert by_name["Id"].read_only and not by_name["Id"].required
    assert not by_name["Email"].unique  # an idLookup field, but not one records match by
    assert unknown.value.failure is FailureType.CONFIG and "no object `Nope__c`" in (
        unknown.value.message
    )
    describes = [c.path for c in emulator.calls if c.path.endswith("/describe")]
    assert describes == [
        "/services/data/v62.0/sobjects/Contact/describe",
        "/services/data/v62.0/sobjects/Nope__c/describe",
    ]


# -- identity that survives change ------------------------------------------------------------


@pytest.mark.parametrize("bulk", ["never", "always"])
def test_a_changed_external_id_updates_the_record_by_its_id(
    project: Builder, org: tuple[SalesforceEmulator, str], env: None, bulk: str
) -> None:
    emulator, url = org
    setup(project, url, n=40, bulk=bulk)
    project.sync(
        "s",
        destination="sf",
        object="Contact",
        mode="mirror",
        max_remove_pct=100,
        match={"fields": ["External_Id__c"]},
        mappings=[
            {"column": "email", "field": "External_Id__c"},
            {"column": "name", "field": "LastName"},
        ],
    )
    assert project.run("s").status is RunStatus.SUCCEEDED
    before = {k: c["Id"] for k, c in contacts(emulator).items()}
    project.sql(
        "UPDATE users SET email = 'moved' || id || '@example.org' WHERE id % 20 = 0",
        "UPDATE users SET name = 'renamed' WHERE id = 5",
    )

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.counts.changed == 3 and run.counts.succeeded == 3
    after = contacts(emulator)
    model = {str(e): str(n) for e, n in project.sql("SELECT email, name FROM users")}
    assert {k: c["LastName"] for k, c in after.items()} == model  # no orphan record
    assert after["moved20@example.org"]["Id"] == before["u20@example.com"]
    assert after["moved40@example.org"]["Id"] == before["u40@example.com"]


def test_the_object_and_external_id_are_checked_before_anything_is_sent(
    project: Builder, org: tuple[SalesforceEmulator, str], env: None
) -> None:
    # Refused by the same checks as `validate`, before the destination is opened: not
    # even a login reaches the org.
    emulator, url = org
    setup(project, url, external_id_field=None)
    two = {"fields": ["External_Id__c", "LastName"]}
    project.sync("s", destination="sf", mappings=MAPPINGS, match=two)

    result = project.cli("run", "s")

    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert [ln.split(": ")[2] for ln in lines] == ["object", "match.fields"], lines
    assert lines[0].startswith("error: syncs/s.yml:")
    assert "salesforce needs an object" in lines[0]
    assert "by one External ID field" in lines[1]
    assert emulator.calls == []
