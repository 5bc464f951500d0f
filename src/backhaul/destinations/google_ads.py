"""Google Ads Customer Match destination: people added to and removed from a user list.

A sync in ``mode: membership`` names the user list as its ``object`` (its resource name or
id). Each batch is one offline user data job: created for the list, filled with
``create`` (rows entering the model) or ``remove`` operations (rows leaving it) by
``:addOperations`` with partial failure enabled, so a refused operation is rejected by its
index and the others go on, then run and polled until it succeeds. Identifiers are
normalised and SHA-256 hashed by :mod:`backhaul.destinations.pii` (phones in E.164 with
the ``+``). Google refuses two jobs running on one list, so a batch first waits for any job
running on its list (one a killed run left behind, another sync's) and runs its own after.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import urlencode

import httpx
import pyarrow as pa
from pydantic import BaseModel
from pydantic import ConfigDict
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
from backhaul.destinations.http import HttpDestination
from backhaul.destinations.http import HttpDestinationConfig
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http.connector import client_for
from backhaul.destinations.http.packing import Caps
from backhaul.destinations.http.packing import pack
from backhaul.destinations.http.tokens import TokenCallRecorder
from backhaul.destinations.membership import Member
from backhaul.destinations.membership import field_keys
from backhaul.destinations.membership import kept_list
from backhaul.destinations.membership import members
from backhaul.destinations.membership import membership_problems
from backhaul.destinations.membership import require_membership
from backhaul.destinations.pii import PiiKey
from backhaul.destinations.pii import PiiOptions
from backhaul.destinations.pii import Platform
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

KEYS = (
    PiiKey.EMAIL,
    PiiKey.PHONE,
    PiiKey.FIRST_NAME,
    PiiKey.LAST_NAME,
    PiiKey.COUNTRY,
    PiiKey.ZIP,
    PiiKey.EXTERNAL_ID,
    PiiKey.MOBILE_ID,
)
ADDRESS = {
    PiiKey.FIRST_NAME: "hashedFirstName",
    PiiKey.LAST_NAME: "hashedLastName",
    PiiKey.COUNTRY: "countryCode",
    PiiKey.ZIP: "postalCode",
}
SINGLE = {
    PiiKey.EMAIL: "hashedEmail",
    PiiKey.PHONE: "hashedPhoneNumber",
    PiiKey.EXTERNAL_ID: "thirdPartyUserId",
    PiiKey.MOBILE_ID: "mobileId",
}
JOB_FIELDS = (
    "offline_user_data_job.resource_name, offline_user_data_job.status, "
    "offline_user_data_job.failure_reason, "
    "offline_user_data_job.customer_match_user_list_metadata.user_list"
)
FIX_AUTH = (
    "check `developer_token` and the OAuth credentials (`access_token`, or `client_id`, "
    "`client_secret` and `refresh_token`) in the destination file"
)
Consent = Literal["GRANTED", "DENIED", "UNSPECIFIED"]


class ConsentConfig(BaseModel):
    """``consent:``: what the people of the list agreed to, sent with every job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ad_user_data: Consent | None = None
    ad_personalization: Consent | None = None


class GoogleAdsConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: google_ads``."""

    type: Literal["google_ads"]
    customer_id: str = Field(description="The Google Ads account (digits; dashes allowed).")
    developer_token: str = Field(description="Developer token (use ${env:NAME}).")
    login_customer_id: str | None = Field(
        None, description="Manager account the credentials act through (digits)."
    )
    access_token: str | None = Field(None, description="An OAuth access token as it is.")
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = Field(None, description="Exchanged for access tokens.")
    token_url: str = "https://oauth2.googleapis.com/token"
    base_url: str = Field("https://googleads.googleapis.com", description="API root.")
    api_version: str = Field("v23", pattern=r"^v\d+$")
    user_list: str | None = Field(None, description="List of syncs that name no `object`.")
    consent: ConsentConfig | None = None
    operations_per_request: int = Field(
        5_000,
        ge=1,
        le=100_000,
        description="Operations in one addOperations call (Google: 100,000 identifiers a "
        "call, 20 an operation).",
    )
    poll_interval_seconds: float = Field(10.0, gt=0, description="Wait between job polls.")
    job_timeout_seconds: float = Field(
        6 * 3600.0, gt=0, description="Give up waiting for a job after this long."
    )
    default_country: str | None = Field(
        None, description="ISO country of phone numbers written without their country code."
    )

    @model_validator(mode="after")
    def _complete(self) -> GoogleAdsConfig:
        if not self.access_token and not (
            self.client_id and self.client_secret and self.refresh_token
        ):
            raise ValueError(
                "give `client_id`, `client_secret` and `refresh_token`, or `access_token`"
            )
        self.customer_id = self.customer_id.replace("-", "")
        if self.login_customer_id:
            self.login_customer_id = self.login_customer_id.replace("-", "")
        return self


CAPABILITIES = Capabilities(
    operations=frozenset({Operation.UPSERT, Operation.DELETE}),
    max_batch_size=1_000_000,
    default_batch_size=100_000,  # one job per batch, and jobs take long to run
    default_concurrency=1,
    membership=True,
)


class GoogleAdsDestination(HttpDestination):
    """Keeps Customer Match user lists in step with a model; see :class:`GoogleAdsConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = GoogleAdsConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    vendor = "google_ads"
    url_keys = ("base_url", "token_url")
    config: GoogleAdsConfig
    # Google runs one job at a time on a list (CONCURRENT_MODIFICATION otherwise).
    concurrency_from_rate_limit = False

    @classmethod
    def check_sync(cls, config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
        """Membership mode, a user list, and fields Customer Match matches people on."""
        default = getattr(config, "user_list", None)
        return membership_problems("google_ads", "user list", shape, KEYS, default_object=default)

    def __init__(self, config: GoogleAdsConfig, context: DestinationContext) -> None:
        super().__init__(
            config,
            context,
            config.developer_token,
            config.access_token,
            config.client_secret,
            config.refresh_token,
            hints={401: FIX_AUTH, 403: FIX_AUTH},
            pause_hint=_retry_delay,
        )
        # Token calls are recorded with the issued token and the form's secrets masked, and
        # wait out a rate-limit answer's retryDelay like any other call.
        recorder = TokenCallRecorder(context.recorder)
        self.token_client = client_for(
            self.vendor,
            config,
            context,
            self.redactor,
            concurrency=1,
            recorder=recorder,
            pause_hint=_retry_delay,
        )
        self.token = config.access_token
        self.token_until = float("inf")
        self.options = PiiOptions(default_country=config.default_country)
        self.user_list: str | None = None
        self.lock = asyncio.Lock()  # one job at a time from this run

    # -- calls ------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        root = self.config.base_url.rstrip("/")
        return f"{root}/{self.config.api_version}/customers/{self.config.customer_id}/{path}"

    async def _headers(self) -> dict[str, str]:
        if self.token is None or time.monotonic() >= self.token_until:
            await self._refresh()
        headers = {
            "Authorization": f"Bearer {self.token}",
            "developer-token": self.config.developer_token,
        }
        if self.config.login_customer_id:
            headers["login-customer-id"] = self.config.login_customer_id
        return headers

    async def _refresh(self) -> None:
        """Exchange the refresh token for an access token (kept until shortly before expiry)."""
        form = {
            "grant_type": "refresh_token",
            "client_id": self.config.client_id or "",
            "client_secret": self.config.client_secret or "",
            "refresh_token": self.config.refresh_token or "",
        }
        answer = await self.token_client.request(
            "POST",
            self.config.token_url,
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        token = (answer.json or {}).get("access_token") if answer.ok else None
        if not token:
            raise DestinationError(
                f"google_ads could not get an access token ({answer.error}): {FIX_AUTH}",
                failure=FailureType.CONFIG,
            )
        self.redactor.add(token)
        self.token = str(token)
        life = float((answer.json or {}).get("expires_in") or 3600)
        self.token_until = time.monotonic() + max(60.0, life - 60)

    async def _call(self, path: str, body: dict[str, Any], *, busy_ok: bool = False) -> HttpResult:
        """POST ``body`` to ``path``; errors that fail the whole batch raise (a list busy
        with another job too, unless ``busy_ok``)."""
        result = await self.client.request(
            "POST", self._url(path), json=body, headers=await self._headers()
        )
        if not result.ok and "CONCURRENT_MODIFICATION" in _codes(result) and not busy_ok:
            raise DestinationError(
                "google_ads: another job is changing this user list; the batch is sent again",
                failure=FailureType.TRANSIENT,
            )
        if not result.ok and _codes(result) & {"INVALID_USER_LIST_ID", "USER_LIST_NOT_FOUND"}:
            raise DestinationError(
                f"google_ads has no user list `{self.user_list}` in customer "
                f"{self.config.customer_id}: check the sync's `object`",
                failure=FailureType.CONFIG,
            )
        return result

    async def close(self) -> None:
        await self.token_client.aclose()
        await super().close()

    async def probe(self) -> HttpResult:
        """Read the account's user lists: bad credentials are a CONFIG error."""
        return await self.client.request(
            "POST",
            self._url("googleAds:search"),
            json={"query": "SELECT user_list.resource_name FROM user_list LIMIT 1"},
            headers=await self._headers(),
        )

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Resolve the sync's user list (``object``: a resource name or a list id)."""
        name = kept_list("google_ads", "user list", object, self.config.user_list)
        if re.fullmatch(r"\d+", name):
            name = f"customers/{self.config.customer_id}/userLists/{name}"
        self.user_list = name

    # -- writing ----------------------------------------------------------------------------

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Add (upsert) or remove (delete) the batch's people with one job."""
        require_membership(self.vendor, batch)
        if self.user_list is None:
            await self.prepare({}, batch.match_fields, batch.object)
        keys, _ = field_keys(batch.fields, KEYS)
        results: dict[int, RecordResult] = {}
        ops: list[tuple[int, list[dict[str, Any]]]] = []
        for i, member in enumerate(members(batch, Platform.GOOGLE, keys, self.options)):
            ids = member if isinstance(member, str) else _identifiers(member)
            if isinstance(ids, str):
                results[i] = RecordResult.rejected(i, ids)
            else:
                ops.append((i, ids))
        kind = "create" if batch.operation is Operation.UPSERT else "remove"
        if ops:
            async with self.lock:
                results.update(await self._job(kind, ops))
        return [results[i] for i in range(len(batch))]

    async def _job(
        self, kind: str, ops: list[tuple[int, list[dict[str, Any]]]]
    ) -> dict[int, RecordResult]:
        """Create a job, add the operations, run it once the list is free, wait for it."""
        metadata: dict[str, Any] = {"userList": self.user_list}
        consent = self.config.consent
        if consent is not None:
            given = {
                "adUserData": consent.ad_user_data,
                "adPersonalization": consent.ad_personalization,
            }
            metadata["consent"] = {k: v for k, v in given.items() if v is not None}
        spec = {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": metadata}
        created = await self._call("offlineUserDataJobs:create", {"job": spec})
        job = (created.json or {}).get("resourceName") if created.ok else None
        if not job:
            raise DestinationError(
                f"google_ads did not create a job ({created.error}): check the sync's `object`",
                failure=FailureType.CONFIG,
            )
        job_id = str(job).rsplit("/", 1)[-1]
        out: dict[int, RecordResult] = {}
        for request in pack(ops, Caps(items=self.config.operations_per_request)).requests:
            body = {
                "enablePartialFailure": True,
                "operations": [{kind: {"userIdentifiers": ids}} for _, ids in request],
            }
            added = await self._call(f"offlineUserDataJobs/{job_id}:addOperations", body)
            out.update(_outcomes(request, added))
        accepted = [i for i, r in out.items() if r.error is None]
        if not accepted:
            return out  # nothing to run: the job is left pending and never runs
        for _ in range(self.config.retry.max_attempts):
            await self._wait_for_list(exclude=str(job))
            ran = await self._call(f"offlineUserDataJobs/{job_id}:run", {}, busy_ok=True)
            if ran.ok:
                await self._wait_for_job(str(job))
                return out
            if "CONCURRENT_MODIFICATION" not in _codes(ran):
                raise DestinationError(
                    f"google_ads did not run job {job} ({ran.error}); the batch is sent again",
                    failure=FailureType.TRANSIENT,
                )
        raise DestinationError(
            f"google_ads: other jobs kept {self.user_list} busy; the batch is sent again",
            failure=FailureType.TRANSIENT,
        )

    async def _jobs(self, where: str) -> list[dict[str, Any]]:
        query = f"SELECT {JOB_FIELDS} FROM offline_user_data_job WHERE {where}"
        found = await self._call("googleAds:search", {"query": query})
        if not found.ok:
            raise DestinationError(
                f"google_ads could not report its jobs ({found.error}): retry the run",
                failure=FailureType.TRANSIENT,
            )
        rows = (found.json or {}).get("results") or []
        return [
            r["offlineUserDataJob"] for r in rows if isinstance(r.get("offlineUserDataJob"), dict)
        ]

    async def _wait_for_list(self, exclude: str) -> None:
        """Wait while another job runs on the list: Google runs one at a time."""
        deadline = time.monotonic() + self.config.job_timeout_seconds
        while True:
            running = [
                j["resourceName"]
                for j in await self._jobs("offline_user_data_job.status = 'RUNNING'")
                if j.get("status") == "RUNNING"
                and j.get("resourceName") != exclude
                and (j.get("customerMatchUserListMetadata") or {}).get("userList") == self.user_list
            ]
            if not running:
                return
            self._past(deadline, f"job {running[0]} is still running on {self.user_list}")
            why = f"google_ads job {running[0]} is running on {self.user_list}; one at a time"
            await self.client.hold(self.config.poll_interval_seconds, why)

    async def _wait_for_job(self, job: str) -> None:
        """Poll the job until it succeeds; a failed job fails the batch (sent again)."""
        deadline = time.monotonic() + self.config.job_timeout_seconds
        while True:
            rows = await self._jobs(f"offline_user_data_job.resource_name = '{job}'")
            status = rows[0].get("status") if rows else "UNKNOWN"
            if status == "SUCCESS":
                return
            if status == "FAILED":
                raise DestinationError(
                    f"google_ads job {job} failed ({rows[0].get('failureReason')}); the batch "
                    "is sent again",
                    failure=FailureType.TRANSIENT,
                )
            self._past(deadline, f"job {job} is still {status}")
            await self.client.hold(
                self.config.poll_interval_seconds, f"google_ads job {job} is {status}"
            )

    def _past(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise DestinationError(
                f"google_ads {what} after {self.config.job_timeout_seconds:g}s: run again "
                "later (its rows stay pending) or raise `job_timeout_seconds`",
                failure=FailureType.TRANSIENT,
            )


def _identifiers(member: Member) -> list[dict[str, Any]] | str:
    """A row's user identifiers: one per key, the address as one when it is complete."""
    ids: list[dict[str, Any]] = [{SINGLE[k]: v.value} for k, v in member.items() if k in SINGLE]
    address = {ADDRESS[k]: v.value for k, v in member.items() if k in ADDRESS}
    if len(address) == len(ADDRESS):
        ids.append({"addressInfo": address})
    elif address and not ids:
        return "an address matches only with first_name, last_name, country and zip all mapped"
    return ids


def _outcomes(
    request: list[tuple[int, list[dict[str, Any]]]], result: HttpResult
) -> dict[int, RecordResult]:
    """Each operation's result: partial failures mapped back by operation index."""
    call = result.call_id
    if not result.ok:
        error = f"google_ads refused the operations: {result.error}"
        return {i: RecordResult.rejected(i, error, call) for i, _ in request}
    partial = (result.json or {}).get("partialFailureError") or {}
    errors = [e for d in partial.get("details") or [] for e in d.get("errors") or []]
    refused: dict[int, str] = {}
    for error in errors:
        at = _operation_index(error)
        text = f"{'/'.join(_code_values(error))}: {error.get('message')}"
        if at is None or not 0 <= at < len(request):
            refused = {n: f"google_ads refused the request: {text}" for n in range(len(request))}
            break
        refused.setdefault(at, f"google_ads refused the operation: {text}")
    if partial.get("code") and not refused:
        message = partial.get("message")
        refused = {n: f"google_ads refused the request: {message}" for n in range(len(request))}
    return {
        i: RecordResult.rejected(i, refused[n], call) if n in refused else RecordResult.ok(i, call)
        for n, (i, _) in enumerate(request)
    }


def _operation_index(error: dict[str, Any]) -> int | None:
    path = (error.get("location") or {}).get("fieldPathElements") or []
    if path and path[0].get("fieldName") == "operations" and isinstance(path[0].get("index"), int):
        return int(path[0]["index"])
    return None


def _code_values(error: dict[str, Any]) -> list[str]:
    code = error.get("errorCode")
    return [str(v) for v in code.values()] if isinstance(code, dict) else []


def _codes(result: HttpResult) -> set[str]:
    """Every error code of a failed answer (``CONCURRENT_MODIFICATION``...)."""
    body = result.json if isinstance(result.json, dict) else {}
    details = (body.get("error") or {}).get("details") or []
    return {
        c
        for d in details
        if isinstance(d, dict)
        for e in d.get("errors") or []
        for c in _code_values(e)
    }


def _retry_delay(response: httpx.Response) -> float | None:
    """The ``retryDelay`` (``"5s"``) of a 429 ``RESOURCE_EXHAUSTED`` answer."""
    if response.status_code != 429:
        return None
    found = re.search(r'"retryDelay"\s*:\s*"(\d+(?:\.\d+)?)s"', response.text)
    return float(found.group(1)) if found else None


__all__ = ["GoogleAdsConfig", "GoogleAdsDestination"]
