"""Parse Eventbrite API v3 event records into typed Polars frames, quarantining bad records.

Why one parser: the real API client and the synthetic landing files must produce the same
tables, so the ingest pipeline downstream has one contract. Records are validated with
pydantic models of the Eventbrite shapes, which name the failing field; a record that fails
is never silently dropped: it lands in ``quarantine`` with its raw JSON and the reason.

Decisions (documented because downstream code relies on them):

- Required: ``id`` (non-empty; ints are accepted and turned into strings), ``name.text``
  (non-empty), ``start.utc`` and ``end.utc`` (ISO-8601 with ``Z`` or an explicit offset,
  converted to UTC; a time without offset is rejected as ambiguous), ``status``; and
  ``end.utc`` must not be before ``start.utc``. Wrongly typed optional fields (e.g. a
  non-integer ``capacity`` or ticket price ``value``) also quarantine the record.
- Venue coordinates are Eventbrite strings. An unparseable, non-finite or out-of-range
  latitude/longitude becomes a null coordinate and the event is still parsed: the listing is
  useful and geocoding can fill the point later. ``"0"/"0"`` (null island) is treated as
  missing too.
- Duplicate event ids within one batch: the record with the latest ``changed`` wins (ties:
  the later record in the batch); the others are dropped without quarantine because they are
  older versions of a valid record. ``ParsedEvents.duplicates_dropped`` counts them.
- ``is_active`` is False for statuses canceled, ended, completed and draft. Eventbrite's
  list responses can show a canceled event as ``live``; the parser trusts what it is given,
  re-checking with ``GET /v3/events/{id}/`` is the client's job.
- ``category`` is ``category.name``; when the ``category`` object is not expanded it is
  the name of ``category_id`` in Eventbrite's fixed list of top-level categories
  (``EVENTBRITE_CATEGORIES``, ``GET /v3/categories/``), and ``"Other"`` when neither says.
  Prices come from ``ticket_availability`` minimum/maximum ``value`` (minor units) and are
  null for free events.
- Venues: an event's venue comes from its expanded ``venue`` object, else from another record
  of the batch that expands the same ``venue_id``, else from ``GET /v3/venues/{id}/`` as the
  ingest fetched it (``fetched_venues``). An event whose ``venue_id`` is known nowhere is
  quarantined with the reason, never passed on: the app's ``events.venue_id`` is a foreign
  key, and one such row used to fail the whole catalogue upsert. ``unexpanded_venue_ids``
  names the venues the ingest must fetch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import polars as pl
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

UTC_DATETIME = pl.Datetime("us", "UTC")

EVENT_SCHEMA = pl.Schema(
    {
        "event_id": pl.Utf8(),
        "name": pl.Utf8(),
        "summary": pl.Utf8(),
        "url": pl.Utf8(),
        "venue_id": pl.Utf8(),
        "metro": pl.Utf8(),
        "category": pl.Utf8(),
        "start_utc": UTC_DATETIME,
        "end_utc": UTC_DATETIME,
        "timezone": pl.Utf8(),
        "is_free": pl.Boolean(),
        "price_min_cents": pl.Int64(),
        "price_max_cents": pl.Int64(),
        "currency": pl.Utf8(),
        "capacity": pl.Int64(),
        "status": pl.Utf8(),
        "is_active": pl.Boolean(),
        "changed_at": UTC_DATETIME,
    }
)
VENUE_SCHEMA = pl.Schema(
    {
        "venue_id": pl.Utf8(),
        "name": pl.Utf8(),
        "address": pl.Utf8(),
        "city": pl.Utf8(),
        "metro": pl.Utf8(),
        "latitude": pl.Float64(),
        "longitude": pl.Float64(),
        "capacity": pl.Int64(),
    }
)
QUARANTINE_SCHEMA = pl.Schema(
    {
        "raw_json": pl.Utf8(),
        "event_id": pl.Utf8(),
        "reason": pl.Utf8(),
    }
)

INACTIVE_STATUSES = frozenset({"canceled", "ended", "completed", "draft"})
OTHER_CATEGORY = "Other"
# Eventbrite's top-level categories (`GET /v3/categories/`): ids are stable, and a record
# without the `category` expansion carries only `category_id`.
EVENTBRITE_CATEGORIES: dict[str, str] = {
    "101": "Business & Professional",
    "102": "Science & Technology",
    "103": "Music",
    "104": "Film, Media & Entertainment",
    "105": "Performing & Visual Arts",
    "106": "Fashion & Beauty",
    "107": "Health & Wellness",
    "108": "Sports & Fitness",
    "109": "Travel & Outdoor",
    "110": "Food & Drink",
    "111": "Charity & Causes",
    "112": "Government & Politics",
    "113": "Community & Culture",
    "114": "Religion & Spirituality",
    "115": "Family & Education",
    "116": "Seasonal & Holiday",
    "117": "Home & Lifestyle",
    "118": "Auto, Boat & Air",
    "119": "Hobbies & Special Interest",
    "120": "School Activities",
    "199": "Other",
}


# --------------------------------------------------------------------------------------------
# Pydantic models of the Eventbrite shapes (only the fields we read; extras are ignored)
# --------------------------------------------------------------------------------------------


def _as_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "empty")
    return value


def _utc(value: Any) -> datetime:
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PydanticCustomError(
            "utc_time", "not an ISO-8601 UTC time {value}", {"value": repr(value)}
        )
    return parsed.astimezone(UTC)


EventbriteId = Annotated[str, BeforeValidator(_as_id), AfterValidator(_non_empty)]
NonEmptyText = Annotated[str, AfterValidator(_non_empty)]
UtcTime = Annotated[datetime, BeforeValidator(_utc)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EventbriteName(_Shape):
    """``name``: the plain text must be present and non-blank."""

    text: NonEmptyText
    html: str | None = None


class EventbriteText(_Shape):
    """``description``: optional text."""

    text: str | None = None
    html: str | None = None


class EventbriteDateTime(_Shape):
    """``start`` / ``end``: ``{timezone, utc, local}``; only ``utc`` is required."""

    utc: UtcTime
    timezone: str | None = None
    local: str | None = None


class EventbriteAddress(_Shape):
    """``venue.address``; coordinates are parsed leniently, outside pydantic."""

    address_1: str | None = None
    address_2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None
    latitude: Any = None
    longitude: Any = None
    localized_address_display: str | None = None


class EventbriteVenue(_Shape):
    """Expanded ``venue``."""

    id: EventbriteId | None = None
    name: str | None = None
    capacity: int | None = None
    address: EventbriteAddress | None = None
    latitude: Any = None
    longitude: Any = None


class EventbriteCategory(_Shape):
    """Expanded ``category``."""

    id: EventbriteId | None = None
    name: str | None = None
    short_name: str | None = None


class EventbriteTicketPrice(_Shape):
    """``minimum_ticket_price`` / ``maximum_ticket_price``: ``value`` is in minor units."""

    value: int | None = None
    currency: str | None = None
    major_value: str | None = None
    display: str | None = None


class EventbriteTicketAvailability(_Shape):
    """Expanded ``ticket_availability``."""

    has_available_tickets: bool | None = None
    minimum_ticket_price: EventbriteTicketPrice | None = None
    maximum_ticket_price: EventbriteTicketPrice | None = None
    is_sold_out: bool | None = None


class EventbriteEvent(_Shape):
    """One event of a list or single-event response (with the usual expansions)."""

    id: EventbriteId
    name: EventbriteName
    start: EventbriteDateTime
    end: EventbriteDateTime
    status: NonEmptyText
    summary: str | None = None
    description: EventbriteText | None = None
    url: str | None = None
    is_free: bool = False
    currency: str | None = None
    capacity: int | None = None
    changed: UtcTime | None = None
    venue_id: EventbriteId | None = None
    venue: EventbriteVenue | None = None
    category_id: EventbriteId | None = None
    category: EventbriteCategory | None = None
    ticket_availability: EventbriteTicketAvailability | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> EventbriteEvent:
        if self.end.utc < self.start.utc:
            raise PydanticCustomError(
                "end_before_start",
                "end.utc: before start.utc ({end} < {start})",
                {"end": self.end.utc.isoformat(), "start": self.start.utc.isoformat()},
            )
        return self


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedEvents:
    """Result of ``parse_events``: always full-schema frames, possibly empty.

    ``events`` follows ``EVENT_SCHEMA`` (one row per event id), ``venues`` follows
    ``VENUE_SCHEMA`` (one row per venue id), ``quarantine`` follows ``QUARANTINE_SCHEMA``.
    """

    events: pl.DataFrame
    venues: pl.DataFrame
    quarantine: pl.DataFrame
    duplicates_dropped: int = 0


def _reason(exc: ValidationError) -> str:
    """'field.path: problem' for each error, e.g. 'start.utc: missing'."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = "missing" if err["type"] == "missing" or err.get("input", 0) is None else err["msg"]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _raw_json(record: Any) -> str:
    return json.dumps(record, sort_keys=True, default=str, ensure_ascii=False)


def _raw_id(record: Any) -> str | None:
    if isinstance(record, Mapping):
        value = record.get("id")
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _coordinate(value: Any, limit: float) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or abs(number) > limit:
        return None
    return number


def _venue_row(venue: EventbriteVenue, venue_id: str, metro: str) -> dict[str, Any]:
    address = venue.address or EventbriteAddress()
    lat = _coordinate(venue.latitude if venue.latitude is not None else address.latitude, 90.0)
    lon = _coordinate(venue.longitude if venue.longitude is not None else address.longitude, 180.0)
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
        lat = lon = None
    return {
        "venue_id": venue_id,
        "name": venue.name,
        "address": address.localized_address_display or address.address_1,
        "city": address.city,
        "metro": metro,
        "latitude": lat,
        "longitude": lon,
        "capacity": venue.capacity,
    }


def _event_row(event: EventbriteEvent, metro: str) -> dict[str, Any]:
    tickets = event.ticket_availability
    low = tickets.minimum_ticket_price if tickets else None
    high = tickets.maximum_ticket_price if tickets else None
    venue_id = event.venue_id or (event.venue.id if event.venue else None)
    summary = event.summary
    if summary is None and event.description is not None:
        summary = event.description.text
    return {
        "event_id": event.id,
        "name": event.name.text.strip(),
        "summary": summary,
        "url": event.url,
        "venue_id": venue_id,
        "metro": metro,
        "category": _category(event),
        "start_utc": event.start.utc,
        "end_utc": event.end.utc,
        "timezone": event.start.timezone or event.end.timezone,
        "is_free": event.is_free,
        "price_min_cents": None if event.is_free or low is None else low.value,
        "price_max_cents": None if event.is_free or high is None else high.value,
        "currency": event.currency or (low.currency if low else None),
        "capacity": event.capacity,
        "status": event.status,
        "is_active": event.status not in INACTIVE_STATUSES,
        "changed_at": event.changed,
    }


def _category(event: EventbriteEvent) -> str:
    """The expanded category's name, else the name of `category_id`, else "Other"."""
    if event.category is not None and event.category.name:
        return event.category.name
    category_id = event.category_id or (event.category.id if event.category else None)
    return EVENTBRITE_CATEGORIES.get(category_id or "", OTHER_CATEGORY)


def _venue_id(event: EventbriteEvent) -> str | None:
    return event.venue_id or (event.venue.id if event.venue else None)


def unexpanded_venue_ids(raw_events: Iterable[Any]) -> set[str]:
    """Venue ids that records name (``venue_id``) but no record of the batch expands.

    Lenient on purpose (raw records, before validation): these are the venues the ingest
    asks ``GET /v3/venues/{id}/`` for, so that `parse_events` does not have to quarantine
    their events.
    """
    named: set[str] = set()
    expanded: set[str] = set()
    for record in raw_events:
        if not isinstance(record, Mapping):
            continue
        venue = record.get("venue")
        venue_id = _as_id(record.get("venue_id"))
        if isinstance(venue, Mapping):
            expanded.add(str(_as_id(venue.get("id")) or venue_id))
        elif isinstance(venue_id, str) and venue_id.strip():
            named.add(venue_id)
    return named - expanded


def _frame(rows: list[dict[str, Any]], schema: pl.Schema) -> pl.DataFrame:
    columns = {name: [row[name] for row in rows] for name in schema}
    return pl.DataFrame(columns, schema=schema)


_OLDEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)


def parse_events(
    raw_events: Iterable[Mapping[str, Any]],
    metro: str,
    fetched_venues: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> ParsedEvents:
    """Validate and flatten Eventbrite event records (e.g. all ``events`` of a listing).

    ``metro`` is the partition the records were fetched for; it is stamped on every event
    and venue row. ``fetched_venues`` maps a venue id to its ``GET /v3/venues/{id}/`` record,
    or to None when Eventbrite answered 404 for it. See the module docstring for the
    validation, venue and dedup rules.
    """
    fetched = fetched_venues or {}
    latest: dict[str, tuple[datetime, int, EventbriteEvent]] = {}
    quarantine: list[dict[str, Any]] = []
    raws: dict[int, Mapping[str, Any]] = {}
    duplicates = 0
    for seq, record in enumerate(raw_events):
        if not isinstance(record, Mapping):
            quarantine.append(
                {"raw_json": _raw_json(record), "event_id": None, "reason": "record: not an object"}
            )
            continue
        try:
            event = EventbriteEvent.model_validate(dict(record))
        except ValidationError as exc:
            quarantine.append(
                {"raw_json": _raw_json(record), "event_id": _raw_id(record), "reason": _reason(exc)}
            )
            continue
        key = (event.changed or _OLDEST, seq)
        previous = latest.get(event.id)
        if previous is not None:
            duplicates += 1
            if (previous[0], previous[1]) > key:
                continue
        latest[event.id] = (key[0], key[1], event)
        raws[seq] = record

    kept = sorted(latest.values(), key=lambda item: item[1])  # batch order of the winners

    venues: dict[str, tuple[tuple[datetime, int], dict[str, Any]]] = {}
    for changed, seq, event in kept:
        if event.venue is None:
            continue
        venue_id = event.venue.id or event.venue_id
        if venue_id is None:
            continue
        previous_venue = venues.get(venue_id)
        if previous_venue is None or previous_venue[0] <= (changed, seq):
            venues[venue_id] = ((changed, seq), _venue_row(event.venue, venue_id, metro))

    events = []
    for _, seq, event in kept:
        venue_id = _venue_id(event)
        if venue_id is not None and venue_id not in venues:
            reason = _fetched_venue(venues, fetched, venue_id, metro)
            if reason is not None:
                quarantine.append(
                    {
                        "raw_json": _raw_json(raws[seq]),
                        "event_id": event.id,
                        "reason": reason,
                    }
                )
                continue
        events.append(_event_row(event, metro))

    return ParsedEvents(
        events=_frame(events, EVENT_SCHEMA),
        venues=_frame([row for _, row in venues.values()], VENUE_SCHEMA),
        quarantine=_frame(quarantine, QUARANTINE_SCHEMA),
        duplicates_dropped=duplicates,
    )


_NEVER = (datetime.min.replace(tzinfo=UTC), -1)  # a fetched venue never beats an expanded one


def _fetched_venue(
    venues: dict[str, tuple[tuple[datetime, int], dict[str, Any]]],
    fetched: Mapping[str, Mapping[str, Any] | None],
    venue_id: str,
    metro: str,
) -> str | None:
    """Add the fetched venue to `venues`; or the quarantine reason when there is none."""
    if venue_id not in fetched:
        return (
            f"venue_id: venue {venue_id} is not expanded and GET /v3/venues/{venue_id}/ "
            "has not answered yet (asked again on the next run)"
        )
    record = fetched[venue_id]
    if record is None:
        return f"venue_id: venue {venue_id} is not expanded and GET /v3/venues/{venue_id}/ is 404"
    try:
        venue = EventbriteVenue.model_validate(dict(record))
    except ValidationError as exc:
        return f"venue_id: venue {venue_id} as fetched is invalid ({_reason(exc)})"
    venues[venue_id] = (_NEVER, _venue_row(venue, venue_id, metro))
    return None
