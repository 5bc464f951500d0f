"""Meta Marketing API emulator: Custom Audience users added and removed in upload sessions.

What it enforces, as the Graph API does: an ``access_token`` (query, form or JSON body; a
Bearer header too) and, when given or required, a matching ``appsecret_proof``; versioned
paths (``/v25.0/...``); ``payload.schema`` of known keys with every row as long as the
schema; at most ``max_rows`` (10,000) rows per request; hashed keys as lower-case SHA-256 hex
and unhashed PII counted as invalid entries (``num_invalid_entries`` with a few
``invalid_entry_samples``) while the valid rows of the same call apply; upload sessions
(``session_id``, ``batch_seq``, ``last_batch_flag``, ``estimated_num_total``) that keep one
operation and one audience and refuse batches past the last one; ``usersreplace`` swapping
the audience when its session completes; a rolling per-ad-account call window answered with
HTTP 400 and code 80003 and reported in ``X-Business-Use-Case-Usage``; Graph's error
envelope (``{"error": {message, type, code, error_subcode, fbtrace_id}}``).

The audience keeps its members (see ``_audience``), so a test asserts exactly who is in it:
``emulator.values(audience_id, "EMAIL")`` is the set of e-mail hashes it holds.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._audience import MOBILE_ID
from backhaul.testing.emulators._audience import AudienceInspection
from backhaul.testing.emulators._audience import Membership
from backhaul.testing.emulators._audience import hash_problem
from backhaul.testing.emulators._http import authorization
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow

DEFAULT_TOKEN = "EAAB-emulator-system-user-token-0001"
DEFAULT_APP_SECRET = "meta-emulator-app-secret"
VERSION = re.compile(r"v\d+\.\d+")
HASHED = frozenset(
    {
        "EMAIL",
        "PHONE",
        "GEN",
        "DOBY",
        "DOBM",
        "DOBD",
        "LN",
        "FN",
        "FI",
        "CT",
        "ST",
        "ZIP",
        "COUNTRY",
    }
)
UNHASHED = frozenset({"EXTERN_ID", "MADID", "APPUID"})
SINGLE = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE", "MOBILE_ADVERTISER_ID": "MADID"}
FILE_SOURCES = ("USER_PROVIDED_ONLY", "PARTNER_PROVIDED_ONLY", "BOTH_USER_AND_PARTNER_PROVIDED")


class GraphError(Exception):
    """A Graph API error answer."""

    def __init__(self, message: str, code: int = 100, subcode: int | None = None, **extra: Any):
        super().__init__(message)
        self.message, self.code, self.subcode, self.extra = message, code, subcode, extra


@dataclass
class Audience:
    id: str
    name: str
    customer_file_source: str
    members: Membership = field(default_factory=Membership)
    deleted: bool = False


@dataclass
class Session:
    """One upload session: the batches of one operation on one audience."""

    id: str
    audience: str
    operation: str  # add | remove | replace
    estimated_total: int | None
    seqs: set[int] = field(default_factory=set)
    last_seq: int | None = None
    received: int = 0
    invalid: int = 0
    staged: Membership | None = None  # replace: the new membership until the last batch
    done: bool = False


class MetaEmulator(AudienceInspection, Emulator):
    """Custom Audiences of one ad account, in memory.

    Args:
        access_token: The token accepted (system user with ``ads_management``).
        app_secret: The app secret ``appsecret_proof`` is checked against.
        require_appsecret_proof: Refuse calls without a proof (the app's "Require App Secret").
        accept_bearer: Also take the token from ``Authorization: Bearer`` (unverified).
        ad_account_id: The ad account (without ``act_``).
        business_id: The business the usage header is keyed by.
        audiences: Names of audiences created at start (the sandbox gets one).
        max_rows: Most rows in one request (Meta: 10,000).
        rate_limit: Calls allowed per ``rate_window`` seconds for the ad account (unverified).
        rate_window: Length of the rolling window in seconds.
        throttle_status: HTTP status of a throttled call (400 by the reference; unverified).
        usage_type: The ``type`` in ``X-Business-Use-Case-Usage``.
        max_samples: Most ``invalid_entry_samples`` in one answer.
        lowercase_hashes_only: Count upper-case hex digests as invalid entries.
        clock: Monotonic clock of the rate window.
        seed: Seed of the random fault switch.
    """

    vendor: ClassVar[str] = "meta"
    email_key: ClassVar[str] = "EMAIL"

    def __init__(
        self,
        *,
        access_token: str = DEFAULT_TOKEN,
        app_secret: str = DEFAULT_APP_SECRET,
        require_appsecret_proof: bool = False,
        accept_bearer: bool = True,
        ad_account_id: str = "1234567890",
        business_id: str = "4567890123",
        audiences: Sequence[str] = ("Backhaul sandbox audience",),
        max_rows: int = 10_000,
        rate_limit: int = 300,
        rate_window: float = 60.0,
        throttle_status: int = 400,
        usage_type: str = "custom_audience",
        max_samples: int = 10,
        lowercase_hashes_only: bool = True,
        clock: Any = time.monotonic,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.access_token = access_token
        self.app_secret = app_secret
        self.require_appsecret_proof = require_appsecret_proof
        self.accept_bearer = accept_bearer
        self.ad_account_id = ad_account_id
        self.business_id = business_id
        self.max_rows = max_rows
        self.window = SlidingWindow(rate_limit, rate_window, clock)
        self.throttle_status = throttle_status
        self.usage_type = usage_type
        self.max_samples = max_samples
        self.lowercase_hashes_only = lowercase_hashes_only
        self._initial = tuple(audiences)
        self._ids = itertools.count(23851000000000001)
        self.audiences: dict[str, Audience] = {}
        self.sessions: dict[str, Session] = {}
        self.vendor_reset()

    # -- set-up and inspection ---------------------------------------------------------------

    def create_audience(self, name: str, source: str = "USER_PROVIDED_ONLY") -> str:
        """A new empty customer-list audience; its id."""
        with self.lock:
            audience = Audience(str(next(self._ids)), name, source)
            self.audiences[audience.id] = audience
            return audience.id

    def delete_audience(self, audience_id: str) -> None:
        """Mark an audience deleted; calls on it are refused from now on."""
        with self.lock:
            self.audiences[audience_id].deleted = True

    @property
    def audience_id(self) -> str:
        """The first audience's id."""
        return next(iter(self.audiences))

    def audiences_by_id(self) -> dict[str, Audience]:
        return self.audiences

    # -- emulator hooks ----------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route("/{version}/me", self._me, methods=["GET"]),
            Route("/{version}/act_{account}/customaudiences", self._create, methods=["POST"]),
            Route("/{version}/{audience}/users", self._users, methods=["POST", "DELETE"]),
            Route("/{version}/{audience}/usersreplace", self._users, methods=["POST"]),
            Route("/{version}/{audience}", self._read, methods=["GET"]),
        ]

    def vendor_reset(self) -> None:
        self.audiences.clear()
        self.sessions.clear()
        for name in self._initial:
            self.create_audience(name)

    def vendor_state(self) -> dict[str, Any]:
        return {
            "audiences": {
                a.id: {
                    "name": a.name,
                    "deleted": a.deleted,
                    "size": len(a.members),
                    "members": a.members.rows(),
                }
                for a in self.audiences.values()
            },
            "sessions": {
                s.id: {
                    "audience_id": s.audience,
                    "operation": s.operation,
                    "batches": sorted(s.seqs),
                    "last_batch_seq": s.last_seq,
                    "estimated_num_total": s.estimated_total,
                    "num_received": s.received,
                    "num_invalid_entries": s.invalid,
                    "done": s.done,
                }
                for s in self.sessions.values()
            },
        }

    def vendor_error(self, status: int, message: str) -> Response:
        code = 2 if status >= 500 else 1  # "Service temporarily unavailable" / "unknown error"
        return self._graph_error(GraphError(message, code, is_transient=True), status)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        error = GraphError(
            "There have been too many calls to this ad-account. Wait a bit and try again.", 80003
        )
        return self._graph_error(error, self.throttle_status)

    def credentials(self) -> dict[str, str]:
        return {
            "META_ACCESS_TOKEN": self.access_token,
            "META_APP_SECRET": self.app_secret,
            "META_AD_ACCOUNT_ID": self.ad_account_id,
            "META_AUDIENCE_ID": self.audience_id if self.audiences else "",
        }

    def destination_config(self, base_url: str) -> dict[str, Any]:
        return {
            "type": "meta_audiences",
            "access_token": "${env:META_ACCESS_TOKEN}",
            "app_secret": "${env:META_APP_SECRET}",
            "base_url": base_url,
        }

    # -- the edge: parameters, auth, rate window ---------------------------------------------

    async def before_request(self, request: Request) -> Response | None:
        try:
            params = await self._params(request)
        except GraphError as exc:
            return self._graph_error(exc)
        request.state.params = params
        token = params.get("access_token")
        if token is None and self.accept_bearer:
            token = authorization(request, "Bearer")
        if not token:
            return self._graph_error(
                GraphError("An access token is required to request this resource.", 104)
            )
        if not hmac.compare_digest(str(token), self.access_token):
            return self._graph_error(
                GraphError("Invalid OAuth access token - Cannot parse access token", 190)
            )
        proof = params.get("appsecret_proof")
        expected = hmac.new(self.app_secret.encode(), self.access_token.encode(), hashlib.sha256)
        if proof is None and self.require_appsecret_proof:
            return self._graph_error(
                GraphError("API calls from the server require an appsecret_proof argument")
            )
        if proof is not None and not hmac.compare_digest(str(proof), expected.hexdigest()):
            return self._graph_error(
                GraphError("Invalid appsecret_proof provided in the API argument")
            )
        allowed, _, wait = self.window.hit()
        request.state.regain = wait
        return None if allowed else self.vendor_rate_limited(wait)

    def response_headers(self, request: Request) -> dict[str, str]:
        if not hasattr(request.state, "regain"):
            return {}
        w = self.window
        used = min(100, round(100 * w.used() / max(1, w.limit)))
        usage = {
            self.business_id: [
                {
                    "type": self.usage_type,
                    "call_count": used,
                    "total_cputime": used,
                    "total_time": used,
                    "estimated_time_to_regain_access": math.ceil(request.state.regain / 60),
                }
            ]
        }
        return {"X-Business-Use-Case-Usage": json.dumps(usage, separators=(",", ":"))}

    async def _params(self, request: Request) -> dict[str, Any]:
        """Query string, then form or JSON body; JSON-encoded ``payload``/``session`` decoded."""
        params: dict[str, Any] = dict(request.query_params)
        kind = request.headers.get("content-type", "")
        if "json" in kind:
            try:
                body = await request.json()
            except ValueError:
                raise GraphError("The request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise GraphError("The request body must be a JSON object")
            params.update(body)
        elif "form" in kind:
            params.update(dict(await request.form()))
        for name in ("payload", "session"):
            if isinstance(params.get(name), str):
                try:
                    params[name] = json.loads(params[name])
                except ValueError:
                    raise GraphError(f"Param {name} must be a JSON object") from None
        return params

    def _graph_error(self, error: GraphError, status: int = 400) -> JSONResponse:
        body: dict[str, Any] = {
            "message": error.message if error.code != 100 else f"(#100) {error.message}",
            "type": "OAuthException",
            "code": error.code,
            **error.extra,
            "fbtrace_id": secrets.token_urlsafe(9),
        }
        if error.subcode is not None:
            body["error_subcode"] = error.subcode
        return JSONResponse({"error": body}, status_code=status)

    def _audience(self, request: Request) -> Audience:
        version = request.path_params["version"]
        if not VERSION.fullmatch(version):
            raise GraphError(f"Unknown API version `{version}`; use one such as v25.0", 2500)
        audience = self.audiences.get(request.path_params["audience"])
        if audience is None:
            raise GraphError(
                f"Unsupported request. Object with ID '{request.path_params['audience']}' does "
                "not exist, cannot be loaded due to missing permissions, or does not support "
                "this operation",
                subcode=33,
            )
        if audience.deleted:
            raise GraphError("Custom Audience Has Been Deleted", subcode=1487366)
        return audience

    # -- endpoints ---------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        p = request.state.params
        if request.path_params["account"] != self.ad_account_id:
            return self._graph_error(GraphError("Unsupported post request", subcode=33))
        if not p.get("name") or p.get("subtype") != "CUSTOM":
            return self._graph_error(GraphError("Give a name and subtype=CUSTOM"))
        source = p.get("customer_file_source", "USER_PROVIDED_ONLY")
        if source not in FILE_SOURCES:
            return self._graph_error(
                GraphError(f"customer_file_source must be one of {', '.join(FILE_SOURCES)}")
            )
        return JSONResponse({"id": self.create_audience(str(p["name"]), source)})

    async def _me(self, request: Request) -> Response:
        """The token's user (a system user of the business), as Graph's ``/me`` answers."""
        if not VERSION.fullmatch(request.path_params["version"]):
            return self._graph_error(GraphError("Unknown API version", 2500))
        return JSONResponse({"id": f"{self.business_id}01", "name": "Backhaul system user"})

    async def _read(self, request: Request) -> Response:
        with self.lock:
            try:
                audience = self._audience(request)
            except GraphError as exc:
                return self._graph_error(exc)
            return JSONResponse(
                {
                    "id": audience.id,
                    "name": audience.name,
                    "subtype": "CUSTOM",
                    "customer_file_source": audience.customer_file_source,
                }
            )

    async def _users(self, request: Request) -> Response:
        replace = request.url.path.endswith("/usersreplace")
        operation = "replace" if replace else ("remove" if request.method == "DELETE" else "add")
        p = request.state.params
        with self.lock:
            try:
                audience = self._audience(request)
                schema, rows = self._payload(p)
                session = self._session(p.get("session"), audience, operation, required=replace)
            except GraphError as exc:
                return self._graph_error(exc)
            invalid, samples = 0, dict[str, str]()
            target = (
                audience.members if session is None or session.staged is None else session.staged
            )
            for row in rows:
                problem = self._row_problem(schema, row)
                if problem is not None:
                    invalid += 1
                    if len(samples) < self.max_samples:
                        samples[problem[0]] = problem[1]
                    continue
                member = [(k, v) for k, v in zip(schema, row, strict=True) if v != ""]
                if operation == "remove":
                    target.remove(member)
                else:
                    target.add(member)
            session_id = session.id if session is not None else str(secrets.randbelow(10**15))
            if session is not None:
                session.received += len(rows)
                session.invalid += invalid
                self._maybe_finish(session, audience)
        return JSONResponse(
            {
                "audience_id": audience.id,
                "session_id": session_id,
                "num_received": len(rows),
                "num_invalid_entries": invalid,
                "invalid_entry_samples": samples,
            }
        )

    # -- rules -------------------------------------------------------------------------------

    def _payload(self, p: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
        payload = p.get("payload")
        if not isinstance(payload, dict):
            raise GraphError("The parameter payload is required")
        schema_raw, data = payload.get("schema"), payload.get("data")
        if not isinstance(data, list) or not data:
            raise GraphError("payload.data must be a non-empty array")
        if len(data) > self.max_rows:
            raise GraphError(
                f"Too many rows: {len(data)} given, at most {self.max_rows} per request"
            )
        if isinstance(schema_raw, str):
            key = SINGLE.get(schema_raw, schema_raw)
            if key not in HASHED | UNHASHED:
                raise GraphError(f"Unknown schema key `{schema_raw}`")
            schema = [key]
            data = [[row] for row in data]
        elif isinstance(schema_raw, list) and schema_raw:
            schema = [str(k) for k in schema_raw]
            unknown = [k for k in schema if k not in HASHED | UNHASHED]
            if unknown:
                raise GraphError(f"Unknown schema key `{unknown[0]}`")
            if len(set(schema)) != len(schema):
                raise GraphError("A schema key is given twice")
            for i, row in enumerate(data):
                if not isinstance(row, list) or len(row) != len(schema):
                    raise GraphError(
                        f"Row {i} of payload.data must have {len(schema)} values, one per "
                        "schema key"
                    )
        else:
            raise GraphError("payload.schema must be a key or a non-empty list of keys")
        if "APPUID" in schema and not p.get("app_ids"):
            raise GraphError("app_ids is required for the APPUID schema")
        return schema, data

    def _row_problem(self, schema: list[str], row: list[Any]) -> tuple[str, str] | None:
        """(sample, reason) when a row cannot be used."""
        if all(v == "" or v is None for v in row):
            return "", "The row has no identifier"
        for key, value in zip(schema, row, strict=True):
            if value == "" or value is None:
                continue
            if str(value) in self.faults.rejects:
                return str(value), self.faults.rejects[str(value)]
            if key in HASHED:
                problem = hash_problem(value, lowercase_only=self.lowercase_hashes_only)
                if problem is not None:
                    return str(value), f"{key}: {problem}"
            elif key == "MADID" and not (
                isinstance(value, str) and MOBILE_ID.fullmatch(value) and value == value.lower()
            ):
                return str(value), "MADID: expected a lower-case IDFA or AAID"
            elif not isinstance(value, str):
                return str(value), f"{key}: expected a string"
        return None

    def _session(
        self, raw: Any, audience: Audience, operation: str, *, required: bool
    ) -> Session | None:
        if raw is None:
            if required:
                raise GraphError("A session is required for usersreplace")
            return None
        if not isinstance(raw, dict):
            raise GraphError("session must be a JSON object")
        try:
            sid = str(int(raw["session_id"]))
            seq = int(raw["batch_seq"])
            last = raw.get("last_batch_flag", False)
            estimate = raw.get("estimated_num_total")
            estimate = None if estimate is None else int(estimate)
        except (KeyError, TypeError, ValueError):
            raise GraphError(
                "session needs an integer session_id and batch_seq (and a boolean last_batch_flag)"
            ) from None
        if seq < 1 or not isinstance(last, bool):
            raise GraphError("session.batch_seq starts at 1; last_batch_flag is true or false")
        session = self.sessions.get(sid)
        if session is None:
            session = Session(sid, audience.id, operation, estimate)
            if operation == "replace":
                session.staged = Membership()
            self.sessions[sid] = session
        if session.audience != audience.id or session.operation != operation:
            raise GraphError(
                f"Session {sid} belongs to another upload ({session.operation} on audience "
                f"{session.audience}); use a new session_id"
            )
        if session.last_seq is not None and seq > session.last_seq:
            raise GraphError(
                f"Session {sid} ended with batch {session.last_seq}; start a new session"
            )
        if last:
            if session.seqs and max(session.seqs) > seq:
                raise GraphError(f"Batch {seq} cannot be the last: batch {max(session.seqs)} came")
            session.last_seq = seq
        session.seqs.add(seq)
        return session

    @staticmethod
    def _maybe_finish(session: Session, audience: Audience) -> None:
        if session.last_seq is None or session.done:
            return
        if not set(range(1, session.last_seq + 1)) <= session.seqs:
            return  # earlier batches are still on their way
        session.done = True
        if session.staged is not None:  # replace: the new membership takes over at once
            audience.members = session.staged
            session.staged = None
