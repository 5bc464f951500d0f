"""The conformance suite against the Google Sheets destination (`write: replace`).

The sheet is read back as records: each row below the header, keyed by its e-mail. Each
check gets an emulator of its own (one sheet). Google's 429 carries no Retry-After, so the
target's backoff starts at one second without jitter: the rate-limit check then sees the
wait it asks for.
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
from backhaul.testing.emulators.google_sheets import GoogleSheetsEmulator

pytestmark = pytest.mark.integration

TOKEN = "ya29.conformance-token-5b1d"
ENV = {"CONF_SHEETS_TOKEN": TOKEN}
QUOTA = 100_000


def _destination(url: str, spreadsheet: str, token: str) -> dict[str, Any]:
    return {
        "type": "google_sheets",
        "base_url": url,
        "spreadsheet_id": spreadsheet,
        "access_token": token,
        "rate_limit": None,
        "retry": {"base_delay": 1.0, "max_delay": 4.0, "jitter": False},
    }


@pytest.fixture
def target() -> Iterator[Target]:
    emulator = GoogleSheetsEmulator(
        tokens={TOKEN: "conformance@backhaul.example"},
        read_per_minute_project=QUOTA,
        write_per_minute_project=QUOTA,
        read_per_minute_user=QUOTA,
        write_per_minute_user=QUOTA,
    )
    with EmulatorServer(emulator) as server:

        def read() -> dict[str, dict[str, Any]]:
            grid = emulator.values()
            if not grid:
                return {}
            header = grid[0]
            records = [dict(zip(header, row, strict=False)) for row in grid[1:]]
            return {str(r["email"]): r for r in records if r.get("email")}

        sid = emulator.spreadsheet_id
        yield Target(
            destination=_destination(server.url, sid, "${env:CONF_SHEETS_TOKEN}"),
            env=ENV,
            match_field="email",
            read=read,
            operations=frozenset(Operation),
            faults=emulator.faults,
            calls=lambda: list(emulator.calls),
            bad_destination=_destination(server.url, sid, "ya29.revoked"),
            secrets=[TOKEN],
        )


@pytest.mark.parametrize("name", list(CHECKS))
def test_google_sheets_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
