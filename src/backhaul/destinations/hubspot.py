"""HubSpot destination: CRM v3 objects (contacts, companies, deals, custom objects).

Records are matched by one property with unique values (``email`` for contacts, ``domain``
for companies, or a property created with unique values required). Upserts go to
``batch/upsert`` with each record's batch index as ``objectWriteTraceId``, so a 207 answer
maps every refused input back to its record; the other operations look the records up with
``batch/read`` (see :mod:`backhaul.destinations.keyed`). Calls stay under HubSpot's rolling
burst window (100 calls per 10 s for a private app by default) and slow down when HubSpot's
own rate-limit headers say the account allows less. See docs/destinations/hubspot.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import date
from datetime import datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import quote

import httpx
import pyarrow as pa
from pydantic import Field

from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import FieldInfo
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.http import HttpDestinationConfig
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import RateLimit
from backhaul.destinations.http import RollingWindowLimiter
from backhaul.destinations.http import dumps_json
from backhaul.destinations.keyed import Answers
from backhaul.destinations.keyed import Exists
from backhaul.destinations.keyed import Found
from backhaul.destinations.keyed import Gone
from backhaul.destinations.keyed import Identity
from backhaul.destinations.keyed import KeyedDestination
from backhaul.destinations.keyed import Rows
from backhaul.destinations.keyed import Upsert
from backhaul.destinations.keyed import keyed_capabilities
from backhaul.destinations.keyed import turns
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

API_URL = "https://api.hubapi.com"
DEFAULT_ID_PROPERTY = {"contacts": "email", "companies": "domain"}
ERROR_LIMIT = 500
HINTS = {
    401: "set `token` in the destination file to a valid private app token",
    403: "give the private app the CRM scopes it needs (read and write on the synced object, "
    "schema read)",
    404: "check `base_url` and `object` in the destination file",
}
_turns = turns  # HubSpot refuses a batch naming one record twice (the tests call it so)


class HubSpotConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: hubspot``."""

    type: Literal["hubspot"]
    token: str = Field(description="Private app access token; write `${env:HUBSPOT_TOKEN}`.")
    base_url: str = Field(API_URL, description="API root (point it at the sandbox to test).")
    object: str | None = Field(
        None,
        description="contacts, companies, deals or a custom object's name or id "
        "(default: the sync's `object`).",
    )
    id_property: str | None = Field(
        None,
        description="Unique property that identifies records (default: the sync's match "
        "field; email for contacts, domain for companies).",
    )
    rate_limit: RateLimit = Field(
        default_factory=lambda: RateLimit(requests=100, per_seconds=10.0),
        description="HubSpot's burst limit for the app (rolling window).",
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        le=32,
        alias="connections",
        description="Calls in flight and HTTP connections kept open (default: enough to "
        "reach `rate_limit`, 10 for 100 calls per 10 s; see docs/rate-limits.md).",
    )


# Every write answers with the record's HubSpot id; a changed e-mail updates the contact by it.
CAPABILITIES = keyed_capabilities(
    max_batch_size=100,  # HubSpot's limit for every batch endpoint
    default_batch_size=100,
)


class HubSpotDestination(KeyedDestination):
    """Writes records to one HubSpot object type; see :class:`HubSpotConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = HubSpotConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    vendor = "HubSpot"
    config: HubSpotConfig

    object_hint = " (contacts, companies, deals or a custom object's name)"

    def __init__(self, config: HubSpotConfig, context: DestinationContext) -> None:
        self.window = RollingWindowLimiter(
            config.rate_limit.requests,
            config.rate_limit.per_seconds,
            stale_after=config.timeout_seconds * 3,
        )
        super().__init__(
            config,
            context,
            config.token,
            headers={"Authorization": f"Bearer {config.token}", "Accept": "application/json"},
            hints=HINTS,
            limiter=self.window,
            pause_hint=self._pause_hint,
        )
        self.base = config.base_url.rstrip("/")
        self._properties: dict[str, dict[str, dict[str, Any]]] = {}

    # -- protocol --------------------------------------------------------------------

    async def probe(self) -> None:
        """Prove token and object by reading the properties of the destination's ``object``
        (contacts when it names none): a bad token, a missing scope or an unknown object is
        a CONFIG error."""
        if not self.config.token.strip():
            raise _config(f"HubSpot `token` is empty: {HINTS[401]}")
        await self._load_properties(self.config.object or "contacts")

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Read the object's properties and check the mapped fields against them: each must
        be a writable property, and the match field a property with unique values."""
        name = self._object_name(object)
        props = await self._load_properties(name)
        unknown = sorted(f for f in fields if f not in props)
        if unknown:
            raise _config(
                f"HubSpot {name} {_plural(unknown, 'has no property', 'has no properties')} "
                f"{', '.join(unknown)}: create {_plural(unknown, 'it', 'them')} in HubSpot "
                "(Settings > Properties) or change the sync's mappings"
            )
        frozen = sorted(f for f in fields if _read_only(props[f]))
        if frozen:
            raise _config(
                f"HubSpot {name} {_plural(frozen, 'property', 'properties')} "
                f"{', '.join(frozen)} {_plural(frozen, 'is', 'are')} read-only: remove "
                f"{_plural(frozen, 'it', 'them')} from the sync's mappings"
            )
        field = self._identity(name, props, match_fields)
        self.identity = Identity("HubSpot", name, field, text=_text)

    def native_upsert(self, identity: Identity) -> Upsert:
        return self._upsert

    # -- the calls of a keyed write (backhaul.destinations.keyed) ---------------------------

    async def find(self, rows: Rows, idx: Sequence[int]) -> Found:
        """``batch/read`` by the id property: HubSpot ids of the records that exist."""
        field = rows.identity.field
        body = {
            "idProperty": field,
            "properties": [field],
            "inputs": [{"id": rows.keys[i]} for i in idx],
        }
        result = await self._call("batch/read", body, {200, 207})
        if not result.ok:  # the lookup itself was refused: so is every record of it
            error = self._clip(result.error)
            return {i: RecordResult.rejected(i, error, result.call_id) for i in idx}
        ids: dict[str, str] = {}
        for item in _list(result.json, "results"):
            value = (item.get("properties") or {}).get(field)
            if value is not None and item.get("id") is not None:
                ids[str(value)] = str(item["id"])
        return {i: ids[rows.keys[i]] for i in idx if rows.keys[i] in ids}

    async def create(self, rows: Rows, idx: Sequence[int]) -> Answers:
        inputs = [
            {
                "objectWriteTraceId": str(i),
                "properties": _properties(rows.records[i], clear_nulls=False),
            }
            for i in idx
        ]
        result = await self._call("batch/create", {"inputs": inputs}, {200, 201, 207})
        return self._outcomes(result, idx, rows)

    async def update(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        """``batch/update`` by HubSpot id; a clear empties every property but the id one."""
        inputs = []
        for i, rid in ids.items():
            props = _properties(rows.records[i], clear_nulls=True)
            if rows.operation is Operation.CLEAR:
                props = {k: "" for k in props if k != rows.identity.field}
            inputs.append({"id": rid, "objectWriteTraceId": str(i), "properties": props})
        result = await self._call("batch/update", {"inputs": inputs}, {200, 207})
        return self._outcomes(result, list(ids), rows)

    async def delete(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        """``batch/archive``: HubSpot archives the inputs all together or none."""
        inputs = [{"id": rid} for rid in ids.values()]
        result = await self._call("batch/archive", {"inputs": inputs}, {200, 204})
        if result.ok:
            return {i: RecordResult.ok(i, result.call_id) for i in ids}
        error = self._clip(result.error)
        return {i: RecordResult.rejected(i, error, result.call_id) for i in ids}

    async def _upsert(self, rows: Rows, idx: Sequence[int]) -> Answers:
        inputs = [
            {
                "id": rows.keys[i],
                "idProperty": rows.identity.field,
                "objectWriteTraceId": str(i),
                "properties": _properties(rows.records[i], clear_nulls=True),
            }
            for i in idx
        ]
        result = await self._call("batch/upsert", {"inputs": inputs}, {200, 201, 207})
        return self._outcomes(result, idx, rows)

    def _outcomes(self, result: HttpResult, idx: Sequence[int], rows: Rows) -> Answers:
        """One answer per input of a write answered 200/201/207 (or refused whole)."""
        call = result.call_id
        if not result.ok:
            error = self._clip(result.error)
            return {i: RecordResult.rejected(i, error, call) for i in idx}
        wanted = set(idx)
        out: dict[int, RecordResult | Exists | Gone] = {}
        by_value = {rows.keys[i]: i for i in idx}
        for item in _list(result.json, "results"):
            at = _int(item.get("objectWriteTraceId"))
            if at is None:
                value = (item.get("properties") or {}).get(rows.identity.field)
                at = by_value.get(str(value)) if value is not None else None
            if at is not None and at in wanted:
                rid = None if item.get("id") is None else str(item["id"])
                out[at] = RecordResult.ok(at, call, rid)
        for entry in _list(result.json, "errors"):
            error = self._clip(_entry_text(entry))
            for i in (i for i in _traces(entry) if i in wanted):
                category = entry.get("category")
                if category == "CONFLICT":  # created meanwhile by someone else
                    out[i] = Exists(error, call)
                elif category == "OBJECT_NOT_FOUND":  # deleted or merged away meanwhile
                    out[i] = Gone(error, call)
                else:
                    out[i] = RecordResult.rejected(i, error, call)
        return out

    # -- calls -----------------------------------------------------------------------

    async def _call(self, verb: str, body: Any, expected: set[int]) -> HttpResult:
        assert self.identity is not None
        url = f"{self.base}/crm/v3/objects/{quote(self.identity.object, safe='')}/{verb}"
        return await self._request("POST", url, body, expected)

    async def _request(
        self, method: str, url: str, body: Any = None, expected: set[int] | None = None
    ) -> HttpResult:
        try:
            return await self.client.request(
                method, url, json=body, expected=expected or range(200, 300)
            )
        except DestinationError as exc:
            why = self._clip(exc.detail or exc.message)
            if exc.status == 429 and "daily" in why.lower():
                raise DestinationError(
                    "HubSpot's daily API limit for this account is used up: the rows stay "
                    "pending and go in a later run (the limit resets at midnight in the "
                    "account's time zone)",
                    failure=FailureType.TRANSIENT,
                    status=429,
                    detail=why,
                ) from None
            raise

    def _pause_hint(self, response: httpx.Response) -> float | None:
        """Follow HubSpot's rate-limit headers: a lower limit, and a pause after a 429."""
        headers = response.headers
        limit = _int(headers.get("x-hubspot-ratelimit-max"))
        if limit is not None:
            self.window.lower(limit)  # the account allows less than configured
        if response.status_code != 429:
            return None
        interval = _int(headers.get("x-hubspot-ratelimit-interval-milliseconds"))
        try:
            policy = response.json().get("policyName")
        except (ValueError, AttributeError):
            policy = None
        if policy == "DAILY":
            return None  # waiting does not help; the call fails and says why
        if policy == "SECONDLY":
            return 1.0
        # A rolling window frees its first slot at the latest one interval from now.
        return interval / 1000 if interval else self.window.seconds

    async def field_kinds(self, object: str | None) -> dict[str, str]:
        """Each property of the object and the kind of value it holds (number, bool, date,
        datetime or text), read from the account (``validate --check-destinations``)."""
        props = await self._load_properties(self._object_name(object))
        kinds = {"number": "number", "bool": "bool", "date": "date", "datetime": "datetime"}
        return {name: kinds.get(str(p.get("type")), "text") for name, p in props.items()}

    async def fields(self, object: str | None) -> list[FieldInfo]:
        """The object's properties as the properties API lists them: kind of value,
        label, unique values, read-only (calculated or not a form field)."""
        props = await self._load_properties(self._object_name(object or "contacts"))
        kinds = {"number": "number", "bool": "bool", "date": "date", "datetime": "datetime"}
        return [
            FieldInfo(
                name,
                kinds.get(str(p.get("type")), "text"),
                label=str(p["label"]) if p.get("label") else None,
                unique=bool(p.get("hasUniqueValue")),
                read_only=_read_only(p),
            )
            for name, p in sorted(props.items())
        ]

    async def _load_properties(self, name: str) -> dict[str, dict[str, Any]]:
        cached = self._properties.get(name)
        if cached is not None:
            return cached
        url = f"{self.base}/crm/v3/properties/{quote(name, safe='')}"
        result = await self._request("GET", url)
        if not result.ok:
            raise _config(
                f"HubSpot has no object type `{name}` ({self._clip(result.error)}): set `object` "
                "to contacts, companies, deals or a custom object's name",
                result.status,
            )
        props = {str(p["name"]): p for p in _list(result.json, "results") if "name" in p}
        self._properties[name] = props
        return props

    def _object_name(self, object: str | None) -> str:
        configured = self.config.object
        if object and configured and object != configured:
            raise _config(
                f"the sync's object `{object}` differs from the HubSpot destination's object "
                f"`{configured}`: set it in one place only"
            )
        name = object or configured
        if not name:
            raise _config(
                "HubSpot needs an object: set `object` in the sync (contacts, companies, deals "
                "or a custom object's name)"
            )
        return name

    def _identity(
        self, name: str, props: Mapping[str, Mapping[str, Any]], match_fields: Sequence[str]
    ) -> str:
        configured = self.config.id_property
        if len(match_fields) > 1:
            raise _config(
                f"HubSpot matches records by one property, but the sync matches on "
                f"{', '.join(match_fields)}: set `match` to one unique property"
            )
        matched = match_fields[0] if match_fields else None
        if configured and matched and configured != matched:
            raise _config(
                f"the sync matches on `{matched}` but the HubSpot destination's id_property is "
                f"`{configured}`: make them the same"
            )
        chosen = configured or matched or DEFAULT_ID_PROPERTY.get(name)
        if chosen is None:
            raise _config(f"set `id_property` to a unique property of HubSpot {name}")
        definition = props.get(chosen)
        if definition is None:
            raise _config(f"HubSpot {name} has no property `{chosen}`: fix `id_property`")
        builtin = DEFAULT_ID_PROPERTY.get(name) == chosen
        if not builtin and not definition.get("hasUniqueValue"):
            raise _config(
                f"HubSpot {name} property `{chosen}` does not require unique values "
                "(hasUniqueValue is false), so records cannot be matched by it: match on "
                f"{DEFAULT_ID_PROPERTY.get(name, 'a unique property')} or create a property "
                "with unique values required and map the key to it"
            )
        return chosen

    def _clip(self, text: str | None) -> str:
        line = " ".join((text or "refused by HubSpot").split())[:ERROR_LIMIT]
        return self.redactor.text(line) or ""


def _config(message: str, status: int | None = None) -> DestinationError:
    return DestinationError(message, failure=FailureType.CONFIG, status=status)


def _plural(items: Sequence[object], one: str, many: str) -> str:
    return one if len(items) == 1 else many


def _read_only(definition: Mapping[str, Any]) -> bool:
    meta = definition.get("modificationMetadata") or {}
    return bool(meta.get("readOnlyValue"))


def _list(body: Any, key: str) -> list[dict[str, Any]]:
    items = body.get(key) if isinstance(body, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _traces(entry: Mapping[str, Any]) -> list[int]:
    """The batch indexes a 207 error entry names (its ``objectWriteTraceId`` values)."""
    traces = (entry.get("context") or {}).get("objectWriteTraceId") or []
    found = (_int(t) for t in (traces if isinstance(traces, list) else [traces]))
    return [i for i in found if i is not None]


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _entry_text(entry: Mapping[str, Any]) -> str:
    """A per-input error of a 207 answer, as one line."""
    message = str(entry.get("message") or entry.get("category") or "refused")
    extra = [
        str(e.get("message"))
        for e in entry.get("errors") or []
        if isinstance(e, dict) and e.get("message") and str(e.get("message")) not in message
    ]
    return f"{message} ({'; '.join(extra)})" if extra else message


def _text(value: Any) -> str:
    """A value as HubSpot takes it: every property value is a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        # Whole numbers without ".0"; negative zero keeps its sign.
        return "-0" if value == 0 and math.copysign(1.0, value) < 0 else str(int(value))
    if isinstance(value, Decimal):
        if value.is_zero() and value.is_signed():
            return "-0"
        if not value.is_finite():
            return str(value)
        return str(int(value)) if value == value.to_integral_value() else str(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        return ";".join(_text(v) for v in value)  # multiple-checkbox properties
    if isinstance(value, dict):
        return dumps_json(value, sort_keys=True).decode("utf-8")
    return str(value)


def _properties(record: Mapping[str, Any], *, clear_nulls: bool) -> dict[str, str]:
    """HubSpot ``properties``: a null clears the property (``""``) or is left out."""
    return {k: _text(v) for k, v in record.items() if v is not None or clear_nulls}
