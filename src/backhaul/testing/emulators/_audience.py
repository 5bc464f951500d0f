"""Audience membership as ad platforms keep it, shared by the Meta and Google Ads emulators.

A member is the set of identifiers one uploaded row carried (``("EMAIL", "<sha256>")``,
``("PHONE", "<sha256>")``, ...). Adding a row stores it unless an identical row is there;
removing a row removes every member that shares at least one identifier with it, as a
platform that matches both rows to the same person would. An index by identifier keeps both
operations proportional to the row, not to the audience.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import ClassVar
from typing import Protocol

Identifier = tuple[str, str]  # (key, value)
Member = frozenset[Identifier]

LOWER_SHA256 = re.compile(r"[0-9a-f]{64}")
ANY_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
MOBILE_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def hash_problem(value: object, *, lowercase_only: bool = True) -> str | None:
    """Why ``value`` is not a SHA-256 hex digest as a platform takes it, or ``None``."""
    if not isinstance(value, str):
        return "expected a SHA-256 hex string"
    if (LOWER_SHA256 if lowercase_only else ANY_SHA256).fullmatch(value):
        return None
    if ANY_SHA256.fullmatch(value):
        return "the SHA-256 hex digest must be lower-case"
    return "not a SHA-256 hex digest (personal data must be normalised and hashed)"


class Membership:
    """The members of one audience or user list."""

    def __init__(self) -> None:
        self._members: dict[int, Member] = {}
        self._ids_of: dict[Member, int] = {}
        self._index: dict[Identifier, set[int]] = {}
        self._next = itertools.count(1)

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(list(self._members.values()))

    def add(self, member: Iterable[Identifier]) -> bool:
        """Store a member; ``False`` when an identical one is already there."""
        row = frozenset(member)
        if not row or row in self._ids_of:
            return False
        mid = next(self._next)
        self._members[mid] = row
        self._ids_of[row] = mid
        for ident in row:
            self._index.setdefault(ident, set()).add(mid)
        return True

    def remove(self, member: Iterable[Identifier]) -> int:
        """Remove every member sharing an identifier with ``member``; how many went."""
        hits: set[int] = set()
        for ident in member:
            hits |= self._index.get(ident, set())
        for mid in hits:
            row = self._members.pop(mid)
            del self._ids_of[row]
            for ident in row:
                ids = self._index[ident]
                ids.discard(mid)
                if not ids:
                    del self._index[ident]
        return len(hits)

    def clear(self) -> None:
        self._members.clear()
        self._ids_of.clear()
        self._index.clear()

    def values(self, key: str) -> set[str]:
        """Every value of ``key`` among the members (e.g. the e-mail hashes)."""
        return {value for (k, value) in self._index if k == key}

    def rows(self) -> list[dict[str, str | list[str]]]:
        """The members as ``{key: value}`` objects (a list where a key repeats), oldest first."""
        out: list[dict[str, str | list[str]]] = []
        for row in self._members.values():
            grouped: dict[str, list[str]] = {}
            for key, value in sorted(row):
                grouped.setdefault(key, []).append(value)
            out.append({k: v[0] if len(v) == 1 else v for k, v in grouped.items()})
        return out


class HasMembers(Protocol):
    members: Membership


class AudienceInspection:
    """What tests read of an emulator that keeps audiences (or user lists) by id.

    The emulator returns them from :meth:`audiences_by_id` and names the identifier key
    :meth:`values` reads when none is given (the platform's hashed e-mail).
    """

    lock: threading.RLock
    email_key: ClassVar[str]

    def audiences_by_id(self) -> Mapping[str, HasMembers]:
        raise NotImplementedError

    def values(self, audience: str, key: str | None = None) -> set[str]:
        """Every value of identifier ``key`` among the audience's members."""
        with self.lock:
            members = self.audiences_by_id()[audience].members
            return members.values(self.email_key if key is None else key)

    def size(self, audience: str) -> int:
        """How many members the audience has."""
        with self.lock:
            return len(self.audiences_by_id()[audience].members)
