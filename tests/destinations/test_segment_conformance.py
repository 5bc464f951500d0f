"""The conformance suite against the Segment destination and its emulator.

Segment keeps no records that a client can read back; the emulator keeps the profile each
``userId`` builds up from identify calls (``state()["users"]``), which is what a Segment
workspace's profiles would hold, and the suite reads that. The sync's match field is
``userId`` (the harness maps the e-mail to it).

Two checks cannot apply to Segment, and are not run:
- ``rejection_mapped_to_key``: Segment answers 200 to a batch and drops the messages it
  refuses without saying so (they show only in its Debugger), so no connector can map such
  a refusal to a row. What Segment does refuse (a batch over its caps, 400) is mapped to
  the messages at fault: see test_segment_connector.py.
- ``fatal_fails_fast``: a wrong write key is answered 200 too (its messages are dropped),
  so the target has no ``bad_destination`` and the suite skips the check itself.
Update, insert and removals skip themselves: Segment only takes upserts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backhaul.destinations.base import Operation
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.segment import SegmentEmulator

pytestmark = pytest.mark.integration

WRITE_KEY = "sgConformanceWriteKey0000000042"
ENV = {"CONF_SEGMENT_KEY": WRITE_KEY}
NOT_FOR_SEGMENT = {"rejection_mapped_to_key"}


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One emulator shared by every check (each check uses its own e-mail domain)."""
    emulator = SegmentEmulator(write_key=WRITE_KEY, rate_limit=100_000)
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            users = emulator.state()["users"].values()
            return {u["userId"]: {**u, **u["traits"]} for u in users if u["userId"]}

        yield Target(
            destination={
                "type": "segment",
                "base_url": server.url,
                "write_key": "${env:CONF_SEGMENT_KEY}",
                "retry": {"base_delay": 0.01, "max_delay": 0.05},
            },
            env=ENV,
            match_field="userId",
            read=read,
            operations=frozenset({Operation.UPSERT}),
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            secrets=[WRITE_KEY],
        )


@pytest.mark.parametrize("name", [n for n in CHECKS if n not in NOT_FOR_SEGMENT])
def test_segment_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
