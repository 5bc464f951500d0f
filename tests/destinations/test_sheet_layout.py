"""Row bookkeeping of the Google Sheets destination, without HTTP."""

from __future__ import annotations

from decimal import Decimal

from backhaul.destinations.base import Operation
from backhaul.destinations.sheet_layout import SheetLayout
from backhaul.destinations.sheet_layout import cell
from backhaul.destinations.sheet_layout import column
from backhaul.destinations.sheet_layout import key_text


def _layout(keys: list[str | None]) -> SheetLayout:
    layout = SheetLayout(match="id", header=["id", "name"])
    layout.read_keys([[k] if k is not None else [] for k in keys])
    return layout


def test_keys_read_from_the_sheet_match_keys_sent() -> None:
    layout = _layout(["1", None, "3", "1"])
    assert layout.index == {"1": 1, "3": 3}  # the first row of a key wins; blanks have none
    assert layout.height == 5
    assert key_text(3.0) == key_text(3) == key_text("3") == "3"
    assert key_text("") is None


def test_place_rewrites_known_rows_and_adds_new_ones_below() -> None:
    layout = _layout(["a", "b"])
    chunk = [(0, {"id": "b", "name": None}), (1, {"id": "c", "name": "C"}), (2, {"id": "c"})]

    plan = layout.place(chunk, Operation.UPSERT)

    assert plan.writes == {2: ["b", ""], 3: ["c", None]}  # a null empties; unmapped stays
    assert plan.added == {"c": 3} and plan.height == 4
    assert layout.height == 3  # nothing changes before the commit
    layout.commit(plan)
    assert layout.index == {"a": 1, "b": 2, "c": 3} and layout.height == 4


def test_update_refuses_missing_keys_and_insert_leaves_existing_rows() -> None:
    layout = _layout(["a"])
    update = layout.place([(0, {"id": "a", "name": "A"}), (1, {"id": "z"})], Operation.UPDATE)
    insert = layout.place([(0, {"id": "a", "name": "A"}), (1, {"id": "z"})], Operation.INSERT)

    assert update.writes == {1: ["a", "A"]} and list(update.refused) == [1]
    assert "no row with id = z" in update.refused[1]
    assert insert.writes == {2: ["z", None]} and not insert.refused


def test_removal_fills_gaps_with_the_last_rows() -> None:
    layout = _layout(["a", "b", "c", "d", "e"])

    plan = layout.removal(["b", "e", "zz"])

    assert (plan.end, plan.holes, plan.movers) == (4, [2], [4])
    layout.commit_removal(plan)
    assert layout.index == {"a": 1, "d": 2, "c": 3} and layout.height == 4


def test_cells_hold_text_numbers_and_booleans() -> None:
    assert cell(Decimal("2")) == 2 and cell(Decimal("2.5")) == 2.5
    assert cell({"a": [1]}) == '{"a":[1]}' and cell(True) is True
    assert [column(i) for i in (0, 25, 26, 701)] == ["A", "Z", "AA", "ZZ"]
