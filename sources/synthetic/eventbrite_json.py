"""Render a synthetic world as Eventbrite API v3 responses, and land them as JSON files.

Why: the ingest pipeline and the real API client must be exercised on exactly the shapes
Eventbrite returns, without a token. ``to_eventbrite_pages`` produces what
``GET /v3/organizations/{id}/events/?expand=venue,category,subcategory,format,
ticket_availability,logo`` returns page by page (``order_by=start_asc``); ``write_landing``
puts those pages on disk where a pipeline reads them like a crawl's output.

Known quirk reproduced on purpose: some canceled events read ``"status": "live"`` in list
responses. Exactly the canceled events whose numeric id is even are listed as live
(``quirk_live_event_ids``); ``single_event_status`` gives what ``GET /v3/events/{id}/``
would answer (the world's true status), so a client can re-check suspicious listings.

The record builders are public (``event_records``, ``venue_record``, ``organizer_record``) so
the local fake API server (``sources.fakes``) serves exactly these shapes instead of keeping a
second copy of them.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from sources.synthetic.world import CATEGORIES, FORMATS, SUBCATEGORIES, World

API_ROOT = "https://www.eventbriteapi.com/v3"
LIST_EXPANSIONS = "venue,category,subcategory,format,ticket_availability,logo"
EXPANSIONS: tuple[str, ...] = tuple(LIST_EXPANSIONS.split(","))
"""The expanded objects every record of ``event_records`` carries (in ``LIST_EXPANSIONS``)."""

_CATEGORY_BY_ID = {c.id: c for c in CATEGORIES}
_SUBCATEGORY_BY_ID = {s.id: s for s in SUBCATEGORIES}
_FORMAT_BY_ID = {f.id: f for f in FORMATS}
_ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"
_ISO_LOCAL = "%Y-%m-%dT%H:%M:%S"


def quirk_live_event_ids(world: World) -> frozenset[str]:
    """Canceled events that list responses show as ``live`` (the known Eventbrite quirk)."""
    ev = world.events.filter(pl.col("status") == "canceled")
    return frozenset(e for e in ev["event_id"].to_list() if int(e) % 2 == 0)


def single_event_status(world: World) -> dict[str, str]:
    """event_id -> status as ``GET /v3/events/{id}/`` reports it (the truth, no quirk)."""
    return dict(
        zip(world.events["event_id"].to_list(), world.events["status"].to_list(), strict=True)
    )


def _category(category_id: str) -> dict[str, Any]:
    c = _CATEGORY_BY_ID[category_id]
    return {
        "resource_uri": f"{API_ROOT}/categories/{c.id}/",
        "id": c.id,
        "name": c.name,
        "name_localized": c.name,
        "short_name": c.short_name,
        "short_name_localized": c.short_name,
    }


def _subcategory(subcategory_id: str | None) -> dict[str, Any] | None:
    if subcategory_id is None:
        return None
    s = _SUBCATEGORY_BY_ID[subcategory_id]
    return {
        "resource_uri": f"{API_ROOT}/subcategories/{s.id}/",
        "id": s.id,
        "name": s.name,
        "parent_category": _category(s.parent_id),
    }


def _format(format_id: str) -> dict[str, Any]:
    f = _FORMAT_BY_ID[format_id]
    return {
        "resource_uri": f"{API_ROOT}/formats/{f.id}/",
        "id": f.id,
        "name": f.name,
        "name_localized": f.name,
        "short_name": f.short_name,
        "short_name_localized": f.short_name,
    }


def _price(cents: int | None, currency: str) -> dict[str, Any] | None:
    if cents is None:
        return None
    major = f"{cents // 100}.{cents % 100:02d}"
    return {
        "currency": currency,
        "value": cents,
        "major_value": major,
        "display": f"{major} {currency}",
    }


def _with_local_times(world: World) -> pl.DataFrame:
    """Events plus Eventbrite-formatted UTC and local time strings."""
    events = world.events.with_row_index("_row")
    parts = []
    for tz in events["timezone"].unique().sort().to_list():
        part = events.filter(pl.col("timezone") == tz)
        parts.append(
            part.with_columns(
                pl.col("start_utc")
                .dt.convert_time_zone(tz)
                .dt.strftime(_ISO_LOCAL)
                .alias("start_local"),
                pl.col("end_utc")
                .dt.convert_time_zone(tz)
                .dt.strftime(_ISO_LOCAL)
                .alias("end_local"),
                pl.col("published")
                .dt.convert_time_zone(tz)
                .dt.strftime(_ISO_LOCAL)
                .alias("published_local"),
            )
        )
    events = pl.concat(parts).sort("_row") if parts else events
    utc_cols = ("start_utc", "end_utc", "created", "changed", "published")
    return events.with_columns(
        *(pl.col(c).dt.strftime(_ISO_UTC).alias(f"{c}_iso") for c in utc_cols)
    )


def venue_record(venue: Mapping[str, Any]) -> dict[str, Any]:
    """The expanded ``venue`` object for one row of ``World.venues``.

    Latitude and longitude are strings, as Eventbrite sends them; the address display strings
    are what a geocoder is later asked about (``localized_address_display``).
    """
    lat, lon = repr(venue["latitude"]), repr(venue["longitude"])
    area = f"{venue['city']}, {venue['region']}"
    street = venue["address_1"]
    return {
        "address": {
            "address_1": street,
            "address_2": None,
            "city": venue["city"],
            "region": venue["region"],
            "postal_code": venue["postal_code"],
            "country": venue["country"],
            "latitude": lat,
            "longitude": lon,
            "localized_address_display": f"{street}, {area} {venue['postal_code']}",
            "localized_area_display": area,
            "localized_multi_line_address_display": [street, f"{area} {venue['postal_code']}"],
        },
        "resource_uri": f"{API_ROOT}/venues/{venue['venue_id']}/",
        "id": venue["venue_id"],
        "age_restriction": None,
        "capacity": venue["capacity"],
        "name": venue["name"],
        "latitude": lat,
        "longitude": lon,
    }


def organizer_record(organization: Mapping[str, Any]) -> dict[str, Any]:
    """The expanded ``organizer`` object for one row of ``World.organizations``.

    In the synthetic world each organization is its own single organizer, so the organizer id
    equals the organization id (``organizer_id`` of its events). Not part of
    ``LIST_EXPANSIONS``: the feed does not need it, but a client may ask for it.
    """
    org_id = organization["organization_id"]
    name = organization["name"]
    description = f"{name} hosts events in {organization['metro']}."
    return {
        "description": {"text": description, "html": f"<p>{html.escape(description)}</p>"},
        "long_description": {"text": description, "html": f"<p>{html.escape(description)}</p>"},
        "resource_uri": f"{API_ROOT}/organizers/{org_id}/",
        "id": org_id,
        "name": name,
        "url": f"https://www.eventbrite.com/o/{org_id}",
        "num_past_events": None,
        "num_future_events": None,
        "twitter": None,
        "facebook": None,
        "logo_id": None,
        "logo": None,
    }


def _event(row: dict[str, Any], listed_status: str, venue: dict[str, Any]) -> dict[str, Any]:
    event_id: str = row["event_id"]
    tz = row["timezone"]
    logo_id = str(100_000_000 + int(event_id) % 900_000_000)
    logo_url = f"https://img.evbuc.com/images/{logo_id}/1/original.jpg"
    sold_out = row["popularity"] > 2.0 and row["status"] != "canceled"
    on_sale = row["status"] in ("live", "started") and not sold_out
    return {
        "name": {"text": row["name"], "html": html.escape(row["name"])},
        "description": {"text": row["summary"], "html": f"<p>{html.escape(row['summary'])}</p>"},
        "url": row["url"],
        "start": {"timezone": tz, "local": row["start_local"], "utc": row["start_utc_iso"]},
        "end": {"timezone": tz, "local": row["end_local"], "utc": row["end_utc_iso"]},
        "organization_id": row["organization_id"],
        "created": row["created_iso"],
        "changed": row["changed_iso"],
        "published": row["published_iso"],
        "capacity": row["capacity"],
        "capacity_is_custom": False,
        "status": listed_status,
        "currency": row["currency"],
        "listed": True,
        "shareable": True,
        "online_event": False,
        "tx_time_limit": 1200,
        "hide_start_date": False,
        "hide_end_date": False,
        "locale": "en_US",
        "is_locked": False,
        "privacy_setting": "unlocked",
        "is_series": False,
        "is_series_parent": False,
        "inventory_type": "limited",
        "is_reserved_seating": False,
        "show_pick_a_seat": False,
        "show_seatmap_thumbnail": False,
        "show_colors_in_seatmap_thumbnail": False,
        "source": "coyote",
        "is_free": row["is_free"],
        "version": None,
        "summary": row["summary"],
        "facebook_event_id": None,
        "logo_id": logo_id,
        "organizer_id": row["organization_id"],
        "venue_id": row["venue_id"],
        "category_id": row["category_id"],
        "subcategory_id": row["subcategory_id"],
        "format_id": row["format_id"],
        "id": event_id,
        "resource_uri": f"{API_ROOT}/events/{event_id}/",
        "is_externally_ticketed": False,
        "venue": venue,
        "category": _category(row["category_id"]),
        "subcategory": _subcategory(row["subcategory_id"]),
        "format": _format(row["format_id"]),
        "logo": {
            "crop_mask": None,
            "original": {"url": logo_url, "width": 2160, "height": 1080},
            "id": logo_id,
            "url": logo_url,
            "aspect_ratio": "2",
            "edge_color": None,
            "edge_color_set": True,
        },
        "ticket_availability": {
            "has_available_tickets": on_sale,
            "minimum_ticket_price": _price(row["price_min_cents"], row["currency"]),
            "maximum_ticket_price": _price(row["price_max_cents"], row["currency"]),
            "is_sold_out": sold_out,
            "start_sales_date": {
                "timezone": tz,
                "local": row["published_local"],
                "utc": row["published_iso"],
            },
            "waitlist_available": False,
        },
    }


def event_records(world: World) -> list[dict[str, Any]]:
    """Every event of the world as an Eventbrite event record, ordered by start time.

    Each record carries the TRUE status (what ``GET /v3/events/{id}/`` answers, no list
    quirk) and every expansion in ``LIST_EXPANSIONS``. Records are fresh dicts that share no
    nested objects, so a caller may mutate one (apply the quirk, drop an expansion, corrupt a
    field for a test) without touching another.
    """
    venues = {v["venue_id"]: v for v in world.venues.iter_rows(named=True)}
    table = _with_local_times(world).sort(["start_utc", "event_id"])
    return [
        _event(row, row["status"], venue_record(venues[row["venue_id"]]))
        for row in table.iter_rows(named=True)
    ]


def _continuation(organization_id: str, next_page: int) -> str:
    """An opaque cursor, like Eventbrite's: clients must pass it back, never parse it."""
    token = f"org:{organization_id}:page:{next_page}".encode()
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def to_eventbrite_pages(world: World, page_size: int = 50) -> dict[str, list[dict[str, Any]]]:
    """Every organization's event listing as Eventbrite list-response pages.

    Keyed by organization_id (all organizations, in the world's order). Events are ordered by
    start time (``order_by=start_asc``) and include past, canceled and live ones. Each page is
    ``{"pagination": {...}, "events": [...]}``; ``continuation`` is present only when
    ``has_more_items`` is true. An organization without events gets one empty page.
    """
    if page_size <= 0:
        raise ValueError(f"page_size must be positive, got {page_size}")
    quirk = quirk_live_event_ids(world)
    rows_by_org: dict[str, list[dict[str, Any]]] = {
        org: [] for org in world.organizations["organization_id"].to_list()
    }
    for record in event_records(world):
        if record["id"] in quirk:
            record["status"] = "live"
        rows_by_org[record["organization_id"]].append(record)

    pages: dict[str, list[dict[str, Any]]] = {}
    for org, events in rows_by_org.items():
        page_count = max(1, -(-len(events) // page_size))
        org_pages = []
        for number in range(1, page_count + 1):
            has_more = number < page_count
            pagination: dict[str, Any] = {
                "object_count": len(events),
                "page_number": number,
                "page_size": page_size,
                "page_count": page_count,
                "has_more_items": has_more,
            }
            if has_more:
                pagination["continuation"] = _continuation(org, number + 1)
            org_pages.append(
                {
                    "pagination": pagination,
                    "events": events[(number - 1) * page_size : number * page_size],
                }
            )
        pages[org] = org_pages
    return pages


def write_landing(world: World, directory: Path, page_size: int = 50) -> list[Path]:
    """Write the pages to ``directory/eventbrite/organizations/{org_id}/page-{n:04d}.json``.

    Also writes ``directory/eventbrite/organizations.json`` (organization_id, name, metro for
    each organization) so a reader knows which metro an organization's pages belong to, as
    the real client knows from its configuration. Returns every written path: the pages in
    organization then page order, the manifest last. Output is byte-for-byte deterministic.
    """
    root = Path(directory) / "eventbrite"
    written: list[Path] = []
    for org, org_pages in to_eventbrite_pages(world, page_size=page_size).items():
        org_dir = root / "organizations" / org
        org_dir.mkdir(parents=True, exist_ok=True)
        for page in org_pages:
            path = org_dir / f"page-{page['pagination']['page_number']:04d}.json"
            path.write_text(json.dumps(page, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(path)
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "organizations.json"
    manifest.write_text(
        json.dumps(world.organizations.to_dicts(), ensure_ascii=False, indent=1) + "\n",
        encoding="utf-8",
    )
    written.append(manifest)
    return written
