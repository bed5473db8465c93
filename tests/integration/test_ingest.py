"""Ingest through the real Eventbrite and Maps clients against the local fake upstream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest
import sqlalchemy as sa
from dagster_duckdb import DuckDBResource
from dagster_duckdb_polars import DuckDBPolarsIOManager

from core.metros import METROS
from godo.services import ServiceUrls
from pipelines.assets.ingest import (
    app_catalogue,
    eventbrite_raw_pages,
    geocoded_venues,
    parsed_catalogue,
)
from pipelines.resources import (
    EventbriteResource,
    GoogleMapsResource,
    PostgresResource,
    RedisResource,
)
from pipelines.warehouse import SCHEMA
from sources.fakes import DEFAULT_EVENTBRITE_TOKEN, DEFAULT_MAPS_KEY, FakeUpstream, FaultPlan
from sources.fakes.server import EVENT, GEOCODE, ORGANIZATION_EVENTS, PLACE_DETAILS, VENUE
from sources.synthetic.world import CATEGORIES, CityConfig, World, build_world
from store.keys import RedisKeys
from store.schema import events as events_table
from store.schema import venues as venues_table

METRO = "san-francisco"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
INGEST = [eventbrite_raw_pages, parsed_catalogue, geocoded_venues]


@dataclass
class Harness:
    upstream: FakeUpstream
    world: World
    resources: dict[str, Any]
    instance: dg.DagsterInstance
    warehouse: Path

    def ingest(self) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            INGEST, partition_key=METRO, resources=self.resources, instance=self.instance
        )

    def table(self, name: str) -> pl.DataFrame:
        with duckdb.connect(str(self.warehouse), read_only=True) as conn:
            return conn.sql(f"SELECT * FROM {SCHEMA}.{name} WHERE metro = '{METRO}'").pl()

    def metadata(self, result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
        [materialization] = result.asset_materializations_for_node(asset)
        return {k: v.value for k, v in materialization.metadata.items()}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    world = build_world(CityConfig.tiny(now=NOW))
    faults = FaultPlan(venues_without_coordinates_share=0.6)
    with FakeUpstream(world, faults=faults) as upstream:
        followed = world.organizations_by_metro()
        warehouse = tmp_path / "warehouse.duckdb"
        resources = {
            "io_manager": DuckDBPolarsIOManager(database=str(warehouse), schema=SCHEMA),
            "warehouse": DuckDBResource(database=str(warehouse)),
            "eventbrite": EventbriteResource(
                token=DEFAULT_EVENTBRITE_TOKEN,
                base_url=upstream.eventbrite_base_url,
                followed_organizations=followed,
                time_filter="all",
            ),
            "maps": GoogleMapsResource(
                api_key=DEFAULT_MAPS_KEY,
                geocode_base_url=upstream.geocode_base_url,
                places_base_url=upstream.places_base_url,
            ),
        }
        yield Harness(upstream, world, resources, dg.DagsterInstance.ephemeral(), warehouse)


def metro_event_ids(world: World) -> list[str]:
    return world.events.filter(pl.col("metro") == METRO)["event_id"].sort().to_list()


def test_first_run_ingests_every_event_of_the_metro(harness: Harness) -> None:
    result = harness.ingest()
    assert result.success
    events = harness.table("events")
    assert sorted(events["event_id"].to_list()) == metro_event_ids(harness.world)
    raw = harness.metadata(result, "eventbrite_raw_pages")
    assert raw["full_refresh"] is True and raw["pages"] >= 1
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "every_event_has_a_start": True,
        "no_duplicate_event_ids": True,
        "quarantine_share_under_limit": True,
        "coordinates_inside_metro": True,
    }


def test_incremental_run_takes_only_changed_events(harness: Harness) -> None:
    first = harness.ingest()
    high_water_mark = harness.metadata(first, "eventbrite_raw_pages")["high_water_mark"]
    first_fetch = harness.table("eventbrite_raw_events")["fetched_at"].max()
    changed = metro_event_ids(harness.world)[:3]
    harness.upstream.faults.touch(changed, at=datetime(2026, 12, 1, tzinfo=UTC))
    second = harness.ingest()
    raw = harness.metadata(second, "eventbrite_raw_pages")
    assert raw["full_refresh"] is False
    assert raw["high_water_mark"] == "2026-12-01T00:00:00+00:00"
    # What comes back: the touched events, plus those changed within the overlap window
    # before the old mark (late writes upstream are never missed).
    log = harness.table("eventbrite_raw_events")
    listed = log.filter(pl.col("fetched_at") > first_fetch)["event_id"].unique().to_list()
    overlap = timedelta(minutes=harness.resources["eventbrite"].overlap_minutes)
    cut_off = datetime.fromisoformat(high_water_mark) - overlap
    in_window = harness.world.events.filter(
        (pl.col("metro") == METRO) & (pl.col("changed") >= cut_off)
    )["event_id"].to_list()
    assert set(listed) == set(changed) | set(in_window)
    assert len(listed) < len(metro_event_ids(harness.world)) / 4
    assert raw["skipped_unchanged"] == len(metro_event_ids(harness.world)) - len(set(listed))
    # The catalogue still holds every event: increments add to it, never replace it.
    assert harness.table("events").height == len(metro_event_ids(harness.world))


def test_cancelled_event_listed_as_live_is_deactivated(harness: Harness) -> None:
    upcoming = harness.world.events.filter(
        (pl.col("metro") == METRO) & (pl.col("status") == "live")
    )["event_id"].sort()
    victim = upcoming[0]
    harness.ingest()
    assert harness.table("events").filter(pl.col("event_id") == victim)["is_active"].item()
    harness.upstream.faults.update(cancelled_event_ids={victim})
    harness.upstream.faults.touch([victim], at=datetime(2026, 12, 1, tzinfo=UTC))
    calls_before = harness.upstream.count(EVENT)
    result = harness.ingest()
    row = harness.table("events").filter(pl.col("event_id") == victim)
    assert row["status"].item() == "canceled" and row["is_active"].item() is False
    meta = harness.metadata(result, "eventbrite_raw_pages")
    assert meta["status_disagreements"] == 1
    # Only events changed since the last run are confirmed by id, not the whole catalogue.
    assert harness.upstream.count(EVENT) - calls_before == meta["status_checks"]
    assert meta["status_checks"] < calls_before / 4


def test_malformed_records_are_quarantined_with_a_reason(harness: Harness) -> None:
    broken = metro_event_ids(harness.world)[:2]
    harness.upstream.faults.update(malformed_event_ids=set(broken))
    result = harness.ingest()
    quarantine = harness.table("event_quarantine")
    assert sorted(quarantine["event_id"].to_list()) == sorted(broken)
    assert all(reason and ":" in reason for reason in quarantine["reason"])
    assert set(broken).isdisjoint(harness.table("events")["event_id"].to_list())
    share = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert share["quarantine_share_under_limit"].metadata["quarantined"].value == 2


def test_geocode_cache_makes_no_calls_on_the_second_run(harness: Harness) -> None:
    first = harness.ingest()
    calls = harness.upstream.count(GEOCODE)
    meta = harness.metadata(first, "geocoded_venues")
    assert calls > 0 and meta["geocode_calls"] == calls
    venues = harness.table("geocoded_venues")
    geocoded = venues.filter(pl.col("coordinate_source") == "geocoded")
    assert geocoded.height > 0 and geocoded["latitude"].null_count() == 0
    second = harness.ingest()
    assert harness.upstream.count(GEOCODE) == calls
    assert harness.metadata(second, "geocoded_venues")["geocode_calls"] == 0
    assert harness.metadata(second, "geocoded_venues")["geocode_cache_hits"] == calls


def test_rate_limit_burst_is_ridden_out(harness: Harness) -> None:
    harness.upstream.faults.update(burst_429=2, burst_429_scope="eventbrite", retry_after_seconds=1)
    result = harness.ingest()
    assert harness.metadata(result, "eventbrite_raw_pages")["retries"] == 2
    assert harness.table("events").height == len(metro_event_ids(harness.world))
    assert harness.upstream.count(ORGANIZATION_EVENTS) >= 3


def test_a_followed_venue_brings_in_its_events(harness: Harness) -> None:
    venue = harness.world.events.filter(pl.col("metro") == METRO)["venue_id"].mode()[0]
    harness.resources["eventbrite"] = EventbriteResource(
        token=DEFAULT_EVENTBRITE_TOKEN,
        base_url=harness.upstream.eventbrite_base_url,
        followed_venues={METRO: [venue]},
        time_filter="all",
    )
    result = harness.ingest()
    assert result.success
    expected = harness.world.events.filter(pl.col("venue_id") == venue)["event_id"].sort()
    assert harness.table("events")["event_id"].sort().to_list() == expected.to_list()
    assert set(harness.table("eventbrite_raw_events")["listed_by"]) == {f"venues/{venue}"}


def _to_postgres(harness: Harness, database_url: str, urls: ServiceUrls, keys: RedisKeys) -> Any:
    resources = harness.resources | {
        "postgres": PostgresResource(database_url=database_url),
        "redis": RedisResource(url=urls.redis_url, prefix=keys.prefix),
    }
    return dg.materialize(
        [*INGEST, app_catalogue],
        selection=[app_catalogue],
        resources=resources,
        instance=harness.instance,
    )


def test_an_unexpanded_venue_is_fetched_and_the_batch_reaches_postgres(
    harness: Harness,
    engine: sa.Engine,
    database_url: str,
    service_urls: ServiceUrls,
    redis_keys: RedisKeys,
) -> None:
    """A record with `venue_id` and `category_id` only (no expansions) used to fail the
    catalogue upsert on the venue foreign key and roll back every event with it."""
    lonely, bare = _a_venue_never_expanded(harness)
    harness.upstream.faults.update(unexpanded_event_ids=bare)
    result = harness.ingest()
    assert harness.metadata(result, "eventbrite_raw_pages")["venues_fetched"] == 1
    assert harness.upstream.count(VENUE) == 1
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["quarantine_share_under_limit"].metadata["quarantined"].value == 0
    assert _to_postgres(harness, database_url, service_urls, redis_keys).success
    with engine.connect() as conn:
        stored = conn.execute(sa.select(events_table.c.id, events_table.c.category)).all()
        venue = conn.execute(
            sa.select(venues_table.c.id).where(venues_table.c.id == lonely["venue_id"])
        ).scalar_one_or_none()
    assert sorted(row.id for row in stored) == metro_event_ids(harness.world)
    category = dict(stored)[lonely["event_id"]]
    assert category != "Other" and category == _category_name(lonely["category_id"])
    assert venue == lonely["venue_id"]
    # Known now: the next run does not ask again.
    harness.ingest()
    assert harness.upstream.count(VENUE) == 1


def _a_venue_never_expanded(harness: Harness) -> tuple[dict[str, Any], set[str]]:
    """An event of the metro, and every event at its venue: served without expansions, no
    record of the batch carries that venue."""
    events = harness.world.events.filter(pl.col("metro") == METRO).sort("event_id")
    first = events.row(0, named=True)
    bare = set(events.filter(pl.col("venue_id") == first["venue_id"])["event_id"])
    return first, bare


def _category_name(category_id: str) -> str:
    return next(c.name for c in CATEGORIES if c.id == category_id)


def test_a_venue_eventbrite_cannot_find_quarantines_only_its_event(
    harness: Harness,
    engine: sa.Engine,
    database_url: str,
    service_urls: ServiceUrls,
    redis_keys: RedisKeys,
) -> None:
    lonely, bare = _a_venue_never_expanded(harness)
    harness.upstream.faults.update(
        unexpanded_event_ids=bare, missing_venue_ids={lonely["venue_id"]}
    )
    result = harness.ingest()
    assert harness.metadata(result, "eventbrite_raw_pages")["venues_not_found"] == 1
    quarantine = harness.table("event_quarantine")
    assert set(quarantine["event_id"]) == bare
    assert set(quarantine["reason"]) == {
        f"venue_id: venue {lonely['venue_id']} is not expanded and "
        f"GET /v3/venues/{lonely['venue_id']}/ is 404"
    }
    assert _to_postgres(harness, database_url, service_urls, redis_keys).success
    with engine.connect() as conn:
        stored = set(conn.execute(sa.select(events_table.c.id)).scalars())
    assert stored == set(metro_event_ids(harness.world)) - bare
    # A 404 is an answer: not asked again every hour.
    harness.ingest()
    assert harness.upstream.count(VENUE) == 1


def test_an_approximate_geocode_is_flagged_and_not_used_as_the_venue_point(
    harness: Harness,
    engine: sa.Engine,
    database_url: str,
    service_urls: ServiceUrls,
    redis_keys: RedisKeys,
) -> None:
    """Google's city-level answer (partial_match, APPROXIMATE at the city centre) used to be
    stored as the venue's exact point."""
    hidden = sorted(harness.upstream.venues_without_coordinates())
    metro_venues = harness.world.venues.filter(
        (pl.col("metro") == METRO) & pl.col("venue_id").is_in(hidden)
    )
    venue = metro_venues.row(0, named=True)
    address = f"{venue['address_1']}, {venue['city']}, {venue['region']} {venue['postal_code']}"
    harness.upstream.faults.update(approximate_addresses={address})
    result = harness.ingest()
    located = harness.table("geocoded_venues")
    row = located.filter(pl.col("venue_id") == venue["venue_id"]).row(0, named=True)
    assert row["coordinate_quality"] == "approximate"
    assert row["latitude"] is None and row["longitude"] is None and row["place_id"] is None
    others = located.filter(pl.col("venue_id") != venue["venue_id"])
    assert set(others["coordinate_quality"]) == {"exact"}
    assert harness.metadata(result, "geocoded_venues")["approximate_geocodes"] == 1
    # The city's place is never looked up as if it were the venue.
    assert harness.upstream.count(PLACE_DETAILS) == others["place_id"].drop_nulls().n_unique()
    assert _to_postgres(harness, database_url, service_urls, redis_keys).success
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(venues_table).where(venues_table.c.id == venue["venue_id"])
        ).one()
    centre = METROS[METRO]
    assert (stored.latitude, stored.longitude) != (centre.center_lat, centre.center_lon)
    assert stored.latitude is None and stored.coordinate_quality == "approximate"
