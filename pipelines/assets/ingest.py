"""Eventbrite events: landed pages -> parsed events and venues -> the app's Postgres."""

import json
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from pipelines.assets.common import frame_output
from pipelines.resources import LocalStorage, PostgresResource
from sources.eventbrite.landing import organization_pages, read_followed, read_page_events
from sources.eventbrite.parse import parse_events
from store.app_data import upsert_catalogue

RAW_SCHEMA: dict[str, pl.DataType] = {
    "organization_id": pl.Utf8(),
    "metro": pl.Utf8(),
    "raw_json": pl.Utf8(),
    "landed_at": pl.Datetime("us", "UTC"),
}


@dg.asset(group_name="ingest", deps=["synthetic_catalogue"], kinds={"json", "duckdb"})
def eventbrite_raw_events(storage: LocalStorage) -> dg.Output[pl.DataFrame]:
    """Every event record of every landed Eventbrite page, kept verbatim as JSON."""
    metro_of = read_followed(storage.landing)
    landed_at = datetime.now(UTC)
    pages = list(organization_pages(storage.landing))
    unfollowed = sorted({org for org, _ in pages if org not in metro_of})
    rows = [
        {
            "organization_id": org,
            "metro": metro_of[org],
            "raw_json": json.dumps(event),
            "landed_at": landed_at,
        }
        for org, page in pages
        if org in metro_of
        for event in read_page_events(page)
    ]
    return frame_output(
        pl.DataFrame(rows, schema=RAW_SCHEMA),
        pages=len(pages),
        unfollowed_organizations=dg.MetadataValue.json(unfollowed),
    )


@dg.multi_asset(
    group_name="ingest",
    outs={
        "events": dg.AssetOut(
            description="Parsed Eventbrite events, one row per event.", kinds={"duckdb"}
        ),
        "venues": dg.AssetOut(
            description="Venues of those events, with coordinates.", kinds={"duckdb"}
        ),
        "event_quarantine": dg.AssetOut(
            description="Records that failed validation, with the raw JSON and the reason.",
            kinds={"duckdb"},
        ),
    },
)
def parsed_catalogue(
    eventbrite_raw_events: pl.DataFrame,
) -> tuple[dg.Output[pl.DataFrame], dg.Output[pl.DataFrame], dg.Output[pl.DataFrame]]:
    """Parse raw records per metro with the same parser the live API client uses."""
    parsed = [
        parse_events((json.loads(raw) for raw in group["raw_json"]), metro=str(metro))
        for (metro,), group in eventbrite_raw_events.group_by("metro", maintain_order=True)
    ]
    events = pl.concat([p.events for p in parsed]).unique("event_id", keep="last")
    venues = pl.concat([p.venues for p in parsed]).unique("venue_id", keep="last")
    quarantine = pl.concat([p.quarantine for p in parsed])
    return (
        frame_output(events.sort("event_id"), quarantined=quarantine.height),
        frame_output(venues.sort("venue_id")),
        frame_output(quarantine),
    )


@dg.asset(group_name="ingest", kinds={"postgres"})
def app_catalogue(
    events: pl.DataFrame, venues: pl.DataFrame, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Events and venues upserted into the app's Postgres, where the API and swipes meet them."""
    with postgres.engine().begin() as conn:
        upsert_catalogue(conn, events=events, venues=venues)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": events.height, "venues": venues.height}
    )
