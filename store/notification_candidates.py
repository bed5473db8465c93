"""Who should hear what now: the candidate queries of the notification pipelines.

Each function answers one asset's question from Postgres (and the published feed), as the
messages to send and the log entries that guard them (`store.notifications`); the assets in
`pipelines.assets.push` and `pipelines.assets.email` only send what these return. A
candidate that was sent before is still returned: the log's claim is what makes a re-run
send nothing, so these queries stay simple and the guard stays in one place.

- `reminder_candidates`: `push:event_reminder:<user>:<event>:<device>`, a `going` event that
  starts within the user's lead time;
- `friend_going_candidates`: `push:friend_going:<user>:<friend>:<event>:<device>`, a mutual
  friend going (public or friends RSVP, never private) to an event the user liked;
- `digest_candidates`: `push:weekly_digest:<user>:<ISO year-week>:<device>`, the top of
  every device owner's published feed (an empty feed: none);
- `digest_subscribers`: the users the email digest (`email:weekly_digest:<user>:<week>`) is
  for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import redis
import sqlalchemy as sa

from store.feed import read_feed
from store.keys import RedisKeys
from store.notifications import DEFAULT_REMINDER_LEAD_MINUTES, LogEntry
from store.schema import (
    devices,
    event_attendance,
    events,
    friendships,
    notification_preferences,
    swipes,
    users,
)

DIGEST_ITEMS = 3


@dataclass(frozen=True)
class PushCandidate:
    """One notification to one device (`entry.expo_push_token`), and its user's quiet hours."""

    entry: LogEntry
    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)
    quiet_start: time | None = None
    quiet_end: time | None = None
    timezone: str | None = None

    @property
    def token(self) -> str:
        assert self.entry.expo_push_token is not None  # every push entry names its device
        return self.entry.expo_push_token


@dataclass(frozen=True)
class Subscriber:
    """A user who asked for the weekly digest by email, and whether they unsubscribed since."""

    user_id: int
    display_name: str
    email: str
    unsubscribed_at: datetime | None


def reminder_candidates(engine: sa.Engine, now: datetime) -> list[PushCandidate]:
    """Going attendances whose event starts within the user's lead time, per device."""
    lead = sa.func.coalesce(
        notification_preferences.c.reminder_lead_minutes, DEFAULT_REMINDER_LEAD_MINUTES
    )
    statement = (
        sa.select(
            event_attendance.c.user_id,
            events.c.id,
            events.c.name,
            events.c.start_utc,
            events.c.timezone,
            devices.c.expo_push_token,
            notification_preferences.c.quiet_start,
            notification_preferences.c.quiet_end,
            notification_preferences.c.timezone.label("user_timezone"),
        )
        .select_from(event_attendance)
        .join(events, events.c.id == event_attendance.c.event_id)
        .join(devices, devices.c.user_id == event_attendance.c.user_id)
        .outerjoin(
            notification_preferences,
            notification_preferences.c.user_id == event_attendance.c.user_id,
        )
        .where(
            event_attendance.c.status == "going",
            events.c.is_active,
            events.c.start_utc > now,
            events.c.start_utc <= sa.literal(now) + sa.func.make_interval(0, 0, 0, 0, 0, lead),
        )
        .order_by(event_attendance.c.user_id, events.c.start_utc, devices.c.expo_push_token)
    )
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    return [
        PushCandidate(
            entry=LogEntry(
                dedupe_key=f"push:event_reminder:{r.user_id}:{r.id}:{r.expo_push_token}",
                kind="event_reminder",
                user_id=r.user_id,
                expo_push_token=r.expo_push_token,
            ),
            title=r.name,
            body=f"Starts {_local(r.start_utc, r.timezone)}. Have fun!",
            data={"type": "event_reminder", "event_id": r.id},
            quiet_start=r.quiet_start,
            quiet_end=r.quiet_end,
            timezone=r.user_timezone,
        )
        for r in rows
    ]


def friend_going_candidates(engine: sa.Engine, now: datetime) -> list[PushCandidate]:
    """(user, friend, event): the user liked the event, a mutual friend RSVP'd `going` with
    visibility public or friends (never private), the event is still ahead; per device."""
    mine, theirs = friendships.alias("mine"), friendships.alias("theirs")
    friend = users.alias("friend")
    liked = (
        sa.select(swipes.c.user_id, swipes.c.event_id)
        .where(swipes.c.action.in_(("like", "superlike")))
        .distinct()
        .subquery("liked")
    )
    statement = (
        sa.select(
            liked.c.user_id,
            event_attendance.c.user_id.label("friend_id"),
            friend.c.display_name,
            events.c.id,
            events.c.name,
            events.c.start_utc,
            events.c.timezone,
            devices.c.expo_push_token,
            notification_preferences.c.quiet_start,
            notification_preferences.c.quiet_end,
            notification_preferences.c.timezone.label("user_timezone"),
        )
        .select_from(liked)
        .join(
            event_attendance,
            sa.and_(
                event_attendance.c.event_id == liked.c.event_id,
                event_attendance.c.user_id != liked.c.user_id,
                event_attendance.c.status == "going",
                event_attendance.c.visibility.in_(("public", "friends")),
            ),
        )
        .join(
            mine,
            sa.and_(
                mine.c.user_id == liked.c.user_id,
                mine.c.friend_id == event_attendance.c.user_id,
            ),
        )
        .join(
            theirs,
            sa.and_(
                theirs.c.user_id == event_attendance.c.user_id,
                theirs.c.friend_id == liked.c.user_id,
            ),
        )
        .join(friend, friend.c.id == event_attendance.c.user_id)
        .join(events, events.c.id == liked.c.event_id)
        .join(devices, devices.c.user_id == liked.c.user_id)
        .outerjoin(notification_preferences, notification_preferences.c.user_id == liked.c.user_id)
        .where(events.c.is_active, events.c.start_utc > now)
        .order_by(liked.c.user_id, events.c.id, event_attendance.c.user_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    return [
        PushCandidate(
            entry=LogEntry(
                dedupe_key=(
                    f"push:friend_going:{r.user_id}:{r.friend_id}:{r.id}:{r.expo_push_token}"
                ),
                kind="friend_going",
                user_id=r.user_id,
                expo_push_token=r.expo_push_token,
            ),
            title=f"{r.display_name} is going",
            body=f"{r.display_name} is going to {r.name} ({_local(r.start_utc, r.timezone)}),"
            " an event you liked.",
            data={"type": "friend_going", "event_id": r.id, "friend_id": r.friend_id},
            quiet_start=r.quiet_start,
            quiet_end=r.quiet_end,
            timezone=r.user_timezone,
        )
        for r in rows
    ]


def digest_candidates(
    engine: sa.Engine, redis_client: redis.Redis, keys: RedisKeys, now: datetime
) -> list[PushCandidate]:
    """Top items of each device owner's published feed; users with an empty feed get none."""
    year, week, _ = now.isocalendar()
    statement = (
        sa.select(
            devices.c.user_id,
            devices.c.expo_push_token,
            notification_preferences.c.quiet_start,
            notification_preferences.c.quiet_end,
            notification_preferences.c.timezone,
        )
        .outerjoin(
            notification_preferences, notification_preferences.c.user_id == devices.c.user_id
        )
        .order_by(devices.c.user_id, devices.c.expo_push_token)
    )
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    feeds: dict[int, list[str]] = {}
    candidates = []
    for r in rows:
        if r.user_id not in feeds:
            feed = read_feed(
                engine=engine,
                redis_client=redis_client,
                keys=keys,
                user_id=r.user_id,
                limit=DIGEST_ITEMS,
                now=now,
            )
            feeds[r.user_id] = [item.card.name for item in feed.items[:DIGEST_ITEMS]]
        names = feeds[r.user_id]
        if not names:
            continue
        candidates.append(
            PushCandidate(
                entry=LogEntry(
                    dedupe_key=(
                        f"push:weekly_digest:{r.user_id}:{year}-W{week:02d}:{r.expo_push_token}"
                    ),
                    kind="weekly_digest",
                    user_id=r.user_id,
                    expo_push_token=r.expo_push_token,
                ),
                title="New events near you",
                body=", ".join(names),
                data={"type": "weekly_digest", "week": f"{year}-W{week:02d}"},
                quiet_start=r.quiet_start,
                quiet_end=r.quiet_end,
                timezone=r.timezone,
            )
        )
    return candidates


def digest_subscribers(engine: sa.Engine) -> list[Subscriber]:
    """Everyone whose preferences ask for the digest email and give an address, by user id
    (the unsubscribed too: the asset counts them as skipped)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                users.c.id,
                users.c.display_name,
                notification_preferences.c.email,
                notification_preferences.c.email_unsubscribed_at,
            )
            .join(users, users.c.id == notification_preferences.c.user_id)
            .where(
                notification_preferences.c.weekly_digest_email,
                notification_preferences.c.email.is_not(None),
            )
            .order_by(users.c.id)
        ).all()
    return [Subscriber(r[0], r[1], r[2], r[3]) for r in rows]


def _local(start_utc: datetime, zone: str | None) -> str:
    try:
        tz = ZoneInfo(zone) if zone else ZoneInfo("UTC")
    except (KeyError, ValueError):
        tz = ZoneInfo("UTC")
    local = start_utc.astimezone(tz)
    return f"{local:%a %H:%M} {local.tzname()}"
