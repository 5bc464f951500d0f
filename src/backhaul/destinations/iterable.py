"""Iterable destination: users through ``users/bulkUpdate``, events, list membership.

Users are identified by ``email`` or ``userId``; every other mapped field goes into
``dataFields``. Records are packed into requests within Iterable's 4 MB body (and 1,000
users a call). Iterable answers 200 even when some users failed, listing each failed
identifier under its reason (``failedUpdates.invalidDataEmails``, ``conflictUserIds``...),
so failures are mapped back to the records by identifier. ``object: events`` sends each row
as an event through ``events/trackBulk`` with a de-duplication ``id`` (the row's key unless
an ``id`` is mapped), so a resent row replaces its event instead of counting twice.
Membership mode subscribes users to the list whose id is the sync's ``object``
(``lists/subscribe``) and unsubscribes them when they leave the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import quote

from pydantic import Field

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.destinations.http import HttpDestination
from backhaul.destinations.http import HttpDestinationConfig
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import RateLimit
from backhaul.destinations.http.connector import rolling_window
from backhaul.destinations.http.connector import send_packed
from backhaul.destinations.http.packing import Caps
from backhaul.destinations.http.packing import positions
from backhaul.destinations.identifiers import sole_identifier_problems
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

IDENTIFIERS = ("email", "userId")
ENVELOPE = 128  # bytes of the body around the users, events or subscribers
FIX_KEY = "check `api_key` in the destination file (a server-side key of the project)"
REASONS = {
    "invalid": "the e-mail or userId is not valid",
    "notFound": "no such user, and this project does not create users by this identifier",
    "invalidData": "a data field does not fit the type the project keeps for it",
    "conflict": "the e-mail and the userId belong to two different users",
    "forgotten": "the user was forgotten (a privacy request) and cannot be written",
}
# Where each operation goes: (path, the body's list, what one item is called).
ENDPOINTS = {
    "users": ("users/bulkUpdate", "users"),
    "events": ("events/trackBulk", "events"),
    "subscribe": ("lists/subscribe", "subscribers"),
    "unsubscribe": ("lists/unsubscribe", "subscribers"),
}


class IterableConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: iterable``."""

    type: Literal["iterable"]
    api_key: str = Field(description="Server-side API key (write `${env:ITERABLE_API_KEY}`).")
    base_url: str = Field(
        "https://api.iterable.com",
        description="API root: https://api.iterable.com, or https://api.eu.iterable.com "
        "for EU projects.",
    )
    key_header: str = Field("Api-Key", description="Header carrying the key (or `api_key`).")
    max_users_per_request: int = Field(1000, ge=1, le=10_000, description="Items per call.")
    max_request_bytes: int = Field(
        4_000_000, gt=ENVELOPE, description="Largest request body (Iterable: 4 MB)."
    )
    prefer_user_id: bool = Field(
        True, description="Let a userId alone create a user (`preferUserId`)."
    )
    merge_nested_objects: bool = Field(
        False, description="Merge object fields into the user's instead of replacing them."
    )
    rate_limit: RateLimit | None = Field(
        RateLimit(requests=5, per_seconds=1),
        description="Requests per window (users/bulkUpdate: about 5 a second per project).",
    )
    rate_limited_pause_seconds: float = Field(
        1.0, gt=0, description="Pause of every call after a 429 (Iterable names no wait)."
    )


def _problems(config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
    """The object (users, events or a list id) and the identifier, before anything runs."""
    fields = set(shape.fields)
    if shape.object == "events" and not shape.membership:
        if Operation.DELETE in shape.operations or Operation.CLEAR in shape.operations:
            message = (
                "iterable events cannot be removed: use mode `upsert`, or `on_remove: nothing`"
            )
            return [SyncProblem("mode", message)]
        if "eventName" not in fields or not fields & set(IDENTIFIERS):
            message = "iterable events need `eventName` and `email` or `userId`: map them"
            return [SyncProblem("mappings", message)]
        return []
    message = (
        "iterable users are matched by email or userId: map one of them and make it the sync's "
        "only match field"
    )
    problems = sole_identifier_problems(shape.match_fields, IDENTIFIERS, message)
    if problems:
        return problems
    if shape.membership and not str(shape.object or "").isdigit():
        return [SyncProblem("object", "iterable membership needs the list id as `object`")]
    if not shape.membership and shape.object not in (None, "users"):
        message = (
            f"iterable has no object `{shape.object}`: use `users` or `events` (a list id is "
            "an object of `mode: membership`)"
        )
        return [SyncProblem("object", message)]
    return []


class IterableDestination(HttpDestination):
    """Writes users, events or list members to Iterable; see :class:`IterableConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = IterableConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations=frozenset({Operation.UPSERT, Operation.DELETE, Operation.CLEAR}),
        max_batch_size=10_000,
        default_batch_size=1000,
        json_records=True,
        membership=True,
    )
    vendor = "iterable"
    config: IterableConfig

    check_sync = staticmethod(_problems)

    def __init__(self, config: IterableConfig, context: DestinationContext) -> None:
        pause = config.rate_limited_pause_seconds
        super().__init__(
            config,
            context,
            config.api_key,
            headers={config.key_header: config.api_key},
            hints={401: FIX_KEY, 403: FIX_KEY, 404: "check `base_url` (the API root)"},
            limiter=rolling_window(config),
            pause_hint=lambda response: pause if response.status_code == 429 else None,
        )
        self.caps = Caps(
            items=config.max_users_per_request,
            request_bytes=config.max_request_bytes - ENVELOPE,
            item_bytes=config.max_request_bytes - ENVELOPE,
        )

    def _url(self, path: str) -> str:
        return f"{self.config.base_url.rstrip('/')}/api/{path}"

    async def probe(self) -> HttpResult:
        """Read the project's lists: a bad key is refused with 401."""
        return await self.client.request("GET", self._url("lists"))

    async def prepare(
        self, fields: Mapping[str, Any], match_fields: Sequence[str], object: str | None
    ) -> None:
        """In membership mode, make sure the list exists before anything is sent."""
        if object is None or not object.isdigit():
            return
        result = await self.client.request("GET", self._url("lists"))
        lists = (result.json or {}).get("lists") or [] if isinstance(result.json, dict) else []
        if not any(str(item.get("id")) == object for item in lists if isinstance(item, dict)):
            raise DestinationError(
                f"iterable has no list {object}: check the sync's `object` (a list id)",
                failure=FailureType.CONFIG,
            )

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Send one batch; one result per record, in batch order."""
        events = batch.object == "events" and not batch.membership
        kind = "events" if events else "users"
        if batch.membership:
            kind = "unsubscribe" if batch.operation is Operation.DELETE else "subscribe"
        results: dict[int, RecordResult] = {}
        items: list[tuple[int, dict[str, Any]]] = []
        for i, record in enumerate(batch.records()):
            item = self._item(record, batch.keys[i] if events else None)
            if not any(item.get(f) not in (None, "") for f in IDENTIFIERS):
                error = "no email or userId value: iterable needs one to find the user"
                results[i] = RecordResult.rejected(i, error)
            else:
                items.append((i, item))
        if batch.operation is Operation.DELETE and not batch.membership:
            by_position = dict(items)
            results.update(await self.each(by_position, lambda i: self._delete(i, by_position[i])))
            return [results[i] for i in range(len(batch))]
        send = partial(self._bulk, kind, batch.object)
        results.update(await send_packed(self.gate, self.vendor, items, self.caps, send))
        return [results[i] for i in range(len(batch))]

    def _item(self, record: dict[str, Any], event_id: str | None) -> dict[str, Any]:
        """A user (or event): identifiers on top, every other field in ``dataFields``."""
        event = event_id is not None
        top = {"email", "userId"} | ({"eventName", "id", "createdAt"} if event else set())
        item = {k: v for k, v in record.items() if k in top and v is not None}
        for name in IDENTIFIERS:  # Iterable keeps both as strings
            if name in item:
                item[name] = str(item[name])
        data = dict(record.get("dataFields") or {})
        data.update({k: v for k, v in record.items() if k not in top and k != "dataFields"})
        if data:
            item["dataFields"] = data
        if event_id is not None:
            item.setdefault("id", event_id)  # Iterable replaces an event sent again by id
            return item
        if "userId" in item and self.config.prefer_user_id:
            item["preferUserId"] = True
        if self.config.merge_nested_objects:
            item["mergeNestedObjects"] = True
        return item

    async def _bulk(
        self, kind: str, object: str | None, request: Sequence[tuple[int, dict[str, Any]]]
    ) -> dict[int, RecordResult]:
        """One bulk call; the users Iterable lists as failed are rejected by identifier."""
        path, name = ENDPOINTS[kind]
        body: dict[str, Any] = {name: [item for _, item in request]}
        if kind in ("subscribe", "unsubscribe"):
            body["listId"] = int(str(object))
        result = await self.client.request("POST", self._url(path), json=body)
        at = positions(request)
        if not result.ok:
            error = result.error or "refused"
            return {i: RecordResult.rejected(i, error, result.call_id) for i in at}
        answer = result.json if isinstance(result.json, dict) else {}
        failed = _failures(answer, ignore={"notFound"} if kind == "unsubscribe" else set())
        out: dict[int, RecordResult] = {}
        for i, item in request:
            reason = failed.get(("email", str(item.get("email", "")).lower())) or failed.get(
                ("userId", str(item.get("userId", "")))
            )
            if reason is None:
                out[i] = RecordResult.ok(i, result.call_id)
            else:
                error = f"iterable refused the user: {reason}"
                out[i] = RecordResult.rejected(i, error, result.call_id)
        named = sum(1 for r in out.values() if r.error)
        count = answer.get("failCount")
        if kind != "unsubscribe" and isinstance(count, int) and count > named:
            # Failures Iterable counted but did not name: no row can be known accepted.
            error = f"iterable counted {count} failures but named {named}; sent again next run"
            out = {
                i: r if r.error else RecordResult.rejected(i, error, r.call_id)
                for i, r in out.items()
            }
        return out

    async def _delete(self, i: int, item: dict[str, Any]) -> RecordResult:
        """Delete one user by e-mail (or userId); a user Iterable does not have is gone."""
        if item.get("email"):
            path = "users/" + quote(str(item["email"]), safe="@")
        else:
            path = "users/byUserId/" + quote(str(item["userId"]), safe="")
        result = await self.client.request("DELETE", self._url(path), expected={200, 400})
        answer = result.json if isinstance(result.json, dict) else {}
        if result.status == 200 or "does not exist" in str(answer.get("msg", "")):
            return RecordResult.ok(i, result.call_id)
        error = self.redactor.text(str(answer.get("msg") or result.reason)) or "refused"
        return RecordResult.rejected(i, f"iterable refused the delete: {error}", result.call_id)


def _failures(answer: Mapping[str, Any], ignore: set[str]) -> dict[tuple[str, str], str]:
    """Each failed identifier, ``("email", lowercased)`` or ``("userId", id)``, and why."""
    given = answer.get("failedUpdates")
    lists = dict(given) if isinstance(given, Mapping) else {}
    for name in ("invalidEmails", "invalidUserIds"):
        lists.setdefault(name, answer.get(name) or [])
    out: dict[tuple[str, str], str] = {}
    for name, values in lists.items():
        for suffix, field in (("Emails", "email"), ("UserIds", "userId")):
            reason = name.removesuffix(suffix)
            if reason == name or reason in ignore or not isinstance(values, list):
                continue
            why = REASONS.get(reason, reason)
            for value in values:
                text = str(value).lower() if field == "email" else str(value)
                out.setdefault((field, text), f"{why} (failedUpdates.{name})")
    return out


__all__ = ["IterableConfig", "IterableDestination"]
