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
from dagster_duckdb import DuckDBResource
from dagster_duckdb_polars import DuckDBPolarsIOManager

from pipelines.assets.ingest import eventbrite_raw_pages, geocoded_venues, parsed_catalogue
from pipelines.resources import EventbriteResource, GoogleMapsResource
from pipelines.warehouse import SCHEMA
from sources.fakes import DEFAULT_EVENTBRITE_TOKEN, DEFAULT_MAPS_KEY, FakeUpstream, FaultPlan
from sources.fakes.server import EVENT, GEOCODE, ORGANIZATION_EVENTS
from sources.synthetic.world import CityConfig, World, build_world

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
        followed: dict[str, list[str]] = {}
        for org, metro in world.organizations.select("organization_id", "metro").iter_rows():
            followed.setdefault(metro, []).append(org)
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
