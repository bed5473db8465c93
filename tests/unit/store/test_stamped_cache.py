"""The stamped cache behind the API's card cache: what it trusts and what it reloads."""

from __future__ import annotations

import pytest

from store import live_cache
from store.live_cache import LiveCache, StampedCache


def test_an_entry_is_valid_only_under_its_own_stamp() -> None:
    cache: StampedCache[str, int] = StampedCache(max_entries=10, max_age_seconds=60)
    cache.put("ev-1", (1, 4), 42)
    assert cache.get("ev-1", (1, 4)) == 42
    assert cache.get("ev-1", (1, 5)) is None  # the event's counter moved
    assert cache.get("ev-1", (2, 4)) is None  # the catalogue epoch moved
    assert cache.get("ev-2", (1, 4)) is None


def test_an_entry_is_not_trusted_past_its_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(live_cache.time, "monotonic", lambda: clock[0])
    cache: StampedCache[str, int] = StampedCache(max_entries=10, max_age_seconds=60)
    cache.put("ev-1", (0, 0), 1)
    clock[0] += 59
    assert cache.get("ev-1", (0, 0)) == 1
    clock[0] += 2
    assert cache.get("ev-1", (0, 0)) is None


def test_a_full_cache_evicts_the_oldest_and_stays_bounded() -> None:
    cache: StampedCache[int, int] = StampedCache(max_entries=8, max_age_seconds=60)
    for key in range(20):
        cache.put(key, (0, 0), key)
    assert len(cache) <= 8
    assert cache.get(19, (0, 0)) == 19
    assert cache.get(0, (0, 0)) is None


def test_lookup_returns_only_what_matches_and_keep_stores_under_the_read_stamps() -> None:
    cache = LiveCache()
    card_a, card_b = object(), object()
    stamps = {"a": (0, 1), "b": (0, 1), "gone": (0, 0)}
    found, missing = cache.lookup(stamps)
    assert found == {} and sorted(missing) == ["a", "b", "gone"]

    cache.keep({"a": card_a, "b": card_b}, stamps)  # type: ignore[dict-item]
    found, missing = cache.lookup({**stamps, "b": (0, 2)})
    # `b`'s counter moved; an id that does not exist is never cached, so an event created
    # later shows up.
    assert found == {"a": card_a} and sorted(missing) == ["b", "gone"]
