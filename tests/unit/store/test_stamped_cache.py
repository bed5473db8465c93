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


def test_cards_for_loads_only_what_is_missing_or_stale() -> None:
    cache = LiveCache()
    loads: list[list[str]] = []

    def load(ids: list[str]) -> dict[str, str]:
        loads.append(sorted(ids))
        return {event_id: f"card of {event_id}" for event_id in ids if event_id != "gone"}

    stamps = {"a": (0, 1), "b": (0, 1), "gone": (0, 0)}
    first = cache.cards_for(stamps, load)  # type: ignore[arg-type]
    assert first == {"a": "card of a", "b": "card of b"}
    second = cache.cards_for({**stamps, "b": (0, 2)}, load)  # type: ignore[arg-type]
    assert second == first
    # The first read loads all three; the second only `b` (its counter moved) and the id that
    # does not exist (absence is not cached, so an event created later shows up).
    assert loads == [["a", "b", "gone"], ["b", "gone"]]
