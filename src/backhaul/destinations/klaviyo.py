"""Klaviyo destination: profiles upserted through Bulk Import Profiles jobs.

A batch becomes one or more import jobs (at most 10,000 profiles and 5 MB each): a job is
created, polled until it completes, and its ``import-errors`` are mapped back to rows by
the position their pointer names; a row is acknowledged only when the job confirms it.
In ``mode: membership`` the sync's ``object`` is a list id: the job adds its profiles to
that list, and rows leaving the model are taken out of it
(``DELETE /api/lists/{id}/relationships/profiles``, profiles found by their match value);
profiles are never deleted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import quote

import httpx
from pydantic import Field

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.destinations.http import HttpDestination
from backhaul.destinations.http import HttpDestinationConfig
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import RateLimit
from backhaul.destinations.http.connector import poll_job
from backhaul.destinations.http.packing import Caps
from backhaul.destinations.http.packing import pack
from backhaul.destinations.http.packing import positions
from backhaul.destinations.http.packing import too_big_results
from backhaul.destinations.identifiers import identified
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

MEDIA = "application/vnd.api+json"
JOBS = "api/profile-bulk-import-jobs"
IDENTIFIERS = ("email", "phone_number", "external_id")
FIELDS = frozenset(
    {*IDENTIFIERS, "first_name", "last_name", "organization", "locale", "title", "image"}
    | {"location", "properties"}
)
ENVELOPE = 512  # bytes of the job document around its profiles
LOOKUP = 100  # values per `any(...)` profile filter
POINTER = re.compile(r"/data/attributes/profiles/data/(\d+)")
PROFILES = "profiles"


class KlaviyoConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: klaviyo``."""

    type: Literal["klaviyo"]
    api_key: str = Field(description="Private API key `pk_…` (use ${env:NAME}).")
    base_url: str = Field("https://a.klaviyo.com", description="API root.")
    revision: str = Field(
        "2025-01-15",
        pattern=r"^\d{4}-\d{2}-\d{2}(\.pre)?$",
        description="API revision sent with every call (a date).",
    )
    max_profiles_per_job: int = Field(10_000, ge=1, le=10_000, description="Profiles per job.")
    max_job_bytes: int = Field(
        5_000_000, gt=ENVELOPE, description="Bytes of one job request (Klaviyo: 5 MB, unverified)."
    )
    max_list_profiles: int = Field(
        1000, ge=1, description="Profiles per list removal call (unverified default)."
    )
    poll_interval_seconds: float = Field(1.0, gt=0, description="Wait between job polls.")
    poll_timeout_seconds: float = Field(900.0, gt=0, description="Give up on a job after this.")
    rate_limit: RateLimit | None = Field(
        RateLimit(requests=10, per_seconds=1),
        description="Requests per window (Klaviyo: 10/s burst and 150/min per endpoint).",
    )


class KlaviyoDestination(HttpDestination):
    """Writes profiles (and list membership) to Klaviyo; see :class:`KlaviyoConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = KlaviyoConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations=frozenset({Operation.UPSERT, Operation.DELETE}),
        max_batch_size=10_000,
        default_batch_size=5_000,
        default_concurrency=1,
        json_records=True,
        membership=True,
    )
    vendor = "klaviyo"
    config: KlaviyoConfig
    # A batch is an import job polled until done, one at a time: more jobs at once mostly
    # add polls, which run into the steady 150 a minute per endpoint that the 10-a-second
    # `rate_limit` does not express.
    concurrency_from_rate_limit = False

    @classmethod
    def check_sync(cls, config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
        """A list id only in membership mode, one identifier to match by, known fields."""
        if shape.membership and shape.object in (None, PROFILES):
            return [
                SyncProblem("object", "klaviyo membership needs a list: set `object` to its id")
            ]
        if not shape.membership and shape.object not in (None, PROFILES):
            message = (
                f"klaviyo writes `profiles`; to keep list `{shape.object}` use `mode: membership`"
            )
            return [SyncProblem("object", message)]
        if not shape.membership and Operation.DELETE in shape.operations:
            message = (
                "klaviyo profiles are not deleted by a sync: use `mode: membership` with a "
                "list, or `on_remove: nothing`"
            )
            return [SyncProblem("mode", message)]
        problems = []
        if len(shape.match_fields) != 1 or shape.match_fields[0] not in IDENTIFIERS:
            problems.append(
                SyncProblem("match", f"klaviyo matches profiles by one of {', '.join(IDENTIFIERS)}")
            )
        unknown = sorted({f.split(".")[0] for f in shape.fields} - FIELDS)
        if unknown:
            message = (
                f"klaviyo profiles have no field `{unknown[0]}`: map custom values to "
                "`properties.NAME`"
            )
            problems.append(SyncProblem("mappings", message))
        return problems

    def __init__(self, config: KlaviyoConfig, context: DestinationContext) -> None:
        fix = "check `api_key` (a private key with profiles:write and lists:write scopes)"
        super().__init__(
            config,
            context,
            config.api_key,
            headers={
                "Authorization": f"Klaviyo-API-Key {config.api_key}",
                "revision": config.revision,
                "Accept": MEDIA,
            },
            hints={401: fix, 403: fix, 404: "check the sync's `object`: it must be a list id"},
            pause_hint=_pause_hint,
        )

    def _url(self, path: str) -> str:
        """An API path under ``base_url``; a ``links.next`` URL is taken as it is."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.config.base_url.rstrip('/')}/{path}"

    async def _send(self, method: str, path: str, body: Any = None, **kw: Any) -> HttpResult:
        headers = {"Content-Type": MEDIA} if body is not None else None
        return await self.client.request(method, self._url(path), json=body, headers=headers, **kw)

    async def probe(self) -> HttpResult:
        return await self._send("GET", "api/lists?page[size]=1")

    async def prepare(self, fields: Any, match_fields: Sequence[str], object: str | None) -> None:
        """Read the list a membership sync keeps: a wrong id stops the run at once."""
        if object not in (None, PROFILES):
            await self._send(
                "GET", f"api/lists/{quote(str(object), safe='')}/relationships/profiles"
            )

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Send one batch as import jobs (or list removals); one result per record."""
        match = batch.match_fields[0]
        list_id = batch.object if batch.membership else None
        out, records = identified(batch.records(), match, f"no {match} value: klaviyo needs it")
        if batch.operation is Operation.DELETE:
            if list_id is None:
                raise DestinationError(
                    "klaviyo profiles are not deleted by a sync: use `mode: membership`",
                    failure=FailureType.CONFIG,
                )
            out.update(await self._remove(list_id, match, records))
            return [out[i] for i in range(len(batch))]
        caps = Caps(
            items=self.config.max_profiles_per_job,
            request_bytes=self.config.max_job_bytes - ENVELOPE,
        )
        profiles = ((i, {"type": "profile", "attributes": r}) for i, r in records.items())
        packed = pack(profiles, caps)
        out.update(too_big_results(packed, caps, "klaviyo"))
        for request in packed.requests:
            out.update(await self._job(request, list_id, match))
        return [out[i] for i in range(len(batch))]

    # -- import jobs ------------------------------------------------------------------------

    async def _job(
        self, request: list[tuple[int, dict[str, Any]]], list_id: str | None, match: str
    ) -> dict[int, RecordResult]:
        """Run one import job; each row's result once the job says what became of it."""
        at = positions(request)
        data: dict[str, Any] = {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": [p for _, p in request]}},
        }
        if list_id is not None:
            data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
        made = await self._send("POST", JOBS, {"data": data})
        call = made.call_id
        if not made.ok:
            return {i: RecordResult.rejected(i, made.error or "refused", call) for i in at}
        job = (made.json or {}).get("data") or {}
        if not job.get("id"):
            raise DestinationError(
                "klaviyo answered an import without a job id: check `base_url`",
                failure=FailureType.CONFIG,
            )
        job_id = str(job["id"])
        attributes = await self._wait(job_id, job.get("attributes") or {})
        if attributes.get("status") != "complete":
            text = (
                f"klaviyo import job {job_id} was {attributes.get('status')}: sent again next run"
            )
            return {i: RecordResult.rejected(i, text, call) for i in at}
        out = await self._errors(job_id, request, match, call)
        confirmed = attributes.get("completed_count")
        if confirmed != len(at) - len(out):
            text = (
                f"klaviyo import job {job_id} confirmed {confirmed} of {len(at)} profiles, "
                f"{len(out)} refused: the others are sent again next run"
            )
            return {**{i: RecordResult.rejected(i, text, call) for i in at}, **out}
        return {i: out.get(i) or RecordResult.ok(i, call) for i in at}

    async def _wait(self, job_id: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """Poll a job until it is complete or cancelled; its last attributes."""
        return await poll_job(
            "klaviyo",
            f"import job {job_id}",
            attributes,
            ("complete", "cancelled"),
            lambda: self._send("GET", f"{JOBS}/{job_id}"),
            lambda polled: ((polled.json or {}).get("data") or {}).get("attributes") or {},
            self.config,
        )

    async def _errors(
        self, job_id: str, request: list[tuple[int, dict[str, Any]]], match: str, call: str
    ) -> dict[int, RecordResult]:
        """The job's import errors as rejections, by the position their pointer names (or,
        without one, by the match value of their original payload)."""
        by_value = {_value(p["attributes"].get(match), match): i for i, p in request}
        out: dict[int, RecordResult] = {}
        path: str | None = f"{JOBS}/{job_id}/import-errors"
        while path:
            got = await self._send("GET", path)
            if not got.ok:
                raise DestinationError(
                    f"klaviyo could not list the errors of job {job_id} ({got.error}): retry",
                    failure=FailureType.TRANSIENT,
                )
            for error in (got.json or {}).get("data") or []:
                attributes = error.get("attributes") or {}
                pointer = str((attributes.get("source") or {}).get("pointer") or "")
                found = POINTER.match(pointer)
                if found and int(found.group(1)) < len(request):
                    i = request[int(found.group(1))][0]
                else:
                    payload = (attributes.get("original_payload") or {}).get("attributes") or {}
                    i = by_value.get(_value(payload.get(match), match), -1)
                if i < 0:
                    continue
                text = f"{attributes.get('code', 'invalid')}: {attributes.get('detail', '')}"
                out[i] = RecordResult.rejected(i, self.redactor.text(text) or text, call)
            following = ((got.json or {}).get("links") or {}).get("next")
            path = str(following) if following else None
        return out

    # -- list removal -----------------------------------------------------------------------

    async def _remove(
        self, list_id: str, match: str, records: dict[int, dict[str, Any]]
    ) -> dict[int, RecordResult]:
        """Take profiles out of the list; one not found is in no list, so it counts as done."""
        wanted: dict[str, list[int]] = {}
        for i, record in records.items():
            wanted.setdefault(_value(record[match], match), []).append(i)
        ids: dict[str, str] = {}  # profile id -> its match value
        values = list(wanted)
        for start in range(0, len(values), LOOKUP):
            ids.update(await self._lookup(match, values[start : start + LOOKUP]))
        out = {i: RecordResult.ok(i) for i in records}
        found = list(ids)
        path = f"api/lists/{quote(list_id, safe='')}/relationships/profiles"
        step = self.config.max_list_profiles
        for start in range(0, len(found), step):
            chunk = found[start : start + step]
            body = {"data": [{"type": "profile", "id": p} for p in chunk]}
            done = await self._send("DELETE", path, body, expected={200, 202, 204})
            for p in chunk:
                for i in wanted[ids[p]]:
                    out[i] = (
                        RecordResult.ok(i, done.call_id)
                        if done.ok
                        else RecordResult.rejected(i, done.error or "refused", done.call_id)
                    )
        return out

    async def _lookup(self, match: str, values: list[str]) -> dict[str, str]:
        """Profile ids of the profiles with these match values: id -> match value."""
        expression = f"any({match},{json.dumps(values)})"
        path: str | None = f"api/profiles?filter={quote(expression, safe='')}&page[size]={LOOKUP}"
        found: dict[str, str] = {}
        while path:
            got = await self._send("GET", path)
            if not got.ok:
                raise DestinationError(
                    f"klaviyo refused to look up profiles by {match} ({got.error}): check the "
                    "sync's match field",
                    failure=FailureType.CONFIG,
                )
            for profile in (got.json or {}).get("data") or []:
                value = (profile.get("attributes") or {}).get(match)
                if value is not None and _value(value, match) in values:
                    found[str(profile["id"])] = _value(value, match)
            following = ((got.json or {}).get("links") or {}).get("next")
            path = str(following) if following else None
        return found


def _value(value: Any, match: str) -> str:
    """A match value as Klaviyo compares it (e-mail without case or spaces)."""
    text = str(value)
    return text.strip().lower() if match == "email" else text


def _pause_hint(response: httpx.Response) -> float | None:
    """Wait out the window when Klaviyo's RateLimit headers say it is used up."""
    if response.headers.get("ratelimit-remaining") == "0":
        try:
            return max(0.0, float(response.headers.get("ratelimit-reset", "1")))
        except ValueError:
            return 1.0
    return None
