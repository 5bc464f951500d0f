"""What the destinations that find people by one identifier field share.

Braze, Iterable, Customer.io and Segment each match a sync's rows to the vendor's users by
exactly one field out of a fixed set (``external_id``, ``email``, ``userId``...), and
reject the rows that have no value for it.
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.destinations.http import HttpDestination
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import Refused
from backhaul.destinations.http.connector import refuse_problems


def sole_identifier_problems(
    match_fields: Sequence[str], identifiers: Collection[str], message: str
) -> list[SyncProblem]:
    """``message`` as a problem of ``match.fields`` unless the sync matches by exactly one
    field and that field is one of ``identifiers``."""
    if len(match_fields) == 1 and match_fields[0] in identifiers:
        return []
    return [SyncProblem("match.fields", message)]


def identified(
    records: Iterable[dict[str, Any]], field: str, missing: str
) -> tuple[dict[int, RecordResult], dict[int, dict[str, Any]]]:
    """The records that have a ``field`` value, by position, and the others rejected with
    ``missing`` (the reason), also by position."""
    rejected: dict[int, RecordResult] = {}
    found: dict[int, dict[str, Any]] = {}
    for i, record in enumerate(records):
        if record.get(field) in (None, ""):
            rejected[i] = RecordResult.rejected(i, missing)
        else:
            found[i] = record
    return rejected, found


def refusal(result: HttpResult) -> Refused:
    """A request refused whole: the vendor's error (or the status line) and its call."""
    return Refused(result.error or f"{result.status} {result.reason}", result.call_id)


class IdentifiedDestination(HttpDestination):
    """A REST destination that writes people, each found by one of ``identifiers``.

    A subclass names the fields it matches by and the objects a sync may name, with what to
    tell the author of a sync that does not fit: ``check_sync`` reports it before anything
    runs and ``prepare`` refuses a run whose match field is not one of them.
    """

    identifiers: ClassVar[tuple[str, ...]]
    identifier_problem: ClassVar[str]  # the sync does not match by exactly one identifier
    objects: ClassVar[tuple[str | None, ...]] = (None,)
    object_problem: ClassVar[str]  # the sync names an object that is not in ``objects``

    @classmethod
    def identifier_problems(cls, match_fields: Sequence[str]) -> list[SyncProblem]:
        return sole_identifier_problems(match_fields, cls.identifiers, cls.identifier_problem)

    @classmethod
    def check_sync(cls, config: DestinationConfig, shape: SyncShape) -> list[SyncProblem]:
        """One identifier as the match field, and an object the vendor has."""
        problems = cls.identifier_problems(shape.match_fields)
        if shape.object not in cls.objects:
            problems.append(SyncProblem("object", cls.object_problem))
        return problems

    async def prepare(self, fields: Any, match_fields: Sequence[str], object: str | None) -> None:
        refuse_problems(self.identifier_problems(match_fields))
