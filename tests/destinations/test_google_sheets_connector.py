"""The Google Sheets destination against its emulator: the sheet equal to the model,
appends, the payload cap, quotas and 429 backoff, refused values, tokens and checks."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from backhaul import api
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.google_sheets import DEFAULT_TOKEN
from backhaul.testing.emulators.google_sheets import GoogleSheetsEmulator
from backhaul.testing.sandbox import Sandbox
from backhaul.testing.sandbox import describe
from conftest import Builder

pytestmark = pytest.mark.integration

MAPPINGS = [
    {"column": "id", "field": "id"},
    {"column": "email", "field": "email"},
    {"column": "score", "field": "score"},
]
FAST_RETRY = {"base_delay": 0.01, "max_delay": 0.2, "max_attempts": 30}


@pytest.fixture
def sheets() -> Iterator[GoogleSheetsEmulator]:
    emulator = GoogleSheetsEmulator(
        read_per_minute_user=10_000,
        write_per_minute_user=10_000,
        read_per_minute_project=10_000,
        write_per_minute_project=10_000,
    )
    with EmulatorServer(emulator):
        yield emulator


def _destination(project: Builder, emulator: GoogleSheetsEmulator, **extra: Any) -> None:
    assert emulator.server is not None
    config: dict[str, Any] = {
        "type": "google_sheets",
        "base_url": emulator.server.url,
        "spreadsheet_id": emulator.spreadsheet_id,
        "access_token": DEFAULT_TOKEN,
        "rate_limit": None,
        "retry": FAST_RETRY,
        **extra,
    }
    project.destination("gs", **config)


def _sync(project: Builder, **extra: Any) -> None:
    project.sync("s", destination="gs", mappings=MAPPINGS, **extra)


def _model(project: Builder) -> list[list[Any]]:
    return [list(r) for r in project.sql("SELECT id, email, score FROM users ORDER BY id")]


def _data(emulator: GoogleSheetsEmulator, sheet: str = "Sheet1") -> list[list[Any]]:
    return emulator.values(sheet)[1:]


def _rejected(project: Builder, run_id: str) -> dict[str, str]:
    return {r.key: r.error or "" for r in project.rows(run_id, status="rejected")}


def test_replace_keeps_the_sheet_equal_to_the_model_through_adds_changes_and_removals(
    project: Builder, sheets: GoogleSheetsEmulator
) -> None:
    project.users(8)
    _destination(project, sheets)
    _sync(project, mode="mirror", max_remove_pct=100, batch_size=3)

    first = project.run("s")
    assert first.status is RunStatus.SUCCEEDED
    assert sheets.values()[0] == ["id", "email", "score"]
    assert _data(sheets) == _model(project)

    project.sql(
        "DELETE FROM users WHERE id IN (2, 5, 8)",
        "UPDATE users SET score = 500 + id WHERE id IN (3, 7)",
        "INSERT INTO users VALUES (9, 'u9@example.com', 'name 9', 9), "
        "(10, 'u10@example.com', 'name 10', 10)",
    )
    second = project.run("s")
    assert second.status is RunStatus.SUCCEEDED and second.counts.removed == 3
    # Equal to the model as a set of rows, with no gap left where rows were removed.
    assert sorted(_data(sheets)) == sorted(_model(project))
    assert len(sheets.values()) == len(_model(project)) + 1

    project.sql("DELETE FROM users")
    project.sql("INSERT INTO users VALUES (11, 'u11@example.com', 'n', 1)")
    third = project.run("s")
    assert third.status is RunStatus.SUCCEEDED
    assert sheets.values() == [["id", "email", "score"], [11, "u11@example.com", 1]]

    before = len(sheets.calls)
    resync = project.run("s", full_resync=True)
    assert resync.status is RunStatus.SUCCEEDED
    assert sheets.values() == [["id", "email", "score"], [11, "u11@example.com", 1]]
    assert len(sheets.calls) > before


def test_a_changed_row_is_rewritten_in_place_and_columns_the_sync_does_not_map_stay(
    project: Builder, sheets: GoogleSheetsEmulator
) -> None:
    project.users(3)
    _destination(project, sheets)
    _sync(project)
    project.run("s")
    # Someone adds a column of their own to the sheet.
    with sheets.lock:
        grid = sheets.spreadsheets[sheets.spreadsheet_id].sheets[0].cells
        grid[(0, 3)] = "notes"
        grid[(2, 3)] = "call back"
    project.sql("UPDATE users SET score = 77 WHERE id = 2")

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.changed == 1
    assert sheets.values()[2] == [2, "u2@example.com", 77, "call back"]
    assert len(sheets.values()) == 4


def test_a_sync_names_its_own_tab_which_is_added_when_missing(
    project: Builder, sheets: GoogleSheetsEmulator
) -> None:
    project.users(2)
    _destination(project, sheets)
    _sync(project, object="Leads 2026")

    assert project.run("s").status is RunStatus.SUCCEEDED

    assert sheets.values("Leads 2026")[1:] == _model(project)
    assert sheets.values("Sheet1") == []


def test_update_mode_rejects_rows_the_sheet_does_not_have_by_their_key(
    project: Builder, sheets: GoogleSheetsEmulator
) -> None:
    project.users(4)
    _destination(project, sheets)
    project.model("seed", "SELECT * FROM users WHERE id <= 2")
    project.sync("seed", model="seed", destination="gs", mappings=MAPPINGS)
    project.run("seed")
    project.sql("UPDATE users SET score = 40 + id")
    _sync(project, mode="update")

    run = project.run("s")

    assert run.status is RunStatus.PARTIAL
    rejected = _rejected(project, run.run_id)
    assert set(rejected) == {"3", "4"}
    assert "the sheet has no row with id = 3: update mode adds none" in rejected["3"]
    assert _data(sheets) == [[1, "u1@example.com", 41], [2, "u2@example.com", 42]]


def test_append_adds_new_rows_below_the_last(
    project: Builder, sheets: GoogleSheetsEmulator
) -> None:
    project.users(3)
    _destination(project, sheets, write="append")
    _sync(project, mode="insert")
    project.run("s")
    project.sql("INSERT INTO users VALUES (4, 'u4@example.com', 'n', 4)")
    project.sql("UPDATE users SET score = 90 WHERE id = 1")  # insert mode: not sent

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and run.counts.succeeded == 1
    assert _data(sheets) == [
        [1, "u1@example.com", 1],
        [2, "u2@example.com", 2],
        [3, "u3@example.com", 3],
        [4, "u4@example.com", 4],
    ]
    appends = [c for c in sheets.calls if c.path.endswith(":append")]
    assert len(appends) == 2 and "insertDataOption=INSERT_ROWS" in appends[0].query


def test_requests_stay_under_the_payload_cap_and_a_row_too_big_is_rejected_by_key(
    project: Builder,
) -> None:
    emulator = GoogleSheetsEmulator(
        max_payload_bytes=12_000,
        write_per_minute_user=10_000,
        write_per_minute_project=10_000,
        read_per_minute_user=10_000,
        read_per_minute_project=10_000,
    )
    project.users(120, "CASE WHEN i = 50 THEN repeat('w', 13000) ELSE repeat('v', 60) END AS note")
    with EmulatorServer(emulator):
        _destination(project, emulator, max_request_bytes=12_000)
        project.sync(
            "s", destination="gs", mappings=[*MAPPINGS, {"column": "note", "field": "note"}]
        )
        run = project.run("s")

    assert run.status is RunStatus.PARTIAL and run.counts.succeeded == 119
    rejected = _rejected(project, run.run_id)
    assert list(rejected) == ["50"] and "google_sheets takes at most" in rejected["50"]
    writes = [c for c in emulator.calls if c.path.endswith("values:batchUpdate")]
    assert len(writes) > 2 and {c.status for c in emulator.calls} == {200}
    assert len(emulator.values()) == 120


def test_a_refused_value_is_found_by_bisection_and_only_its_row_is_rejected(
    project: Builder, sheets: GoogleSheetsEmulator
) -> None:
    project.users(9)
    _destination(project, sheets)
    _sync(project)
    sheets.faults.reject({"u4@example.com": "Invalid value at data[3]"})

    first = project.run("s")
    sheets.faults.clear()
    second = project.run("s")

    assert first.status is RunStatus.PARTIAL and first.counts.succeeded == 8
    rejected = _rejected(project, first.run_id)
    assert list(rejected) == ["4"] and "Invalid value at data[3]" in rejected["4"]
    assert second.status is RunStatus.SUCCEEDED and second.counts.planned == 1
    assert sorted(_data(sheets)) == sorted(_model(project))
    assert len(sheets.values()) == 10  # no gap where the refused row was held back


def test_a_429_over_the_quota_is_backed_off_and_the_run_completes(project: Builder) -> None:
    # A write quota of 3 a second and no rate limit of our own: the emulator answers 429.
    emulator = GoogleSheetsEmulator(
        write_per_minute_user=3, window=1.0, read_per_minute_user=10_000
    )
    project.users(12)
    with EmulatorServer(emulator):
        _destination(project, emulator)
        _sync(project, batch_size=2)
        run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED, run.error
    statuses = [c.status for c in emulator.calls]
    assert 429 in statuses
    first_429 = statuses.index(429)
    assert 200 in statuses[first_429:]  # it was sent again, later, and accepted
    assert _data(emulator) == _model(project)


def test_oauth_refresh_token_is_exchanged_and_no_token_is_recorded(
    project: Builder, sheets: GoogleSheetsEmulator
) -> None:
    assert sheets.server is not None
    project.users(2)
    oauth = {
        "client_id": sheets.oauth.client_id,
        "client_secret": sheets.oauth.client_secret,
        "refresh_token": sheets.oauth.refresh_token,
        "token_url": f"{sheets.server.url}/token",
    }
    _destination(project, sheets, access_token=None, oauth=oauth)
    _sync(project)

    run = project.run("s")

    assert run.status is RunStatus.SUCCEEDED and _data(sheets) == _model(project)
    issued = {c.headers["authorization"].split()[1] for c in sheets.calls if c.path != "/token"}
    assert len(issued) == 1
    with api.open_store(project.load()) as store:
        calls = store.calls(run.run_id, limit=100)
        assert any(c.url.endswith("/token") for c in calls)  # the exchange is recorded
        recorded = json.dumps([dataclasses.asdict(c) for c in calls], default=str)
    for secret in (*issued, sheets.oauth.client_secret, sheets.oauth.refresh_token):
        assert secret not in recorded


def test_a_wrong_token_fails_the_run_saying_what_to_fix(
    project: Builder, sheets: GoogleSheetsEmulator
) -> None:
    project.users(2)
    _destination(project, sheets, access_token="ya29.not-a-token")
    _sync(project)

    run = project.run("s")

    assert run.status is RunStatus.FAILED
    assert "check `access_token` or `oauth`" in (run.error or "")
    assert sheets.values() == []


def _line_of(path: Any, text: str) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith(text))


def test_validate_refuses_bad_files_naming_file_line_and_key(project: Builder) -> None:
    project.users(2)
    project.destination(
        "gs", type="google_sheets", spreadsheet_id="x", write="append", access_token="t"
    )
    _sync(project, mode="mirror")

    result = project.cli("validate", "--offline")

    assert result.returncode == 2
    line = _line_of(project.root / "syncs/s.yml", "mode:")
    assert f"syncs/s.yml:{line}: mode: google_sheets with `write: append` only adds rows" in (
        result.stderr
    ), result.stderr

    project.destination("gs", type="google_sheets", spreadsheet_id="x", access_token="t")
    project.sync("s", destination="gs", mappings=[{"column": "email", "field": "email"}])
    result = project.cli("validate", "--offline")
    assert "match.fields: google_sheets keeps one row per key" in result.stderr, result.stderr

    project.destination(
        "gs",
        type="google_sheets",
        spreadsheet_id="x",
        access_token="t",
        oauth={"client_id": "a", "client_secret": "b", "refresh_token": "c"},
    )
    result = project.cli("validate", "--offline")
    assert result.returncode == 2
    line = _line_of(project.root / "destinations/gs.yml", "access_token:")
    assert (
        f"destinations/gs.yml:{line}: access_token: give either `access_token` or `oauth`"
        in result.stderr
    ), result.stderr


def test_the_sandbox_destination_file_runs_a_sync(project: Builder) -> None:
    project.users(3)
    with Sandbox(["google_sheets"]) as sandbox:
        [entry] = sandbox.entries
        config = entry.destination_file
        assert config is not None and "destinations/google_sheets.yml:" in describe(entry)
        project.write("destinations/gs.yml", json.loads(json.dumps(config)))
        _sync(project)
        result = project.cli("run", "s", env=entry.credentials)
        emulator = entry.emulator
        assert isinstance(emulator, GoogleSheetsEmulator)
        values = emulator.values()
    assert result.returncode == 0, result.stdout + result.stderr
    assert values[1:] == _model(project)
