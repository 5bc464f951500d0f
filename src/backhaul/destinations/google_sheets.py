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

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlencode

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from backhaul.destinations.base import (
    Batch,
    Capabilities,
    DestinationConfig,
    DestinationContext,
    Operation,
    RecordResult,
    SyncProblem,
    SyncShape,
)
from backhaul.destinations.http import (
    HttpDestination,
    HttpDestinationConfig,
    HttpResult,
    RateLimit,
    Refused,
    RetryPolicy,
    dumps_json,
    split_batch,
)
from backhaul.destinations.http.connector import client_for
from backhaul.destinations.http.packing import Caps, pack, too_big_message
from backhaul.destinations.salesforce_auth import TokenCallRecorder
from backhaul.errors import DestinationError, FailureType

GROW_ROWS = 1000  # rows added at a time when the sheet's grid is full
ENVELOPE = 200  # bytes of a request besides its rows (ranges, options)
APPEND_OPS = frozenset({Operation.UPSERT, Operation.INSERT})
Row = tuple[int, dict[str, Any]]


class GoogleOAuth(BaseModel):
    """An OAuth client and a refresh token for it (exchanged for access tokens)."""

    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    refresh_token: str = Field(min_length=1)
    token_url: str = "https://oauth2.googleapis.com/token"


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
            raise ValueError("give `access_token` or `oauth` (client and refresh token), one")
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
    url_keys = ("base_url",)
    config: GoogleSheetsConfig

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
        secrets = [config.access_token] + (
            [oauth.client_secret, oauth.refresh_token] if oauth else []
        )
        fix = "check `access_token` or `oauth` in the destination file"
        share = "check that the spreadsheet is shared with the account of the credentials"
        super().__init__(config, context, *secrets, hints={401: fix, 403: share, 404: share})
        self.tokens = client_for(
            self.vendor,
            config,
            context,
            self.redactor,
            concurrency=1,
            recorder=TokenCallRecorder(context.recorder),
        )
        self.token = config.access_token
        self.caps = Caps(items=100_000, request_bytes=config.max_request_bytes - ENVELOPE)
        self.title = config.sheet
        self.header: list[str] = []
        self.index: dict[str, int] = {}  # key -> row (0-based; the header is row 0)
        self.height = 1  # rows in use, the header included
        self.meta: HttpResult | None = None  # the spreadsheet's sheets, once read
        self.sheet_id = 0
        self.grid_rows = self.grid_columns = 0
        self.match = ""

    # -- calls ----------------------------------------------------------------------------

    async def _call(self, method: str, path: str, json: Any = None) -> HttpResult:
        """A Sheets call with a fresh token; an expired one is renewed once."""
        url = (
            f"{self.config.base_url.rstrip('/')}/v4/spreadsheets/{self.config.spreadsheet_id}{path}"
        )
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {await self._token()}"}
            try:
                return await self.client.request(method, url, json=json, headers=headers)
            except DestinationError as exc:
                if exc.status != 401 or self.config.oauth is None or attempt == 2:
                    raise
                self.token = None
        raise AssertionError("unreachable")

    async def _token(self) -> str:
        if self.token is None:
            oauth = self.config.oauth
            assert oauth is not None
            form = {
                "grant_type": "refresh_token",
                "client_id": oauth.client_id,
                "client_secret": oauth.client_secret,
                "refresh_token": oauth.refresh_token,
            }
            result = await self.tokens.request(
                "POST",
                oauth.token_url,
                content=urlencode(form),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            token = (result.json or {}).get("access_token") if result.ok else None
            if not isinstance(token, str):
                raise DestinationError(
                    f"google refused the refresh token ({result.error}): check `oauth` in the "
                    "destination file",
                    failure=FailureType.CONFIG,
                )
            self.redactor.add(token)
            self.token = token
        return self.token

    async def close(self) -> None:
        await self.tokens.aclose()
        await super().close()

    def _range(self, cells: str) -> str:
        """An A1 range of the tab, as it goes in a URL path."""
        return quote(f"{self._title()}!{cells}", safe="")

    # -- set-up ---------------------------------------------------------------------------

    async def probe(self) -> HttpResult:
        """Read the spreadsheet's sheets: proves the credentials and the sharing."""
        self.meta = await self._call("GET", "")
        return self.meta

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Find (or add) the tab, write the header row, and read the keys of the rows."""
        self.title = object or self.config.sheet
        if self.config.write == "replace":
            if len(match_fields) != 1:
                raise DestinationError(
                    "google_sheets keeps one row per key: set one match field",
                    failure=FailureType.CONFIG,
                )
            self.match = match_fields[0]
        await self._find_sheet()
        found = await self._call("GET", f"/values/{self._range('1:1')}")
        self.header = [str(v) for v in ((found.json or {}).get("values") or [[]])[0]]
        new = [f for f in fields if f not in self.header]
        if new or not self.header:
            self.header += new
            await self._grow(columns=len(self.header))
            written = await self._put([(0, list(self.header))])
            if not written.ok:
                raise DestinationError(
                    f"google_sheets refused the header row ({written.error}): check `sheet` "
                    "and the mapped field names",
                    failure=FailureType.CONFIG,
                )
        if self.config.write == "replace":
            await self._read_keys()

    async def _find_sheet(self) -> None:
        found = self.meta if self.meta is not None and self.meta.ok else await self.probe()
        meta = found.json or {}
        for sheet in meta.get("sheets") or []:
            props = sheet.get("properties") or {}
            if props.get("title") == self.title:
                break
        else:
            added = await self._call(
                "POST",
                ":batchUpdate",
                {"requests": [{"addSheet": {"properties": {"title": self.title}}}]},
            )
            props = (
                ((added.json or {}).get("replies") or [{}])[0]
                .get("addSheet", {})
                .get("properties", {})
            )
        grid = props.get("gridProperties") or {}
        self.sheet_id = props.get("sheetId", 0)
        self.grid_rows = int(grid.get("rowCount", 1000))
        self.grid_columns = int(grid.get("columnCount", 26))

    async def _read_keys(self) -> None:
        column = _column(self.header.index(self.match))
        path = f"/values/{self._range(f'{column}2:{column}')}?valueRenderOption=UNFORMATTED_VALUE"
        values = ((await self._call("GET", path)).json or {}).get("values") or []
        self.index = {}
        for n, row in enumerate(values, start=1):
            key = _key(row[0] if row else None)
            if key is not None:
                self.index.setdefault(key, n)
        self.height = len(values) + 1

    async def _grow(self, *, rows: int = 0, columns: int = 0) -> None:
        """Widen or lengthen the grid so that ``rows`` x ``columns`` fit."""
        requests = []
        if rows > self.grid_rows:
            more = max(rows - self.grid_rows, GROW_ROWS)
            requests.append(
                {"appendDimension": {"sheetId": self.sheet_id, "dimension": "ROWS", "length": more}}
            )
            self.grid_rows += more
        if columns > self.grid_columns:
            more = columns - self.grid_columns
            requests.append(
                {
                    "appendDimension": {
                        "sheetId": self.sheet_id,
                        "dimension": "COLUMNS",
                        "length": more,
                    }
                }
            )
            self.grid_columns += more
        if requests:
            await self._call("POST", ":batchUpdate", {"requests": requests})

    async def _put(self, rows: Sequence[tuple[int, list[Any]]]) -> HttpResult:
        """Write whole rows at their positions in one all-or-nothing request."""
        last = _column(len(self.header) - 1)
        data = [
            {"range": f"{self._title()}!A{r + 1}:{last}{r + 1}", "values": [v]} for r, v in rows
        ]
        body = {"valueInputOption": self.config.value_input, "data": data}
        return await self._call("POST", "/values:batchUpdate", body)

    # -- writes ---------------------------------------------------------------------------

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Place the batch's records (replace) or add them (append); results by position."""
        write = self.config.write
        if write == "append" and batch.operation not in APPEND_OPS:
            raise DestinationError(
                f"google_sheets with `write: append` cannot {batch.operation.value} rows: use "
                "mode insert or upsert",
                failure=FailureType.CONFIG,
            )
        if batch.operation is Operation.DELETE:
            return await self._remove(batch)
        results: dict[int, RecordResult] = {}
        rows: list[Row] = []
        for i, record in enumerate(batch.flat_records()):
            if write == "replace" and _key(record.get(self.match)) is None:
                reason = f"no {self.match} value: google_sheets needs it to find the row"
                results[i] = RecordResult.rejected(i, reason)
            else:
                rows.append((i, record))
        packed = pack(rows, self.caps, size=lambda r: len(dumps_json(self._cells(r))) + 40)
        for i, size in packed.too_big.items():
            results[i] = RecordResult.rejected(i, too_big_message(size, self.caps, "google_sheets"))
        send = self._append if write == "append" else self._placer(batch.operation)
        for request in packed.requests:  # in order: rows are placed by position
            for segment in await split_batch(request, send):
                outcome = segment.outcome
                for i, _ in segment.items:
                    if isinstance(outcome, Refused):
                        results[i] = RecordResult.rejected(i, outcome.error, outcome.call_id)
                    else:
                        results[i] = outcome.get(i) or RecordResult.ok(i)
        return [results[i] for i in sorted(results)]

    def _cells(self, record: Mapping[str, Any]) -> list[Any]:
        """A record as a row in header order; columns it does not map are left alone."""
        return [_cell(record[f]) if f in record else None for f in self.header]

    async def _append(self, chunk: Sequence[Row]) -> dict[int, RecordResult] | Refused:
        query = urlencode(
            {"valueInputOption": self.config.value_input, "insertDataOption": "INSERT_ROWS"}
        )
        body = {"values": [[("" if v is None else v) for v in self._cells(r)] for _, r in chunk]}
        result = await self._call("POST", f"/values/{self._range('A1')}:append?{query}", body)
        if not result.ok:
            return Refused(result.error or f"{result.status} {result.reason}", result.call_id)
        return {i: RecordResult.ok(i, result.call_id) for i, _ in chunk}

    def _placer(self, operation: Operation) -> Any:
        async def place(chunk: Sequence[Row]) -> dict[int, RecordResult] | Refused:
            """Rewrite the rows the records have, or add them below the last one."""
            placed: dict[str, int] = {}
            writes: dict[int, list[Any]] = {}
            out: dict[int, RecordResult] = {}
            height = self.height
            for i, record in chunk:
                key = _key(record[self.match])
                assert key is not None
                row = self.index.get(key, placed.get(key))
                if row is None and operation in (Operation.UPDATE, Operation.CLEAR):
                    if operation is Operation.UPDATE:
                        out[i] = RecordResult.rejected(
                            i,
                            f"the sheet has no row with {self.match} = {key}: update mode "
                            "adds none",
                        )
                    continue
                if row is not None and operation is Operation.INSERT:
                    continue  # the row is there already: left as it is
                if row is None:
                    row, height = height, height + 1
                    placed[key] = row
                # A mapped null empties its cell; a column the sync does not map is left alone.
                cells = self._cells(record)
                writes[row] = [
                    ("" if c is None else c) if f in record else None
                    for c, f in zip(cells, self.header, strict=True)
                ]
            call = None
            if writes:
                await self._grow(rows=height)
                result = await self._put(sorted(writes.items()))
                if not result.ok:
                    error = result.error or f"{result.status} {result.reason}"
                    return Refused(error, result.call_id)
                call = result.call_id
            self.index.update(placed)
            self.height = height
            return {i: out.get(i) or RecordResult.ok(i, call) for i, _ in chunk}

        return place

    async def _remove(self, batch: Batch) -> list[RecordResult]:
        """Take the records' rows out; the last rows fill the gaps, so none is left."""
        match = self.match
        rows = {
            self.index[key]
            for record in batch.flat_records()
            if (key := _key(record.get(match))) is not None and key in self.index
        }
        if not rows:
            return [RecordResult.ok(i) for i in range(len(batch))]
        end = self.height - len(rows)  # the rows from here on are emptied
        movers = [r for r in range(end, self.height) if r not in rows]
        holes = sorted(r for r in rows if r < end)
        width, last = len(self.header), _column(len(self.header) - 1)
        moved: list[list[Any]] = []
        if movers:
            path = f"/values/{self._range(f'A{end + 1}:{last}{self.height}')}"
            found = await self._call("GET", path + "?valueRenderOption=UNFORMATTED_VALUE")
            values = (found.json or {}).get("values") or []
            for r in movers:
                row = values[r - end] if r - end < len(values) else []
                moved.append(list(row) + [""] * (width - len(row)))
        writes = list(zip(holes, moved, strict=True))
        writes += [(r, [""] * width) for r in range(end, self.height)]
        result = await self._put(writes)
        if not result.ok:
            error = result.error or f"{result.status} {result.reason}"
            return [RecordResult.rejected(i, error, result.call_id) for i in range(len(batch))]
        by_row = {r: k for k, r in self.index.items()}
        for r in rows:
            del self.index[by_row[r]]
        for hole, mover in zip(holes, movers, strict=True):
            self.index[by_row[mover]] = hole
        self.height = end
        return [RecordResult.ok(i, result.call_id) for i in range(len(batch))]

    def _title(self) -> str:
        return "'{}'".format(self.title.replace("'", "''"))


def _column(index: int) -> str:
    """The A1 letters of a 0-based column."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def _key(value: Any) -> str | None:
    """A key as text, the same whether it was read from the sheet or sent."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cell(value: Any) -> Any:
    """A value a cell can hold: text, a number or a boolean (null: an empty cell)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)
