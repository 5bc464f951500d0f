"""Intercom destination: contacts and companies, one API call per record.

Intercom has no batch or upsert endpoint for contacts, so each record is looked up with
``POST /contacts/search`` and then created (``POST /contacts``) or updated
(``PUT /contacts/{id}``). A 409 ``conflict`` on create means another writer (or search lag)
got there first: the contact is searched again and updated. Companies are created or
updated by ``company_id`` with ``POST /companies``. Records of a batch go out concurrently,
bounded by ``concurrency``, while one shared rate limiter keeps the app under its limit.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
import pyarrow as pa
from pydantic import Field

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
from backhaul.destinations.http import HttpResult, RateLimit, RetryPolicy
from backhaul.destinations.http.connector import (
    client_for,
    identity_field,
    identity_problems,
    redactor_for,
    run_bounded,
)
from backhaul.errors import DestinationError, FailureType

IDENTITIES: dict[str, tuple[str, ...]] = {
    "contacts": ("external_id", "email"),
    "companies": ("company_id",),
}
EXISTING_ID = re.compile(r"id=([0-9A-Za-z]+)")
LONGEST_PAUSE = 60.0


class IntercomConfig(DestinationConfig):
    """``destinations/NAME.yml`` with ``type: intercom``."""

    type: Literal["intercom"]
    token: str = Field(description="Access token of the Intercom app (use ${env:NAME}).")
    base_url: str = Field(
        "https://api.intercom.io",
        description="API host (EU: https://api.eu.intercom.io, AU: https://api.au.intercom.io).",
    )
    api_version: str = Field("2.11", description="Sent as the Intercom-Version header.")
    object: Literal["contacts", "companies"] = Field(
        "contacts", description="Default object when a sync names none."
    )
    delete_action: Literal["delete", "archive"] = Field(
        "delete", description="What removing a contact does: delete it, or archive it."
    )
    concurrency: int = Field(4, ge=1, le=32, description="Records in flight at once.")
    rate_limit: RateLimit | None = Field(
        RateLimit(requests=1666, per_seconds=10),
        description="Calls per window (Intercom's default is 10,000 a minute, per 10 s).",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_seconds: float = Field(30.0, gt=0)


CAPABILITIES = Capabilities(
    json_records=True,
    # Contacts: every create or update answers with the contact's id, and a contact whose
    # match value changed is updated by that id. Companies return no id (their company_id
    # cannot change), so a changed company_id replaces the company in mirror mode.
    record_ids=True,
    update_by_id=True,
    operations=frozenset(Operation),
    max_batch_size=100,
    default_batch_size=50,
    default_concurrency=1,
)


def rate_pause(response: httpx.Response) -> float | None:
    """Seconds to pause every task: until ``X-RateLimit-Reset`` once the window is spent."""
    remaining = response.headers.get("x-ratelimit-remaining")
    reset = response.headers.get("x-ratelimit-reset")
    if reset is None or (remaining != "0" and response.status_code != 429):
        return None
    try:
        wait = float(reset) - time.time()
    except ValueError:
        return None
    return min(LONGEST_PAUSE, max(0.0, wait)) or None


class IntercomDestination:
    """Writes contacts or companies to Intercom; see :class:`IntercomConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = IntercomConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES

    @staticmethod
    def check_sync(config: IntercomConfig, shape: SyncShape) -> list[SyncProblem]:
        """The object and its identity field, before anything runs."""
        name = shape.object or config.object
        problems = identity_problems("intercom", IDENTITIES, name, list(shape.match_fields))
        return problems

    def __init__(self, config: IntercomConfig, context: DestinationContext) -> None:
        self.config = config
        self.redactor = redactor_for(context, config.token)
        self.object: str = config.object
        self._gate = asyncio.Semaphore(config.concurrency)
        self.client = client_for(
            "intercom",
            config,
            context,
            self.redactor,
            concurrency=config.concurrency,
            headers={
                "Authorization": f"Bearer {config.token}",
                "Intercom-Version": config.api_version,
                "Accept": "application/json",
            },
            pause_hint=rate_pause,
        )

    def _url(self, path: str) -> str:
        return f"{self.config.base_url.rstrip('/')}/{path}"

    async def check(self) -> None:
        """Check ``base_url``, then read ``/me``: a bad token or API version is a CONFIG
        error."""
        if not self.config.base_url.startswith(("http://", "https://")):
            raise DestinationError(
                "intercom `base_url` must start with http:// or https://: fix it in the "
                "destination file",
                failure=FailureType.CONFIG,
            )
        try:
            result = await self.client.request("GET", self._url("me"))
        except DestinationError as exc:
            if exc.status in (401, 403):
                raise DestinationError(
                    f"intercom refused the token ({exc.status}): check `token` in the "
                    "destination file (an access token of your Intercom app)",
                    failure=FailureType.CONFIG,
                    status=exc.status,
                ) from None
            raise
        finally:
            await self.client.aclose()  # a connection test runs in an event loop of its own
        if not result.ok:
            raise DestinationError(
                f"intercom refused the check ({result.error}): check `api_version` and "
                "`base_url` in the destination file",
                failure=FailureType.CONFIG,
                status=result.status,
            )

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Check the object and the identity field."""
        name = object or self.config.object
        identity_field("intercom", IDENTITIES, name, list(match_fields))
        self.object = name

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Send each record of ``batch`` (concurrently, bounded) and return its outcome."""
        match = batch.match_fields[0] if batch.match_fields else IDENTITIES[self.object][0]
        records = list(batch.records())
        ids = batch.record_ids

        async def one(i: int) -> RecordResult:
            known = ids[i] if ids is not None else None
            return await self._record(batch.operation, match, i, records[i], known)

        return await run_bounded(self._gate, range(len(records)), one)

    async def close(self) -> None:
        await self.client.aclose()

    # -- one record ----------------------------------------------------------------------

    async def _record(
        self, op: Operation, match: str, i: int, record: dict[str, Any], known: str | None
    ) -> RecordResult:
        value = record.get(match)
        if value in (None, ""):
            return RecordResult.rejected(i, f"no {match} value: intercom needs one")
        if self.object == "companies":
            return await self._company(op, i, str(value), record)
        if known and op in (Operation.UPSERT, Operation.UPDATE):
            # Its match value changed: update the contact it was delivered as, by its id.
            moved = await self.client.request(
                "PUT",
                self._url(f"contacts/{quote(known, safe='')}"),
                json=record,
                expected={200, 404},
            )
            if moved.status != 404:
                return _outcome(i, moved, with_id=True)
            # Deleted in Intercom meanwhile: find or create it by its new value.
        return await self._contact(op, match, i, str(value), record)

    async def _contact(
        self, op: Operation, match: str, i: int, value: str, record: dict[str, Any]
    ) -> RecordResult:
        found = await self._search(match, value)
        if found is None:
            if op is Operation.UPDATE:
                return RecordResult.rejected(
                    i, f"no intercom contact with {match} {value}: update mode creates none"
                )
            if op in (Operation.DELETE, Operation.CLEAR):
                return RecordResult.ok(i)  # nothing there to remove or clear
            created = await self.client.request("POST", self._url("contacts"), json=record)
            if created.ok or created.status != 409:
                return _outcome(i, created, with_id=True)
            if op is Operation.INSERT:
                return RecordResult.ok(i, created.call_id)  # it exists: insert leaves it alone
            # Someone created it meanwhile, or search has not caught up: find it, then update.
            found = await self._search(match, value)
            if found is None:
                hit = EXISTING_ID.search(created.text)
                found = {"id": hit.group(1)} if hit else None
            if found is None:
                return _outcome(i, created)
        contact_id = quote(str(found["id"]), safe="")
        if op is Operation.INSERT:
            return RecordResult.ok(i)
        if op is Operation.DELETE:
            if self.config.delete_action == "archive":
                path, method = f"contacts/{contact_id}/archive", "POST"
            else:
                path, method = f"contacts/{contact_id}", "DELETE"
            gone = await self.client.request(method, self._url(path), expected={200, 404})
            return _outcome(i, gone)
        updated = await self.client.request(
            "PUT", self._url(f"contacts/{contact_id}"), json=record, expected={200, 404}
        )
        if updated.status == 404:
            return RecordResult.rejected(
                i, "the intercom contact disappeared while it was updated", updated.call_id
            )
        return _outcome(i, updated, with_id=op is not Operation.CLEAR)

    async def _search(self, match: str, value: str) -> dict[str, Any] | None:
        body = {
            "query": {
                "operator": "AND",
                "value": [{"field": match, "operator": "=", "value": value}],
            },
            "pagination": {"per_page": 2},
        }
        result = await self.client.request("POST", self._url("contacts/search"), json=body)
        if not result.ok:
            raise DestinationError(
                f"intercom refused a contact search ({result.error}): check the sync's match field",
                failure=FailureType.CONFIG,
            )
        rows = (result.json or {}).get("data") or []
        for row in rows:
            if isinstance(row, dict) and str(row.get(match) or "").lower() == value.lower():
                return row
        return None

    async def _company(
        self, op: Operation, i: int, value: str, record: dict[str, Any]
    ) -> RecordResult:
        if op is not Operation.UPSERT:
            looked = await self.client.request(
                "GET",
                self._url("companies?company_id=" + quote(value, safe="")),
                expected={200, 404},
            )
            exists = looked.status == 200
            if op is Operation.UPDATE and not exists:
                return RecordResult.rejected(
                    i, f"no intercom company with company_id {value}: update mode creates none"
                )
            if (op is Operation.INSERT and exists) or (
                op in (Operation.DELETE, Operation.CLEAR) and not exists
            ):
                return RecordResult.ok(i, looked.call_id)
            if op is Operation.DELETE:
                company_id = quote(str((looked.json or {}).get("id")), safe="")
                gone = await self.client.request(
                    "DELETE", self._url(f"companies/{company_id}"), expected={200, 404}
                )
                return _outcome(i, gone)
        return _outcome(i, await self.client.request("POST", self._url("companies"), json=record))


def _outcome(i: int, result: HttpResult, *, with_id: bool = False) -> RecordResult:
    """The record's result; ``with_id``: carry the id Intercom answered with."""
    if result.ok:
        body = result.json if isinstance(result.json, dict) else {}
        rid = body.get("id") if with_id else None
        return RecordResult.ok(i, result.call_id, None if rid is None else str(rid))
    return RecordResult.rejected(
        i, result.error or f"{result.status} {result.reason}", result.call_id
    )
