"""Reading a user's feed: Redis first, Postgres when Redis has nothing or is down.

Both paths return the same `Feed`, so serving does not care where it came from. The run gives
the ranked ids; cards are read live at read time (Postgres, or the API's cache that Redis
counters keep exact: `store.live_cache`). Items whose event
has started, was cancelled or is full, or that the user swiped since the run was published,
are dropped at read time; the published list itself is immutable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import redis
import sqlalchemy as sa

from store.cards import EventCard, load_live_cards, load_mutual_friends
from store.keys import RedisKeys
from store.live_cache import FriendIds, LiveCache, read_card_stamps

log = logging.getLogger(__name__)

FeedSource = Literal["redis", "postgres", "none"]


class RunGone(LookupError):
    """The run a cursor pinned is no longer kept in either store: the client starts over."""


@dataclass(frozen=True)
class Feed:
    """A user's ranked feed. `cold_start` means the run had no list for this user.

    `has_more` says items ranked after the last one returned are still left to page through.
    """

    user_id: int
    run_id: str | None
    source: FeedSource
    cold_start: bool
    items: list[FeedItem] = field(default_factory=list)
    has_more: bool = False


def read_feed(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    user_id: int,
    limit: int = 50,
    now: datetime | None = None,
    run_id: str | None = None,
    after_rank: int = 0,
    origin: tuple[float, float] | None = None,
    cache: LiveCache | None = None,
) -> Feed:
    """The published feed for `user_id`, at most `limit` items, freshest source first.

    `run_id` pins a run (a page cursor does, so paging stays in one list while a newer run
    is published) and `after_rank` continues after the last rank already served; ranks are
    stable within a run, so swipes between pages never shift what the next page starts at.
    Raises `RunGone` when the pinned run is kept by neither store any more.

    The run only says which events, in what order; cards are read live for the page's ids,
    so events cancelled or sold out since the run was published leave the feed at once, on
    both paths. With a `cache` (the API's), cards and the viewer's friends are reused while
    their Redis counters say they are unchanged (`store.live_cache`); without one, or when
    Redis is down, they come from Postgres. `origin` (lat, lon) fills each `distance_km`.
    """
    now = now or datetime.now(UTC)
    page = _Page(limit=limit, after_rank=after_rank, run_id=run_id)
    with _Reads(engine, redis_client, keys, cache) as reads:
        try:
            ranked = _from_redis(redis_client, keys, user_id, now, page, cache)
        except redis.RedisError:
            log.warning(
                "redis unavailable, reading feed of user %s from postgres", user_id, exc_info=True
            )
            reads.redis_ok = False
            ranked = None
        if ranked is None:
            ranked = _from_postgres(reads.connection(), user_id, page)
        friends = reads.friends(user_id, ranked.friend_ids)
        kept, more = _hydrate(ranked.rows, page, now, reads.cards)
    items = [
        FeedItem(
            card=card,
            rank=row.rank,
            score=row.score,
            reason=row.reason,
            friends_going=card.friends_going(friends),
            distance_km=card.distance_km(origin),
        )
        for row, card in kept
    ]
    return Feed(user_id, ranked.run_id, ranked.source, ranked.cold_start, items, more)


@dataclass(frozen=True)
class FeedItem:
    """One ranked event in a user's feed: its live card, where and why it was ranked, and
    what depends on the viewer (friends going as they allow, distance from `origin`)."""

    card: EventCard
    rank: int
    score: float
    reason: str
    friends_going: int
    distance_km: float | None

    @property
    def event_id(self) -> str:
        return self.card.event_id


@dataclass(frozen=True)
class _Row:
    """A ranked event as the run holds it; `start_utc` only when the Redis copy carries it."""

    event_id: str
    rank: int
    score: float
    reason: str
    start_utc: datetime | None = None


@dataclass(frozen=True)
class _Ranked:
    """A run's list for one user, before cards: what either store answers.

    `friend_ids` is the viewer's friend list as Redis holds it, read in the same round trip
    on the Redis path; None on the Postgres path, where nothing cached is trusted.
    """

    run_id: str | None
    source: FeedSource
    cold_start: bool
    rows: list[_Row]
    friend_ids: FriendIds | None = None


@dataclass(frozen=True)
class _Page:
    limit: int
    after_rank: int
    run_id: str | None


class _Reads:
    """Where cards and friends come from for one feed read: the cache, or Postgres.

    The Postgres connection is opened only if something has to be read from it, so a read
    served entirely from Redis and the cache never touches the pool.
    """

    def __init__(
        self,
        engine: sa.Engine,
        redis_client: redis.Redis,
        keys: RedisKeys,
        cache: LiveCache | None,
    ) -> None:
        self.engine = engine
        self.redis_client = redis_client
        self.keys = keys
        self.cache = cache
        self.redis_ok = True
        self._stack = ExitStack()
        self._conn: sa.Connection | None = None

    def __enter__(self) -> _Reads:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def connection(self) -> sa.Connection:
        if self._conn is None:
            # Autocommit: these are single reads, so no BEGIN and no ROLLBACK round trips.
            conn = self._stack.enter_context(self.engine.connect())
            self._conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def friends(self, user_id: int, stored: FriendIds | None) -> frozenset[int]:
        """The viewer's mutual friends: Redis's shared copy when current, else Postgres."""
        cached = stored.cached() if stored is not None and self.redis_ok else None
        if cached is not None:
            return cached
        friends = load_mutual_friends(self.connection(), user_id)
        if stored is not None and self.redis_ok:
            stored.store(self.redis_client, self.keys, user_id, friends)
        return friends

    def cards(self, event_ids: list[str]) -> dict[str, EventCard]:
        def load(ids: list[str]) -> dict[str, EventCard]:
            return load_live_cards(self.connection(), ids)

        if self.cache is None or not self.redis_ok:
            return load(event_ids)
        try:
            stamps = read_card_stamps(self.redis_client, self.keys, set(event_ids))
        except redis.RedisError:
            log.warning("redis unavailable, reading cards from postgres", exc_info=True)
            self.redis_ok = False
            return load(event_ids)
        return self.cache.cards_for(stamps, load)


def _hydrate(
    rows: list[_Row],
    page: _Page,
    now: datetime,
    cards_of: Callable[[list[str]], Mapping[str, EventCard]],
) -> tuple[list[tuple[_Row, EventCard]], bool]:
    """Live cards for the rows after the cursor, dropping unshowable events, `limit` at most.

    Dropping happens before the page is cut, so `has_more` and the cursor stay exact. Cards
    are read for `limit + 1` rows first (one read when nothing is dropped, the usual case)
    and, while drops leave the page short, for twice as many of the following rows again.
    """
    rest = [r for r in rows if r.rank > page.after_rank]
    wanted = page.limit + 1  # one more than the page, to know whether another page exists
    kept: list[tuple[_Row, EventCard]] = []
    start, chunk = 0, wanted
    while len(kept) < wanted and start < len(rest):
        batch = rest[start : start + chunk]
        start += len(batch)
        chunk *= 2
        cards = cards_of([r.event_id for r in batch])
        for row in batch:
            card = cards.get(row.event_id)
            if card is not None and card.showable(now):
                kept.append((row, card))
    return kept[: page.limit], len(kept) > page.limit


def mark_seen(
    *,
    redis_client: redis.Redis,
    keys: RedisKeys,
    user_id: int,
    event_ids: Iterable[str],
    ttl_seconds: int,
) -> None:
    """Remember swipes made since the current run was published, so the feed drops them."""
    run_id = redis_client.get(keys.current_run())
    ids = list(event_ids)
    if run_id is None or not ids:
        return
    key = keys.seen(_text(run_id), user_id)
    pipe = redis_client.pipeline(transaction=False)
    pipe.sadd(key, *ids)
    pipe.expire(key, ttl_seconds)
    pipe.execute()


def _from_redis(
    client: redis.Redis,
    keys: RedisKeys,
    user_id: int,
    now: datetime,
    page: _Page,
    cache: LiveCache | None,
) -> _Ranked | None:
    """The list from Redis, or None when Redis holds no run (or the run's keys expired).

    Unpinned reads guess the current run (the one seen last time) and check the guess in the
    same round trip, so the steady state costs one round trip; a wrong guess (a publish since)
    costs a second.
    """
    run_id = page.run_id or (cache.current_run_hint if cache else None)
    if run_id is None:
        raw_run = client.get(keys.current_run())
        if raw_run is None:
            return None
        run_id = _text(raw_run)
    for _ in range(2):
        pipe = client.pipeline(transaction=False)
        pipe.get(keys.run_user_feed(run_id, user_id))
        pipe.get(keys.run_fallback(run_id))
        pipe.smembers(keys.seen(run_id, user_id))
        pipe.get(keys.card_epoch())
        pipe.get(keys.friends_version(user_id))
        pipe.get(keys.friend_ids(user_id))
        if page.run_id is None:
            pipe.get(keys.current_run())
        own, fallback, seen, epoch, friends_version, friend_ids, *current = pipe.execute()
        if page.run_id is None:
            if current[0] is None:
                return None
            if _text(current[0]) != run_id:
                run_id = _text(current[0])  # published since the guess: read that run
                continue
            if cache is not None:
                cache.current_run_hint = run_id
        break
    blob = own if own is not None else fallback
    if blob is None:
        return None  # the run's keys expired: let Postgres answer
    seen_ids = {_text(s) for s in seen}
    rows = [_row_from_json(item) for item in orjson.loads(blob)]
    # The published start time spares the card reads the events that have started already.
    kept = [
        r for r in rows if r.event_id not in seen_ids and (r.start_utc is None or r.start_utc > now)
    ]
    stored_friends = FriendIds(epoch, friends_version, friend_ids)
    return _Ranked(run_id, "redis", own is None, kept, stored_friends)


_LATEST_RUN = sa.text(
    "SELECT id, fallback, published_at FROM recommendation_runs WHERE status = 'published' "
    "ORDER BY published_at DESC LIMIT 1"
)
# A pinned run may have been superseded since; it is still served while it is kept.
_PINNED_RUN = sa.text(
    "SELECT id, fallback, published_at FROM recommendation_runs "
    "WHERE id = :run_id AND published_at IS NOT NULL"
)
# Redis remembers swipes made since the run was published; Postgres reads them directly.
_SWIPED_SINCE = sa.text(
    "SELECT event_id FROM swipes WHERE user_id = :user_id AND created_at >= :since"
)
_USER_ROWS = sa.text(
    "SELECT rank, event_id, score, reason FROM recommendations "
    "WHERE run_id = :run_id AND user_id = :user_id ORDER BY rank"
)


def _from_postgres(conn: sa.Connection, user_id: int, page: _Page) -> _Ranked:
    if page.run_id is None:
        run = conn.execute(_LATEST_RUN).first()
    else:
        run = conn.execute(_PINNED_RUN, {"run_id": page.run_id}).first()
        if run is None:
            raise RunGone(page.run_id)
    if run is None:
        return _Ranked(None, "none", True, [])
    rows = [
        dict(r._mapping) for r in conn.execute(_USER_ROWS, {"run_id": run.id, "user_id": user_id})
    ]
    cold_start = not rows
    ranked = rows or list(run.fallback)
    swiped = {
        r.event_id
        for r in conn.execute(_SWIPED_SINCE, {"user_id": user_id, "since": run.published_at})
    }
    kept = [
        _Row(r["event_id"], int(r["rank"]), float(r["score"]), str(r["reason"]))
        for r in ranked
        if r["event_id"] not in swiped
    ]
    return _Ranked(str(run.id), "postgres", cold_start, kept)


def _row_from_json(item: dict[str, Any]) -> _Row:
    start = item.get("start_utc")
    return _Row(
        event_id=item["event_id"],
        rank=int(item["rank"]),
        score=float(item["score"]),
        reason=str(item["reason"]),
        start_utc=_parse_time(start) if start else None,
    )


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
