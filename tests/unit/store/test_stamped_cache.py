"""The API's card cache following the change log: what it trusts, forgets and reloads."""

from __future__ import annotations

import pytest

from store import live_cache
from store.live_cache import LiveCache, LogHead

CARD_A, CARD_B = object(), object()


def _head(newest: tuple[int, int], oldest: tuple[int, int] = (1, 0)) -> LogHead:
    head = LogHead([], [])
    head.newest, head.oldest = newest, oldest
    return head


def _aligned(epoch: int = 0, at: tuple[int, int] = (10, 0)) -> LiveCache:
    cache = LiveCache()
    assert cache.catch_up_from(epoch, _head(at)) is None  # first look: aligned, nothing to fetch
    cache.keep({"a": CARD_A, "b": CARD_B}, at)  # type: ignore[dict-item]
    return cache


def test_a_card_is_trusted_until_a_change_to_its_event_is_seen() -> None:
    cache = _aligned()
    assert cache.lookup(["a", "b", "c"]) == ({"a": CARD_A, "b": CARD_B}, ["c"])

    assert cache.catch_up_from(0, _head((12, 0))) == (10, 0)  # the log moved: fetch after 10
    cache.apply([((11, 0), "b")], (12, 0), complete=True)
    assert cache.lookup(["a", "b"]) == ({"a": CARD_A}, ["b"])
    assert cache.position == (12, 0)


def test_a_card_loaded_before_a_change_another_request_applied_is_not_trusted() -> None:
    """Request 1 read the log at 10 and loads `c` slowly; request 2 applies a change to `c`
    at 11 meanwhile. Request 1's copy may predate that change, so it must not be served."""
    cache = _aligned()
    cache.catch_up_from(0, _head((11, 0)))
    cache.apply([((11, 0), "c")], (11, 0), complete=True)
    cache.keep({"c": CARD_A}, (10, 0))  # type: ignore[dict-item]
    assert cache.lookup(["c"]) == ({}, ["c"])
    cache.keep({"c": CARD_B}, (11, 0))  # type: ignore[dict-item]
    assert cache.lookup(["c"]) == ({"c": CARD_B}, [])


@pytest.mark.parametrize(
    ("epoch", "head"),
    [(1, _head((10, 0))), (0, _head((30, 0), oldest=(20, 0)))],
    ids=["new epoch", "log trimmed past our position"],
)
def test_a_new_epoch_or_a_gap_in_the_log_forgets_every_card(epoch: int, head: LogHead) -> None:
    cache = _aligned()
    assert cache.catch_up_from(epoch, head) is None
    assert len(cache) == 0 and cache.position == head.newest


def test_more_changes_than_fetched_forgets_every_card() -> None:
    cache = _aligned()
    cache.catch_up_from(0, _head((99, 0)))
    cache.apply([((11, 0), "zzz")], (99, 0), complete=False)
    assert len(cache) == 0 and cache.position == (99, 0)


def test_a_card_is_not_trusted_past_its_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(live_cache.time, "monotonic", lambda: clock[0])
    cache = _aligned()
    clock[0] += 59
    assert cache.lookup(["a"])[0] == {"a": CARD_A}
    clock[0] += 2
    assert cache.lookup(["a"]) == ({}, ["a"])


def test_a_full_cache_evicts_and_stays_bounded() -> None:
    cache = LiveCache(max_cards=8)
    cache.catch_up_from(0, _head((1, 0)))
    for i in range(20):
        cache.keep({f"e{i}": CARD_A}, (1, 0))  # type: ignore[dict-item]
    assert len(cache) <= 8
    assert cache.lookup(["e19"])[0] == {"e19": CARD_A}
