"""The notification log's one protocol (`store.notifications`), channel by channel, and the
candidate queries that feed it (`store.notification_candidates`); real Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import redis
import sqlalchemy as sa

from store import notifications as log
from store.keys import RedisKeys
from store.notification_candidates import (
    digest_candidates,
    friend_going_candidates,
    reminder_candidates,
)
from store.schema import (
    devices,
    event_attendance,
    friendships,
    notification_log,
    swipes,
    users,
)
from tests.integration.conftest import seed_upcoming_events

ANA, BEN, CAT = 1, 2, 3
TOKEN_A = "ExponentPushToken[ana]"
NOW = datetime.now(UTC).replace(microsecond=0)


def _row(engine: sa.Engine, key: str) -> sa.Row[tuple[str, int, datetime | None]]:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                notification_log.c.status,
                notification_log.c.attempts,
                notification_log.c.next_attempt_at,
            ).where(notification_log.c.dedupe_key == key)
        ).one()


def _users(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(users),
            [{"id": u, "display_name": n, "metro": "sf"} for u, n in ((ANA, "Ana"), (BEN, "Ben"))],
        )


def test_a_transient_failure_follows_its_channels_retry_rule(engine: sa.Engine) -> None:
    """Push backs off (15 min after the first attempt); email is due at the next run."""
    _users(engine)
    push = log.LogEntry("push:k", "event_reminder", ANA, TOKEN_A, channel="push")
    email = log.LogEntry("email:k", "weekly_digest", ANA, channel="email")
    assert log.claim(engine, [push, email], now=NOW) == {"push:k", "email:k"}
    assert log.claim(engine, [push, email], now=NOW) == set()  # held: nobody else sends
    assert log.done_keys(engine, ["push:k", "email:k"], now=NOW) == {"push:k", "email:k"}

    for key in ("push:k", "email:k"):
        outcome = log.record_attempt(
            engine, key, sent=False, now=NOW, detail="busy", retryable=True
        )
        assert outcome == "retried"
    assert _row(engine, "push:k") == ("pending", 1, NOW + log.RETRY_BASE_DELAY)
    assert _row(engine, "email:k") == ("pending", 1, NOW)
    assert log.claim(engine, [push, email], now=NOW + timedelta(minutes=1)) == {"email:k"}

    assert log.record_attempt(engine, "email:k", sent=False, now=NOW, detail="422") == "failed"
    assert log.claim(engine, [email], now=NOW + timedelta(days=1)) == set()  # final


def test_only_an_email_claim_left_by_a_crash_is_retaken_and_only_in_its_window(
    engine: sa.Engine,
) -> None:
    _users(engine)
    entries = [
        log.LogEntry("push:c", "event_reminder", ANA, TOKEN_A, channel="push"),
        log.LogEntry("email:c", "weekly_digest", ANA, channel="email"),
    ]
    assert log.claim(engine, entries) == {"push:c", "email:c"}
    after, until = log.EMAIL_RECLAIM_AFTER, log.EMAIL_RECLAIM_UNTIL
    with engine.connect() as conn:
        claimed_at = conn.execute(sa.select(sa.func.now())).scalar_one()
    assert log.claim(engine, entries, now=claimed_at + after / 2) == set()
    assert log.claim(engine, entries, now=claimed_at + until + after) == set()
    assert log.claim(engine, entries, now=claimed_at + after + timedelta(minutes=1)) == {"email:c"}


def test_candidates_name_each_device_and_respect_lead_time_and_privacy(
    engine: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    _users(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(users).values(id=CAT, display_name="Cat", metro="sf"))
        seed_upcoming_events(conn, ["ev-1", "ev-2"], NOW - timedelta(days=1) + timedelta(hours=1))
        conn.execute(
            sa.insert(devices).values(expo_push_token=TOKEN_A, user_id=ANA, platform="ios")
        )
        conn.execute(
            sa.insert(friendships),
            [
                {"user_id": a, "friend_id": b}
                for friend in (BEN, CAT)
                for a, b in ((ANA, friend), (friend, ANA))
            ],
        )
        conn.execute(
            sa.insert(event_attendance),
            [
                {"user_id": ANA, "event_id": "ev-1", "status": "going", "visibility": "friends"},
                {"user_id": ANA, "event_id": "ev-2", "status": "going", "visibility": "friends"},
                {"user_id": BEN, "event_id": "ev-2", "status": "going", "visibility": "friends"},
                {"user_id": CAT, "event_id": "ev-2", "status": "going", "visibility": "private"},
            ],
        )
        conn.execute(
            sa.insert(swipes).values(id=uuid.uuid4(), user_id=ANA, event_id="ev-2", action="like")
        )

    (reminder,) = reminder_candidates(engine, NOW)  # ev-1 in 1 h; ev-2 beyond the 2 h lead
    assert reminder.entry.dedupe_key == f"push:event_reminder:{ANA}:ev-1:{TOKEN_A}"
    assert reminder.token == TOKEN_A and reminder.data == {
        "type": "event_reminder",
        "event_id": "ev-1",
    }
    (going,) = friend_going_candidates(engine, NOW)  # Ben shares it; Cat's answer is private
    assert going.entry.dedupe_key == f"push:friend_going:{ANA}:{BEN}:ev-2:{TOKEN_A}"
    assert going.title == "Ben is going"
    assert digest_candidates(engine, redis_client, redis_keys, NOW) == []  # nothing published
