"""What the audience destinations share: the membership-only sync check and PII rows.

An ad audience (a Meta custom audience, a Google Ads Customer Match list) holds people
matched by hashed identifiers and nothing else, so its connectors accept only
``mode: membership``, take target fields named after :class:`~backhaul.destinations.pii.PiiKey`
(``email``, ``phone``, ``first_name``...), and turn each record into normalised, hashed
values with :mod:`backhaul.destinations.pii`. Platform rules stay in ``pii``; the wording
of the vendor stays in each connector.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from collections.abc import Mapping
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Operation
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.destinations.pii import PiiKey
from backhaul.destinations.pii import PiiOptions
from backhaul.destinations.pii import PiiValue
from backhaul.destinations.pii import Platform
from backhaul.destinations.pii import Raw
from backhaul.destinations.pii import prepare_row
from backhaul.errors import DestinationError
from backhaul.errors import FailureType

Member = dict[PiiKey, PiiValue]


def field_keys(
    fields: Sequence[str], accepted: Collection[PiiKey], aliases: Mapping[str, PiiKey] | None = None
) -> tuple[dict[str, PiiKey], list[str]]:
    """The identifier of each target field, and the fields that name none.

    A field is named by its key (``email``, ``first_name``) in any case, or by one of the
    vendor's own ``aliases`` (Meta's ``FN``).
    """
    known: dict[str, PiiKey] = {}
    unknown: list[str] = []
    for name in fields:
        key = _key_of(name, aliases or {})
        if key is None or key not in accepted:
            unknown.append(name)
        else:
            known[name] = key
    return known, unknown


def _key_of(name: str, aliases: Mapping[str, PiiKey]) -> PiiKey | None:
    lowered = name.strip().lower()
    if lowered in PiiKey.__members__.values():
        return PiiKey(lowered)
    return aliases.get(name.strip().upper())


def membership_problems(
    vendor: str,
    what: str,
    shape: SyncShape,
    accepted: Collection[PiiKey],
    *,
    default_object: str | None,
    aliases: Mapping[str, PiiKey] | None = None,
) -> list[SyncProblem]:
    """Why a sync cannot keep a ``what`` (an audience, a user list) of ``vendor``.

    Only membership mode; an object naming the list; mapped fields and match fields that
    are identifiers the vendor matches on.
    """
    names = ", ".join(k.value for k in accepted)
    if not shape.membership:
        message = (
            f"a {vendor} {what} only has members: set `mode: membership` (rows entering the "
            "model are added to it, rows leaving it are removed)"
        )
        return [SyncProblem("mode", message)]
    problems: list[SyncProblem] = []
    if not (shape.object or default_object):
        problems.append(SyncProblem("object", _no_list(vendor, what)))
    _, unknown = field_keys(shape.fields, accepted, aliases)
    if unknown:
        listed = ", ".join(f"`{f}`" for f in unknown)
        message = f"{listed} is not an identifier {vendor} matches people on: map to {names}"
        problems.append(SyncProblem("mappings", message))
    bad_match = [f for f in shape.match_fields if f not in shape.fields or f in unknown]
    if bad_match or not shape.match_fields:
        message = (
            f"a person leaves the {what} by the identifiers kept for them: set "
            f"`match: {{fields: [...]}}` to mapped identifiers ({names}), e.g. [email]"
        )
        problems.append(SyncProblem("match.fields", message))
    return problems


def _no_list(vendor: str, what: str) -> str:
    return f"{vendor} needs the {what} to keep: set `object` in the sync to its id"


def kept_list(vendor: str, what: str, object: str | None, default: str | None) -> str:
    """The ``what`` a sync keeps: its ``object``, else the destination file's ``default``.

    Raises:
        DestinationError: Neither names one (a CONFIG failure, worded as the sync check
            words it).
    """
    name = object or default
    if not name:
        raise DestinationError(_no_list(vendor, what), failure=FailureType.CONFIG)
    return name


def require_membership(vendor: str, batch: Batch) -> None:
    """Refuse a batch sent outside ``mode: membership``, or one that neither adds nor removes
    (the checks refuse such a sync before it runs)."""
    if not batch.membership:
        raise DestinationError(
            f"{vendor} keeps audiences only: set `mode: membership` in the sync",
            failure=FailureType.CONFIG,
        )
    if batch.operation not in (Operation.UPSERT, Operation.DELETE):
        raise DestinationError(
            f"{vendor} cannot {batch.operation.value}: an audience only adds and removes people",
            failure=FailureType.CONFIG,
        )


def members(
    batch: Batch,
    platform: Platform,
    keys: Mapping[str, PiiKey],
    options: PiiOptions,
) -> list[Member | str]:
    """Each record's identifiers, normalised and hashed, or why the record cannot be sent.

    A record is refused when one of its values cannot be normalised (the reason names the
    key, never the value) or when it has no identifier at all.
    """
    out: list[Member | str] = []
    wanted = [f for f in batch.fields if f in keys]
    for record in batch.flat_records():
        values = {keys[f]: _raw(record.get(f)) for f in wanted}
        prepared, errors = prepare_row(platform, values, options)
        if errors:
            out.append("; ".join(str(e) for e in errors))
        elif not prepared:
            listed = ", ".join(wanted)
            out.append(f"no identifier to match the person on: {listed} are all empty")
        else:
            out.append(prepared)
    return out


def _raw(value: Any) -> Raw | None:
    """A warehouse value as :func:`prepare_row` takes it (a whole float is a number)."""
    if value is None or isinstance(value, str | int | dt.date):
        return value
    if isinstance(value, float | Decimal):
        try:
            if value == int(value):
                return int(value)
        except (ValueError, OverflowError):  # NaN, infinities
            pass
    return str(value)


__all__ = [
    "Member",
    "field_keys",
    "kept_list",
    "members",
    "membership_problems",
    "require_membership",
]
