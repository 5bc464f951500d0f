"""The identifier checks shared by the destinations that find people by one field."""

from __future__ import annotations

from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import Refused
from backhaul.destinations.identifiers import identified
from backhaul.destinations.identifiers import refusal
from backhaul.destinations.identifiers import sole_identifier_problems

IDS = ("email", "userId")


def test_one_known_match_field_is_no_problem() -> None:
    assert sole_identifier_problems(["email"], IDS, "why") == []


def test_other_or_several_match_fields_are_one_problem() -> None:
    expected = [SyncProblem("match.fields", "why")]
    assert sole_identifier_problems(["phone"], IDS, "why") == expected
    assert sole_identifier_problems(["email", "userId"], IDS, "why") == expected
    assert sole_identifier_problems([], IDS, "why") == expected


def test_records_without_a_value_are_rejected_by_position() -> None:
    records = [{"email": "a@x"}, {"email": ""}, {"email": None}, {"name": "d"}, {"email": 0}]

    rejected, found = identified(records, "email", "no email")

    assert rejected == {i: RecordResult.rejected(i, "no email") for i in (1, 2, 3)}
    assert found == {0: {"email": "a@x"}, 4: {"email": 0}}


def test_a_refusal_carries_the_error_or_the_status_line() -> None:
    def answer(error: str | None) -> HttpResult:
        return HttpResult(400, "Bad Request", {}, "", None, "call-1", 1, error)

    assert refusal(answer("too big")) == Refused("too big", "call-1")
    assert refusal(answer(None)) == Refused("400 Bad Request", "call-1")
