"""The suite fails list destinations that get membership wrong.

Each broken destination below is the Meta Custom Audiences connector with one deliberate
bug, registered under ``type: meta_audiences`` in a registry of its own and run against the
Meta emulator in ``mode: membership``; the matching check must report it. Records left
under an old identity must show up: the harness turns every hash back into each e-mail the
model ever held.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.meta import MetaAudiencesDestination
from backhaul.plugins import BUILTIN_DESTINATIONS
from backhaul.plugins import Registry
from backhaul.testing.conformance import Target
from backhaul.testing.conformance import run_check
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.meta import MetaEmulator
from destinations.test_meta_conformance import APP_SECRET
from destinations.test_meta_conformance import ENV
from destinations.test_meta_conformance import TOKEN
from destinations.test_meta_conformance import _destination
from destinations.test_meta_conformance import email_key
from destinations.test_meta_conformance import first_name

pytestmark = pytest.mark.integration


class KeepsLeavers(MetaAudiencesDestination):
    """Acknowledges removals without sending them: people never leave the audience."""

    async def write(self, batch: Batch) -> list[RecordResult]:
        if batch.operation is Operation.DELETE:
            return [RecordResult.ok(i) for i in range(len(batch))]
        return await super().write(batch)


class ForgetfulAdds(MetaAudiencesDestination):
    """Acknowledges every addition but never sends one in four."""

    async def write(self, batch: Batch) -> list[RecordResult]:
        if batch.operation is not Operation.UPSERT:
            return await super().write(batch)
        keep = [i for i in range(len(batch)) if i % 4 != 3]
        part = dataclasses.replace(
            batch, table=batch.table.take(keep), keys=[batch.keys[i] for i in keep]
        )
        await super().write(part)
        return [RecordResult.ok(i) for i in range(len(batch))]


class SameFirstName(MetaAudiencesDestination):
    """Sends one first name for everybody instead of each person's own."""

    async def write(self, batch: Batch) -> list[RecordResult]:
        if batch.operation is Operation.UPSERT and "FN" in batch.fields:
            column = batch.table.schema.get_field_index("FN")
            table = batch.table.set_column(column, "FN", pa.array(["Nobody"] * len(batch)))
            batch = dataclasses.replace(batch, table=table)
        return await super().write(batch)


@pytest.fixture
def served() -> Iterator[tuple[MetaEmulator, str]]:
    emulator = MetaEmulator(access_token=TOKEN, app_secret=APP_SECRET, rate_limit=100_000)
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


def target(served: tuple[MetaEmulator, str], cls: type[MetaAudiencesDestination]) -> Target:
    emulator, url = served
    audience = emulator.audience_id

    def read() -> dict[str, dict[str, Any]]:
        members = emulator.state()["audiences"][audience]["members"]
        return {str(m["EMAIL"]): m for m in members}

    return Target(
        destination=_destination(url, "${env:CONF_META_TOKEN}"),
        env=ENV,
        match_field="email",
        read=read,
        operations=cls.capabilities.operations,
        object=audience,
        field_map={"name": "FN", "score": None},
        faults=emulator.faults,
        calls=lambda: list(emulator.calls),
        bad_destination=_destination(url, "EAAB-not-the-token"),
        secrets=[TOKEN, APP_SECRET],
        registry=Registry(
            destinations={**BUILTIN_DESTINATIONS, "meta_audiences": f"{__name__}:{cls.__name__}"}
        ),
        mode="membership",
        key_of=email_key,
        value_of=first_name,
        rate_limit_status=400,
        rate_limit_wait=None,
    )


@pytest.mark.parametrize(
    ("cls", "check", "symptom"),
    [
        (KeepsLeavers, "removed_rows", "unexpected ['person17@"),
        # The two people whose e-mail changed are still there under their old e-mails.
        (KeepsLeavers, "match_value_changes", "unexpected ['person4@"),
        (ForgetfulAdds, "upsert_idempotent", "missing ["),
        (ForgetfulAdds, "transient_retried", "missing ["),
        (SameFirstName, "upsert_idempotent", "holds name="),
    ],
)
def test_broken_list_destination_fails_its_check(
    served: tuple[MetaEmulator, str],
    tmp_path: Path,
    cls: type[MetaAudiencesDestination],
    check: str,
    symptom: str,
) -> None:
    result = run_check(check, target(served, cls), tmp_path)
    assert result.passed is False, result.message
    assert symptom in result.message, result.message


def test_the_honest_connector_passes_the_same_checks(
    served: tuple[MetaEmulator, str], tmp_path: Path
) -> None:
    honest = target(served, MetaAudiencesDestination)
    for check in ("upsert_idempotent", "removed_rows", "match_value_changes"):
        result = run_check(check, honest, tmp_path)
        assert result.passed and result.message == "passed", result


def test_update_and_insert_are_skipped_for_a_list_with_a_reason(
    served: tuple[MetaEmulator, str], tmp_path: Path
) -> None:
    honest = target(served, MetaAudiencesDestination)
    for check, what in [("update_semantics", "update"), ("insert_semantics", "insert")]:
        result = run_check(check, honest, tmp_path)
        assert result.passed, result
        assert result.message == f"skipped: a list has no {what}: mode membership adds and removes"
