"""The Segment destination against its emulator: caps, whole-batch refusals, messageId."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from backhaul import api
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.segment import SegmentEmulator
from backhaul.testing.sandbox import Sandbox
from backhaul.testing.sandbox import describe
from conftest import Builder

pytestmark = pytest.mark.integration

KEY = "sgTestWriteKey000000000000000077"
MAPPINGS = [
    {"column": "email", "field": "userId"},
    {"column": "name", "field": "name"},
    {"column": "score", "field": "score"},
]


@pytest.fixture
def segment() -> Iterator[SegmentEmulator]:
    emulator = SegmentEmulator(write_key=KEY, rate_limit=100_000)
    with EmulatorServer(emulator):
        yield emulator


def _destination(project: Builder, emulator: SegmentEmulator, **extra: Any) -> None:
    assert emulator.server is not None
    config: dict[str, Any] = {
        "type": "segment",
        "base_url": emulator.server.url,
        "write_key": KEY,
        "retry": {"base_delay": 0.01, "max_delay": 0.05},
        **extra,
    }
    project.destination("seg", **config)


def _sync(project: Builder, mappings: list[dict[str, Any]] = MAPPINGS, **extra: Any) -> None:
    project.sync("s", destination="seg", mappings=mappings, match={"fields": ["userId"]}, **extra)


def _batches(emulator: SegmentEmulator) -> list[list[dict[str, Any]]]:
    return [c.json["batch"] for c in emulator.calls if c.path == "/v1/batch" and c.status == 200]


def _rejected(project: Builder, run_id: str) -> dict[str, str]:
    return {r.key: r.error or "" for r in project.rows(run_id, status="rejected")}


def test_batches_keep_the_caps_and_a_message_too_big_is_rejected_by_its_key(
    project: Builder,
) -> None:
    # Caps far below Segment's on both sides: the emulator answers 400 to any batch over them.
    emulator = SegmentEmulator(
        write_key=KEY, rate_limit=100_000, max_batch_bytes=2500, max_message_bytes=400
    )
    project.users(40, "CASE WHEN i = 21 THEN repeat('z', 450) ELSE 'n' END AS note")
    with EmulatorServer(emulator):
        _destination(project, emulator, max_request_bytes=2500, max_message_bytes=400)
        _sync(project, [*MAPPINGS, {"column": "note", "field": "note"}])
        run = project.run("s")

    assert run.status is RunStatus.PARTIAL and run.counts.succeeded == 39
    rejected = _rejected(project, run.run_id)
    assert list(rejected) == ["21"] and "segment takes at most 400 per record" in rejected["21"]
    assert {c.status for c in emulator.calls} == {200}
    assert len(_batches(emulator)) > 1
    assert sum(len(b) for b in _batches(emulator)) == 39
    assert len(emulator.state()["users"]) == 39


def test_a_batch_refused_whole_is_bisected_so_only_the_bad_message_is_rejected(
    project: Builder,
) -> None:
    # This source takes smaller messages than the destination file allows: Segment refuses
    # the whole batch (400), and the bisection finds the one message at fault.
    emulator = SegmentEmulator(write_key=KEY, rate_limit=100_000, max_message_bytes=300)
    project.users(10, "CASE WHEN i = 6 THEN repeat('q', 400) ELSE 'n' END AS note")
    with EmulatorServer(emulator):
        _destination(project, emulator)
        _sync(project, [*MAPPINGS, {"column": "note", "field": "note"}])
        first = project.run("s")
        second = project.run("s")

    assert first.status is RunStatus.PARTIAL and first.counts.succeeded == 9
    rejected = _rejected(project, first.run_id)
    assert list(rejected) == ["6"]
    assert "400 Bad Request" in rejected["6"] and "larger than 300 bytes" in rejected["6"]
    assert 400 in [c.status for c in emulator.calls]
    assert len(emulator.state()["users"]) == 9
    # Only the refused row is sent again; the nine acknowledged ones are not.
    assert second.counts.planned == 1


def test_identify_sends_traits_under_the_user_id_with_a_message_id(
    project: Builder, segment: SegmentEmulator
) -> None:
    project.users(3)
    _destination(project, segment, integrations={"All": True})
    _sync(project)

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED
    [batch] = _batches(segment)
    first = batch[0]
    assert first["type"] == "identify" and first["userId"] == "u1@example.com"
    assert first["traits"] == {"name": "name 1", "score": 1}
    assert first["messageId"].startswith("backhaul-") and len(first["messageId"]) < 100
    assert len({m["messageId"] for m in batch}) == 3
    assert segment.state()["users"]["u2@example.com"]["traits"]["name"] == "name 2"
    assert segment.calls[0].json["integrations"] == {"All": True}
    assert segment.calls[0].headers["authorization"].startswith("Basic ")
    assert KEY not in json.dumps(segment.calls[0].json)


def test_track_sends_an_event_per_change(project: Builder, segment: SegmentEmulator) -> None:
    project.users(2)
    _destination(project, segment, call="track", event="Score Changed")
    _sync(project)
    project.run("s")
    project.sql("UPDATE users SET score = 50 WHERE id = 2")

    project.run("s")

    events = segment.state()["events"]
    assert [(e["userId"], e["event"], e["properties"]["score"]) for e in events] == [
        ("u1@example.com", "Score Changed", 1),
        ("u2@example.com", "Score Changed", 2),
        ("u2@example.com", "Score Changed", 50),
    ]


def test_a_change_sent_again_after_a_failure_keeps_its_message_id(
    project: Builder, segment: SegmentEmulator
) -> None:
    project.users(4)
    # The answer is lost (the client gives up before Segment answers, Segment keeps it):
    # the run fails and the snapshot does not advance.
    _destination(project, segment, timeout_seconds=0.2, retry={"max_attempts": 1})
    _sync(project)
    segment.faults.latency = 0.6

    failed = project.run("s")
    with api.open_store(project.load()) as store:
        attempts = len(store.calls(failed.run_id, limit=1000))
    # Every attempt the client gave up on still reaches the emulator and is applied, a
    # little later (a call is logged as it arrives; its status is set once it is answered).
    _wait_for(lambda: _answered_batches(segment) == attempts)
    segment.faults.latency = 0
    resent = project.run("s")
    project.sql("UPDATE users SET name = 'renamed' WHERE id = 1")
    changed = project.run("s")

    assert failed.status is RunStatus.FAILED
    assert resent.status is RunStatus.SUCCEEDED and resent.counts.succeeded == 4
    assert changed.status is RunStatus.SUCCEEDED and changed.counts.succeeded == 1
    *sends, later = _all_batches(segment)
    first = sends[0]
    ids = [m["messageId"] for m in first]
    # Every send of the first change (the engine's own retries of the failed run too)
    # carried the same ids, and Segment kept the first of each.
    assert len(sends) >= 2 and all([m["messageId"] for m in b] == ids for b in sends)
    state = segment.state()
    assert sorted(state["duplicates"]) == sorted(ids * (len(sends) - 1))
    assert state["accepted"] == 5
    assert later[0]["messageId"] not in {m["messageId"] for m in first}
    assert state["users"]["u1@example.com"]["traits"]["name"] == "renamed"


def _all_batches(emulator: SegmentEmulator) -> list[list[dict[str, Any]]]:
    return [c.json["batch"] for c in emulator.calls if c.path == "/v1/batch"]


def _answered_batches(emulator: SegmentEmulator) -> int:
    return sum(1 for c in emulator.calls if c.path == "/v1/batch" and c.status)


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the emulator never took the batch"
        time.sleep(0.05)


def test_a_rate_limited_batch_waits_and_is_sent_again(
    project: Builder, segment: SegmentEmulator
) -> None:
    project.users(3)
    _destination(project, segment)
    _sync(project)
    segment.faults.rate_limit_next(1, retry_after=1)

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED
    assert [c.status for c in segment.calls] == [429, 200]
    assert len(segment.state()["users"]) == 3


def _line_of(path: Any, text: str) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith(text))


def test_validate_refuses_a_match_field_that_is_not_a_segment_identity(
    project: Builder,
) -> None:
    project.users(2)
    project.destination("seg", type="segment", write_key="k")
    project.sync(
        "s",
        destination="seg",
        mappings=[{"column": "email", "field": "email"}],
        match={"fields": ["email"]},
    )

    result = project.cli("validate", "--offline")

    assert result.returncode == 2
    line = _line_of(project.root / "syncs/s.yml", "  fields:")
    assert (
        f"syncs/s.yml:{line}: match.fields: segment messages are identified by userId or "
        "anonymousId" in result.stderr
    ), result.stderr


def test_validate_refuses_mirror_mode_and_a_track_call_without_an_event(
    project: Builder,
) -> None:
    project.users(2)
    project.destination("seg", type="segment", write_key="k", call="track")
    _sync(project, mode="mirror")

    result = project.cli("validate", "--offline")

    assert result.returncode == 2
    line = _line_of(project.root / "destinations/seg.yml", "call:")
    assert f"destinations/seg.yml:{line}: call: `call` track needs `event`" in result.stderr
    project.destination("seg", type="segment", write_key="k", event="Scored")
    result = project.cli("validate", "--offline")
    line = _line_of(project.root / "destinations/seg.yml", "event:")
    assert f"destinations/seg.yml:{line}: event: `event` names track events" in result.stderr
    project.destination("seg", type="segment", write_key="k")
    result = project.cli("validate", "--offline")
    line = _line_of(project.root / "syncs/s.yml", "mode:")
    assert f"syncs/s.yml:{line}: mode:" in result.stderr, result.stderr
    assert "`segment` destination cannot delete records" in result.stderr


def test_the_sandbox_destination_file_runs_a_sync(project: Builder) -> None:
    project.users(4)
    with Sandbox(["segment"]) as sandbox:
        [entry] = sandbox.entries
        config = entry.destination_file
        assert config is not None and "destinations/segment.yml:" in describe(entry)
        project.write("destinations/seg.yml", json.loads(json.dumps(config)))
        _sync(project)
        result = project.cli("run", "s", env=entry.credentials)
        users = entry.emulator.state()["users"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(users) == [f"u{i}@example.com" for i in range(1, 5)]
