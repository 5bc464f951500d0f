"""A HubSpot CRM v3 objects emulator: contacts, companies, deals and custom objects.

It keeps records in memory with HubSpot's identity rules (``hs_object_id`` assigned on
create, upsert by a property whose ``hasUniqueValue`` is true), checks the bearer token,
caps batches at 100 inputs, answers partial failures with 207 and errors keyed by
``objectWriteTraceId``, and enforces the burst limit (a rolling window, 100 requests per
10 s by default) with HubSpot's 429 body and ``X-HubSpot-RateLimit-*`` headers.

Both path styles are served: ``/crm/v3/objects/...`` and the date-versioned
``/crm/objects/{version}/...`` (likewise for properties).

Example:
    >>> hub = HubSpotEmulator(burst_limit=10, burst_seconds=1.0)  # doctest: +SKIP
    >>> with EmulatorServer(hub) as server:  # doctest: +SKIP
    ...     run_a_sync(base_url=server.url, token=hub.token)
    ...     hub.records("contacts")["ada@example.com"]["firstname"]
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import InitVar
from dataclasses import dataclass
from typing import Any
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._hubspot_store import HubRecord
from backhaul.testing.emulators._hubspot_store import InputError
from backhaul.testing.emulators._hubspot_store import ObjectType
from backhaul.testing.emulators._hubspot_store import default_properties
from backhaul.testing.emulators._hubspot_store import hubspot_error
from backhaul.testing.emulators._hubspot_store import matches
from backhaul.testing.emulators._hubspot_store import now_stamp
from backhaul.testing.emulators._hubspot_store import prop
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow

DEFAULT_TOKEN = "pat-na1-00000000-0000-4000-8000-emulator0001"
OBJECT_PREFIXES = ("/crm/v3/objects/{object_type}", "/crm/objects/{version}/{object_type}")
PROPERTY_PREFIXES = ("/crm/v3/properties/{object_type}", "/crm/properties/{version}/{object_type}")


@dataclass(eq=False, repr=False, kw_only=True)
class HubSpotEmulator(Emulator):
    """HubSpot CRM v3 objects, properties and schemas, in memory.

    Args:
        token: The only bearer token accepted.
        burst_limit: Requests allowed per ``burst_seconds`` (rolling window), per token.
        burst_seconds: Length of the burst window (HubSpot: 10 s).
        daily_limit: Requests allowed in total (``None``: no daily limit).
        search_per_second: Search requests allowed per second (HubSpot: 4).
        max_inputs: Most inputs in one batch request (HubSpot: 100).
        custom_objects: Custom object types to create, by name, with extra property names
            (plain text properties; add unique ones through the properties API).
        retry_after_header: Also send ``Retry-After`` on a 429 (HubSpot does not document it).
        clock: Monotonic clock of the rate windows.
        seed: Seed of the random fault switch.
    """

    vendor: ClassVar[str] = "hubspot"

    token: str = DEFAULT_TOKEN
    burst_limit: InitVar[int] = 100
    burst_seconds: InitVar[float] = 10.0
    daily_limit: int | None = 250_000
    search_per_second: InitVar[int] = 4
    max_inputs: int = 100
    custom_objects: InitVar[Mapping[str, Sequence[str]] | None] = None
    retry_after_header: bool = False
    clock: InitVar[Callable[[], float]] = time.monotonic
    seed: InitVar[int] = 0

    def __post_init__(
        self,
        burst_limit: int,
        burst_seconds: float,
        search_per_second: int,
        custom_objects: Mapping[str, Sequence[str]] | None,
        clock: Callable[[], float],
        seed: int,
    ) -> None:
        super().__init__(seed=seed)
        self.daily_used = 0
        self.window = SlidingWindow(burst_limit, burst_seconds, clock)
        self.search_window = SlidingWindow(search_per_second, 1.0, clock)
        self.types: dict[str, ObjectType] = {}
        self._next_id = 1000
        self._custom = dict(custom_objects or {})
        self.vendor_reset()

    # -- set-up ------------------------------------------------------------------------

    def add_object_type(
        self, name: str, properties: Iterable[dict[str, Any] | str] = ()
    ) -> ObjectType:
        """Create a custom object type (also reachable by its ``2-N`` object type id)."""
        with self.lock:
            defs = default_properties(name)
            for p in properties:
                d = prop(p) if isinstance(p, str) else prop(**p)
                defs[d["name"]] = d
            type_id = f"2-{len(self.types) + 1000}"
            obj = ObjectType(name, type_id, name.upper().rstrip("S"), defs)
            obj.reindex()
            self.types[name] = obj
            return obj

    def add_property(self, object_type: str, name: str, *, unique: bool = False, **kw: Any) -> None:
        """Add a property to an object type (as ``POST /crm/v3/properties/{type}`` does)."""
        with self.lock:
            obj = self.types[object_type]
            obj.properties[name] = prop(name, unique=unique, **kw)
            obj.reindex()

    def records(self, object_type: str, key: str | None = None) -> dict[str, dict[str, str]]:
        """Live records' properties, keyed by ``key``'s value (default: ``hs_object_id``)."""
        with self.lock:
            out: dict[str, dict[str, str]] = {}
            for rec in self.types[object_type].records.values():
                k = rec.id if key is None else rec.properties.get(key)
                if k is not None:
                    out[k] = {**rec.properties, "hs_object_id": rec.id}
            return out

    # -- Emulator hooks ----------------------------------------------------------------

    def vendor_reset(self) -> None:
        self.types = {}
        for name, label in (("contacts", "CONTACT"), ("companies", "COMPANY"), ("deals", "DEAL")):
            self.types[name] = ObjectType(
                name, f"0-{len(self.types) + 1}", label, default_properties(name)
            )
        for name, props in self._custom.items():
            self.add_object_type(name, props)
        self.daily_used = 0

    def vendor_state(self) -> dict[str, Any]:
        return {name: self.records(name) for name in self.types}

    def vendor_error(self, status: int, message: str) -> Response:
        category = "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR"
        return hubspot_error(status, category, message)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        return self._too_many("TEN_SECONDLY_ROLLING", retry_after)

    def credentials(self) -> dict[str, str]:
        return {"HUBSPOT_TOKEN": self.token}

    def destination_config(self, base_url: str) -> dict[str, Any]:
        return {"type": "hubspot", "token": "${env:HUBSPOT_TOKEN}", "base_url": base_url}

    def vendor_routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/crm/v3/schemas", self._create_schema, methods=["POST"]),
        ]
        for p in OBJECT_PREFIXES:
            for verb in ("upsert", "create", "update", "archive", "read"):
                routes.append(Route(f"{p}/batch/{verb}", self._batch(verb), methods=["POST"]))
            routes += [
                Route(f"{p}/search", self._search, methods=["POST"]),
                Route(p, self._list, methods=["GET"]),
                Route(p, self._create_one, methods=["POST"]),
                Route(f"{p}/{{object_id}}", self._one, methods=["GET", "PATCH", "DELETE"]),
            ]
        for p in PROPERTY_PREFIXES:
            routes += [
                Route(p, self._properties, methods=["GET", "POST"]),
                Route(f"{p}/{{name}}", self._property, methods=["GET"]),
            ]
        return routes

    # -- auth and rate limits (before the fault switches, as HubSpot's edge would) -------

    async def before_request(self, request: Request) -> Response | None:
        search = request.url.path.endswith("/search")
        window = self.search_window if search else self.window
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] != self.token:
            return self._unauthorized(bool(auth))
        allowed, remaining, wait = window.hit()
        if not search:  # HubSpot sends no rate headers on search answers
            request.state.remaining = remaining
        if allowed and self.daily_limit is not None:
            with self.lock:
                allowed = self.daily_used < self.daily_limit
                self.daily_used += int(allowed)
            policy = "DAILY"
        else:
            policy = "SECONDLY" if search else "TEN_SECONDLY_ROLLING"
        return None if allowed else self._too_many(policy, wait)

    def response_headers(self, request: Request) -> dict[str, str]:
        remaining = getattr(request.state, "remaining", None)
        if remaining is None:  # refused before the window, or a search
            return {}
        w = self.window
        headers = {
            "X-HubSpot-RateLimit-Max": str(w.limit),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(w.seconds * 1000)),
        }
        if self.daily_limit is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            left = max(0, self.daily_limit - self.daily_used)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(left)
        return headers

    def _unauthorized(self, sent: bool) -> Response:
        message = (
            "The access token is not valid for this account."
            if sent
            else "Authentication credentials not found."
        )
        return hubspot_error(401, "INVALID_AUTHENTICATION", message)

    def _too_many(self, policy: str, wait: float) -> Response:
        words = {"DAILY": "daily", "SECONDLY": "secondly"}.get(policy, policy.lower())
        response = hubspot_error(
            429,
            "RATE_LIMITS",
            f"You have reached your {words} limit.",
            errorType="RATE_LIMIT",
            policyName=policy,
            requestId=str(uuid.uuid4()),
        )
        if self.retry_after_header and wait > 0:
            response.headers["Retry-After"] = str(max(1, round(wait)))
        return response

    # -- helpers -------------------------------------------------------------------------

    def _new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def _type(self, request: Request) -> ObjectType | Response:
        name = str(request.path_params["object_type"])
        with self.lock:
            for obj in self.types.values():
                if name in (obj.name, obj.type_id):
                    return obj
        return hubspot_error(400, "VALIDATION_ERROR", f"Unable to infer object type from: {name}")

    def _identity(self, obj: ObjectType, values: Iterable[str | None]) -> InputError | None:
        """``faults.rejects`` applies to any identity value of an input."""
        for v in values:
            if v is not None and v in self.faults.rejects:
                return InputError(400, "VALIDATION_ERROR", self.faults.rejects[v])
        return None

    # -- batch endpoints ---------------------------------------------------------------

    def _batch(self, verb: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            found = self._type(request)
            if isinstance(found, Response):
                return found
            try:
                body = await request.json()
            except ValueError:
                return hubspot_error(400, "VALIDATION_ERROR", "Invalid input JSON: not JSON")
            inputs = body.get("inputs") if isinstance(body, dict) else None
            if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
                return hubspot_error(
                    400, "VALIDATION_ERROR", "Invalid input JSON: `inputs` is required"
                )
            if len(inputs) > self.max_inputs:
                return hubspot_error(
                    400,
                    "VALIDATION_ERROR",
                    f"Batch input of {len(inputs)} exceeds the limit of {self.max_inputs} inputs",
                    errors=[
                        {
                            "message": f"size must be between 1 and {self.max_inputs}",
                            "in": "inputs",
                            "code": "INVALID_LENGTH",
                        }
                    ],
                )
            with self.lock:
                return self._run_batch(verb, found, body, inputs, request)

        return endpoint

    def _run_batch(
        self,
        verb: str,
        obj: ObjectType,
        body: dict[str, Any],
        inputs: list[dict[str, Any]],
        request: Request,
    ) -> Response:
        started = now_stamp()
        id_prop = body.get("idProperty") or request.query_params.get("idProperty")
        if verb == "upsert":
            id_prop = inputs[0].get("idProperty", id_prop) if inputs else id_prop
            if not id_prop:
                return hubspot_error(400, "VALIDATION_ERROR", "idProperty is required for upsert")
        if id_prop and verb in ("upsert", "read", "update"):
            if id_prop not in obj.properties:
                return hubspot_error(
                    400, "VALIDATION_ERROR", f'Property "{id_prop}" does not exist on {obj.name}'
                )
            if not obj.unique(id_prop):
                return hubspot_error(
                    400,
                    "VALIDATION_ERROR",
                    f'Property "{id_prop}" is not unique and cannot be used as '
                    "idProperty; use a property with hasUniqueValue true",
                )
        if verb != "create":
            ids = [str(i.get("id", "")) for i in inputs]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                return hubspot_error(
                    400, "VALIDATION_ERROR", f"Duplicate IDs found in batch input: {dupes}"
                )
        multi = bool(inputs) and all("objectWriteTraceId" in i for i in inputs)
        plan: list[tuple[dict[str, Any], HubRecord | None, InputError | None]] = []
        for item in inputs:
            plan.append(self._plan_input(verb, obj, item, id_prop))
        errors = [(item, err) for item, _, err in plan if err is not None]
        if errors and not multi and verb != "read":
            first = errors[0][1]
            return hubspot_error(
                first.status,
                first.category,
                first.message,
                errors=first.errors,
                context=first.context,
            )
        results: list[dict[str, Any]] = []
        for item, rec, err in plan:
            if err is not None:
                continue
            trace = {"objectWriteTraceId": item["objectWriteTraceId"]} if multi else {}
            if verb == "read":
                assert rec is not None
                results.append(rec.body(body.get("properties") or None))
            elif verb == "archive":
                if rec is not None:
                    obj.archive(rec)
            else:
                props = dict(item.get("properties") or {})
                is_new = rec is None
                if verb == "upsert" and is_new:
                    props.setdefault(str(id_prop), str(item["id"]))
                rec = obj.write(rec, props, self._new_id)
                extra = {"new": is_new} if verb == "upsert" else {}
                results.append(rec.body(None, {**extra, **trace}))
        if verb == "archive":
            return Response(status_code=204)
        payload: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "requestedAt": started,
            "startedAt": started,
            "completedAt": now_stamp(),
        }
        if verb == "read" and errors:
            missing = [str(item.get("id")) for item, _ in errors]
            payload["numErrors"] = 1
            payload["errors"] = [
                InputError(
                    404,
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {obj.label} objects, they may be deleted or not exist. "
                    "Check that ids are valid.",
                    context={"ids": missing},
                ).body()
            ]
            return JSONResponse(payload, status_code=207)
        if errors:
            payload["numErrors"] = len(errors)
            payload["errors"] = [err.body(str(item["objectWriteTraceId"])) for item, err in errors]
            return JSONResponse(payload, status_code=207)
        return JSONResponse(payload, status_code=201 if verb == "create" else 200)

    def _plan_input(
        self, verb: str, obj: ObjectType, item: dict[str, Any], id_prop: str | None
    ) -> tuple[dict[str, Any], HubRecord | None, InputError | None]:
        value = None if item.get("id") is None else str(item["id"])
        props = item.get("properties") or {}
        own = item.get("idProperty", id_prop)
        rec = obj.find(value, own) if value is not None else None
        unique_values = (
            [str(v) for k, v in dict(props).items() if obj.unique(k)]
            if isinstance(props, dict)
            else []
        )
        held = [rec.properties.get(n) for n in obj.index] if rec else []
        refused = self._identity(obj, [value, *unique_values, *held])
        if verb == "read":
            return item, rec, None if rec is not None else InputError(404, "OBJECT_NOT_FOUND", "")
        if refused is not None:
            return item, rec, refused
        if verb == "archive":
            return item, rec, None
        if verb in ("update",) and rec is None:
            return (
                item,
                None,
                InputError(
                    404,
                    "OBJECT_NOT_FOUND",
                    f"Object not found. objectId are usually numeric. ({own or 'id'}={value})",
                ),
            )
        if verb == "upsert" and rec is None and own == "hs_object_id":
            return item, None, InputError(404, "OBJECT_NOT_FOUND", f"No object with id {value}")
        return item, rec, obj.check(props, rec if verb != "create" else None)

    # -- single-object endpoints -------------------------------------------------------

    async def _create_one(self, request: Request) -> Response:
        found = self._type(request)
        if isinstance(found, Response):
            return found
        body = await request.json()
        props = body.get("properties") if isinstance(body, dict) else None
        with self.lock:
            unique_values = [str(v) for k, v in dict(props or {}).items() if found.unique(k)]
            err = self._identity(found, unique_values) or found.check(props, None)
            if err is not None:
                return JSONResponse(
                    {**err.body(), "correlationId": str(uuid.uuid4())}, status_code=err.status
                )
            rec = found.write(None, dict(props or {}), self._new_id)
            return JSONResponse(rec.body(), status_code=201)

    async def _one(self, request: Request) -> Response:
        found = self._type(request)
        if isinstance(found, Response):
            return found
        value = str(request.path_params["object_id"])
        id_prop = request.query_params.get("idProperty")
        with self.lock:
            rec = found.find(value, id_prop)
            if request.method == "DELETE":
                if rec is not None:
                    found.archive(rec)
                return Response(status_code=204)
            if rec is None:
                return hubspot_error(404, "OBJECT_NOT_FOUND", "Object not found.")
            if request.method == "GET":
                names = request.query_params.get("properties")
                return JSONResponse(rec.body(names.split(",") if names else None))
        body = await request.json()
        props = body.get("properties") if isinstance(body, dict) else None
        with self.lock:
            err = found.check(props, rec)
            if err is not None:
                return JSONResponse(err.body(), status_code=err.status)
            return JSONResponse(found.write(rec, dict(props or {}), self._new_id).body())

    async def _list(self, request: Request) -> Response:
        found = self._type(request)
        if isinstance(found, Response):
            return found
        limit = min(100, int(request.query_params.get("limit", "10")))
        after = int(request.query_params.get("after", "0") or 0)
        with self.lock:
            recs = sorted(found.records.values(), key=lambda r: int(r.id))
            page = [r.body() for r in recs[after : after + limit]]
        out: dict[str, Any] = {"results": page}
        if after + limit < len(recs):
            nxt = str(after + limit)
            out["paging"] = {"next": {"after": nxt, "link": f"?after={nxt}"}}
        return JSONResponse(out)

    async def _search(self, request: Request) -> Response:
        found = self._type(request)
        if isinstance(found, Response):
            return found
        body = await request.json()
        groups = body.get("filterGroups") or []
        filters = [f for g in groups for f in g.get("filters", [])]
        if (
            len(groups) > 5
            or any(len(g.get("filters", [])) > 10 for g in groups)
            or len(filters) > 25
        ):
            return hubspot_error(
                400,
                "VALIDATION_ERROR",
                "Too many filters: at most 5 filterGroups, "
                "10 filters in a group and 25 filters in all",
            )
        limit = int(body.get("limit", 10))
        after = int(body.get("after") or 0)
        if limit > 200 or after + limit > 10_000:
            return hubspot_error(
                400,
                "VALIDATION_ERROR",
                "limit must be at most 200 and a search returns at most 10000 results",
            )
        with self.lock:
            recs = sorted(found.records.values(), key=lambda r: int(r.id))
            hits = [r for r in recs if not groups or any(matches(r, g) for g in groups)]
            names = body.get("properties") or None
            page = [r.body(names) for r in hits[after : after + limit]]
        out: dict[str, Any] = {"total": len(hits), "results": page}
        if after + limit < len(hits):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return JSONResponse(out)

    # -- properties and schemas --------------------------------------------------------

    async def _properties(self, request: Request) -> Response:
        found = self._type(request)
        if isinstance(found, Response):
            return found
        if request.method == "GET":
            with self.lock:
                return JSONResponse({"results": list(found.properties.values())})
        body = await request.json()
        need = ("name", "label", "type", "fieldType", "groupName")
        missing = [k for k in need if not isinstance(body, dict) or not body.get(k)]
        if missing:
            return hubspot_error(400, "VALIDATION_ERROR", f"Missing required fields: {missing}")
        with self.lock:
            if body["name"] in found.properties:
                return hubspot_error(
                    409,
                    "OBJECT_ALREADY_EXISTS",
                    f"A property named '{body['name']}' already exists.",
                )
            made = prop(
                body["name"],
                type=body["type"],
                field_type=body["fieldType"],
                group=body["groupName"],
                unique=bool(body.get("hasUniqueValue")),
                label=body["label"],
            )
            found.properties[made["name"]] = made
            found.reindex()
        return JSONResponse(made, status_code=201)

    async def _property(self, request: Request) -> Response:
        found = self._type(request)
        if isinstance(found, Response):
            return found
        name = str(request.path_params["name"])
        with self.lock:
            p = found.properties.get(name)
        if p is None:
            return hubspot_error(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
        return JSONResponse(p)

    async def _create_schema(self, request: Request) -> Response:
        body = await request.json()
        name = body.get("name") if isinstance(body, dict) else None
        if not name or not isinstance(name, str):
            return hubspot_error(400, "VALIDATION_ERROR", "name is required")
        if name in self.types:
            return hubspot_error(409, "OBJECT_ALREADY_EXISTS", f"Object type {name} already exists")
        props = []
        for p in body.get("properties") or []:
            props.append(
                {
                    "name": p["name"],
                    "unique": bool(p.get("hasUniqueValue")),
                    "type": p.get("type", "string"),
                    "field_type": p.get("fieldType", "text"),
                }
            )
        obj = self.add_object_type(name, props)
        return JSONResponse(
            {
                "id": obj.type_id,
                "objectTypeId": obj.type_id,
                "name": name,
                "fullyQualifiedName": f"p_{name}",
                "properties": list(obj.properties.values()),
            },
            status_code=201,
        )


__all__ = ["DEFAULT_TOKEN", "HubSpotEmulator", "ObjectType", "default_properties", "prop"]
