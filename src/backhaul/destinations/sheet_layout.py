"""Where a sync's rows sit in a sheet: the header, the row of each key, the rows in use.

The Google Sheets destination keeps a sheet equal to a model by position. This module holds
that bookkeeping, free of HTTP: it says which rows a batch rewrites or adds
(:meth:`SheetLayout.place`) and which rows fill the gaps that removed rows leave
(:meth:`SheetLayout.removal`); the connector sends the writes and commits the plan only
once the spreadsheet has accepted them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import time
from decimal import Decimal
from typing import Any

from backhaul.destinations.base import Operation


@dataclass
class Placement:
    """The rows a batch writes (row -> cells), the keys it adds and the records it refuses."""

    writes: dict[int, list[Any]] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=dict)
    height: int = 1
    refused: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Removal:
    """Rows taken out: the last ones fill the gaps below ``end`` and rows from ``end`` on
    are emptied."""

    rows: frozenset[int]
    end: int
    holes: list[int]
    movers: list[int]


@dataclass
class SheetLayout:
    """The sheet as this run knows it. Rows are 0-based; row 0 is the header."""

    match: str
    header: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)  # key -> row
    height: int = 1  # rows in use, the header included

    def read_keys(self, column: Sequence[Sequence[Any]]) -> None:
        """Learn the rows from the key column read below the header (first key wins)."""
        self.index = {}
        for n, cells in enumerate(column, start=1):
            key = key_text(cells[0] if cells else None)
            if key is not None:
                self.index.setdefault(key, n)
        self.height = len(column) + 1

    def cells(self, record: Mapping[str, Any]) -> list[Any]:
        """A record as a row in header order: ``None`` for columns it does not map."""
        return [cell(record[f]) if f in record else None for f in self.header]

    def place(self, chunk: Sequence[tuple[int, Mapping[str, Any]]], op: Operation) -> Placement:
        """The rows that records of ``op`` rewrite in place or add below the last row."""
        plan = Placement(height=self.height)
        for i, record in chunk:
            key = key_text(record.get(self.match))
            assert key is not None, "records without a key are refused before"
            row = self.index.get(key, plan.added.get(key))
            if row is None and op in (Operation.UPDATE, Operation.CLEAR):
                if op is Operation.UPDATE:
                    plan.refused[i] = (
                        f"the sheet has no row with {self.match} = {key}: update mode adds none"
                    )
                continue
            if row is not None and op is Operation.INSERT:
                continue  # the row is there already: left as it is
            if row is None:
                row = plan.added[key] = plan.height
                plan.height += 1
            # A mapped null empties its cell; a column the sync does not map is left alone.
            plan.writes[row] = [
                None if f not in record else "" if c is None else c
                for c, f in zip(self.cells(record), self.header, strict=True)
            ]
        return plan

    def commit(self, plan: Placement) -> None:
        self.index.update(plan.added)
        self.height = plan.height

    def removal(self, keys: Sequence[Any]) -> Removal:
        """The rows of ``keys`` (those the sheet has), and the last rows that fill them."""
        rows = frozenset(self.index[k] for k in map(key_text, keys) if k in self.index)
        end = self.height - len(rows)
        movers = [r for r in range(end, self.height) if r not in rows]
        holes = sorted(r for r in rows if r < end)
        return Removal(rows, end, holes, movers)

    def commit_removal(self, plan: Removal) -> None:
        by_row = {r: k for k, r in self.index.items()}
        for r in plan.rows:
            self.index.pop(by_row[r], None)
        for hole, mover in zip(plan.holes, plan.movers, strict=True):
            if mover in by_row:  # a row without a key of its own moves all the same
                self.index[by_row[mover]] = hole
        self.height = plan.end


def column(index: int) -> str:
    """The A1 letters of a 0-based column."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def key_text(value: Any) -> str | None:
    """A key as text, the same whether it was read from the sheet or sent."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def cell(value: Any) -> Any:
    """A value a cell can hold: text, a number or a boolean (``None``: empty)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)
