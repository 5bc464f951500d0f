"""Google Ads API emulator: Customer Match lists filled through offline user data jobs (REST).

What it enforces, as the Google Ads API does: a Bearer access token (fixed, or issued by
``POST /token`` for the refresh token) and the ``developer-token`` header (401
``UNAUTHENTICATED`` otherwise); the customer in the path; jobs of type
``CUSTOMER_MATCH_USER_LIST`` on an existing user list; ``:addOperations`` only while the job
is ``PENDING`` (``JOB_ALREADY_STARTED``), at most 100,000 user identifiers per request and 20
per operation (``TOO_MANY_USER_IDENTIFIERS``), identifiers that fit the list's upload key
type, hashed e-mail, phone and names as lower-case SHA-256 hex (``INVALID_SHA256_FORMAT``),
``countryCode`` as an ISO code, ``removeAll`` only first, no creates and removes in one job
(``CONFLICTING_OPERATION``); with ``enablePartialFailure`` the valid operations are kept and
the others reported in ``partialFailureError`` (HTTP 200), without it any error refuses the
whole request; ``:run`` refused with ``CONCURRENT_MODIFICATION`` while another job on the
same list is running; jobs move ``PENDING`` → ``RUNNING`` → ``SUCCESS`` (or ``FAILED``) over
status polls (``googleAds:search``) and change the list only when they succeed; a rolling
request window answered with 429 ``RESOURCE_EXHAUSTED`` and a ``retryDelay``.

Lists keep their members (see ``_audience``): ``emulator.values(list, "hashedEmail")`` is
the set of e-mail hashes a list holds.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._audience import AudienceInspection
from backhaul.testing.emulators._customer_match import KEY_FIELDS
from backhaul.testing.emulators._customer_match import AdsError
from backhaul.testing.emulators._customer_match import Job
from backhaul.testing.emulators._customer_match import OperationRules
from backhaul.testing.emulators._customer_match import UserList
from backhaul.testing.emulators._google import GoogleOAuth
from backhaul.testing.emulators._google import google_error
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow

VERSION = re.compile(r"v\d+")
CONSENT = {"GRANTED", "DENIED", "UNSPECIFIED", "UNKNOWN"}
# A refusal's HTTP status follows from its error's kind: Google answers UNAUTHENTICATED with
# 401 and PERMISSION_DENIED with 403; every other refusal here is an INVALID_ARGUMENT, 400.
STATUS_OF_KIND = {"authenticationError": 401, "authorizationError": 403}
JOB_QUERY = re.compile(r"\bFROM\s+offline_user_data_job\b", re.IGNORECASE)
LIST_QUERY = re.compile(r"\bFROM\s+user_list\b", re.IGNORECASE)
RESOURCE_IN_QUERY = re.compile(r"resource_name\s*=\s*'([^']+)'")
STATUS_IN_QUERY = re.compile(r"offline_user_data_job\.status\s*=\s*'([A-Z_]+)'", re.IGNORECASE)


class GoogleAdsEmulator(AudienceInspection, Emulator):
    """One Google Ads customer with Customer Match user lists, in memory.

    Args:
        developer_token: The ``developer-token`` header accepted.
        access_token: A Bearer token accepted from the start.
        client_id: OAuth client of the token endpoint.
        client_secret: Its secret.
        refresh_token: The refresh token the token endpoint exchanges.
        customer_id: The customer (digits, no dashes).
        user_lists: Names of CONTACT_INFO lists created at start (the sandbox gets one).
        max_identifiers_per_request: Most user identifiers in one addOperations (100,000).
        max_identifiers_per_operation: Most identifiers in one operation (20).
        polls_to_finish: Status polls a running job takes to finish.
        allow_mixed_operations: Accept creates and removes in one job (Google's
            ``CONFLICTING_OPERATION`` says no; whether it applies to Customer Match is
            unverified, so the strict answer is the default).
        remove_all_first: Accept ``removeAll`` only as a job's first operation (Google's
            ``INVALID_OPERATION_ORDER``; whether it is per job or per request is unverified).
        require_full_address: ``addressInfo`` needs all of first and last name, country and
            postal code (unverified).
        rate_limit: Requests per ``rate_window`` seconds (Google publishes no fixed rate).
        rate_window: Length of the rolling window in seconds.
        lowercase_hashes_only: Refuse upper-case hex digests as malformed.
        clock: Monotonic clock of the rate window.
        seed: Seed of the random fault switch.
    """

    vendor: ClassVar[str] = "google_ads"
    email_key: ClassVar[str] = "hashedEmail"

    def __init__(
        self,
        *,
        developer_token: str = "emulator-developer-token",
        access_token: str = "ya29.emulator-access-token",
        client_id: str = "emulator-client.apps.googleusercontent.com",
        client_secret: str = "emulator-client-secret",
        refresh_token: str = "1//emulator-refresh-token",
        customer_id: str = "7693729833",
        user_lists: Sequence[str] = ("Backhaul sandbox list",),
        max_identifiers_per_request: int = 100_000,
        max_identifiers_per_operation: int = 20,
        polls_to_finish: int = 2,
        allow_mixed_operations: bool = False,
        remove_all_first: bool = True,
        require_full_address: bool = True,
        rate_limit: int = 1_000,
        rate_window: float = 60.0,
        lowercase_hashes_only: bool = True,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.developer_token = developer_token
        self.oauth = GoogleOAuth(
            client_id=client_id,
            client_secret=client_secret,
            refresh_token=refresh_token,
            tokens=(access_token,),
            scope="https://www.googleapis.com/auth/adwords",
        )
        self.access_token = access_token
        self.customer_id = customer_id
        self.max_per_request = max_identifiers_per_request
        self.max_per_operation = max_identifiers_per_operation
        self.polls_to_finish = max(1, polls_to_finish)
        self.allow_mixed_operations = allow_mixed_operations
        self.remove_all_first = remove_all_first
        self.require_full_address = require_full_address
        self.window = SlidingWindow(rate_limit, rate_window, clock)
        self.lowercase_hashes_only = lowercase_hashes_only
        self._initial = tuple(user_lists)
        self._ids = itertools.count(709078448)
        self._failures: list[str] = []
        self.lists: dict[str, UserList] = {}
        self.jobs: dict[str, Job] = {}
        self.vendor_reset()

    # -- set-up and inspection ---------------------------------------------------------------

    def add_user_list(self, name: str, upload_key_type: str = "CONTACT_INFO") -> str:
        """A new empty Customer Match list; its resource name."""
        with self.lock:
            user_list = UserList(str(next(self._ids)), self.customer_id, name, upload_key_type)
            self.lists[user_list.resource_name] = user_list
            return user_list.resource_name

    @property
    def user_list(self) -> str:
        """The first list's resource name."""
        return next(iter(self.lists))

    def audiences_by_id(self) -> dict[str, UserList]:
        return self.lists

    def fail_next_jobs(self, n: int = 1, reason: str = "UNKNOWN") -> None:
        """The next ``n`` jobs to run end ``FAILED`` with ``reason`` (the list unchanged)."""
        with self.lock:
            self._failures.extend([reason] * n)

    def finish_jobs(self) -> None:
        """Finish every running job now, as if enough status polls had come."""
        with self.lock:
            for job in self.jobs.values():
                if job.status == "RUNNING":
                    self._finish(job)

    # -- emulator hooks ----------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        base = "/{version}/customers/{cid}"
        return [
            Route("/token", self.oauth.token_endpoint, methods=["POST"]),
            Route(f"{base}/offlineUserDataJobs:create", self._create, methods=["POST"]),
            Route(f"{base}/offlineUserDataJobs/{{action}}", self._job_action, methods=["POST"]),
            Route(f"{base}/googleAds:search", self._search, methods=["POST"]),
            Route(f"{base}/userLists:mutate", self._mutate_lists, methods=["POST"]),
        ]

    def vendor_reset(self) -> None:
        self.lists.clear()
        self.jobs.clear()
        self._failures.clear()
        for name in self._initial:
            self.add_user_list(name)

    def vendor_state(self) -> dict[str, Any]:
        return {
            "user_lists": {
                name: {
                    "name": ul.name,
                    "upload_key_type": ul.upload_key_type,
                    "size": len(ul.members),
                    "members": ul.members.rows(),
                }
                for name, ul in self.lists.items()
            },
            "jobs": {
                job.resource_name: {
                    "user_list": job.user_list.resource_name,
                    "status": job.status,
                    "operations": len(job.operations),
                    "failure_reason": job.failure_reason,
                }
                for job in self.jobs.values()
            },
        }

    def vendor_error(self, status: int, message: str) -> Response:
        return google_error(status, message)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        delay = f"{max(1, round(retry_after))}s"
        error = AdsError("quotaError", "RESOURCE_TEMPORARILY_EXHAUSTED", "Too many requests.")
        body = error.body()
        body["details"] = {"quotaErrorDetails": {"rateScope": "DEVELOPER", "retryDelay": delay}}
        return google_error(
            429, "Resource has been exhausted (e.g. check quota).", [self._failure_raw([body])]
        )

    def credentials(self) -> dict[str, str]:
        return {
            "GOOGLE_ADS_DEVELOPER_TOKEN": self.developer_token,
            "GOOGLE_ADS_ACCESS_TOKEN": self.access_token,
            "GOOGLE_ADS_CLIENT_ID": self.oauth.client_id,
            "GOOGLE_ADS_CLIENT_SECRET": self.oauth.client_secret,
            "GOOGLE_ADS_REFRESH_TOKEN": self.oauth.refresh_token,
            "GOOGLE_ADS_CUSTOMER_ID": self.customer_id,
            "GOOGLE_ADS_USER_LIST": self.user_list if self.lists else "",
        }

    def destination_config(self, base_url: str) -> dict[str, Any]:
        return {
            "type": "google_ads",
            "base_url": base_url,
            "token_url": f"{base_url}/token",
            "customer_id": self.customer_id,
            "developer_token": "${env:GOOGLE_ADS_DEVELOPER_TOKEN}",
            "client_id": "${env:GOOGLE_ADS_CLIENT_ID}",
            "client_secret": "${env:GOOGLE_ADS_CLIENT_SECRET}",
            "refresh_token": "${env:GOOGLE_ADS_REFRESH_TOKEN}",
        }

    # -- the edge ----------------------------------------------------------------------------

    async def before_request(self, request: Request) -> Response | None:
        if request.url.path == "/token":
            return None
        if self.oauth.valid(request) is None:
            return self._refuse(
                "authenticationError",
                "OAUTH_TOKEN_INVALID",
                "Request had invalid authentication credentials.",
            )
        if request.headers.get("developer-token") != self.developer_token:
            return self._refuse(
                "authenticationError",
                "DEVELOPER_TOKEN_INVALID",
                "The developer token is not valid.",
            )
        login = request.headers.get("login-customer-id")
        if login is not None and not login.isdigit():
            return self._refuse(
                "requestError",
                "INVALID_CUSTOMER_ID",
                "login-customer-id must be digits only, without dashes.",
            )
        if not VERSION.fullmatch(request.path_params.get("version", "")):
            return google_error(404, "The requested URL was not found: use a version such as v23.")
        if request.path_params.get("cid") != self.customer_id:
            return self._refuse(
                "authorizationError",
                "USER_PERMISSION_DENIED",
                "The caller does not have permission to access this customer.",
            )
        allowed, _, wait = self.window.hit()
        return None if allowed else self.vendor_rate_limited(wait)

    def _failure_raw(self, errors: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "@type": "type.googleapis.com/google.ads.googleads.v23.errors.GoogleAdsFailure",
            "errors": errors,
            "requestId": secrets.token_urlsafe(12),
        }

    def _refuse(self, kind: str, code: str, message: str) -> Response:
        status = STATUS_OF_KIND.get(kind, 400)
        return self._errors(status, [AdsError(kind, code, message)])

    def _job_already_started(self) -> Response:
        return self._refuse(
            "offlineUserDataJobError",
            "JOB_ALREADY_STARTED",
            "Once the upload job is started, new operations cannot be added.",
        )

    def _errors(self, status: int, errors: list[AdsError]) -> Response:
        message = "Request contains an invalid argument." if status == 400 else errors[0].message
        return google_error(status, message, [self._failure_raw([e.body() for e in errors])])

    # -- endpoints ---------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        body = await self._body(request)
        job_spec = body.get("job") if isinstance(body, dict) else None
        if not isinstance(job_spec, dict) or job_spec.get("type") != "CUSTOMER_MATCH_USER_LIST":
            return self._refuse(
                "fieldError", "INVALID_VALUE", "job.type must be CUSTOMER_MATCH_USER_LIST."
            )
        meta = job_spec.get("customerMatchUserListMetadata") or {}
        consent = meta.get("consent") or {}
        if any(v not in CONSENT for v in consent.values()):
            return self._refuse(
                "fieldError",
                "INVALID_VALUE",
                "consent values are GRANTED, DENIED or UNSPECIFIED.",
            )
        with self.lock:
            user_list = self.lists.get(str(meta.get("userList")))
            if user_list is None:
                return self._refuse(
                    "offlineUserDataJobError",
                    "INVALID_USER_LIST_ID",
                    "The user list ID provided for the job is invalid.",
                )
            job = Job(str(next(self._ids)), self.customer_id, user_list)
            self.jobs[job.id] = job
        return JSONResponse({"resourceName": job.resource_name})

    async def _job_action(self, request: Request) -> Response:
        job_id, _, action = request.path_params["action"].partition(":")
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or action not in ("addOperations", "run"):
                return self._refuse(
                    "mutateError",
                    "RESOURCE_NOT_FOUND",
                    "The offline user data job was not found.",
                )
            if job.status != "PENDING":
                return self._job_already_started()
        if action == "run":
            return self._run(job)
        return await self._add_operations(request, job)

    async def _add_operations(self, request: Request, job: Job) -> Response:
        body = await self._body(request)
        ops = body.get("operations") if isinstance(body, dict) else None
        if not isinstance(ops, list) or not ops:
            return self._refuse(
                "fieldError", "REQUIRED_NONEMPTY_LIST", "operations must be a non-empty list."
            )
        partial = bool(body.get("enablePartialFailure"))
        total = sum(len(OperationRules.identifiers(op)) for op in ops)
        if total > self.max_per_request:
            return self._refuse(
                "offlineUserDataJobError",
                "TOO_MANY_USER_IDENTIFIERS",
                f"Maximum number of user identifiers allowed per request is {self.max_per_request} and per operation is {self.max_per_operation}.",
            )
        with self.lock:
            if job.status != "PENDING":
                return self._job_already_started()
            kinds = {kind for kind, _ in job.operations}
            rules = self._rules()
            accepted: list[tuple[str, frozenset[tuple[str, str]]]] = []
            errors: list[AdsError] = []
            for i, op in enumerate(ops):
                try:
                    kind, member = rules.operation(
                        i, op, job, kinds, first=not job.operations and i == 0
                    )
                except AdsError as exc:
                    errors.append(exc)
                    continue
                kinds.add(kind)
                accepted.append((kind, member))
            if errors and not partial:
                return self._errors(400, errors)
            job.operations.extend(accepted)
        if not errors:
            return JSONResponse({})
        first = errors[0].message
        message = (
            first if len(errors) == 1 else f"Multiple errors in 'details'. First error: {first}"
        )
        status = {
            "code": 3,
            "message": message,
            "details": [self._failure_raw([e.body() for e in errors])],
        }
        return JSONResponse({"partialFailureError": status})

    def _run(self, job: Job) -> Response:
        with self.lock:
            busy = [
                j
                for j in self.jobs.values()
                if j.status == "RUNNING" and j.user_list is job.user_list
            ]
            if busy:
                return self._refuse(
                    "databaseError",
                    "CONCURRENT_MODIFICATION",
                    "Multiple requests were attempting to modify the same resource at once. Retry the request.",
                )
            job.status = "RUNNING"
            job.fail_with = self._failures.pop(0) if self._failures else None
            operation = f"customers/{self.customer_id}/operations/{secrets.randbelow(10**12)}"
        return JSONResponse({"name": operation})

    async def _search(self, request: Request) -> Response:
        body = await self._body(request)
        query = str(body.get("query", "")) if isinstance(body, dict) else ""
        wanted = RESOURCE_IN_QUERY.search(query)
        status = STATUS_IN_QUERY.search(query)
        with self.lock:
            if JOB_QUERY.search(query):
                rows = []
                for job in self.jobs.values():
                    if wanted and wanted.group(1) != job.resource_name:
                        continue
                    if status and status.group(1).upper() != job.status:
                        continue
                    if job.status == "RUNNING":
                        job.polls += 1
                        if job.polls >= self.polls_to_finish:
                            self._finish(job)
                    rows.append(
                        {
                            "offlineUserDataJob": {
                                "resourceName": job.resource_name,
                                "id": job.id,
                                "type": "CUSTOMER_MATCH_USER_LIST",
                                "status": job.status,
                                "failureReason": job.failure_reason,
                                "customerMatchUserListMetadata": {
                                    "userList": job.user_list.resource_name
                                },
                            }
                        }
                    )
            elif LIST_QUERY.search(query):
                rows = [
                    {"userList": {"resourceName": ul.resource_name, "id": ul.id, "name": ul.name}}
                    for ul in self.lists.values()
                    if not wanted or wanted.group(1) == ul.resource_name
                ]
            else:
                return self._refuse(
                    "queryError",
                    "PROHIBITED_RESOURCE_TYPE_IN_FROM_CLAUSE",
                    "This emulator answers queries FROM offline_user_data_job or user_list.",
                )
        return JSONResponse(
            {"results": rows, "fieldMask": "", "requestId": secrets.token_urlsafe(12)}
        )

    async def _mutate_lists(self, request: Request) -> Response:
        body = await self._body(request)
        ops = body.get("operations") if isinstance(body, dict) else None
        if not isinstance(ops, list) or not ops:
            return self._refuse(
                "fieldError", "REQUIRED_NONEMPTY_LIST", "operations must be a non-empty list."
            )
        results = []
        for op in ops:
            spec = op.get("create") if isinstance(op, dict) else None
            if not isinstance(spec, dict) or not spec.get("name"):
                return self._refuse("fieldError", "REQUIRED", "Each operation needs create.name.")
            if any(ul.name == spec["name"] for ul in self.lists.values()):
                return self._refuse(
                    "userListError",
                    "NAME_ALREADY_USED",
                    "Name is already being used for another user list for the account.",
                )
            key_type = (spec.get("crmBasedUserList") or {}).get("uploadKeyType", "CONTACT_INFO")
            if key_type not in KEY_FIELDS:
                return self._refuse(
                    "fieldError",
                    "INVALID_VALUE",
                    f"uploadKeyType is one of {', '.join(KEY_FIELDS)}.",
                )
            results.append({"resourceName": self.add_user_list(str(spec["name"]), key_type)})
        return JSONResponse({"results": results})

    # -- rules -------------------------------------------------------------------------------

    @staticmethod
    async def _body(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            return None

    def _finish(self, job: Job) -> None:
        if job.fail_with is not None:
            job.status, job.failure_reason = "FAILED", job.fail_with
            return
        job.apply()
        job.status = "SUCCESS"

    def _rules(self) -> OperationRules:
        return OperationRules(
            max_per_request=self.max_per_request,
            max_per_operation=self.max_per_operation,
            allow_mixed_operations=self.allow_mixed_operations,
            remove_all_first=self.remove_all_first,
            require_full_address=self.require_full_address,
            lowercase_hashes_only=self.lowercase_hashes_only,
            rejects=dict(self.faults.rejects),
        )
