"""Salesforce destination: upsert by external id through sObject Collections or Bulk API 2.0.

Records are matched by an External ID field. Small batches go through the synchronous
sObject Collections API (200 records a call, results in request order); large ones through
Bulk API 2.0 ingest jobs (see :mod:`backhaul.destinations.salesforce_bulk`). Update, insert,
clear and delete first look the batch's external ids up with one SOQL query per 200 keys.
Sessions come from the OAuth token endpoint (client credentials or refresh token) and are
renewed once when Salesforce answers ``INVALID_SESSION_ID`` (see
:mod:`backhaul.destinations.salesforce_auth`).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Annotated
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import quote
from urllib.parse import urlencode

import pyarrow as pa
from pydantic import Field

from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import FieldInfo
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.destinations.http import HttpDestinationConfig
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import RateLimiter
from backhaul.destinations.http import Refused
from backhaul.destinations.http import split_batch
from backhaul.destinations.http.connector import client_for
from backhaul.destinations.http.tokens import TokenCallRecorder
from backhaul.destinations.keyed import Answers
from backhaul.destinations.keyed import Found
from backhaul.destinations.keyed import Gone
from backhaul.destinations.keyed import Identity
from backhaul.destinations.keyed import KeyedDestination
from backhaul.destinations.keyed import Rows
from backhaul.destinations.keyed import Upsert
from backhaul.destinations.keyed import keyed_capabilities
from backhaul.destinations.salesforce_auth import ClientCredentials
from backhaul.destinations.salesforce_auth import RefreshTokenAuth
from backhaul.destinations.salesforce_auth import SalesforceSession
from backhaul.destinations.salesforce_auth import sf_errors
from backhaul.destinations.salesforce_bulk import BulkJob
from backhaul.destinations.salesforce_bulk import cell
from backhaul.destinations.salesforce_bulk import run_bulk
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

COLLECTION_SIZE = 200  # sObject Collections: most records per call
QUERY_CHARS = 8_000  # keep a lookup's URL well under Salesforce's 16,384-character limit
CONFIG_CODES = frozenset({"NOT_FOUND", "INVALID_FIELD", "INVALID_TYPE", "INVALID_SESSION_ID"})
# Refusals of a write by Id that say no record has that Id any more.
GONE_CODES = ("NOT_FOUND", "ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY")


class SalesforceConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: salesforce``."""

    type: Literal["salesforce"]
    auth: Annotated[ClientCredentials | RefreshTokenAuth, Field(discriminator="type")]
    login_url: str = Field(
        "https://login.salesforce.com",
        description="Where tokens come from: login.salesforce.com, test.salesforce.com for a "
        "sandbox, or the org's My Domain URL.",
    )
    instance_url: str | None = Field(
        None, description="API host; default: the `instance_url` of the token answer."
    )
    api_version: str = Field("v62.0", pattern=r"^v\d+\.\d$")
    object: str | None = Field(None, description="sObject API name; default: the sync's `object`.")
    external_id_field: str | None = Field(
        None,
        description="External ID field records are matched by; default: the sync's match field.",
    )
    bulk: Literal["auto", "always", "never"] = Field(
        "auto",
        description="`auto`: batches of at least `bulk_threshold` records use Bulk API 2.0, "
        "smaller ones sObject Collections. Set the sync's `batch_size` to choose.",
    )
    bulk_threshold: int = Field(10_000, ge=1)
    poll_interval_seconds: float = Field(2.0, gt=0, description="Wait between Bulk job polls.")
    bulk_timeout_seconds: float = Field(
        3600.0, gt=0, description="Abort a Bulk job still running after this long."
    )
    concurrency: int = Field(4, ge=1, le=25, description="Calls in flight at once.")
    timeout_seconds: float = Field(120.0, gt=0)


# sObject Collections answer each record with its Id; a record whose external id value
# changed is written by that Id, so it is kept, not replaced.
CAPABILITIES = keyed_capabilities(
    max_batch_size=150_000,  # a Bulk API job; REST batches are cut into calls of 200
    default_batch_size=COLLECTION_SIZE,
    default_concurrency=4,
)


_NUMBERS = frozenset({"double", "int", "long", "currency", "percent"})
_KINDS = {"boolean": "bool", "date": "date", "datetime": "datetime"}


def _kind(spec: Mapping[str, Any]) -> str:
    """The kind of value (number, bool, date, datetime or text) of a described field."""
    name = str(spec.get("type"))
    return "number" if name in _NUMBERS else _KINDS.get(name, "text")


def item_error(item: Any) -> str:
    """The text shown for a refused record of a collections answer."""
    errors = item.get("errors") if isinstance(item, dict) else None
    parts = []
    for err in errors or []:
        text = f"{err.get('statusCode', 'ERROR')}: {err.get('message', '')}".strip()
        fields = err.get("fields") or []
        parts.append(f"{text} ({', '.join(fields)})" if fields else text)
    return "; ".join(parts) or "refused by Salesforce"


class SalesforceDestination(KeyedDestination):
    """Writes records to one sObject of a Salesforce org; see :class:`SalesforceConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = SalesforceConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    vendor = "salesforce"
    object_hint = " (e.g. Contact) or in the destination file"
    url_keys = ("login_url", "instance_url")
    config: SalesforceConfig
    # Salesforce limits concurrent long requests (25 per org, shared with the org's other
    # integrations) and calls a day, not calls a second: no rate to size calls in flight by.
    concurrency_from_rate_limit = False

    @classmethod
    def check_sync(cls, config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
        """The object and the External ID field, before anything runs."""
        problems = super().check_sync(config, shape)
        ext = getattr(config, "external_id_field", None)
        match = list(shape.match_fields)
        if ext is None and len(match) > 1:
            message = (
                "salesforce matches records by one External ID field: match by one field, or "
                "set `external_id_field` in the destination file"
            )
            problems.append(SyncProblem("match.fields", message))
        elif ext is not None and match not in ([ext], []):
            message = (
                f"salesforce matches records by `{ext}` but the sync matches by "
                f"{', '.join(match)}: set `match` in the sync to {ext}"
            )
            problems.append(SyncProblem("match.fields", message))
        return problems

    def __init__(self, config: SalesforceConfig, context: DestinationContext) -> None:
        auth = config.auth
        refresh = auth.refresh_token if isinstance(auth, RefreshTokenAuth) else None
        super().__init__(config, context, auth.client_secret, refresh)
        self.token_client = client_for(
            "salesforce",
            config,
            context,
            self.redactor,
            concurrency=config.concurrency,
            limiter=RateLimiter(None),  # logins do not count against the org's API limits
            recorder=TokenCallRecorder(context.recorder),
        )
        self.session = SalesforceSession(
            auth=auth,
            login_url=config.login_url,
            instance_url=config.instance_url,
            api_version=config.api_version,
            retry=config.retry,
            client=self.client,
            token_client=self.token_client,
            redactor=self.redactor,
        )
        self._described: dict[str, dict[str, dict[str, Any]]] = {}

    # -- protocol ----------------------------------------------------------------------------

    async def probe(self) -> None:
        """Log in and, when the destination names its object, describe it: bad credentials,
        an unknown object or an external id field that is not one are CONFIG errors."""
        await self.session.start()
        obj = self.config.object
        if obj is not None:
            described = await self._fields(obj)
            if self.config.external_id_field:
                self._check_external_id(obj, self.config.external_id_field, described)

    async def close(self) -> None:
        await self.session.aclose()  # both clients; the session itself is kept

    async def field_kinds(self, object: str | None) -> dict[str, str]:
        """Each field of the object and the kind of value it holds (number, bool, date,
        datetime or text), from its describe (``validate --check-destinations``)."""
        obj = self.config.object or object
        if not obj:
            return {}
        described = await self._fields(obj)
        return {name: _kind(spec) for name, spec in described.items()}

    async def fields(self, object: str | None) -> list[FieldInfo]:
        """The object's fields from the same describe: kind of value, label, required (not
        nillable, createable, no default on create), unique (an External ID field, the only
        kind records can be matched by), read-only (neither createable nor updateable)."""
        obj = self._object_of(
            object,
            "salesforce needs an object to list its fields: name one (e.g. Contact) or set "
            "`object` in the destination file",
        )
        described = await self._fields(obj)
        return [
            FieldInfo(
                name,
                _kind(spec),
                label=str(spec["label"]) if spec.get("label") else None,
                required=not spec.get("nillable", True)
                and bool(spec.get("createable"))
                and not spec.get("defaultedOnCreate"),
                unique=bool(spec.get("externalId")),
                read_only=not spec.get("createable") and not spec.get("updateable"),
            )
            for name, spec in sorted(described.items())
        ]

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Settle the object and external id field, then describe the object: an unknown
        object or field, or a mapped field that cannot be written, raise a CONFIG error."""
        obj = self._object_of(
            object,
            "salesforce needs an object: set `object` in the sync (e.g. Contact) or in the "
            "destination file",
        )
        ext = self.config.external_id_field
        if ext is None:
            if len(match_fields) != 1:
                raise DestinationError(
                    "salesforce matches records by one External ID field: set "
                    "`external_id_field` in the destination file",
                    failure=FailureType.CONFIG,
                )
            ext = match_fields[0]
        elif list(match_fields) not in ([ext], []):
            raise DestinationError(
                f"salesforce matches {obj} records by `{ext}` but the sync matches by "
                f"{', '.join(match_fields)}: set `match` in the sync to {ext}",
                failure=FailureType.CONFIG,
            )
        described = await self._fields(obj)
        self._check_external_id(obj, ext, described)
        for name in fields:
            spec = described.get(name)
            if spec is None:
                raise DestinationError(
                    f"salesforce {obj} has no field `{name}`: map to a field's API name "
                    "(custom fields end in __c)",
                    failure=FailureType.CONFIG,
                )
            if not spec.get("updateable") and name != ext:
                raise DestinationError(
                    f"salesforce {obj} field `{name}` cannot be updated: remove its mapping "
                    "or give the user of `auth` edit access to it",
                    failure=FailureType.CONFIG,
                )
        self.identity = Identity("salesforce", obj, ext)

    def native_upsert(self, identity: Identity) -> Upsert:
        return self.create  # an upsert keyed on the external id field

    # -- the calls of a keyed write (backhaul.destinations.keyed) ---------------------------

    async def find(self, rows: Rows, idx: Sequence[int]) -> Found:
        """Record Ids by external id, by SOQL in URL-sized chunks."""
        ids = await self._lookup(rows.identity, [rows.keys[i] for i in idx])
        return {i: ids[rows.keys[i]] for i in idx if rows.keys[i] in ids}

    async def create(self, rows: Rows, idx: Sequence[int]) -> Answers:
        """An upsert keyed on the external id field (it creates what is missing)."""
        ext = rows.identity.field
        if self._use_bulk(len(rows.records)):
            return await self._bulk(rows, "upsert", idx)
        return await self._rest_upsert(rows.identity, {i: rows.records[i] for i in idx}, ext)

    async def update(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        """Write records by their Id, external id included; a gone Id is :class:`Gone`."""
        if self._use_bulk(len(rows.records)):
            done = await self._bulk(rows, "update", list(ids), ids)
        else:
            by_id = {i: {"Id": rid, **rows.records[i]} for i, rid in ids.items()}
            done = await self._rest_upsert(rows.identity, by_id, "Id")
        return {
            i: Gone(r.error, r.call_id) if r.error and r.error.startswith(GONE_CODES) else r
            for i, r in done.items()
        }

    async def delete(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        if self._use_bulk(len(rows.records)):
            return await self._bulk(rows, "delete", list(ids), ids)
        return await self._rest_delete(rows.identity, ids)

    # -- helpers ----------------------------------------------------------------------------

    def _object_of(self, object: str | None, missing: str) -> str:
        """The object the destination file names, else the sync's.

        Raises:
            DestinationError: CONFIG, saying ``missing``, when neither names one.
        """
        obj = self.config.object or object
        if not obj:
            raise DestinationError(missing, failure=FailureType.CONFIG)
        return obj

    def _use_bulk(self, size: int) -> bool:
        mode = self.config.bulk
        return mode == "always" or (mode == "auto" and size >= self.config.bulk_threshold)

    async def _fields(self, obj: str) -> dict[str, dict[str, Any]]:
        if obj in self._described:
            return self._described[obj]
        result = await self.session.call("GET", f"/sobjects/{quote(obj, safe='')}/describe")
        if result.status == 404:
            raise DestinationError(
                f"salesforce has no object `{obj}` (or the user of `auth` cannot see it): "
                "check `object` (an API name such as Contact or Invoice__c)",
                failure=FailureType.CONFIG,
                status=404,
            )
        if result.status != 200 or not isinstance(result.json, dict):
            raise result.failed(f"salesforce could not describe {obj}: {result.error}")
        fields = {f["name"]: f for f in result.json.get("fields", [])}
        self._described[obj] = fields
        return fields

    def _check_external_id(self, obj: str, ext: str, fields: dict[str, dict[str, Any]]) -> None:
        spec = fields.get(ext)
        if spec is None:
            raise DestinationError(
                f"salesforce {obj} has no field `{ext}`: check `external_id_field`",
                failure=FailureType.CONFIG,
            )
        if not spec.get("externalId"):
            raise DestinationError(
                f"salesforce {obj} field `{ext}` is not an External ID field: mark it as "
                "External ID in Setup or choose another `external_id_field`",
                failure=FailureType.CONFIG,
            )

    async def _lookup(self, identity: Identity, keys: Sequence[str]) -> dict[str, str]:
        """External id -> record Id for the keys that exist, by SOQL in URL-sized chunks."""
        found: dict[str, str] = {}
        ext, obj = identity.field, identity.object
        chunk: list[str] = []
        size = 0
        pending = list(dict.fromkeys(keys))
        for n, key in enumerate(pending):
            literal = "'" + key.replace("\\", "\\\\").replace("'", "\\'") + "'"
            chunk.append(literal)
            size += len(quote(literal, safe="")) + 3
            if len(chunk) < COLLECTION_SIZE and size < QUERY_CHARS and n < len(pending) - 1:
                continue
            soql = f"SELECT Id, {ext} FROM {obj} WHERE {ext} IN ({', '.join(chunk)})"
            path = f"/query?q={quote(soql, safe='')}"
            while path:
                result = await self.session.call("GET", path)
                if result.status != 200 or not isinstance(result.json, dict):
                    raise result.failed(
                        f"salesforce lookup of {obj} by {ext} failed: {result.error}"
                    )
                for rec in result.json.get("records", []):
                    found[str(rec.get(ext))] = str(rec["Id"])
                path = result.json.get("nextRecordsUrl") or ""
            chunk, size = [], 0
        return found

    async def _rest_upsert(
        self, identity: Identity, rows: Mapping[int, dict[str, Any]], key: str
    ) -> dict[int, RecordResult]:
        """sObject Collections upsert keyed on ``key`` (the external id field, or ``Id``)."""
        attributes = {"type": identity.object}
        url = f"/composite/sobjects/{identity.object}/{key}"
        out: dict[int, RecordResult] = {}

        async def send(part: Sequence[int]) -> HttpResult | Refused:
            body = {
                "allOrNone": False,
                "records": [{"attributes": attributes, **rows[i]} for i in part],
            }
            result = await self.session.call("PATCH", url, json=body)
            if result.status == 200 and isinstance(result.json, list):
                return result
            self._raise_config(identity, result)
            return Refused(result.error or f"{result.status} {result.reason}", result.call_id)

        indexes = list(rows)
        for start in range(0, len(indexes), COLLECTION_SIZE):
            part = indexes[start : start + COLLECTION_SIZE]
            for segment in await split_batch(part, send):
                outcome = segment.outcome
                if isinstance(outcome, Refused):
                    for i in segment.items:
                        out[i] = RecordResult.rejected(i, outcome.error, outcome.call_id)
                    continue
                for i, item in zip(segment.items, outcome.json, strict=False):
                    rid = item.get("id")
                    out[i] = (
                        RecordResult.ok(i, outcome.call_id, None if rid is None else str(rid))
                        if item.get("success")
                        else RecordResult.rejected(i, item_error(item), outcome.call_id)
                    )
        return out

    async def _rest_delete(
        self, identity: Identity, ids: Mapping[int, str]
    ) -> dict[int, RecordResult]:
        out: dict[int, RecordResult] = {}
        indexes = list(ids)
        for start in range(0, len(indexes), COLLECTION_SIZE):
            part = indexes[start : start + COLLECTION_SIZE]
            query = urlencode({"ids": ",".join(ids[i] for i in part), "allOrNone": "false"})
            result = await self.session.call("DELETE", f"/composite/sobjects?{query}")
            if result.status != 200 or not isinstance(result.json, list):
                self._raise_config(identity, result)
                error = result.error or f"{result.status} {result.reason}"
                out.update({i: RecordResult.rejected(i, error, result.call_id) for i in part})
                continue
            for i, item in zip(part, result.json, strict=False):
                gone = item.get("success") or any(
                    e.get("statusCode") == "ENTITY_IS_DELETED" for e in item.get("errors", [])
                )
                out[i] = (
                    RecordResult.ok(i, result.call_id)
                    if gone
                    else RecordResult.rejected(i, item_error(item), result.call_id)
                )
        return out

    def _raise_config(self, identity: Identity, result: HttpResult) -> None:
        codes = {c for c, _ in sf_errors(result.json)}
        if result.status in (400, 404) and codes & CONFIG_CODES:
            raise DestinationError(
                f"salesforce refused the {identity.object} call ({result.error}): check "
                "`object`, `external_id_field` and the sync's mappings",
                failure=FailureType.CONFIG,
                status=result.status,
            )

    async def _bulk(
        self, rows: Rows, operation: str, idx: Sequence[int], ids: Mapping[int, str] | None = None
    ) -> dict[int, RecordResult]:
        """One Bulk API 2.0 load of the records at ``idx``: an ``upsert`` keyed on the
        external id field, or an ``update`` or ``delete`` keyed on their ``ids``."""
        identity = rows.identity
        fields = [] if operation == "delete" else list(rows.batch.fields)
        cells = []
        for i in idx:
            record = rows.records[i]
            row = [cell(record.get(c), skip_null=c not in record) for c in fields]
            cells.append(row if ids is None else [ids[i], *row])
        if ids is None:
            job = BulkJob(identity.object, operation, fields, cells, identity.field, identity.field)
        else:
            job = BulkJob(identity.object, operation, ["Id", *fields], cells, "Id")
        found: dict[int, str] = {}
        outcome = await run_bulk(
            self.session,
            job,
            poll_interval=self.config.poll_interval_seconds,
            timeout=self.config.bulk_timeout_seconds,
            record_ids=found,
        )
        out: dict[int, RecordResult] = {}
        for row_at, i in enumerate(idx):
            error = outcome.get(row_at)
            out[i] = (
                RecordResult.ok(i, record_id=found.get(row_at))
                if error is None
                else RecordResult.rejected(i, self.redactor.text(error) or error)
            )
        return out


__all__ = [
    "CAPABILITIES",
    "ClientCredentials",
    "RefreshTokenAuth",
    "SalesforceConfig",
    "SalesforceDestination",
    "item_error",
    "sf_errors",
]
