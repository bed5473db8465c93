"""Geocoding venues with a cache in the warehouse, so known venues cost no call twice.

I/O glue between the Maps client, the DuckDB caches and the pure transforms in
`features.geo`; the asset in `pipelines/assets/ingest.py` stays a thin wrapper around it.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl

from core.metros import METROS
from features.geo import apply_geocodes, flag_coordinates, needs_geocoding
from pipelines.warehouse import GEOCODE_SCHEMA, PLACE_SCHEMA, append, cached
from sources.google_maps.client import MapsClient, estimated_cost_usd, normalize_address


@dataclass(frozen=True)
class GeocodeOutcome:
    venues: pl.DataFrame
    metadata: dict[str, Any]


def metro_bounds() -> pl.DataFrame:
    """Bounding box of every metro Godo knows."""
    return pl.DataFrame(
        [
            {
                "metro": key,
                "min_lat": m.min_lat,
                "max_lat": m.max_lat,
                "min_lon": m.min_lon,
                "max_lon": m.max_lon,
            }
            for key, m in METROS.items()
        ]
    )


def geocode_venues(
    flagged: pl.DataFrame, client: MapsClient, conn: duckdb.DuckDBPyConnection
) -> GeocodeOutcome:
    """Resolve coordinates for venues that need it, calling Google only on cache misses."""
    keyed = flagged.with_columns(
        address_key=pl.col("address").map_elements(normalize_address, return_dtype=pl.Utf8)
    )
    # An address that normalizes to nothing cannot be geocoded; it stays without coordinates.
    wanted = needs_geocoding(keyed).filter(pl.col("address_key").str.len_chars() > 0)
    addresses = dict(wanted.select("address_key", "address").unique("address_key").iter_rows())
    hits = cached(conn, "geocode_cache", "address_key", list(addresses))
    now = datetime.now(UTC)
    fresh = pl.DataFrame(
        [
            _geocode_row(key, client.geocode(addresses[key]), now)
            for key in sorted(set(addresses) - set(hits["address_key"]))
        ],
        schema=GEOCODE_SCHEMA,
    )
    append(conn, "geocode_cache", fresh)
    geocodes = pl.concat([hits.cast(GEOCODE_SCHEMA), fresh])  # type: ignore[arg-type]
    located = apply_geocodes(keyed, geocodes)
    places = _place_details(located, client, conn, now)
    venues = flag_coordinates(
        located.join(places, on="place_id", how="left").drop("address_key"), metro_bounds()
    )
    metadata = {
        "geocode_calls": fresh.height,
        "geocode_cache_hits": hits.height,
        "zero_results": int((geocodes["status"] == "ZERO_RESULTS").sum()),
        "approximate_geocodes": int((located["coordinate_quality"] == "approximate").sum()),
        "estimated_cost_usd": round(estimated_cost_usd(client.stats), 4),
    }
    return GeocodeOutcome(venues, metadata)


def _geocode_row(address_key: str, result: Any, now: datetime) -> dict[str, Any]:
    return {
        "address_key": address_key,
        "status": result.status,
        "place_id": result.place_id,
        "formatted_address": result.formatted_address,
        "geo_latitude": result.latitude,
        "geo_longitude": result.longitude,
        "location_type": result.location_type,
        "fetched_at": now,
        "partial_match": result.partial_match,
    }


def _place_details(
    located: pl.DataFrame, client: MapsClient, conn: duckdb.DuckDBPyConnection, now: datetime
) -> pl.DataFrame:
    """Business status and type of each geocoded place, from the cache or Places (New)."""
    place_ids = located["place_id"].drop_nulls().unique().sort().to_list()
    hits = cached(conn, "place_cache", "place_id", place_ids)
    fresh_rows = []
    for place_id in sorted(set(place_ids) - set(hits["place_id"])):
        place = client.place_details(place_id)
        fresh_rows.append(
            {
                "place_id": place_id,
                "display_name": place.display_name,
                "business_status": place.business_status,
                "primary_type": place.primary_type,
                "website_uri": place.website_uri,
                "fetched_at": now,
            }
        )
    fresh = pl.DataFrame(fresh_rows, schema=PLACE_SCHEMA)
    append(conn, "place_cache", fresh)
    return pl.concat([hits.cast(PLACE_SCHEMA), fresh]).select(  # type: ignore[arg-type]
        "place_id", "business_status"
    )
