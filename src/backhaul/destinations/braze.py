"""Braze destination: user attributes through ``/users/track``, deletes, subscription groups.

Each record becomes one attributes object identified by its match field (``external_id``,
``email`` or ``phone``). Records are packed into requests of at most 75 objects (Braze's
cap per request) and Braze's non-fatal ``errors[{type, input_array, index}]`` are mapped
back to the records by their index. Mirror mode deletes users through ``/users/delete``
(50 identifiers a call); membership mode subscribes users to the subscription group the
sync's ``object`` names and unsubscribes them when they leave the model. Events and
purchases are not sent: Braze never de-duplicates them, so a resent batch would count
twice.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Sequence
from functools import partial
from typing import Any
from typing import ClassVar
from typing import Literal

import httpx
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
from backhaul.destinations.identifiers import identified
from backhaul.destinations.identifiers import sole_identifier_problems
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

IDENTIFIERS = ("external_id", "email", "phone")
# /users/delete takes these lists; it has none for phone numbers.
DELETE_LISTS = {"external_id": "external_ids", "email": "email_addresses"}
ENVELOPE = 64  # bytes of `{"attributes":[...]}` around the objects
Request = Sequence[tuple[int, Any]]
Send = Callable[[Request], Awaitable[dict[int, RecordResult]]]
FIX_KEY = "check `api_key` in the destination file (a REST API key with users.track permission)"


class BrazeConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: braze``."""

    type: Literal["braze"]
    api_key: str = Field(description="REST API key (write `${env:BRAZE_API_KEY}`).")
    base_url: str = Field(
        description="Your instance's REST endpoint, e.g. https://rest.iad-01.braze.com "
        "(US-01) or https://rest.fra-01.braze.eu (EU-01)."
    )
    max_objects_per_request: int = Field(
        75, ge=1, le=75, description="Objects per /users/track call (Braze: 75; MAU plans: 50)."
    )
    max_record_bytes: int = Field(
        100_000, gt=0, description="Largest attributes object as JSON; bigger ones are refused."
    )
    max_request_bytes: int = Field(4_000_000, gt=ENVELOPE, description="Largest request body.")
    max_delete_ids: int = Field(50, ge=1, le=50, description="Identifiers per /users/delete.")
    rate_limit: RateLimit | None = Field(
        RateLimit(requests=3000, per_seconds=3),
        description="Requests per window (Braze: 3,000 /users/track calls every 3 s).",
    )


def _problems(config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
    """The match field, the object (a subscription group id in membership mode) and
    deletes by phone, before anything runs."""
    message = (
        "braze users are matched by external_id, email or phone: map one of them and make it "
        "the sync's only match field"
    )
    problems = sole_identifier_problems(shape.match_fields, IDENTIFIERS, message)
    if problems:
        return problems
    if shape.membership:
        if not shape.object:
            message = "braze membership needs the subscription group id as the sync's `object`"
            return [SyncProblem("object", message)]
        return []
    if shape.object not in (None, "users"):
        message = (
            f"braze syncs write user attributes, not `{shape.object}`: leave `object` out (or "
            "set `users`); a subscription group id is an object of `mode: membership`"
        )
        return [SyncProblem("object", message)]
    if Operation.DELETE in shape.operations and shape.match_fields[0] not in DELETE_LISTS:
        message = (
            "braze deletes users by external_id or email, not phone: match on one of those, "
            "or set `on_remove: nothing` (or `clear`)"
        )
        return [SyncProblem("match.fields", message)]
    return []


class BrazeDestination(HttpDestination):
    """Writes user attributes to Braze; see :class:`BrazeConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = BrazeConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations=frozenset({Operation.UPSERT, Operation.DELETE, Operation.CLEAR}),
        max_batch_size=3000,
        default_batch_size=300,
        json_records=True,
        membership=True,
    )
    vendor = "braze"
    config: BrazeConfig

    check_sync = staticmethod(_problems)

    def __init__(self, config: BrazeConfig, context: DestinationContext) -> None:
        super().__init__(
            config,
            context,
            config.api_key,
            headers={"Authorization": f"Bearer {config.api_key}"},
            hints={
                401: FIX_KEY,
                403: FIX_KEY,
                404: "check `base_url`: your instance's REST endpoint",
            },
            limiter=rolling_window(config),
            pause_hint=_pause_hint,
        )
        self.caps = Caps(
            items=config.max_objects_per_request,
            request_bytes=config.max_request_bytes - ENVELOPE,
            item_bytes=config.max_record_bytes,
        )

    def _url(self, path: str) -> str:
        return f"{self.config.base_url.rstrip('/')}/{path}"

    async def probe(self) -> HttpResult:
        """An empty /users/track: Braze answers 400 (no data) to a good key, 401 to a bad one,
        and needs no permission beyond the one syncs use."""
        return await self.client.request(
            "POST", self._url("users/track"), json={}, expected={*range(200, 300), 400}
        )

    async def prepare(self, fields: Any, match_fields: Sequence[str], object: str | None) -> None:
        """Nothing to look up: Braze creates custom attributes as they arrive."""

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Send one batch; one result per record, in batch order."""
        field = batch.match_fields[0] if batch.match_fields else ""
        if field not in IDENTIFIERS:
            raise DestinationError(
                "braze users are matched by external_id, email or phone: set the sync's match "
                "field to one of them",
                failure=FailureType.CONFIG,
            )
        missing = f"no {field} value: braze needs it to find the user"
        results, found = identified(batch.records(), field, missing)
        objects: list[tuple[int, Any]] = []
        for i, record in found.items():
            record[field] = str(record[field])  # Braze identifiers are strings
            objects.append((i, self._object(batch, field, record)))
        deleting = batch.operation is Operation.DELETE and not batch.membership
        caps = Caps(items=self.config.max_delete_ids) if deleting else self.caps
        send: Send = partial(self._delete, field) if deleting else self._track
        results.update(await send_packed(self.gate, self.vendor, objects, caps, send))
        return [results[i] for i in range(len(batch))]

    def _object(self, batch: Batch, field: str, record: dict[str, Any]) -> dict[str, Any]:
        """The record as Braze takes it: an attributes object (or the identifier to delete)."""
        if batch.operation is Operation.DELETE and not batch.membership:
            return {field: record[field]}
        if not batch.membership:
            return record
        group = {"subscription_group_id": batch.object, "subscription_state": "subscribed"}
        if batch.operation is Operation.DELETE:  # out of the group; never create a profile
            group["subscription_state"] = "unsubscribed"
            return {
                field: record[field],
                "subscription_groups": [group],
                "_update_existing_only": True,
            }
        return {**record, "subscription_groups": [group]}

    async def _track(self, request: Request) -> dict[int, RecordResult]:
        """One /users/track call; Braze's errors mapped to the records by index."""
        at = positions(request)
        result = await self.client.request(
            "POST", self._url("users/track"), json={"attributes": [o for _, o in request]}
        )
        body = result.json if isinstance(result.json, dict) else {}
        if result.ok and (result.status == 202 or body.get("message") == "queued"):
            raise DestinationError(
                "braze queued the call without processing it (maintenance): retry the run later",
                failure=FailureType.TRANSIENT,
                status=result.status,
            )
        errors: dict[int, str] = {}
        for error in body.get("errors") or []:
            if not isinstance(error, dict) or error.get("input_array") != "attributes":
                continue
            index = error.get("index")
            if isinstance(index, int) and 0 <= index < len(at):
                errors[index] = self.redactor.text(str(error.get("type"))) or "refused"
        out: dict[int, RecordResult] = {}
        for n, i in enumerate(at):
            if n in errors:
                error = f"braze refused the user: {errors[n]}"
                out[i] = RecordResult.rejected(i, error, result.call_id)
            elif not result.ok:
                out[i] = RecordResult.rejected(i, result.error or "refused", result.call_id)
            else:
                out[i] = RecordResult.ok(i, result.call_id)
        return out

    async def _delete(self, field: str, request: Request) -> dict[int, RecordResult]:
        """One /users/delete call: a user Braze does not have is already gone."""
        values = [o[field] for _, o in request]
        result = await self.client.request(
            "POST", self._url("users/delete"), json={DELETE_LISTS[field]: values}
        )
        if result.ok:
            return {i: RecordResult.ok(i, result.call_id) for i in positions(request)}
        error = result.error or "refused"
        return {i: RecordResult.rejected(i, error, result.call_id) for i in positions(request)}


def _pause_hint(response: httpx.Response) -> float | None:
    """Seconds until Braze's window resets (``X-RateLimit-Reset``, epoch seconds), once it
    is used up or a call was refused for it; Braze sends no ``Retry-After``."""
    headers = response.headers
    if response.status_code != 429 and headers.get("x-ratelimit-remaining") != "0":
        return None
    try:
        reset = float(headers.get("x-ratelimit-reset", ""))
    except ValueError:
        return None
    return max(0.0, reset - time.time()) or None


__all__ = ["BrazeConfig", "BrazeDestination"]
