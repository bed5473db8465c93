"""Event cards and friend lists cached in each API process, kept exact by counters in Redis.

Why: a feed page needs about 50 cards and the viewer's friends. Reading them from Postgres on
every request cost more than the rest of the request together (`bench.serve`), yet a card
changes only when its event is edited or someone RSVPs, and a friend list only when a
friendship does. So each API process keeps the cards it read, the friend lists are kept in
Redis for every process to share, and Redis holds a small version counter per event and per
user that writes bump after they commit:

- A feed read fetches the counters of the page's events with one MGET and reuses a cached
  card only if it was loaded under the same counter values: another process's write shows
  up on the very next request, not after a TTL.
- The viewer's friend list and its counter ride along in the pipeline that reads the list;
  the list is used only if it was stored under the current counter, else it is read from
  Postgres and stored again (`FriendIds`).
- Writes through the API bump them: RSVPs (`touch_events`) and friendships (`touch_friends`).
  Bulk loads by the pipelines (catalogue upserts, the synthetic city) bump the epoch that is
  part of every stamp (`touch_catalogue`); so must any other out-of-band write.

Counters are read before Postgres: a write committed meanwhile bumps its counter, so what was
just read is reloaded on the next request (the calendar cache's rule). A write that could not
bump its counter (Redis down at that moment) is healed by `max_age_seconds`, the most any
entry is trusted (friend lists in Redis expire after `FRIEND_IDS_TTL_SECONDS`). When the
counters cannot be read, nothing cached is trusted and cards come straight from Postgres.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

import orjson
import redis
import sqlalchemy as sa

from store.cards import EventCard, load_mutual_friends_of
from store.keys import RedisKeys

log = logging.getLogger(__name__)

# (catalogue epoch, the entry's own counter): an entry is valid only under the same stamp.
Stamp = tuple[int, int]
# Long enough that a counter never expires (and restarts) while an entry stamped with it is
# still trusted; bumped keys of past events expire on their own.
COUNTER_TTL_SECONDS = 30 * 24 * 3600
DEFAULT_MAX_AGE_SECONDS = 60.0
# Friend lists are only as stale as their counter allows, so they may live long; the TTL
# only keeps lists of users who stopped coming from occupying Redis.
FRIEND_IDS_TTL_SECONDS = 24 * 3600

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class StampedCache(Generic[K, V]):
    """A bounded map whose entries are valid only under the stamp they were stored with.

    Reads take no lock (a dict lookup is atomic); writes do, for eviction. When full, the
    oldest quarter by insertion goes: cheaper than LRU bookkeeping on every hit, and the hot
    entries are simply stored again on their next miss.
    """

    def __init__(self, *, max_entries: int, max_age_seconds: float) -> None:
        self.max_entries = max_entries
        self.max_age_seconds = max_age_seconds
        self._entries: dict[K, tuple[Stamp, float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, stamp: Stamp) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != stamp or time.monotonic() - entry[1] > self.max_age_seconds:
            return None
        return entry[2]

    def put(self, key: K, stamp: Stamp, value: V) -> None:
        with self._lock:
            if key not in self._entries and len(self._entries) >= self.max_entries:
                for old in list(self._entries)[: max(1, self.max_entries // 4)]:
                    del self._entries[old]
            self._entries[key] = (stamp, time.monotonic(), value)

    def __len__(self) -> int:
        return len(self._entries)


class LiveCache:
    """One API process's cards and friend sets (see the module docstring for the rules)."""

    def __init__(
        self,
        *,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        max_cards: int = 100_000,
    ) -> None:
        self.cards: StampedCache[str, EventCard] = StampedCache(
            max_entries=max_cards, max_age_seconds=max_age_seconds
        )
        # The run the pointer named last time: reading it and the run's keys in one round
        # trip is right on every request but the first after a publish.
        self.current_run_hint: str | None = None

    def lookup(self, stamps: Mapping[str, Stamp]) -> tuple[dict[str, EventCard], list[str]]:
        """The cached cards whose stamp matches, and the ids to load (missing or stale)."""
        found: dict[str, EventCard] = {}
        missing: list[str] = []
        for event_id, stamp in stamps.items():
            card = self.cards.get(event_id, stamp)
            if card is None:
                missing.append(event_id)
            else:
                found[event_id] = card
        return found, missing

    def keep(self, cards: Mapping[str, EventCard], stamps: Mapping[str, Stamp]) -> None:
        """Cache `cards` just loaded, under the stamps read before loading them."""
        for event_id, card in cards.items():
            self.cards.put(event_id, stamps[event_id], card)


class FriendIds:
    """A user's friend list as Redis holds it for all API processes, with its stamp.

    Read in the feed's pipeline as two raw values (the counter and the stored list); `valid`
    says whether the stored list was written under the current stamp.
    """

    def __init__(
        self, epoch: bytes | str | None, version: bytes | str | None, stored: bytes | None
    ):
        self.stamp: Stamp = (_count(epoch), _count(version))
        self._stored = stored

    def cached(self) -> frozenset[int] | None:
        """The stored list if it is current, else None (never stored, or changed since)."""
        if self._stored is None:
            return None
        try:
            document = orjson.loads(self._stored)
            if (document["epoch"], document["version"]) != self.stamp:
                return None
            return frozenset(int(i) for i in document["ids"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed stored friend list")
            return None

    def set_command(
        self, keys: RedisKeys, user_id: int, ids: frozenset[int]
    ) -> tuple[str, str, bytes, str, int]:
        """The SET that keeps `ids` (just read from Postgres) under the stamp read before."""
        document = {"epoch": self.stamp[0], "version": self.stamp[1], "ids": sorted(ids)}
        return (
            "SET",
            keys.friend_ids(user_id),
            orjson.dumps(document),
            "EX",
            FRIEND_IDS_TTL_SECONDS,
        )


def warm_friend_ids(
    engine: sa.Engine,
    client: redis.Redis,
    keys: RedisKeys,
    user_ids: Sequence[int],
    *,
    batch_size: int = 10_000,
) -> int:
    """Store the friend lists of `user_ids` for the API, as a feed read would; returns how many.

    Called after a run is published, for the users it has lists for, so their first feed read
    finds the list in Redis instead of querying Postgres. Each batch's counters are read
    before its friendships, so a friendship changed meanwhile invalidates what is stored.
    Raises `redis.RedisError` (the caller decides whether a cold cache matters).
    """
    stored = 0
    for start in range(0, len(user_ids), batch_size):
        batch = list(user_ids[start : start + batch_size])
        values = client.mget([keys.card_epoch(), *(keys.friends_version(u) for u in batch)])
        with engine.connect() as conn:
            friends = load_mutual_friends_of(conn, batch)
        pipe = client.pipeline(transaction=False)
        for user_id, version in zip(batch, values[1:], strict=True):
            friend_ids = FriendIds(values[0], version, None)
            pipe.execute_command(*friend_ids.set_command(keys, user_id, friends[user_id]))
        pipe.execute()
        stored += len(batch)
    return stored


def card_stamps_command(keys: RedisKeys, event_ids: Collection[str]) -> tuple[str, ...]:
    """The MGET whose reply `card_stamps` reads: the epoch, then each event's counter."""
    return ("MGET", keys.card_epoch(), *(keys.card_version(e) for e in event_ids))


def card_stamps(event_ids: Collection[str], reply: list[bytes | str | None]) -> dict[str, Stamp]:
    """Each event's current stamp from the reply to `card_stamps_command`."""
    epoch = _count(reply[0])
    return {event_id: (epoch, _count(v)) for event_id, v in zip(event_ids, reply[1:], strict=True)}


def touch_events(client: redis.Redis, keys: RedisKeys, event_ids: Iterable[str]) -> bool:
    """Say these events' cards changed (call after the commit). False when Redis failed."""
    return _bump(client, [keys.card_version(e) for e in set(event_ids)])


def touch_friends(client: redis.Redis, keys: RedisKeys, user_ids: Iterable[int]) -> bool:
    """Say these users' friend sets changed (call after the commit). False when Redis failed."""
    return _bump(client, [keys.friends_version(u) for u in set(user_ids)])


def touch_catalogue(client: redis.Redis, keys: RedisKeys) -> bool:
    """Invalidate every cached card and friend set, after a bulk write to Postgres."""
    try:
        client.incr(keys.card_epoch())
    except redis.RedisError:
        log.warning(
            "could not bump the card epoch; caches heal within their max age", exc_info=True
        )
        return False
    return True


def _bump(client: redis.Redis, counter_keys: list[str]) -> bool:
    if not counter_keys:
        return True
    pipe = client.pipeline(transaction=False)
    for key in counter_keys:
        pipe.incr(key)
        pipe.expire(key, COUNTER_TTL_SECONDS)
    try:
        pipe.execute()
    except redis.RedisError:
        log.warning(
            "could not bump %d cache counters; caches heal within their max age",
            len(counter_keys),
            exc_info=True,
        )
        return False
    return True


def _count(value: bytes | str | None) -> int:
    return 0 if value is None else int(value)
