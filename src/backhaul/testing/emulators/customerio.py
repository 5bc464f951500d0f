"""Customer.io Track API emulator: v1 identify, events and deletes, and the v2 batch.

What it enforces, as Customer.io does: HTTP Basic ``site_id:api_key`` (401); people
identified by ``id``, ``email`` (case-insensitive) or ``cio_<id>``; identify creating or
updating a person, ``_update: true`` only updating; an identify whose e-mail belongs to
someone else answered 200 but not applied (an *attribute update failure*, kept in
``state()["attribute_failures"]``); data limits (at most 300 attributes per call, names of
150 bytes, values of 1,000 bytes, ids of 150 bytes, event names of 100 bytes, event data of
100,000 bytes); ``POST /api/v2/batch`` under 500 KB with entries of at most 32 KB, answered
200 ``{}`` or 207 with ``errors[{batch_index, reason, field, message}]`` for the refused
entries while the rest is applied; v1 errors as ``{"meta": {"error": ...}}``; deletes;
suppression (later identifies of a suppressed person are ignored); objects and their
relationships to people; a request rate (429).

Unverified facts (settings, or noted here): the rate (``rate_limit``: the current API
description says 1,000 requests/s, older pages 100/s) and its 429 body (no headers are
documented); KB read as 1,024 bytes; the 400 for a batch of 500 KB or more and the
``too_large`` reason of an entry over 32 KB; the 401 and 429 texts; ``cap_entries`` (1,000
entries, a connector habit, off by default); that an event for an unknown person creates
them; that ``_timestamp`` older than the person's last one leaves them unchanged; batch
actions other than identify, delete, event, page, screen, suppress, unsuppress and
add/delete relationships are refused as not modelled.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import InitVar
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._http import KB
from backhaul.testing.emulators._http import basic_credentials
from backhaul.testing.emulators._http import json_size
from backhaul.testing.emulators.base import DestinationFile
from backhaul.testing.emulators.base import WindowedEmulator

PERSON = "/api/v1/customers/{identifier}"
KINDS = ("id", "email", "cio_id")
RESERVED = frozenset({"_update", "_timestamp"})
Person = dict[str, Any]


class Refused(Exception):
    """An entry or call refused: (field, message, reason)."""

    def __init__(self, field: str, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.field, self.message, self.reason = field, message, reason


def _bytes(value: Any) -> int:
    return len(value.encode("utf-8")) if isinstance(value, str) else json_size(value)


@dataclass(eq=False, repr=False, kw_only=True)
class CustomerIoEmulator(WindowedEmulator):
    """An in-memory Customer.io workspace (Track API).

    Args:
        site_id: The site id (Basic auth user).
        api_key: The tracking API key (Basic auth password).
        email_identifiers: The workspace lets an e-mail stand for a person in paths.
        max_batch_bytes: A v2 batch body must be smaller than this.
        max_entry_bytes: Largest v2 batch entry.
        cap_entries: Most entries per batch, or ``None`` (Customer.io documents none).
        rate_limit: Requests allowed per ``rate_window`` seconds.
        rate_window: Its window.
        max_attributes: Most attributes in one identify.
        clock: Monotonic clock of the rate window.
        seed: Seed of the random fault switches.
    """

    vendor: ClassVar[str] = "customerio"
    destination_file: ClassVar[DestinationFile] = DestinationFile(
        {"site_id": "CUSTOMERIO_SITE_ID", "api_key": "CUSTOMERIO_API_KEY"}
    )

    site_id: str = "cio-emulator-site"
    api_key: str = "cio-emulator-track-key"
    email_identifiers: bool = True
    max_batch_bytes: int = 500 * KB
    max_entry_bytes: int = 32 * KB
    cap_entries: int | None = None
    rate_limit: InitVar[int] = 1000
    rate_window: InitVar[float] = 1.0
    max_attributes: int = 300
    people: dict[str, Person] = field(default_factory=dict, init=False)
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict, init=False)
    suppressed: set[tuple[str, str]] = field(default_factory=set, init=False)
    attribute_failures: list[dict[str, str]] = field(default_factory=list, init=False)
    _event_ids: set[str] = field(default_factory=set, init=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), init=False)

    # -- hooks -----------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route(PERSON, self._v1_person, methods=["PUT", "DELETE"]),
            Route(PERSON + "/events", self._v1_event, methods=["POST"]),
            Route(PERSON + "/suppress", self._v1_suppress, methods=["POST"]),
            Route(PERSON + "/unsuppress", self._v1_suppress, methods=["POST"]),
            Route("/api/v2/batch", self._batch, methods=["POST"]),
        ]

    def vendor_error(self, status: int, message: str) -> Response:
        return JSONResponse({"meta": {"error": message}}, status_code=status)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        return JSONResponse({"meta": {"error": "Too many requests"}}, status_code=429)

    def vendor_state(self) -> dict[str, Any]:
        return {
            "people": list(self.people.values()),
            "objects": [
                {"object_type_id": t, "object_id": i, **o} for (t, i), o in self.objects.items()
            ],
            "suppressed": sorted(f"{k}:{v}" for k, v in self.suppressed),
            "attribute_failures": self.attribute_failures,
        }

    def vendor_reset(self) -> None:
        self.people.clear()
        self.objects.clear()
        self.suppressed.clear()
        self.attribute_failures.clear()
        self._event_ids.clear()

    # -- inspection --------------------------------------------------------------------------

    def person(self, kind: str, value: str) -> Person | None:
        """The person with this ``id``, ``email`` or ``cio_id``."""
        with self.lock:
            found = self._find(kind, value)
            return json.loads(json.dumps(found)) if found is not None else None

    # -- edge ----------------------------------------------------------------------------------

    async def before_request(self, request: Request) -> Response | None:
        if basic_credentials(request) != (self.site_id, self.api_key):
            return JSONResponse({"meta": {"error": "Unauthorized request"}}, status_code=401)
        return None if self.window.hit()[0] else self.vendor_rate_limited(0)

    # -- people --------------------------------------------------------------------------------

    def _find(self, kind: str, value: Any) -> Person | None:
        if value is None:
            return None
        wanted = str(value).lower() if kind == "email" else str(value)
        for person in self.people.values():
            have = person.get(kind)
            if have is not None and (have.lower() if kind == "email" else have) == wanted:
                return person
        return None

    def _path_identifier(self, raw: str) -> tuple[str, str]:
        if raw.startswith("cio_"):
            return "cio_id", raw[4:]
        if "@" in raw and self.email_identifiers:
            return "email", raw
        return "id", raw

    def _check_attributes(self, attributes: Any, prefix: str = "attributes") -> None:
        if not isinstance(attributes, dict):
            raise Refused(prefix, "attributes must be an object")
        names = [n for n in attributes if n not in RESERVED]
        if len(names) > self.max_attributes:
            raise Refused(
                prefix, f"cannot identify more than {self.max_attributes} attributes in one request"
            )
        for name in names:
            if len(name.encode("utf-8")) > 150:
                raise Refused(f"{prefix}.{name}", "attribute name cannot be longer than 150 bytes")
            if _bytes(attributes[name]) > 1000:
                raise Refused(f"{prefix}.{name}", "property value cannot be longer than 1000 bytes")

    def _check_identifier(self, kind: str, value: Any) -> str:
        if kind not in KINDS or value in (None, ""):
            raise Refused("identifiers", "give exactly one of id, email or cio_id")
        text = str(value)
        if len(text.encode("utf-8")) > 150:
            raise Refused(f"identifiers.{kind}", "id cannot be longer than 150 bytes")
        if text in self.faults.rejects:
            raise Refused(f"identifiers.{kind}", self.faults.rejects[text])
        return text

    def _identify(self, kind: str, value: str, attributes: dict[str, Any]) -> None:
        if (kind, value.lower() if kind == "email" else value) in self.suppressed:
            return  # suppressed people are not re-added
        person = self._find(kind, value)
        for key in ("id", "email"):
            new = attributes.get(key)
            other = None if new is None or key == kind else self._find(key, new)
            if other is not None and other is not person:
                # Customer.io answers 200 and reports an "Attribute Update Failure".
                self.attribute_failures.append(
                    {
                        "identifier": f"{kind}:{value}",
                        "message": f"{key} {new} already belongs to another person",
                    }
                )
                return
        if person is None:
            if attributes.get("_update") or kind == "cio_id":
                return
            cio_id = f"{next(self._ids):08x}"
            person = {"cio_id": cio_id, "id": None, "email": None, "attributes": {}}
            person[kind] = value
            person["created_at"] = attributes.get("created_at", int(time.time()))
            self.people[cio_id] = person
        stamp = attributes.get("_timestamp")
        if isinstance(stamp, int | float) and stamp < person.get("_timestamp", 0):
            return
        if isinstance(stamp, int | float):
            person["_timestamp"] = stamp
        for name, attr in attributes.items():
            if name in RESERVED:
                continue
            if name in ("id", "email"):
                person[name] = None if attr is None else str(attr)
            person["attributes"][name] = attr

    def _delete(self, kind: str, value: str) -> None:
        person = self._find(kind, value)
        if person is not None:
            del self.people[person["cio_id"]]

    def _suppress(self, kind: str, value: str, on: bool) -> None:
        person = self._find(kind, value)
        keys = {(kind, value.lower() if kind == "email" else value)}
        if person is not None:
            keys |= {
                (k, person[k].lower() if k == "email" else person[k])
                for k in ("id", "email")
                if person[k]
            }
        if on:
            self.suppressed |= keys
            self._delete(kind, value)
        else:
            self.suppressed -= keys

    def _event(self, kind: str, value: str, event: dict[str, Any]) -> None:
        name = event.get("name")
        if not isinstance(name, str) or not name:
            raise Refused("name", "name cannot be blank")
        if len(name.encode("utf-8")) > 100:
            raise Refused("name", "event name cannot be longer than 100 bytes")
        if json_size(event.get("data") or {}) > 100_000:
            raise Refused("data", "event data cannot be larger than 100000 bytes")
        event_id = event.get("id")
        if event_id is not None and str(event_id) in self._event_ids:
            return  # the same event id is recorded once
        if self._find(kind, value) is None:
            self._identify(kind, value, {})
        person = self._find(kind, value)
        if person is None:
            return
        if event_id is not None:
            self._event_ids.add(str(event_id))
        person.setdefault("events", []).append({k: v for k, v in event.items() if v is not None})

    # -- v1 ----------------------------------------------------------------------------------

    async def _v1_call(
        self, request: Request, act: Callable[[str, str, dict[str, Any]], None]
    ) -> Response:
        """A v1 person call: the identifier from the path, a JSON object body, then ``act``
        under the lock; a refusal is answered 400 with its message."""
        kind, value = self._path_identifier(request.path_params["identifier"])
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"meta": {"error": "invalid JSON body"}}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"meta": {"error": "body must be an object"}}, status_code=400)
        with self.lock:
            try:
                act(kind, value, body)
            except Refused as exc:
                return JSONResponse({"meta": {"error": exc.message}}, status_code=400)
        return JSONResponse({})

    async def _v1_person(self, request: Request) -> Response:
        def act(kind: str, value: str, body: dict[str, Any]) -> None:
            value = self._check_identifier(kind, value)
            if request.method == "DELETE":
                self._delete(kind, value)
            else:
                self._check_attributes(body)
                self._identify(kind, value, body)

        return await self._v1_call(request, act)

    async def _v1_event(self, request: Request) -> Response:
        def act(kind: str, value: str, body: dict[str, Any]) -> None:
            self._event(kind, self._check_identifier(kind, value), body)

        return await self._v1_call(request, act)

    async def _v1_suppress(self, request: Request) -> Response:
        kind, value = self._path_identifier(request.path_params["identifier"])
        with self.lock:
            self._suppress(kind, value, not request.url.path.endswith("/unsuppress"))
        return JSONResponse({})

    # -- v2 ----------------------------------------------------------------------------------

    async def _batch(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) >= self.max_batch_bytes:
            return _v2_error(
                f"batch request body must be smaller than {self.max_batch_bytes} bytes"
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return _v2_error("request body is not valid JSON")
        entries = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not entries:
            return _v2_error("`batch` must be a non-empty array")
        if self.cap_entries is not None and len(entries) > self.cap_entries:
            return _v2_error(f"at most {self.cap_entries} entries per batch")
        errors: list[dict[str, Any]] = []
        with self.lock:
            for index, entry in enumerate(entries):
                try:
                    if json_size(entry) > self.max_entry_bytes:
                        raise Refused(
                            "", f"entry is larger than {self.max_entry_bytes} bytes", "too_large"
                        )
                    self._entry(entry)
                except Refused as exc:
                    errors.append(
                        {
                            "batch_index": index,
                            "reason": exc.reason,
                            "field": exc.field,
                            "message": exc.message,
                        }
                    )
        if errors:
            return JSONResponse({"errors": errors}, status_code=207)
        return JSONResponse({})

    def _entry(self, entry: Any) -> None:
        if not isinstance(entry, dict):
            raise Refused("", "each entry must be an object")
        identifiers = entry.get("identifiers")
        if not isinstance(identifiers, dict):
            raise Refused("identifiers", "identifiers must be an object")
        action, attributes = entry.get("action"), entry.get("attributes") or {}
        if entry.get("type") == "object":
            self._object_entry(identifiers, action, attributes, entry)
            return
        if entry.get("type") != "person":
            raise Refused("type", f"type {entry.get('type')!r} is not modelled by the emulator")
        if len(identifiers) != 1:
            raise Refused("identifiers", "give exactly one of id, email or cio_id")
        [(kind, raw)] = identifiers.items()
        value = self._check_identifier(kind, raw)
        if action == "identify":
            self._check_attributes(attributes)
            self._identify(kind, value, attributes)
            for rel in entry.get("cio_relationships") or []:
                self._relate(kind, value, rel, add=True)
        elif action == "delete":
            self._delete(kind, value)
        elif action in ("suppress", "unsuppress"):
            self._suppress(kind, value, action == "suppress")
        elif action in ("event", "page", "screen"):
            event = {"name": entry.get("name"), "data": attributes, "id": entry.get("id")}
            event.update(type=action, timestamp=entry.get("timestamp"))
            self._event(kind, value, event)
        elif action in ("add_relationships", "delete_relationships"):
            if self._find(kind, value) is None:
                raise Refused("identifiers", "no person has these identifiers", "not_found")
            for rel in entry.get("cio_relationships") or []:
                self._relate(kind, value, rel, add=action == "add_relationships")
        else:
            raise Refused("action", f"action {action!r} is not modelled by the emulator")

    def _object_entry(
        self, identifiers: dict[str, Any], action: Any, attributes: Any, entry: dict[str, Any]
    ) -> None:
        key = (
            str(identifiers.get("object_type_id") or ""),
            str(identifiers.get("object_id") or ""),
        )
        if not all(key):
            raise Refused("identifiers", "objects need object_type_id and object_id")
        if action == "delete":
            self.objects.pop(key, None)
            return
        if action != "identify":
            raise Refused("action", f"action {action!r} is not modelled for objects")
        self._check_attributes(attributes)
        obj = self.objects.setdefault(key, {"attributes": {}, "people": []})
        obj["attributes"].update(attributes)
        for rel in entry.get("cio_relationships") or []:
            ids = rel.get("identifiers") if isinstance(rel, dict) else None
            if not isinstance(ids, dict) or len(ids) != 1:
                raise Refused("cio_relationships", "each relationship names one person")
            [(kind, value)] = ids.items()
            person = self._find(kind, value)
            if person is not None and person["cio_id"] not in obj["people"]:
                obj["people"].append(person["cio_id"])

    def _relate(self, kind: str, value: str, rel: Any, add: bool) -> None:
        ids = rel.get("identifiers") if isinstance(rel, dict) else None
        if not isinstance(ids, dict) or not ids.get("object_type_id") or not ids.get("object_id"):
            raise Refused(
                "cio_relationships", "each relationship needs object_type_id and object_id"
            )
        person = self._find(kind, value)
        if person is None:
            return
        key = (str(ids["object_type_id"]), str(ids["object_id"]))
        obj = self.objects.setdefault(key, {"attributes": {}, "people": []})
        if add and person["cio_id"] not in obj["people"]:
            obj["people"].append(person["cio_id"])
        if not add and person["cio_id"] in obj["people"]:
            obj["people"].remove(person["cio_id"])


def _v2_error(message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"reason": "invalid", "message": message}]}, status_code=400)
