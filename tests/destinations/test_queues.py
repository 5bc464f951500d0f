"""Queue destinations against the real brokers: message shape, ids, rounds of changes,
refusals, unreachable brokers and config errors. The 100k-row crash test is in
tests/engine/kill/test_queue_kill.py."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import redis
from tests.conftest import Builder
from tests.destinations.brokers import BROKERS
from tests.destinations.brokers import RABBIT_URL
from tests.destinations.brokers import REDIS_URL
from tests.destinations.brokers import Broker
from tests.destinations.brokers import Nats
from tests.destinations.brokers import Rabbit
from tests.destinations.brokers import Received
from tests.destinations.brokers import RedisStream
from tests.destinations.brokers import check_id

from backhaul.summary import RunStatus

pytestmark = pytest.mark.integration

SYNC = "users_to_queue"
MAPPINGS = [
    {"column": "id", "field": "id"},
    {"column": "email", "field": "email"},
    {"column": "score", "field": "stats.score"},
    {"column": "signup", "field": "signup"},
]


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    made: Broker = BROKERS[request.param]()
    made.start()
    try:
        yield made
    finally:
        made.close()


def setup(project: Builder, broker: Broker, n: int = 30, **dest: Any) -> None:
    project.users(n, "DATE '2024-01-01' + (i % 30)::INTEGER AS signup")
    project.destination("q", **{**broker.destination(), **dest})
    project.sync(SYNC, model="users", destination="q", mode="mirror", mappings=MAPPINGS)


def records(messages: list[Received]) -> list[dict[str, Any]]:
    """Every record carried, in order (a batch message carries many)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        out.extend(m.body.get("records", [m.body]))
    return out


def test_rows_travel_as_json_messages_with_stable_ids(project: Builder, broker: Broker) -> None:
    setup(project, broker)
    first = project.run(SYNC)
    assert first.status is RunStatus.SUCCEEDED, first.error
    assert first.counts.succeeded == 30

    got = broker.received(at_least=30)
    assert len(got) == 30
    for message in got:
        check_id(SYNC, message)
        assert message.body["sync"] == SYNC
        assert message.body["op"] == "add"
        assert message.body["operation"] == "upsert"
    by_key = {m.body["key"]: m.body for m in got}
    assert sorted(by_key, key=int) == [str(i) for i in range(1, 31)]
    assert by_key["7"]["fields"] == {
        "id": 7,
        "email": "u7@example.com",
        "stats": {"score": 7},
        "signup": "2024-01-08",
    }

    # Update three, remove two, add two: exactly those seven changes travel.
    project.sql(
        "UPDATE users SET email = 'new' || id || '@example.org' WHERE id IN (1, 2, 3)",
        "DELETE FROM users WHERE id IN (4, 5)",
        "INSERT INTO users SELECT i, 'u' || i || '@example.com', 'name ' || i, i % 97, "
        "DATE '2024-02-01' FROM range(31, 33) t(i)",
    )
    second = project.run(SYNC)
    assert second.status is RunStatus.SUCCEEDED, second.error
    got = broker.received(at_least=37)
    assert len(got) == 37
    new = {(m.body["op"], m.body["key"]): m.body for m in got[30:]}
    assert sorted(new) == sorted(
        [
            ("change", "1"),
            ("change", "2"),
            ("change", "3"),
            ("remove", "4"),
            ("remove", "5"),
            ("add", "31"),
            ("add", "32"),
        ]
    )
    assert new[("change", "2")]["fields"]["email"] == "new2@example.org"
    assert new[("remove", "4")]["fields"] == {"id": 4}
    assert new[("remove", "4")]["operation"] == "delete"
    for message in got[30:]:
        check_id(SYNC, message)

    # Nothing changed: nothing is sent.
    third = project.run(SYNC)
    assert third.status is RunStatus.SUCCEEDED and third.counts.planned == 0
    assert len(broker.received(at_least=37)) == 37


def test_the_same_change_keeps_its_id(project: Builder, broker: Broker) -> None:
    """A full resync sends every row again; each carries the id it had the first time."""
    setup(project, broker, n=10)
    project.run(SYNC)
    again = project.run(SYNC, full_resync=True)
    assert again.status is RunStatus.SUCCEEDED and again.counts.succeeded == 10
    got = broker.received(at_least=10)
    assert len(got) == 20
    first = {m.body["key"]: m.body["id"] for m in got[:10]}
    # A resend of an unchanged row is a "change" of the same content: its id is the one
    # such a change always has, the same on every resend.
    resent = {m.body["key"]: m.body["id"] for m in got[10:]}
    assert set(first) == set(resent)
    third = project.run(SYNC, full_resync=True)
    assert third.status is RunStatus.SUCCEEDED and third.counts.succeeded == 10
    got = broker.received(at_least=10)
    if broker.deduplicates:
        assert len(got) == 20  # the broker dropped the repeats by their ids
    else:
        assert {m.body["key"]: m.body["id"] for m in got[20:]} == resent


def test_one_message_per_batch(project: Builder, broker: Broker) -> None:
    setup(project, broker, n=25, message_per="batch")
    project.write(
        f"syncs/{SYNC}.yml",
        {
            "model": "users",
            "destination": "q",
            "mode": "mirror",
            "mappings": MAPPINGS,
            "batch_size": 10,
        },
    )
    summary = project.run(SYNC)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    got = broker.received(at_least=3)
    assert [len(m.body["records"]) for m in got] == [10, 10, 5]
    for message in got:
        check_id(SYNC, message)
    assert sorted(int(r["key"]) for r in records(got)) == list(range(1, 26))


def test_unreachable_broker_fails_cleanly_and_keeps_the_snapshot(
    project: Builder, broker: Broker
) -> None:
    setup(project, broker, n=5)
    project.destination("q", **broker.unreachable())
    done = project.cli("run", SYNC)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    assert "not reachable" in output, output
    probe = project.cli("test-connection", "q")
    assert probe.returncode == 1 and "not reachable" in probe.stdout + probe.stderr
    assert "Traceback" not in probe.stdout + probe.stderr
    failed = project.run(SYNC)
    assert failed.status is RunStatus.FAILED
    assert failed.counts.succeeded == 0
    assert failed.error is not None and "\n" not in failed.error
    assert "not reachable" in failed.error and "check" in failed.error

    # The snapshot did not move: with the broker back, every row goes as an add.
    project.destination("q", **broker.destination())
    assert project.cli("test-connection", "q").returncode == 0
    ok = project.run(SYNC)
    assert ok.status is RunStatus.SUCCEEDED and ok.counts.added == 5
    got = broker.received(at_least=5)
    assert sorted(m.body["key"] for m in got) == ["1", "2", "3", "4", "5"]


BAD_CONFIG = {
    "rabbitmq": ({"in_flight": 0}, "in_flight"),
    "nats": ({"subject": ""}, "subject"),
    "redis_streams": ({"maxlen": -1}, "maxlen"),
    "mqtt": ({"qos": 0}, "qos"),
}


def test_bad_config_names_file_line_and_key(project: Builder, broker: Broker) -> None:
    change, key = BAD_CONFIG[broker.name]
    setup(project, broker, n=1, **change)
    done = project.cli("validate")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    line = next((x for x in output.splitlines() if "destinations/q.yml:" in x), "")
    assert f": {key}:" in line, output


def test_rabbitmq_unroutable_messages_are_rejected_not_acknowledged(project: Builder) -> None:
    """A routing key no queue is bound to: the broker returns every message (mandatory), so
    no row is acknowledged and all go again next run."""
    rabbit = Rabbit()
    setup(project, rabbit, n=4)
    project.destination(
        "q", type="rabbitmq", url="amqp://guest:guest@127.0.0.1:5672/", routing_key=rabbit.queue
    )
    summary = project.run(SYNC)
    assert summary.counts.rejected == 4 and summary.counts.succeeded == 0
    rows = project.rows(summary.run_id, status="rejected")
    assert all("unroutable" in (r.error or "") for r in rows)
    project.destination("q", **rabbit.destination())  # now the queue is declared
    try:
        retry = project.run(SYNC)
        assert retry.status is RunStatus.SUCCEEDED and retry.counts.succeeded == 4
        assert len(rabbit.received(at_least=4)) == 4
    finally:
        rabbit.close()


def test_nats_without_jetstream_is_a_clear_config_error(project: Builder) -> None:
    """A server of our own without JetStream: nothing to confirm messages, so the run stops
    with a line saying how to enable it."""
    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(server).exists():
        pytest.skip("nats-server is not installed here")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        core_only = Nats()
        setup(project, core_only, n=3, servers=f"nats://127.0.0.1:{port}")
        summary = project.run(SYNC)
        assert summary.status is RunStatus.FAILED and summary.counts.succeeded == 0
        assert summary.error is not None and "does not have JetStream enabled" in summary.error
        assert "-js" in summary.error
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_rabbitmq_named_exchange_binds_the_queue_and_a_missing_one_is_named(
    project: Builder,
) -> None:
    rabbit = Rabbit()
    exchange = f"{rabbit.queue}_x"

    async def declare(delete: bool = False) -> None:
        connection = await aio_pika.connect(RABBIT_URL)
        try:
            channel = await connection.channel()
            if delete:
                await channel.exchange_delete(exchange)
            else:
                await channel.declare_exchange(exchange, aio_pika.ExchangeType.DIRECT)
        finally:
            await connection.close()

    setup(project, rabbit, n=6, exchange=exchange, routing_key="rows")
    missing = project.run(SYNC)
    assert missing.status is RunStatus.FAILED and missing.counts.succeeded == 0
    assert missing.error is not None and f"no exchange `{exchange}`" in missing.error
    asyncio.run(declare())
    try:
        summary = project.run(SYNC)
        assert summary.status is RunStatus.SUCCEEDED and summary.counts.succeeded == 6
        got = rabbit.received(at_least=6)
        assert sorted(m.body["key"] for m in got) == [str(i) for i in range(1, 7)]
    finally:
        rabbit.close()
        asyncio.run(declare(delete=True))


def test_redis_maxlen_trims_the_stream(project: Builder) -> None:
    stream = RedisStream()
    try:
        setup(project, stream, n=1000, maxlen=100)
        summary = project.run(SYNC)
        assert summary.status is RunStatus.SUCCEEDED and summary.counts.succeeded == 1000
        client = redis.Redis.from_url(REDIS_URL)
        try:
            length = client.xlen(stream.stream)
        finally:
            client.close()
        # MAXLEN ~ trims whole internal nodes: about 100 entries stay, never fewer.
        assert 100 <= length < 1000
    finally:
        stream.close()
