"""Google Sheets API v4 emulator: spreadsheet values read and written by A1 ranges.

What it enforces, as Sheets does: a Bearer token (401 ``UNAUTHENTICATED``); A1 ranges that
name an existing sheet (400 ``Unable to parse range``); ``valueInputOption`` on every write;
values written inside the range asked for and inside the sheet's grid (1,000 rows by 26 columns for a new
sheet; ``values.update`` does not grow it, ``append`` and ``appendDimension`` do) and under
the workbook's cell cap; ``null`` leaving a cell alone and ``""`` clearing it;
``USER_ENTERED`` turning text into numbers and booleans; ``batchUpdate`` all or nothing;
answers with ``updatedRange`` / ``updatedRows`` / ``updatedColumns`` / ``updatedCells``; per
minute read and write quotas per project and per user (429 ``RESOURCE_EXHAUSTED``); and a
payload cap (Google recommends at most 2 MB per request; the emulator refuses more so a
connector keeps to it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._google import GoogleOAuth
from backhaul.testing.emulators._google import google_error
from backhaul.testing.emulators._sheets_grid import Sheet
from backhaul.testing.emulators._sheets_grid import SheetsError
from backhaul.testing.emulators._sheets_grid import Span
from backhaul.testing.emulators._sheets_grid import Spreadsheet
from backhaul.testing.emulators._sheets_grid import a1
from backhaul.testing.emulators._sheets_grid import column_name
from backhaul.testing.emulators.base import DestinationFile
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow

DEFAULT_TOKEN = "ya29.sheets-emulator-token"
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class GoogleSheetsEmulator(Emulator):
    """Spreadsheets in memory.

    Args:
        tokens: Accepted Bearer tokens and the user each belongs to (per-user quotas).
        spreadsheets: Spreadsheet id -> sheet titles, created at start.
        read_per_minute_project: Read requests per minute per project (Sheets: 300).
        write_per_minute_project: Write requests per minute per project (Sheets: 300).
        read_per_minute_user: Read requests per minute per user per project (Sheets: 60).
        write_per_minute_user: Write requests per minute per user per project (Sheets: 60).
        window: Length of the quota window in seconds (a rolling window, which is stricter
            than Google's refill every minute).
        max_payload_bytes: Largest request body (Google's recommendation: 2 MB); ``None``
            for no cap.
        max_cells: Most cells in one spreadsheet (10 million; unverified).
        clock: Monotonic clock of the quota windows.
        seed: Seed of the random fault switch.
    """

    vendor: ClassVar[str] = "google_sheets"
    destination_file: ClassVar[DestinationFile] = DestinationFile(
        {
            "spreadsheet_id": "GOOGLE_SHEETS_SPREADSHEET_ID",
            "access_token": "GOOGLE_SHEETS_TOKEN",
        },
    )

    def __init__(
        self,
        *,
        tokens: Mapping[str, str] | None = None,
        spreadsheets: Mapping[str, list[str]] | None = None,
        read_per_minute_project: int = 300,
        write_per_minute_project: int = 300,
        read_per_minute_user: int = 60,
        write_per_minute_user: int = 60,
        window: float = 60.0,
        max_payload_bytes: int | None = 2 * 1024 * 1024,
        max_cells: int = 10_000_000,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.tokens = dict(tokens or {DEFAULT_TOKEN: "sandbox@backhaul.example"})
        self.oauth = GoogleOAuth(
            client_id="sheets-emulator-client",
            client_secret="sheets-emulator-secret",
            refresh_token="1//sheets-emulator-refresh",
            tokens=tuple(self.tokens),
            scope="https://www.googleapis.com/auth/spreadsheets",
        )
        self._initial = dict(spreadsheets or {"sandbox-spreadsheet-0001": ["Sheet1"]})
        self._clock, self._window = clock, window
        self._limits = {
            ("read", None): read_per_minute_project,
            ("write", None): write_per_minute_project,
            ("read", "user"): read_per_minute_user,
            ("write", "user"): write_per_minute_user,
        }
        self.windows: dict[tuple[str, str | None], SlidingWindow] = {}
        self.max_payload_bytes = max_payload_bytes
        self.max_cells = max_cells
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self.vendor_reset()

    # -- set-up and inspection ---------------------------------------------------------------

    def add_spreadsheet(self, spreadsheet_id: str, sheets: list[str]) -> None:
        with self.lock:
            self.spreadsheets[spreadsheet_id] = Spreadsheet(
                spreadsheet_id, spreadsheet_id, [Sheet(i, t) for i, t in enumerate(sheets)]
            )

    @property
    def spreadsheet_id(self) -> str:
        return next(iter(self.spreadsheets))

    def values(self, sheet: str = "Sheet1", spreadsheet_id: str | None = None) -> list[list[Any]]:
        """The sheet's values as rows (typed as stored; trailing blanks left out)."""
        with self.lock:
            book = self.spreadsheets[spreadsheet_id or self.spreadsheet_id]
            found = book.sheet(sheet)
            assert found is not None, f"no sheet {sheet}"
            return found.grid()

    # -- emulator hooks ----------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        base = "/v4/spreadsheets/{sid}"
        return [
            Route("/token", self.oauth.token_endpoint, methods=["POST"]),
            Route(f"{base}/values/{{rng}}", self._values, methods=["GET", "PUT", "POST"]),
            Route(f"{base}/{{action}}", self._values_batch, methods=["POST"]),
            Route(base, self._spreadsheet, methods=["GET", "POST"]),
        ]

    def vendor_reset(self) -> None:
        self.spreadsheets.clear()
        self.windows = {
            key: SlidingWindow(limit, self._window, self._clock)
            for key, limit in self._limits.items()
        }
        for sid, titles in self._initial.items():
            self.add_spreadsheet(sid, titles)

    def vendor_state(self) -> dict[str, Any]:
        return {
            "spreadsheets": {
                book.id: {
                    "sheets": {
                        s.title: {"rows": s.rows, "columns": s.columns, "values": s.grid()}
                        for s in book.sheets
                    }
                }
                for book in self.spreadsheets.values()
            }
        }

    def vendor_error(self, status: int, message: str) -> Response:
        return google_error(status, message)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        return self._quota("Write requests", "Write requests per minute per user")

    def credentials(self) -> dict[str, str]:
        return {
            "GOOGLE_SHEETS_TOKEN": next(iter(self.tokens)),
            "GOOGLE_SHEETS_SPREADSHEET_ID": self.spreadsheet_id if self.spreadsheets else "",
        }

    # -- the edge ----------------------------------------------------------------------------

    async def before_request(self, request: Request) -> Response | None:
        if request.url.path == "/token":
            return None
        token = self.oauth.valid(request)
        if token is None:
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        kind = "read" if request.method == "GET" else "write"
        user = self.tokens.get(token, token)
        for scope in (
            "user",
            None,
        ):  # a request the user's window refuses costs the project nothing
            window = self.windows[(kind, scope)]
            if scope == "user":  # one window per user
                window = self.windows.setdefault(
                    (kind, user), SlidingWindow(window.limit, window.seconds, window.clock)
                )
            allowed, _, _ = window.hit()
            if not allowed:
                metric = "Read requests" if kind == "read" else "Write requests"
                per = "per minute per user" if scope else "per minute"
                return self._quota(metric, f"{metric} {per}")
        body = await request.body()
        if self.max_payload_bytes is not None and len(body) > self.max_payload_bytes:
            return google_error(
                400, f"Request payload size exceeds the limit: {self.max_payload_bytes} bytes."
            )
        return None

    @staticmethod
    def _quota(metric: str, limit: str) -> Response:
        return google_error(
            429,
            f"Quota exceeded for quota metric '{metric}' and limit '{limit}' of service "
            "'sheets.googleapis.com'.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "RATE_LIMIT_EXCEEDED",
                    "domain": "googleapis.com",
                }
            ],
        )

    # -- endpoints ---------------------------------------------------------------------------

    def _book(self, request: Request) -> Spreadsheet:
        book = self.spreadsheets.get(request.path_params["sid"].split(":")[0])
        if book is None:
            raise SheetsError("Requested entity was not found.", 404)
        return book

    async def _values(self, request: Request) -> Response:
        rng: str = request.path_params["rng"]
        try:
            body = await request.json() if await request.body() else None
            with self.lock:
                book = self._book(request)
                if request.method == "GET":
                    return JSONResponse(self._get(book, rng, request))
                option = self._input_option(
                    request.query_params.get("valueInputOption"), rng.endswith(":clear")
                )
                if request.method == "POST" and rng.endswith(":append"):
                    return JSONResponse(
                        self._append(book, rng.removesuffix(":append"), body, option, request)
                    )
                if request.method == "POST" and rng.endswith(":clear"):
                    span = book.span(rng.removesuffix(":clear"))
                    return JSONResponse(
                        {"spreadsheetId": book.id, "clearedRange": self._clear(span)}
                    )
                if request.method != "PUT":
                    raise SheetsError("Use PUT to update a range, or :append / :clear.", 404)
                if isinstance(body, dict) and body.get("range") not in (None, rng):
                    raise SheetsError(
                        f"Requested range [{body['range']}] does not match the range in the URL [{rng}]."
                    )
                plan = self._plan(book, rng, body, option)
                return JSONResponse(self._apply(book, plan))
        except SheetsError as exc:
            return google_error(exc.status, exc.message)
        except ValueError:
            return google_error(400, "Invalid JSON payload received.")

    async def _values_batch(self, request: Request) -> Response:
        action = request.path_params["action"]
        try:
            body = await request.json()
            with self.lock:
                book = self._book(request)
                if action == "values:batchUpdate":
                    option = self._input_option(body.get("valueInputOption"), False)
                    data = body.get("data")
                    if not isinstance(data, list) or not data:
                        raise SheetsError("data must be a non-empty list of ranges with values.")
                    plans = [
                        self._plan(book, str(d.get("range")), d, option) for d in data
                    ]  # all or nothing
                    responses = [self._apply(book, p) for p in plans]
                    return JSONResponse(
                        {
                            "spreadsheetId": book.id,
                            "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
                            "totalUpdatedColumns": sum(r["updatedColumns"] for r in responses),
                            "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
                            "totalUpdatedSheets": len({p[0].title for p in plans}),
                            "responses": responses,
                        }
                    )
                if action == "values:batchClear":
                    spans = [book.span(str(r)) for r in body.get("ranges") or []]
                    return JSONResponse(
                        {"spreadsheetId": book.id, "clearedRanges": [self._clear(s) for s in spans]}
                    )
            raise SheetsError(f"Unknown method {action}.", 404)
        except SheetsError as exc:
            return google_error(exc.status, exc.message)
        except (ValueError, AttributeError):
            return google_error(400, "Invalid JSON payload received.")

    async def _spreadsheet(self, request: Request) -> Response:
        try:
            with self.lock:
                book = self._book(request)
                if request.method == "POST":
                    if not request.path_params["sid"].endswith(":batchUpdate"):
                        raise SheetsError("Unknown method.", 404)
                    body = await request.json()
                    replies = [self._structural(book, r) for r in body.get("requests") or []]
                    return JSONResponse({"spreadsheetId": book.id, "replies": replies})
                return JSONResponse(
                    {
                        "spreadsheetId": book.id,
                        "properties": {"title": book.title},
                        "sheets": [
                            {"properties": self._properties(s, i)}
                            for i, s in enumerate(book.sheets)
                        ],
                    }
                )
        except SheetsError as exc:
            return google_error(exc.status, exc.message)

    # -- rules -------------------------------------------------------------------------------

    @staticmethod
    def _properties(sheet: Sheet, index: int) -> dict[str, Any]:
        return {
            "sheetId": sheet.id,
            "title": sheet.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": sheet.rows, "columnCount": sheet.columns},
        }

    def _structural(self, book: Spreadsheet, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise SheetsError("Each request must be an object.")
        if "addSheet" in request:
            props = (request["addSheet"] or {}).get("properties") or {}
            title = str(props.get("title") or f"Sheet{len(book.sheets) + 1}")
            if book.sheet(title) is not None:
                raise SheetsError(
                    f'Invalid requests[0].addSheet: A sheet with the name "{title}" already exists. Please enter another name.'
                )
            grid = props.get("gridProperties") or {}
            sheet = Sheet(
                max(s.id for s in book.sheets) + 1,
                title,
                int(grid.get("rowCount", 1000)),
                int(grid.get("columnCount", 26)),
            )
            self._check_cells(book, sheet.rows * sheet.columns)
            book.sheets.append(sheet)
            return {"addSheet": {"properties": self._properties(sheet, len(book.sheets) - 1)}}
        if "appendDimension" in request:
            spec = request["appendDimension"]
            target = next((s for s in book.sheets if s.id == spec.get("sheetId")), None)
            if target is None:
                raise SheetsError(f"No grid with id: {spec.get('sheetId')}")
            sheet = target
            length = int(spec.get("length", 0))
            rows = spec.get("dimension") == "ROWS"
            self._check_cells(book, length * (sheet.columns if rows else sheet.rows))
            if rows:
                sheet.rows += length
            else:
                sheet.columns += length
            return {}
        raise SheetsError("This emulator supports addSheet and appendDimension requests.")

    def _check_cells(self, book: Spreadsheet, more: int) -> None:
        if book.cells() + more > self.max_cells:
            raise SheetsError(
                f"This action would increase the number of cells in the workbook above the limit of {self.max_cells} cells."
            )

    @staticmethod
    def _input_option(option: str | None, clearing: bool) -> str:
        if clearing:
            return "RAW"
        if option not in ("RAW", "USER_ENTERED"):
            raise SheetsError(
                "'valueInputOption' is required but not specified"
                if option is None
                else f"Invalid valueInputOption: {option}"
            )
        return option

    def _rows(self, body: Any, option: str) -> list[list[Any]]:
        values = body.get("values") if isinstance(body, dict) else None
        if not isinstance(values, list) or not all(isinstance(r, list) for r in values):
            raise SheetsError("values must be a list of rows (lists).")
        if body.get("majorDimension", "ROWS") == "COLUMNS":
            width = max((len(c) for c in values), default=0)
            values = [[c[i] if i < len(c) else None for c in values] for i in range(width)]
        out = []
        for row in values:
            cells = []
            for value in row:
                if isinstance(value, (dict, list)):
                    raise SheetsError("Invalid values: a cell holds a string, number or boolean.")
                if isinstance(value, str) and value in self.faults.rejects:
                    raise SheetsError(self.faults.rejects[value])
                cells.append(self._entered(value) if option == "USER_ENTERED" else value)
            out.append(cells)
        return out

    @staticmethod
    def _entered(value: Any) -> Any:
        """What ``USER_ENTERED`` makes of a value typed into the UI."""
        if not isinstance(value, str):
            return value
        if value.startswith("'"):
            return value[1:]
        if value.upper() in ("TRUE", "FALSE"):
            return value.upper() == "TRUE"
        if NUMBER.fullmatch(value.strip()):
            number = float(value)
            return (
                int(number)
                if number.is_integer() and "." not in value and "e" not in value.lower()
                else number
            )
        return value

    def _plan(
        self, book: Spreadsheet, rng: str, body: Any, option: str
    ) -> tuple[Sheet, int, int, list[list[Any]], str]:
        """Check a write completely before anything is changed."""
        span = book.span(rng)
        rows = self._rows(body, option)
        height, width = len(rows), max((len(r) for r in rows), default=0)
        if span.last_row is not None and height > span.last_row - span.row + 1:
            raise SheetsError(
                f"Requested writing within range [{rng}], but tried writing to row [{span.row + height}]"
            )
        if span.last_col is not None and width > span.last_col - span.col + 1:
            raise SheetsError(
                f"Requested writing within range [{rng}], but tried writing to column [{column_name(span.col + width - 1)}]"
            )
        sheet = span.sheet
        if span.row + height > sheet.rows or span.col + width > sheet.columns:
            raise SheetsError(
                f"Range ('{sheet.title}'!{column_name(span.col)}{span.row + height}) exceeds grid limits. "
                f"Max rows: {sheet.rows}, max columns: {sheet.columns}"
            )
        return sheet, span.row, span.col, rows, rng

    def _apply(
        self, book: Spreadsheet, plan: tuple[Sheet, int, int, list[list[Any]], str]
    ) -> dict[str, Any]:
        sheet, row, col, rows, _ = plan
        written = 0
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                if value is None:  # null leaves the cell as it is
                    continue
                written += 1
                if value == "":
                    sheet.cells.pop((row + r, col + c), None)
                else:
                    sheet.cells[(row + r, col + c)] = value
        height, width = len(rows), max((len(r) for r in rows), default=0)
        out: dict[str, Any] = {
            "spreadsheetId": book.id,
            "updatedRange": a1(sheet, row, col, row + max(height, 1) - 1, col + max(width, 1) - 1),
        }
        if written:
            out.update(
                updatedRows=sum(1 for r in rows if any(v is not None for v in r)),
                updatedColumns=width,
                updatedCells=written,
            )
        else:
            out.update(updatedRows=0, updatedColumns=0, updatedCells=0)
        return out

    def _append(
        self, book: Spreadsheet, rng: str, body: Any, option: str, request: Request
    ) -> dict[str, Any]:
        span = book.span(rng)
        sheet = span.sheet
        rows = self._rows(body, option)
        insert = request.query_params.get("insertDataOption", "OVERWRITE")
        if insert not in ("OVERWRITE", "INSERT_ROWS"):
            raise SheetsError(f"Invalid insertDataOption: {insert}")
        last_col = span.last_col if span.last_col is not None else sheet.columns - 1
        used = [r for (r, c) in sheet.cells if r >= span.row and span.col <= c <= last_col]
        start = max(used) + 1 if used else span.row
        width = max((len(r) for r in rows), default=0)
        if span.col + width > sheet.columns:
            raise SheetsError(
                f"Range ('{sheet.title}'!{column_name(span.col + width - 1)}{start + 1}) exceeds grid limits. Max rows: {sheet.rows}, max columns: {sheet.columns}"
            )
        if insert == "INSERT_ROWS":
            self._check_cells(book, len(rows) * sheet.columns)
            sheet.cells = {
                (r + len(rows) if r >= start else r, c): v for (r, c), v in sheet.cells.items()
            }
            sheet.rows += len(rows)
        elif start + len(rows) > sheet.rows:
            self._check_cells(book, (start + len(rows) - sheet.rows) * sheet.columns)
            sheet.rows = start + len(rows)
        table = a1(sheet, span.row, span.col, start - 1, last_col) if used else None
        updates = self._apply(book, (sheet, start, span.col, rows, rng))
        out: dict[str, Any] = {"spreadsheetId": book.id, "updates": updates}
        if table is not None:
            out["tableRange"] = table
        return out

    def _get(self, book: Spreadsheet, rng: str, request: Request) -> dict[str, Any]:
        span = book.span(rng)
        sheet = span.sheet
        last_row, last_col = span.bounds()
        render = request.query_params.get("valueRenderOption", "FORMATTED_VALUE")
        rows: list[list[Any]] = []
        for r in range(span.row, last_row + 1):
            row = [
                self._render(sheet.cells.get((r, c), ""), render)
                for c in range(span.col, last_col + 1)
            ]
            while row and row[-1] == "":
                row.pop()
            rows.append(row)
        while rows and not rows[-1]:
            rows.pop()
        if request.query_params.get("majorDimension") == "COLUMNS":
            width = max((len(r) for r in rows), default=0)
            rows = [[r[i] if i < len(r) else "" for r in rows] for i in range(width)]
        out: dict[str, Any] = {
            "range": a1(sheet, span.row, span.col, last_row, last_col),
            "majorDimension": request.query_params.get("majorDimension", "ROWS"),
        }
        if rows:
            out["values"] = rows
        return out

    @staticmethod
    def _render(value: Any, render: str) -> Any:
        if render != "FORMATTED_VALUE" or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    def _clear(self, span: Span) -> str:
        sheet = span.sheet
        last_row, last_col = span.bounds()
        for key in [
            k for k in sheet.cells if span.row <= k[0] <= last_row and span.col <= k[1] <= last_col
        ]:
            del sheet.cells[key]
        return a1(sheet, span.row, span.col, last_row, last_col)
