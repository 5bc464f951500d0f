"""Google Sheets destination: a model written to one sheet (tab) of a spreadsheet.

The first row holds the mapped field names; each record is a row below it.

``write: replace`` keeps the sheet equal to the model, row for row, keyed by the sync's match
field: the key column is read once per run, changed rows are rewritten in place, new rows
go below the last one, and a removed row is filled with the sheet's last row (which is
then blanked), so the sheet never has gaps. Each batch is one ``values:batchUpdate`` (all or
nothing: a refused one is bisected to find the records at fault).

``write: append`` adds every record it is sent as a new row (``values:append``), a log of
the rows the model gained (mode insert) or of every change (mode upsert).

Requests stay under Google's recommended 2 MB; the per-minute quotas are kept by the rate
limit, and a 429 is waited out with exponential backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import quote
from urllib.parse import urlencode

import pyarrow as pa
from pydantic import Field
from pydantic import model_validator

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.destinations.google_auth import GoogleOAuth
from backhaul.destinations.google_auth import GoogleTokens
from backhaul.destinations.http import HttpDestination
from backhaul.destinations.http import HttpDestinationConfig
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import RateLimit
from backhaul.destinations.http import Refused
from backhaul.destinations.http import RetryPolicy
from backhaul.destinations.http import dumps_json
from backhaul.destinations.http.connector import send_bisecting
from backhaul.destinations.http.packing import Caps
from backhaul.destinations.http.packing import pack
from backhaul.destinations.http.packing import too_big_results
from backhaul.destinations.identifiers import refusal
from backhaul.destinations.sheet_layout import SheetLayout
from backhaul.destinations.sheet_layout import column
from backhaul.destinations.sheet_layout import key_text
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

GROW_ROWS = 1000  # rows added at a time when the sheet's grid is full
ENVELOPE = 200  # bytes of a request besides its rows (ranges, options)
APPEND_OPS = frozenset({Operation.UPSERT, Operation.INSERT})
Row = tuple[int, dict[str, Any]]
Outcome = dict[int, RecordResult] | Refused


class GoogleSheetsConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: google_sheets``."""

    type: Literal["google_sheets"]
    spreadsheet_id: str = Field(min_length=1, description="The id in the spreadsheet's URL.")
    sheet: str = Field("Sheet1", min_length=1, description="Tab written (a sync's `object` wins).")
    write: Literal["replace", "append"] = Field(
        "replace",
        description="replace: the sheet holds the model, a row per key; append: rows are added.",
    )
    access_token: str | None = Field(None, description="A Bearer token (a service account's).")
    oauth: GoogleOAuth | None = Field(None, description="Client and refresh token instead.")
    base_url: str = Field("https://sheets.googleapis.com", description="API root.")
    value_input: Literal["RAW", "USER_ENTERED"] = Field(
        "RAW", description="RAW stores values as sent; USER_ENTERED parses them as typed."
    )
    max_request_bytes: int = Field(
        2_000_000, ge=10_000, description="Largest request body (Google: 2 MB recommended)."
    )
    rate_limit: RateLimit | None = Field(
        RateLimit(requests=60, per_seconds=60),
        description="Requests per window (Sheets: 60 a minute per user, 300 per project).",
    )
    retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(max_attempts=8, base_delay=1.0, max_delay=64.0)
    )

    @model_validator(mode="after")
    def _one_credential(self) -> GoogleSheetsConfig:
        if (self.access_token is None) == (self.oauth is None):
            raise ValueError(
                "give either `access_token` or `oauth` (a client and its refresh token), not both"
            )
        return self


CAPABILITIES = Capabilities(
    operations=frozenset(Operation),
    max_batch_size=10_000,
    default_batch_size=1000,
    default_concurrency=1,  # rows are placed by position: one batch at a time
    needs_match_fields=False,
    json_records=True,
)


class GoogleSheetsDestination(HttpDestination):
    """Writes a model to a sheet; see :class:`GoogleSheetsConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = GoogleSheetsConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    vendor = "google_sheets"
    config: GoogleSheetsConfig
    concurrency_from_rate_limit = False  # rows are placed by position: one batch at a time

    @classmethod
    def check_sync(cls, config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
        """replace needs one match field; append only adds rows."""
        write = getattr(config, "write", "replace")
        if write == "append" and shape.operations - APPEND_OPS:
            message = (
                "google_sheets with `write: append` only adds rows: use mode insert or upsert "
                "(or `write: replace` in the destination file)"
            )
            return [SyncProblem("mode", message)]
        if write == "replace" and len(shape.match_fields) != 1:
            message = (
                "google_sheets keeps one row per key: map the key column and make it the sync's "
                "only match field"
            )
            return [SyncProblem("match.fields", message)]
        return []

    def __init__(self, config: GoogleSheetsConfig, context: DestinationContext) -> None:
        oauth = config.oauth
        secrets = [
            config.access_token,
            *([oauth.client_secret, oauth.refresh_token] if oauth else []),
        ]
        fix = "check `access_token` or `oauth` in the destination file"
        share = "check `spreadsheet_id` and that the spreadsheet is shared with the credentials' account"
        super().__init__(config, context, *secrets, hints={401: fix, 403: share, 404: share})
        self.tokens = GoogleTokens(
            self.vendor, config.access_token, oauth, config, context, self.redactor
        )
        self.caps = Caps(items=100_000, request_bytes=config.max_request_bytes - ENVELOPE)
        self.title = config.sheet
        self.layout = SheetLayout(match="")
        self.meta: HttpResult | None = None  # the spreadsheet's sheets, once read
        self.sheet_id = 0
        self.grid_rows = self.grid_columns = 0
        # Rows are placed by position: batches are written one at a time, whatever the
        # sync's concurrency.
        self.writing = asyncio.Lock()

    # -- calls ----------------------------------------------------------------------------

    async def _call(self, method: str, path: str, json: Any = None) -> HttpResult:
        """A Sheets call with a fresh token; an expired one is renewed once."""
        root = self.config.base_url.rstrip("/")
        url = f"{root}/v4/spreadsheets/{self.config.spreadsheet_id}{path}"
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {await self.tokens.bearer()}"}
            try:
                return await self.client.request(method, url, json=json, headers=headers)
            except DestinationError as exc:
                if exc.status != 401 or not self.tokens.renewable or attempt == 2:
                    raise
                self.tokens.expire()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self.tokens.aclose()
        await super().close()

    def _title(self) -> str:
        return "'{}'".format(self.title.replace("'", "''"))

    def _range(self, cells: str) -> str:
        """An A1 range of the tab, as it goes in a URL path."""
        return quote(f"{self._title()}!{cells}", safe="")

    async def _put(self, rows: Sequence[tuple[int, list[Any]]]) -> HttpResult:
        """Write whole rows at their positions in one all-or-nothing request."""
        last = column(len(self.layout.header) - 1)
        title = self._title()
        data = [{"range": f"{title}!A{r + 1}:{last}{r + 1}", "values": [v]} for r, v in rows]
        body = {"valueInputOption": self.config.value_input, "data": data}
        return await self._call("POST", "/values:batchUpdate", body)

    # -- set-up ---------------------------------------------------------------------------

    async def probe(self) -> HttpResult:
        """Read the spreadsheet's sheets: proves the credentials and the sharing."""
        self.meta = await self._call("GET", "")
        return self.meta

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Find (or add) the tab, complete the header row, and read the rows' keys."""
        self.title = object or self.config.sheet
        replace = self.config.write == "replace"
        if replace and len(match_fields) != 1:
            raise DestinationError(
                "google_sheets keeps one row per key: set one match field",
                failure=FailureType.CONFIG,
            )
        layout = self.layout = SheetLayout(match=match_fields[0] if replace else "")
        await self._find_sheet()
        found = await self._call("GET", f"/values/{self._range('1:1')}")
        layout.header = [str(v) for v in ((found.json or {}).get("values") or [[]])[0]]
        new = [f for f in fields if f not in layout.header]
        if new or not layout.header:
            layout.header += new
            await self._grow(columns=len(layout.header))
            written = await self._put([(0, list(layout.header))])
            if not written.ok:
                raise DestinationError(
                    f"google_sheets refused the header row ({written.error}): check `sheet` "
                    "and the mapped field names",
                    failure=FailureType.CONFIG,
                )
        if replace:
            key = column(layout.header.index(layout.match))
            path = f"/values/{self._range(f'{key}2:{key}')}?valueRenderOption=UNFORMATTED_VALUE"
            layout.read_keys(((await self._call("GET", path)).json or {}).get("values") or [])

    async def _find_sheet(self) -> None:
        """The tab's id and grid size; a tab the spreadsheet lacks is added."""
        found = self.meta if self.meta is not None and self.meta.ok else await self.probe()
        sheets = [s.get("properties") or {} for s in (found.json or {}).get("sheets") or []]
        props = next((p for p in sheets if p.get("title") == self.title), None)
        if props is None:
            add = {"addSheet": {"properties": {"title": self.title}}}
            added = (await self._call("POST", ":batchUpdate", {"requests": [add]})).json or {}
            props = ((added.get("replies") or [{}])[0].get("addSheet") or {}).get("properties", {})
        grid = props.get("gridProperties") or {}
        self.sheet_id = props.get("sheetId", 0)
        self.grid_rows = int(grid.get("rowCount", 1000))
        self.grid_columns = int(grid.get("columnCount", 26))

    async def _grow(self, *, rows: int = 0, columns: int = 0) -> None:
        """Lengthen or widen the grid so that ``rows`` x ``columns`` fit."""
        more = {"ROWS": 0, "COLUMNS": max(0, columns - self.grid_columns)}
        if rows > self.grid_rows:
            more["ROWS"] = max(rows - self.grid_rows, GROW_ROWS)
        requests = [
            {"appendDimension": {"sheetId": self.sheet_id, "dimension": d, "length": n}}
            for d, n in more.items()
            if n
        ]
        if requests:
            await self._call("POST", ":batchUpdate", {"requests": requests})
            self.grid_rows += more["ROWS"]
            self.grid_columns += more["COLUMNS"]

    # -- writes ---------------------------------------------------------------------------

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Place the batch's records (replace) or add them (append); results by position."""
        async with self.writing:
            return await self._write(batch)

    async def _write(self, batch: Batch) -> list[RecordResult]:
        replace = self.config.write == "replace"
        if not replace and batch.operation not in APPEND_OPS:
            raise DestinationError(
                f"google_sheets with `write: append` cannot {batch.operation.value} rows: use "
                "mode insert or upsert",
                failure=FailureType.CONFIG,
            )
        if batch.operation is Operation.DELETE:
            return await self._remove(batch)
        match, cells = self.layout.match, self.layout.cells
        results: dict[int, RecordResult] = {}
        rows: list[Row] = []
        for i, record in enumerate(batch.flat_records()):
            if replace and key_text(record.get(match)) is None:
                reason = f"no {match} value: google_sheets needs it to find the row"
                results[i] = RecordResult.rejected(i, reason)
            else:
                rows.append((i, record))
        packed = pack(rows, self.caps, size=lambda r: len(dumps_json(cells(r))) + 40)
        results.update(too_big_results(packed, self.caps, "google_sheets"))

        async def place(chunk: Sequence[Row]) -> Outcome:
            return await self._place(chunk, batch.operation)

        send = place if replace else self._append
        for request in packed.requests:  # one after the other: rows are placed by position
            results.update(await send_bisecting(request, send))
        return [results[i] for i in sorted(results)]

    async def _place(self, chunk: Sequence[Row], operation: Operation) -> Outcome:
        """Rewrite the rows the records have, or add them below the last one."""
        plan = self.layout.place(chunk, operation)
        call = None
        if plan.writes:
            await self._grow(rows=plan.height)
            result = await self._put(sorted(plan.writes.items()))
            if not result.ok:
                return refusal(result)
            call = result.call_id
        self.layout.commit(plan)
        return {
            i: RecordResult.rejected(i, plan.refused[i], call)
            if i in plan.refused
            else RecordResult.ok(i, call)
            for i, _ in chunk
        }

    async def _append(self, chunk: Sequence[Row]) -> Outcome:
        options = {"valueInputOption": self.config.value_input, "insertDataOption": "INSERT_ROWS"}
        values = [["" if v is None else v for v in self.layout.cells(r)] for _, r in chunk]
        path = f"/values/{self._range('A1')}:append?{urlencode(options)}"
        result = await self._call("POST", path, {"values": values})
        if not result.ok:
            return refusal(result)
        return {i: RecordResult.ok(i, result.call_id) for i, _ in chunk}

    async def _remove(self, batch: Batch) -> list[RecordResult]:
        """Take the records' rows out; the last rows fill the gaps, so none is left."""
        layout = self.layout
        plan = layout.removal([r.get(layout.match) for r in batch.flat_records()])
        if not plan.rows:
            return [RecordResult.ok(i) for i in range(len(batch))]
        width, last = len(layout.header), column(len(layout.header) - 1)
        moved: list[list[Any]] = []
        if plan.movers:
            cells = self._range(f"A{plan.end + 1}:{last}{layout.height}")
            found = await self._call("GET", f"/values/{cells}?valueRenderOption=UNFORMATTED_VALUE")
            values = (found.json or {}).get("values") or []
            for r in plan.movers:
                row = values[r - plan.end] if r - plan.end < len(values) else []
                moved.append([*row, *[""] * (width - len(row))])
        writes = list(zip(plan.holes, moved, strict=True))
        writes += [(r, [""] * width) for r in range(plan.end, layout.height)]
        result = await self._put(writes)
        if not result.ok:
            error = result.error or f"{result.status} {result.reason}"
            return [RecordResult.rejected(i, error, result.call_id) for i in range(len(batch))]
        layout.commit_removal(plan)
        return [RecordResult.ok(i, result.call_id) for i in range(len(batch))]
