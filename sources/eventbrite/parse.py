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
- ``category`` is ``category.name`` and falls back to ``"Other"``; prices come from
  ``ticket_availability`` minimum/maximum ``value`` (minor units) and are null for free
  events.
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
        "category": (event.category.name if event.category else None) or OTHER_CATEGORY,
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


def _frame(rows: list[dict[str, Any]], schema: pl.Schema) -> pl.DataFrame:
    columns = {name: [row[name] for row in rows] for name in schema}
    return pl.DataFrame(columns, schema=schema)


_OLDEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)


def parse_events(raw_events: Iterable[Mapping[str, Any]], metro: str) -> ParsedEvents:
    """Validate and flatten Eventbrite event records (e.g. all ``events`` of a listing).

    ``metro`` is the partition the records were fetched for; it is stamped on every event
    and venue row. See the module docstring for the validation and dedup rules.
    """
    latest: dict[str, tuple[datetime, int, EventbriteEvent]] = {}
    quarantine: list[dict[str, Any]] = []
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

    kept = sorted(latest.values(), key=lambda item: item[1])  # batch order of the winners
    events = [_event_row(event, metro) for _, _, event in kept]

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

    return ParsedEvents(
        events=_frame(events, EVENT_SCHEMA),
        venues=_frame([row for _, row in venues.values()], VENUE_SCHEMA),
        quarantine=_frame(quarantine, QUARANTINE_SCHEMA),
        duplicates_dropped=duplicates,
    )
