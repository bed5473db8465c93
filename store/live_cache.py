"""Event cards and friend lists cached for the API, kept exact by what writes tell Redis.

Why: a feed page needs about 50 cards and the viewer's friends. Reading them from Postgres on
every request cost more than the rest of the request together (`bench.serve`), yet a card
changes only when its event is edited or someone RSVPs, and a friend list only when a
friendship does. So each API process keeps the cards it read, and friend lists are kept in
Redis for every process to share. Writes say what they changed, after they commit:

- Cards: every change is appended to a change log in Redis, a stream of event ids
  (`touch_events`). A feed read learns the log's newest and oldest entry ids in the pipeline
  that reads the list, and only when the log moved since this process last looked does it
  fetch the new entries (one more round trip) and forget those events' cards. So the
  steady state checks fifty cached cards for the price of two tiny commands, and another
  process's write shows up on the very next request, not after a TTL.
- Friend lists: a counter per user (`touch_friends`); the stored list rides along in the
  feed's pipeline and is used only if it was stored under the current counter, else it is
  read from Postgres and stored again (`FriendIds`).
- Bulk loads by the pipelines (catalogue upserts, the synthetic city) bump an epoch that
  voids every cached card and friend list (`touch_catalogue`); so must any other
  out-of-band write to those tables.

The log position (or counter) is read before Postgres: a card loaded under position P is
trusted only while no change to its event after P has been seen, so a write that commits
during the load makes the next request reload it. If the log was trimmed past what this
process has seen, everything is forgotten. A write that could not reach Redis (down at that
moment) is healed by `max_age_seconds`, the most any card is trusted (friend lists in Redis
expire after `FRIEND_IDS_TTL_SECONDS`). When Redis cannot be read, nothing cached is
trusted and cards come straight from Postgres.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis
import sqlalchemy as sa

from store.cards import EventCard, load_mutual_friends_of
from store.experiments import Assignment, ServingExperiments
from store.keys import RedisKeys
from store.redis_values import text

log = logging.getLogger(__name__)

# (catalogue epoch, the user's own counter): a stored friend list is valid only under it.
Stamp = tuple[int, int]
# A change-log entry id, "<milliseconds>-<sequence>", as a comparable pair.
LogId = tuple[int, int]
ZERO_ID: LogId = (0, 0)
# Entries kept in the change log (approximately: trimmed with MAXLEN ~). A process that has
# not looked for longer than this many changes forgets all its cards, which is always safe.
CHANGE_LOG_LENGTH = 100_000
# Entries fetched at once when catching up; more than this since the last look: forget all.
CATCH_UP_COUNT = 10_000
COUNTER_TTL_SECONDS = 30 * 24 * 3600
DEFAULT_MAX_AGE_SECONDS = 60.0
# Friend lists are only as stale as their counter allows, so they may live long; the TTL
# only keeps lists of users who stopped coming from occupying Redis.
FRIEND_IDS_TTL_SECONDS = 24 * 3600


class LiveCache:
    """One API process's cards, and where in the change log it has read up to.

    Safe to share between the event loop and worker threads: lookups are plain dict reads,
    updates take a lock.
    """

    def __init__(
        self, *, max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS, max_cards: int = 100_000
    ) -> None:
        self.max_age_seconds = max_age_seconds
        self.max_cards = max_cards
        # event id -> (log position it was loaded at, monotonic load time, card)
        self._cards: dict[str, tuple[LogId, float, EventCard]] = {}
        # event id -> id of the newest change seen for it
        self._changed_at: dict[str, LogId] = {}
        self.epoch: int | None = None
        self.position: LogId | None = None
        self._lock = threading.Lock()
        # The run the pointer named last time: reading it and the run's keys in one round
        # trip is right on every request but the first after a publish.
        self.current_run_hint: str | None = None
        # The same for experiments: the serving document last read (raw, and parsed once per
        # change) and the run each arm's pointer named last time.
        self.experiments_raw: bytes | None = None
        self.experiments: ServingExperiments | None = None
        self.arm_run_hints: dict[Assignment, str] = {}

    def __len__(self) -> int:
        return len(self._cards)

    # --- following the change log -----------------------------------------------------------

    def catch_up_from(self, epoch: int, head: LogHead) -> LogId | None:
        """Align with what Redis says; the position to fetch changes after, or None if aligned.

        A new epoch, a first look, or a log trimmed past our position forget every card and
        align at the log's newest entry without fetching anything.
        """
        with self._lock:
            if epoch != self.epoch or self.position is None or head.oldest > self.position:
                if self.epoch is not None and self._cards:
                    log.info("forgetting %d cached cards (epoch or log moved)", len(self._cards))
                self._forget_all(epoch, head.newest)
                return None
            if head.newest <= self.position:
                return None
            return self.position

    def apply(self, changes: Sequence[tuple[LogId, str]], newest: LogId, *, complete: bool) -> None:
        """Note the fetched changes; with `complete` False (more than fetched), forget all."""
        with self._lock:
            if not complete:
                self._forget_all(self.epoch or 0, newest)
                return
            for entry_id, event_id in changes:
                if entry_id > self._changed_at.get(event_id, ZERO_ID):
                    self._changed_at[event_id] = entry_id
                self._cards.pop(event_id, None)
            if self.position is None or newest > self.position:
                self.position = newest

    def _forget_all(self, epoch: int, position: LogId) -> None:
        self._cards.clear()
        self._changed_at.clear()
        self.epoch = epoch
        self.position = position

    # --- cards ----------------------------------------------------------------------------------

    def lookup(self, event_ids: Iterable[str]) -> tuple[dict[str, EventCard], list[str]]:
        """The cached cards still trusted, and the ids to load (missing, changed or too old)."""
        found: dict[str, EventCard] = {}
        missing: list[str] = []
        now = time.monotonic()
        changed_at = self._changed_at
        for event_id in event_ids:
            entry = self._cards.get(event_id)
            if (
                entry is None
                or now - entry[1] > self.max_age_seconds
                or entry[0] < changed_at.get(event_id, ZERO_ID)
            ):
                missing.append(event_id)
            else:
                found[event_id] = entry[2]
        return found, missing

    def keep(self, cards: Mapping[str, EventCard], loaded_at: LogId) -> None:
        """Cache `cards`, loaded after the log was read at `loaded_at` (see the module)."""
        now = time.monotonic()
        with self._lock:
            if len(self._cards) + len(cards) > self.max_cards:
                for old in list(self._cards)[: max(len(cards), self.max_cards // 4)]:
                    del self._cards[old]
            for event_id, card in cards.items():
                self._cards[event_id] = (loaded_at, now, card)


class LogHead:
    """The change log's newest and oldest entry ids, from the replies to `head_commands`."""

    def __init__(self, newest_reply: Any, oldest_reply: Any) -> None:
        self.newest = _first_id(newest_reply)
        self.oldest = _first_id(oldest_reply)


def head_commands(keys: RedisKeys) -> list[tuple[Any, ...]]:
    """The two commands whose replies make a `LogHead` (sent in the feed's first pipeline)."""
    return [
        ("XREVRANGE", keys.card_changes(), "+", "-", "COUNT", 1),
        ("XRANGE", keys.card_changes(), "-", "+", "COUNT", 1),
    ]


def changes_command(keys: RedisKeys, after: LogId, newest: LogId) -> tuple[Any, ...]:
    """The entries after `after` up to `newest`, at most `CATCH_UP_COUNT` + 1 of them."""
    return (
        "XRANGE",
        keys.card_changes(),
        f"({after[0]}-{after[1]}",
        f"{newest[0]}-{newest[1]}",
        "COUNT",
        CATCH_UP_COUNT + 1,
    )


def parse_changes(reply: Any) -> tuple[list[tuple[LogId, str]], bool]:
    """(entry id, event id) pairs from a `changes_command` reply, and whether that was all."""
    changes = [(_log_id(entry_id), text(fields[b"e"])) for entry_id, fields in reply]
    return changes[:CATCH_UP_COUNT], len(changes) <= CATCH_UP_COUNT


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


def touch_events(client: redis.Redis, keys: RedisKeys, event_ids: Iterable[str]) -> bool:
    """Say these events' cards changed (call after the commit). False when Redis failed."""
    pipe = client.pipeline(transaction=False)
    for event_id in sorted(set(event_ids)):
        pipe.xadd(keys.card_changes(), {"e": event_id}, maxlen=CHANGE_LOG_LENGTH, approximate=True)
    try:
        pipe.execute()
    except redis.RedisError:
        log.warning("could not log changed cards; caches heal within their max age", exc_info=True)
        return False
    return True


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


def _log_id(value: bytes | str) -> LogId:
    millis, _, sequence = text(value).partition("-")
    return int(millis), int(sequence or 0)


def _first_id(reply: Any) -> LogId:
    """The id of the one entry an X(REV)RANGE ... COUNT 1 returned; zero for an empty log."""
    return _log_id(reply[0][0]) if reply else ZERO_ID
