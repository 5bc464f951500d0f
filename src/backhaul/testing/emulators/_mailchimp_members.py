"""Mailchimp audience members: subscriber hashes, status rules and tags, without HTTP."""

from __future__ import annotations

import hashlib
import itertools
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional"})
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
Member = dict[str, Any]


def subscriber_hash(email: str) -> str:
    """MD5 hex of the lower-cased e-mail address: a member's id in Mailchimp's paths."""
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


class MemberError(Exception):
    """A member refused, with Mailchimp's title, error code and the field at fault."""

    def __init__(
        self,
        message: str,
        *,
        title: str = "Invalid Resource",
        code: str = "ERROR_GENERIC",
        field: str = "",
        field_message: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.title = title
        self.code = code
        self.field = field
        self.field_message = field_message or message


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


@dataclass
class Audience:
    """One list (audience): its members by subscriber hash and its forgotten addresses."""

    id: str
    name: str
    required_merge_fields: frozenset[str] = frozenset()
    members: dict[str, Member] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)
    tag_ids: dict[str, int] = field(default_factory=dict)
    _next_tag: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def get(self, key: str) -> Member | None:
        """A member by subscriber hash or e-mail address (archived ones included)."""
        return self.members.get(subscriber_hash(key) if "@" in key else key.lower())

    def active(self) -> list[Member]:
        return [m for m in self.members.values() if m["status"] != "archived"]

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "stats": {"member_count": sum(m["status"] == "subscribed" for m in self.active())},
        }

    def check(
        self,
        body: Any,
        *,
        rejects: dict[str, str],
        update_existing: bool,
        skip_merge_validation: bool,
        new_status_keys: tuple[str, ...] = ("status_if_new", "status"),
    ) -> tuple[str, Member | None, str | None]:
        """Validate a member body: (e-mail, current member or None, status to set).

        Raises:
            MemberError: The body breaks one of Mailchimp's rules.
        """
        if not isinstance(body, dict):
            raise MemberError("Each member must be an object", field="member")
        email = body.get("email_address")
        if not isinstance(email, str) or not EMAIL.match(email.strip()):
            raise MemberError(
                f"{email} looks fake or invalid, please enter a real email address.",
                field="email_address",
            )
        email = email.strip()
        if email in rejects or email.lower() in rejects:
            raise MemberError(rejects.get(email) or rejects[email.lower()], field="email_address")
        key = subscriber_hash(email)
        if key in self.forgotten:
            raise MemberError(
                f"{email} was permanently deleted and cannot be re-imported. "
                "The contact must re-subscribe to get back on the list.",
                title="Forgotten Email Not Subscribed",
                field="email_address",
            )
        current = self.members.get(key)
        if current is not None and current["status"] == "archived":
            current = None  # an archived contact is added again as a new one
        if current is not None and not update_existing:
            raise MemberError(
                f"{email} is already a list member. Use PUT to insert or update list members.",
                title="Member Exists",
                code="ERROR_CONTACT_EXISTS",
                field="email_address",
            )
        keys = new_status_keys if current is None else ("status",)
        status = next((body[k] for k in keys if body.get(k) is not None), None)
        if current is None and status is None:
            raise MemberError(
                "The resource submitted could not be validated.",
                field="status",
                field_message="This value should not be blank.",
            )
        if status is not None and status not in STATUSES:
            raise MemberError(
                "The resource submitted could not be validated.",
                field="status",
                field_message=f"Status must be one of {', '.join(sorted(STATUSES))}",
            )
        merge = body.get("merge_fields", {})
        if not isinstance(merge, dict):
            raise MemberError("Your merge fields were invalid.", field="merge_fields")
        if current is None and not skip_merge_validation:
            for name in sorted(self.required_merge_fields):
                if merge.get(name) in (None, ""):
                    raise MemberError(
                        "Your merge fields were invalid.",
                        field=f"merge_fields.{name}",
                        field_message="Please enter a value",
                    )
        tags = body.get("tags", [])
        if not (isinstance(tags, list) and all(isinstance(t, str) and t for t in tags)):
            raise MemberError("Tags must be a list of names", field="tags")
        return email, current, status

    def write(self, email: str, current: Member | None, status: str | None, body: Any) -> Member:
        """Create or update the member (after :meth:`check`)."""
        key = subscriber_hash(email)
        member = current
        if member is None:
            old = self.members.get(key)  # archived: it comes back with its ids
            member = {
                "id": key,
                "email_address": email,
                "unique_email_id": old["unique_email_id"] if old else uuid.uuid4().hex[:10],
                "contact_id": old["contact_id"] if old else uuid.uuid4().hex,
                "email_type": "html",
                "status": status,
                "merge_fields": {},
                "vip": False,
                "language": "",
                "tags": [],
                "tags_count": 0,
                "list_id": self.id,
                "timestamp_opt": _stamp(),
            }
            self.members[key] = member
        member["email_address"] = email
        if status is not None:
            member["status"] = status
        for name in ("email_type", "vip", "language"):
            if name in body:
                member[name] = body[name]
        member["merge_fields"] = {**member["merge_fields"], **body.get("merge_fields", {})}
        self.tag(member, ((name, True) for name in body.get("tags", [])))
        member["last_changed"] = _stamp()
        return member

    def tag(self, member: Member, changes: Iterable[tuple[str, bool]]) -> None:
        """Add (``True``) or remove (``False``) tags by name."""
        names = {t["name"]: t for t in member["tags"]}
        for name, active in changes:
            if active and name not in names:
                if name not in self.tag_ids:
                    self.tag_ids[name] = next(self._next_tag)
                names[name] = {"id": self.tag_ids[name], "name": name, "date_added": _stamp()}
            elif not active:
                names.pop(name, None)
        member["tags"] = list(names.values())
        member["tags_count"] = len(names)


__all__ = ["STATUSES", "Audience", "Member", "MemberError", "subscriber_hash"]
