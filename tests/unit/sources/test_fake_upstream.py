"""The local fake of Eventbrite and Google Maps speaks their shapes and injects its faults.

Plain httpx over real sockets: these tests pin the fake's own contract, so the clients that
are tested against it later can trust it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import polars as pl
import pytest

from sources.eventbrite.parse import parse_events
from sources.fakes import (
    DEFAULT_EVENTBRITE_TOKEN,
    DEFAULT_MAPS_KEY,
    MALFORMATION_KINDS,
    FakeUpstream,
    FaultPlan,
    malformation_kind,
)
from sources.fakes.maps_json import open_location_code
from sources.synthetic.eventbrite_json import EXPANSIONS, event_records, quirk_live_event_ids
from sources.synthetic.world import CityConfig, World, build_world

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {DEFAULT_EVENTBRITE_TOKEN}"}
ALL_EXPANSIONS = ",".join(EXPANSIONS)
PLACES_HEADERS = {"X-Goog-Api-Key": DEFAULT_MAPS_KEY}


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(CityConfig.tiny(now=NOW))


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[FakeUpstream]:
    with FakeUpstream(world) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fake(server: FakeUpstream) -> FakeUpstream:
    """The module's server with no faults and an empty request log, for every test."""
    server.faults = FaultPlan()  # the setter gives it the world's now
    server.reset_log()
    return server


@pytest.fixture(scope="module")
def http(server: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=5.0) as client:
        yield client


def _org_ids(world: World) -> list[str]:
    return world.organizations["organization_id"].to_list()


def _list(http: httpx.Client, org: str, **params: Any) -> httpx.Response:
    return http.get(f"/v3/organizations/{org}/events/", params=params, headers=AUTH)


def _walk(http: httpx.Client, org: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of one organization's listing, following continuation to the end."""
    pages: list[dict[str, Any]] = []
    query = dict(params)
    while True:
        response = _list(http, org, **query)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        if not page["pagination"]["has_more_items"]:
            return pages
        query = {**params, "continuation": page["pagination"]["continuation"]}


def _all_events(http: httpx.Client, world: World, **params: Any) -> list[dict[str, Any]]:
    return [
        event
        for org in _org_ids(world)
        for page in _walk(http, org, page_size=50, expand=ALL_EXPANSIONS, **params)
        for event in page["events"]
    ]


def _geocode(http: httpx.Client, **params: str) -> httpx.Response:
    return http.get("/maps/api/geocode/json", params=params)


# -- lifecycle, log, counters ----------------------------------------------------------------


def test_base_urls_point_at_each_api(fake: FakeUpstream) -> None:
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert fake.port > 0
    assert fake.eventbrite_base_url == f"{fake.base_url}/v3/"
    assert fake.geocode_base_url == f"{fake.base_url}/maps/api/"
    assert fake.places_base_url == f"{fake.base_url}/v1/"


def test_stop_releases_the_port_and_is_idempotent(world: World) -> None:
    fake = FakeUpstream(world).start()
    url = fake.base_url
    assert httpx.get(f"{url}/v3/events/1/", headers=AUTH).status_code == 404
    fake.stop()
    fake.stop()
    assert not fake.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v3/events/1/", timeout=1.0)
    with pytest.raises(RuntimeError):
        _ = fake.base_url


def test_requests_are_logged_and_counted_per_endpoint(
    fake: FakeUpstream, http: httpx.Client, world: World
) -> None:
    org = _org_ids(world)[0]
    _list(http, org, page_size=5)
    _geocode(http, address="nowhere", key=DEFAULT_MAPS_KEY)
    http.get("/v1/places/unknown", headers={**PLACES_HEADERS, "X-Goog-FieldMask": "id"})

    method, path, query, headers = fake.requests[0]
    assert (method, path, query) == ("GET", f"/v3/organizations/{org}/events/", {"page_size": "5"})
    assert headers["authorization"] == AUTH["Authorization"]
    assert fake.counts == {
        "eventbrite.organization_events": 1,
        "geocode": 1,
        "places.details": 1,
    }
    assert fake.count("geocode") == 1
    assert fake.count("eventbrite.event") == 0


def test_concurrent_requests_are_all_counted(
    fake: FakeUpstream, http: httpx.Client, world: World
) -> None:
    org = _org_ids(world)[0]

    def hit() -> None:
        for _ in range(5):
            assert _list(http, org, page_size=1).status_code == 200

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.count("eventbrite.organization_events") == 20
    assert len(fake.requests) == 20


# -- Eventbrite: listings --------------------------------------------------------------------


def test_pagination_walks_every_event_of_an_org_exactly_once(
    fake: FakeUpstream, http: httpx.Client, world: World
) -> None:
    for org in _org_ids(world):
        pages = _walk(http, org, page_size=7)
        ids = [e["id"] for page in pages for e in page["events"]]
        expected = world.events.filter(pl.col("organization_id") == org)["event_id"].to_list()
        assert len(ids) == len(set(ids))
        assert sorted(ids) == sorted(expected)
        assert [p["pagination"]["page_number"] for p in pages] == list(range(1, len(pages) + 1))
        for page in pages[:-1]:
            assert page["pagination"]["has_more_items"] is True
            assert page["pagination"]["continuation"]
            assert len(page["events"]) == 7
        last = pages[-1]["pagination"]
        assert last["has_more_items"] is False
        assert "continuation" not in last
        assert last["object_count"] == len(expected)
        assert last["page_count"] == len(pages)
        starts = [e["start"]["utc"] for page in pages for e in page["events"]]
        assert starts == sorted(starts)  # order_by=start_asc by default


def test_page_size_is_honoured_and_validated(http: httpx.Client, world: World) -> None:
    org = _org_ids(world)[0]
    page = _list(http, org, page_size=3).json()
    assert len(page["events"]) == 3
    assert page["pagination"]["page_size"] == 3
    default = _list(http, org).json()["pagination"]
    assert default["page_size"] == 50
    assert _list(http, org, page_size=1000).json()["pagination"]["page_size"] == 200
    bad = _list(http, org, page_size=0)
    assert bad.status_code == 400
    assert bad.json()["error"] == "ARGUMENTS_ERROR"


def test_invalid_continuation_is_a_400(http: httpx.Client, world: World) -> None:
    org, other = _org_ids(world)[:2]
    for token in ("not-a-token", "eyJ4IjogMX0", ""):
        response = _list(http, org, continuation=token)
        assert response.status_code == 400
        body = response.json()
        assert body["status_code"] == 400
        assert body["error"] == "INVALID_CONTINUATION"
        assert body["error_description"]
    # A real token, but issued for another organization's listing.
    foreign = _list(http, other, page_size=1).json()["pagination"]["continuation"]
    assert _list(http, org, continuation=foreign).json()["error"] == "INVALID_CONTINUATION"


def test_auth_is_required(http: httpx.Client, world: World) -> None:
    path = f"/v3/organizations/{_org_ids(world)[0]}/events/"
    missing = http.get(path)
    assert missing.status_code == 401
    assert missing.json()["error"] == "NO_AUTH"
    wrong = http.get(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {
        "status_code": 401,
        "error": "INVALID_AUTH",
        "error_description": wrong.json()["error_description"],
    }
    # Eventbrite would take ?token=, the fake refuses it: tokens must not travel in URLs.
    in_url = http.get(path, params={"token": DEFAULT_EVENTBRITE_TOKEN})
    assert in_url.status_code == 401
    single = http.get(f"/v3/events/{world.events['event_id'][0]}/")
    assert single.status_code == 401


def test_unknown_owner_or_event_is_a_404(http: httpx.Client) -> None:
    for path in (
        "/v3/organizations/999/events/",
        "/v3/venues/999/events/",
        "/v3/events/999/",
        "/v3/nothing/here/",
    ):
        response = http.get(path, headers=AUTH)
        assert response.status_code == 404, path
        assert response.json()["error"] == "NOT_FOUND"


def test_time_filter_splits_at_the_worlds_now(http: httpx.Client, world: World) -> None:
    org = _org_ids(world)[0]

    def ids(time_filter: str) -> list[dict[str, Any]]:
        return [e for p in _walk(http, org, time_filter=time_filter) for e in p["events"]]

    future, past, everything = ids("current_future"), ids("past"), ids("all")
    now = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert future and past
    assert all(e["end"]["utc"] > now for e in future)
    assert all(e["end"]["utc"] <= now for e in past)
    assert sorted(e["id"] for e in future + past) == sorted(e["id"] for e in everything)
    assert _list(http, org, time_filter="tomorrow").status_code == 400


def test_status_and_order_by_filters(http: httpx.Client, world: World) -> None:
    org = _org_ids(world)[0]
    live = [e for p in _walk(http, org, status="live") for e in p["events"]]
    assert live and all(e["status"] == "live" for e in live)
    newest_first = _list(http, org, order_by="created_desc", page_size=200).json()["events"]
    created = [e["created"] for e in newest_first]
    assert created == sorted(created, reverse=True)
    assert _list(http, org, order_by="random").status_code == 400
    # A continuation belongs to the filters it was issued under.
    token = _list(http, org, page_size=1).json()["pagination"]["continuation"]
    assert _list(http, org, continuation=token, status="live").status_code == 400


def test_venue_and_organizer_listings(http: httpx.Client, world: World) -> None:
    venue = world.events["venue_id"][0]
    expected = world.events.filter(pl.col("venue_id") == venue)["event_id"].to_list()
    page = http.get(f"/v3/venues/{venue}/events/", params={"page_size": 200}, headers=AUTH)
    assert sorted(e["id"] for e in page.json()["events"]) == sorted(expected)
    org = _org_ids(world)[0]
    by_organizer = http.get(
        f"/v3/organizers/{org}/events/", params={"page_size": 200}, headers=AUTH
    )
    by_org = _list(http, org, page_size=200)
    assert [e["id"] for e in by_organizer.json()["events"]] == [
        e["id"] for e in by_org.json()["events"]
    ]


def test_expansions_are_only_included_when_asked(http: httpx.Client, world: World) -> None:
    org = _org_ids(world)[0]
    bare = _list(http, org, page_size=5).json()["events"]
    for event in bare:
        assert not set(EXPANSIONS) & set(event)
        assert event["venue_id"] and event["category_id"]
    some = _list(http, org, page_size=5, expand="venue,ticket_availability").json()["events"]
    for event in some:
        assert {"venue", "ticket_availability"} <= set(event)
        assert not {"category", "subcategory", "format", "logo"} & set(event)
        assert event["venue"]["id"] == event["venue_id"]
    full = _list(http, org, page_size=5, expand=f"{ALL_EXPANSIONS},organizer").json()["events"]
    for event in full:
        assert set(EXPANSIONS) <= set(event)
        assert event["organizer"]["id"] == event["organizer_id"]
    assert _list(http, org, expand="venue,nonsense").status_code == 400


def test_list_records_match_the_synthetic_builder(http: httpx.Client, world: World) -> None:
    by_id = {r["id"]: r for r in event_records(world)}
    quirk = quirk_live_event_ids(world)
    for event in _all_events(http, world):
        expected = dict(by_id[event["id"]])
        if event["id"] in quirk:
            expected["status"] = "live"
        assert event == expected


# -- Eventbrite: single event and the cancelled quirk ----------------------------------------


def test_single_event_shows_the_true_status_of_quirk_events(
    http: httpx.Client, world: World
) -> None:
    quirk = quirk_live_event_ids(world)
    assert quirk, "the tiny world should have canceled events listed as live"
    listed = {e["id"]: e for e in _all_events(http, world)}
    for event_id in quirk:
        assert listed[event_id]["status"] == "live"
        single = http.get(f"/v3/events/{event_id}/", params={"expand": "venue"}, headers=AUTH)
        assert single.status_code == 200
        assert single.json()["status"] == "canceled"
        assert single.json()["venue"]["id"] == listed[event_id]["venue_id"]
        assert "category" not in single.json()


def test_forced_cancellations_read_live_in_lists_only(
    fake: FakeUpstream, http: httpx.Client, world: World
) -> None:
    live = world.events.filter(pl.col("status") == "live")["event_id"].to_list()[:3]
    fake.faults.cancelled_event_ids = set(live)
    listed = {e["id"]: e["status"] for e in _all_events(http, world)}
    for event_id in live:
        assert listed[event_id] == "live"
        assert http.get(f"/v3/events/{event_id}/", headers=AUTH).json()["status"] == "canceled"


# -- request-level faults --------------------------------------------------------------------


def test_429_burst_then_success_with_retry_after(
    fake: FakeUpstream, http: httpx.Client, world: World
) -> None:
    org = _org_ids(world)[0]
    fake.faults.update(burst_429=2, retry_after_seconds=3)
    for _ in range(2):
        limited = _list(http, org)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "3"
        assert limited.json()["status_code"] == 429
        assert limited.json()["error"] == "HIT_RATE_LIMIT"
    assert _list(http, org).status_code == 200
    assert fake.faults.burst_429 == 0


def test_429_burst_per_api(fake: FakeUpstream, http: httpx.Client, world: World) -> None:
    venue = world.venues.row(0, named=True)
    address = f"{venue['address_1']}, {venue['city']}, {venue['region']} {venue['postal_code']}"
    fake.faults.update(burst_429=1, burst_429_scope="geocode")
    assert _list(http, _org_ids(world)[0]).status_code == 200  # out of scope: untouched
    limited = _geocode(http, address=address, key=DEFAULT_MAPS_KEY)
    assert limited.status_code == 200  # Google reports the quota in the body
    assert limited.json()["status"] == "OVER_QUERY_LIMIT"
    assert limited.json()["results"] == []
    assert _geocode(http, address=address, key=DEFAULT_MAPS_KEY).json()["status"] == "OK"

    fake.faults.update(burst_429=1, burst_429_scope="places")
    place = http.get(
        f"/v1/places/{fake.place_id(venue['venue_id'])}",
        headers={**PLACES_HEADERS, "X-Goog-FieldMask": "id"},
    )
    assert place.status_code == 429
    assert place.headers["Retry-After"] == "1"
    assert place.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert place.json()["error"]["code"] == 429


def test_server_errors_then_recovery(fake: FakeUpstream, http: httpx.Client, world: World) -> None:
    org = _org_ids(world)[0]
    fake.faults.update(fail_500=2)
    for _ in range(2):
        failed = _list(http, org)
        assert failed.status_code == 500
        assert failed.json()["error"] == "INTERNAL_ERROR"
    assert _list(http, org).status_code == 200

    fake.faults.update(fail_500=1, fail_status=503, fail_500_scope="places")
    assert _list(http, org).status_code == 200
    unavailable = http.get("/v1/places/x", headers={**PLACES_HEADERS, "X-Goog-FieldMask": "id"})
    assert unavailable.status_code == 503
    assert unavailable.json()["error"]["status"] == "UNAVAILABLE"

    fake.faults.update(fail_500=1, fail_status=500, fail_500_scope="geocode")
    broken = _geocode(http, address="x", key=DEFAULT_MAPS_KEY)
    assert broken.status_code == 500
    assert broken.json()["status"] == "UNKNOWN_ERROR"


def test_429_is_served_before_5xx(fake: FakeUpstream, http: httpx.Client, world: World) -> None:
    org = _org_ids(world)[0]
    fake.faults.update(burst_429=1, fail_500=1)
    assert [_list(http, org).status_code for _ in range(3)] == [429, 500, 200]


def test_slow_responses(fake: FakeUpstream, http: httpx.Client, world: World) -> None:
    org = _org_ids(world)[0]
    fake.faults.update(slow_seconds=0.2, slow_scope="eventbrite")
    started = time.perf_counter()
    assert _list(http, org, page_size=1).status_code == 200
    assert time.perf_counter() - started >= 0.2
    with pytest.raises(httpx.ReadTimeout):
        http.get(f"/v3/organizations/{org}/events/", headers=AUTH, timeout=0.05)
    started = time.perf_counter()
    _geocode(http, address="x", key=DEFAULT_MAPS_KEY)  # out of scope: fast
    assert time.perf_counter() - started < 0.15


# -- record-level faults ---------------------------------------------------------------------


def test_malformed_records_are_listed_broken_and_quarantined(
    fake: FakeUpstream, http: httpx.Client, world: World
) -> None:
    ids = world.events["event_id"].to_list()
    # One event of every kind of corruption, chosen by the fake's own rule.
    chosen = {
        kind: next(e for e in ids if malformation_kind(e) == kind) for kind in MALFORMATION_KINDS
    }
    fake.faults.malformed_event_ids = set(chosen.values())
    listed = {e["id"]: e for e in _all_events(http, world)}
    assert len(listed) == len(ids)  # broken records are still listed, not dropped

    broken = {kind: listed[event_id] for kind, event_id in chosen.items()}
    assert "utc" not in broken["missing_start_utc"]["start"]
    assert broken["empty_name"]["name"]["text"] == ""
    assert broken["end_before_start"]["end"]["utc"] < broken["end_before_start"]["start"]["utc"]
    assert broken["bad_start_utc"]["start"]["utc"] == "TBA"

    parsed = parse_events(listed.values(), metro="any")
    assert set(parsed.quarantine["event_id"].to_list()) == set(chosen.values())
    assert parsed.events.height == len(ids) - len(chosen)

    # The single-event endpoint is not affected.
    single = http.get(f"/v3/events/{chosen['missing_start_utc']}/", headers=AUTH).json()
    assert single["start"]["utc"]


def test_venues_without_coordinates(fake: FakeUpstream, http: httpx.Client, world: World) -> None:
    fake.faults.venues_without_coordinates_share = 0.5
    hidden = fake.venues_without_coordinates()
    assert 0 < len(hidden) < world.venues.height
    assert hidden == fake.venues_without_coordinates()  # deterministic
    seen_hidden = seen_shown = 0
    for event in _all_events(http, world):
        venue = event["venue"]
        if venue["id"] in hidden:
            seen_hidden += 1
            assert venue["latitude"] is None and venue["longitude"] is None
            assert venue["address"]["latitude"] is None
            assert venue["address"]["longitude"] is None
            assert venue["address"]["localized_address_display"]
        else:
            seen_shown += 1
            assert float(venue["latitude"]) and float(venue["address"]["longitude"])
    assert seen_hidden and seen_shown


def test_touch_bumps_changed_for_incremental_ingest(
    fake: FakeUpstream, http: httpx.Client, world: World
) -> None:
    before = {e["id"]: e["changed"] for e in _all_events(http, world)}
    high_water = max(before.values())
    touched = world.events["event_id"].to_list()[:2]
    first = fake.faults.touch(touched)
    assert first > NOW
    after = {e["id"]: e["changed"] for e in _all_events(http, world)}
    changed = {e for e, c in after.items() if c > high_water}
    assert changed == set(touched)
    assert after[touched[0]] == first.strftime("%Y-%m-%dT%H:%M:%SZ")
    single = http.get(f"/v3/events/{touched[0]}/", headers=AUTH).json()
    assert single["changed"] == after[touched[0]]
    second = fake.faults.touch(touched[0])
    assert second > first
    explicit = fake.faults.touch([touched[1]], at=NOW + timedelta(days=1))
    assert explicit == NOW + timedelta(days=1)


def test_fault_plan_validates_and_rolls_back() -> None:
    with pytest.raises(ValueError):
        FaultPlan(burst_429=-1)
    with pytest.raises(ValueError):
        FaultPlan(venues_without_coordinates_share=1.5)
    with pytest.raises(ValueError):
        FaultPlan(geocode_statuses={"a": "MAYBE"})
    plan = FaultPlan()
    with pytest.raises(ValueError):
        plan.update(burst_429=3, fail_status=404)
    assert (plan.burst_429, plan.fail_status) == (0, 500)
    with pytest.raises(TypeError):
        plan.update(nonsense=1)


# -- Google Geocoding ------------------------------------------------------------------------


def test_geocode_finds_a_venue_by_its_displayed_address(
    fake: FakeUpstream, http: httpx.Client, world: World
) -> None:
    event = _list(http, _org_ids(world)[0], page_size=1, expand="venue").json()["events"][0]
    venue_json = event["venue"]
    address = venue_json["address"]["localized_address_display"]
    response = _geocode(http, address=address, key=DEFAULT_MAPS_KEY)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "OK"
    [result] = body["results"]
    location = result["geometry"]["location"]
    assert location == {
        "lat": float(venue_json["latitude"]),
        "lng": float(venue_json["longitude"]),
    }
    assert result["geometry"]["location_type"] == "ROOFTOP"
    viewport = result["geometry"]["viewport"]
    assert viewport["southwest"]["lat"] < location["lat"] < viewport["northeast"]["lat"]
    assert result["place_id"].startswith("ChIJ")
    assert result["place_id"] == fake.place_id(venue_json["id"])
    assert result["formatted_address"].endswith(", USA")
    assert result["formatted_address"].startswith(venue_json["address"]["address_1"])
    kinds = {t for c in result["address_components"] for t in c["types"]}
    assert {"street_number", "route", "locality", "postal_code", "country"} <= kinds
    for component in result["address_components"]:
        assert set(component) == {"long_name", "short_name", "types"}
    assert result["plus_code"]["global_code"] == open_location_code(
        location["lat"], location["lng"]
    )
    assert result["types"] == ["street_address"]

    # Case and spacing do not matter; Google's own formatted address works too.
    messy = "  " + address.upper().replace(" ", "   ")
    assert _geocode(http, address=messy, key=DEFAULT_MAPS_KEY).json()["results"] == [result]
    again = _geocode(http, address=result["formatted_address"], key=DEFAULT_MAPS_KEY)
    assert again.json()["results"] == [result]
    by_place = _geocode(http, place_id=result["place_id"], key=DEFAULT_MAPS_KEY)
    assert by_place.json()["results"] == [result]


def test_geocode_finds_hidden_coordinates(
    fake: FakeUpstream, http: httpx.Client, world: World
) -> None:
    fake.faults.venues_without_coordinates_share = 1.0
    venue = world.venues.row(3, named=True)
    address = f"{venue['address_1']}, {venue['city']}, {venue['region']} {venue['postal_code']}"
    result = _geocode(http, address=address, key=DEFAULT_MAPS_KEY).json()["results"][0]
    assert result["geometry"]["location"] == {"lat": venue["latitude"], "lng": venue["longitude"]}


def test_geocode_zero_results(fake: FakeUpstream, http: httpx.Client, world: World) -> None:
    unknown = _geocode(http, address="1 Nowhere Lane, Atlantis", key=DEFAULT_MAPS_KEY)
    assert unknown.status_code == 200
    assert unknown.json() == {"results": [], "status": "ZERO_RESULTS"}

    venue = world.venues.row(0, named=True)
    address = f"{venue['address_1']}, {venue['city']}, {venue['region']} {venue['postal_code']}"
    fake.faults.zero_results_addresses = {address.lower()}
    assert _geocode(http, address=address, key=DEFAULT_MAPS_KEY).json()["status"] == "ZERO_RESULTS"

    fake.faults.geocode_statuses = {address: "OVER_DAILY_LIMIT"}
    forced = _geocode(http, address=address, key=DEFAULT_MAPS_KEY).json()
    assert forced["status"] == "OVER_DAILY_LIMIT"
    assert forced["error_message"]


def test_geocode_request_errors(http: httpx.Client) -> None:
    no_key = _geocode(http, address="1 Main St")
    assert no_key.status_code == 200
    assert no_key.json()["status"] == "REQUEST_DENIED"
    assert no_key.json()["error_message"]
    assert no_key.json()["results"] == []
    bad_key = _geocode(http, address="1 Main St", key="nope")
    assert bad_key.json()["status"] == "REQUEST_DENIED"
    no_address = _geocode(http, key=DEFAULT_MAPS_KEY)
    assert no_address.status_code == 400
    assert no_address.json()["status"] == "INVALID_REQUEST"
    assert no_address.json()["error_message"]
    blank = _geocode(http, key=DEFAULT_MAPS_KEY, address="  ")
    assert blank.json()["status"] == "INVALID_REQUEST"


# -- Google Places (New) ---------------------------------------------------------------------


def _place(http: httpx.Client, place_id: str, **headers: str) -> httpx.Response:
    return http.get(f"/v1/places/{place_id}", headers=headers)


def test_places_field_mask_is_honoured(
    fake: FakeUpstream, http: httpx.Client, world: World
) -> None:
    venue = world.venues.row(0, named=True)
    place_id = fake.place_id(venue["venue_id"])
    masked = _place(
        http,
        place_id,
        **PLACES_HEADERS,
        **{"X-Goog-FieldMask": "id,displayName,formattedAddress,location,types,businessStatus"},
    )
    assert masked.status_code == 200
    body = masked.json()
    fields = {"id", "displayName", "formattedAddress", "location", "types", "businessStatus"}
    assert set(body) == fields
    assert body["id"] == place_id
    assert body["displayName"] == {"text": venue["name"], "languageCode": "en"}
    assert body["location"] == {"latitude": venue["latitude"], "longitude": venue["longitude"]}
    assert body["businessStatus"] in {"OPERATIONAL", "CLOSED_TEMPORARILY", "CLOSED_PERMANENTLY"}
    assert "establishment" in body["types"]

    nested = _place(
        http, place_id, **PLACES_HEADERS, **{"X-Goog-FieldMask": "displayName.text"}
    ).json()
    assert nested == {"displayName": {"text": venue["name"]}}

    everything = _place(http, place_id, **PLACES_HEADERS, **{"X-Goog-FieldMask": "*"}).json()
    assert everything["name"] == f"places/{place_id}"
    assert everything["utcOffsetMinutes"] in (-480, -420)  # San Francisco, PST or PDT
    assert everything["primaryType"] in everything["types"]
    assert 1.0 <= everything["rating"] <= 5.0
    assert everything["websiteUri"].startswith("https://")
    for component in everything["addressComponents"]:
        assert {"longText", "shortText", "types"} <= set(component)


def test_places_errors(fake: FakeUpstream, http: httpx.Client, world: World) -> None:
    place_id = fake.place_id(world.venues["venue_id"][0])
    mask = {"X-Goog-FieldMask": "id"}

    no_mask = _place(http, place_id, **PLACES_HEADERS)
    assert no_mask.status_code == 400
    assert no_mask.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert no_mask.json()["error"]["code"] == 400

    no_key = _place(http, place_id, **mask)
    assert no_key.status_code == 403
    assert no_key.json()["error"]["status"] == "PERMISSION_DENIED"
    assert no_key.json()["error"]["message"]

    bad_key = _place(http, place_id, **mask, **{"X-Goog-Api-Key": "nope"})
    assert bad_key.status_code == 400
    assert bad_key.json()["error"]["status"] == "INVALID_ARGUMENT"

    unknown_field = _place(http, place_id, **PLACES_HEADERS, **{"X-Goog-FieldMask": "id,color"})
    assert unknown_field.status_code == 400

    unknown = _place(http, "ChIJnothing", **PLACES_HEADERS, **mask)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {
        "code": 404,
        "message": unknown.json()["error"]["message"],
        "status": "NOT_FOUND",
    }
