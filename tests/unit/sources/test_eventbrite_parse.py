"""Eventbrite pages from the synthetic world parse back losslessly; bad records are quarantined."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from sources.eventbrite.parse import (
    EVENT_SCHEMA,
    QUARANTINE_SCHEMA,
    VENUE_SCHEMA,
    parse_events,
    unexpanded_venue_ids,
)
from sources.synthetic.eventbrite_json import (
    quirk_live_event_ids,
    single_event_status,
    to_eventbrite_pages,
    write_landing,
)
from sources.synthetic.world import CityConfig, World, build_world

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def tiny() -> World:
    return build_world(CityConfig.tiny(now=NOW))


@pytest.fixture(scope="module")
def pages(tiny: World) -> dict[str, list[dict[str, Any]]]:
    return to_eventbrite_pages(tiny, page_size=7)


def _events_of_metro(world: World, pages: dict[str, list[dict[str, Any]]], metro: str) -> list:
    orgs = world.organizations.filter(pl.col("metro") == metro)["organization_id"].to_list()
    return [event for org in orgs for page in pages[org] for event in page["events"]]


def _event(**overrides: Any) -> dict[str, Any]:
    """A minimal valid Eventbrite event, as a list response returns it."""
    record: dict[str, Any] = {
        "id": "1001",
        "name": {"text": "Jazz Night", "html": "Jazz Night"},
        "summary": "Live jazz",
        "url": "https://www.eventbrite.com/e/jazz-night-tickets-1001",
        "start": {
            "timezone": "America/Los_Angeles",
            "local": "2026-05-11T19:00:00",
            "utc": "2026-05-12T02:00:00Z",
        },
        "end": {
            "timezone": "America/Los_Angeles",
            "local": "2026-05-11T22:00:00",
            "utc": "2026-05-12T05:00:00Z",
        },
        "changed": "2026-04-01T10:00:00Z",
        "status": "live",
        "is_free": False,
        "currency": "USD",
        "capacity": 200,
        "venue_id": "55",
        "venue": {
            "id": "55",
            "name": "Blue Door Hall",
            "capacity": 300,
            "latitude": "37.7749",
            "longitude": "-122.4194",
            "address": {
                "address_1": "1 Main St",
                "city": "San Francisco",
                "latitude": "37.7749",
                "longitude": "-122.4194",
                "localized_address_display": "1 Main St, San Francisco, CA 94103",
            },
        },
        "category": {"id": "103", "name": "Music", "short_name": "Music"},
        "ticket_availability": {
            "minimum_ticket_price": {"currency": "USD", "value": 2500, "major_value": "25.00"},
            "maximum_ticket_price": {"currency": "USD", "value": 4000, "major_value": "40.00"},
        },
    }
    record.update(overrides)
    return record


# ------------------------------------------------------------------ the fake API's pages


def test_pagination_is_consistent(tiny: World, pages: dict[str, list[dict[str, Any]]]) -> None:
    assert set(pages) == set(tiny.organizations["organization_id"])
    total = 0
    for org_pages in pages.values():
        count = org_pages[0]["pagination"]["object_count"]
        assert [p["pagination"]["page_number"] for p in org_pages] == list(
            range(1, len(org_pages) + 1)
        )
        for page in org_pages:
            pagination = page["pagination"]
            assert pagination["page_size"] == 7
            assert pagination["page_count"] == len(org_pages)
            assert pagination["object_count"] == count
            assert len(page["events"]) <= 7
            has_more = pagination["has_more_items"]
            assert has_more == (pagination["page_number"] < pagination["page_count"])
            assert (pagination.get("continuation") is not None) == has_more
        assert sum(len(p["events"]) for p in org_pages) == count
        total += count
    assert total == tiny.events.height
    continuations = [
        p["pagination"]["continuation"]
        for org_pages in pages.values()
        for p in org_pages
        if p["pagination"]["has_more_items"]
    ]
    assert len(continuations) == len(set(continuations)) > 0


def test_event_json_has_eventbrite_shapes(pages: dict[str, list[dict[str, Any]]]) -> None:
    events = [e for org_pages in pages.values() for p in org_pages for e in p["events"]]
    for event in events:
        assert isinstance(event["id"], str)
        assert set(event["name"]) == {"text", "html"}
        assert event["start"]["utc"].endswith("Z") and len(event["start"]["utc"]) == 20
        assert len(event["start"]["local"]) == 19
        assert isinstance(event["venue"]["latitude"], str)
        assert isinstance(event["venue"]["address"]["longitude"], str)
        assert event["online_event"] is False and event["listed"] is True
        assert set(event["category"]) >= {"id", "name", "short_name"}
        assert set(event["format"]) >= {"id", "name", "short_name"}
        assert set(event["logo"]["original"]) == {"url", "width", "height"}
        tickets = event["ticket_availability"]
        if event["is_free"]:
            assert tickets["minimum_ticket_price"] is None
        else:
            price = tickets["minimum_ticket_price"]
            assert isinstance(price["value"], int) and isinstance(price["major_value"], str)
            assert price["display"].endswith(" USD")
        tz = ZoneInfo(event["start"]["timezone"])
        utc = datetime.fromisoformat(event["start"]["utc"])
        local = utc.astimezone(tz).replace(tzinfo=None).isoformat()
        assert local == event["start"]["local"]


def test_canceled_events_can_list_as_live(
    tiny: World, pages: dict[str, list[dict[str, Any]]]
) -> None:
    quirky = quirk_live_event_ids(tiny)
    truth = single_event_status(tiny)
    listed = {e["id"]: e["status"] for ps in pages.values() for p in ps for e in p["events"]}
    canceled = {e for e, s in truth.items() if s == "canceled"}
    assert quirky <= canceled
    for event_id in canceled:
        assert listed[event_id] == ("live" if event_id in quirky else "canceled")
    assert all(listed[e] == s for e, s in truth.items() if e not in quirky)


def test_write_landing_writes_pages_and_manifest(tiny: World, tmp_path: Path) -> None:
    paths = write_landing(tiny, tmp_path, page_size=10)
    expected = to_eventbrite_pages(tiny, page_size=10)
    pages_written = [p for p in paths if p.name.startswith("page-")]
    assert len(pages_written) == sum(len(v) for v in expected.values())
    for org, org_pages in expected.items():
        for page in org_pages:
            number = page["pagination"]["page_number"]
            path = tmp_path / "eventbrite" / "organizations" / org / f"page-{number:04d}.json"
            assert path in paths
            assert json.loads(path.read_text(encoding="utf-8")) == page
    manifest = json.loads((tmp_path / "eventbrite" / "organizations.json").read_text())
    assert {m["organization_id"] for m in manifest} == set(expected)
    again = write_landing(tiny, tmp_path / "again", page_size=10)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize("metro", ["san-francisco", "new-york"])
def test_round_trip_world_to_pages_to_frames(
    tiny: World, pages: dict[str, list[dict[str, Any]]], metro: str
) -> None:
    parsed = parse_events(_events_of_metro(tiny, pages, metro), metro)
    assert parsed.quarantine.is_empty()
    assert parsed.duplicates_dropped == 0
    truth = tiny.events.filter(pl.col("metro") == metro).sort("event_id")
    got = parsed.events.sort("event_id")
    assert got["event_id"].to_list() == truth["event_id"].to_list()
    for column in ("name", "summary", "url", "venue_id", "category", "start_utc", "end_utc"):
        assert got[column].to_list() == truth[column].to_list(), column
    for column in ("timezone", "is_free", "price_min_cents", "price_max_cents", "capacity"):
        assert got[column].to_list() == truth[column].to_list(), column
    assert got["changed_at"].to_list() == truth["changed"].to_list()
    assert (got["metro"] == metro).all()

    venues = tiny.venues.filter(pl.col("venue_id").is_in(truth["venue_id"].implode()))
    got_venues = parsed.venues.sort("venue_id")
    venues = venues.sort("venue_id")
    assert got_venues["venue_id"].to_list() == venues["venue_id"].to_list()
    assert got_venues["latitude"].to_list() == venues["latitude"].to_list()
    assert got_venues["longitude"].to_list() == venues["longitude"].to_list()
    assert got_venues["city"].to_list() == venues["city"].to_list()
    assert got_venues["capacity"].to_list() == venues["capacity"].to_list()


def test_round_trip_activity_flags(tiny: World, pages: dict[str, list[dict[str, Any]]]) -> None:
    raw = [e for ps in pages.values() for p in ps for e in p["events"]]
    parsed = parse_events(raw, "all").events
    status = dict(zip(parsed["event_id"], parsed["status"], strict=True))
    active = dict(zip(parsed["event_id"], parsed["is_active"], strict=True))
    for event_id, true_status in single_event_status(tiny).items():
        if status[event_id] in ("canceled", "ended", "completed"):
            assert active[event_id] is False
        if true_status == "live":
            assert active[event_id] is True


# ------------------------------------------------------------------ validation


def test_a_valid_record_is_flattened() -> None:
    parsed = parse_events([_event()], "san-francisco")
    assert parsed.quarantine.is_empty()
    row = parsed.events.row(0, named=True)
    assert row["event_id"] == "1001"
    assert row["name"] == "Jazz Night"
    assert row["category"] == "Music"
    assert row["start_utc"] == datetime(2026, 5, 12, 2, tzinfo=UTC)
    assert row["end_utc"] == datetime(2026, 5, 12, 5, tzinfo=UTC)
    assert row["changed_at"] == datetime(2026, 4, 1, 10, tzinfo=UTC)
    assert (row["price_min_cents"], row["price_max_cents"]) == (2500, 4000)
    assert row["is_active"] is True
    venue = parsed.venues.row(0, named=True)
    assert venue["latitude"] == pytest.approx(37.7749)
    assert venue["longitude"] == pytest.approx(-122.4194)
    assert venue["address"] == "1 Main St, San Francisco, CA 94103"
    assert venue["metro"] == "san-francisco"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (_event(start={"timezone": "UTC", "local": "2026-05-11T19:00:00"}), "start.utc: missing"),
        (_event(start=None), "start: missing"),
        (_event(name={"text": "   "}), "name.text: empty"),
        (_event(name={"text": None}), "name.text: missing"),
        (_event(id=None), "id: missing"),
        (_event(id=""), "id: empty"),
        (_event(start={"utc": "xyz"}), "start.utc: not an ISO-8601 UTC time 'xyz'"),
        (_event(end={"utc": "2026-05-12T05:00:00"}), "end.utc: not an ISO-8601 UTC time"),
        (_event(end={"utc": "2026-05-11T05:00:00Z"}), "end.utc: before start.utc"),
        (_event(status=None), "status: missing"),
        (_event(capacity="lots"), "capacity:"),
    ],
)
def test_invalid_records_are_quarantined_with_the_field_named(
    record: dict[str, Any], reason: str
) -> None:
    parsed = parse_events([record, _event(id="2002")], "san-francisco")
    assert parsed.events["event_id"].to_list() == ["2002"]
    assert parsed.quarantine.height == 1
    row = parsed.quarantine.row(0, named=True)
    assert reason in row["reason"]
    assert row["raw_json"] == json.dumps(record, sort_keys=True, ensure_ascii=False)
    expected_id = record.get("id") or None
    assert row["event_id"] == expected_id


def test_missing_id_is_quarantined_without_an_event_id() -> None:
    record = _event()
    del record["id"]
    parsed = parse_events([record], "x")
    assert parsed.events.is_empty()
    assert parsed.quarantine.row(0, named=True)["event_id"] is None
    assert parsed.quarantine.row(0, named=True)["reason"] == "id: missing"


def test_non_object_records_are_quarantined() -> None:
    parsed = parse_events([["not", "an", "event"]], "x")  # type: ignore[list-item]
    assert parsed.quarantine.row(0, named=True)["reason"] == "record: not an object"


def test_bad_coordinates_become_null_but_the_event_is_kept() -> None:
    venue = copy.deepcopy(_event()["venue"])
    venue["latitude"] = "north-ish"
    venue["address"]["latitude"] = "north-ish"
    parsed = parse_events([_event(venue=venue)], "x")
    assert parsed.quarantine.is_empty()
    assert parsed.events.height == 1
    row = parsed.venues.row(0, named=True)
    assert row["latitude"] is None and row["longitude"] is None
    assert row["name"] == "Blue Door Hall"


def test_coordinates_fall_back_to_the_address() -> None:
    venue = copy.deepcopy(_event()["venue"])
    del venue["latitude"], venue["longitude"]
    parsed = parse_events([_event(venue=venue)], "x")
    assert parsed.venues["latitude"].to_list() == [pytest.approx(37.7749)]


def test_canceled_and_past_events_are_inactive() -> None:
    records = [
        _event(id="1", status="canceled"),
        _event(id="2", status="completed"),
        _event(id="3", status="ended"),
        _event(id="4", status="draft"),
        _event(id="5", status="started"),
        _event(id="6", status="live"),
    ]
    active = dict(parse_events(records, "x").events.select("event_id", "is_active").iter_rows())
    assert active == {"1": False, "2": False, "3": False, "4": False, "5": True, "6": True}


def test_free_events_have_no_prices_and_missing_category_is_other() -> None:
    record = _event(is_free=True, category=None)
    row = parse_events([record], "x").events.row(0, named=True)
    assert row["price_min_cents"] is None and row["price_max_cents"] is None
    assert row["category"] == "Other"


@pytest.mark.parametrize(
    ("category_id", "expected"), [("110", "Food & Drink"), ("199", "Other"), ("987", "Other")]
)
def test_an_unexpanded_category_is_named_from_its_id(category_id: str, expected: str) -> None:
    record = _event(category_id=category_id)
    del record["category"]
    assert parse_events([record], "x").events["category"].to_list() == [expected]


def _without_venue(**overrides: Any) -> dict[str, Any]:
    record = _event(**overrides)
    del record["venue"]
    return record


def test_an_unexpanded_venue_known_nowhere_quarantines_its_event_only() -> None:
    good = _event(id="1", venue_id="55")
    bare = _without_venue(id="2", venue_id="77")
    parsed = parse_events([good, bare], "x")
    assert parsed.events["event_id"].to_list() == ["1"]
    assert parsed.venues["venue_id"].to_list() == ["55"]
    [row] = parsed.quarantine.iter_rows(named=True)
    assert row["event_id"] == "2" and row["reason"].startswith("venue_id: venue 77")
    assert json.loads(row["raw_json"]) == bare  # the record as received, for a replay


def test_an_unexpanded_venue_is_taken_from_another_record_or_the_fetched_venues() -> None:
    fetched = _event()["venue"] | {"id": "77", "name": "Fetched Hall"}
    parsed = parse_events(
        [
            _without_venue(id="1", venue_id="55"),
            _event(id="2"),
            _without_venue(id="3", venue_id="77"),
        ],
        "x",
        fetched_venues={"77": fetched},
    )
    assert parsed.quarantine.height == 0
    assert sorted(parsed.events["event_id"]) == ["1", "2", "3"]
    names = dict(parsed.venues.select("venue_id", "name").iter_rows())
    assert names == {"55": "Blue Door Hall", "77": "Fetched Hall"}


def test_a_venue_eventbrite_does_not_have_is_named_in_the_reason() -> None:
    parsed = parse_events([_without_venue(venue_id="77")], "x", fetched_venues={"77": None})
    assert parsed.quarantine["reason"].to_list() == [
        "venue_id: venue 77 is not expanded and GET /v3/venues/77/ is 404"
    ]


def test_unexpanded_venue_ids_are_those_no_record_expands() -> None:
    records = [
        _without_venue(id="1", venue_id="55"),
        _event(id="2"),
        _without_venue(id="3", venue_id=77),
        _without_venue(id="4", venue_id=None),
        "not an object",
    ]
    assert unexpanded_venue_ids(records) == {"77"}


def test_integer_ids_are_accepted_as_strings() -> None:
    row = parse_events([_event(id=1234, venue_id=55)], "x").events.row(0, named=True)
    assert row["event_id"] == "1234" and row["venue_id"] == "55"


def test_duplicates_keep_the_latest_changed_version() -> None:
    old = _event(name={"text": "Old name"}, changed="2026-04-01T10:00:00Z")
    new = _event(name={"text": "New name"}, changed="2026-04-02T10:00:00Z")
    older_again = _event(name={"text": "Older"}, changed="2026-03-01T10:00:00Z")
    parsed = parse_events([old, new, older_again], "x")
    assert parsed.events["name"].to_list() == ["New name"]
    assert parsed.duplicates_dropped == 2
    assert parsed.quarantine.is_empty()
    assert parsed.venues.height == 1


def test_empty_input_gives_full_schema_frames() -> None:
    parsed = parse_events([], "x")
    assert parsed.events.schema == EVENT_SCHEMA
    assert parsed.venues.schema == VENUE_SCHEMA
    assert parsed.quarantine.schema == QUARANTINE_SCHEMA
    assert parsed.events.is_empty() and parsed.venues.is_empty() and parsed.quarantine.is_empty()


def test_schemas_hold_with_mixed_input() -> None:
    parsed = parse_events([_event(), _event(id="7", start=None)], "x")
    assert parsed.events.schema == EVENT_SCHEMA
    assert parsed.venues.schema == VENUE_SCHEMA
    assert parsed.quarantine.schema == QUARANTINE_SCHEMA
