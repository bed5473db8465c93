"""RSVPs: the use cases behind `PUT` and `DELETE /v1/events/{id}/attendance`.

An answer changes four things: the `event_attendance` row (Postgres, the truth), the caller's
cached calendar pages (`store.calendar`), the event's card in every process's live cache
(`store.live_cache`: its going count and goers changed) and the live pushes to the caller's
mutual friends (`store.live_events`). `rsvp` and `cancel_rsvp` do all four, in that order:

1. one transaction reads the visibility of the previous answer and writes the new one. The
   read locks the answer first (an advisory lock on (user, event), then the row itself), so a
   concurrent write of the same answer, through the API or not, cannot slip between them:
   what friends are told is decided from the answer this write actually replaced;
2. after the commit, and only when something was written, the Redis side effects: the
   calendar version is bumped, the card touched, the change pushed. Each is best effort (a
   Redis failure is logged; pages and cards heal within their max age), and none runs when
   the write failed, so a refused write leaves no trace in Redis.
"""

from __future__ import annotations

import uuid

import redis
import sqlalchemy as sa

from store.calendar import (
    Attendance,
    AttendanceStatus,
    Visibility,
    delete_attendance,
    invalidate_calendar,
    write_attendance,
)
from store.keys import RedisKeys
from store.live_cache import touch_events
from store.live_events import publish_rsvp_change
from store.schema import event_attendance

_LOCK_ANSWER = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


def rsvp(
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    *,
    user_id: int,
    event_id: str,
    status: AttendanceStatus,
    visibility: Visibility,
    notes: str | None,
    impression_id: uuid.UUID | None = None,
) -> Attendance:
    """Store the user's answer (see `store.calendar.write_attendance`), then invalidate,
    touch and push; `UnknownUserError` / `UnknownEventError` before any side effect."""
    with engine.begin() as conn:
        before = locked_visibility(conn, user_id=user_id, event_id=event_id)
        stored = write_attendance(
            conn,
            user_id=user_id,
            event_id=event_id,
            status=status,
            visibility=visibility,
            notes=notes,
            impression_id=impression_id,
        )
    _after_commit(
        engine, redis_client, keys, user_id=user_id, event_id=event_id, before=before, after=stored
    )
    return stored


def cancel_rsvp(
    engine: sa.Engine, redis_client: redis.Redis, keys: RedisKeys, *, user_id: int, event_id: str
) -> bool:
    """Delete the user's answer, then invalidate, touch and push; False (and no side effect)
    when there was none, so a repeated DELETE is harmless."""
    with engine.begin() as conn:
        before = locked_visibility(conn, user_id=user_id, event_id=event_id)
        removed = delete_attendance(conn, user_id=user_id, event_id=event_id)
    if removed:
        _after_commit(
            engine,
            redis_client,
            keys,
            user_id=user_id,
            event_id=event_id,
            before=before,
            after=None,
        )
    return removed


def locked_visibility(conn: sa.Connection, *, user_id: int, event_id: str) -> str | None:
    """The visibility of the user's current answer (None: no answer), locked until the
    caller's transaction ends.

    The advisory lock serialises writers of the same answer even when there is no row to
    lock yet (two first answers at once); `FOR UPDATE` also waits for a writer that did not
    take it (a script, a migration) and then reads what it committed.
    """
    conn.execute(_LOCK_ANSWER, {"key": f"godo:attendance:{user_id}:{event_id}"})
    value = conn.execute(
        sa.select(event_attendance.c.visibility)
        .where(event_attendance.c.user_id == user_id, event_attendance.c.event_id == event_id)
        .with_for_update()
    ).scalar_one_or_none()
    return None if value is None else str(value)


def _after_commit(
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    *,
    user_id: int,
    event_id: str,
    before: str | None,
    after: Attendance | None,
) -> None:
    """The Redis side of a committed change, in the order readers rely on: the caller's own
    calendar first (their next read must show it), then the card, then friends' pushes."""
    invalidate_calendar(redis_client=redis_client, keys=keys, user_id=user_id)
    touch_events(redis_client, keys, [event_id])
    publish_rsvp_change(
        engine, redis_client, keys, actor_id=user_id, event_id=event_id, before=before, after=after
    )
