"""Iterable emulator: ``users/bulkUpdate``, ``events/trackBulk`` and list subscriptions.

What it enforces, as Iterable does: the API key in an ``Api-Key`` header (401
``BadApiKey``); a 4 MB request body; users identified by ``email`` and/or ``userId``
(e-mails case-insensitive), created or updated with their ``dataFields`` merged; per-user
failures answered with 200 and listed by identifier (``invalidEmails``,
``failedUpdates.notFoundUserIds``, ``conflictEmails``, ...) so each maps back to its row;
per-endpoint request rates (429); events appended, replaced by a repeated event ``id``;
list subscribe and unsubscribe by ``listId``; users deleted by e-mail or ``userId`` and
forgotten (later updates fail as ``forgotten``).

Unverified facts (settings, or noted here): the ``api_key`` header spelling is accepted too
(``key_headers``); ``project_type`` decides which identifier creates users (``"email"``,
``"userId"`` or ``"hybrid"``: either creates; ``preferUserId`` lets a ``userId`` alone
create a user in an e-mail project); rates of 5/s for ``users/bulkUpdate`` and 10/s for
``events/trackBulk`` (``rate_limits``); the 413 status and body for a request over 4 MB; the
429 body; that a no-op update counts as a success and is listed in ``noOpEmails``; the
``trackBulk``, list subscribe/unsubscribe, delete and forget request and answer shapes.
"""

from __future__ import annotations

import copy
import itertools
import re
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import ClassVar
from typing import Literal

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._http import KB
from backhaul.testing.emulators.base import DestinationFile
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
FAILURES = ("invalid", "notFound", "invalidData", "conflict", "forgotten")
User = dict[str, Any]
ProjectType = Literal["email", "userId", "hybrid"]


class Outcome:
    """The per-identifier answer of Iterable's bulk endpoints."""

    def __init__(self) -> None:
        self.success = 0
        self.fail = 0
        self.failed: dict[str, list[str]] = {}
        for kind in FAILURES:
            self.failed[f"{kind}Emails"] = []
            self.failed[f"{kind}UserIds"] = []
        self.no_op_emails: list[str] = []
        self.no_op_user_ids: list[str] = []
        self.created_fields: list[str] = []

    def fail_item(self, kind: str, email: Any, user_id: Any, both: bool = False) -> None:
        """Count a failure, listed under the identifier the item was known by."""
        self.fail += 1
        if email is not None:
            self.failed[f"{kind}Emails"].append(str(email))
        if user_id is not None and (both or email is None):
            self.failed[f"{kind}UserIds"].append(str(user_id))

    def body(self, **extra: Any) -> dict[str, Any]:
        return {
            "successCount": self.success,
            "failCount": self.fail,
            "invalidEmails": list(self.failed["invalidEmails"]),
            "invalidUserIds": list(self.failed["invalidUserIds"]),
            "filteredOutFields": [],
            "createdFields": self.created_fields,
            "noOpEmails": self.no_op_emails,
            "noOpUserIds": self.no_op_user_ids,
            "failedUpdates": self.failed,
            **extra,
        }


class IterableEmulator(Emulator):
    """An in-memory Iterable project.

    Args:
        api_key: The server-side API key.
        key_headers: Header names the key is read from.
        project_type: Which identifier creates users (see the module notes).
        max_request_bytes: Largest request body (Iterable: 4 MB).
        rate_limits: ``{path: (requests, seconds)}`` per endpoint, e.g.
            ``{"/api/users/bulkUpdate": (5, 1.0)}``; endpoints not named are not limited.
        lists: Lists that exist, by id.
        clock: Monotonic clock of the rate windows.
        seed: Seed of the random fault switches.
    """

    vendor: ClassVar[str] = "iterable"
    destination_file: ClassVar[DestinationFile] = DestinationFile({"api_key": "ITERABLE_API_KEY"})

    def __init__(
        self,
        *,
        api_key: str = "iterable-emulator-key-0001",
        key_headers: Iterable[str] = ("Api-Key", "api_key"),
        project_type: ProjectType = "hybrid",
        max_request_bytes: int = 4 * KB * KB,
        rate_limits: Mapping[str, tuple[int, float]] | None = None,
        lists: Mapping[int, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if project_type not in ("email", "userId", "hybrid"):
            raise ValueError("project_type must be 'email', 'userId' or 'hybrid'")
        self.api_key = api_key
        self.key_headers = tuple(key_headers)
        self.project_type = project_type
        self.max_request_bytes = max_request_bytes
        limits = (
            {"/api/users/bulkUpdate": (5, 1.0), "/api/events/trackBulk": (10, 1.0)}
            if rate_limits is None
            else rate_limits
        )
        self.windows = {path: SlidingWindow(n, s, clock) for path, (n, s) in limits.items()}
        self._initial_lists = dict(lists if lists is not None else {1001: "Emulator list"})
        self.users: dict[int, User] = {}
        self.lists: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.forgotten: set[str] = set()
        self.known_fields: set[str] = set()
        self._ids = itertools.count(1)
        self.vendor_reset()

    # -- hooks -----------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route("/api/users/bulkUpdate", self._bulk_update, methods=["POST"]),
            Route("/api/events/trackBulk", self._track_bulk, methods=["POST"]),
            Route("/api/lists", self._lists, methods=["GET", "POST"]),
            Route("/api/lists/subscribe", self._subscribe, methods=["POST"]),
            Route("/api/lists/unsubscribe", self._unsubscribe, methods=["POST"]),
            Route("/api/users/getByEmail", self._get_by_email, methods=["GET"]),
            Route("/api/users/forget", self._forget, methods=["POST"]),
            Route("/api/users/byUserId/{user_id}", self._by_user_id, methods=["GET", "DELETE"]),
            Route("/api/users/{email}", self._delete_by_email, methods=["DELETE"]),
        ]

    def vendor_error(self, status: int, message: str) -> Response:
        return _error(status, "GenericError", message)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        return _error(429, "RateLimitExceeded", "Exceeded the rate limit of this endpoint")

    def vendor_state(self) -> dict[str, Any]:
        return {
            "users": list(self.users.values()),
            "lists": [
                {"id": lst["id"], "name": lst["name"], "members": sorted(lst["members"])}
                for lst in self.lists.values()
            ],
            "events": self.events,
        }

    def vendor_reset(self) -> None:
        self.users.clear()
        self.events.clear()
        self.forgotten.clear()
        self.known_fields.clear()
        self.lists = {
            i: {"id": i, "name": name, "members": set()} for i, name in self._initial_lists.items()
        }

    # -- inspection --------------------------------------------------------------------------

    def user(self, email: str | None = None, user_id: str | None = None) -> User | None:
        """The user with this e-mail (case-insensitive) or ``userId``."""
        with self.lock:
            found = self._by_email(email) if email is not None else self._by_id(user_id)
            return copy.deepcopy(found)

    # -- plumbing ----------------------------------------------------------------------------

    async def before_request(self, request: Request) -> Response | None:
        if not any(request.headers.get(h) == self.api_key for h in self.key_headers):
            return _error(401, "BadApiKey", "Invalid API key")
        window = self.windows.get(request.url.path)
        if window is not None and not window.hit()[0]:
            return self.vendor_rate_limited(0)
        return None

    async def _body(
        self, request: Request, field_name: str
    ) -> tuple[dict[str, Any], list[Any]] | Response:
        raw = await request.body()
        if len(raw) > self.max_request_bytes:
            return _error(
                413,
                "RequestTooLarge",
                f"Request body is larger than {self.max_request_bytes} bytes",
            )
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "BadJsonBody", f"[{request.url.path}] Invalid JSON body")
        if not isinstance(body, dict) or not isinstance(body.get(field_name), list):
            return _error(400, "BadParams", f"`{field_name}` must be an array")
        return body, body[field_name]

    def _by_email(self, email: Any) -> User | None:
        wanted = str(email).strip().lower()
        return next((u for u in self.users.values() if u["email"] == wanted), None)

    def _by_id(self, user_id: Any) -> User | None:
        return next((u for u in self.users.values() if u["userId"] == str(user_id)), None)

    def _resolve(
        self, item: Any, out: Outcome, *, create: bool, prefer_user_id: bool = False
    ) -> User | None:
        """The user an item names, created when allowed; ``None`` after counting a failure."""
        if not isinstance(item, dict):
            out.fail += 1
            return None
        email, user_id = item.get("email"), item.get("userId")
        if email is None and user_id is None:
            out.fail += 1
            return None
        if email is not None and not (isinstance(email, str) and EMAIL.match(email.strip())):
            out.fail_item("invalid", email, None)
            return None
        if user_id is not None and not (isinstance(user_id, str | int) and str(user_id)):
            out.fail_item("invalid", None, user_id)
            return None
        for value in (email, user_id):
            if value is not None and str(value) in self.faults.rejects:
                out.fail_item("invalidData", email, user_id)
                return None
        key = str(email).strip().lower() if email is not None else None
        if {key, None if user_id is None else str(user_id)} & self.forgotten:
            out.fail_item("forgotten", email, user_id)
            return None
        by_email = self._by_email(key) if key else None
        by_id = self._by_id(user_id) if user_id is not None else None
        if by_email and by_id and by_email is not by_id:
            out.fail_item("conflict", email, user_id, both=True)
            return None
        user = by_email or by_id
        if user is not None:
            if user_id is not None and user["userId"] is None:
                user["userId"] = str(user_id)
            if key is not None and user["email"] is None:
                user["email"] = key
            return user
        creatable = {
            "email": key is not None or (prefer_user_id and user_id is not None),
            "userId": user_id is not None,
            "hybrid": True,
        }[self.project_type]
        if not create or not creatable:
            out.fail_item("notFound", email, user_id)
            return None
        user = {
            "id": next(self._ids),
            "email": key,
            "userId": None if user_id is None else str(user_id),
            "dataFields": {},
            "signupDate": int(time.time()),
        }
        self.users[user["id"]] = user
        return user

    def _merge(self, user: User, fields: Any, nested: bool, out: Outcome) -> bool:
        """Apply ``dataFields``; whether anything changed."""
        if not isinstance(fields, dict):
            return False
        before = copy.deepcopy(user["dataFields"])
        for name, value in fields.items():
            if name not in self.known_fields:
                self.known_fields.add(name)
                out.created_fields.append(name)
            current = user["dataFields"].get(name)
            if nested and isinstance(current, dict) and isinstance(value, dict):
                user["dataFields"][name] = _deep_merge(current, value)
            else:
                user["dataFields"][name] = value
        return bool(user["dataFields"] != before)

    # -- endpoints ---------------------------------------------------------------------------

    async def _each_item(
        self, request: Request, field_name: str, apply: Callable[[Any, Outcome], None]
    ) -> Outcome | Response:
        """Apply ``apply`` to each item of the body's ``field_name`` array, under the lock;
        a bulk call answers for every item, so one refused item does not stop the rest."""
        parsed = await self._body(request, field_name)
        if isinstance(parsed, Response):
            return parsed
        out = Outcome()
        with self.lock:
            for item in parsed[1]:
                apply(item, out)
        return out

    async def _bulk_update(self, request: Request) -> Response:
        out = await self._each_item(request, "users", self._update_user)
        if isinstance(out, Response):
            return out
        return JSONResponse(out.body())

    def _update_user(self, item: Any, out: Outcome) -> None:
        existed = isinstance(item, dict) and bool(
            (item.get("email") and self._by_email(item["email"]))
            or (item.get("userId") is not None and self._by_id(item["userId"]))
        )
        user = self._resolve(item, out, create=True, prefer_user_id=_prefers_id(item))
        if user is None:
            return
        changed = self._merge(
            user, item.get("dataFields"), bool(item.get("mergeNestedObjects")), out
        )
        out.success += 1
        if existed and not changed:
            if item.get("email") is not None:
                out.no_op_emails.append(str(item["email"]))
            else:
                out.no_op_user_ids.append(str(item["userId"]))

    async def _track_bulk(self, request: Request) -> Response:
        out = await self._each_item(request, "events", self._track_event)
        if isinstance(out, Response):
            return out
        body = out.body(disallowedEventNames=[])
        for name in ("noOpEmails", "noOpUserIds"):
            del body[name]
        return JSONResponse(body)

    def _track_event(self, item: Any, out: Outcome) -> None:
        if isinstance(item, dict) and not item.get("eventName"):
            out.fail_item("invalidData", item.get("email"), item.get("userId"))
            return
        user = self._resolve(item, out, create=True)
        if user is None:
            return
        event = {
            "id": str(item.get("id") or next(self._ids)),
            "eventName": item["eventName"],
            "email": user["email"],
            "userId": user["userId"],
            "dataFields": item.get("dataFields") or {},
            "createdAt": item.get("createdAt", int(time.time())),
        }
        # An event id already known replaces that event (Iterable: "updated").
        self.events = [e for e in self.events if e["id"] != event["id"]] + [event]
        out.success += 1

    async def _lists(self, request: Request) -> Response:
        with self.lock:
            if request.method == "GET":
                lists = [
                    {"id": lst["id"], "name": lst["name"], "listType": "Standard"}
                    for lst in self.lists.values()
                ]
                return JSONResponse({"lists": lists})
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "BadJsonBody", "Invalid JSON body")
            name = body.get("name") if isinstance(body, dict) else None
            if not isinstance(name, str) or not name:
                return _error(400, "BadParams", "`name` is required")
            list_id = max(self.lists, default=1000) + 1
            self.lists[list_id] = {"id": list_id, "name": name, "members": set()}
        return JSONResponse({"listId": list_id})

    async def _membership(self, request: Request, subscribe: bool) -> Response:
        parsed = await self._body(request, "subscribers")
        if isinstance(parsed, Response):
            return parsed
        body, items = parsed
        out = Outcome()
        with self.lock:
            list_id = body.get("listId")
            lst = self.lists.get(int(str(list_id))) if str(list_id).isdigit() else None
            if lst is None:
                return _error(400, "BadParams", f"List {body.get('listId')} does not exist")
            create = subscribe and not body.get("updateExistingUsersOnly", False)
            for item in items:
                user = self._resolve(item, out, create=create, prefer_user_id=_prefers_id(item))
                if user is None:
                    continue
                if subscribe:
                    self._merge(user, item.get("dataFields"), False, out)
                    lst["members"].add(user["id"])
                else:
                    lst["members"].discard(user["id"])
                out.success += 1
        answer = out.body()
        answer.update(
            notFoundEmails=out.failed["notFoundEmails"],
            notFoundUserIds=out.failed["notFoundUserIds"],
        )
        return JSONResponse(answer)

    async def _subscribe(self, request: Request) -> Response:
        return await self._membership(request, subscribe=True)

    async def _unsubscribe(self, request: Request) -> Response:
        return await self._membership(request, subscribe=False)

    async def _get_by_email(self, request: Request) -> Response:
        with self.lock:
            user = self._by_email(request.query_params.get("email", ""))
            return JSONResponse({"user": _shown(user)} if user else {})

    def _remove(self, user: User | None, label: str) -> Response:
        if user is None:
            return _error(400, "BadParams", f"{label} does not exist")
        del self.users[user["id"]]
        for lst in self.lists.values():
            lst["members"].discard(user["id"])
        return JSONResponse({"msg": f"Deleted {label}", "code": "Success", "params": None})

    async def _by_user_id(self, request: Request) -> Response:
        user_id = request.path_params["user_id"]
        with self.lock:
            user = self._by_id(user_id)
            if request.method == "GET":
                return JSONResponse({"user": _shown(user)} if user else {})
            return self._remove(user, f"user with userId {user_id}")

    async def _delete_by_email(self, request: Request) -> Response:
        email = request.path_params["email"]
        with self.lock:
            return self._remove(self._by_email(email), f"user {email}")

    async def _forget(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "BadJsonBody", "Invalid JSON body")
        email, user_id = body.get("email"), body.get("userId")
        with self.lock:
            user = self._by_email(email) if email else self._by_id(user_id)
            if user is None:
                return _error(400, "BadParams", "User does not exist")
            self._remove(user, "user")
            self.forgotten.update(v for v in (user["email"], user["userId"]) if v is not None)
        return JSONResponse({"msg": "Forgot user", "code": "Success", "params": None})


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"msg": message, "code": code, "params": None}, status_code=status)


def _prefers_id(item: Any) -> bool:
    return isinstance(item, dict) and bool(item.get("preferUserId"))


def _shown(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {k: v for k, v in user.items() if k != "id"}


def _deep_merge(current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in new.items():
        old = merged.get(key)
        merged[key] = (
            _deep_merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return merged
