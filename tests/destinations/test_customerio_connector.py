"""The Customer.io destination against its emulator: caps, partial errors, retries, checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.customerio import CustomerIoEmulator
from backhaul.testing.sandbox import Sandbox
from backhaul.testing.sandbox import describe
from conftest import Builder

pytestmark = pytest.mark.integration

SITE, KEY = "site-7", "cio-test-key-41c9"
MAPPINGS = [
    {"column": "email", "field": "email"},
    {"column": "name", "field": "name"},
    {"column": "score", "field": "score"},
]


@pytest.fixture
def cio() -> Iterator[CustomerIoEmulator]:
    emulator = CustomerIoEmulator(site_id=SITE, api_key=KEY, rate_limit=100_000)
    with EmulatorServer(emulator):
        yield emulator


def _destination(project: Builder, cio: CustomerIoEmulator, **extra: Any) -> None:
    assert cio.server is not None
    project.destination(
        "cio",
        type="customerio",
        base_url=cio.server.url,
        site_id=SITE,
        api_key=KEY,
        retry={"base_delay": 0.01, "max_delay": 0.05},
        **extra,
    )


def _sync(project: Builder, **extra: Any) -> None:
    project.sync("s", destination="cio", mappings=MAPPINGS, match={"fields": ["email"]}, **extra)


def _people(cio: CustomerIoEmulator) -> dict[str, dict[str, Any]]:
    return {p["email"]: p["attributes"] for p in cio.state()["people"]}


def _rejected(project: Builder, run_id: str) -> dict[str, str]:
    return {r.key: r.error or "" for r in project.rows(run_id, status="rejected")}


def test_requests_keep_the_byte_caps_and_an_entry_too_big_is_rejected_by_its_key(
    project: Builder,
) -> None:
    # Caps far below Customer.io's, on both sides: the emulator refuses any request over them.
    emulator = CustomerIoEmulator(
        site_id=SITE, api_key=KEY, rate_limit=100_000, max_batch_bytes=3000, max_entry_bytes=400
    )
    project.users(60, "CASE WHEN i = 13 THEN repeat('x', 500) ELSE 'n' END AS note")
    with EmulatorServer(emulator):
        _destination(project, emulator, max_request_bytes=3000, max_entry_bytes=400)
        mappings = [*MAPPINGS, {"column": "note", "field": "note"}]
        project.sync("s", destination="cio", mappings=mappings, match={"fields": ["email"]})

        first = project.run("s")
        again = project.run("s")

    assert first.status is RunStatus.PARTIAL
    assert first.counts.succeeded == 59
    rejected = _rejected(project, first.run_id)
    assert list(rejected) == ["13"]
    assert "customerio takes at most 400 per record" in rejected["13"]
    batches = [c for c in emulator.calls if c.path == "/api/v2/batch" and c.json["batch"]]
    assert len(batches) > 1 and {c.status for c in emulator.calls} == {200, 400}
    assert all(c.status == 200 for c in batches)  # the 400 is the probe's empty batch
    assert sum(len(c.json["batch"]) for c in batches) == 59
    people = _people(emulator)
    assert len(people) == 59 and "u13@example.com" not in people
    # The row too big is retried on the next run (and refused again), nothing else is sent.
    assert again.counts.planned == 1 and list(_rejected(project, again.run_id)) == ["13"]


def test_refused_entries_are_rejected_by_key_and_only_they_are_sent_again(
    project: Builder, cio: CustomerIoEmulator
) -> None:
    project.users(12, "CASE WHEN i = 5 THEN repeat('y', 1200) ELSE 'ok' END AS bio")
    _destination(project, cio)
    mappings = [*MAPPINGS, {"column": "bio", "field": "bio"}]
    project.sync("s", destination="cio", mappings=mappings, match={"fields": ["email"]})
    cio.faults.reject({"u8@example.com": "identifier blocked"})

    first = project.run("s")
    second = project.run("s")
    cio.faults.clear()
    project.sql("UPDATE users SET bio = 'short' WHERE id = 5")
    third = project.run("s")

    assert first.status is RunStatus.PARTIAL and first.counts.succeeded == 10
    rejected = _rejected(project, first.run_id)
    assert set(rejected) == {"5", "8"}
    assert "attributes.bio: property value cannot be longer than 1000 bytes" in rejected["5"]
    assert "identifiers.email: identifier blocked" in rejected["8"]
    # The snapshot advanced for the ten accepted rows only.
    assert second.counts.planned == 2 and set(_rejected(project, second.run_id)) == {"5", "8"}
    assert third.status is RunStatus.SUCCEEDED and third.counts.succeeded == 2
    people = _people(cio)
    assert len(people) == 12 and people["u5@example.com"]["bio"] == "short"


def test_a_request_refused_whole_is_bisected_down_to_what_fits(
    project: Builder,
) -> None:
    # The destination file allows more than this workspace takes: the 400s are bisected.
    emulator = CustomerIoEmulator(
        site_id=SITE, api_key=KEY, rate_limit=100_000, max_batch_bytes=1500
    )
    project.users(30)
    with EmulatorServer(emulator):
        _destination(project, emulator)
        _sync(project)
        run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.succeeded == 30
    statuses = [c.status for c in emulator.calls if c.json and c.json.get("batch")]
    assert 400 in statuses and 200 in statuses
    assert len(_people(emulator)) == 30


def test_mirror_deletes_people_that_leave_the_model(
    project: Builder, cio: CustomerIoEmulator
) -> None:
    project.users(6)
    _destination(project, cio)
    _sync(project, mode="mirror", max_remove_pct=100)
    project.run("s")
    project.sql("DELETE FROM users WHERE id > 4")

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.removed == 2
    assert sorted(_people(cio)) == [f"u{i}@example.com" for i in range(1, 5)]
    deletes = [e for c in cio.calls if c.json for e in c.json.get("batch", [])]
    assert sorted(e["identifiers"]["email"] for e in deletes if e["action"] == "delete") == [
        "u5@example.com",
        "u6@example.com",
    ]


def test_a_rate_limited_request_waits_and_is_sent_again(
    project: Builder, cio: CustomerIoEmulator
) -> None:
    project.users(5)
    _destination(project, cio)
    _sync(project)
    cio.faults.rate_limit_next(2)

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and len(_people(cio)) == 5
    assert [c.status for c in cio.calls].count(429) == 2


def test_a_wrong_key_fails_the_run_saying_what_to_fix(
    project: Builder, cio: CustomerIoEmulator
) -> None:
    project.users(3)
    _destination(project, cio)
    project.destination("cio", **{**_read_destination(project), "api_key": "wrong-key-000"})
    _sync(project)

    run = project.run("s")

    assert run.status is RunStatus.FAILED
    assert "check `site_id` and `api_key`" in (run.error or "")
    assert "wrong-key-000" not in (run.error or "")
    assert cio.state()["people"] == []


def _read_destination(project: Builder) -> dict[str, Any]:
    from ruamel.yaml import YAML

    data: dict[str, Any] = YAML(typ="safe").load(
        (project.root / "destinations/cio.yml").read_text()
    )
    return data


def _line_of(path: Any, text: str) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith(text))


def test_validate_refuses_a_match_field_customerio_cannot_identify_by(
    project: Builder,
) -> None:
    project.users(2)
    project.destination("cio", type="customerio", site_id="s", api_key="k")
    project.sync(
        "s",
        destination="cio",
        mappings=[{"column": "id", "field": "external_id"}, *MAPPINGS],
        match={"fields": ["external_id"]},
    )

    result = project.cli("validate", "--offline")

    assert result.returncode == 2
    line = _line_of(project.root / "syncs/s.yml", "  fields:")
    assert (
        f"syncs/s.yml:{line}: match.fields: customerio identifies people by id, email or "
        "cio_id" in result.stderr
    ), result.stderr


def test_validate_refuses_a_destination_file_without_its_key(project: Builder) -> None:
    project.users(2)
    project.destination("cio", type="customerio", site_id="s", region="mars")
    _sync(project)

    result = project.cli("validate", "--offline")

    assert result.returncode == 2
    line = _line_of(project.root / "destinations/cio.yml", "region:")
    assert f"destinations/cio.yml:{line}: region: must be 'us' or 'eu'" in result.stderr
    assert "destinations/cio.yml: api_key: missing required key `api_key`" in result.stderr


def test_the_sandbox_destination_file_runs_a_sync(project: Builder) -> None:
    project.users(4)
    with Sandbox(["customerio"]) as sandbox:
        [entry] = sandbox.entries
        config = entry.destination_file
        assert config is not None and "destinations/customerio.yml:" in describe(entry)
        project.write("destinations/cio.yml", json.loads(json.dumps(config)))
        _sync(project)
        result = project.cli("run", "s", env=entry.credentials)
        people = entry.emulator.state()["people"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p["email"] for p in people) == [f"u{i}@example.com" for i in range(1, 5)]
