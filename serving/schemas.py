"""Response models: the API's public contract, decoupled from `store`'s dataclasses.

Keeping them separate lets `store` change its internals (extra fields, new sources) without
changing what the mobile app receives; pydantic's `from_attributes` does the mapping.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
)
from pydantic.json_schema import JsonDict

# --- input bounds ---------------------------------------------------------------------------
# What Postgres can hold, checked where input enters (bodies, paths, queries), so a value it
# would refuse is a 422 naming the field instead of a database error and a 500.

# `users.id` and every other BIGINT column.
MAX_BIGINT = 2**63 - 1
# Times a client may ask about (calendar ranges and cursors): wide enough for "everything",
# narrow enough that shifting them by a day or an offset stays inside Python's years 1-9999.
EARLIEST_QUERY_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_QUERY_TIME = datetime(2200, 1, 1, tzinfo=UTC)
# No swipe or RSVP can predate the app: a phone whose clock says 1970 (or year 1) is wrong.
EARLIEST_ACTION_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def storable_text_error(value: str) -> str | None:
    """Why Postgres `text` cannot hold `value`, or None when it can.

    A NUL byte is the one character Postgres text refuses; a lone surrogate (which JSON's
    `\\ud800` escape and Python allow) cannot be encoded as the UTF-8 the database speaks.
    """
    if "\x00" in value:
        return "must not contain NUL (\\x00) characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no unpaired surrogates)"
    return None


def _storable(value: str) -> str:
    error = storable_text_error(value)
    if error is not None:
        raise ValueError(error)
    return value


def query_time_error(value: datetime) -> str | None:
    """Why `value` is outside the times a client may ask about, or None."""
    if not EARLIEST_QUERY_TIME <= value <= LATEST_QUERY_TIME:
        return (
            f"must be between {EARLIEST_QUERY_TIME.isoformat()} and {LATEST_QUERY_TIME.isoformat()}"
        )
    return None


def _query_time(value: datetime) -> datetime:
    error = query_time_error(value)
    if error is not None:
        raise ValueError(error)
    return value


# Every text input that may reach Postgres: bodies, path and query parameters alike (FastAPI
# runs the validator for `Annotated[StoredText, Path(...)]` / `Query(...)` too).
StoredText = Annotated[str, AfterValidator(_storable)]
# A time a client asks about, with its timezone and inside the query range.
QueryTime = Annotated[AwareDatetime, AfterValidator(_query_time)]
# A user id in a path: a positive BIGINT.
UserIdPath = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="The user's id.")]

# Realistic bodies for the OpenAPI document (`examples` of each model's schema), built from
# one event so the examples agree with each other. Documentation only: never used to validate.
_VENUE_EXAMPLE: JsonDict = {
    "name": "The Chapel",
    "address": "777 Valencia St, San Francisco, CA 94110",
    "latitude": 37.7609,
    "longitude": -122.4214,
}
_PRICE_EXAMPLE: JsonDict = {
    "is_free": False,
    "price_min_cents": 2500,
    "price_max_cents": 4000,
    "currency": "USD",
}
_CARD_EXAMPLE: JsonDict = {
    "event_id": "812345678901",
    "name": "Mission Jazz Night",
    "category": "music",
    "metro": "san-francisco",
    "start_utc": "2026-03-14T03:30:00Z",
    "start_local": "2026-03-13T20:30:00-07:00",
    "timezone": "America/Los_Angeles",
    "end_utc": "2026-03-14T06:00:00Z",
    "venue": _VENUE_EXAMPLE,
    "distance_km": 2.4,
    "price": _PRICE_EXAMPLE,
    "image_url": None,
}
# A real id (`core.impression_ids`) of user 42 and that event, served 2026-03-01T18:33:20Z,
# signed with a throwaway key.
IMPRESSION_ID_EXAMPLE = (
    "AQGcqq0lgAAAAAAAAAAqHkS0q-3ZRpKRY_yH_AEAADgxMjM0NTY3ODkwMYYZrHoaEEqpCe40pjBu76U"
)
_FEED_ITEM_EXAMPLE: JsonDict = {
    **_CARD_EXAMPLE,
    "rank": 1,
    "score": 0.8731,
    "reason": "2 friends going",
    "friends_going": 2,
    "impression_id": IMPRESSION_ID_EXAMPLE,
}
_RUN_ID_EXAMPLE = "3f9c1b52-7a4e-4d0b-9a61-2c8e5f0d7b13"
# What `serving.cursors.encode` gives for that run after rank 1 (development key).
_FEED_CURSOR_EXAMPLE = (
    "eyJyIjoiM2Y5YzFiNTItN2E0ZS00ZDBiLTlhNjEtMmM4ZTVmMGQ3YjEzIiwiayI6MX0.zRPTFSEioc1OYeqR6pO8pw"
)
_FRIENDS_EXAMPLE: list[JsonValue] = [
    {"user_id": 7, "display_name": "Maya R.", "since": "2025-11-20T18:04:05Z"},
    {"user_id": 19, "display_name": "Jonas K.", "since": "2026-01-03T09:12:44Z"},
]


class VenueOut(BaseModel):
    """Where the event takes place."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_VENUE_EXAMPLE]}
    )

    name: str
    address: str | None
    latitude: float | None = Field(description="Degrees; null when the venue is not geocoded.")
    longitude: float | None = Field(description="Degrees; null when the venue is not geocoded.")


class PriceOut(BaseModel):
    """What a ticket costs, in minor units of `currency`."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                _PRICE_EXAMPLE,
                {
                    "is_free": True,
                    "price_min_cents": None,
                    "price_max_cents": None,
                    "currency": None,
                },
            ]
        },
    )

    is_free: bool
    price_min_cents: int | None
    price_max_cents: int | None
    currency: str | None = Field(description="ISO 4217 code; null when unknown or free.")


class EventCardOut(BaseModel):
    """What an event's card in the app shows, read live at request time."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_CARD_EXAMPLE]})

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

    model_config = ConfigDict(json_schema_extra={"examples": [_FEED_ITEM_EXAMPLE]})

    rank: int = Field(description="1-based position in the published list.")
    score: float
    reason: str = Field(description="Why the event was recommended (candidate source).")
    friends_going: int = Field(
        description="The caller's friends going who share their RSVP (public or friends-only); "
        "private RSVPs are never counted."
    )
    impression_id: str | None = Field(
        description="Opaque, signed id of this showing of the card: send it back with the "
        "swipe (`POST /v1/swipes`) or RSVP (`PUT /v1/events/{id}/attendance`) it leads to. "
        "It names the caller and this event and attributes for a limited time (7 days by "
        "default). Null when the impression could not be recorded.",
        max_length=512,
    )


class FeedOut(BaseModel):
    """A user's feed from the current published run."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "user_id": 42,
                    "run_id": _RUN_ID_EXAMPLE,
                    "source": "redis",
                    "cold_start": False,
                    "items": [_FEED_ITEM_EXAMPLE],
                    "next_cursor": _FEED_CURSOR_EXAMPLE,
                },
                {
                    "user_id": 42,
                    "run_id": None,
                    "source": "none",
                    "cold_start": False,
                    "items": [],
                    "next_cursor": None,
                },
            ]
        },
    )

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
    """A mutual friend of the caller: in their friends list, and among the friends going to an
    event. One schema for both, so the app has one `Friend` type."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_FRIENDS_EXAMPLE[0]]}
    )

    user_id: int
    display_name: str
    since: datetime = Field(description="When the caller and this user became friends.")


class EventOut(EventCardOut):
    """`GET /v1/events/{event_id}`: the card, its live state and who is going."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_CARD_EXAMPLE,
                    "status": "live",
                    "cancelled": False,
                    "full": False,
                    "going_count": 37,
                    "friends_going": _FRIENDS_EXAMPLE,
                }
            ]
        }
    )

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
    """RFC 9457 problem details, the body of every error response.

    Branch on `type` (or `code`), never on `detail`: docs/problems.md lists every kind.
    """

    type: str = Field(
        default="about:blank",
        description="The kind of problem, `/problems/<code>`: a relative URI that identifies "
        "it (compare it, do not fetch it). Stable: a kind is never renamed.",
    )
    code: str | None = Field(
        default=None,
        description="The kind's name alone (`validation-error`), the last segment of `type`.",
    )
    title: str = Field(description="The status phrase, the same for every problem of a kind.")
    status: int
    detail: str = Field(description="What went wrong this time, for people; may change.")
    instance: str = Field(description="The request path.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field validation errors (422 only)."
    )


MAX_SWIPES_PER_BATCH = 100
_SWIPE_EXAMPLES: list[JsonValue] = [
    {
        "client_id": "6f1c2d3e-8a4b-4c5d-9e6f-7a8b9c0d1e2f",
        "event_id": "812345678901",
        "direction": "like",
        "ts": "2026-03-01T18:42:07Z",
        "impression_id": IMPRESSION_ID_EXAMPLE,
    },
    {
        "client_id": "0b9a8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d",
        "event_id": "812345678902",
        "direction": "pass",
        "ts": "2026-03-01T18:42:11Z",
    },
]
# How far ahead of the server a phone's clock may run before its timestamps are refused.
MAX_CLOCK_SKEW = timedelta(minutes=5)


class SwipeIn(BaseModel):
    """One swipe the app recorded, possibly while offline."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SWIPE_EXAMPLES[0]]})

    client_id: StoredText = Field(
        min_length=1,
        max_length=64,
        description="The app's own id for this swipe (e.g. a UUID); resending it is a no-op.",
    )
    event_id: StoredText = Field(min_length=1, max_length=256)
    direction: Literal["like", "pass", "superlike"]
    ts: AwareDatetime = Field(
        description="When the user swiped, with a timezone: not before 2000-01-01T00:00:00Z "
        "and at most 5 minutes in the future."
    )
    impression_id: StoredText | None = Field(
        default=None,
        max_length=512,
        description="The `impression_id` of the feed item swiped, if the app has it. Stored "
        "with the swipe when it is valid (signed by this API, issued to the caller for this "
        "event, not expired); otherwise ignored, and the swipe is stored without it (only "
        "text no id can contain, a NUL byte or an unpaired surrogate, is a 422).",
    )

    @field_validator("ts")
    @classmethod
    def _a_real_time(cls, ts: datetime) -> datetime:
        """A swipe cannot happen later than now (a few minutes of clock skew are tolerated),
        nor before the app existed: such a time is a broken clock, not a swipe."""
        if ts > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("must not be more than 5 minutes in the future")
        if ts < EARLIEST_ACTION_TIME:
            raise ValueError(f"must not be before {EARLIEST_ACTION_TIME.isoformat()}")
        return ts


class SwipeBatchIn(BaseModel):
    """The body of `POST /v1/swipes`: swipes of the caller (the user comes from the token)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"swipes": _SWIPE_EXAMPLES}]})

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"stored": 2, "duplicates": 0, "feed_updated": True},
                {"stored": 0, "duplicates": 2, "feed_updated": True},
            ]
        }
    )

    stored: int = Field(description="Swipes stored by this request.")
    duplicates: int = Field(description="Swipes whose client_id was already stored (retries).")
    feed_updated: bool = Field(
        description="False when the swipes are stored but the feed may still show their "
        "events for a while (the cache was unreachable); resending the batch is safe."
    )
