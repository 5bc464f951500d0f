"""Zendesk Support destination: users, organizations and tickets through bulk jobs.

Every write is a Zendesk bulk job (at most 100 items): the call answers with a queued
``job_status`` that is polled until it completes; its ``results`` come back in request
order and are mapped to record indexes. Users upsert with ``create_or_update_many``;
other operations look the records up first (``show_many`` by external id, search by email)
and then create, update or destroy only the ones that need it. Tickets can only be created.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import pyarrow as pa
from pydantic import Field, model_validator

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
from backhaul.destinations.http import RateLimit, RetryPolicy
from backhaul.destinations.http.connector import (
    client_for,
    identity_field,
    identity_problems,
    redactor_for,
    run_bounded,
)
from backhaul.errors import DestinationError, FailureType

MAX_BATCH = 100
ObjectName = Literal["users", "organizations", "tickets"]
IDENTITIES: dict[str, tuple[str, ...]] = {
    "users": ("external_id", "email"),
    "organizations": ("external_id",),
    "tickets": ("external_id",),
}
FINISHED = ("completed", "failed", "killed")


class ZendeskConfig(DestinationConfig):
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
    concurrency: int = Field(4, ge=1, le=32, description="Calls in flight at once.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_seconds: float = Field(30.0, gt=0)

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


CAPABILITIES = Capabilities(
    json_records=True,
    # Job results carry each record's Zendesk id; a user or organization whose identity
    # value changed is updated by that id (update_many), so it is kept, not replaced.
    record_ids=True,
    update_by_id=True,
    operations=frozenset(Operation),
    max_batch_size=MAX_BATCH,
    default_batch_size=MAX_BATCH,
    default_concurrency=4,
)


class ZendeskDestination:
    """Writes users, organizations or tickets to Zendesk; see :class:`ZendeskConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = ZendeskConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES

    @staticmethod
    def check_sync(config: ZendeskConfig, shape: SyncShape) -> list[SyncProblem]:
        """The object and its identity field, before anything runs."""
        name = shape.object or config.object
        problems = identity_problems("zendesk", IDENTITIES, name, list(shape.match_fields))
        if not problems and name == "tickets" and shape.operations - {Operation.INSERT}:
            message = "zendesk tickets can only be created: set `mode: insert` in the sync"
            problems.append(SyncProblem("mode", message))
        return problems

    def __init__(self, config: ZendeskConfig, context: DestinationContext) -> None:
        self.config = config
        if config.oauth_token:
            auth = f"Bearer {config.oauth_token}"
            self.redactor = redactor_for(context, config.oauth_token)
        else:
            raw = f"{config.email}/token:{config.api_token}".encode()
            auth = "Basic " + base64.b64encode(raw).decode("ascii")
            self.redactor = redactor_for(context, config.api_token, auth.partition(" ")[2])
        self.object: str = config.object
        self._gate = asyncio.Semaphore(config.concurrency)
        self.client = client_for(
            "zendesk",
            config,
            context,
            self.redactor,
            concurrency=config.concurrency,
            headers={"Authorization": auth, "Accept": "application/json"},
        )

    def _url(self, path: str) -> str:
        return f"{self.config.root}/api/v2/{path}"

    async def check(self) -> None:
        """Check ``base_url``, then read the authenticated user: bad credentials are a
        CONFIG error."""
        if not self.config.root.startswith(("http://", "https://")):
            raise DestinationError(
                "zendesk `base_url` must start with http:// or https://: fix it in the "
                "destination file",
                failure=FailureType.CONFIG,
            )
        try:
            await self.client.request("GET", self._url("users/me.json"))
        except DestinationError as exc:
            if exc.status in (401, 403):
                what = "oauth_token" if self.config.oauth_token else "email and api_token"
                raise DestinationError(
                    f"zendesk refused the credentials ({exc.status}): check `{what}` in the "
                    "destination file (the token must belong to an agent or admin)",
                    failure=FailureType.CONFIG,
                    status=exc.status,
                ) from None
            raise
        finally:
            await self.client.aclose()  # a connection test runs in an event loop of its own

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Check the object and the identity field."""
        name = object or self.config.object
        identity_field("zendesk", IDENTITIES, name, list(match_fields))
        self.object = name

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Send one batch (at most 100 records) as Zendesk jobs and map their results."""
        object = self.object
        op = batch.operation
        if object == "tickets" and op is not Operation.INSERT:
            raise DestinationError(
                "zendesk tickets can only be created: set `mode: insert` in the sync",
                failure=FailureType.CONFIG,
            )
        match = batch.match_fields[0] if batch.match_fields else IDENTITIES[object][0]
        records = list(batch.records())
        results: dict[int, RecordResult] = {}
        todo: list[int] = []
        for i, record in enumerate(records):
            if record.get(match) in (None, ""):
                results[i] = RecordResult.rejected(i, f"no {match} value: zendesk needs one")
            else:
                todo.append(i)
        known = batch.record_ids
        if known is not None and op in (Operation.UPSERT, Operation.UPDATE):
            # Identity values that changed: update the record they were delivered as, by id.
            by_id = [i for i in todo if known[i]]
            if by_id:
                items = [{**records[i], "id": _zendesk_id(known[i])} for i in by_id]
                moved = await self._job("PUT", f"{object}/update_many.json", object, items, by_id)
                gone = {i for i, r in moved.items() if "RecordNotFound" in (r.error or "")}
                results.update({i: r for i, r in moved.items() if i not in gone})
                todo = [i for i in todo if i not in results]
        if object == "users" and op is Operation.UPSERT:
            items = [records[i] for i in todo]
            results.update(
                await self._job("POST", "users/create_or_update_many.json", object, items, todo)
            )
            return [results[i] for i in range(len(records))]
        found = await self._lookup(object, match, [str(records[i][match]) for i in todo])
        existing = [i for i in todo if str(records[i][match]).lower() in found]
        missing = [i for i in todo if i not in set(existing)]
        ids = {i: found[str(records[i][match]).lower()] for i in existing}
        if op in (Operation.INSERT, Operation.CLEAR, Operation.DELETE):
            for i in existing if op is Operation.INSERT else missing:
                results[i] = RecordResult.ok(i)  # nothing to do: already there / already gone
        if op is Operation.UPDATE:
            for i in missing:
                value = records[i][match]
                results[i] = RecordResult.rejected(
                    i, f"no zendesk {object[:-1]} with {match} {value}: update mode creates none"
                )
        if op in (Operation.UPSERT, Operation.INSERT) and missing:
            items = [records[i] for i in missing]
            results.update(
                await self._job("POST", f"{object}/create_many.json", object, items, missing)
            )
        if op in (Operation.UPSERT, Operation.UPDATE, Operation.CLEAR) and existing:
            items = [{**records[i], "id": ids[i]} for i in existing]
            results.update(
                await self._job("PUT", f"{object}/update_many.json", object, items, existing)
            )
        if op is Operation.DELETE and existing:
            path = f"{object}/destroy_many.json?ids=" + ",".join(str(ids[i]) for i in existing)
            results.update(await self._job("DELETE", path, object, None, existing))
        return [results[i] for i in range(len(records))]

    async def close(self) -> None:
        await self.client.aclose()

    # -- lookups -------------------------------------------------------------------------

    async def _lookup(self, object: str, match: str, values: list[str]) -> dict[str, int]:
        """Zendesk ids of the records that exist, by lower-cased identity value."""
        if not values:
            return {}
        if match == "external_id" and object != "tickets":
            joined = ",".join(quote(v, safe="@") for v in values)
            result = await self.client.request(
                "GET", self._url(f"{object}/show_many.json?external_ids={joined}")
            )
            self._raise_unless_ok(result.error, "look up records")
            rows = (result.json or {}).get(object) or []
            return {
                str(r["external_id"]).lower(): int(r["id"]) for r in rows if r.get("external_id")
            }

        async def one(value: str) -> tuple[str, int | None]:
            if object == "users":
                path = "users/search.json?query=" + quote(f'email:"{value}"', safe="")
            else:
                path = "tickets.json?external_id=" + quote(value, safe="")
            result = await self.client.request("GET", self._url(path))
            self._raise_unless_ok(result.error, "look up records")
            rows = (result.json or {}).get(object) or []
            hit = next((r for r in rows if str(r.get(match, "")).lower() == value.lower()), None)
            return value.lower(), None if hit is None else int(hit["id"])

        pairs = await run_bounded(self._gate, values, one)
        return {value: id_ for value, id_ in pairs if id_ is not None}

    @staticmethod
    def _raise_unless_ok(error: str | None, doing: str) -> None:
        if error is not None:
            raise DestinationError(
                f"zendesk refused to {doing} ({error}): check the sync's match field",
                failure=FailureType.CONFIG,
            )

    # -- jobs ----------------------------------------------------------------------------

    async def _job(
        self,
        method: str,
        path: str,
        object: str,
        items: list[dict[str, Any]] | None,
        indexes: list[int],
    ) -> dict[int, RecordResult]:
        """Run one bulk job for the records at ``indexes``; results by batch index."""
        body = None if items is None else {object: items}
        submitted = await self.client.request(method, self._url(path), json=body)
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
        for i in indexes:
            out.setdefault(i, RecordResult.rejected(i, "zendesk reported no result for it", call))
        return out

    async def _wait(self, job_id: str, job: dict[str, Any]) -> dict[str, Any]:
        """Poll a job until it finishes; its last status."""
        deadline = time.monotonic() + self.config.poll_timeout_seconds
        while job.get("status") not in FINISHED:
            if time.monotonic() > deadline:
                raise DestinationError(
                    f"zendesk job {job_id} did not finish within "
                    f"{self.config.poll_timeout_seconds:g}s: retry later or raise "
                    "`poll_timeout_seconds`",
                    failure=FailureType.TRANSIENT,
                )
            await asyncio.sleep(self.config.poll_interval_seconds)
            result = await self.client.request("GET", self._url(f"job_statuses/{job_id}.json"))
            if not result.ok:
                raise DestinationError(
                    f"zendesk could not report job {job_id} ({result.error}): retry the run",
                    failure=FailureType.TRANSIENT,
                )
            job = (result.json or {}).get("job_status") or {}
        return job


def _zendesk_id(value: str | None) -> int | str:
    """A stored record id as Zendesk sends it: a number."""
    text = str(value)
    return int(text) if text.isdigit() else text
