"""Intercom destination: contacts and companies, one API call per record.

Intercom has no batch or upsert endpoint for contacts, so each record is looked up with
``POST /contacts/search`` and then created (``POST /contacts``) or updated
(``PUT /contacts/{id}``), as :mod:`backhaul.destinations.keyed` decides. A 409 ``conflict``
on create means another writer (or search lag) got there first: the contact the refusal
names is updated. Companies are created or updated by ``company_id`` with
``POST /companies``. Records of a batch go out concurrently, bounded by ``concurrency``,
while one shared rate limiter keeps the app under its limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from collections.abc import Sequence
from typing import ClassVar
from typing import Literal
from urllib.parse import quote

import httpx
from pydantic import Field

from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import FieldInfo
from backhaul.destinations.base import RecordResult
from backhaul.destinations.http import HttpDestinationConfig
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import RateLimit
from backhaul.destinations.keyed import Answer
from backhaul.destinations.keyed import Answers
from backhaul.destinations.keyed import Exists
from backhaul.destinations.keyed import Found
from backhaul.destinations.keyed import Gone
from backhaul.destinations.keyed import Identity
from backhaul.destinations.keyed import KeyedDestination
from backhaul.destinations.keyed import Rows
from backhaul.destinations.keyed import Upsert
from backhaul.destinations.keyed import keyed_capabilities
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

IDENTITIES: dict[str, tuple[str, ...]] = {
    "contacts": ("external_id", "email"),
    "companies": ("company_id",),
}
EXISTING_ID = re.compile(r"id=([0-9A-Za-z]+)")
LONGEST_PAUSE = 60.0
MODELS = {"contacts": "contact", "companies": "company"}
# Intercom's data types as kinds of value; its dates are timestamps.
DATA_KINDS = {"integer": "number", "float": "number", "boolean": "bool", "date": "datetime"}
TOKEN_FIX = "check `token` in the destination file (an access token of your Intercom app)"
HINTS = {
    400: "check `api_version` and `base_url` in the destination file",
    401: TOKEN_FIX,
    403: TOKEN_FIX,
}


class IntercomConfig(HttpDestinationConfig):
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
    rate_limit: RateLimit | None = Field(
        RateLimit(requests=1666, per_seconds=10),
        description="Calls per window (Intercom's default is 10,000 a minute, per 10 s).",
    )


# Contacts: every create or update answers with the contact's id, and a contact whose match
# value changed is updated by that id. Companies return no id (their company_id cannot
# change), so a changed company_id replaces the company in mirror mode.
CAPABILITIES = keyed_capabilities(
    max_batch_size=100,
    default_batch_size=50,
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


class IntercomDestination(KeyedDestination):
    """Writes contacts or companies to Intercom; see :class:`IntercomConfig`.

    Contacts are searched, then created or updated by id; companies are created or updated
    by ``company_id`` in one call, which is their native upsert.
    """

    config_model: ClassVar[type[DestinationConfig]] = IntercomConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    vendor = "intercom"
    identities = IDENTITIES
    nested = True
    ignore_case = True
    config: IntercomConfig

    def __init__(self, config: IntercomConfig, context: DestinationContext) -> None:
        super().__init__(
            config,
            context,
            config.token,
            headers={
                "Authorization": f"Bearer {config.token}",
                "Intercom-Version": config.api_version,
                "Accept": "application/json",
            },
            hints=HINTS,
            pause_hint=rate_pause,
        )

    def _url(self, path: str) -> str:
        return f"{self.config.base_url.rstrip('/')}/{path}"

    async def fields(self, object: str | None) -> list[FieldInfo]:
        """The object's data attributes, standard and custom (``custom_attributes.NAME``),
        from ``GET /data_attributes``: kind of value, label, read-only when the API cannot
        write it; the match fields are unique, and a company needs its ``company_id``."""
        name = object or self.config.object
        model = MODELS.get(name)
        if model is None:
            raise DestinationError(
                f"intercom has no object `{name}` to list: use contacts or companies",
                failure=FailureType.CONFIG,
            )
        result = await self.client.request("GET", self._url(f"data_attributes?model={model}"))
        if not result.ok or not isinstance(result.json, dict):
            raise result.failed(
                f"intercom could not list the {model} data attributes ({result.error}): "
                "check `token` and the app's permissions"
            )
        found = []
        for spec in result.json.get("data") or []:
            if not isinstance(spec, dict) or spec.get("archived"):
                continue
            full = str(spec.get("full_name") or spec.get("name") or "")
            if not full:
                continue
            found.append(
                FieldInfo(
                    full,
                    DATA_KINDS.get(str(spec.get("data_type")), "text"),
                    label=str(spec["label"]) if spec.get("label") else None,
                    required=full == "company_id",
                    unique=full in IDENTITIES[name],
                    read_only=not spec.get("api_writable"),
                )
            )
        return found

    async def probe(self) -> HttpResult:
        """Read ``/me``: a bad token or API version is a CONFIG error."""
        return await self.client.request("GET", self._url("me"))

    def native_upsert(self, identity: Identity) -> Upsert | None:
        return self._save_companies if identity.object == "companies" else None

    # -- the calls of a keyed write (backhaul.destinations.keyed), one call per record ----

    async def find(self, rows: Rows, idx: Sequence[int]) -> Found:
        async def one(i: int) -> str | None:
            if rows.identity.object == "companies":
                return await self._company_id(rows.keys[i])
            return await self._search(rows.identity.field, rows.keys[i])

        return {i: rid for i, rid in (await self.each(idx, one)).items() if rid is not None}

    async def create(self, rows: Rows, idx: Sequence[int]) -> Answers:
        if rows.identity.object == "companies":
            return await self._save_companies(rows, idx)

        async def one(i: int) -> Answer:
            created = await self.client.request("POST", self._url("contacts"), json=rows.records[i])
            if created.status != 409:
                return _outcome(i, created, with_id=True)
            # Someone created it meanwhile, or search has not caught up: it exists.
            hit = EXISTING_ID.search(created.text)
            error = created.error or "409 Conflict"
            return Exists(error, created.call_id, hit.group(1) if hit else None)

        return await self.each(idx, one)

    async def update(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        """``PUT /contacts/{id}`` (a 404 is :class:`Gone`); companies by ``company_id``."""
        if rows.identity.object == "companies":
            return await self._save_companies(rows, list(ids))

        async def one(i: int) -> Answer:
            url = self._url(f"contacts/{quote(ids[i], safe='')}")
            updated = await self.client.request(
                "PUT", url, json=rows.records[i], expected={200, 404}
            )
            if updated.status == 404:
                return Gone(f"{updated.status} {updated.reason}", updated.call_id)
            return _outcome(i, updated, with_id=True)

        return await self.each(ids, one)

    async def delete(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        """Delete (or archive, per ``delete_action``) by id; one already gone counts."""

        async def one(i: int) -> Answer:
            at = quote(ids[i], safe="")
            method, path = "DELETE", f"{rows.identity.object}/{at}"
            if rows.identity.object == "contacts" and self.config.delete_action == "archive":
                method, path = "POST", f"contacts/{at}/archive"
            gone = await self.client.request(method, self._url(path), expected={200, 404})
            return _outcome(i, gone)

        return await self.each(ids, one)

    async def _save_companies(self, rows: Rows, idx: Sequence[int]) -> Answers:
        """``POST /companies``: creates the company or updates the one with its company_id."""

        async def one(i: int) -> Answer:
            saved = await self.client.request("POST", self._url("companies"), json=rows.records[i])
            return _outcome(i, saved)

        return await self.each(idx, one)

    async def _search(self, match: str, value: str) -> str | None:
        """The id of the contact whose ``match`` field is ``value`` (any case), if any."""
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
        for row in (result.json or {}).get("data") or []:
            if isinstance(row, dict) and str(row.get(match) or "").lower() == value.lower():
                return str(row["id"])
        return None

    async def _company_id(self, company_id: str) -> str | None:
        """Intercom's id of the company with this ``company_id``, if there is one."""
        looked = await self.client.request(
            "GET",
            self._url("companies?company_id=" + quote(company_id, safe="")),
            expected={200, 404},
        )
        body = looked.json if looked.status == 200 and isinstance(looked.json, dict) else {}
        return None if body.get("id") is None else str(body["id"])


def _outcome(i: int, result: HttpResult, *, with_id: bool = False) -> RecordResult:
    """The record's result; ``with_id``: carry the id Intercom answered with (contacts only:
    a company's company_id cannot change, so companies are never addressed by id)."""
    if result.ok:
        body = result.json if isinstance(result.json, dict) else {}
        rid = body.get("id") if with_id else None
        return RecordResult.ok(i, result.call_id, None if rid is None else str(rid))
    return RecordResult.rejected(
        i, result.error or f"{result.status} {result.reason}", result.call_id
    )
