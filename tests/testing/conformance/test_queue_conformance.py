"""The conformance suite against the queue destinations and the real brokers.

What "the destination holds" is what a consumer that follows docs/destinations/queues.md
builds from the messages: de-duplicated by id, each applied per its ``operation``. Mode
``update`` is left out: a queue cannot know which records its consumers hold, so it cannot
reject an update of a missing one (the check is skipped). The fault checks need an
emulator's switches and the secrets check recorded HTTP calls, so they are skipped too;
refusals, unreachable brokers and lost connections are tested in
tests/destinations/test_queues.py and tests/engine/kill/test_queue_kill.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.destinations.brokers import BROKERS
from tests.destinations.brokers import Broker
from tests.destinations.brokers import Received

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target

pytestmark = pytest.mark.integration

PASSWORD_ENV = "CONF_RABBIT_PASSWORD"


def consumer_view(messages: list[Received], match: str) -> dict[str, dict[str, Any]]:
    """Records as a de-duplicating consumer applying each message holds them."""
    state: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for message in messages:
        if message.meta_id in seen:
            continue
        seen.add(message.meta_id)
        for record in message.body.get("records", [message.body]):
            fields, operation = record["fields"], record["operation"]
            key = str(fields[match])
            if operation == "delete":
                state.pop(key, None)
            elif operation == "insert":
                state.setdefault(key, fields)
            elif operation == "update":
                if key in state:
                    state[key] = {**state[key], **fields}
            else:  # upsert, clear
                state[key] = {**state.get(key, {}), **fields}
    return state


@pytest.fixture(scope="module", params=sorted(BROKERS))
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """One broker destination shared by every check (each uses its own e-mail domain)."""
    broker: Broker = BROKERS[request.param]()
    broker.start()
    destination = broker.destination()
    env: dict[str, str] = {}
    bad: dict[str, Any] | None = None
    if broker.name == "rabbitmq":
        # The only broker here that checks a password: the fatal check runs.
        destination["url"] = f"amqp://guest:${{env:{PASSWORD_ENV}}}@127.0.0.1:5672/"
        env = {PASSWORD_ENV: "guest"}
        bad = {**destination, "url": "amqp://guest:not-the-password@127.0.0.1:5672/"}
    try:
        yield Target(
            destination=destination,
            env=env,
            match_field="email",
            read=lambda: consumer_view(broker.received(), "email"),
            operations=frozenset(Operation) - {Operation.UPDATE},
            bad_destination=bad,
        )
    finally:
        broker.close()


@pytest.mark.parametrize("name", list(CHECKS))
def test_queue_destination_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
