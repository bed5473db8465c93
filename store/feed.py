"""Reading a user's feed: Redis first, Postgres when Redis has nothing or is down.

Both paths return the same `Feed`, so serving does not care where it came from. The run gives
the ranked ids; cards come from Postgres at read time, one query per page. Items whose event
has started, was cancelled or is full, or that the user swiped since the run was published,
are dropped at read time; the published list itself is immutable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import redis
import sqlalchemy as sa

from store.cards import EventCard, FeedItem, load_live_cards
from store.keys import RedisKeys

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
) -> Feed:
    """The published feed for `user_id`, at most `limit` items, freshest source first.

    `run_id` pins a run (a page cursor does, so paging stays in one list while a newer run
    is published) and `after_rank` continues after the last rank already served; ranks are
    stable within a run, so swipes between pages never shift what the next page starts at.
    Raises `RunGone` when the pinned run is kept by neither store any more.

    The run only says which events, in what order; each card is read from Postgres for the
    page's ids in one query, so events cancelled or sold out since the run was published
    leave the feed at once, on both paths. `origin` (lat, lon) fills each `distance_km`.
    """
    now = now or datetime.now(UTC)
    page = _Page(limit=limit, after_rank=after_rank, run_id=run_id)
    try:
        ranked = _from_redis(redis_client, keys, user_id, now, page)
    except redis.RedisError:
        log.warning(
            "redis unavailable, reading feed of user %s from postgres", user_id, exc_info=True
        )
        ranked = None
    with engine.connect() as conn:
        if ranked is None:
            ranked = _from_postgres(conn, user_id, page)
        items, more = _hydrate(conn, ranked.rows, page, user_id, now, origin)
    return Feed(user_id, ranked.run_id, ranked.source, ranked.cold_start, items, more)


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
    """A run's list for one user, before cards: what either store answers."""

    run_id: str | None
    source: FeedSource
    cold_start: bool
    rows: list[_Row]


@dataclass(frozen=True)
class _Page:
    limit: int
    after_rank: int
    run_id: str | None


def _hydrate(
    conn: sa.Connection,
    rows: list[_Row],
    page: _Page,
    user_id: int,
    now: datetime,
    origin: tuple[float, float] | None,
) -> tuple[list[FeedItem], bool]:
    """Live cards for the rows after the cursor, dropping unshowable events, `limit` at most.

    Dropping happens before the page is cut, so `has_more` and the cursor stay exact. Cards
    are read for `limit + 1` rows first (one query when nothing is dropped, the usual case)
    and, while drops leave the page short, for twice as many of the following rows again.
    """
    rest = [r for r in rows if r.rank > page.after_rank]
    wanted = page.limit + 1  # one more than the page, to know whether another page exists
    kept: list[FeedItem] = []
    start, chunk = 0, wanted
    while len(kept) < wanted and start < len(rest):
        batch = rest[start : start + chunk]
        start += len(batch)
        chunk *= 2
        cards = load_live_cards(conn, [r.event_id for r in batch], viewer_id=user_id, origin=origin)
        for row in batch:
            card = cards.get(row.event_id)
            if card is not None and card.showable(now):
                kept.append(_item(row, card))
    return kept[: page.limit], len(kept) > page.limit


def _item(row: _Row, card: EventCard) -> FeedItem:
    fields = {f.name: getattr(card, f.name) for f in dataclasses.fields(card)}
    return FeedItem(**fields, rank=row.rank, score=row.score, reason=row.reason)


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
    client: redis.Redis, keys: RedisKeys, user_id: int, now: datetime, page: _Page
) -> _Ranked | None:
    raw_run = page.run_id or client.get(keys.current_run())
    if raw_run is None:
        return None
    run_id = _text(raw_run)
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.run_user_feed(run_id, user_id))
    pipe.get(keys.run_fallback(run_id))
    pipe.smembers(keys.seen(run_id, user_id))
    own, fallback, seen = pipe.execute()
    blob = own if own is not None else fallback
    if blob is None:
        return None  # the run's keys expired: let Postgres answer
    seen_ids = {_text(s) for s in seen}
    rows = [_row_from_json(item) for item in json.loads(blob)]
    # The published start time spares Postgres the events that have started already.
    kept = [
        r for r in rows if r.event_id not in seen_ids and (r.start_utc is None or r.start_utc > now)
    ]
    return _Ranked(run_id, "redis", own is None, kept)


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
