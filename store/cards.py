"""Event cards: the few event fields a feed item shows, read from the app database."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
import sqlalchemy as sa

from features.geo import haversine_km
from store.db import read_frame
from store.friends import Friend

log = logging.getLogger(__name__)

CARD_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Utf8(),
    "name": pl.Utf8(),
    "category": pl.Utf8(),
    "start_utc": pl.Datetime("us", "UTC"),
    "end_utc": pl.Datetime("us", "UTC"),
    "venue_name": pl.Utf8(),
    "metro": pl.Utf8(),
    "is_free": pl.Boolean(),
    "price_min_cents": pl.Int64(),
    "is_active": pl.Boolean(),
}

_CARD_SELECT = """
SELECT e.id AS event_id, e.name, e.category, e.start_utc, e.end_utc, v.name AS venue_name,
       e.metro, e.is_free, e.price_min_cents, e.is_active
FROM events AS e LEFT JOIN venues AS v ON v.id = e.venue_id
"""


def load_cards(conn: sa.Connection, event_ids: Sequence[str]) -> pl.DataFrame:
    """Cards for `event_ids` (unknown ids are simply absent)."""
    if not event_ids:
        return pl.DataFrame(schema=CARD_SCHEMA)
    quoted = ", ".join("'" + event_id.replace("'", "''") + "'" for event_id in set(event_ids))
    return read_frame(conn, f"{_CARD_SELECT} WHERE e.id IN ({quoted})", CARD_SCHEMA)


# --- live cards: what the feed and event pages show, read at request time ----------------

# Attendance visible to other users; "private" RSVPs are never counted or listed for anyone
# but their owner.
VISIBLE_TO_OTHERS = ("public", "friends")
CANCELLED_STATUSES = frozenset({"canceled", "cancelled"})

# One statement for a whole page: the card, its live status and who is going. `going` (every
# visibility) decides fullness, because a private RSVP still takes a seat; `visible_goers`
# (public and friends-only RSVPs) is all any other user may learn from, so a private RSVP
# never reaches a count another user sees.
_LIVE_CARDS = sa.text(
    """
SELECT e.id AS event_id, e.name, e.category, e.metro, e.start_utc, e.end_utc, e.timezone,
       e.is_free, e.price_min_cents, e.price_max_cents, e.currency, e.capacity, e.status,
       e.is_active, v.name AS venue_name, v.address AS venue_address,
       v.latitude AS venue_latitude, v.longitude AS venue_longitude,
       a.going, a.visible_goers
FROM events AS e
LEFT JOIN venues AS v ON v.id = e.venue_id
CROSS JOIN LATERAL (
    SELECT count(*) AS going,
           coalesce(
               array_agg(ea.user_id) FILTER (WHERE ea.visibility IN ('public', 'friends')),
               '{}'
           ) AS visible_goers
    FROM event_attendance AS ea
    WHERE ea.event_id = e.id AND ea.status = 'going'
) AS a
WHERE e.id = ANY(:event_ids)
"""
)

# A friend is a mutual friendship (a row in each direction), so a one-sided row never
# reveals anyone's plans.
_MUTUAL_FRIENDS = sa.text(
    """
SELECT mine.friend_id
FROM friendships AS mine
JOIN friendships AS theirs ON theirs.user_id = mine.friend_id AND theirs.friend_id = mine.user_id
WHERE mine.user_id = :user_id
"""
)
_MUTUAL_FRIENDS_OF_MANY = sa.text(
    """
SELECT mine.user_id, mine.friend_id
FROM friendships AS mine
JOIN friendships AS theirs ON theirs.user_id = mine.friend_id AND theirs.friend_id = mine.user_id
WHERE mine.user_id = ANY(:user_ids)
"""
)

_FRIENDS_GOING = sa.text(
    """
SELECT u.id AS user_id, u.display_name, mine.created_at AS since
FROM event_attendance AS ea
JOIN users AS u ON u.id = ea.user_id
JOIN friendships AS mine ON mine.user_id = :viewer_id AND mine.friend_id = ea.user_id
JOIN friendships AS theirs ON theirs.user_id = ea.user_id AND theirs.friend_id = :viewer_id
WHERE ea.event_id = :event_id AND ea.status = 'going'
  AND ea.visibility IN ('public', 'friends')
ORDER BY u.display_name, u.id
"""
)


@dataclass(frozen=True)
class Venue:
    """Where an event takes place; coordinates are null when the venue was never geocoded."""

    name: str
    address: str | None
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True)
class Price:
    """What a ticket costs; `currency` is null for free events and unknown prices."""

    is_free: bool
    price_min_cents: int | None
    price_max_cents: int | None
    currency: str | None


@dataclass(frozen=True)
class EventCard:
    """An event as the app shows it, the same for every viewer.

    Read live rather than from the published run, so a cancellation, a sell-out or a friend's
    RSVP shows up on the next request instead of the next run. What differs per viewer (the
    friends among `visible_goers`, the distance from where they are) is derived by the
    methods below, so one card can be cached and shared by every request.
    """

    event_id: str
    name: str
    category: str
    metro: str
    start_utc: datetime
    end_utc: datetime | None
    timezone: str
    start_local: datetime
    venue: Venue | None
    price: Price
    status: str
    is_active: bool
    capacity: int | None
    going_count: int
    visible_goers: frozenset[int]
    # The catalogue has no image column yet; the field is in the contract so the app can
    # start rendering it the day the catalogue gains one.
    image_url: str | None = None

    @property
    def cancelled(self) -> bool:
        return not self.is_active or self.status.lower() in CANCELLED_STATUSES

    @property
    def full(self) -> bool:
        return self.capacity is not None and self.going_count >= self.capacity

    @property
    def visible_going_count(self) -> int:
        """Everyone going who shares their RSVP: what other users may be told."""
        return len(self.visible_goers)

    @cached_property
    def available(self) -> bool:
        """Neither cancelled nor full (worked out once per card: cards are cached)."""
        return not self.cancelled and not self.full

    def showable(self, now: datetime) -> bool:
        """Whether the feed may offer it: not started, not cancelled, not full."""
        return self.start_utc > now and self.available

    def friends_going(self, friends: frozenset[int]) -> int:
        """How many of `friends` (the viewer's mutual friends) are going, as they allow."""
        if not friends or not self.visible_goers:
            return 0  # the usual case, fifty times per feed page
        return len(self.visible_goers & friends)

    def distance_km(self, origin: tuple[float, float] | None) -> float | None:
        """Kilometres from `origin` (lat, lon) to the venue; None without either position."""
        venue = self.venue
        if origin is None or venue is None or venue.latitude is None or venue.longitude is None:
            return None
        km = haversine_km(origin[0], origin[1], venue.latitude, venue.longitude)
        return round(float(km), 3)


def load_live_cards(conn: sa.Connection, event_ids: Iterable[str]) -> dict[str, EventCard]:
    """Cards of `event_ids` by id, in one query however many ids (unknown ids are absent)."""
    ids = list(set(event_ids))
    if not ids:
        return {}
    rows = conn.execute(_LIVE_CARDS, {"event_ids": ids}).mappings()
    cards = (_card(row) for row in rows)
    return {card.event_id: card for card in cards}


def load_mutual_friends(conn: sa.Connection, user_id: int) -> frozenset[int]:
    """The user's friends: those with a friendship row in both directions."""
    return frozenset(int(r.friend_id) for r in conn.execute(_MUTUAL_FRIENDS, {"user_id": user_id}))


def load_mutual_friends_of(
    conn: sa.Connection, user_ids: Sequence[int]
) -> dict[int, frozenset[int]]:
    """`load_mutual_friends` for many users in one query; every user gets an entry."""
    found: dict[int, set[int]] = {user_id: set() for user_id in user_ids}
    for row in conn.execute(_MUTUAL_FRIENDS_OF_MANY, {"user_ids": list(user_ids)}):
        found[int(row.user_id)].add(int(row.friend_id))
    return {user_id: frozenset(friends) for user_id, friends in found.items()}


def load_friends_going(conn: sa.Connection, event_id: str, *, viewer_id: int) -> list[Friend]:
    """The viewer's friends going to `event_id` who let friends see it (never private RSVPs),
    as the friends list shows them (`since` included)."""
    rows = conn.execute(_FRIENDS_GOING, {"event_id": event_id, "viewer_id": viewer_id})
    return [Friend(int(r.user_id), str(r.display_name), r.since) for r in rows]


@dataclass(frozen=True)
class EventPage:
    """What `GET /v1/events/{id}` shows: the live card and the viewer's friends going."""

    card: EventCard
    friends_going: list[Friend]


def read_event_page(engine: sa.Engine, event_id: str, *, viewer_id: int) -> EventPage | None:
    """The event's live card and the viewer's friends going (one connection), or None when
    no such event exists; cancelled, full and past events are returned like any other."""
    with engine.connect() as conn:
        card = load_live_cards(conn, [event_id]).get(event_id)
        if card is None:
            return None
        return EventPage(card, load_friends_going(conn, event_id, viewer_id=viewer_id))


def _card(row: sa.RowMapping) -> EventCard:
    zone_name, zone = _zone(row["timezone"])
    start_utc: datetime = row["start_utc"].astimezone(UTC)
    end_utc: datetime | None = row["end_utc"].astimezone(UTC) if row["end_utc"] else None
    venue = (
        Venue(
            name=row["venue_name"],
            address=row["venue_address"],
            latitude=row["venue_latitude"],
            longitude=row["venue_longitude"],
        )
        if row["venue_name"] is not None
        else None
    )
    return EventCard(
        event_id=row["event_id"],
        name=row["name"],
        category=row["category"],
        metro=row["metro"],
        start_utc=start_utc,
        end_utc=end_utc,
        timezone=zone_name,
        start_local=start_utc.astimezone(zone),
        venue=venue,
        price=Price(
            is_free=bool(row["is_free"]),
            price_min_cents=row["price_min_cents"],
            price_max_cents=row["price_max_cents"],
            currency=row["currency"],
        ),
        status=row["status"],
        is_active=bool(row["is_active"]),
        capacity=row["capacity"],
        going_count=int(row["going"]),
        visible_goers=frozenset(int(user_id) for user_id in row["visible_goers"]),
    )


def _zone(name: str | None) -> tuple[str, ZoneInfo]:
    """The event's zone; UTC when the source gave none or one this system does not know."""
    if name:
        try:
            return name, ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("unknown event timezone %r, showing times in UTC", name)
    return "UTC", ZoneInfo("UTC")
