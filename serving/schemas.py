"""Response models: the API's public contract, decoupled from `store`'s dataclasses.

Keeping them separate lets `store` change its internals (extra fields, new sources) without
changing what the mobile app receives; pydantic's `from_attributes` does the mapping.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class VenueOut(BaseModel):
    """Where the event takes place."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    address: str | None
    latitude: float | None = Field(description="Degrees; null when the venue is not geocoded.")
    longitude: float | None = Field(description="Degrees; null when the venue is not geocoded.")


class PriceOut(BaseModel):
    """What a ticket costs, in minor units of `currency`."""

    model_config = ConfigDict(from_attributes=True)

    is_free: bool
    price_min_cents: int | None
    price_max_cents: int | None
    currency: str | None = Field(description="ISO 4217 code; null when unknown or free.")


class EventCardOut(BaseModel):
    """What an event's card in the app shows, read live at request time."""

    model_config = ConfigDict(from_attributes=True)

    event_id: str
    name: str = Field(description="The event's title.")
    category: str
    metro: str
    start_utc: datetime
    start_local: datetime = Field(
        description="The start in the event's own timezone, with its UTC offset "
        "(e.g. `2026-01-10T19:00:00-05:00`), so the app shows the time printed on the ticket."
    )
    timezone: str = Field(
        description="IANA zone of `start_local`; `UTC` when the source gave none."
    )
    end_utc: datetime | None
    venue: VenueOut | None = Field(description="Null when the event has no venue (online).")
    distance_km: float | None = Field(
        description="Great-circle distance from the `lat`/`lon` of the request to the venue; "
        "null without them or when the venue is not geocoded."
    )
    price: PriceOut
    image_url: str | None = Field(
        description="Always null for now: the catalogue has no image column yet."
    )


class FeedItemOut(EventCardOut):
    """One ranked event: its card, where it was ranked and why."""

    rank: int = Field(description="1-based position in the published list.")
    score: float
    reason: str = Field(description="Why the event was recommended (candidate source).")
    friends_going: int = Field(
        description="The caller's friends going who share their RSVP (public or friends-only); "
        "private RSVPs are never counted."
    )


class FeedOut(BaseModel):
    """A user's feed from the current published run."""

    model_config = ConfigDict(from_attributes=True)

    user_id: int
    run_id: str | None = Field(description="The published run served; null before any run.")
    source: Literal["redis", "postgres", "none"] = Field(
        description="Where the feed was read: the hot copy, the durable copy, or no run yet."
    )
    cold_start: bool = Field(
        description="True when the run had no list for this user and its fallback was served."
    )
    items: list[FeedItemOut]
    next_cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` for the next page (same run); null on the last page.",
    )


class FriendOut(BaseModel):
    """A friend of the caller who is going."""

    model_config = ConfigDict(from_attributes=True)

    user_id: int
    display_name: str


class EventOut(EventCardOut):
    """`GET /v1/events/{event_id}`: the card, its live state and who is going."""

    status: str = Field(description="The catalogue's status, e.g. `live` or `canceled`.")
    cancelled: bool = Field(description="True when the event is cancelled or withdrawn.")
    full: bool = Field(description="True when going RSVPs have reached the event's capacity.")
    going_count: int = Field(
        description="Everyone going who shares their RSVP (public or friends-only); private "
        "RSVPs are never counted."
    )
    friends_going: list[FriendOut] = Field(
        description="The caller's friends going, by name; never those whose RSVP is private."
    )


class ProblemOut(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field validation errors (422 only)."
    )


MAX_SWIPES_PER_BATCH = 100
# How far ahead of the server a phone's clock may run before its timestamps are refused.
MAX_CLOCK_SKEW = timedelta(minutes=5)


class SwipeIn(BaseModel):
    """One swipe the app recorded, possibly while offline."""

    client_id: str = Field(
        min_length=1,
        max_length=64,
        description="The app's own id for this swipe (e.g. a UUID); resending it is a no-op.",
    )
    event_id: str = Field(min_length=1, max_length=256)
    direction: Literal["like", "pass", "superlike"]
    ts: AwareDatetime = Field(
        description="When the user swiped, with a timezone; at most 5 minutes in the future."
    )

    @field_validator("ts")
    @classmethod
    def _not_in_the_future(cls, ts: datetime) -> datetime:
        """A swipe cannot happen later than now; a few minutes of clock skew are tolerated."""
        if ts > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("must not be more than 5 minutes in the future")
        return ts


class SwipeBatchIn(BaseModel):
    """The body of `POST /v1/swipes`: swipes of the caller (the user comes from the token)."""

    swipes: list[SwipeIn] = Field(min_length=1, max_length=MAX_SWIPES_PER_BATCH)

    @field_validator("swipes")
    @classmethod
    def _client_ids_unique(cls, swipes: list[SwipeIn]) -> list[SwipeIn]:
        """Two swipes with one client id in a batch would silently lose one of them."""
        counts = Counter(s.client_id for s in swipes)
        repeated = sorted(client_id for client_id, n in counts.items() if n > 1)
        if repeated:
            raise ValueError(f"client_id repeated within the batch: {', '.join(repeated)}")
        return swipes


class SwipeBatchOut(BaseModel):
    """What a batch did: new swipes, already-stored ones, and whether the feed caught up."""

    stored: int = Field(description="Swipes stored by this request.")
    duplicates: int = Field(description="Swipes whose client_id was already stored (retries).")
    feed_updated: bool = Field(
        description="False when the swipes are stored but the feed may still show their "
        "events for a while (the cache was unreachable); resending the batch is safe."
    )
