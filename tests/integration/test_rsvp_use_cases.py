"""`store.rsvp`: an answer's read, write and Redis side effects as one use case.

Real Postgres and Redis. The point of these tests is the order and the transaction: the
previous visibility is read under the write's own lock (a concurrent change cannot slip in
between), and nothing reaches Redis unless the write committed.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import redis
import sqlalchemy as sa

from store.calendar import UnknownEventError, set_attendance
from store.keys import RedisKeys
from store.rsvp import cancel_rsvp, rsvp
from store.schema import event_attendance, friendships, users
from tests.integration.conftest import seed_upcoming_events

ACTOR, FRIEND = 1, 2
EVENT = "ev-1"
LOCK_WAIT_SECONDS = 0.5


@pytest.fixture
def world(engine: sa.Engine) -> sa.Engine:
    """ACTOR and FRIEND are mutual friends; one upcoming event."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(users),
            [
                {"id": ACTOR, "display_name": "Actor", "metro": "sf"},
                {"id": FRIEND, "display_name": "Friend", "metro": "sf"},
            ],
        )
        conn.execute(
            sa.insert(friendships),
            [{"user_id": ACTOR, "friend_id": FRIEND}, {"user_id": FRIEND, "friend_id": ACTOR}],
        )
        seed_upcoming_events(conn, [EVENT], datetime.now(UTC))
    return engine


def _redis_trace(client: redis.Redis, keys: RedisKeys) -> tuple[bytes | None, int, int]:
    """(calendar version of ACTOR, card change log length, FRIEND's live stream length)."""
    return (
        client.get(keys.calendar_version(ACTOR)),
        client.xlen(keys.card_changes()),
        client.xlen(keys.live_user_stream(FRIEND)),
    )


def _friend_events(client: redis.Redis, keys: RedisKeys) -> list[str]:
    entries = client.xrange(keys.live_user_stream(FRIEND))
    return [fields[b"type"].decode() for _, fields in entries]


def test_an_rsvp_writes_then_invalidates_touches_and_tells_friends(
    world: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    stored = rsvp(
        world,
        redis_client,
        redis_keys,
        user_id=ACTOR,
        event_id=EVENT,
        status="going",
        visibility="friends",
        notes="bring cash",
    )
    assert (stored.status, stored.visibility, stored.notes) == ("going", "friends", "bring cash")
    assert _redis_trace(redis_client, redis_keys) == (b"1", 1, 1)
    assert _friend_events(redis_client, redis_keys) == ["friend_rsvp"]

    assert cancel_rsvp(world, redis_client, redis_keys, user_id=ACTOR, event_id=EVENT)
    assert _redis_trace(redis_client, redis_keys) == (b"2", 2, 2)
    assert _friend_events(redis_client, redis_keys) == ["friend_rsvp", "friend_rsvp_removed"]


def test_a_refused_or_empty_write_leaves_no_trace_in_redis(
    world: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    with pytest.raises(UnknownEventError):
        rsvp(
            world,
            redis_client,
            redis_keys,
            user_id=ACTOR,
            event_id="no-such-event",
            status="going",
            visibility="public",
            notes=None,
        )
    assert not cancel_rsvp(world, redis_client, redis_keys, user_id=ACTOR, event_id=EVENT)
    assert _redis_trace(redis_client, redis_keys) == (None, 0, 0)


@pytest.mark.parametrize("action", ["rsvp", "cancel"])
def test_the_previous_visibility_is_read_under_the_writes_lock(
    world: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys, action: str
) -> None:
    """A concurrent writer switches the answer to private while the use case runs: friends
    must not be told that an answer they could no longer see was removed.

    Read outside the write's transaction, the use case would see `friends` (the committed
    value at that moment), then write over `private` and send `friend_rsvp_removed`.
    """
    set_attendance(
        world, user_id=ACTOR, event_id=EVENT, status="going", visibility="friends", notes=None
    )
    done = threading.Event()

    def write() -> None:
        if action == "rsvp":
            rsvp(
                world,
                redis_client,
                redis_keys,
                user_id=ACTOR,
                event_id=EVENT,
                status="interested",
                visibility="private",
                notes=None,
            )
        else:
            cancel_rsvp(world, redis_client, redis_keys, user_id=ACTOR, event_id=EVENT)
        done.set()

    with world.connect() as other:
        other.execute(
            sa.update(event_attendance)
            .where(event_attendance.c.user_id == ACTOR, event_attendance.c.event_id == EVENT)
            .values(visibility="private")
        )
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(LOCK_WAIT_SECONDS)
        assert not done.is_set(), "the use case must wait for the concurrent writer"
        other.commit()
    writer.join(timeout=10)
    assert done.is_set()
    assert _friend_events(redis_client, redis_keys) == []  # private before and after: silence
    calendar_version, card_changes, _ = _redis_trace(redis_client, redis_keys)
    assert (calendar_version, card_changes) == (b"1", 1)  # the write itself still counted
