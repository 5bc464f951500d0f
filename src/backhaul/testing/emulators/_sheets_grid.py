"""Spreadsheets, sheets and A1 ranges, as the Google Sheets emulator keeps them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from typing import Any

CELL = re.compile(r"([A-Za-z]*)(\d*)")


class SheetsError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class Sheet:
    id: int
    title: str
    rows: int = 1000
    columns: int = 26
    cells: dict[tuple[int, int], Any] = field(default_factory=dict)

    def grid(self) -> list[list[Any]]:
        """Values as rows, trailing empty rows and cells left out."""
        if not self.cells:
            return []
        height = max(r for r, _ in self.cells) + 1
        out: list[list[Any]] = [[] for _ in range(height)]
        for (r, c), value in sorted(self.cells.items()):
            out[r].extend([""] * (c - len(out[r])))
            out[r].append(value)
        return out


@dataclass(frozen=True)
class Span:
    """A rectangle of one sheet, 0-based and inclusive; ``None`` ends are open."""

    sheet: Sheet
    row: int
    col: int
    last_row: int | None
    last_col: int | None
    single: bool = False  # one cell: a read or clear of that cell, the anchor of a write

    def bounds(self) -> tuple[int, int]:
        """The last row and column read or cleared (open ends run to the grid's edge)."""
        if self.single:
            return self.row, self.col
        last_row = self.sheet.rows - 1 if self.last_row is None else self.last_row
        last_col = self.sheet.columns - 1 if self.last_col is None else self.last_col
        return last_row, last_col


def column_name(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def column_index(name: str) -> int:
    index = 0
    for ch in name.upper():
        index = index * 26 + ord(ch) - 64
    return index - 1


def a1(sheet: Sheet, row: int, col: int, last_row: int, last_col: int) -> str:
    title = (
        sheet.title
        if re.fullmatch(r"\w+", sheet.title)
        else "'{}'".format(sheet.title.replace("'", "''"))
    )
    start = f"{column_name(col)}{row + 1}"
    end = f"{column_name(last_col)}{last_row + 1}"
    return f"{title}!{start}" if start == end else f"{title}!{start}:{end}"


@dataclass
class Spreadsheet:
    id: str
    title: str
    sheets: list[Sheet]

    def sheet(self, title: str | None) -> Sheet | None:
        if title is None:
            return self.sheets[0]
        return next((s for s in self.sheets if s.title == title), None)

    def span(self, text: str) -> Span:
        """Parse an A1 range (``Sheet1!A1:C2``, ``'My sheet'!A:C``, ``Sheet1``, ``A2:B``)."""
        sheet_part, bang, cells = text.rpartition("!")
        title = sheet_part if bang else None
        if title is not None and len(title) > 1 and title[0] == title[-1] == "'":
            title = title[1:-1].replace("''", "'")
        if not bang and self.sheet(text) is not None:
            title, cells = text, ""
        sheet = self.sheet(title)
        if sheet is None:
            raise SheetsError(f"Unable to parse range: {text}")
        if not cells:
            return Span(sheet, 0, 0, None, None)
        first, colon, second = cells.partition(":")
        a, b = CELL.fullmatch(first), CELL.fullmatch(second) if colon else None
        if a is None or (colon and b is None) or not (a.group(1) or a.group(2)):
            raise SheetsError(f"Unable to parse range: {text}")
        col = column_index(a.group(1)) if a.group(1) else 0
        row = int(a.group(2)) - 1 if a.group(2) else 0
        if b is None:
            return Span(sheet, row, col, None, None, single=True)
        last_col = column_index(b.group(1)) if b.group(1) else None
        last_row = int(b.group(2)) - 1 if b.group(2) else None
        return Span(sheet, row, col, last_row, last_col)

    def cells(self) -> int:
        return sum(s.rows * s.columns for s in self.sheets)
