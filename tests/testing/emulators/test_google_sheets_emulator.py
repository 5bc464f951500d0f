"""Google Sheets v4 emulator: its contract, checked with plain httpx on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.google_sheets import GoogleSheetsEmulator

pytestmark = pytest.mark.integration

SID = "sheet-test-1"
TOKEN = "ya29.sheets-test"
BASE = f"/v4/spreadsheets/{SID}"
RAW = {"valueInputOption": "RAW"}


@pytest.fixture
def sheets() -> Iterator[tuple[GoogleSheetsEmulator, httpx.Client]]:
    emulator = GoogleSheetsEmulator(
        tokens={TOKEN: "writer@example.com"},
        spreadsheets={SID: ["Sheet1", "My data"]},
        read_per_minute_user=1_000,
        write_per_minute_user=1_000,
        read_per_minute_project=1_000,
        write_per_minute_project=1_000,
    )
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as http,
    ):
        yield emulator, http


def put(http: httpx.Client, rng: str, values: list[list[Any]], **params: str) -> httpx.Response:
    return http.put(
        f"{BASE}/values/{rng}", params=params or RAW, json={"range": rng, "values": values}
    )


def test_auth_and_unknown_spreadsheet(sheets: tuple[GoogleSheetsEmulator, httpx.Client]) -> None:
    _, http = sheets
    assert http.get(BASE).json()["sheets"][1]["properties"]["title"] == "My data"
    refused = http.get(BASE, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"
    missing = http.get("/v4/spreadsheets/nope")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


def test_update_then_get_with_response_counts(
    sheets: tuple[GoogleSheetsEmulator, httpx.Client],
) -> None:
    emulator, http = sheets
    rows = [["id", "email", "plan"], ["u-1", "a@x.com", "pro"]]
    answer = put(http, "Sheet1!A1:C2", rows).json()
    assert answer == {
        "spreadsheetId": SID,
        "updatedRange": "Sheet1!A1:C2",
        "updatedRows": 2,
        "updatedColumns": 3,
        "updatedCells": 6,
    }
    got = http.get(f"{BASE}/values/Sheet1!A1:Z1000").json()
    assert got == {"range": "Sheet1!A1:Z1000", "majorDimension": "ROWS", "values": rows}
    assert emulator.values() == rows
    # null leaves a cell alone, "" clears it.
    put(http, "Sheet1!A2:C2", [[None, "", "team"]])
    assert emulator.values() == [["id", "email", "plan"], ["u-1", "", "team"]]


def test_writes_stay_in_the_range_and_the_grid(
    sheets: tuple[GoogleSheetsEmulator, httpx.Client],
) -> None:
    emulator, http = sheets
    over_range = put(http, "Sheet1!A1:B1", [["a", "b", "c"]])
    assert over_range.status_code == 400
    assert "tried writing to column [C]" in over_range.json()["error"]["message"]
    over_rows = put(http, "Sheet1!A1:B1", [["a"], ["b"]])
    assert "tried writing to row [2]" in over_rows.json()["error"]["message"]
    over_grid = put(http, "Sheet1!A1000", [["x"], ["y"]])
    assert over_grid.status_code == 400
    assert "exceeds grid limits. Max rows: 1000, max columns: 26" in over_grid.text
    unknown = put(http, "Nope!A1", [["x"]])
    assert unknown.json()["error"]["message"] == "Unable to parse range: Nope!A1"
    no_option = http.put(f"{BASE}/values/Sheet1!A1", json={"values": [["x"]]})
    assert "'valueInputOption' is required" in no_option.json()["error"]["message"]
    assert emulator.values() == []
    # Growing the grid first makes room.
    grow = {"requests": [{"appendDimension": {"sheetId": 0, "dimension": "ROWS", "length": 1}}]}
    assert http.post(f"{BASE}:batchUpdate", json=grow).status_code == 200
    assert put(http, "Sheet1!A1000", [["x"], ["y"]]).status_code == 200


def test_user_entered_parses_and_formatted_reads_are_text(
    sheets: tuple[GoogleSheetsEmulator, httpx.Client],
) -> None:
    emulator, http = sheets
    put(
        http,
        "'My data'!A1",
        [["12", "1.5", "TRUE", "'007", "abc"]],
        valueInputOption="USER_ENTERED",
    )
    assert emulator.values("My data") == [[12, 1.5, True, "007", "abc"]]
    formatted = http.get(f"{BASE}/values/'My data'!A1:E1").json()
    assert formatted["values"] == [["12", "1.5", "TRUE", "007", "abc"]]
    assert formatted["range"] == "'My data'!A1:E1"
    raw = http.get(
        f"{BASE}/values/'My data'!A1:E1", params={"valueRenderOption": "UNFORMATTED_VALUE"}
    )
    assert raw.json()["values"] == [[12, 1.5, True, "007", "abc"]]
    put(http, "Sheet1!A1", [["12"]])
    assert emulator.values() == [["12"]]  # RAW keeps text as text


def test_append_finds_the_table_and_inserts_or_overwrites(
    sheets: tuple[GoogleSheetsEmulator, httpx.Client],
) -> None:
    emulator, http = sheets
    first = http.post(
        f"{BASE}/values/Sheet1!A1:C1:append", params=RAW, json={"values": [["id", "v"]]}
    )
    assert first.status_code == 200 and "tableRange" not in first.json()
    assert first.json()["updates"]["updatedRange"] == "Sheet1!A1:B1"
    second = http.post(
        f"{BASE}/values/Sheet1!A1:C1:append",
        params={**RAW, "insertDataOption": "INSERT_ROWS"},
        json={"values": [["1", "a"], ["2", "b"]]},
    ).json()
    assert second["tableRange"] == "Sheet1!A1:C1"
    assert second["updates"]["updatedRange"] == "Sheet1!A2:B3"
    assert emulator.values() == [["id", "v"], ["1", "a"], ["2", "b"]]
    assert http.get(BASE).json()["sheets"][0]["properties"]["gridProperties"]["rowCount"] == 1002
    # Appending past the grid's last row grows it (OVERWRITE too).
    put(http, "Sheet1!A1002", [["last"]])
    tail = http.post(f"{BASE}/values/Sheet1!A1:append", params=RAW, json={"values": [["more"]]})
    assert tail.json()["updates"]["updatedRange"] == "Sheet1!A1003"
    assert emulator.values()[-1] == ["more"]


def test_batch_update_is_all_or_nothing_and_clear(
    sheets: tuple[GoogleSheetsEmulator, httpx.Client],
) -> None:
    emulator, http = sheets
    data = [
        {"range": "Sheet1!A1:B2", "majorDimension": "ROWS", "values": [["A1", "B1"], ["A2", "B2"]]},
        {"range": "Sheet1!C1:D2", "values": [["C1", "D1"], ["C2", "D2"]]},
    ]
    ok = http.post(
        f"{BASE}/values:batchUpdate", json={"valueInputOption": "RAW", "data": data}
    ).json()
    assert (ok["totalUpdatedRows"], ok["totalUpdatedColumns"], ok["totalUpdatedCells"]) == (4, 4, 8)
    assert ok["totalUpdatedSheets"] == 1 and len(ok["responses"]) == 2
    bad = [{"range": "Sheet1!E1", "values": [["E1"]]}, {"range": "Missing!A1", "values": [["x"]]}]
    refused = http.post(f"{BASE}/values:batchUpdate", json={"valueInputOption": "RAW", "data": bad})
    assert refused.status_code == 400
    assert emulator.values() == [["A1", "B1", "C1", "D1"], ["A2", "B2", "C2", "D2"]]
    cleared = http.post(f"{BASE}/values/Sheet1!A2:Z:clear").json()
    assert cleared["clearedRange"] == "Sheet1!A2:Z1000"
    assert emulator.values() == [["A1", "B1", "C1", "D1"]]
    columns = {"range": "Sheet1!A1:B2", "majorDimension": "COLUMNS", "values": [["x", "y"], ["z"]]}
    http.post(f"{BASE}/values:batchUpdate", json={"valueInputOption": "RAW", "data": [columns]})
    assert emulator.values()[:2] == [["x", "z", "C1", "D1"], ["y"]]


def test_per_user_and_per_project_quotas_answer_429() -> None:
    emulator = GoogleSheetsEmulator(
        tokens={"t1": "one@example.com", "t2": "two@example.com"},
        write_per_minute_user=2,
        write_per_minute_project=3,
    )
    with EmulatorServer(emulator) as server, httpx.Client(base_url=server.url) as http:
        sid = emulator.spreadsheet_id

        def write(token: str) -> int:
            answer = http.put(
                f"/v4/spreadsheets/{sid}/values/Sheet1!A1",
                params=RAW,
                json={"values": [["x"]]},
                headers={"Authorization": f"Bearer {token}"},
            )
            if answer.status_code == 429:
                assert answer.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
                assert "Write requests" in answer.json()["error"]["message"]
            return answer.status_code

        assert [write("t1") for _ in range(3)] == [200, 200, 429]  # per user
        assert [write("t2"), write("t2")] == [200, 429]  # the project's three are used
        reads = http.get(f"/v4/spreadsheets/{sid}", headers={"Authorization": "Bearer t1"})
        assert reads.status_code == 200  # reads have quotas of their own


def test_payload_cap_and_fault_switches(sheets: tuple[GoogleSheetsEmulator, httpx.Client]) -> None:
    emulator, http = sheets
    emulator.max_payload_bytes = 1_000
    big = put(http, "Sheet1!A1", [["x" * 2_000]])
    assert big.status_code == 400 and "payload size exceeds" in big.json()["error"]["message"]
    emulator.faults.fail_next(1, 503)
    failed = put(http, "Sheet1!A1", [["x"]])
    assert (failed.status_code, failed.json()["error"]["status"]) == (503, "UNAVAILABLE")
    emulator.faults.rate_limit_next(1)
    assert put(http, "Sheet1!A1", [["x"]]).status_code == 429
    emulator.faults.reject({"blocked": "Protected cell"})
    rejected = put(http, "Sheet1!A1:B1", [["ok", "blocked"]])
    assert rejected.status_code == 400 and rejected.json()["error"]["message"] == "Protected cell"
    assert emulator.values() == []
    added = http.post(
        f"{BASE}:batchUpdate", json={"requests": [{"addSheet": {"properties": {"title": "New"}}}]}
    )
    assert added.json()["replies"][0]["addSheet"]["properties"]["title"] == "New"
    assert put(http, "New!A1", [["fresh"]]).status_code == 200
    assert emulator.state()["spreadsheets"][SID]["sheets"]["New"]["values"] == [["fresh"]]
