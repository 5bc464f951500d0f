"""The webhook destination end to end against the loopback receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from pydantic import ValidationError

from backhaul.calls import MemoryRecorder
from backhaul.destinations.base import Batch
from backhaul.destinations.base import BatchResults
from backhaul.destinations.base import Destination
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordStatus
from backhaul.destinations.webhook import WebhookConfig
from backhaul.destinations.webhook import WebhookDestination
from backhaul.destinations.webhook import record_errors
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.plugins import Registry
from backhaul.testing.receiver import WebhookReceiver

pytestmark = pytest.mark.integration

FAST_RETRY = {"max_attempts": 3, "base_delay": 0.01, "max_delay": 0.05}
PEOPLE = [
    {"id": 1, "email": "ada@example.com", "address.city": "London"},
    {"id": 2, "email": "grace@example.com", "address.city": "New York"},
    {"id": 3, "email": "edsger@example.com", "address.city": "Austin"},
    {"id": 4, "email": "barbara@example.com", "address.city": None},
    {"id": 5, "email": "alan@example.com", "address.city": "Wilmslow"},
]


def nested(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "email": row["email"], "address": {"city": row["address.city"]}}


def make_batch(rows: list[dict[str, Any]], operation: Operation = Operation.UPSERT) -> Batch:
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [("id", pa.int64()), ("email", pa.string()), ("address.city", pa.string())]
        ),
    )
    return Batch(operation, table, [str(r["id"]) for r in rows], ["id"])


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(key_field="id") as hook:
        yield hook


@pytest.fixture
def recorder() -> MemoryRecorder:
    return MemoryRecorder()


def open_webhook(
    tmp_path: Path, recorder: MemoryRecorder, secrets: tuple[str, ...] = (), **config: Any
) -> WebhookDestination:
    settings = {"type": "webhook", "retry": FAST_RETRY, **config}
    context = DestinationContext(tmp_path, recorder, "people", "run1", secrets)
    return WebhookDestination(WebhookConfig.model_validate(settings), context)


async def test_batch_mode_sends_chunks_and_state_matches(
    tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    dest = open_webhook(tmp_path, recorder, url=receiver.url, batch_size=2)
    try:
        results = await dest.write(make_batch(PEOPLE))
    finally:
        await dest.close()
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert all(r.status is RecordStatus.OK and r.call_id for r in results)
    assert receiver.records == {str(p["id"]): nested(p) for p in PEOPLE}
    bodies = [r.json for r in receiver.calls]
    assert len(bodies) == 3
    assert all(b["operation"] == "upsert" for b in bodies)
    assert sorted(len(b["records"]) for b in bodies) == [1, 2, 2]
    assert {c.call_id for c in recorder.calls} == {r.call_id for r in results}


async def test_row_mode_and_operations(
    tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    dest = open_webhook(tmp_path, recorder, url=receiver.url, mode="row", concurrency=2)
    try:
        await dest.write(make_batch(PEOPLE[:3]))
        assert [r.json["_operation"] for r in receiver.calls] == ["upsert"] * 3
        deleted = await dest.write(make_batch(PEOPLE[1:2], Operation.DELETE))
        cleared = await dest.write(make_batch(PEOPLE[2:3], Operation.CLEAR))
        missing = await dest.write(make_batch(PEOPLE[4:5], Operation.UPDATE))
    finally:
        await dest.close()
    assert [r.status for r in [*deleted, *cleared]] == [RecordStatus.OK] * 2
    assert missing[0].status is RecordStatus.REJECTED
    assert missing[0].error == "no record with id '5' to update"
    assert receiver.records == {
        "1": nested(PEOPLE[0]),
        "3": {"id": 3, "email": None, "address": None},
    }


async def test_row_mode_liquid_template(
    tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    template = (
        '{"id": {{ id }}, "contact": {"mail": {{ email | json }}, '
        '"city": {{ address.city | json }}}, "ref": "person-{{ key }}", '
        '"_operation": "{{ operation }}"}'
    )
    dest = open_webhook(tmp_path, recorder, url=receiver.url, mode="row", body_template=template)
    try:
        results = await dest.write(make_batch(PEOPLE[:2]))
    finally:
        await dest.close()
    assert all(r.status is RecordStatus.OK for r in results)
    assert receiver.records["2"] == {
        "id": 2,
        "contact": {"mail": "grace@example.com", "city": "New York"},
        "ref": "person-2",
    }


async def test_batch_mode_liquid_template(
    tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    template = (
        '{"operation": "{{ operation }}", "records": ['
        "{% for r in records %}"
        '{"id": {{ r.id }}, "town": {{ r.address.city | json }}}'
        "{% unless forloop.last %},{% endunless %}{% endfor %}]}"
    )
    dest = open_webhook(tmp_path, recorder, url=receiver.url, body_template=template)
    try:
        await dest.write(make_batch(PEOPLE))
    finally:
        await dest.close()
    assert receiver.records["4"] == {"id": 4, "town": None}
    assert receiver.records["5"] == {"id": 5, "town": "Wilmslow"}
    assert len(receiver.calls) == 1


async def test_template_errors_reject_rows_without_sending(
    tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    dest = open_webhook(
        tmp_path, recorder, url=receiver.url, mode="row", body_template='{"n": "{{ nickname }}"}'
    )
    try:
        results = await dest.write(make_batch(PEOPLE[:2]))
    finally:
        await dest.close()
    assert [r.status for r in results] == [RecordStatus.REJECTED] * 2
    assert results[0].error is not None
    assert results[0].error.startswith("body_template failed: 'nickname' is undefined")
    assert receiver.calls == []


def test_config_validation() -> None:
    base = {"type": "webhook", "url": "https://hooks.example.com/in"}
    assert WebhookConfig.model_validate(base).mode == "batch"
    with pytest.raises(ValidationError, match="body_template is not valid Liquid"):
        WebhookConfig.model_validate({**base, "body_template": "{{ oops"})
    with pytest.raises(ValidationError, match="must start with http"):
        WebhookConfig.model_validate({**base, "url": "ftp://example.com"})
    with pytest.raises(ValidationError, match="has no host"):
        WebhookConfig.model_validate({**base, "url": "http:///path"})
    with pytest.raises(ValidationError, match="less than or equal to 64"):
        WebhookConfig.model_validate({**base, "concurrency": 65})
    with pytest.raises(ValidationError, match="Extra inputs"):
        WebhookConfig.model_validate({**base, "token": "x"})
    # A reference is resolved after validation; the connector checks the result.
    assert WebhookConfig.model_validate({**base, "url": "${env:HOOK_URL}"}).url.startswith("${")


def test_a_resolved_bad_url_is_a_config_error(tmp_path: Path, recorder: MemoryRecorder) -> None:
    config = WebhookConfig.model_validate({"type": "webhook", "url": "${env:HOOK_URL}"})
    resolved = config.model_copy(update={"url": "mailto:ops@example.com"})
    with pytest.raises(DestinationError) as raised:
        WebhookDestination(resolved, DestinationContext(tmp_path, recorder))
    assert raised.value.failure is FailureType.CONFIG
    assert "webhook `url` must start with http:// or https://" in str(raised.value)


async def test_signed_bodies_are_verified_by_the_receiver(
    tmp_path: Path, recorder: MemoryRecorder
) -> None:
    secret = "whsec-0123456789"
    with WebhookReceiver(secret=secret) as hook:
        dest = open_webhook(tmp_path, recorder, url=hook.url, signing_secret=secret)
        try:
            results = await dest.write(make_batch(PEOPLE[:2]))
        finally:
            await dest.close()
        [request] = hook.calls
        state = hook.records
    assert all(r.status is RecordStatus.OK for r in results)
    assert sorted(state) == ["1", "2"]
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-backhaul-signature"] == f"sha256={expected}"
    assert request.headers["x-backhaul-timestamp"].isdigit()
    [call] = recorder.calls
    assert call.request_headers["x-backhaul-signature"] == "***"
    assert secret not in repr(call)


async def test_a_wrong_signature_fails_as_config(tmp_path: Path, recorder: MemoryRecorder) -> None:
    with WebhookReceiver(secret="the-real-secret") as hook:
        dest = open_webhook(tmp_path, recorder, url=hook.url, signing_secret="not-the-secret")
        try:
            with pytest.raises(DestinationError) as raised:
                await dest.write(make_batch(PEOPLE[:2]))
        finally:
            await dest.close()
        assert hook.records == {}
    assert raised.value.failure is FailureType.CONFIG
    assert raised.value.status == 401
    assert len(recorder.calls) == 1


async def test_per_record_rejections_map_to_batch_indexes(
    tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    receiver.faults.reject({"2": "email is on the block list", "5": "city unknown"})
    dest = open_webhook(tmp_path, recorder, url=receiver.url, batch_size=2)
    try:
        results = await dest.write(make_batch(PEOPLE))
    finally:
        await dest.close()
    rejected = {r.index: r.error for r in results if r.status is RecordStatus.REJECTED}
    assert rejected == {1: "email is on the block list", 4: "city unknown"}
    assert sorted(receiver.records) == ["1", "3", "4"]


async def test_a_batch_in_one_call_answers_as_columns_naming_the_call(
    tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    receiver.faults.reject({"2": "email is on the block list"})
    dest = open_webhook(tmp_path, recorder, url=receiver.url, batch_size=10)
    try:
        results = await dest.write(make_batch(PEOPLE))
    finally:
        await dest.close()
    assert isinstance(results, BatchResults)
    assert results.rejected == {1: "email is on the block list"}
    (call,) = recorder.calls
    assert results.call_id == call.call_id
    assert [r.call_id for r in results] == [call.call_id] * len(PEOPLE)
    assert sorted(receiver.records) == ["1", "3", "4", "5"]


async def test_a_refused_call_rejects_its_records_only(
    tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    receiver.faults.fail_next(1, status=400)
    dest = open_webhook(tmp_path, recorder, url=receiver.url, batch_size=3, concurrency=1)
    try:
        results = await dest.write(make_batch(PEOPLE))
    finally:
        await dest.close()
    assert [r.status for r in results] == [RecordStatus.REJECTED] * 3 + [RecordStatus.OK] * 2
    assert results[0].error == "400 Bad Request: injected failure 400"
    assert sorted(receiver.records) == ["4", "5"]


async def test_transient_failures_are_retried_then_raised(
    tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    receiver.faults.fail_next(1, status=502)
    dest = open_webhook(tmp_path, recorder, url=receiver.url)
    try:
        results = await dest.write(make_batch(PEOPLE[:2]))
        assert all(r.status is RecordStatus.OK for r in results)
        receiver.faults.fail_next(10, status=503)
        with pytest.raises(DestinationError) as raised:
            await dest.write(make_batch(PEOPLE[2:]))
    finally:
        await dest.close()
    assert raised.value.failure is FailureType.TRANSIENT
    assert [c.status for c in recorder.calls] == [502, 200, 503, 503, 503]


async def test_secrets_and_header_values_are_redacted(
    tmp_path: Path, recorder: MemoryRecorder
) -> None:
    token = "env-token-5551234"
    with WebhookReceiver(token=token) as hook:
        dest = open_webhook(
            tmp_path,
            recorder,
            secrets=(token,),
            url=hook.url,
            headers={"Authorization": f"Bearer {token}", "X-Tenant": "tenant-secret-9"},
        )
        try:
            await dest.write(make_batch(PEOPLE[:1]))
        finally:
            await dest.close()
        assert hook.calls[0].headers["x-tenant"] == "tenant-secret-9"
    [call] = recorder.calls
    assert call.status == 200
    assert token not in repr(call) and "tenant-secret-9" not in repr(call)
    assert call.request_headers["x-tenant"] == "***"


async def test_check(tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver) -> None:
    dest = open_webhook(tmp_path, recorder, url=receiver.url)
    await dest.check()  # the host accepts connections
    await dest.close()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = open_webhook(tmp_path, recorder, url=f"http://127.0.0.1:{port}/hook")
    with pytest.raises(DestinationError) as raised:
        await down.check()
    await down.close()
    assert raised.value.failure is FailureType.TRANSIENT  # the receiver may come back
    assert f"webhook at 127.0.0.1:{port} does not accept connections" in str(raised.value)

    health = f"{receiver.base_url}/health"
    checked = open_webhook(tmp_path, recorder, url=receiver.url, check_url=health)
    await checked.check()
    receiver.faults.fail_next(1, status=404)
    with pytest.raises(DestinationError) as missing:
        await checked.check()
    await checked.close()
    assert missing.value.failure is FailureType.CONFIG
    assert [r.method for r in receiver.calls] == ["GET", "GET"]


def test_record_errors_contract() -> None:
    body = {
        "results": [{"index": 0, "ok": True}, {"index": 2, "ok": False, "error": "bad\nemail"}],
        "errors": [{"index": 1, "message": "duplicate"}, {"index": 9, "error": "out of range"}],
    }
    assert record_errors(body, 3) == {2: "bad email", 1: "duplicate"}
    assert record_errors({"errors": [{"index": True}, {"index": "0"}, "x"]}, 3) == {}
    assert record_errors(["not", "a", "dict"], 3) == {}
    assert record_errors({"results": [{"index": 0, "ok": False}]}, 1) == {
        0: "refused by the webhook"
    }


def test_registered_and_conforms_to_the_protocol(tmp_path: Path, recorder: MemoryRecorder) -> None:
    assert Registry().destination("webhook") is WebhookDestination
    dest = open_webhook(tmp_path, recorder, url="http://127.0.0.1:9/hook")
    assert isinstance(dest, Destination)
    assert WebhookDestination.capabilities.operations == frozenset(Operation)


def test_receiver_stops_cleanly() -> None:
    before = set(threading.enumerate())
    hook = WebhookReceiver().start()
    port = hook.port
    hook.stop()
    hook.stop()  # twice is harmless
    assert set(threading.enumerate()) <= before
    with socket.socket() as sock:  # the port is free again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_a_request_held_over_the_control_api_is_logged_before_it_is_answered() -> None:
    with WebhookReceiver() as hook:
        faults = f"{hook.base_url}/_emulator/faults"
        httpx.post(faults, json={"hold_next": 1}, timeout=10).raise_for_status()
        answers: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: answers.append(httpx.post(hook.url, json={"id": 7}, timeout=10))
        )
        sender.start()
        for _ in range(500):  # bounded: until the request is at the receiver
            if hook.calls:
                break
            time.sleep(0.01)
        in_flight = [(c.path, c.status) for c in hook.calls]
        held_records = hook.records
        httpx.post(faults, json={"release": True}, timeout=10).raise_for_status()
        sender.join(10)
        answered = [(c.path, c.status) for c in hook.calls]

    assert in_flight == [("/hook", 0)] and held_records == {}
    assert [a.status_code for a in answers] == [200]
    assert answered == [("/hook", 200)]
    assert hook.records == {"7": {"id": 7}}


def test_one_destination_used_from_two_event_loops(
    tmp_path: Path, recorder: MemoryRecorder, receiver: WebhookReceiver
) -> None:
    dest = open_webhook(
        tmp_path, recorder, url=receiver.url, check_url=f"{receiver.base_url}/health"
    )
    asyncio.run(dest.check())

    async def write_and_close() -> list[Any]:
        try:
            return await dest.write(make_batch(PEOPLE[:2]))
        finally:
            await dest.close()

    results = asyncio.run(write_and_close())
    assert [r.status for r in results] == [RecordStatus.OK] * 2
    assert sorted(receiver.records) == ["1", "2"]
