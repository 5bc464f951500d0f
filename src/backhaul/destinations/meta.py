"""Meta Custom Audiences destination: people added to and removed from a customer list.

A sync in ``mode: membership`` names the audience id as its ``object``. Rows entering the
model are added with ``POST /{audience}/users``, rows leaving it removed with ``DELETE`` on
the same path, both with a multi-key ``payload`` (``EMAIL``, ``PHONE``, ``FN``...) whose
values are normalised and SHA-256 hashed by :mod:`backhaul.destinations.pii`. A batch is one
upload session of requests of at most 10,000 rows. Meta answers each request with how many
rows it found invalid and a few samples: rows a sample names are rejected with its reason;
rows it counted without naming are sent again on their own until they are named (adding
and removing are idempotent), or rejected when Meta will not say which they are.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import urlencode

import pyarrow as pa
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
from backhaul.destinations.http.packing import Caps
from backhaul.destinations.http.packing import pack
from backhaul.destinations.http.packing import positions
from backhaul.destinations.membership import field_keys
from backhaul.destinations.membership import kept_list
from backhaul.destinations.membership import members
from backhaul.destinations.membership import membership_problems
from backhaul.destinations.membership import require_membership
from backhaul.destinations.pii import META_SCHEMA
from backhaul.destinations.pii import PiiKey
from backhaul.destinations.pii import PiiOptions
from backhaul.destinations.pii import Platform
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.observe.events import WaitKind

MAX_ROWS = 10_000
KEYS = tuple(META_SCHEMA)  # payload.schema order
ALIASES = {name: key for key, name in META_SCHEMA.items()}
# Graph error codes that mean "too many calls": Meta answers them with HTTP 400.
THROTTLED = frozenset({4, 17, 32, 613, 80000, 80003, 80004, 80014})
TOKEN_CODES = frozenset({102, 104, 190})
PERMISSION_CODES = frozenset({10, *range(200, 300)})
AUDIENCE_SUBCODES = frozenset({33, 1487301, 1487366})
FIX_TOKEN = (
    "check `access_token` (a system-user token with ads_management) and `app_secret` in the "
    "destination file"
)


class MetaAudiencesConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: meta_audiences``."""

    type: Literal["meta_audiences"]
    access_token: str = Field(description="System-user access token (use ${env:NAME}).")
    app_secret: str | None = Field(
        None, description="App secret: every call then carries its appsecret_proof."
    )
    base_url: str = Field("https://graph.facebook.com", description="Graph API root.")
    api_version: str = Field("v25.0", pattern=r"^v\d+\.\d+$", description="Graph API version.")
    audience_id: str | None = Field(
        None, description="Audience of syncs that name no `object`.", min_length=1
    )
    rows_per_request: int = Field(
        MAX_ROWS, ge=1, le=MAX_ROWS, description="Rows in one request (Meta: at most 10,000)."
    )
    default_country: str | None = Field(
        None, description="ISO country of phone numbers written without their country code."
    )
    rate_limit: RateLimit | None = Field(
        RateLimit(requests=200, per_seconds=60),
        description="Requests per window (Meta's business use-case limits vary; unverified).",
    )


CAPABILITIES = Capabilities(
    operations=frozenset({Operation.UPSERT, Operation.DELETE}),
    max_batch_size=1_000_000,
    default_batch_size=MAX_ROWS,
    membership=True,
)


@dataclass
class _Upload:
    """One upload session: the requests of one batch, in order."""

    id: int
    total: int
    requests: int
    seq: int = 0

    def next(self) -> dict[str, Any]:
        self.seq += 1
        return {
            "session_id": self.id,
            "batch_seq": self.seq,
            "last_batch_flag": self.seq == self.requests,
            "estimated_num_total": self.total,
        }


class MetaAudiencesDestination(HttpDestination):
    """Keeps Meta custom audiences in step with a model; see :class:`MetaAudiencesConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = MetaAudiencesConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    vendor = "meta_audiences"
    config: MetaAudiencesConfig

    @classmethod
    def check_sync(cls, config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
        """Membership mode, an audience id, and fields Meta matches people on."""
        default = getattr(config, "audience_id", None)
        return membership_problems(
            "meta_audiences", "audience", shape, KEYS, default_object=default, aliases=ALIASES
        )

    def __init__(self, config: MetaAudiencesConfig, context: DestinationContext) -> None:
        proof = None
        if config.app_secret:
            digest = hmac.new(config.app_secret.encode(), config.access_token.encode(), "sha256")
            proof = digest.hexdigest()
        super().__init__(
            config,
            context,
            config.access_token,
            config.app_secret,
            proof,
            hints={401: FIX_TOKEN, 403: FIX_TOKEN},
        )
        self.auth = {"access_token": config.access_token}
        if proof:
            self.auth["appsecret_proof"] = proof
        self.options = PiiOptions(default_country=config.default_country)
        self.audience: str | None = None

    def _url(self, path: str, *, query: bool = False) -> str:
        """The URL of ``path``; with ``query``, the token in its query string (for GETs)."""
        url = f"{self.config.base_url.rstrip('/')}/{self.config.api_version}/{path}"
        return f"{url}?{urlencode(self.auth)}" if query else url

    async def probe(self) -> None:
        """Read the token's user: a bad token or proof is a CONFIG error."""
        refused = self._raise_for(await self._request("GET", self._url("me", query=True)))
        if refused:
            raise DestinationError(f"{refused}: {FIX_TOKEN}", failure=FailureType.CONFIG)

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Read the audience: one this token cannot reach fails the run before any upload."""
        audience = kept_list("meta_audiences", "audience", object, self.config.audience_id)
        read = await self._request("GET", self._url(audience, query=True))
        self.audience = audience
        refused = self._raise_for(read)
        if refused:
            raise DestinationError(
                f"{refused}: check the sync's `object` (the audience id)",
                failure=FailureType.CONFIG,
            )

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Add (upsert) or remove (delete) the batch's people in one upload session."""
        require_membership(self.vendor, batch)
        if self.audience is None:
            await self.prepare({}, batch.match_fields, batch.object)
        assert self.audience is not None
        keys, _ = field_keys(batch.fields, KEYS, ALIASES)
        prepared = members(batch, Platform.META, keys, self.options)
        results = {
            i: RecordResult.rejected(i, p) for i, p in enumerate(prepared) if isinstance(p, str)
        }
        schema = [k for k in KEYS if k in keys.values()]
        rows = [
            (i, [p[k].value if k in p else "" for k in schema])
            for i, p in enumerate(prepared)
            if not isinstance(p, str)
        ]
        method = "POST" if batch.operation is Operation.UPSERT else "DELETE"
        requests = pack(rows, Caps(items=self.config.rows_per_request)).requests
        session = _Upload(secrets.randbelow(2**53) + 1, len(rows), len(requests))
        for request in requests:
            results.update(await self._upload(method, schema, request, session))
        return [results[i] for i in range(len(batch))]

    async def _upload(
        self,
        method: str,
        schema: list[PiiKey],
        request: list[tuple[int, list[str]]],
        session: _Upload,
    ) -> dict[int, RecordResult]:
        """Send one request; resend rows Meta counted invalid without naming them."""
        out: dict[int, RecordResult] = {}
        pending = request
        while pending:
            result = await self._send(method, schema, [row for _, row in pending], session.next())
            call = result.call_id
            if not result.ok:
                error = self._raise_for(result)
                out.update({i: RecordResult.rejected(i, error, call) for i in positions(pending)})
                return out
            body = result.json if isinstance(result.json, dict) else {}
            named = _named(pending, body.get("invalid_entry_samples"))
            unnamed = int(body.get("num_invalid_entries") or 0) - len(named)
            out.update({i: RecordResult.rejected(i, reason, call) for i, reason in named.items()})
            rest = [(i, row) for i, row in pending if i not in named]
            if unnamed <= 0:
                out.update({i: RecordResult.ok(i, call) for i, _ in rest})
                return out
            if not named:  # Meta will not say which: keep them all pending
                reason = (
                    f"Meta counted {unnamed} of these {len(pending)} rows invalid without naming "
                    "them; they are sent again next run"
                )
                out.update({i: RecordResult.rejected(i, reason, call) for i, _ in rest})
                return out
            pending = rest
            session = _Upload(secrets.randbelow(2**53) + 1, len(rest), 1)
        return out

    async def _send(
        self, method: str, schema: list[PiiKey], data: list[list[str]], session: dict[str, Any]
    ) -> HttpResult:
        """One upload call of ``data`` rows in ``session``."""
        body = {
            **self.auth,
            "payload": {"schema": [META_SCHEMA[k] for k in schema], "data": data},
            "session": session,
        }
        return await self._request(method, self._url(f"{self.audience}/users"), body)

    async def _request(self, method: str, url: str, body: Any = None) -> HttpResult:
        """One call, waiting out Meta's throttling answers (HTTP 400, codes 4, 17, 80003...)."""
        policy = self.config.retry
        attempt = 0
        while True:
            attempt += 1
            result = await self.client.request(method, url, json=body)
            error = _graph_error(result)
            if error is None or error.get("code") not in THROTTLED:
                return result
            wait = _regain_seconds(result.headers) or policy.delay(attempt)
            if attempt >= policy.max_attempts or wait > policy.max_retry_after:
                raise DestinationError(
                    f"meta_audiences is throttling this ad account ({error.get('message')}): "
                    "retry later or lower `rate_limit`",
                    failure=FailureType.TRANSIENT,
                )
            why = f"meta_audiences throttled the call (code {error.get('code')})"
            await self.client.hold(wait, why, WaitKind.RATE_LIMIT)

    def _raise_for(self, result: HttpResult) -> str:
        """Raise for an answer that fails the whole run; else the reason to reject with."""
        if result.ok:
            return ""
        error = _graph_error(result) or {}
        code, sub = error.get("code"), error.get("error_subcode")
        text = self.redactor.text(str(error.get("message") or result.error)) or ""
        if code in TOKEN_CODES or code in PERMISSION_CODES:
            raise DestinationError(
                f"meta_audiences refused the credentials ({text}): {FIX_TOKEN}",
                failure=FailureType.CONFIG,
                status=result.status,
            )
        if sub in AUDIENCE_SUBCODES:
            raise DestinationError(
                f"meta_audiences cannot use audience `{self.audience}` ({text}): check the "
                "sync's `object` and that the audience is shared with this token's ad account",
                failure=FailureType.CONFIG,
                status=result.status,
            )
        return f"meta_audiences refused the request: {text}"


def _graph_error(result: HttpResult) -> dict[str, Any] | None:
    if result.ok or not isinstance(result.json, dict):
        return None
    error = result.json.get("error")
    return error if isinstance(error, dict) else None


def _regain_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds until the ad account may call again, from ``X-Business-Use-Case-Usage``."""
    try:
        usage = json.loads(headers.get("x-business-use-case-usage") or "{}")
    except ValueError:
        return None
    entries = [e for v in usage.values() if isinstance(v, list) for e in v if isinstance(e, dict)]
    minutes = max(
        (float(e.get("estimated_time_to_regain_access") or 0) for e in entries), default=0
    )
    return minutes * 60 or None


def _named(rows: list[tuple[int, list[str]]], samples: Any) -> dict[int, str]:
    """Rows holding a value Meta gave as an invalid sample, with its reason."""
    if isinstance(samples, list):
        samples = {str(s): "invalid entry" for s in samples}
    if not isinstance(samples, dict) or not samples:
        return {}
    found: dict[int, str] = {}
    for i, row in rows:
        for value in row:
            if value and value in samples:
                found[i] = f"Meta refused the row: {samples[value]}"
                break
    return found
