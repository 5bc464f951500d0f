"""Short-lived answers shared by every request: computed once, reused for about a second.

Under load, 50 clients asking for the overview at once would each query the store, stat
200 snapshot files and render 200 table rows, for the same result. A :class:`SharedMemo`
keeps the last result for ``ttl`` seconds and lets only one caller compute it while the
others wait for that result (single flight). The app owns one :class:`AnswerCache` (made by
the app factory, reached through ``app.state.cache``) holding its memos by name;
:meth:`AnswerCache.invalidate` (called by the RunManager when a run starts or ends, and when
a schedule is paused) drops them all at once, so runs started by this server show without
delay; runs started by another process (the CLI, another worker) show within ``ttl``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from typing import Generic
from typing import TypeVar

T = TypeVar("T")


class SharedMemo(Generic[T]):
    """One value, recomputed at most once per ``ttl`` seconds, by one caller at a time.

    When the value has merely aged past ``ttl``, one caller recomputes it while the others
    keep getting the previous value (up to ``ttl`` plus one computation old), so requests
    never queue behind a refresh. After :meth:`clear` there is no previous value: callers
    wait for the new one, so a run that just started or ended always shows.

    Args:
        ttl: Seconds a computed value stays fresh.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value: tuple[float, T] | None = None
        self._generation = 0

    def peek(self) -> T | None:
        """The value when it is fresh, else None (never computes; safe on the event loop)."""
        held = self._value
        if held is not None and time.monotonic() - held[0] < self.ttl:
            return held[1]
        return None

    def get(self, compute: Callable[[], T]) -> T:
        """The value, computing it with ``compute`` when it is missing or too old.

        Blocks only when there is no value at all and another thread is computing it.
        """
        held = self._value
        if held is not None and time.monotonic() - held[0] < self.ttl:
            return held[1]
        if held is not None and not self._lock.acquire(blocking=False):
            return held[1]  # another thread is refreshing it: the previous value will do
        if held is None:
            self._lock.acquire()
        try:
            held = self._value
            if held is not None and time.monotonic() - held[0] < self.ttl:
                return held[1]
            generation = self._generation
            began = time.monotonic()  # the value is as old as the data it was read from
            value = compute()
            # A run that started or ended while computing made this value stale at birth:
            # hand it to this caller, but do not keep it.
            if generation == self._generation:
                self._value = (began, value)
            return value
        finally:
            self._lock.release()

    def clear(self) -> None:
        """Forget the value; the next :meth:`get` computes it anew."""
        self._generation += 1
        self._value = None


class AnswerCache:
    """The memoised answers of one app, by name. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memos: dict[str, SharedMemo[Any]] = {}

    def memo(self, name: str, ttl: float) -> SharedMemo[Any]:
        """The memo called ``name``, created (keeping values ``ttl`` seconds) on first use."""
        with self._lock:
            found = self._memos.get(name)
            if found is None:
                found = self._memos[name] = SharedMemo(ttl)
            return found

    def invalidate(self) -> None:
        """Drop every memoised answer (a run started or ended, a schedule changed)."""
        with self._lock:
            memos = list(self._memos.values())
        for m in memos:
            m.clear()


__all__ = ["AnswerCache", "SharedMemo"]
