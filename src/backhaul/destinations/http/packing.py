"""Packing records into requests under a vendor's caps: so many items, so many bytes.

Bulk APIs cap a request twice (Braze: 75 attribute objects; Segment: 500 KB a batch and
32 KB a message; Meta: 10,000 users). :func:`pack` cuts a batch's records, in order, into
the fewest requests that keep every cap, and sets apart each record that could never fit
alone, so the connector rejects it by its position instead of sending a request the vendor
would refuse whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Generic
from typing import TypeVar

from backhaul.destinations.base import RecordResult
from backhaul.destinations.http.client import dumps_json

T = TypeVar("T")


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON, as most vendors count a payload."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def listed_size(value: Any) -> int:
    """Bytes of ``value`` as an item of a JSON array body, with the comma that follows it."""
    return len(dumps_json(value)) + 1


@dataclass(frozen=True, slots=True)
class Caps:
    """A vendor's limits for one request.

    Args:
        items: Records per request, at most.
        request_bytes: Bytes of the records of one request together, at most (``None``:
            no cap). Leave room for the envelope the connector wraps them in.
        item_bytes: Bytes of one record, at most (``None``: no cap).
    """

    items: int
    request_bytes: int | None = None
    item_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.items < 1:
            raise ValueError("a request holds at least one record")


@dataclass(slots=True)
class Packed(Generic[T]):
    """Requests of ``(position, item)`` pairs, and positions too big to send alone."""

    requests: list[list[tuple[int, T]]] = field(default_factory=list)
    too_big: dict[int, int] = field(default_factory=dict)  # position -> its size in bytes


def pack(
    items: Iterable[tuple[int, T]],
    caps: Caps,
    size: Callable[[T], int] = json_size,
) -> Packed[T]:
    """Cut ``(position, item)`` pairs, in order, into requests within ``caps``.

    ``size`` measures one item in bytes (compact JSON by default); it is called only when a
    byte cap is set.
    """
    out: Packed[T] = Packed()
    current: list[tuple[int, T]] = []
    used = 0
    limit = caps.request_bytes
    one = caps.item_bytes
    measure = limit is not None or one is not None
    for position, item in items:
        n = size(item) if measure else 0
        if (one is not None and n > one) or (limit is not None and n > limit):
            out.too_big[position] = n
            continue
        if current and (len(current) >= caps.items or (limit is not None and used + n > limit)):
            out.requests.append(current)
            current, used = [], 0
        current.append((position, item))
        used += n
    if current:
        out.requests.append(current)
    return out


def too_big_message(size: int, caps: Caps, vendor: str) -> str:
    """The one wording of a record no request can carry."""
    cap = min(c for c in (caps.item_bytes, caps.request_bytes) if c is not None)
    return (
        f"the record is {size:,} bytes as JSON and {vendor} takes at most {cap:,} per "
        "record: map fewer or shorter fields"
    )


def too_big_results(packed: Packed[Any], caps: Caps, vendor: str) -> dict[int, RecordResult]:
    """The rejection of each record :func:`pack` set apart as too big, by position."""
    return {
        i: RecordResult.rejected(i, too_big_message(size, caps, vendor))
        for i, size in packed.too_big.items()
    }


def positions(request: Sequence[tuple[int, Any]]) -> list[int]:
    """The batch positions a request carries, in order."""
    return [p for p, _ in request]


__all__ = [
    "Caps",
    "Packed",
    "json_size",
    "listed_size",
    "pack",
    "positions",
    "too_big_message",
    "too_big_results",
]
