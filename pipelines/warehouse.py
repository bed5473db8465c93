"""Tables the ingest keeps in DuckDB itself, beside the ones the I/O manager writes.

The raw Eventbrite logs are append-only (every record as fetched, so a parser change can be
replayed without calling the API): events, and the venues fetched by id for records that
name a venue without expanding it. The geocoding and place caches are keyed lookups that
survive runs. All plain SQL here; assets reach them through the `warehouse` resource.
Columns added to a table later are added to an existing warehouse by `ensure_tables`.
"""

import json
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

SCHEMA = "godo"

RAW_EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "metro": pl.Utf8(),
    "listed_by": pl.Utf8(),  # "organizations/123", "venues/456", "organizers/789"
    "event_id": pl.Utf8(),
    "changed": pl.Utf8(),
    "raw_json": pl.Utf8(),
    "fetched_at": pl.Datetime("us", "UTC"),
}

RAW_VENUES_SCHEMA: dict[str, pl.DataType] = {
    "metro": pl.Utf8(),
    "venue_id": pl.Utf8(),
    "status": pl.Utf8(),  # "found" (raw_json is the venue) or "not_found" (Eventbrite's 404)
    "raw_json": pl.Utf8(),
    "fetched_at": pl.Datetime("us", "UTC"),
}

GEOCODE_SCHEMA: dict[str, pl.DataType] = {
    "address_key": pl.Utf8(),
    "status": pl.Utf8(),
    "place_id": pl.Utf8(),
    "formatted_address": pl.Utf8(),
    "geo_latitude": pl.Float64(),
    "geo_longitude": pl.Float64(),
    "location_type": pl.Utf8(),
    "fetched_at": pl.Datetime("us", "UTC"),
    # Google's `partial_match` (added later: null in rows cached before, read as false).
    "partial_match": pl.Boolean(),
}

PLACE_SCHEMA: dict[str, pl.DataType] = {
    "place_id": pl.Utf8(),
    "display_name": pl.Utf8(),
    "business_status": pl.Utf8(),
    "primary_type": pl.Utf8(),
    "website_uri": pl.Utf8(),
    "fetched_at": pl.Datetime("us", "UTC"),
}

_DDL = {
    "eventbrite_raw_events": RAW_EVENTS_SCHEMA,
    "eventbrite_raw_venues": RAW_VENUES_SCHEMA,
    "geocode_cache": GEOCODE_SCHEMA,
    "place_cache": PLACE_SCHEMA,
}
_DUCK_TYPES = {
    pl.Utf8(): "VARCHAR",
    pl.Float64(): "DOUBLE",
    pl.Datetime("us", "UTC"): "TIMESTAMPTZ",
    pl.Boolean(): "BOOLEAN",
}


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for table, schema in _DDL.items():
        columns = ", ".join(f"{name} {_DUCK_TYPES[dtype]}" for name, dtype in schema.items())
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{table} ({columns})")
        for name, dtype in schema.items():
            conn.execute(
                f"ALTER TABLE {SCHEMA}.{table} ADD COLUMN IF NOT EXISTS {name} {_DUCK_TYPES[dtype]}"
            )


def append(conn: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Append rows (columns in the table's order) and return how many."""
    ensure_tables(conn)
    if frame.height:
        rows = frame.select(list(_DDL[table]))  # noqa: F841 - read by DuckDB's replacement scan
        conn.execute(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM rows")
    return frame.height


def latest_raw_events(conn: duckdb.DuckDBPyConnection, metro: str) -> pl.DataFrame:
    """The newest fetched record of every event of `metro`: today's view of the catalogue."""
    ensure_tables(conn)
    return conn.execute(
        f"""
        SELECT * FROM {SCHEMA}.eventbrite_raw_events
        WHERE metro = ?
        QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY fetched_at DESC) = 1
        ORDER BY event_id
        """,
        [metro],
    ).pl()


def latest_raw_venues(
    conn: duckdb.DuckDBPyConnection, metro: str
) -> dict[str, dict[str, Any] | None]:
    """The newest answer for every venue fetched by id for `metro`: its record, or None (404)."""
    ensure_tables(conn)
    rows = conn.execute(
        f"""
        SELECT venue_id, status, raw_json FROM {SCHEMA}.eventbrite_raw_venues
        WHERE metro = ?
        QUALIFY row_number() OVER (PARTITION BY venue_id ORDER BY fetched_at DESC) = 1
        """,
        [metro],
    ).fetchall()
    return {
        venue_id: json.loads(raw) if status == "found" and raw else None
        for venue_id, status, raw in rows
    }


def venues_answered(
    conn: duckdb.DuckDBPyConnection, metro: str, *, not_found_since: datetime
) -> set[str]:
    """Venue ids not worth asking again: found once, or a 404 newer than `not_found_since`."""
    ensure_tables(conn)
    rows = conn.execute(
        f"""
        SELECT venue_id FROM {SCHEMA}.eventbrite_raw_venues
        WHERE metro = ? AND (status = 'found' OR fetched_at >= ?)
        """,
        [metro, not_found_since],
    ).fetchall()
    return {row[0] for row in rows}


def cached(conn: duckdb.DuckDBPyConnection, table: str, key: str, keys: list[str]) -> pl.DataFrame:
    """Newest cached row for each of `keys` (by `key`), from `geocode_cache` or `place_cache`."""
    ensure_tables(conn)
    if not keys:
        return pl.DataFrame(schema=_DDL[table])
    return conn.execute(
        f"""
        SELECT * FROM {SCHEMA}.{table} WHERE {key} IN (SELECT unnest(?))
        QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY fetched_at DESC) = 1
        """,
        [keys],
    ).pl()
