"""Recording the swipes the app sends: Postgres first (the truth), then the feed in Redis.

The app batches swipes and may resend a batch it is not sure arrived, so every swipe carries a
`client_id` the app generated; `(user_id, client_id)` is unique and the insert skips conflicts,
so a retry stores nothing twice and reports the already-stored swipes as duplicates.

A batch is all or nothing: the user and every event are checked (and locked against deletion)
in the same transaction as the insert, so either every swipe is stored or none is.

Redis only makes the feed drop swiped events at once. It is best effort: when Redis is down the
swipes are still stored, and the caller is told so it can say the feed may lag.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import redis
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from store.breaker import CircuitOpenError
from store.errors import UnknownUserError
from store.feed import mark_seen
from store.keys import RedisKeys
from store.schema import swipes

log = logging.getLogger(__name__)
_TZ = sa.DateTime(timezone=True)

SwipeAction = Literal["like", "pass", "superlike"]


@dataclass(frozen=True)
class SwipeRecord:
    """One swipe as the app reported it; `swiped_at` must be timezone-aware.

    `impression_id` is the feed impression the swipe answers, already verified by the caller
    (`core.impression_ids`): this module stores it as given.
    """

    client_id: str
    event_id: str
    action: SwipeAction
    swiped_at: datetime
    impression_id: uuid.UUID | None = None


@dataclass(frozen=True)
class RecordResult:
    """How many swipes of a batch were new and how many had been stored before."""

    stored: int
    duplicates: int


class UnknownEventsError(LookupError):
    """Some swiped events do not exist; nothing of the batch was stored."""

    def __init__(self, event_ids: Sequence[str]) -> None:
        super().__init__(f"unknown events: {', '.join(event_ids)}")
        self.event_ids = list(event_ids)


_LOCK_USER = sa.text("SELECT id FROM users WHERE id = :user_id FOR KEY SHARE")
_LOCK_EVENTS = sa.text("SELECT id FROM events WHERE id = ANY(:ids) FOR KEY SHARE")


def record_swipes(
    engine: sa.Engine,
    user_id: int,
    records: Sequence[SwipeRecord],
) -> RecordResult:
    """Store `records` for `user_id` in one transaction, skipping client ids already stored.

    `created_at` stays the server's time (the feed drops events swiped since a run's publish
    by it, so a batch uploaded after an offline session must count as new); the app's time
    goes to `swiped_at`, capped at `created_at` so a client clock running fast never stores a
    swipe later than it arrived.

    Raises `UnknownUserError` or `UnknownEventsError` (storing nothing) when a row the swipes
    refer to is missing; `FOR KEY SHARE` keeps them from being deleted until the commit.
    """
    if not records:
        return RecordResult(stored=0, duplicates=0)
    event_ids = sorted({r.event_id for r in records})
    with engine.begin() as conn:
        if conn.execute(_LOCK_USER, {"user_id": user_id}).first() is None:
            raise UnknownUserError(user_id)
        found = {row.id for row in conn.execute(_LOCK_EVENTS, {"ids": event_ids})}
        missing = [e for e in event_ids if e not in found]
        if missing:
            raise UnknownEventsError(missing)
        statement = (
            insert(swipes)
            .values(
                [
                    {
                        "id": uuid.uuid4(),
                        "client_id": r.client_id,
                        "user_id": user_id,
                        "event_id": r.event_id,
                        "action": r.action,
                        "position": None,  # the app does not report the card's position
                        "swiped_at": sa.func.least(
                            sa.literal(r.swiped_at, type_=_TZ), sa.func.now()
                        ),
                        "impression_id": r.impression_id,
                    }
                    # Sorted, so two concurrent retries of a batch take the unique index's
                    # row locks in the same order and cannot deadlock each other.
                    for r in sorted(records, key=lambda r: r.client_id)
                ]
            )
            .on_conflict_do_nothing(index_elements=[swipes.c.user_id, swipes.c.client_id])
            .returning(swipes.c.client_id)
        )
        stored = len(conn.execute(statement).all())
    return RecordResult(stored=stored, duplicates=len(records) - stored)


def hide_swiped_from_feed(
    *,
    redis_client: redis.Redis,
    keys: RedisKeys,
    user_id: int,
    event_ids: Iterable[str],
    ttl_seconds: int,
) -> bool:
    """Mark `event_ids` seen so the feed drops them now; False (logged) when Redis failed.

    Callers pass every event of a batch, duplicates included, so resending a batch after a
    Redis outage also repairs the feed. True also covers "no run published yet": there is
    nothing to hide then.
    """
    try:
        mark_seen(
            redis_client=redis_client,
            keys=keys,
            user_id=user_id,
            event_ids=event_ids,
            ttl_seconds=ttl_seconds,
        )
    except redis.RedisError as error:
        log.warning(
            "redis unavailable: swipes of user %s are stored but the feed may still show them",
            user_id,
            exc_info=not isinstance(error, CircuitOpenError),
        )
        return False
    return True
