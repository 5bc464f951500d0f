"""Braze emulator: ``/users/track`` (attributes, events, purchases), user delete and export.

What it enforces, as Braze does: ``Authorization: Bearer <REST key>`` (401 ``Invalid API
Key``); at most 75 objects per ``/users/track`` request (400 ``Max Input Length Exceeded``),
counted across the three arrays or per array (:attr:`BrazeEmulator.cap_mode`); one
identifier per object (``external_id``, ``braze_id``, ``user_alias``, ``email``, ``phone``;
email wins over phone); non-fatal errors answered with ``message: "success"`` and
``errors[{type, input_array, index}]`` so each error maps back to its object; a fatal 400
when no object is valid; alias-only profiles created only with
``_update_existing_only: false``; an email with no profile creates an email-only user; by
email, the most recently updated profile with an ``external_id`` is the one updated;
attributes merge, events and purchases are never de-duplicated; ``/users/delete`` with at
most 50 identifiers; 3,000 ``/users/track`` requests per 3 s, 20,000 per minute to
``/users/delete`` and 250 to ``/users/export/ids`` (429), with
``X-RateLimit-Limit/Remaining/Reset`` (epoch seconds) on every answer.

Unverified facts (Braze's documents or connectors differ; each is a setting):
``success_status`` (201 as connectors see it; the docs show only the body), ``cap_mode``
(classic docs: 75 per array; newer docs: 75 combined, the default, as the stricter rule),
``max_purchase_quantity`` (1-100), ``null_removes_attribute`` (a ``null`` attribute is
removed), ``retry_after_header`` (no ``Retry-After`` is documented for this endpoint), the
``/users/delete`` and ``/users/export/ids`` answer shapes, that an object for a missing
``braze_id`` changes nothing, and ``subscription_groups`` entries in attributes objects
(``{subscription_group_id, subscription_state}``) which set group membership.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import InitVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from typing import ClassVar
from typing import Literal

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._http import authorization
from backhaul.testing.emulators.base import DestinationFile
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow
from backhaul.testing.emulators.base import count_request
from backhaul.testing.emulators.base import rate_limit_headers

ARRAYS = ("attributes", "events", "purchases")
IDENTIFIERS = ("external_id", "braze_id", "user_alias", "email", "phone")
NO_IDENTIFIER = "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"
BAD_EMAIL = "The value provided for the 'email' field is not a valid email."
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
Profile = dict[str, Any]


@dataclass(eq=False, repr=False, kw_only=True)
class BrazeEmulator(Emulator):
    """An in-memory Braze workspace.

    Args:
        api_key: The REST API key accepted as ``Authorization: Bearer``.
        max_objects: Most objects per ``/users/track`` request (Braze: 75; MAU plans: 50).
        cap_mode: ``"combined"`` counts the three arrays together, ``"per_array"`` each one.
        track_rate_limit: ``/users/track`` requests per ``track_rate_window`` seconds.
        track_rate_window: Its window (Braze: 3,000 per 3 s).
        users_rate_limit: Requests per minute to ``/users/delete`` (Braze: 20,000, shared
            with alias, identify and merge).
        export_rate_limit: Requests per minute to ``/users/export/ids`` (Braze: 250 for new
            customers).
        max_delete_ids: Most identifiers per ``/users/delete`` request (Braze: 50).
        max_export_ids: Most ``external_ids`` per ``/users/export/ids`` request (50).
        success_status: HTTP status of a successful ``/users/track`` (unverified: 201).
        max_purchase_quantity: Highest purchase ``quantity`` (unverified: 100).
        null_removes_attribute: A ``null`` attribute value removes it (unverified).
        retry_after_header: Also send ``Retry-After`` on a 429 (not documented).
        clock: Monotonic clock of the rate windows.
        seed: Seed of the random fault switches.
    """

    vendor: ClassVar[str] = "braze"
    destination_file: ClassVar[DestinationFile] = DestinationFile({"api_key": "BRAZE_API_KEY"})

    api_key: str = "braze-emulator-rest-key-0001"
    max_objects: int = 75
    cap_mode: Literal["combined", "per_array"] = "combined"
    track_rate_limit: InitVar[int] = 3000
    track_rate_window: InitVar[float] = 3.0
    users_rate_limit: InitVar[int] = 20_000
    export_rate_limit: InitVar[int] = 250
    max_delete_ids: int = 50
    max_export_ids: int = 50
    success_status: int = 201
    max_purchase_quantity: int = 100
    null_removes_attribute: bool = True
    retry_after_header: bool = False
    clock: InitVar[Callable[[], float]] = time.monotonic
    seed: InitVar[int] = 0

    def __post_init__(
        self,
        track_rate_limit: int,
        track_rate_window: float,
        users_rate_limit: int,
        export_rate_limit: int,
        clock: Callable[[], float],
        seed: int,
    ) -> None:
        super().__init__(seed=seed)
        if self.cap_mode not in ("combined", "per_array"):
            raise ValueError("cap_mode must be 'combined' or 'per_array'")
        self.windows = {
            "/users/track": SlidingWindow(track_rate_limit, track_rate_window, clock),
            "/users/delete": SlidingWindow(users_rate_limit, 60.0, clock),
            "/users/export/ids": SlidingWindow(export_rate_limit, 60.0, clock),
        }
        self.profiles: dict[str, Profile] = {}
        self._tick = itertools.count(1)

    # -- hooks -----------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route("/users/track", self._track, methods=["POST"]),
            Route("/users/delete", self._delete, methods=["POST"]),
            Route("/users/export/ids", self._export, methods=["POST"]),
        ]

    def vendor_error(self, status: int, message: str) -> Response:
        if status == 202:  # Braze's answer while in maintenance: nothing was processed
            return JSONResponse({"message": "queued"}, status_code=202)
        return JSONResponse({"message": message}, status_code=status)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        # A refused call has used the window up: nothing remains until the reset it names
        # (epoch seconds), whether the window or a fault switch refused it.
        headers = {
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(math.ceil(time.time() + retry_after)),
        }
        if self.retry_after_header:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return JSONResponse({"message": "Rate Limit Exceeded"}, status_code=429, headers=headers)

    def vendor_state(self) -> dict[str, Any]:
        return {"users": [_public(p) for p in self.profiles.values()]}

    def vendor_reset(self) -> None:
        self.profiles.clear()

    # -- inspection ----------------------------------------------------------------------

    def user(self, **identifier: Any) -> Profile | None:
        """The profile one identifier finds, e.g. ``user(external_id="u-1")``."""
        if len(identifier) != 1:
            raise ValueError("give exactly one identifier")
        [(key, value)] = identifier.items()
        with self.lock:
            found = self._find(key, value)
            return _public(found) if found is not None else None

    # -- plumbing ----------------------------------------------------------------------------

    def _window(self, request: Request) -> SlidingWindow:
        return self.windows[request.url.path]

    async def before_request(self, request: Request) -> Response | None:
        if authorization(request, "Bearer") != self.api_key:
            return JSONResponse({"message": "Invalid API Key"}, status_code=401)
        window = self._window(request)
        allowed, wait = count_request(request, window, window.reset_in)
        return None if allowed else self.vendor_rate_limited(wait)

    def response_headers(self, request: Request) -> dict[str, str]:
        return rate_limit_headers(request, self._window(request).limit)

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"message": "Invalid JSON in request body"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"message": NO_VALID_DATA}, status_code=400)
        return body

    # -- identity --------------------------------------------------------------------------

    @staticmethod
    def _identifier(item: dict[str, Any]) -> tuple[str, Any] | None:
        for key in IDENTIFIERS:
            if item.get(key) is not None:
                return key, item[key]
        return None

    def _find(self, key: str, value: Any) -> Profile | None:
        if key == "braze_id":
            return self.profiles.get(str(value))
        if key == "user_alias":
            alias = _alias(value)
            return next(
                (p for p in self.profiles.values() if alias and alias in p["user_aliases"]), None
            )
        if key == "external_id":
            return next((p for p in self.profiles.values() if p["external_id"] == str(value)), None)
        wanted = str(value).strip().lower()
        matches = [p for p in self.profiles.values() if str(p.get(key) or "").lower() == wanted]
        # Several profiles share an email: the most recently updated one with an external_id.
        matches.sort(key=lambda p: (p["external_id"] is not None, p["_updated"]), reverse=True)
        return matches[0] if matches else None

    def _create(self, key: str, value: Any) -> Profile:
        profile: Profile = {
            "braze_id": uuid.uuid4().hex[:24],
            "external_id": str(value) if key == "external_id" else None,
            "user_aliases": [_alias(value)] if key == "user_alias" else [],
            "email": str(value) if key == "email" else None,
            "phone": str(value) if key == "phone" else None,
            "attributes": {},
            "subscription_groups": {},
            "events": [],
            "purchases": [],
            "_updated": next(self._tick),
        }
        self.profiles[profile["braze_id"]] = profile
        return profile

    def _problem(self, array: str, item: Any) -> str | None:
        """Why an object of ``array`` is refused, in Braze's words; ``None`` when valid."""
        if not isinstance(item, dict):
            return f"'{array}' objects must be JSON objects"
        found = self._identifier(item)
        if found is None:
            return NO_IDENTIFIER
        key, value = found
        if str(value) in self.faults.rejects:
            return self.faults.rejects[str(value)]
        if key == "user_alias" and _alias(value) is None:
            return "'user_alias' is not valid"
        email = item.get("email")
        if email is not None and not _is_email(email):
            return BAD_EMAIL
        if array == "events":
            return _missing(item, ("name", "time")) or _bad_time(item)
        if array == "purchases":
            missing = _missing(item, ("product_id", "currency", "price", "time"))
            if missing:
                return missing
            if not isinstance(item["price"], int | float) or isinstance(item["price"], bool):
                return "'price' is not valid"
            if not (isinstance(item["currency"], str) and len(item["currency"]) == 3):
                return "'currency' is not valid"
            quantity = item.get("quantity", 1)
            if not (isinstance(quantity, int) and 1 <= quantity <= self.max_purchase_quantity):
                return "'quantity' is not valid"
            return _bad_time(item)
        groups = item.get("subscription_groups")
        if groups is not None and not (
            isinstance(groups, list)
            and all(
                isinstance(g, dict)
                and g.get("subscription_group_id")
                and g.get("subscription_state") in ("subscribed", "unsubscribed")
                for g in groups
            )
        ):
            return "'subscription_groups' is not valid"
        return None

    def _apply(self, array: str, item: dict[str, Any]) -> None:
        found = self._identifier(item)
        assert found is not None
        key, value = found
        profile = self._find(key, value)
        if profile is None:
            update_only = item.get("_update_existing_only", key == "user_alias")
            if update_only or key == "braze_id":
                return  # Braze drops an update for a profile it does not have
            profile = self._create(key, value)
        profile["_updated"] = next(self._tick)
        if array in ("events", "purchases"):
            profile[array].append(
                {k: v for k, v in item.items() if k not in IDENTIFIERS and not k.startswith("_")}
            )
            return
        for name, attr in item.items():
            if name in ("external_id", "braze_id", "user_alias", "_update_existing_only"):
                continue
            if name == "subscription_groups":
                for group in attr:
                    profile["subscription_groups"][str(group["subscription_group_id"])] = group[
                        "subscription_state"
                    ]
            elif name in ("email", "phone"):
                profile[name] = attr
            elif attr is None and self.null_removes_attribute:
                profile["attributes"].pop(name, None)
            else:
                profile["attributes"][name] = attr

    # -- endpoints ---------------------------------------------------------------------------

    async def _track(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        arrays = {name: body[name] for name in ARRAYS if body.get(name) is not None}
        if not arrays or any(not isinstance(a, list) for a in arrays.values()):
            return JSONResponse({"message": NO_VALID_DATA}, status_code=400)
        sizes = [len(a) for a in arrays.values()]
        if (sum(sizes) if self.cap_mode == "combined" else max(sizes)) > self.max_objects:
            return JSONResponse({"message": "Max Input Length Exceeded"}, status_code=400)
        errors: list[dict[str, Any]] = []
        processed = dict.fromkeys(arrays, 0)
        with self.lock:
            valid: list[tuple[str, dict[str, Any]]] = []
            for name, items in arrays.items():
                for index, item in enumerate(items):
                    problem = self._problem(name, item)
                    if problem is None:
                        valid.append((name, item))
                    else:
                        errors.append({"type": problem, "input_array": name, "index": index})
            if not valid:
                return JSONResponse({"message": NO_VALID_DATA, "errors": errors}, status_code=400)
            for name, item in valid:
                self._apply(name, item)
                processed[name] += 1
        out: dict[str, Any] = {"message": "success"}
        out.update({f"{name}_processed": n for name, n in processed.items()})
        if errors:
            out["errors"] = errors
        return JSONResponse(out, status_code=self.success_status)

    def _selected(self, body: dict[str, Any]) -> list[tuple[str, Any]] | Response:
        pairs: list[tuple[str, Any]] = []
        for field_name, key in (
            ("external_ids", "external_id"),
            ("braze_ids", "braze_id"),
            ("user_aliases", "user_alias"),
            ("email_addresses", "email"),
        ):
            values = body.get(field_name) or []
            if not isinstance(values, list):
                return JSONResponse({"message": f"'{field_name}' must be an array"}, 400)
            pairs += [(key, v) for v in values]
        return pairs

    async def _delete(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        pairs = self._selected(body)
        if isinstance(pairs, Response):
            return pairs
        if len(pairs) > self.max_delete_ids:
            return JSONResponse(
                {"message": "The max number of external_ids and aliases per request was exceeded"},
                status_code=400,
            )
        deleted = 0
        with self.lock:
            for key, value in pairs:
                profile = self._find(key, value)
                if profile is not None:
                    del self.profiles[profile["braze_id"]]
                    deleted += 1
        return JSONResponse({"deleted": deleted, "message": "success"}, status_code=201)

    async def _export(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        externals = body.get("external_ids") or []
        if not isinstance(externals, list) or len(externals) > self.max_export_ids:
            return JSONResponse(
                {"message": f"'external_ids' must be an array of at most {self.max_export_ids}"},
                status_code=400,
            )
        pairs: list[tuple[str, Any]] = [("external_id", v) for v in externals]
        pairs += [("user_alias", v) for v in body.get("user_aliases") or []]
        for key, field_name in (("braze_id", "braze_id"), ("email", "email_address")):
            if body.get(field_name) is not None:
                pairs.append((key, body[field_name]))
        wanted = body.get("fields_to_export")
        users: list[dict[str, Any]] = []
        invalid: list[Any] = []
        with self.lock:
            for key, value in pairs:
                profile = self._find(key, value)
                if profile is None:
                    invalid.append(value)
                    continue
                flat = _public(profile)
                flat.update(flat.pop("attributes"))
                users.append(flat if not wanted else {k: flat.get(k) for k in wanted})
        out: dict[str, Any] = {"users": users, "message": "success"}
        if invalid:
            out["invalid_user_ids"] = invalid
        return JSONResponse(out, status_code=201)


def _public(profile: Profile) -> Profile:
    """A profile as Braze shows it (without the emulator's own bookkeeping)."""
    return {k: v for k, v in profile.items() if not k.startswith("_")}


def _alias(value: Any) -> dict[str, str] | None:
    """A ``user_alias`` reduced to its name and label; ``None`` when it is not one."""
    if not isinstance(value, dict):
        return None
    name, label = value.get("alias_name"), value.get("alias_label")
    if not (isinstance(name, str) and isinstance(label, str) and name and label):
        return None
    return {"alias_name": name, "alias_label": label}


def _is_email(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    local, at, domain = value.strip().rpartition("@")
    return bool(at and local and "." in domain and " " not in value.strip())


def _missing(item: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    for name in fields:
        if item.get(name) in (None, ""):
            return f"'{name}' is required"
    return None


def _bad_time(item: dict[str, Any]) -> str | None:
    try:
        datetime.fromisoformat(str(item["time"]))
    except ValueError:
        return "'time' is not valid"
    return None
