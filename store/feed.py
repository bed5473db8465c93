"""Reading a user's feed: Redis first, Postgres when Redis has nothing or is down.

Both paths return the same `Feed`, so serving does not care where it came from. Items whose
event has started, or that the user swiped since the run was published, are dropped at read
time; the published list itself is immutable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl
import redis
import sqlalchemy as sa

from store.cards import FeedItem, load_cards
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
) -> Feed:
    """The published feed for `user_id`, at most `limit` items, freshest source first.

    `run_id` pins a run (a page cursor does, so paging stays in one list while a newer run
    is published) and `after_rank` continues after the last rank already served; ranks are
    stable within a run, so swipes between pages never shift what the next page starts at.
    Raises `RunGone` when the pinned run is kept by neither store any more.
    """
    now = now or datetime.now(UTC)
    page = _Page(limit=limit, after_rank=after_rank, run_id=run_id)
    try:
        feed = _from_redis(redis_client, keys, user_id, now, page)
    except redis.RedisError:
        log.warning(
            "redis unavailable, reading feed of user %s from postgres", user_id, exc_info=True
        )
        feed = None
    return feed if feed is not None else _from_postgres(engine, user_id, now, page)


@dataclass(frozen=True)
class _Page:
    limit: int
    after_rank: int
    run_id: str | None

    def cut(self, items: list[FeedItem]) -> tuple[list[FeedItem], bool]:
        """Items after the cursor, at most `limit`, and whether any are left after them."""
        rest = [i for i in items if i.rank > self.after_rank]
        return rest[: self.limit], len(rest) > self.limit


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
) -> Feed | None:
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
    items = [_item_from_json(row) for row in json.loads(blob)]
    kept, more = page.cut([i for i in items if i.start_utc > now and i.event_id not in seen_ids])
    return Feed(user_id, run_id, "redis", own is None, kept, more)


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


def _from_postgres(engine: sa.Engine, user_id: int, now: datetime, page: _Page) -> Feed:
    with engine.connect() as conn:
        if page.run_id is None:
            run = conn.execute(_LATEST_RUN).first()
        else:
            run = conn.execute(_PINNED_RUN, {"run_id": page.run_id}).first()
            if run is None:
                raise RunGone(page.run_id)
        if run is None:
            return Feed(user_id, None, "none", True, [])
        rows = [
            dict(r._mapping)
            for r in conn.execute(_USER_ROWS, {"run_id": run.id, "user_id": user_id})
        ]
        cold_start = not rows
        ranked = rows or list(run.fallback)
        cards = load_cards(conn, [r["event_id"] for r in ranked])
        swiped = {
            r.event_id
            for r in conn.execute(_SWIPED_SINCE, {"user_id": user_id, "since": run.published_at})
        }
    by_id = {c["event_id"]: c for c in cards.filter(pl.col("is_active")).to_dicts()}
    items = [
        FeedItem(
            event_id=r["event_id"],
            rank=int(r["rank"]),
            score=float(r["score"]),
            reason=str(r["reason"]),
            **_card_fields(by_id[r["event_id"]]),
        )
        for r in ranked
        if r["event_id"] in by_id and r["event_id"] not in swiped
    ]
    kept, more = page.cut([i for i in items if i.start_utc > now])
    return Feed(user_id, str(run.id), "postgres", cold_start, kept, more)


def _card_fields(card: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in card.items() if k not in ("event_id", "is_active")}


def _item_from_json(row: dict[str, Any]) -> FeedItem:
    return FeedItem(
        event_id=row["event_id"],
        rank=int(row["rank"]),
        score=float(row["score"]),
        reason=row["reason"],
        name=row["name"],
        category=row["category"],
        start_utc=_parse_time(row["start_utc"]),
        end_utc=_parse_time(row["end_utc"]) if row.get("end_utc") else None,
        venue_name=row.get("venue_name"),
        metro=row["metro"],
        is_free=bool(row["is_free"]),
        price_min_cents=row.get("price_min_cents"),
    )


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
