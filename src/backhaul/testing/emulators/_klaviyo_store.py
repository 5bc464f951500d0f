"""Klaviyo profiles and lists: identity matching, validation, filters, JSON:API pages."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from starlette.requests import Request

IDENTIFIERS = ("email", "phone_number", "external_id")
FIELDS = frozenset(
    {
        *IDENTIFIERS,
        "anonymous_id",
        "first_name",
        "last_name",
        "organization",
        "locale",
        "title",
        "image",
        "location",
        "properties",
    }
)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
FILTER = re.compile(r"^(equals|any)\((id|email|phone_number|external_id),(.+)\)$")
Profile = dict[str, Any]


def stamp(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at))


def api_error(
    status: int, code: str, title: str, detail: str, pointer: str = "/data/"
) -> dict[str, Any]:
    """One JSON:API error object as Klaviyo writes them."""
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "code": code,
        "title": title,
        "detail": detail,
        "source": {"pointer": pointer},
        "meta": {},
    }


@dataclass
class ImportProblem:
    """Why one profile of an import job was not imported."""

    detail: str
    pointer: str
    code: str = "invalid"
    title: str = "Invalid input."


@dataclass
class Store:
    """Profiles by id and lists with their members."""

    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)

    def find(self, key: str, value: Any) -> Profile | None:
        if value is None:
            return None
        if key == "id":
            return self.profiles.get(str(value))
        wanted = str(value).strip().lower() if key == "email" else str(value)
        for profile in self.profiles.values():
            have = profile.get(key)
            if have is not None and (have.lower() if key == "email" else have) == wanted:
                return profile
        return None

    def check(self, item: Any, rejects: dict[str, str]) -> ImportProblem | dict[str, Any]:
        """The attributes of one import entry, or why it is refused."""
        if not (isinstance(item, dict) and item.get("type") == "profile"):
            return ImportProblem("Each entry must be a resource of type `profile`.", "")
        attributes = item.get("attributes")
        if not isinstance(attributes, dict):
            return ImportProblem("`attributes` must be an object.", "/attributes")
        unknown = sorted(set(attributes) - FIELDS)
        if unknown:
            return ImportProblem(
                f"'{unknown[0]}' is not a valid field for the resource 'profile'.",
                f"/attributes/{unknown[0]}",
            )
        if item.get("id") is None and all(attributes.get(k) is None for k in IDENTIFIERS):
            return ImportProblem(
                "One of `email`, `phone_number` or `external_id` is required.", "/attributes"
            )
        email, phone = attributes.get("email"), attributes.get("phone_number")
        if email is not None and not (isinstance(email, str) and EMAIL.match(email.strip())):
            return ImportProblem("Invalid email address", "/attributes/email")
        if phone is not None and not (isinstance(phone, str) and E164.match(phone)):
            return ImportProblem(
                "Invalid phone number format (Example of a valid phone number format: "
                "+12345678901)",
                "/attributes/phone_number",
            )
        for key in IDENTIFIERS:
            value = attributes.get(key)
            if value is not None and str(value) in rejects:
                return ImportProblem(rejects[str(value)], f"/attributes/{key}")
        for key in ("properties", "location"):
            if attributes.get(key) is not None and not isinstance(attributes[key], dict):
                return ImportProblem(f"`{key}` must be an object.", f"/attributes/{key}")
        return attributes

    def upsert(self, item: dict[str, Any], attributes: dict[str, Any]) -> Profile | ImportProblem:
        """Update the profile the identifiers match, or create one."""
        matches = {
            id(p): p
            for p in (
                self.find("id", item.get("id")),
                *(self.find(k, attributes.get(k)) for k in IDENTIFIERS),
            )
            if p is not None
        }
        if len(matches) > 1:
            return ImportProblem(
                "The identifiers given belong to different profiles.",
                "/attributes",
                code="duplicate_profile",
                title="Conflict.",
            )
        if item.get("id") is not None and not matches:
            return ImportProblem(f"Profile {item['id']} does not exist.", "/id", code="not_found")
        now = stamp()
        profile = next(iter(matches.values()), None)
        if profile is None:
            profile = {"id": uuid.uuid4().hex[:26].upper(), "created": now, "properties": {}}
            self.profiles[profile["id"]] = profile
        for key, value in attributes.items():
            if key == "properties":
                profile["properties"] = {**profile["properties"], **value}
            elif key == "email" and value is not None:
                profile["email"] = value.strip()
            else:
                profile[key] = value
        profile["updated"] = now
        return profile

    def delete(self, profile_id: str) -> None:
        self.profiles.pop(profile_id, None)
        for lst in self.lists.values():
            lst["profiles"].discard(profile_id)

    def select(self, expression: str) -> list[Profile] | str:
        """Profiles matching an ``equals(...)``/``any(...)`` filter, or why it is refused."""
        found = FILTER.match(expression.strip())
        if not found:
            return 'Use equals(field,"value") or any(field,[...]) on id, email, phone_number or external_id.'
        op, key, raw = found.groups()
        try:
            value = json.loads(raw)
        except ValueError:
            return f"Cannot read the value {raw!r} of the filter."
        values = value if op == "any" else [value]
        if op == "any" and not isinstance(value, list):
            return "any() takes a list of values."
        hits = {}
        for v in values:
            profile = self.find(key, v)
            if profile is not None:
                hits[profile["id"]] = profile
        return list(hits.values())


def page(
    request: Request, rows: Sequence[Any], render: Callable[[Any], dict[str, Any]], size: int
) -> dict[str, Any]:
    """One cursor page of ``rows`` as a JSON:API document with ``links``."""
    cursor = request.query_params.get("page[cursor]")
    try:
        start = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
    except ValueError:
        start = 0
    with contextlib.suppress(ValueError):  # a bad page[size] keeps the default
        size = max(1, min(100, int(request.query_params.get("page[size]", size))))
    end = start + size

    def link(offset: int) -> str:
        token = base64.urlsafe_b64encode(str(offset).encode()).decode()
        return str(request.url.include_query_params(**{"page[cursor]": token}))

    return {
        "data": [render(r) for r in rows[start:end]],
        "links": {
            "self": str(request.url),
            "next": link(end) if end < len(rows) else None,
            "prev": link(max(0, start - size)) if start > 0 else None,
        },
    }


__all__ = ["IDENTIFIERS", "ImportProblem", "Profile", "Store", "api_error", "page", "stamp"]
