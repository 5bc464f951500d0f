"""Mailchimp Marketing API v3 emulator: audience members, batch upsert, tags.

What it enforces, as Mailchimp does: HTTP Basic with any user name and the API key as
password, or a Bearer OAuth token (401 ``API Key Invalid``); members addressed by subscriber
hash, the MD5 of the lower-cased e-mail (the address itself is accepted in that path slot
too); ``POST /lists/{id}`` with at most 500 members, answered 200 with ``new_members``,
``updated_members`` and ``errors[{email_address, error, error_code}]``; ``update_existing``
(false: existing members are ``ERROR_CONTACT_EXISTS``); status rules (one of subscribed,
unsubscribed, cleaned, pending, transactional; ``status_if_new`` only for new members);
archive (``DELETE``) and permanent delete (the address can never be imported again); tags
added and removed by name; errors as RFC 7807 ``application/problem+json``; at most 10
simultaneous connections (429 ``Too Many Requests``, no rate-limit headers, no
``Retry-After``).

Unverified facts (settings, or noted here): the 10-connection limit
(``max_connections``); the 400 answer to more than 500 members; the 204 status of delete,
permanent delete and tag updates; the tags endpoint body (``{"tags": [{"name", "status":
"active"|"inactive"}]}``); ``error_code`` values other than ``ERROR_CONTACT_EXISTS`` and
``ERROR_GENERIC``; error texts; that an archived contact is re-added as a new member.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._http import authorization
from backhaul.testing.emulators._http import basic_credentials
from backhaul.testing.emulators._mailchimp_members import Audience
from backhaul.testing.emulators._mailchimp_members import Member
from backhaul.testing.emulators._mailchimp_members import MemberError
from backhaul.testing.emulators._mailchimp_members import subscriber_hash
from backhaul.testing.emulators.base import DestinationFile
from backhaul.testing.emulators.base import Emulator

ROOT = "/3.0"
LIST = ROOT + "/lists/{list_id}"
MEMBER = LIST + "/members/{member}"
PROBLEM = "application/problem+json"


def problem(
    status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None
) -> JSONResponse:
    """An error in Mailchimp's problem+json shape."""
    body: dict[str, Any] = {
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": str(uuid.uuid4()),
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _not_found() -> JSONResponse:
    return problem(404, "Resource Not Found", "The requested resource could not be found.")


def _refused(exc: MemberError) -> JSONResponse:
    return problem(
        400, exc.title, exc.message, [{"field": exc.field, "message": exc.field_message}]
    )


class MailchimpEmulator(Emulator):
    """An in-memory Mailchimp account with one or more audiences.

    Args:
        api_key: The API key (its suffix after the dash names the data centre).
        oauth_token: A Bearer token also accepted.
        lists: Audiences that exist, ``{list_id: name}``.
        max_members: Most members per ``POST /lists/{id}`` (Mailchimp: 500).
        max_connections: Simultaneous requests allowed (Mailchimp: 10).
        max_count: Largest ``count`` of a members page (Mailchimp: 1,000).
        required_merge_fields: Merge fields every new member must have.
        seed: Seed of the random fault switches.
    """

    vendor: ClassVar[str] = "mailchimp"
    destination_file: ClassVar[DestinationFile] = DestinationFile({"api_key": "MAILCHIMP_API_KEY"})

    def __init__(
        self,
        *,
        api_key: str = "0123456789abcdef0123456789abcdef-us6",
        oauth_token: str = "mc-emulator-oauth-token",
        lists: Mapping[str, str] | None = None,
        max_members: int = 500,
        max_connections: int = 10,
        max_count: int = 1000,
        required_merge_fields: Iterable[str] = (),
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.api_key = api_key
        self.oauth_token = oauth_token
        self.max_members = max_members
        self.max_connections = max_connections
        self.max_count = max_count
        self.required_merge_fields = frozenset(required_merge_fields)
        self._initial_lists = dict(lists if lists is not None else {"a1b2c3d4e5": "Emulator"})
        self.lists: dict[str, Audience] = {}
        self.in_flight = 0
        self.refused_connections = 0
        self._slots = threading.Lock()
        self.vendor_reset()

    # -- hooks -----------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route(ROOT + "/ping", self._ping, methods=["GET"]),
            Route(ROOT + "/lists", self._all_lists, methods=["GET"]),
            Route(LIST, self._in_audience(self._list), methods=["GET", "POST"]),
            Route(LIST + "/members", self._in_audience(self._members), methods=["GET", "POST"]),
            Route(
                MEMBER,
                self._in_audience(self._member),
                methods=["GET", "PUT", "PATCH", "DELETE"],
            ),
            Route(
                MEMBER + "/actions/delete-permanent",
                self._in_audience(self._delete_permanent, body_on=()),
                methods=["POST"],
            ),
            Route(MEMBER + "/tags", self._in_audience(self._tags), methods=["GET", "POST"]),
        ]

    def vendor_error(self, status: int, message: str) -> Response:
        return problem(status, "Internal Server Error" if status >= 500 else "Error", message)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        return problem(
            429,
            "Too Many Requests",
            f"You have exceeded the limit of {self.max_connections} simultaneous connections.",
        )

    def vendor_state(self) -> dict[str, Any]:
        return {
            "lists": {
                list_id: {"name": a.name, "members": {m["email_address"]: m for m in a.active()}}
                for list_id, a in self.lists.items()
            }
        }

    def vendor_reset(self) -> None:
        self.lists = {
            i: Audience(i, name, self.required_merge_fields)
            for i, name in self._initial_lists.items()
        }

    # -- inspection --------------------------------------------------------------------------

    def member(self, list_id: str, email: str) -> Member | None:
        """The member with this e-mail (any case), archived ones included."""
        with self.lock:
            found = self.lists[list_id].get(email)
            return dict(found) if found is not None else None

    # -- edge: auth and connection slots ----------------------------------------------------

    async def before_request(self, request: Request) -> Response | None:
        basic = basic_credentials(request)
        if not (
            (basic is not None and basic[1] == self.api_key)
            or authorization(request, "Bearer") == self.oauth_token
        ):
            return problem(
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )
        with self._slots:
            if self.in_flight >= self.max_connections:
                self.refused_connections += 1
                return self.vendor_rate_limited(0)
            self.in_flight += 1
            request.state.slot = True
        return None

    def after_request(self, request: Request) -> None:
        if getattr(request.state, "slot", False):
            with self._slots:
                self.in_flight -= 1
            request.state.slot = False

    # -- plumbing ----------------------------------------------------------------------------

    def _audience(self, request: Request) -> Audience | Response:
        audience = self.lists.get(request.path_params["list_id"])
        if audience is None:
            return _not_found()
        return audience

    def _in_audience(
        self,
        handler: Callable[[Request, Audience, Any], Response],
        body_on: tuple[str, ...] = ("POST", "PUT", "PATCH"),
    ) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint of one audience: the JSON body read (for ``body_on`` methods), then,
        under the lock, the audience of the path found and ``handler`` called with it."""

        async def endpoint(request: Request) -> Response:
            body = await self._json(request) if request.method in body_on else None
            if isinstance(body, Response):
                return body
            with self.lock:
                audience = self._audience(request)
                if isinstance(audience, Response):
                    return audience
                return handler(request, audience, body)

        return endpoint

    def _write_one(self, audience: Audience, body: Any, **check: Any) -> Response:
        """Check and write one member (``check``: :meth:`Audience.check`'s options)."""
        try:
            email, current, status = audience.check(body, rejects=self.faults.rejects, **check)
        except MemberError as exc:
            return _refused(exc)
        return JSONResponse(dict(audience.write(email, current, status, body)))

    @staticmethod
    async def _json(request: Request) -> Any | Response:
        try:
            return await request.json()
        except ValueError:
            return problem(
                400, "JSON Parse Error", "We encountered an unspecified JSON parsing error."
            )

    @staticmethod
    def _flag(request: Request, name: str) -> bool:
        return request.query_params.get(name, "false").lower() == "true"

    # -- endpoints ---------------------------------------------------------------------------

    async def _ping(self, request: Request) -> Response:
        return JSONResponse({"health_status": "Everything's Chimpy!"})

    async def _all_lists(self, request: Request) -> Response:
        with self.lock:
            lists = [a.info() for a in self.lists.values()]
        return JSONResponse({"lists": lists, "total_items": len(lists)})

    def _list(self, request: Request, audience: Audience, body: Any) -> Response:
        if request.method == "GET":
            return JSONResponse(audience.info())
        return self._batch(request, audience, body)

    def _batch(self, request: Request, audience: Audience, body: Any) -> Response:
        members = body.get("members") if isinstance(body, dict) else None
        if not isinstance(members, list):
            return problem(
                400,
                "Invalid Resource",
                "The resource submitted could not be validated.",
                [{"field": "members", "message": "This value should be of type array."}],
            )
        if len(members) > self.max_members:
            return problem(
                400,
                "Invalid Resource",
                f"You may only add or update up to {self.max_members} members per request.",
                [{"field": "members", "message": f"{len(members)} members given"}],
            )
        update_existing = bool(body.get("update_existing", False))
        skip = self._flag(request, "skip_merge_validation")
        created: list[Member] = []
        updated: list[Member] = []
        errors: list[dict[str, str]] = []
        for item in members:
            try:
                email, current, status = audience.check(
                    item,
                    rejects=self.faults.rejects,
                    update_existing=update_existing,
                    skip_merge_validation=skip,
                )
            except MemberError as exc:
                address = item.get("email_address") if isinstance(item, dict) else None
                errors.append(
                    {
                        "email_address": str(address),
                        "error": exc.message,
                        "error_code": exc.code,
                        "field": exc.field,
                        "field_message": exc.field_message,
                    }
                )
                continue
            member = audience.write(email, current, status, item)
            (created if current is None else updated).append(dict(member))
        return JSONResponse(
            {
                "new_members": created,
                "updated_members": updated,
                "errors": errors,
                "total_created": len(created),
                "total_updated": len(updated),
                "error_count": len(errors),
                "_links": [],
            }
        )

    def _members(self, request: Request, audience: Audience, body: Any) -> Response:
        if request.method == "POST":
            return self._write_one(
                audience,
                body,
                update_existing=False,
                skip_merge_validation=self._flag(request, "skip_merge_validation"),
                new_status_keys=("status",),
            )
        return self._page(request, audience)

    def _page(self, request: Request, audience: Audience) -> Response:
        try:
            count = int(request.query_params.get("count", 10))
            offset = int(request.query_params.get("offset", 0))
        except ValueError:
            return problem(400, "Invalid Resource", "count and offset must be integers")
        if not 0 < count <= self.max_count or offset < 0:
            return problem(400, "Invalid Resource", f"count must be between 1 and {self.max_count}")
        status = request.query_params.get("status")
        rows = [
            m
            for m in audience.members.values()
            if (m["status"] == status if status else m["status"] != "archived")
        ]
        return JSONResponse(
            {
                "members": [dict(m) for m in rows[offset : offset + count]],
                "list_id": audience.id,
                "total_items": len(rows),
                "_links": [],
            }
        )

    def _member(self, request: Request, audience: Audience, body: Any) -> Response:
        slot = request.path_params["member"]
        found = audience.get(slot)
        if request.method == "PUT":
            return self._put(request, audience, slot, body)
        if found is None or (found["status"] == "archived" and request.method != "GET"):
            return _not_found()
        if request.method == "GET":
            return JSONResponse(dict(found))
        if request.method == "DELETE":
            found["status"] = "archived"
            return Response(status_code=204)
        # PATCH changes a member's fields, never which member it is.
        patch = {**(body if isinstance(body, dict) else {})}
        patch["email_address"] = found["email_address"]
        return self._write_one(audience, patch, update_existing=True, skip_merge_validation=True)

    def _put(self, request: Request, audience: Audience, slot: str, body: Any) -> Response:
        email = body.get("email_address") if isinstance(body, dict) else None
        wanted = subscriber_hash(slot) if "@" in slot else slot.lower()
        if isinstance(email, str) and subscriber_hash(email) != wanted:
            return problem(
                400,
                "Invalid Resource",
                "The email address passed does not match the subscriber hash in the URL.",
                [{"field": "email_address", "message": "It must hash to the subscriber hash."}],
            )
        return self._write_one(
            audience,
            body,
            update_existing=True,
            skip_merge_validation=self._flag(request, "skip_merge_validation"),
        )

    def _delete_permanent(self, request: Request, audience: Audience, body: None) -> Response:
        found = audience.get(request.path_params["member"])
        if found is None:
            return _not_found()
        del audience.members[found["id"]]
        audience.forgotten.add(found["id"])
        return Response(status_code=204)

    def _tags(self, request: Request, audience: Audience, body: Any) -> Response:
        found = audience.get(request.path_params["member"])
        if found is None or found["status"] == "archived":
            return _not_found()
        if request.method == "GET":
            return JSONResponse({"tags": found["tags"], "total_items": found["tags_count"]})
        tags = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(tags, list) or not all(
            isinstance(t, dict) and t.get("name") and t.get("status") in ("active", "inactive")
            for t in tags
        ):
            return problem(
                400,
                "Invalid Resource",
                "The resource submitted could not be validated.",
                [
                    {
                        "field": "tags",
                        "message": 'Each tag needs a name and a status of "active" or "inactive".',
                    }
                ],
            )
        audience.tag(found, ((str(t["name"]), t["status"] == "active") for t in tags))
        return Response(status_code=204)
