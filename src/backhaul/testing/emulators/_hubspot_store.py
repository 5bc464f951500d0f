"""The HubSpot emulator's records: object types, properties, records and their rules.

Kept apart from the routes in :mod:`backhaul.testing.emulators.hubspot`: an
:class:`ObjectType` holds its property definitions, live and archived records and the
indexes of its unique properties, and checks and applies writes as HubSpot does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

from starlette.responses import JSONResponse

READ_ONLY = ("hs_object_id", "createdate", "lastmodifieddate", "hs_lastmodifieddate")


def prop(
    name: str,
    *,
    type: str = "string",
    field_type: str = "text",
    group: str = "information",
    unique: bool = False,
    read_only: bool = False,
    label: str | None = None,
) -> dict[str, Any]:
    """A property definition as ``GET /crm/v3/properties/{objectType}`` lists it."""
    return {
        "name": name,
        "label": label or name.replace("_", " ").capitalize(),
        "type": type,
        "fieldType": field_type,
        "groupName": group,
        "description": "",
        "options": [],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": unique,
        "hidden": False,
        "formField": not read_only,
        "modificationMetadata": {
            "archivable": not read_only,
            "readOnlyDefinition": True,
            "readOnlyValue": read_only,
        },
    }


def _defaults(extra: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    stamps = [prop(n, type="datetime", field_type="date", read_only=True) for n in READ_ONLY[1:]]
    base = [prop("hs_object_id", type="number", field_type="number", read_only=True), *stamps]
    return {p["name"]: p for p in [*base, *extra]}


def default_properties(object_type: str) -> dict[str, dict[str, Any]]:
    """The built-in properties of a standard object (a small, typical subset)."""
    if object_type == "contacts":
        names = ("firstname", "lastname", "phone", "company", "jobtitle", "city", "country")
        return _defaults(
            [
                prop("email", unique=True, group="contactinformation"),
                prop("lifecyclestage", field_type="select"),
                *(prop(n, group="contactinformation") for n in names),
            ]
        )
    if object_type == "companies":
        return _defaults(
            [
                prop("domain", unique=True, group="companyinformation"),
                *(prop(n) for n in ("name", "industry", "phone", "city", "country")),
                prop("numberofemployees", type="number", field_type="number"),
                prop("annualrevenue", type="number", field_type="number"),
            ]
        )
    if object_type == "deals":
        return _defaults(
            [
                prop("dealname"),
                prop("dealstage", field_type="select"),
                prop("pipeline", field_type="select"),
                prop("amount", type="number", field_type="number"),
                prop("closedate", type="datetime", field_type="date"),
            ]
        )
    return _defaults([prop("name")])


@dataclass
class HubRecord:
    id: str
    properties: dict[str, str]
    created: str
    updated: str

    def body(
        self, names: Iterable[str] | None = None, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        wanted: dict[str, str | None] = dict(self.properties)
        if names is not None:
            wanted = {n: self.properties.get(n) for n in names}
        props = {**wanted, "hs_object_id": self.id}
        return {
            "id": self.id,
            "properties": props,
            "createdAt": self.created,
            "updatedAt": self.updated,
            "archived": False,
            **(extra or {}),
        }


@dataclass
class ObjectType:
    """One object type: its properties, live records and unique-value indexes."""

    name: str
    type_id: str
    label: str  # "CONTACT", for messages
    properties: dict[str, dict[str, Any]]
    records: dict[str, HubRecord] = field(default_factory=dict)
    archived: dict[str, HubRecord] = field(default_factory=dict)
    index: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the value -> id index of every unique property."""
        self.index = {n: {} for n, p in self.properties.items() if p["hasUniqueValue"]}
        for rec in self.records.values():
            for name, values in self.index.items():
                if rec.properties.get(name):
                    values[rec.properties[name]] = rec.id

    def unique(self, name: str) -> bool:
        p = self.properties.get(name)
        return name == "hs_object_id" or bool(p and p["hasUniqueValue"])

    def find(self, value: str, id_property: str | None) -> HubRecord | None:
        if not id_property or id_property == "hs_object_id":
            return self.records.get(value)
        found = self.index.get(id_property, {}).get(value)
        return None if found is None else self.records.get(found)

    def check(self, props: Any, current: HubRecord | None) -> InputError | None:
        """Why ``props`` cannot be written over ``current`` (``None``: a new record)."""
        if not isinstance(props, dict):
            return InputError(400, "VALIDATION_ERROR", "properties must be an object")
        problems: list[dict[str, Any]] = []
        for name, value in props.items():
            p = self.properties.get(name)
            text = "" if value is None else str(value)
            if p is None:
                problems.append(
                    {
                        "message": f'Property "{name}" does not exist',
                        "code": "PROPERTY_DOESNT_EXIST",
                        "in": name,
                    }
                )
            elif p["modificationMetadata"]["readOnlyValue"]:
                problems.append(
                    {
                        "message": f'Property "{name}" is a read only property',
                        "code": "READ_ONLY_VALUE",
                        "in": name,
                    }
                )
            elif p["type"] == "number" and text and not is_number(text):
                problems.append(
                    {
                        "message": f'"{text}" is not a valid number',
                        "code": "INVALID_DECIMAL",
                        "in": name,
                    }
                )
            elif name == "email" and self.name == "contacts" and text and "@" not in text:
                problems.append(
                    {
                        "message": f"Email address {text} is invalid",
                        "code": "INVALID_EMAIL",
                        "in": name,
                    }
                )
            elif p["hasUniqueValue"] and text:
                owner = self.index.get(name, {}).get(text)
                if owner is not None and (current is None or owner != current.id):
                    return InputError(
                        409,
                        "CONFLICT",
                        f"{self.label.capitalize()} already exists. Existing ID: {owner}",
                        context={"id": [owner]},
                    )
        if problems:
            detail = "; ".join(e["message"] for e in problems)
            return InputError(
                400, "VALIDATION_ERROR", f"Property values were not valid: {detail}", problems
            )
        return None

    def write(
        self, rec: HubRecord | None, props: dict[str, Any], new_id: Callable[[], str]
    ) -> HubRecord:
        """Set ``props`` on ``rec``, or on a new record with id ``new_id()``."""
        now = now_stamp()
        if rec is None:
            rec = HubRecord(new_id(), {}, now, now)
            self.records[rec.id] = rec
        for name, value in props.items():
            text = "" if value is None else str(value)
            old = rec.properties.get(name)
            if name in self.index and old:
                self.index[name].pop(old, None)
            if text == "":  # HubSpot clears a property given an empty string
                rec.properties.pop(name, None)
            else:
                rec.properties[name] = text
                if name in self.index:
                    self.index[name][text] = rec.id
        rec.updated = now
        rec.properties["lastmodifieddate"] = now
        rec.properties.setdefault("createdate", rec.created)
        return rec

    def archive(self, rec: HubRecord) -> None:
        """Move ``rec`` out of the live records (and the unique-value indexes)."""
        self.records.pop(rec.id, None)
        for name, values in self.index.items():
            if rec.properties.get(name):
                values.pop(rec.properties[name], None)
        self.archived[rec.id] = rec


@dataclass
class InputError:
    """A per-input failure, in HubSpot's shape."""

    status: int
    category: str
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def body(self, trace: str | None = None) -> dict[str, Any]:
        context = dict(self.context)
        if trace is not None:
            context["objectWriteTraceId"] = [trace]
        out: dict[str, Any] = {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": context,
        }
        if self.errors:
            out["errors"] = self.errors
        return out


def now_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hubspot_error(status: int, category: str, message: str, **extra: Any) -> JSONResponse:
    body = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        **extra,
    }
    return JSONResponse(body, status_code=status)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def matches(rec: HubRecord, group: Mapping[str, Any]) -> bool:
    """All filters of a filter group hold for ``rec``."""
    for f in group.get("filters", []):
        name, op = f.get("propertyName"), f.get("operator", "EQ")
        have = rec.id if name == "hs_object_id" else rec.properties.get(name)
        want = f.get("value")
        if op == "HAS_PROPERTY":
            ok = have is not None
        elif op == "NOT_HAS_PROPERTY":
            ok = have is None
        elif op == "IN":
            ok = have in [str(v) for v in f.get("values", [])]
        elif op == "NOT_IN":
            ok = have not in [str(v) for v in f.get("values", [])]
        elif op == "EQ":
            ok = have == str(want)
        elif op == "NEQ":
            ok = have != str(want)
        elif op in ("GT", "GTE", "LT", "LTE"):
            ok = have is not None and is_number(have) and _compare(float(have), op, float(want))
        else:
            ok = False
        if not ok:
            return False
    return True


def _compare(have: float, op: str, want: float) -> bool:
    return {"GT": have > want, "GTE": have >= want, "LT": have < want, "LTE": have <= want}[op]
