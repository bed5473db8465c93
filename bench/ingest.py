"""Ingesting one metro through the real clients: a full refresh against an incremental run.

    uv run python -m bench.ingest [--metro san-francisco] [--touch 20]

The synthetic city (default size) is served by the local fake upstream; the first run is a
full refresh (every listing page, every upcoming event's status confirmed, every venue without
coordinates geocoded), the second is the hourly case: the listings are paged again, but only
the `--touch` events changed upstream are kept, confirmed and parsed, and geocoding is served
from the warehouse cache. Both run in this process, one after the other, on the same data.
"""

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from dagster_duckdb_polars import DuckDBPolarsIOManager

from pipelines.assets.ingest import eventbrite_raw_pages, geocoded_venues, parsed_catalogue
from pipelines.resources import EventbriteResource, GoogleMapsResource
from pipelines.warehouse import SCHEMA
from sources.fakes import DEFAULT_EVENTBRITE_TOKEN, DEFAULT_MAPS_KEY, FakeUpstream, FaultPlan
from sources.fakes.server import EVENT, GEOCODE, ORGANIZATION_EVENTS, PLACE_DETAILS
from sources.synthetic.world import CityConfig, build_world

ENDPOINTS = {
    "list pages": ORGANIZATION_EVENTS,
    "single events": EVENT,
    "geocode": GEOCODE,
    "place details": PLACE_DETAILS,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metro", default="san-francisco")
    parser.add_argument("--touch", type=int, default=20)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    world = build_world(CityConfig(now=now))
    followed = world.organizations_by_metro()
    folder = Path(tempfile.mkdtemp(prefix="godo-bench-ingest-"))
    warehouse = str(folder / "warehouse.duckdb")
    faults = FaultPlan(venues_without_coordinates_share=0.15)
    instance = dg.DagsterInstance.ephemeral()
    with FakeUpstream(world, faults=faults) as upstream:
        resources: dict[str, Any] = {
            "io_manager": DuckDBPolarsIOManager(database=warehouse, schema=SCHEMA),
            "warehouse": DuckDBResource(database=warehouse),
            "eventbrite": EventbriteResource(
                token=DEFAULT_EVENTBRITE_TOKEN,
                base_url=upstream.eventbrite_base_url,
                followed_organizations=followed,
                time_filter="all",
                calls_per_hour=1_000_000,
                status_checks_per_run=100_000,
            ),
            "maps": GoogleMapsResource(
                api_key=DEFAULT_MAPS_KEY,
                geocode_base_url=upstream.geocode_base_url,
                places_base_url=upstream.places_base_url,
            ),
        }

        def run(label: str) -> dict[str, Any]:
            before = {name: upstream.count(e) for name, e in ENDPOINTS.items()}
            started = time.perf_counter()
            dg.materialize(
                [eventbrite_raw_pages, parsed_catalogue, geocoded_venues],
                partition_key=args.metro,
                resources=resources,
                instance=instance,
            )
            seconds = time.perf_counter() - started
            calls = {name: upstream.count(e) - before[name] for name, e in ENDPOINTS.items()}
            return {"run": label, "seconds": round(seconds, 2), **calls}

        full = run("full refresh")
        events = world.events.filter(pl.col("metro") == args.metro)["event_id"].sort()
        upstream.faults.touch(events[: args.touch].to_list())
        incremental = run(f"incremental ({args.touch} changed)")
    table = pl.DataFrame([full, incremental])
    n_events = len(events)
    print(
        f"ingest of {args.metro}: {n_events:,} events, "
        f"{world.venues.filter(pl.col('metro') == args.metro).height} venues"
    )
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(table)
    print(
        f"speed-up of the hourly run: {full['seconds'] / incremental['seconds']:.1f} x; "
        f"single-event calls {full['single events']:,} -> {incremental['single events']:,}; "
        f"geocode calls {full['geocode']:,} -> {incremental['geocode']:,}"
    )


if __name__ == "__main__":
    main()
