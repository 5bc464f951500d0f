"""The app's AnswerCache: memos by name, dropped together, never shared between apps."""

from __future__ import annotations

import threading

from backhaul.web.cache import AnswerCache

TTL = 3600.0  # longer than any test, so only invalidate() can make a memo recompute


def test_a_memo_is_computed_once_until_invalidated() -> None:
    cache = AnswerCache()
    calls: list[str] = []

    def compute(name: str) -> str:
        calls.append(name)
        return f"{name}#{len(calls)}"

    first = cache.memo("overview", TTL).get(lambda: compute("overview"))
    again = cache.memo("overview", TTL).get(lambda: compute("overview"))
    other = cache.memo("api_syncs", TTL).get(lambda: compute("api_syncs"))
    assert (first, again, other) == ("overview#1", "overview#1", "api_syncs#2")
    assert cache.memo("overview", TTL).peek() == "overview#1"

    cache.invalidate()  # a run started or ended: every answer goes

    assert cache.memo("overview", TTL).peek() is None
    assert cache.memo("api_syncs", TTL).peek() is None
    assert cache.memo("overview", TTL).get(lambda: compute("overview")) == "overview#3"


def test_two_apps_never_share_answers() -> None:
    one, two = AnswerCache(), AnswerCache()
    one.memo("latest_runs", TTL).get(lambda: "from app one")

    assert two.memo("latest_runs", TTL).get(lambda: "from app two") == "from app two"
    two.invalidate()
    assert one.memo("latest_runs", TTL).peek() == "from app one"


def test_concurrent_first_callers_compute_once() -> None:
    cache = AnswerCache()
    computed: list[int] = []
    entered = threading.Event()
    release = threading.Event()

    def slow() -> int:
        computed.append(1)
        entered.set()
        release.wait(10)
        return 42

    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(cache.memo("m", TTL).get(slow)))
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=lambda: results.append(cache.memo("m", TTL).get(slow)))
    second.start()
    release.set()
    first.join(10)
    second.join(10)

    assert results == [42, 42]
    assert computed == [1]
