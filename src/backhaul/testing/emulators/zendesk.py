"""Zendesk Support emulator: users, organizations and tickets with asynchronous bulk jobs.

What it enforces, as Zendesk does: Basic ``{email}/token:{api_token}`` or Bearer OAuth auth
(401 ``Couldn't authenticate you``), at most ``max_batch`` items per bulk call (400), bulk
writes answered with a queued ``job_status`` that moves queued → working → completed over
polls of ``GET /api/v2/job_statuses/{id}``, per-item results in request order, identity by
``external_id`` then ``email`` for users, unique organization names, a per-minute request
limit (429 + ``Retry-After``, ``X-Rate-Limit`` headers) and a cap on unfinished jobs.
The account's custom user and organization fields are listed by ``GET
/api/v2/user_fields`` and ``/api/v2/organization_fields`` (custom fields only, 100 a page at
most, offset pages with ``next_page``); their keys are the keys of a record's ``user_fields``
and ``organization_fields``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import InitVar
from dataclasses import dataclass
from typing import Any
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import PlainTextResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._http import authorization
from backhaul.testing.emulators._http import basic_credentials
from backhaul.testing.emulators._jobs import Job
from backhaul.testing.emulators.base import DestinationFile
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow

OBJECTS = ("users", "organizations", "tickets")
SINGULAR = {"users": "user", "organizations": "organization", "tickets": "ticket"}
Result = dict[str, Any]
STAGES = ("queued", "working", "completed")
FIELD_KINDS = ("user_fields", "organization_fields")
FIELD_TYPES = frozenset(
    {"text", "textarea", "checkbox", "date", "integer", "decimal", "regexp", "dropdown"}
    | {"lookup", "multiselect"}
)
# A fresh emulated account has one custom field of each kind, the ``score`` tests write.
DEFAULT_FIELDS: dict[str, list[dict[str, Any]]] = {
    kind: [{"key": "score", "type": "integer", "title": "Score"}] for kind in FIELD_KINDS
}


@dataclass(eq=False, repr=False, kw_only=True)
class ZendeskEmulator(Emulator):
    """An in-memory Zendesk Support account.

    Args:
        email: The agent email of API-token auth.
        api_token: The API token (Basic ``{email}/token:{api_token}``).
        oauth_token: A Bearer token also accepted.
        max_batch: Most items in one bulk call (Zendesk: 100).
        rate_limit: Requests allowed per ``rate_window`` seconds (plan dependent: 200 to 2,500/min).
        rate_window: Length of the rate window in seconds (Zendesk: 60).
        polls_to_complete: Status polls before a job completes (the first moves it to working).
        max_jobs: Most jobs queued or working at once; more are refused with 429.
        user_fields: The account's custom user fields, each ``{"key", "type", "title"}``
            and optionally ``active`` (default: one integer field ``score``).
        organization_fields: The same for organizations.
        seed: Seed of the random fault switches.

    ``POST /_emulator/faults`` with ``{"user_fields": [...]}`` or
    ``{"organization_fields": [...]}`` replaces the account's fields of that kind.
    """

    vendor: ClassVar[str] = "zendesk"
    destination_file: ClassVar[DestinationFile] = DestinationFile(
        {"email": "ZENDESK_EMAIL", "api_token": "ZENDESK_API_TOKEN"},
        settings={"poll_interval_seconds": 0.05},
    )

    email: str = "agent@example.com"
    api_token: str = "zd-emulator-token"
    oauth_token: str = "zd-emulator-oauth"
    max_batch: int = 100
    rate_limit: InitVar[int] = 700
    rate_window: InitVar[float] = 60.0
    polls_to_complete: int = 2
    max_jobs: int = 30
    user_fields: InitVar[Sequence[Mapping[str, Any]] | None] = None
    organization_fields: InitVar[Sequence[Mapping[str, Any]] | None] = None
    seed: InitVar[int] = 0

    def __post_init__(
        self,
        rate_limit: int,
        rate_window: float,
        user_fields: Sequence[Mapping[str, Any]] | None,
        organization_fields: Sequence[Mapping[str, Any]] | None,
        seed: int,
    ) -> None:
        super().__init__(seed=seed)
        self.window = SlidingWindow(rate_limit, rate_window)
        self.polls_to_complete = max(1, self.polls_to_complete)
        self.records: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in OBJECTS}
        self.jobs: dict[str, Job[list[Result]]] = {}
        self._ids = itertools.count(1001)
        self._field_ids = itertools.count(7001)
        given = {"user_fields": user_fields, "organization_fields": organization_fields}
        self._initial_fields = {
            kind: list(DEFAULT_FIELDS[kind] if given[kind] is None else given[kind] or [])
            for kind in FIELD_KINDS
        }
        self.custom_fields: dict[str, list[dict[str, Any]]] = {}
        for kind in FIELD_KINDS:
            self.define_fields(kind, self._initial_fields[kind])

    # -- hooks -----------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []

        def add(path: str, endpoint: Any, methods: list[str]) -> None:
            routes.append(Route(path, endpoint, methods=methods))
            if not path.endswith("}"):
                routes.append(Route(path + ".json", endpoint, methods=methods))

        add("/api/v2/users/me", self._me, ["GET"])
        add("/api/v2/users/create_or_update_many", self._users_upsert, ["POST"])
        add("/api/v2/users/search", self._users_search, ["GET"])
        add("/api/v2/tickets", self._tickets, ["GET", "POST"])
        for name in OBJECTS:
            add(f"/api/v2/{name}/create_many", self._create_many, ["POST"])
            add(f"/api/v2/{name}/update_many", self._update_many, ["PUT"])
            add(f"/api/v2/{name}/show_many", self._show_many, ["GET"])
            add(f"/api/v2/{name}/destroy_many", self._destroy_many, ["DELETE"])
        add("/api/v2/job_statuses/{id}", self._job_status, ["GET"])
        for kind in FIELD_KINDS:
            add(f"/api/v2/{kind}", self._custom_fields, ["GET"])
        return routes

    def vendor_error(self, status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        # Zendesk answers a rate limit in plain text with a whole-second Retry-After.
        return PlainTextResponse(
            "Number of allowed API requests per minute exceeded",
            status_code=429,
            headers={"Retry-After": str(max(1, round(retry_after)))},
        )

    def vendor_state(self) -> dict[str, Any]:
        return {name: list(rows.values()) for name, rows in self.records.items()}

    def vendor_reset(self) -> None:
        for rows in self.records.values():
            rows.clear()
        self.jobs.clear()
        for kind in FIELD_KINDS:
            self.define_fields(kind, self._initial_fields[kind])

    def vendor_control(self, spec: dict[str, Any]) -> None:
        """``{"user_fields": [...]}`` / ``{"organization_fields": [...]}`` replace the
        account's custom fields of that kind."""
        for kind in FIELD_KINDS:
            if kind in spec:
                self.define_fields(kind, list(spec[kind] or []))

    def define_fields(self, kind: str, fields: Sequence[Mapping[str, Any]]) -> None:
        """Set the custom fields of ``kind`` (``user_fields`` or ``organization_fields``),
        completed with the properties Zendesk reports for each."""
        if kind not in FIELD_KINDS:
            raise ValueError(f"no custom field kind {kind!r}: use one of {FIELD_KINDS}")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        made = []
        for position, given in enumerate(fields):
            type_ = str(given.get("type", "text"))
            if type_ not in FIELD_TYPES or not given.get("key"):
                raise ValueError(f"a custom field needs a `key` and a type of {FIELD_TYPES}")
            field_id = next(self._field_ids)
            made.append(
                {
                    "url": f"/api/v2/{kind}/{field_id}.json",
                    "id": field_id,
                    "type": type_,
                    "key": str(given["key"]),
                    "title": str(given.get("title") or given["key"]),
                    "raw_title": str(given.get("title") or given["key"]),
                    "description": str(given.get("description", "")),
                    "raw_description": str(given.get("description", "")),
                    "position": position,
                    "active": bool(given.get("active", True)),
                    "system": False,
                    "regexp_for_validation": given.get("regexp_for_validation"),
                    "created_at": now,
                    "updated_at": now,
                }
            )
        self.custom_fields[kind] = made

    # -- inspection helpers ------------------------------------------------------------------

    def find(self, object: str, field_name: str, value: Any) -> dict[str, Any] | None:
        """The record of ``object`` whose ``field_name`` equals ``value`` (case-insensitive)."""
        with self.lock:
            return self._find(object, field_name, value)

    # -- plumbing ----------------------------------------------------------------------------

    async def before_request(self, request: Request) -> Response | None:
        """Auth first, then the rate window (a refused login does not count)."""
        basic = basic_credentials(request)
        good = basic == (f"{self.email}/token", self.api_token) or (
            authorization(request, "Bearer") == self.oauth_token
        )
        if not good:
            return JSONResponse({"error": "Couldn't authenticate you"}, status_code=401)
        allowed, remaining, wait = self.window.hit()
        request.state.remaining = remaining
        return None if allowed else self.vendor_rate_limited(wait)

    def response_headers(self, request: Request) -> dict[str, str]:
        if not hasattr(request.state, "remaining"):  # refused before the window
            return {}
        return {
            "X-Rate-Limit": str(self.window.limit),
            "X-Rate-Limit-Remaining": str(request.state.remaining),
        }

    @staticmethod
    def _invalid(description: str, status: int = 400) -> JSONResponse:
        return JSONResponse(
            {"error": "InvalidValue", "description": description}, status_code=status
        )

    @staticmethod
    def _object(request: Request) -> str:
        return request.url.path.split("/")[3]

    async def _items(self, request: Request, object: str) -> list[Any] | Response:
        try:
            body = await request.json()
        except ValueError:
            return self._invalid("The request body is not valid JSON")
        items = body.get(object) if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return self._invalid(f"Parameter `{object}` must be a non-empty array")
        if len(items) > self.max_batch:
            return self._invalid(
                f"Too many {object}: {len(items)} given, at most {self.max_batch} per request",
            )
        return items

    def _queue(
        self, request: Request, job_type: str, total: int, work: Callable[[], list[Result]]
    ) -> Response:
        with self.lock:
            busy = sum(1 for j in self.jobs.values() if not j.done)
            if busy >= self.max_jobs:
                return JSONResponse(
                    {
                        "error": "TooManyJobs",
                        "description": f"At most {self.max_jobs} jobs "
                        "may be queued or running at once; wait for some to finish",
                    },
                    status_code=429,
                )
            job = Job(total, work, STAGES, self.polls_to_complete, kind=job_type)
            self.jobs[job.id] = job
        return JSONResponse({"job_status": self._job_body(request, job)})

    def _job_body(self, request: Request, job: Job[list[Result]]) -> dict[str, Any]:
        done = job.status == "completed"
        return {
            "id": job.id,
            "job_type": job.kind,
            "url": f"{request.base_url}api/v2/job_statuses/{job.id}.json",
            "total": job.total,
            "progress": job.total if done else (0 if job.status == "working" else None),
            "status": job.status,
            "message": "Completed at " + time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime())
            if done
            else None,
            "results": job.result,
        }

    def _find(self, object: str, field_name: str, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        wanted = str(value).lower()
        for row in self.records[object].values():
            if row.get(field_name) is not None and str(row[field_name]).lower() == wanted:
                return row
        return None

    def _rejected(self, object: str, item: dict[str, Any]) -> str | None:
        keys = ("external_id", "email") if object == "users" else ("external_id", "name")
        for key in keys:
            value = item.get(key)
            if value is not None and str(value) in self.faults.rejects:
                return self.faults.rejects[str(value)]
        return None

    # -- record rules ------------------------------------------------------------------------

    def _problem(
        self, object: str, item: Any, current: dict[str, Any] | None
    ) -> tuple[str, str] | None:
        """(error, details) when ``item`` cannot be written over ``current``."""
        if not isinstance(item, dict):
            return "InvalidValue", "Each item must be an object"
        kind = {"users": "UserUpdateError", "organizations": "OrganizationUpdateError"}.get(
            object, "RecordInvalid"
        )
        fault = self._rejected(object, item)
        if fault is not None:
            return kind, fault
        own = None if current is None else current["id"]
        if object == "users":
            email = item.get("email")
            if email is not None and (
                "@" not in str(email) or "." not in str(email).split("@")[-1]
            ):
                return kind, f"Email: {email} is not properly formatted"
            other = self._find("users", "email", email)
            if other is not None and other["id"] != own:
                return kind, f"Email: {email} is already being used by another user"
            if current is None and not item.get("name"):
                return kind, "Name: is too short (minimum one character)"
        if object == "organizations":
            other = self._find("organizations", "name", item.get("name"))
            if other is not None and other["id"] != own:
                return kind, "Name: has already been taken"
            if current is None and not item.get("name"):
                return kind, "Name: cannot be blank"
        if object == "tickets" and current is None:
            comment = item.get("comment")
            if not (
                isinstance(comment, dict) and (comment.get("body") or comment.get("html_body"))
            ) and not item.get("description"):
                return kind, "Description: cannot be blank"
        if object != "tickets" and item.get("external_id") is not None:
            other = self._find(object, "external_id", item["external_id"])
            if other is not None and other["id"] != own:
                return kind, "External: has already been taken"
        return None

    def _write(
        self, object: str, item: dict[str, Any], current: dict[str, Any] | None
    ) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if current is None:
            current = {"id": next(self._ids), "created_at": now}
            if object == "users":
                current["role"] = "end-user"
            if object == "tickets":
                current["status"] = "new"
            self.records[object][current["id"]] = current
        for key, value in item.items():
            if key == "id":
                continue
            if isinstance(value, dict) and (key.endswith("_fields") or key == "comment"):
                merged = dict(current.get(key) or {})
                merged.update(value)
                current[key] = merged
            else:
                current[key] = value
        current["updated_at"] = now
        return current

    def _result(
        self, index: int, object: str, item: Any, current: dict[str, Any] | None, status: str
    ) -> Result:
        """Item ``index`` of a bulk job written over ``current``, or failed with its problem."""
        problem = self._problem(object, item, current)
        if problem is not None:
            return self._failed(index, problem)
        return self._done(index, self._write(object, item, current), status)

    @staticmethod
    def _failed(index: int, problem: tuple[str, str]) -> Result:
        return {
            "index": index,
            "id": index,
            "status": "Failed",
            "error": problem[0],
            "details": problem[1],
        }

    @staticmethod
    def _done(index: int, row: dict[str, Any], status: str) -> Result:
        out: Result = {"index": index, "id": row["id"], "status": status}
        for key in ("external_id", "email"):
            if row.get(key) is not None:
                out[key] = row[key]
        return out

    # -- endpoints ---------------------------------------------------------------------------

    async def _custom_fields(self, request: Request) -> Response:
        """One offset page of the custom user or organization fields (100 at most)."""
        kind = request.url.path.removeprefix("/api/v2/").removesuffix(".json")
        try:
            page = max(1, int(request.query_params.get("page", "1")))
            per_page = min(100, max(1, int(request.query_params.get("per_page", "100"))))
        except ValueError:
            return self._invalid("page and per_page must be numbers")
        with self.lock:
            fields = list(self.custom_fields[kind])
        start = (page - 1) * per_page
        more = start + per_page < len(fields)
        base = f"{str(request.base_url).rstrip('/')}/api/v2/{kind}.json"
        return JSONResponse(
            {
                kind: fields[start : start + per_page],
                "next_page": f"{base}?page={page + 1}&per_page={per_page}" if more else None,
                "previous_page": f"{base}?page={page - 1}&per_page={per_page}"
                if page > 1
                else None,
                "count": len(fields),
            }
        )

    async def _me(self, request: Request) -> Response:
        return JSONResponse({"user": {"id": 1, "email": self.email, "role": "admin"}})

    async def _users_upsert(self, request: Request) -> Response:
        items = await self._items(request, "users")
        if isinstance(items, Response):
            return items

        def work() -> list[Result]:
            out: list[Result] = []
            for i, item in enumerate(items):
                current = None
                if isinstance(item, dict):
                    current = self._find("users", "external_id", item.get("external_id"))
                    if current is None:
                        current = self._find("users", "email", item.get("email"))
                status = "Created" if current is None else "Updated"
                out.append(self._result(i, "users", item, current, status))
            return out

        return self._queue(request, "bulk_create_or_update_users", len(items), work)

    async def _create_many(self, request: Request) -> Response:
        object = self._object(request)
        items = await self._items(request, object)
        if isinstance(items, Response):
            return items

        def work() -> list[Result]:
            return [self._result(i, object, item, None, "Created") for i, item in enumerate(items)]

        return self._queue(request, f"bulk_create_{object}", len(items), work)

    async def _update_many(self, request: Request) -> Response:
        object = self._object(request)
        if object == "tickets":
            return self._invalid("Use the tickets update endpoints", status=404)
        items = await self._items(request, object)
        if isinstance(items, Response):
            return items
        if any(not isinstance(item, dict) or "id" not in item for item in items):
            return self._invalid(f"Each of `{object}` needs an `id`")

        def work() -> list[Result]:
            out: list[Result] = []
            for i, item in enumerate(items):
                current = self.records[object].get(item["id"])
                if current is None:
                    out.append(self._failed(i, ("RecordNotFound", "Not found")))
                    continue
                out.append(self._result(i, object, item, current, "Updated"))
            return out

        return self._queue(request, f"bulk_update_{object}", len(items), work)

    def _selection(self, request: Request) -> tuple[str, list[str]] | Response:
        ids, externals = request.query_params.get("ids"), request.query_params.get("external_ids")
        if not ids and not externals:
            return self._invalid("Give `ids` or `external_ids`")
        name, raw = ("ids", ids) if ids else ("external_ids", externals)
        values = [v for v in (raw or "").split(",") if v]
        if len(values) > self.max_batch:
            return self._invalid(f"Too many {name}: at most {self.max_batch} per request")
        return name, values

    def _select(self, object: str, name: str, values: list[str]) -> list[dict[str, Any] | None]:
        if name == "ids":
            return [self.records[object].get(int(v)) if v.isdigit() else None for v in values]
        return [self._find(object, "external_id", v) for v in values]

    async def _show_many(self, request: Request) -> Response:
        object = self._object(request)
        selection = self._selection(request)
        if isinstance(selection, Response):
            return selection
        with self.lock:
            found = [dict(r) for r in self._select(object, *selection) if r is not None]
        return JSONResponse({object: found, "next_page": None, "count": len(found)})

    async def _destroy_many(self, request: Request) -> Response:
        object = self._object(request)
        selection = self._selection(request)
        if isinstance(selection, Response):
            return selection

        def work() -> list[Result]:
            out: list[Result] = []
            for i, row in enumerate(self._select(object, *selection)):
                if row is None:
                    out.append(self._failed(i, ("RecordNotFound", "Not found")))
                    continue
                del self.records[object][row["id"]]
                out.append({"index": i, "id": row["id"], "status": "Deleted", "success": True})
            return out

        return self._queue(request, f"bulk_delete_{object}", len(selection[1]), work)

    async def _users_search(self, request: Request) -> Response:
        query = request.query_params.get("query", "")
        external = request.query_params.get("external_id")
        with self.lock:
            if external is not None:
                row = self._find("users", "external_id", external)
            elif query.startswith("email:"):
                row = self._find("users", "email", query[len("email:") :].strip('"'))
            else:
                return self._invalid("Give `query=email:...` or `external_id`")
            found = [dict(row)] if row is not None else []
        return JSONResponse({"users": found, "next_page": None, "count": len(found)})

    async def _tickets(self, request: Request) -> Response:
        if request.method == "GET":
            external = request.query_params.get("external_id")
            with self.lock:
                found = [
                    dict(r)
                    for r in self.records["tickets"].values()
                    if external is None or str(r.get("external_id")) == external
                ]
            return JSONResponse({"tickets": found, "next_page": None, "count": len(found)})
        try:
            body = await request.json()
        except ValueError:
            return self._invalid("The request body is not valid JSON")
        item = body.get("ticket") if isinstance(body, dict) else None
        with self.lock:
            problem = self._problem("tickets", item, None)
            if problem is not None:
                return JSONResponse(
                    {
                        "error": "RecordInvalid",
                        "description": "Record validation errors",
                        "details": {"base": [{"description": problem[1], "error": problem[0]}]},
                    },
                    status_code=422,
                )
            assert isinstance(item, dict)
            row = dict(self._write("tickets", item, None))
        return JSONResponse({"ticket": row}, status_code=201)

    async def _job_status(self, request: Request) -> Response:
        job_id = request.path_params["id"].removesuffix(".json")
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return JSONResponse(
                    {"error": "RecordNotFound", "description": "Not found"}, status_code=404
                )
            job.poll()
            body = self._job_body(request, job)
        return JSONResponse({"job_status": body})
