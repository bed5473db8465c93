"""Attendance and calendars: who goes where, who may see it, and the iCalendar feed.

Postgres is the truth. A user's calendar pages are cached in Redis for a few minutes under a
per-user version number that is part of every cache key: any change to the user's attendance
INCRs the version, so every cached page of that user becomes unreachable at once, without
scanning keys (the stale entries expire on their own). Redis is best effort everywhere: when
it fails, calendars are read from Postgres and nothing is cached.

Visibility is decided in SQL from the viewer's tier (`owner`, `friend`, `public`), so rows a
viewer may not see, and the owner's private notes, never leave the database for them.

Redis keys (with the default prefix `godo`; to move into `store.keys.RedisKeys`):

- `godo:calendar:user:{user_id}:version` -> integer bumped on every attendance change
- `godo:calendar:user:{user_id}:v{version}:{tier}:{query digest}` -> JSON page, 5 min TTL
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import redis
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from store.errors import UnknownUserError
from store.keys import RedisKeys
from store.schema import calendar_tokens, event_attendance, events, friendships, users, venues

log = logging.getLogger(__name__)

AttendanceStatus = Literal["going", "interested", "not_going", "went"]
Visibility = Literal["public", "friends", "private"]
Tier = Literal["owner", "friend", "public"]
ATTENDANCE_STATUSES: tuple[str, ...] = get_args(AttendanceStatus)
CALENDAR_CACHE_TTL_SECONDS = 300
# Longer than the page TTL, so a version key never expires (and restarts at 0) while a page
# cached under an older number could still be read.
CALENDAR_VERSION_TTL_SECONDS = 86_400
# What each viewer may see: private entries only ever reach their owner.
VISIBLE_TO: dict[Tier, tuple[Visibility, ...]] = {
    "owner": ("public", "friends", "private"),
    "friend": ("public", "friends"),
    "public": ("public",),
}
# The feed lists what a phone should show: plans and past attendance, not refusals.
ICS_STATUSES = ("going", "interested", "went")
ICS_LOOKBACK = timedelta(days=365)
ICS_MAX_EVENTS = 1000
# Events without an end still need one: calendars draw zero-length events as invisible lines.
ICS_DEFAULT_DURATION = timedelta(hours=2)
TOKEN_BYTES = 32


class UnknownEventError(LookupError):
    """The event has no row in `events`."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"no event {event_id!r}")
        self.event_id = event_id


class InvalidCursorError(ValueError):
    """A cursor this module did not issue (or one that was tampered with)."""


@dataclass(frozen=True)
class Attendance:
    """One user's stored answer for one event."""

    event_id: str
    status: str
    visibility: str
    notes: str | None
    updated_at: datetime


@dataclass(frozen=True)
class CalendarQuery:
    """One page request: events starting in [start_from, start_before), after `after`.

    `after` is the (start_utc, event_id) of the last entry of the previous page.
    """

    start_from: datetime
    start_before: datetime | None
    statuses: tuple[str, ...]
    limit: int
    after: tuple[datetime, str] | None = None

    def digest(self) -> str:
        """A short, stable name for this query, for cache keys (raw values could be long)."""
        canonical = json.dumps(
            [
                self.start_from.astimezone(UTC).isoformat(),
                self.start_before.astimezone(UTC).isoformat() if self.start_before else None,
                sorted(self.statuses),
                self.limit,
                [self.after[0].astimezone(UTC).isoformat(), self.after[1]] if self.after else None,
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CalendarEntry:
    """An event on a calendar, as the viewer may see it (`notes` is None for non-owners)."""

    event_id: str
    event_name: str
    event_status: str
    status: str
    visibility: str
    notes: str | None
    start_utc: datetime
    end_utc: datetime | None
    start_local: str
    timezone: str
    venue_name: str | None
    updated_at: datetime
    # The event's schedule revision (start, end, cancellation) and when it last changed:
    # the iCalendar feed's SEQUENCE and LAST-MODIFIED. Defaults read pages cached before.
    schedule_revision: int = 0
    schedule_changed_at: datetime | None = None


@dataclass(frozen=True)
class CalendarPage:
    entries: list[CalendarEntry]
    next_after: tuple[datetime, str] | None


# --- attendance ----------------------------------------------------------------------------

_LOCK_USER = sa.text("SELECT id FROM users WHERE id = :user_id FOR KEY SHARE")
_LOCK_EVENT = sa.text("SELECT id FROM events WHERE id = :event_id FOR KEY SHARE")


def set_attendance(
    engine: sa.Engine,
    *,
    user_id: int,
    event_id: str,
    status: AttendanceStatus,
    visibility: Visibility,
    notes: str | None,
    impression_id: uuid.UUID | None = None,
) -> Attendance:
    """Insert or replace the user's row for the event, in a transaction of its own.

    The write alone: the API goes through `store.rsvp.rsvp`, which also drops the caller's
    cached calendars and tells friends (see `write_attendance` for the rules of the row).
    """
    with engine.begin() as conn:
        return write_attendance(
            conn,
            user_id=user_id,
            event_id=event_id,
            status=status,
            visibility=visibility,
            notes=notes,
            impression_id=impression_id,
        )


def write_attendance(
    conn: sa.Connection,
    *,
    user_id: int,
    event_id: str,
    status: AttendanceStatus,
    visibility: Visibility,
    notes: str | None,
    impression_id: uuid.UUID | None = None,
) -> Attendance:
    """Insert or replace the user's row for the event in the caller's transaction (a PUT:
    every field is overwritten, except the impression: a verified `impression_id` is stored,
    and a PUT without one keeps the row's, since an answer changed from the calendar still
    came from that card).

    The user and event are checked and locked against deletion in the same transaction, so a
    missing one is a clear `UnknownUserError`/`UnknownEventError`, never a foreign-key error.
    """
    if conn.execute(_LOCK_USER, {"user_id": user_id}).first() is None:
        raise UnknownUserError(user_id)
    if conn.execute(_LOCK_EVENT, {"event_id": event_id}).first() is None:
        raise UnknownEventError(event_id)
    values = insert(event_attendance).values(
        user_id=user_id,
        event_id=event_id,
        status=status,
        visibility=visibility,
        notes=notes,
        impression_id=impression_id,
    )
    statement = values.on_conflict_do_update(
        index_elements=[event_attendance.c.user_id, event_attendance.c.event_id],
        set_={
            "status": values.excluded.status,
            "visibility": values.excluded.visibility,
            "notes": values.excluded.notes,
            "impression_id": sa.func.coalesce(
                values.excluded.impression_id, event_attendance.c.impression_id
            ),
            "updated_at": sa.func.now(),
        },
    ).returning(
        event_attendance.c.event_id,
        event_attendance.c.status,
        event_attendance.c.visibility,
        event_attendance.c.notes,
        event_attendance.c.updated_at,
    )
    row = conn.execute(statement).one()
    return Attendance(**row._mapping)


def delete_attendance(conn: sa.Connection, *, user_id: int, event_id: str) -> bool:
    """Delete the user's row for the event in the caller's transaction; False when there was
    none (not an error). The API goes through `store.rsvp.cancel_rsvp`."""
    result = conn.execute(
        sa.delete(event_attendance).where(
            event_attendance.c.user_id == user_id, event_attendance.c.event_id == event_id
        )
    )
    return result.rowcount > 0


# --- reading calendars ---------------------------------------------------------------------


def viewer_tier(engine: sa.Engine, *, owner_id: int, viewer_id: int) -> Tier:
    """How much of `owner_id`'s calendar `viewer_id` may see; `UnknownUserError` if no owner.

    Friends are mutual: `friendships` stores one row per direction, and both must exist, so a
    one-sided row (however it got there) never widens what a viewer sees.
    """
    f_owner, f_viewer = friendships.alias("f_owner"), friendships.alias("f_viewer")
    mutual = (
        sa.select(sa.literal(1))
        .select_from(f_owner)
        .join(
            f_viewer,
            sa.and_(
                f_viewer.c.user_id == f_owner.c.friend_id,
                f_viewer.c.friend_id == f_owner.c.user_id,
            ),
        )
        .where(f_owner.c.user_id == owner_id, f_owner.c.friend_id == viewer_id)
        .exists()
    )
    statement = sa.select(mutual.label("is_friend")).where(users.c.id == owner_id)
    with engine.connect() as conn:
        row = conn.execute(statement).first()
    if row is None:
        raise UnknownUserError(owner_id)
    if owner_id == viewer_id:
        return "owner"
    return "friend" if row.is_friend else "public"


def read_calendar(
    engine: sa.Engine, *, owner_id: int, query: CalendarQuery, tier: Tier
) -> CalendarPage:
    """One page of `owner_id`'s calendar as a viewer of `tier` may see it, from Postgres.

    One query: the owner's rows through the primary key (user_id, event_id), events and
    venues joined by their primary keys, a keyset condition on (start_utc, id), and one row
    more than the page to know whether another page follows.
    """
    notes = event_attendance.c.notes if tier == "owner" else sa.null()
    statement = (
        sa.select(
            events.c.id.label("event_id"),
            events.c.name.label("event_name"),
            events.c.status.label("event_status"),
            event_attendance.c.status,
            event_attendance.c.visibility,
            notes.label("notes"),
            events.c.start_utc,
            events.c.end_utc,
            events.c.timezone,
            venues.c.name.label("venue_name"),
            event_attendance.c.updated_at,
            events.c.schedule_revision,
            events.c.schedule_changed_at,
        )
        .select_from(
            event_attendance.join(events, events.c.id == event_attendance.c.event_id).outerjoin(
                venues, venues.c.id == events.c.venue_id
            )
        )
        .where(
            event_attendance.c.user_id == owner_id,
            event_attendance.c.visibility.in_(VISIBLE_TO[tier]),
            events.c.start_utc >= query.start_from,
        )
        .order_by(events.c.start_utc, events.c.id)
        .limit(query.limit + 1)
    )
    if query.start_before is not None:
        statement = statement.where(events.c.start_utc < query.start_before)
    if query.statuses:
        statement = statement.where(event_attendance.c.status.in_(query.statuses))
    if query.after is not None:
        after_start, after_id = query.after
        statement = statement.where(
            sa.tuple_(events.c.start_utc, events.c.id)
            > sa.tuple_(
                sa.literal(after_start, type_=sa.DateTime(timezone=True)), sa.literal(after_id)
            )
        )
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    entries = [_entry(row._mapping) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    next_after = (entries[-1].start_utc, entries[-1].event_id) if more and entries else None
    return CalendarPage(entries=entries, next_after=next_after)


def _entry(row: Any) -> CalendarEntry:
    zone_name = row["timezone"] or "UTC"
    try:
        zone: ZoneInfo = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        # A bad zone from a source should not break a calendar: show UTC and say so.
        zone_name, zone = "UTC", ZoneInfo("UTC")
    start_utc: datetime = row["start_utc"].astimezone(UTC)
    end_utc: datetime | None = row["end_utc"].astimezone(UTC) if row["end_utc"] else None
    return CalendarEntry(
        event_id=row["event_id"],
        event_name=row["event_name"],
        event_status=row["event_status"],
        status=row["status"],
        visibility=row["visibility"],
        notes=row["notes"],
        start_utc=start_utc,
        end_utc=end_utc,
        start_local=start_utc.astimezone(zone).isoformat(),
        timezone=zone_name,
        venue_name=row["venue_name"],
        updated_at=row["updated_at"],
        schedule_revision=row["schedule_revision"],
        schedule_changed_at=row["schedule_changed_at"],
    )


# --- cursors -------------------------------------------------------------------------------


def encode_cursor(after: tuple[datetime, str]) -> str:
    """URL-safe base64 of the last (start_utc, event_id) of a page; clients treat it as opaque."""
    raw = json.dumps({"t": after[0].astimezone(UTC).isoformat(), "e": after[1]})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime, str]:
    """The position in `value`, or `InvalidCursorError`."""
    try:
        padded = value + "=" * (-len(value) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        start, event_id = datetime.fromisoformat(data["t"]), data["e"]
        if not isinstance(event_id, str) or not event_id or start.tzinfo is None:
            raise ValueError("wrong field types")
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidCursorError(str(error)) from error
    return start, event_id


# --- cache ---------------------------------------------------------------------------------


def cached_calendar(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    owner_id: int,
    query: CalendarQuery,
    tier: Tier,
) -> tuple[CalendarPage, bool]:
    """The page from Redis when cached (True), else from Postgres, cached for next time.

    The version is read before Postgres: a change committed meanwhile bumps it, so a page
    read before the change is stored under a number no reader asks for any more.
    """
    key: str | None = None
    try:
        version = int(redis_client.get(keys.calendar_version(owner_id)) or 0)
        key = keys.calendar_page(owner_id, version, tier, query.digest())
        cached = redis_client.get(key)
        if cached is not None:
            return _page_from_json(cached), True
    except redis.RedisError:
        log.warning("redis unavailable: calendar of user %s read from postgres", owner_id)
        key = None
    page = read_calendar(engine, owner_id=owner_id, query=query, tier=tier)
    if key is not None:
        try:
            redis_client.set(key, _page_to_json(page), ex=CALENDAR_CACHE_TTL_SECONDS)
        except redis.RedisError:
            log.warning("redis unavailable: calendar of user %s not cached", owner_id)
    return page, False


def invalidate_calendar(*, redis_client: redis.Redis, keys: RedisKeys, user_id: int) -> bool:
    """Make every cached page of the user unreachable; False (logged) when Redis failed.

    Called after the change is committed. On failure, pages cached before the change may be
    served until they expire (`CALENDAR_CACHE_TTL_SECONDS`).
    """
    key = keys.calendar_version(user_id)
    try:
        pipe = redis_client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, CALENDAR_VERSION_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        log.warning("redis unavailable: calendar cache of user %s may be stale", user_id)
        return False
    return True


def _page_to_json(page: CalendarPage) -> str:
    def encode(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    return json.dumps(
        {
            "entries": [{k: encode(v) for k, v in asdict(e).items()} for e in page.entries],
            "next_after": [encode(v) for v in page.next_after] if page.next_after else None,
        }
    )


_DATETIME_FIELDS = ("start_utc", "end_utc", "updated_at", "schedule_changed_at")


def _page_from_json(raw: bytes | str) -> CalendarPage:
    data = json.loads(raw)
    entries = []
    for item in data["entries"]:
        for name in _DATETIME_FIELDS:
            if item.get(name) is not None:
                item[name] = datetime.fromisoformat(item[name])
        entries.append(CalendarEntry(**item))
    after = data["next_after"]
    next_after = (datetime.fromisoformat(after[0]), after[1]) if after else None
    return CalendarPage(entries=entries, next_after=next_after)


# --- iCalendar feed ------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_calendar_token(engine: sa.Engine, user_id: int) -> str:
    """A new secret for the user's feed, replacing any old one; only its hash is stored."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with engine.begin() as conn:
        if conn.execute(_LOCK_USER, {"user_id": user_id}).first() is None:
            raise UnknownUserError(user_id)
        statement = insert(calendar_tokens).values(user_id=user_id, token_hash=hash_token(token))
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[calendar_tokens.c.user_id],
                set_={"token_hash": statement.excluded.token_hash, "created_at": sa.func.now()},
            )
        )
    return token


def revoke_calendar_token(engine: sa.Engine, user_id: int) -> bool:
    """Delete the user's token; False when there was none."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.delete(calendar_tokens).where(calendar_tokens.c.user_id == user_id)
        )
    return result.rowcount > 0


def user_for_token(engine: sa.Engine, token: str) -> int | None:
    """The user whose live token this is, or None.

    Looked up by hash through the unique index: timing reveals nothing about the secret,
    since an attacker cannot choose hashes that share a prefix with a real one.
    """
    if not token:
        return None
    with engine.connect() as conn:
        user_id = conn.execute(
            sa.select(calendar_tokens.c.user_id).where(
                calendar_tokens.c.token_hash == hash_token(token)
            )
        ).scalar_one_or_none()
    return user_id


def calendar_ics(engine: sa.Engine, user_id: int, *, now: datetime | None = None) -> bytes:
    """The user's iCalendar feed: a VEVENT per going/interested/went entry of the last year on.

    Each UID is stable per (user, event), so a phone updates an event in place when its time
    or the user's answer changes, and drops it when the answer is removed.
    """
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        name = conn.execute(
            sa.select(users.c.display_name).where(users.c.id == user_id)
        ).scalar_one_or_none()
    page = read_calendar(
        engine,
        owner_id=user_id,
        query=CalendarQuery(
            start_from=now - ICS_LOOKBACK,
            start_before=None,
            statuses=ICS_STATUSES,
            limit=ICS_MAX_EVENTS,
        ),
        tier="owner",
    )
    return build_ics(user_id, f"Godo: {name}" if name else "Godo", page.entries)


def build_ics(user_id: int, calendar_name: str, entries: Sequence[CalendarEntry]) -> bytes:
    """A VCALENDAR of `entries`, times in UTC so no VTIMEZONE blocks are needed.

    RFC 5545 as phones read it:

    - Every TEXT value is escaped (backslash, comma, semicolon, newline; 3.3.11), including
      `X-WR-CALNAME`, which the library leaves raw unless told it is TEXT: a display name
      with a comma was cut there by readers, and one with a newline could not be written.
    - `STATUS:CANCELLED` for an event cancelled upstream (whatever the user answered), else
      TENTATIVE for "interested" and CONFIRMED otherwise.
    - `SEQUENCE` is the event's schedule revision (bumped by the catalogue upsert when its
      start, end or cancellation changes, never lowered) and `LAST-MODIFIED` / `DTSTAMP` the
      later of that change and the user's answer: a phone that already has the UID replaces
      its copy only when one of them moves.
    """
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Godo//Calendar feed//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", icalendar.vText(calendar_name))
    for entry in entries:
        modified = max(
            t.astimezone(UTC) for t in (entry.updated_at, entry.schedule_changed_at) if t
        )
        event = icalendar.Event()
        event.add("uid", f"{user_id}-{entry.event_id}@godo")
        event.add("dtstamp", modified)
        event.add("last-modified", modified)
        event.add("sequence", entry.schedule_revision)
        event.add("dtstart", entry.start_utc)
        event.add("dtend", entry.end_utc or entry.start_utc + ICS_DEFAULT_DURATION)
        event.add("summary", entry.event_name)
        if entry.venue_name:
            event.add("location", entry.venue_name)
        event.add("status", _ics_status(entry))
        calendar.add_component(event)
    return calendar.to_ical()


def _ics_status(entry: CalendarEntry) -> str:
    if entry.event_status == "canceled":
        return "CANCELLED"
    return "TENTATIVE" if entry.status == "interested" else "CONFIRMED"
