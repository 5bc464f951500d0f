"""Intercom emulator: contacts (create, update, search, archive, delete) and companies.

What it enforces, as Intercom does: Bearer auth (401 ``unauthorized`` in the ``error.list``
shape) and a known ``Intercom-Version`` when one is sent; no batch endpoint; a contact
create that matches an existing ``external_id`` or ``email`` refused with 409 ``conflict``
naming the existing id; search by ``external_id``/``email``/``id`` with Intercom's query
body; companies created or updated by ``company_id``; a per-app limit counted in short
windows (429 ``rate_limit_exceeded`` with ``X-RateLimit-Limit/Remaining/Reset``).
``GET /data_attributes?model=contact|company`` lists the standard attributes of each model
and the workspace's custom ones (``full_name`` ``custom_attributes.NAME``).
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators.base import DestinationFile
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow
from backhaul.testing.emulators.base import count_request
from backhaul.testing.emulators.base import rate_limit_headers

VERSIONS = frozenset(
    {
        "1.0",
        "1.1",
        "1.2",
        "1.3",
        "1.4",
        "2.0",
        "2.1",
        "2.2",
        "2.3",
        "2.4",
        "2.5",
        "2.6",
        "2.7",
        "2.8",
        "2.9",
        "2.10",
        "2.11",
        "2.12",
        "2.13",
        "2.14",
        "Unstable",
    }
)
CONTACT_FIELDS = frozenset(
    {
        "role",
        "external_id",
        "email",
        "phone",
        "name",
        "avatar",
        "signed_up_at",
        "last_seen_at",
        "owner_id",
        "unsubscribed_from_emails",
        "custom_attributes",
    }
)
COMPANY_FIELDS = frozenset(
    {
        "company_id",
        "name",
        "plan",
        "size",
        "website",
        "industry",
        "remote_created_at",
        "monthly_spend",
        "custom_attributes",
    }
)
SEARCH_FIELDS = ("id", "external_id", "email")
DATA_TYPES = frozenset({"string", "integer", "float", "boolean", "date"})
# Standard attributes as the data attributes list reports them: name, label, data_type,
# api_writable.
STANDARD: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "contact": (
        ("id", "ID", "string", False),
        ("role", "Role", "string", True),
        ("external_id", "User ID", "string", True),
        ("email", "Email", "string", True),
        ("phone", "Phone", "string", True),
        ("name", "Name", "string", True),
        ("avatar", "Avatar", "string", True),
        ("owner_id", "Owner", "integer", True),
        ("signed_up_at", "Signed up", "date", True),
        ("last_seen_at", "Last seen", "date", True),
        ("unsubscribed_from_emails", "Unsubscribed from emails", "boolean", True),
        ("created_at", "First seen", "date", False),
        ("updated_at", "Last updated", "date", False),
        ("location.city", "City", "string", False),
    ),
    "company": (
        ("id", "ID", "string", False),
        ("company_id", "Company ID", "string", True),
        ("name", "Company name", "string", True),
        ("plan", "Plan", "string", True),
        ("size", "Company size", "integer", True),
        ("website", "Website", "string", True),
        ("industry", "Industry", "string", True),
        ("monthly_spend", "Monthly spend", "float", True),
        ("remote_created_at", "Company created", "date", True),
        ("created_at", "First seen", "date", False),
        ("user_count", "People", "integer", False),
    ),
}


def _data_type(value: Any) -> str:
    """The data type Intercom gives an attribute first written with ``value``."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return "float" if isinstance(value, float) else "string"


class IntercomEmulator(Emulator):
    """An in-memory Intercom workspace.

    Args:
        token: The access token.
        rate_limit: Calls allowed in each window (Intercom: the per-minute limit / 6).
        rate_window: Window length in seconds (Intercom: 10).
        custom_attributes: Custom data attributes that exist, as names (strings) or name to
            data type (string, integer, float, boolean or date), for contacts and companies;
            ``None`` accepts any name and lists each one once it is written.
        seed: Seed of the random fault switches.

    ``POST /_emulator/faults`` with ``{"custom_attributes": {"plan": "string"}}`` replaces
    the custom attributes (``null``: accept any again).
    """

    vendor: ClassVar[str] = "intercom"
    destination_file: ClassVar[DestinationFile] = DestinationFile({"token": "INTERCOM_TOKEN"})

    def __init__(
        self,
        *,
        token: str = "ic-emulator-token",
        rate_limit: int = 1666,
        rate_window: float = 10.0,
        custom_attributes: set[str] | Mapping[str, str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.token = token
        self.window = SlidingWindow(rate_limit, rate_window)
        self._initial_attributes = custom_attributes
        self.custom_attributes: set[str] | None = None
        self.attribute_types: dict[str, str] = {}
        self.define_attributes(custom_attributes)
        self.contacts: dict[str, dict[str, Any]] = {}
        self.companies: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    # -- hooks -----------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route("/me", self._me, methods=["GET"]),
            Route("/contacts", self._create_contact, methods=["POST"]),
            Route("/contacts/search", self._search, methods=["POST"]),
            Route("/contacts/{id}", self._contact, methods=["GET", "PUT", "DELETE"]),
            Route("/contacts/{id}/archive", self._archive, methods=["POST"]),
            Route("/companies", self._companies, methods=["GET", "POST"]),
            Route("/companies/{id}", self._company, methods=["GET", "DELETE"]),
            Route("/data_attributes", self._data_attributes, methods=["GET"]),
        ]

    def vendor_error(self, status: int, message: str) -> Response:
        code = {401: "unauthorized", 404: "not_found", 409: "conflict", 429: "rate_limit_exceeded"}
        return self._error(code.get(status, "server_error"), message, status)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        reset = math.ceil(time.time() + retry_after)
        return self._error(
            "rate_limit_exceeded",
            f"Exceeded rate limit of {self.window.limit} in {self.window.seconds:g}_seconds",
            429,
            {
                "X-RateLimit-Limit": str(self.window.limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            },
        )

    def vendor_state(self) -> dict[str, Any]:
        return {
            "contacts": list(self.contacts.values()),
            "companies": list(self.companies.values()),
        }

    def vendor_reset(self) -> None:
        self.contacts.clear()
        self.companies.clear()
        self.define_attributes(self._initial_attributes)

    def vendor_control(self, spec: dict[str, Any]) -> None:
        """``{"custom_attributes": {NAME: DATA_TYPE}}`` replaces the custom attributes."""
        if "custom_attributes" in spec:
            self.define_attributes(spec["custom_attributes"])

    def define_attributes(self, attributes: set[str] | Mapping[str, str] | None) -> None:
        """Set the workspace's custom attributes (``None``: any name, learned on write)."""
        if attributes is None:
            self.custom_attributes, self.attribute_types = None, {}
            return
        types = (
            dict(attributes)
            if isinstance(attributes, Mapping)
            else dict.fromkeys(attributes, "string")
        )
        for name, data_type in types.items():
            if data_type not in DATA_TYPES:
                raise ValueError(f"custom attribute {name!r}: data type one of {DATA_TYPES}")
        self.custom_attributes, self.attribute_types = set(types), types

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _json(body: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status)

    @staticmethod
    def _error(
        code: str, message: str, status: int, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        body = {
            "type": "error.list",
            "request_id": str(uuid.uuid4()),
            "errors": [{"code": code, "message": message}],
        }
        return JSONResponse(body, status_code=status, headers=headers)

    async def before_request(self, request: Request) -> Response | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or value != self.token:
            return self._error("unauthorized", "Access Token Invalid", 401)
        version = request.headers.get("intercom-version")
        if version is not None and version not in VERSIONS:
            return self._error(
                "intercom_version_invalid",
                f"The requested version {version!r} could not be found",
                400,
            )
        allowed, wait = count_request(request, self.window, lambda: self.window.seconds)
        return None if allowed else self.vendor_rate_limited(wait)

    def response_headers(self, request: Request) -> dict[str, str]:
        return rate_limit_headers(request, self.window.limit)

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = await request.json()
        except ValueError:
            return self._error("parameter_invalid", "Request body is not valid JSON", 400)
        if not isinstance(body, dict):
            return self._error("parameter_invalid", "Request body must be an object", 400)
        return body

    async def _checked_body(
        self, request: Request, allowed: frozenset[str]
    ) -> dict[str, Any] | Response:
        """The request's object body once :meth:`_problem` finds nothing to refuse in it."""
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        with self.lock:
            problem = self._problem(body, allowed)
        return body if problem is None else self._error(*problem, 400)

    def _problem(self, body: dict[str, Any], allowed: frozenset[str]) -> tuple[str, str] | None:
        """(code, message) when the body has unknown fields or refused values."""
        for key in ("external_id", "email", "company_id"):
            value = body.get(key)
            if value is not None and str(value) in self.faults.rejects:
                return "parameter_invalid", self.faults.rejects[str(value)]
        unknown = sorted(set(body) - allowed)
        if unknown:
            return "parameter_invalid", f"{unknown[0]} is not a valid parameter"
        custom = body.get("custom_attributes") or {}
        if not isinstance(custom, dict):
            return "parameter_invalid", "custom_attributes must be an object"
        if self.custom_attributes is not None:
            for name in custom:
                if name not in self.custom_attributes:
                    return "parameter_invalid", f"Custom attribute '{name}' does not exist"
        email = body.get("email")
        if email is not None and "@" not in str(email):
            return "parameter_invalid", "Email address is invalid"
        if self.custom_attributes is None:  # a new name becomes an attribute of its value's type
            for name, value in custom.items():
                if value is not None:
                    self.attribute_types.setdefault(name, _data_type(value))
        return None

    def _match(self, body: dict[str, Any], own: str | None) -> dict[str, Any] | None:
        """Another contact holding this body's external_id or email."""
        for key in ("external_id", "email"):
            value = body.get(key)
            if value is None:
                continue
            for row in self.contacts.values():
                if (
                    row["id"] != own
                    and row.get(key) is not None
                    and str(row[key]).lower() == str(value).lower()
                ):
                    return row
        return None

    @staticmethod
    def _apply(row: dict[str, Any], body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key == "custom_attributes":
                merged = dict(row.get("custom_attributes") or {})
                merged.update(value or {})
                row["custom_attributes"] = merged
            else:
                row[key] = value
        row["updated_at"] = int(time.time())

    # -- contacts ----------------------------------------------------------------------------

    async def _data_attributes(self, request: Request) -> Response:
        """The standard and custom data attributes of one model (or of both)."""
        model = request.query_params.get("model")
        if model is not None and model not in STANDARD and model != "conversation":
            return self._error("parameter_invalid", f"{model} is not a valid model", 400)
        models = [model] if model is not None else list(STANDARD)
        data: list[dict[str, Any]] = []
        with self.lock:
            custom = dict(self.attribute_types)
        for one in models:
            for name, label, data_type, writable in STANDARD.get(one, ()):
                data.append(
                    {
                        "type": "data_attribute",
                        "model": one,
                        "name": name.rpartition(".")[2],
                        "full_name": name,
                        "label": label,
                        "description": "",
                        "data_type": data_type,
                        "api_writable": writable,
                        "ui_writable": writable,
                        "messenger_writable": False,
                        "custom": False,
                        "archived": False,
                    }
                )
            if one not in STANDARD:
                continue
            for position, (name, data_type) in enumerate(sorted(custom.items())):
                data.append(
                    {
                        "type": "data_attribute",
                        "id": 100 + position,
                        "model": one,
                        "name": name,
                        "full_name": f"custom_attributes.{name}",
                        "label": name.replace("_", " "),
                        "description": "",
                        "data_type": data_type,
                        "api_writable": True,
                        "ui_writable": True,
                        "messenger_writable": True,
                        "custom": True,
                        "archived": False,
                        "admin_id": "1",
                    }
                )
        return self._json({"type": "list", "data": data})

    async def _me(self, request: Request) -> Response:
        return self._json(
            {
                "type": "admin",
                "id": "1",
                "email": "admin@example.com",
                "app": {"type": "app", "id_code": "emulator"},
            },
        )

    async def _create_contact(self, request: Request) -> Response:
        body = await self._checked_body(request, CONTACT_FIELDS)
        if isinstance(body, Response):
            return body
        with self.lock:
            if body.get("role", "user") == "user" and not (
                body.get("external_id") or body.get("email")
            ):
                return self._error(
                    "parameter_invalid", "Users must have an email or external_id", 400
                )
            other = self._match(body, None)
            if other is not None:
                return self._error(
                    "conflict",
                    f"A contact matching those details already exists with id={other['id']}",
                    409,
                )
            now = int(time.time())
            row: dict[str, Any] = {
                "type": "contact",
                "id": f"{next(self._ids):024x}",
                "workspace_id": "emulator",
                "role": "user",
                "external_id": None,
                "email": None,
                "name": None,
                "phone": None,
                "created_at": now,
                "archived": False,
                "custom_attributes": {},
            }
            self._apply(row, body)
            self.contacts[row["id"]] = row
            return self._json(dict(row))

    async def _contact(self, request: Request) -> Response:
        contact_id = request.path_params["id"]
        body: dict[str, Any] | Response = {}
        if request.method == "PUT":
            body = await self._body(request)
            if isinstance(body, Response):
                return body
        with self.lock:
            row = self.contacts.get(contact_id)
            if row is None:
                return self._error("not_found", "User Not Found", 404)
            if request.method == "GET":
                return self._json(dict(row))
            if request.method == "DELETE":
                del self.contacts[contact_id]
                return self._contact_marked(row, "deleted")
            assert isinstance(body, dict)
            problem = self._problem(body, CONTACT_FIELDS)
            if problem is not None:
                return self._error(*problem, 400)
            other = self._match(body, contact_id)
            if other is not None:
                return self._error(
                    "conflict",
                    f"A contact matching those details already exists with id={other['id']}",
                    409,
                )
            self._apply(row, body)
            return self._json(dict(row))

    async def _archive(self, request: Request) -> Response:
        with self.lock:
            row = self.contacts.get(request.path_params["id"])
            if row is None:
                return self._error("not_found", "User Not Found", 404)
            row["archived"] = True
            return self._contact_marked(row, "archived")

    def _contact_marked(self, row: dict[str, Any], flag: str) -> JSONResponse:
        """The short contact Intercom answers a delete or archive with, ``flag`` set."""
        return self._json(
            {"id": row["id"], "external_id": row.get("external_id"), "type": "contact", flag: True}
        )

    async def _search(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        query = body.get("query")
        filters = self._filters(query)
        if filters is None:
            return self._error(
                "parameter_invalid",
                "query must be a filter on id, external_id or email",
                400,
            )
        per_page = int((body.get("pagination") or {}).get("per_page") or 50)
        operator = str(query.get("operator", "AND")) if isinstance(query, dict) else "AND"
        with self.lock:
            hits = [
                dict(r)
                for r in self.contacts.values()
                if not r.get("archived") and self._hit(r, filters, operator)
            ]
        data = hits[:per_page]
        pages = {
            "type": "pages",
            "page": 1,
            "per_page": per_page,
            "total_pages": math.ceil(len(hits) / per_page) if hits else 0,
        }
        return self._json({"type": "list", "data": data, "total_count": len(hits), "pages": pages})

    @staticmethod
    def _filters(query: Any) -> list[dict[str, Any]] | None:
        if not isinstance(query, dict):
            return None
        items = query.get("value") if "field" not in query else [query]
        if not isinstance(items, list) or not 0 < len(items) <= 15:
            return None
        for item in items:
            if not isinstance(item, dict) or item.get("field") not in SEARCH_FIELDS:
                return None
            if item.get("operator") not in ("=", "!=", "IN", "NIN"):
                return None
        return items

    @staticmethod
    def _hit(row: dict[str, Any], filters: list[dict[str, Any]], operator: str) -> bool:
        def one(f: dict[str, Any]) -> bool:
            have = str(row.get(f["field"]) or "").lower()
            value = f.get("value")
            values = value if isinstance(value, list) else [value]
            inside = have in {str(v).lower() for v in values if v is not None}
            return inside if f["operator"] in ("=", "IN") else not inside

        checks = [one(f) for f in filters]
        return any(checks) if operator == "OR" else all(checks)

    # -- companies ---------------------------------------------------------------------------

    async def _companies(self, request: Request) -> Response:
        if request.method == "GET":
            wanted = request.query_params.get("company_id")
            with self.lock:
                row = next((c for c in self.companies.values() if c["company_id"] == wanted), None)
            if row is None:
                return self._error("company_not_found", "Company Not Found", 404)
            return self._json(dict(row))
        body = await self._checked_body(request, COMPANY_FIELDS)
        if isinstance(body, Response):
            return body
        with self.lock:
            if not body.get("company_id"):
                return self._error("parameter_invalid", "company_id is required", 400)
            row = next(
                (c for c in self.companies.values() if c["company_id"] == str(body["company_id"])),
                None,
            )
            if row is None:
                row = {
                    "type": "company",
                    "id": f"{next(self._ids):024x}",
                    "name": None,
                    "created_at": int(time.time()),
                    "custom_attributes": {},
                }
                self.companies[row["id"]] = row
            self._apply(row, {**body, "company_id": str(body["company_id"])})
            return self._json(dict(row))

    async def _company(self, request: Request) -> Response:
        with self.lock:
            row = self.companies.get(request.path_params["id"])
            if row is None:
                return self._error("company_not_found", "Company Not Found", 404)
            if request.method == "DELETE":
                del self.companies[row["id"]]
                return self._json({"id": row["id"], "object": "company", "deleted": True})
            return self._json(dict(row))
