"""Zendesk Support destination: users, organizations and tickets through bulk jobs.

Every write is a Zendesk bulk job (at most 100 items): the call answers with a queued
``job_status`` that is polled until it completes; its ``results`` come back in request
order and are mapped to record indexes. Users upsert with ``create_or_update_many``;
other operations look the records up first (``show_many`` by external id, search by email)
and then create, update or destroy only the ones that need it
(:mod:`backhaul.destinations.keyed`). Tickets can only be created.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import quote

from pydantic import Field
from pydantic import model_validator

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import FieldInfo
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.destinations.http import HttpDestinationConfig
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import RateLimit
from backhaul.destinations.http.connector import poll_job
from backhaul.destinations.keyed import Answers
from backhaul.destinations.keyed import Found
from backhaul.destinations.keyed import Gone
from backhaul.destinations.keyed import Identity
from backhaul.destinations.keyed import KeyedDestination
from backhaul.destinations.keyed import Rows
from backhaul.destinations.keyed import Upsert
from backhaul.destinations.keyed import keyed_capabilities
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

MAX_BATCH = 100
ObjectName = Literal["users", "organizations", "tickets"]
IDENTITIES: dict[str, tuple[str, ...]] = {
    "users": ("external_id", "email"),
    "organizations": ("external_id",),
    "tickets": ("external_id",),
}
FINISHED = ("completed", "failed", "killed")
TICKETS_INSERT_ONLY = "zendesk tickets can only be created: set `mode: insert` in the sync"
# The built-in fields a sync writes, per object: (name, kind, label, required, unique).
BUILT_IN: dict[str, tuple[tuple[str, str, str, bool, bool], ...]] = {
    "users": (
        ("name", "text", "Name", True, False),
        ("email", "text", "Email", False, True),
        ("external_id", "text", "External ID", False, True),
        ("phone", "text", "Phone", False, False),
        ("alias", "text", "Alias", False, False),
        ("details", "text", "Details", False, False),
        ("notes", "text", "Notes", False, False),
        ("organization_id", "number", "Organization ID", False, False),
        ("role", "text", "Role", False, False),
        ("locale", "text", "Locale", False, False),
        ("time_zone", "text", "Time zone", False, False),
        ("tags", "text", "Tags", False, False),
        ("verified", "bool", "Verified", False, False),
        ("suspended", "bool", "Suspended", False, False),
    ),
    "organizations": (
        ("name", "text", "Name", True, True),
        ("external_id", "text", "External ID", False, True),
        ("domain_names", "text", "Domains", False, False),
        ("details", "text", "Details", False, False),
        ("notes", "text", "Notes", False, False),
        ("group_id", "number", "Group ID", False, False),
        ("shared_tickets", "bool", "Shared tickets", False, False),
        ("shared_comments", "bool", "Shared comments", False, False),
        ("tags", "text", "Tags", False, False),
    ),
    "tickets": (
        ("comment.body", "text", "First comment", True, False),
        ("subject", "text", "Subject", False, False),
        ("external_id", "text", "External ID", False, True),
        ("requester_id", "number", "Requester ID", False, False),
        ("assignee_id", "number", "Assignee ID", False, False),
        ("group_id", "number", "Group ID", False, False),
        ("organization_id", "number", "Organization ID", False, False),
        ("priority", "text", "Priority", False, False),
        ("status", "text", "Status", False, False),
        ("type", "text", "Type", False, False),
        ("due_at", "datetime", "Due", False, False),
        ("tags", "text", "Tags", False, False),
    ),
}
# Custom fields of users and organizations: where a record holds them, and their kinds.
CUSTOM = {"users": "user_fields", "organizations": "organization_fields"}
CUSTOM_KINDS = {"integer": "number", "decimal": "number", "checkbox": "bool", "date": "date"}


class ZendeskConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: zendesk``."""

    type: Literal["zendesk"]
    subdomain: str | None = Field(None, description="Your account: {subdomain}.zendesk.com.")
    base_url: str | None = Field(
        None, description="API root (default https://{subdomain}.zendesk.com)."
    )
    email: str | None = Field(None, description="Agent email for API-token auth.")
    api_token: str | None = Field(None, description="API token (use ${env:NAME}).")
    oauth_token: str | None = Field(None, description="OAuth access token instead of a token.")
    object: ObjectName = Field("users", description="Default object when a sync names none.")
    poll_interval_seconds: float = Field(1.0, gt=0, description="Wait between job polls.")
    poll_timeout_seconds: float = Field(600.0, gt=0, description="Give up on a job after this.")
    rate_limit: RateLimit | None = Field(
        RateLimit(requests=200, per_seconds=60),
        description="Requests per window (Zendesk plans allow 200 to 2,500 a minute).",
    )

    @model_validator(mode="after")
    def _complete(self) -> ZendeskConfig:
        if not self.subdomain and not self.base_url:
            raise ValueError("give `subdomain` (or `base_url`)")
        if not self.oauth_token and not (self.email and self.api_token):
            raise ValueError("give `email` and `api_token`, or `oauth_token`")
        return self

    @property
    def root(self) -> str:
        return (self.base_url or f"https://{self.subdomain}.zendesk.com").rstrip("/")


# Job results carry each record's Zendesk id; a user or organization whose identity value
# changed is updated by that id (update_many), so it is kept, not replaced.
CAPABILITIES = keyed_capabilities(
    max_batch_size=MAX_BATCH,
    default_batch_size=MAX_BATCH,
)


class ZendeskDestination(KeyedDestination):
    """Writes users, organizations or tickets to Zendesk; see :class:`ZendeskConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = ZendeskConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    vendor = "zendesk"
    identities = IDENTITIES
    nested = True
    ignore_case = True
    config: ZendeskConfig

    @classmethod
    def check_sync(cls, config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
        """The object and its identity field; tickets only in insert mode."""
        problems = super().check_sync(config, shape)
        name = shape.object or getattr(config, "object", None)
        if not problems and name == "tickets" and shape.operations - {Operation.INSERT}:
            problems.append(SyncProblem("mode", TICKETS_INSERT_ONLY))
        return problems

    def __init__(self, config: ZendeskConfig, context: DestinationContext) -> None:
        secrets: list[str | None]
        if config.oauth_token:
            auth, secrets = f"Bearer {config.oauth_token}", [config.oauth_token]
        else:
            raw = f"{config.email}/token:{config.api_token}".encode()
            auth = "Basic " + base64.b64encode(raw).decode("ascii")
            secrets = [config.api_token, auth.partition(" ")[2]]
        what = "oauth_token" if config.oauth_token else "email and api_token"
        fix = f"check `{what}` in the destination file (the token must belong to an agent or admin)"
        super().__init__(
            config,
            context,
            *secrets,
            headers={"Authorization": auth, "Accept": "application/json"},
            hints={401: fix, 403: fix},
        )

    def _url(self, path: str) -> str:
        return f"{self.config.root}/api/v2/{path}"

    async def probe(self) -> None:
        """Read the authenticated user: bad credentials are a CONFIG error."""
        await self.client.request("GET", self._url("users/me.json"))

    async def fields(self, object: str | None) -> list[FieldInfo]:
        """The built-in fields a sync can write to the object, then its active custom
        fields (``user_fields.KEY``, ``organization_fields.KEY``) as the account lists them.
        Tickets list their built-in fields only (custom ticket fields are set by id)."""
        name = object or self.config.object
        if name not in BUILT_IN:
            raise DestinationError(
                f"zendesk has no object `{name}` to list: use users, organizations or tickets",
                failure=FailureType.CONFIG,
            )
        found = [
            FieldInfo(field, kind, label=label, required=required, unique=unique)
            for field, kind, label, required, unique in BUILT_IN[name]
        ]
        kind = CUSTOM.get(name)
        if kind is None:
            return found
        url: str | None = self._url(f"{kind}.json?per_page=100")
        while url:
            result = await self.client.request("GET", url)
            if not result.ok or not isinstance(result.json, dict):
                raise result.failed(
                    f"zendesk could not list its {kind} ({result.error}): check the "
                    "destination's credentials"
                )
            for spec in result.json.get(kind) or []:
                if not isinstance(spec, dict) or not spec.get("key") or not spec.get("active"):
                    continue  # an inactive field is not available for use
                found.append(
                    FieldInfo(
                        f"{kind}.{spec['key']}",
                        CUSTOM_KINDS.get(str(spec.get("type")), "text"),
                        label=str(spec["title"]) if spec.get("title") else None,
                    )
                )
            nxt = result.json.get("next_page")
            url = str(nxt) if nxt else None
        return found

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Send one batch (at most 100 records) as Zendesk jobs and map their results."""
        object = self.identity.object if self.identity else batch.object or self.config.object
        if object == "tickets" and batch.operation is not Operation.INSERT:
            raise DestinationError(TICKETS_INSERT_ONLY, failure=FailureType.CONFIG)
        return await super().write(batch)

    def native_upsert(self, identity: Identity) -> Upsert | None:
        return self._upsert_users if identity.object == "users" else None

    # -- the calls of a keyed write (backhaul.destinations.keyed) ---------------------------

    async def find(self, rows: Rows, idx: Sequence[int]) -> Found:
        """Zendesk ids of the records that exist: ``show_many`` by external id, else a
        search (users by email) or a list (tickets by external id) per record."""
        object, match = rows.identity.object, rows.identity.field
        values = [rows.keys[i] for i in idx]
        if match == "external_id" and object != "tickets":
            joined = ",".join(quote(v, safe="@") for v in values)
            result = await self.client.request(
                "GET", self._url(f"{object}/show_many.json?external_ids={joined}")
            )
            found = {
                str(r["external_id"]).lower(): str(r["id"])
                for r in self._rows(object, result)
                if r.get("external_id")
            }
        else:

            async def one(value: str) -> str | None:
                if object == "users":
                    path = "users/search.json?query=" + quote(f'email:"{value}"', safe="")
                else:
                    path = "tickets.json?external_id=" + quote(value, safe="")
                result = await self.client.request("GET", self._url(path))
                hits = self._rows(object, result)
                hit = next(
                    (r for r in hits if str(r.get(match, "")).lower() == value.lower()), None
                )
                return None if hit is None else str(hit["id"])

            found = {v.lower(): id_ for v, id_ in (await self.each(values, one)).items() if id_}
        return {i: found[rows.keys[i].lower()] for i in idx if rows.keys[i].lower() in found}

    @staticmethod
    def _rows(object: str, result: HttpResult) -> list[dict[str, Any]]:
        """The records of a lookup's answer; a refused lookup is a CONFIG error."""
        if result.error is not None:
            raise DestinationError(
                f"zendesk refused to look up records ({result.error}): check the sync's match "
                "field",
                failure=FailureType.CONFIG,
            )
        found = (result.json or {}).get(object) or []
        return [r for r in found if isinstance(r, dict)]

    async def create(self, rows: Rows, idx: Sequence[int]) -> Answers:
        items = [rows.records[i] for i in idx]
        return await self._job(rows, "POST", "create_many.json", items, idx)

    async def update(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        """``update_many`` by Zendesk id; an id Zendesk no longer has is :class:`Gone`."""
        items = [{**rows.records[i], "id": _zendesk_id(rid)} for i, rid in ids.items()]
        done = await self._job(rows, "PUT", "update_many.json", items, list(ids))
        return {
            i: Gone(r.error or "", r.call_id) if "RecordNotFound" in (r.error or "") else r
            for i, r in done.items()
        }

    async def delete(self, rows: Rows, ids: Mapping[int, str]) -> Answers:
        path = "destroy_many.json?ids=" + ",".join(ids.values())
        return await self._job(rows, "DELETE", path, None, list(ids))

    async def _upsert_users(self, rows: Rows, idx: Sequence[int]) -> Answers:
        items = [rows.records[i] for i in idx]
        return await self._job(rows, "POST", "create_or_update_many.json", items, idx)

    # -- jobs ----------------------------------------------------------------------------

    async def _job(
        self,
        rows: Rows,
        method: str,
        action: str,
        items: list[dict[str, Any]] | None,
        indexes: Sequence[int],
    ) -> dict[int, RecordResult]:
        """Run one bulk job (``action`` on the object) for the records at ``indexes``;
        results by batch index."""
        object = rows.identity.object
        body = None if items is None else {object: items}
        submitted = await self.client.request(method, self._url(f"{object}/{action}"), json=body)
        call = submitted.call_id
        if not submitted.ok:
            error = submitted.error or f"{submitted.status} {submitted.reason}"
            return {i: RecordResult.rejected(i, error, call) for i in indexes}
        job = (submitted.json or {}).get("job_status") or {}
        if not job.get("id"):
            raise DestinationError(
                "zendesk answered a bulk call without a job_status: check `base_url`",
                failure=FailureType.CONFIG,
            )
        status = await self._wait(str(job["id"]), job)
        if status.get("status") != "completed":
            message = status.get("message") or f"job {status.get('status')}"
            return {i: RecordResult.rejected(i, f"zendesk job {message}", call) for i in indexes}
        out: dict[int, RecordResult] = {}
        for position, entry in enumerate(status.get("results") or []):
            if not isinstance(entry, dict):
                continue
            at = entry.get("index", position)
            if not isinstance(at, int) or not 0 <= at < len(indexes):
                continue
            i = indexes[at]
            if entry.get("status") == "Failed" or (entry.get("error") and not entry.get("success")):
                text = ": ".join(str(p) for p in (entry.get("error"), entry.get("details")) if p)
                out[i] = RecordResult.rejected(i, self.redactor.text(text) or "failed", call)
            else:
                rid = entry.get("id")
                out[i] = RecordResult.ok(i, call, None if rid is None else str(rid))
        return out

    async def _wait(self, job_id: str, job: dict[str, Any]) -> dict[str, Any]:
        """Poll a job until it finishes; its last status."""
        return await poll_job(
            "zendesk",
            f"job {job_id}",
            job,
            FINISHED,
            lambda: self.client.request("GET", self._url(f"job_statuses/{job_id}.json")),
            lambda result: (result.json or {}).get("job_status") or {},
            self.config,
        )


def _zendesk_id(value: str | None) -> int | str:
    """A stored record id as Zendesk sends it: a number."""
    text = str(value)
    return int(text) if text.isdigit() else text
