"""Mailchimp destination: audience (list) members, upserted 500 at a time.

The sync's ``object`` is the audience id. Upserts and inserts go to ``POST /lists/{id}``
(at most 500 members a call, ``update_existing``) and each refused member in its
``errors`` array is mapped back to its row by e-mail address. Mirror mode archives removed
members (``DELETE /lists/{id}/members/{hash}``), or deletes them for good when configured.
In ``mode: membership`` the object is ``LIST_ID/tags/TAG``: a row entering the model is
upserted and tagged, a row leaving it loses the tag; the member itself is never deleted.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import quote

import httpx
from pydantic import Field
from pydantic import model_validator

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
from backhaul.destinations.http.packing import Caps
from backhaul.destinations.http.packing import pack
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

MAX_MEMBERS = 500
MATCH = "email_address"
FIELDS = frozenset(
    {MATCH, "status", "email_type", "language", "vip", "merge_fields", "interests", "location"}
)
SUBSCRIBING = frozenset({"subscribed", "pending"})
Status = Literal["subscribed", "pending", "unsubscribed", "transactional"]
MEMBERSHIP_OBJECT = (
    "in `mode: membership` set `object: LIST_ID/tags/TAG` (the tag is the list kept)"
)


def subscriber_hash(email: str) -> str:
    """A member's id in Mailchimp's paths: MD5 hex of the trimmed, lower-cased address."""
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


def parse_object(object: str | None) -> tuple[str, str | None]:
    """``LIST_ID`` or ``LIST_ID/tags/TAG`` as (list id, tag or None)."""
    list_id, sep, tag = (object or "").partition("/tags/")
    return list_id.strip(), (tag.strip() or None) if sep else None


class MailchimpConfig(HttpDestinationConfig):
    """``destinations/NAME.yml`` with ``type: mailchimp``."""

    type: Literal["mailchimp"]
    api_key: str | None = Field(None, description="API key `…-us6` (use ${env:NAME}).")
    oauth_token: str | None = Field(None, description="OAuth access token instead of a key.")
    data_center: str | None = Field(
        None, description="Data centre (`us6`); default: the API key's suffix."
    )
    base_url: str | None = Field(
        None, description="API root without /3.0 (default https://{data_center}.api.mailchimp.com)."
    )
    status_if_new: Status = Field(
        "subscribed", description="Status of members the sync creates (`pending`: double opt-in)."
    )
    resubscribe: bool = Field(
        False,
        description="Let a mapped `status` of subscribed/pending resubscribe members who "
        "unsubscribed (off: it applies to new members only).",
    )
    on_delete: Literal["archive", "delete_permanent"] = Field(
        "archive",
        description="What mirror mode does to a removed member: archive (can come back) or "
        "delete_permanent (GDPR erasure; the address can never be imported again).",
    )
    busy_wait_seconds: float = Field(
        1.0,
        gt=0,
        description="Wait after a 429 (Mailchimp limits simultaneous connections and sends "
        "no Retry-After).",
    )
    concurrency: int = Field(4, ge=1, le=10, description="Calls in flight (Mailchimp: 10 at most).")

    @model_validator(mode="after")
    def _complete(self) -> MailchimpConfig:
        if not self.api_key and not self.oauth_token:
            raise ValueError("give `api_key` (or `oauth_token`)")
        if not (self.base_url or self.dc):
            raise ValueError(
                "`api_key` has no data-centre suffix (`…-us6`): use the whole key, or set "
                "`data_center` (e.g. us6)"
            )
        return self

    @property
    def dc(self) -> str | None:
        key_dc = (self.api_key or "").rpartition("-")[2] if "-" in (self.api_key or "") else None
        return self.data_center or key_dc

    @property
    def root(self) -> str:
        return (self.base_url or f"https://{self.dc}.api.mailchimp.com").rstrip("/") + "/3.0"


class MailchimpDestination(HttpDestination):
    """Writes audience members and tags to Mailchimp; see :class:`MailchimpConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = MailchimpConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations=frozenset({Operation.UPSERT, Operation.INSERT, Operation.DELETE}),
        max_batch_size=MAX_MEMBERS,
        default_batch_size=MAX_MEMBERS,
        default_concurrency=2,
        json_records=True,
        membership=True,
    )
    vendor = "mailchimp"
    config: MailchimpConfig
    # Mailchimp caps simultaneous connections (10 per account), not calls a second.
    concurrency_from_rate_limit = False

    @classmethod
    def check_sync(cls, config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
        """The audience id (and tag) in ``object``, e-mail matching, known member fields."""
        list_id, tag = parse_object(shape.object)
        if not list_id:
            hint = MEMBERSHIP_OBJECT if shape.membership else "set `object` to the audience id"
            return [SyncProblem("object", f"mailchimp needs the audience (list) id: {hint}")]
        if shape.membership and tag is None:
            return [
                SyncProblem("object", f"mailchimp membership is kept by a tag: {MEMBERSHIP_OBJECT}")
            ]
        if tag is not None and not shape.membership:
            return [
                SyncProblem("object", "`/tags/TAG` in object is for `mode: membership`: remove it")
            ]
        problems = []
        if tuple(shape.match_fields) != (MATCH,):
            problems.append(
                SyncProblem(
                    "match",
                    f"mailchimp members are matched by `{MATCH}` only: map the e-mail to it",
                )
            )
        unknown = sorted({f.split(".")[0] for f in shape.fields} - FIELDS)
        if unknown:
            problems.append(
                SyncProblem(
                    "mappings",
                    f"mailchimp members have no field `{unknown[0]}`: use one of "
                    f"{', '.join(sorted(FIELDS))} (merge fields as `merge_fields.NAME`)",
                )
            )
        return problems

    def __init__(self, config: MailchimpConfig, context: DestinationContext) -> None:
        secret: str | None
        if config.oauth_token:
            auth, secret = f"Bearer {config.oauth_token}", config.oauth_token
        else:
            raw = base64.b64encode(f"backhaul:{config.api_key}".encode()).decode("ascii")
            auth, secret = f"Basic {raw}", config.api_key
        what = "oauth_token" if config.oauth_token else "api_key"
        fix = f"check `{what}` (and `data_center`) in the destination file"
        super().__init__(
            config,
            context,
            secret,
            auth.partition(" ")[2],
            headers={"Authorization": auth, "Accept": "application/json"},
            hints={401: fix, 403: fix, 404: "check the sync's `object`: it must be an audience id"},
            pause_hint=self._pause_hint,
        )

    def _pause_hint(self, response: httpx.Response) -> float | None:
        return self.config.busy_wait_seconds if response.status_code == 429 else None

    def _url(self, path: str) -> str:
        return f"{self.config.root}/{path}"

    async def probe(self) -> HttpResult:
        return await self.client.request("GET", self._url("ping"))

    async def prepare(self, fields: Any, match_fields: Sequence[str], object: str | None) -> None:
        """Read the audience: a wrong id stops the run before any member is sent."""
        list_id, _ = parse_object(object)
        await self.client.request("GET", self._url(f"lists/{quote(list_id, safe='')}"))

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Send one batch; one result per record."""
        list_id, tag = parse_object(batch.object)
        if not list_id:
            raise DestinationError(
                "mailchimp needs the audience id: set `object` in the sync",
                failure=FailureType.CONFIG,
            )
        out: dict[int, RecordResult] = {}
        records: dict[int, dict[str, Any]] = {}
        for i, record in enumerate(batch.records()):
            email = str(record.get(MATCH) or "").strip()
            if email:
                records[i] = {**record, MATCH: email}
            else:
                out[i] = RecordResult.rejected(i, f"no {MATCH} value: mailchimp needs it")
        base = f"lists/{quote(list_id, safe='')}"
        emails = {i: r[MATCH] for i, r in records.items()}
        if batch.operation is Operation.DELETE:
            out.update(await self._remove(base, emails, tag))
        else:
            out.update(await self._upsert(base, batch.operation, records, tag))
        return [out[i] for i in range(len(batch))]

    # -- upsert -----------------------------------------------------------------------------

    def _member(self, record: dict[str, Any], tag: str | None) -> dict[str, Any]:
        """A record as a batch member: status rules applied, the tag added."""
        member = {k: v for k, v in record.items() if v is not None}
        status = member.pop("status", None)
        member["status_if_new"] = status or self.config.status_if_new
        # Never resubscribe someone who unsubscribed, unless the file allows it.
        if status and (status not in SUBSCRIBING or self.config.resubscribe):
            member["status"] = status
        if tag is not None:
            member["tags"] = [tag]
        return member

    async def _upsert(
        self,
        base: str,
        operation: Operation,
        records: dict[int, dict[str, Any]],
        tag: str | None,
    ) -> dict[int, RecordResult]:
        out: dict[int, RecordResult] = {}
        updated: list[int] = []
        members = [(i, self._member(r, tag)) for i, r in records.items()]
        requests = [
            r for turn in _turns(members) for r in pack(turn, Caps(items=MAX_MEMBERS)).requests
        ]
        update = operation is not Operation.INSERT
        for request in requests:
            body = {"members": [m for _, m in request], "update_existing": update}
            sent = await self.client.request("POST", self._url(base), json=body)
            out.update(self._answers(sent, request, operation, updated))
        if tag is not None and updated:
            # The batch call tags the members it creates; existing ones get the tag set on
            # them, so a row is acknowledged only once its member holds the tag.
            emails = {i: records[i][MATCH] for i in updated}
            out.update(await self._tag(base, emails, tag, active=True))
        return out

    def _answers(
        self,
        sent: HttpResult,
        request: list[tuple[int, dict[str, Any]]],
        operation: Operation,
        updated: list[int],
    ) -> dict[int, RecordResult]:
        """Each member's result, by its e-mail in the answer's three arrays; positions of
        members that existed already are added to ``updated``."""
        call = sent.call_id
        if not sent.ok:
            return {i: RecordResult.rejected(i, sent.error or "refused", call) for i, _ in request}
        body = sent.json if isinstance(sent.json, dict) else {}
        done: dict[str, bool] = {}  # e-mail -> whether the member existed
        for key in ("new_members", "updated_members"):
            for m in body.get(key) or []:
                done[str(m.get(MATCH, "")).strip().lower()] = key == "updated_members"
        errors = {
            str(e.get(MATCH, "")).strip().lower(): e
            for e in body.get("errors") or []
            if isinstance(e, dict)
        }
        out: dict[int, RecordResult] = {}
        for i, member in request:
            email = member[MATCH].lower()
            error = errors.get(email)
            exists = error is not None and error.get("error_code") == "ERROR_CONTACT_EXISTS"
            if email in done:
                out[i] = RecordResult.ok(i, call)
                if done[email]:
                    updated.append(i)
            elif exists and operation is Operation.INSERT:
                out[i] = RecordResult.ok(i, call)  # insert leaves an existing member alone
            elif error is not None:
                text = f"{error.get('error_code', 'ERROR')}: {error.get('error', '')}".strip()
                out[i] = RecordResult.rejected(i, self.redactor.text(text) or text, call)
            else:
                out[i] = RecordResult.rejected(
                    i, "mailchimp answered without a result for this member", call
                )
        return out

    # -- removal and tags -------------------------------------------------------------------

    async def _remove(
        self, base: str, emails: dict[int, str], tag: str | None
    ) -> dict[int, RecordResult]:
        if tag is not None:  # membership: take the tag off, keep the member
            return await self._tag(base, emails, tag, active=False)
        permanent = self.config.on_delete == "delete_permanent"

        async def one(i: int) -> RecordResult:
            path = f"{base}/members/{subscriber_hash(emails[i])}"
            if permanent:
                path += "/actions/delete-permanent"
            done = await self.client.request(
                "POST" if permanent else "DELETE", self._url(path), expected={200, 204, 404}
            )
            return _result(i, done)

        return await self.each(list(emails), one)

    async def _tag(
        self, base: str, emails: dict[int, str], tag: str, *, active: bool
    ) -> dict[int, RecordResult]:
        """Set the tag (in)active on each member; a member gone already has no tag to lose."""
        body = {"tags": [{"name": tag, "status": "active" if active else "inactive"}]}
        expected = {200, 204} if active else {200, 204, 404}

        async def one(i: int) -> RecordResult:
            path = f"{base}/members/{subscriber_hash(emails[i])}/tags"
            done = await self.client.request("POST", self._url(path), json=body, expected=expected)
            return _result(i, done)

        return await self.each(list(emails), one)


def _turns(
    members: list[tuple[int, dict[str, Any]]],
) -> list[list[tuple[int, dict[str, Any]]]]:
    """Split members so no e-mail appears twice in one call (the answer is keyed by e-mail);
    the n-th row of an address goes in the n-th call, so the last row wins."""
    turns: list[list[tuple[int, dict[str, Any]]]] = []
    seen: dict[str, int] = {}
    for i, member in members:
        email = member[MATCH].lower()
        n = seen.get(email, 0)
        seen[email] = n + 1
        if n == len(turns):
            turns.append([])
        turns[n].append((i, member))
    return turns


def _result(i: int, done: HttpResult) -> RecordResult:
    if not done.ok:
        return RecordResult.rejected(i, done.error or f"{done.status} {done.reason}", done.call_id)
    return RecordResult.ok(i, done.call_id)
