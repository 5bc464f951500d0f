"""Segment HTTP Tracking API emulator: identify, track, page, screen, group, alias, batch.

What it enforces, as Segment does: the write key in the body (``writeKey``) or as the user
of HTTP Basic (a missing key is a 400; an unknown one is answered 200 and its messages are
dropped, as the stateless edge does); ``Content-Type: application/json``; at most 32 KB per
call or per message of a batch and 500 KB per batch (400 Bad Request); 200
``{"success": true}`` for everything else, so messages Segment refuses are dropped
silently and shown in ``state()["dropped"]`` with the reason (no ``userId`` or
``anonymousId``, a track without ``event``, more than 2,500 messages in a batch, a
``messageId`` of 100 characters or more); batch-level ``context`` and ``integrations``
merged into each message; ``messageId`` de-duplication (a repeated id is counted in
``state()["duplicates"]`` and not applied again; an id is assigned when absent); traits kept
per ``userId`` (or ``anonymousId``) so tests can assert on the resulting profiles, aliases
merging profiles; a per-workspace request rate (429 with ``Retry-After`` and
``X-RateLimit-Reset``, both in seconds to wait).

Unverified facts (settings, or noted here): the body of 400 and 429 answers; KB read as
1,024 bytes (Segment's own libraries cap messages at 32 << 10 bytes); de-duplication for
the emulator's lifetime (Segment's window is not documented here); the
``unknown_key_status`` of an unknown write key (200, as Segment's maintainers describe
it); profiles as the emulator's view (Segment has no profile store in this API).
"""

from __future__ import annotations

import json
import math
import uuid
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

TYPES = ("identify", "track", "page", "screen", "group", "alias")


@dataclass(eq=False, repr=False, kw_only=True)
class SegmentEmulator(WindowedEmulator):
    """An in-memory Segment source (HTTP Tracking API).

    Args:
        write_key: The source's write key.
        max_message_bytes: Largest call or batch message (Segment: 32 KB).
        max_batch_bytes: Largest batch request (Segment: 500 KB).
        max_batch_events: Messages of a batch beyond this many are dropped (Segment: 2,500).
        max_message_id_chars: A ``messageId`` must be shorter than this (Segment: 100).
        rate_limit: Requests per ``rate_window`` seconds (Segment: 1,000/s per workspace).
        rate_window: Its window.
        unknown_key_status: Status answered for an unknown write key (Segment: 200).
        clock: Monotonic clock of the rate window.
        seed: Seed of the random fault switches.
    """

    vendor: ClassVar[str] = "segment"
    destination_file: ClassVar[DestinationFile] = DestinationFile(
        {"write_key": "SEGMENT_WRITE_KEY"}
    )

    write_key: str = "sgEmulatorWriteKey00000000000001"
    max_message_bytes: int = 32 * KB
    max_batch_bytes: int = 500 * KB
    max_batch_events: int = 2500
    max_message_id_chars: int = 100
    rate_limit: InitVar[int] = 1000
    rate_window: InitVar[float] = 1.0
    unknown_key_status: int = 200
    users: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    events: list[dict[str, Any]] = field(default_factory=list, init=False)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    aliases: list[dict[str, str]] = field(default_factory=list, init=False)
    seen: set[str] = field(default_factory=set, init=False)
    duplicates: list[str] = field(default_factory=list, init=False)
    dropped: list[dict[str, Any]] = field(default_factory=list, init=False)

    # -- hooks -----------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [Route("/v1/batch", self._batch, methods=["POST"])]
        routes += [Route(f"/v1/{kind}", self._single, methods=["POST"]) for kind in TYPES]
        return routes

    def vendor_error(self, status: int, message: str) -> Response:
        return JSONResponse({"success": False, "message": message}, status_code=status)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        wait = str(max(1, math.ceil(retry_after)))
        return JSONResponse(
            {"success": False, "message": "Too Many Requests"},
            status_code=429,
            headers={"Retry-After": wait, "X-RateLimit-Reset": wait},
        )

    def vendor_state(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "events": self.events,
            "groups": self.groups,
            "aliases": self.aliases,
            "accepted": len(self.seen),
            "duplicates": self.duplicates,
            "dropped": self.dropped,
        }

    def vendor_reset(self) -> None:
        self.users.clear()
        self.events.clear()
        self.groups.clear()
        self.aliases.clear()
        self.seen.clear()
        self.duplicates.clear()
        self.dropped.clear()

    # -- edge --------------------------------------------------------------------------------

    async def before_request(self, request: Request) -> Response | None:
        allowed, _, wait = self.window.hit()
        if not allowed:
            return self.vendor_rate_limited(wait)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return self.vendor_error(400, "Content-Type must be application/json")
        return None

    async def _read(self, request: Request, limit: int) -> dict[str, Any] | Response:
        """The JSON body once the size and write-key checks pass."""
        raw = await request.body()
        if len(raw) > limit:
            return self.vendor_error(400, f"Request body is larger than {limit} bytes")
        try:
            body = json.loads(raw)
        except ValueError:
            return self.vendor_error(400, "Invalid JSON")
        if not isinstance(body, dict):
            return self.vendor_error(400, "Invalid JSON: the body must be an object")
        basic = basic_credentials(request)
        key = body.get("writeKey") or (basic[0] if basic else None)
        if not key:
            return self.vendor_error(400, "Missing write key")
        if key != self.write_key and self.unknown_key_status != 200:
            return self.vendor_error(self.unknown_key_status, "Invalid write key")
        request.state.known_key = key == self.write_key
        return body

    # -- endpoints ---------------------------------------------------------------------------

    async def _single(self, request: Request) -> Response:
        body = await self._read(request, self.max_message_bytes)
        if isinstance(body, Response):
            return body
        message = {k: v for k, v in body.items() if k != "writeKey"}
        message["type"] = request.url.path.rsplit("/", 1)[-1]
        with self.lock:
            self._take(message, request.state.known_key)
        return JSONResponse({"success": True})

    async def _batch(self, request: Request) -> Response:
        body = await self._read(request, self.max_batch_bytes)
        if isinstance(body, Response):
            return body
        messages = body.get("batch")
        if not isinstance(messages, list):
            return self.vendor_error(400, "Invalid JSON: `batch` must be an array")
        for n, message in enumerate(messages):
            if json_size(message) > self.max_message_bytes:
                return self.vendor_error(
                    400, f"Message {n} of the batch is larger than {self.max_message_bytes} bytes"
                )
        shared = {k: body[k] for k in ("context", "integrations") if isinstance(body.get(k), dict)}
        with self.lock:
            for n, message in enumerate(messages):
                if not isinstance(message, dict):
                    self._drop(message, "each message must be an object")
                    continue
                for key, values in shared.items():
                    own = message.get(key)
                    message[key] = {**values, **(own if isinstance(own, dict) else {})}
                if n >= self.max_batch_events:
                    self._drop(message, f"more than {self.max_batch_events} messages in a batch")
                    continue
                self._take(message, request.state.known_key)
        return JSONResponse({"success": True})

    # -- messages ----------------------------------------------------------------------------

    def _drop(self, message: Any, reason: str) -> None:
        message_id = message.get("messageId") if isinstance(message, dict) else None
        self.dropped.append({"messageId": message_id, "reason": reason})

    def _problem(self, message: dict[str, Any]) -> str | None:
        """Why Segment would drop this message (shown in its Debugger), if it would."""
        kind = message.get("type")
        if kind not in TYPES:
            return f"type must be one of {', '.join(TYPES)}"
        message_id = message.get("messageId")
        if message_id is not None and len(str(message_id)) >= self.max_message_id_chars:
            return f"messageId must be fewer than {self.max_message_id_chars} characters"
        for key in ("userId", "anonymousId", "messageId"):
            value = message.get(key)
            if value is not None and str(value) in self.faults.rejects:
                return self.faults.rejects[str(value)]
        if kind == "alias":
            return (
                None
                if message.get("previousId") and message.get("userId")
                else ("alias needs previousId and userId")
            )
        if not message.get("userId") and not message.get("anonymousId"):
            return "no_user_anon_id"
        if kind == "track" and not message.get("event"):
            return "track event is missing name"
        if kind == "group" and not message.get("groupId"):
            return "group needs groupId"
        return None

    def _take(self, message: dict[str, Any], known_key: bool) -> None:
        if not known_key:
            self._drop(message, "invalid write key")
            return
        problem = self._problem(message)
        if problem is not None:
            self._drop(message, problem)
            return
        message_id = str(message.get("messageId") or uuid.uuid4())
        if message_id in self.seen:
            self.duplicates.append(message_id)
            return
        self.seen.add(message_id)
        message["messageId"] = message_id
        kind = message["type"]
        if kind == "identify":
            profile = self._profile(message)
            profile["traits"].update(message.get("traits") or {})
        elif kind == "alias":
            self._alias(str(message["previousId"]), str(message["userId"]))
        elif kind == "group":
            group = self.groups.setdefault(str(message["groupId"]), {"traits": {}, "members": []})
            group["traits"].update(message.get("traits") or {})
            member = str(message.get("userId") or message.get("anonymousId"))
            if member not in group["members"]:
                group["members"].append(member)
        else:
            self._profile(message)
            self.events.append(message)

    def _profile(self, message: dict[str, Any]) -> dict[str, Any]:
        """The profile of a message's ``userId`` (absorbing its ``anonymousId``'s) or
        ``anonymousId``."""
        user_id, anonymous_id = message.get("userId"), message.get("anonymousId")
        if user_id is None:
            return self.users.setdefault(
                str(anonymous_id),
                {"userId": None, "anonymousIds": [str(anonymous_id)], "traits": {}},
            )
        profile = self.users.setdefault(
            str(user_id), {"userId": str(user_id), "anonymousIds": [], "traits": {}}
        )
        if anonymous_id is not None:
            self._absorb(profile, str(anonymous_id))
        return profile

    def _absorb(self, profile: dict[str, Any], other_id: str, *, users_too: bool = False) -> None:
        """Merge the profile known as ``other_id`` (anonymous ones only, unless
        ``users_too``) into ``profile``; its traits give way to the profile's own."""
        other = self.users.get(other_id)
        if other is not None and other is not profile and (users_too or other["userId"] is None):
            del self.users[other_id]
            profile["traits"] = {**other["traits"], **profile["traits"]}
            known = profile["anonymousIds"]
            known += [a for a in other["anonymousIds"] if a not in known]
        if other_id not in profile["anonymousIds"] and other_id != profile["userId"]:
            profile["anonymousIds"].append(other_id)

    def _alias(self, previous_id: str, user_id: str) -> None:
        self.aliases.append({"previousId": previous_id, "userId": user_id})
        profile = self.users.setdefault(
            user_id, {"userId": user_id, "anonymousIds": [], "traits": {}}
        )
        self._absorb(profile, previous_id, users_too=True)
