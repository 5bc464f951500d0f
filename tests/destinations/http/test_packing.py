"""Packing records into requests: every cap kept, order kept, oversize records set apart."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backhaul.destinations.http.packing import Caps
from backhaul.destinations.http.packing import json_size
from backhaul.destinations.http.packing import pack
from backhaul.destinations.http.packing import too_big_message

pytestmark = pytest.mark.integration


def test_counts_and_bytes_cut_requests_in_order() -> None:
    items = list(enumerate(["a" * 8, "b" * 8, "c" * 8, "d" * 30, "e"]))
    packed = pack(items, Caps(items=2, request_bytes=25))

    assert [[p for p, _ in r] for r in packed.requests] == [[0, 1], [2, 4]]
    assert packed.too_big == {3: 32}  # 30 letters and two quotes


def test_item_cap_sets_a_record_apart_without_stopping_the_rest() -> None:
    packed = pack([(0, {"x": "y" * 100}), (1, {"x": 1})], Caps(items=10, item_bytes=50))

    assert packed.too_big == {0: json_size({"x": "y" * 100})}
    assert packed.requests == [[(1, {"x": 1})]]
    assert "at most 50 per record" in too_big_message(packed.too_big[0], Caps(10, None, 50), "Acme")


def test_json_size_counts_utf8_bytes() -> None:
    assert json_size("é") == 4  # two quotes and two bytes
    assert json_size({"a": [1, 2]}) == len('{"a":[1,2]}')


@given(
    st.lists(st.text(max_size=40), max_size=60),
    st.integers(1, 7),
    st.one_of(st.none(), st.integers(10, 120)),
)
def test_every_record_is_placed_once_within_the_caps(
    texts: list[str], items: int, limit: int | None
) -> None:
    caps = Caps(items=items, request_bytes=limit)
    packed = pack(list(enumerate(texts)), caps)

    placed = [p for r in packed.requests for p, _ in r]
    assert placed == sorted(placed)
    assert sorted(placed + list(packed.too_big)) == list(range(len(texts)))
    for request in packed.requests:
        assert 1 <= len(request) <= items
        if limit is not None:
            assert sum(json_size(t) for _, t in request) <= limit
    for position in packed.too_big:
        assert limit is not None and json_size(texts[position]) > limit
