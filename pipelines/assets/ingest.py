"""Eventbrite events and Google Maps venue data, one metro partition at a time.

eventbrite_raw_pages (API -> append-only raw log) -> parsed_catalogue (events, venues,
event_quarantine) -> geocoded_venues (Geocoding + Places, cached) -> app_catalogue (Postgres).
"""

import json
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from features.geo import flag_coordinates
from pipelines.partitions import metro_partitions
from pipelines.resources import (
    EventbriteResource,
    GoogleMapsResource,
    PostgresResource,
    RedisResource,
)
from pipelines.venues import geocode_venues, metro_bounds
from pipelines.warehouse import (
    RAW_EVENTS_SCHEMA,
    RAW_VENUES_SCHEMA,
    append,
    latest_raw_events,
    latest_raw_venues,
    venues_answered,
)
from sources.eventbrite.client import parse_utc
from sources.eventbrite.fetch import VenueFetch, fetch_listings, fetch_venues
from sources.eventbrite.parse import parse_events, unexpanded_venue_ids
from store.app_data import upsert_catalogue
from store.live_cache import touch_catalogue

HIGH_WATER_MARK = "high_water_mark"
QUARANTINE_SHARE_LIMIT = 0.05
# Records fetched within this of the newest fetch belong to the last ingest run.
FRESH = timedelta(minutes=10)
PARTITIONED = {"partition_expr": "metro"}


def previous_high_water_mark(context: dg.AssetExecutionContext) -> datetime | None:
    """The newest `changed` seen by this partition's last materialization, if any."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=context.asset_key, asset_partitions=[context.partition_key]
        ),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get(HIGH_WATER_MARK)
    return datetime.fromisoformat(str(value.value)) if value is not None else None


@dg.asset(partitions_def=metro_partitions, group_name="ingest", kinds={"eventbrite", "duckdb"})
def eventbrite_raw_pages(
    context: dg.AssetExecutionContext, eventbrite: EventbriteResource, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """Event records of the metro's followed listings, appended verbatim to a raw log."""
    metro = context.partition_key
    previous = previous_high_water_mark(context)
    since = None
    if previous is not None and not eventbrite.full_refresh:
        since = previous - timedelta(minutes=eventbrite.overlap_minutes)
    with eventbrite.client() as client:
        fetch = fetch_listings(
            client,
            eventbrite.followed(metro),
            changed_since=since,
            max_status_checks=eventbrite.status_checks_per_run,
        )
        rows = [_raw_row(metro, src, e, fetch.listed_at) for src, e in fetch.listed] + [
            _raw_row(metro, src, e, fetch.confirmed_at) for src, e in fetch.confirmed
        ]
        frame = pl.DataFrame(rows, schema=RAW_EVENTS_SCHEMA)
        with warehouse.get_connection() as conn:
            append(conn, "eventbrite_raw_events", frame)
            # Over the whole catalogue, not only this pass: a venue that failed last time
            # is asked again although its event did not change.
            named = unexpanded_venue_ids(
                json.loads(r) for r in latest_raw_events(conn, metro)["raw_json"]
            )
            answered = venues_answered(
                conn,
                metro,
                not_found_since=fetch.listed_at
                - timedelta(hours=eventbrite.venue_not_found_retry_hours),
            )
        venues = fetch_venues(
            client, sorted(named - answered), limit=eventbrite.venue_fetches_per_run
        )
        with warehouse.get_connection() as conn:
            append(conn, "eventbrite_raw_venues", _raw_venues(metro, venues))
        stats = client.stats
    newest = frame["changed"].drop_nulls().max() if frame.height else None
    high_water_mark = max((t for t in (previous, parse_utc(newest)) if t is not None), default=None)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "pages": fetch.pages,
            "skipped_unchanged": fetch.skipped_unchanged,
            "calls": stats.calls,
            "retries": stats.retries,
            "status_checks": len(fetch.confirmed),
            "status_disagreements": fetch.disagreements,
            "venues_fetched": len(venues.found),
            "venues_not_found": len(venues.not_found),
            "venue_fetch_failures": len(venues.failed),
            "full_refresh": since is None,
            HIGH_WATER_MARK: high_water_mark.isoformat() if high_water_mark else None,
        }
    )


def _raw_row(
    metro: str, listed_by: str, event: dict[str, Any], fetched_at: datetime
) -> dict[str, Any]:
    return {
        "metro": metro,
        "listed_by": listed_by,
        "event_id": str(event["id"]) if event.get("id") else None,
        "changed": event.get("changed"),
        "raw_json": json.dumps(event, sort_keys=True),
        "fetched_at": fetched_at,
    }


def _raw_venues(metro: str, venues: VenueFetch) -> pl.DataFrame:
    found = [
        (venue_id, "found", json.dumps(record, sort_keys=True))
        for venue_id, record in venues.found.items()
    ]
    missing = [(venue_id, "not_found", None) for venue_id in venues.not_found]
    return pl.DataFrame(
        [
            {
                "metro": metro,
                "venue_id": venue_id,
                "status": status,
                "raw_json": raw,
                "fetched_at": venues.fetched_at,
            }
            for venue_id, status, raw in found + missing
        ],
        schema=RAW_VENUES_SCHEMA,
    )


@dg.multi_asset(
    partitions_def=metro_partitions,
    group_name="ingest",
    deps=[eventbrite_raw_pages],
    outs={
        "events": dg.AssetOut(
            description="Parsed Eventbrite events, one row per event.",
            kinds={"duckdb"},
            metadata=PARTITIONED,
        ),
        "venues": dg.AssetOut(
            description="Venues of those events, as Eventbrite describes them.",
            kinds={"duckdb"},
            metadata=PARTITIONED,
        ),
        "event_quarantine": dg.AssetOut(
            description="Records that failed validation, with the raw JSON and the reason.",
            kinds={"duckdb"},
            metadata=PARTITIONED,
        ),
    },
    check_specs=[
        dg.AssetCheckSpec(
            "every_event_has_a_start",
            asset="events",
            description="Every parsed event has a start time: the feed and the calendar "
            "order and filter by it.",
        ),
        dg.AssetCheckSpec(
            "no_duplicate_event_ids",
            asset="events",
            description="Each event id appears once in the metro's parsed events (the parser "
            "keeps the newest record of each).",
        ),
        dg.AssetCheckSpec(
            "quarantine_share_under_limit",
            asset="events",
            description=f"At most {QUARANTINE_SHARE_LIMIT:.0%} of the raw records fail "
            "validation; more means Eventbrite's format changed or the parser broke.",
        ),
    ],
)
def parsed_catalogue(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> Any:
    """The newest raw record of each event, parsed; what fails validation is quarantined."""
    metro = context.partition_key
    with warehouse.get_connection() as conn:
        raw = latest_raw_events(conn, metro)
        fetched_venues = latest_raw_venues(conn, metro)
    parsed = parse_events(
        (json.loads(r) for r in raw["raw_json"]), metro=metro, fetched_venues=fetched_venues
    )
    events, quarantine = parsed.events, parsed.quarantine.with_columns(metro=pl.lit(metro))
    share = quarantine.height / max(raw.height, 1)
    updated = raw.filter(pl.col("fetched_at") >= pl.col("fetched_at").max() - FRESH).height
    yield dg.Output(
        events,
        "events",
        metadata={
            "dagster/row_count": events.height,
            "parsed": events.height,
            "updated_by_last_fetch": updated,
            "quarantined": quarantine.height,
        },
    )
    yield dg.Output(parsed.venues, "venues", metadata={"dagster/row_count": parsed.venues.height})
    yield dg.Output(
        quarantine, "event_quarantine", metadata={"dagster/row_count": quarantine.height}
    )
    yield dg.AssetCheckResult(
        asset_key="events",
        check_name="every_event_has_a_start",
        passed=events["start_utc"].null_count() == 0,
        metadata={"missing_start": events["start_utc"].null_count()},
    )
    duplicates = events.height - events["event_id"].n_unique()
    yield dg.AssetCheckResult(
        asset_key="events",
        check_name="no_duplicate_event_ids",
        passed=duplicates == 0,
        metadata={"duplicates": duplicates, "dropped_by_parser": parsed.duplicates_dropped},
    )
    yield dg.AssetCheckResult(
        asset_key="events",
        check_name="quarantine_share_under_limit",
        passed=share <= QUARANTINE_SHARE_LIMIT,
        metadata={
            "quarantined": quarantine.height,
            "share": round(share, 4),
            "limit": QUARANTINE_SHARE_LIMIT,
        },
    )


@dg.asset(
    partitions_def=metro_partitions,
    group_name="ingest",
    kinds={"googlemaps", "duckdb"},
    metadata=PARTITIONED,
    check_specs=[
        dg.AssetCheckSpec(
            "coordinates_inside_metro",
            asset="geocoded_venues",
            description="No venue is left with coordinates outside its metro's bounding box "
            "(Eventbrite's, else Google's geocode). A WARN: the venue still lists, only its "
            "distance features are off.",
        )
    ],
)
def geocoded_venues(
    context: dg.AssetExecutionContext,
    venues: pl.DataFrame,
    maps: GoogleMapsResource,
    warehouse: DuckDBResource,
) -> Any:
    """Venues with trusted coordinates: Eventbrite's, else Google's (cached by address)."""
    flagged = flag_coordinates(venues, metro_bounds())
    with warehouse.get_connection() as conn, maps.client() as client:
        result = geocode_venues(flagged, client, conn)
    located = result.venues
    outside = int(located["outside_metro"].sum())
    yield dg.Output(located, metadata={"dagster/row_count": located.height, **result.metadata})
    yield dg.AssetCheckResult(
        check_name="coordinates_inside_metro",
        passed=outside == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "outside_metro": outside,
            "without_coordinates": int((~located["has_coordinates"]).sum()),
            "approximate_geocodes": int((located["coordinate_quality"] == "approximate").sum()),
        },
    )


@dg.asset(group_name="ingest", kinds={"postgres"})
def app_catalogue(
    context: dg.AssetExecutionContext,
    events: pl.DataFrame,
    geocoded_venues: pl.DataFrame,
    postgres: PostgresResource,
    redis: RedisResource,
) -> dg.MaterializeResult:
    """Events and venues upserted into the app's Postgres, where the API and swipes meet them.

    Then the API processes' cached cards are invalidated, so an event cancelled upstream
    leaves every feed on the next request.
    """
    with postgres.engine().begin() as conn:
        written = upsert_catalogue(conn, events=events, venues=geocoded_venues)
    invalidated = touch_catalogue(redis.client(), redis.key_layout())
    if written.orphaned_event_ids:
        context.log.warning(
            "%d event(s) left out, their venue is unknown: %s",
            len(written.orphaned_event_ids),
            ", ".join(written.orphaned_event_ids[:20]),
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": written.events,
            "venues": written.venues,
            "events_without_venue": len(written.orphaned_event_ids),
            "api_caches_invalidated": invalidated,
        }
    )
