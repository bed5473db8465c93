from __future__ import annotations

import polars as pl

from features.geo import flag_coordinates, needs_geocoding

BOUNDS = pl.DataFrame(
    {
        "metro": ["sf"],
        "min_lat": [37.6],
        "max_lat": [37.9],
        "min_lon": [-122.6],
        "max_lon": [-122.3],
    }
)
VENUES = pl.DataFrame(
    {
        "venue_id": ["in", "out", "none", "elsewhere"],
        "metro": ["sf", "sf", "sf", "atlantis"],
        "latitude": [37.77, 40.71, None, 37.77],
        "longitude": [-122.42, -74.0, None, -122.42],
    }
)


def test_flags_missing_and_outside_coordinates() -> None:
    flagged = flag_coordinates(VENUES, BOUNDS)
    got = {r["venue_id"]: (r["has_coordinates"], r["outside_metro"]) for r in flagged.to_dicts()}
    assert got == {
        "in": (True, False),
        "out": (True, True),
        "none": (False, False),
        "elsewhere": (True, True),  # unknown metro: never trusted silently
    }
    assert sorted(needs_geocoding(flagged)["venue_id"]) == ["elsewhere", "none", "out"]
