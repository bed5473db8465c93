"""The metros Godo serves, with the geography both the real geocoder's bounds check and the
synthetic city use: one list, in the base layer, so settings, ingest and the generator agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metro:
    """A metro area: the unit Godo partitions its assets by (ingest, features, training)."""

    metro: str
    name: str
    center_lat: float
    center_lon: float
    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float
    timezone: str
    region: str
    postal_codes: tuple[str, ...]
    weight: float  # relative size: share of venues and users it receives


METROS: dict[str, Metro] = {
    m.metro: m
    for m in (
        Metro("san-francisco", "San Francisco", 37.7749, -122.4194, 37.708, 37.810, -122.515,
              -122.357, "America/Los_Angeles", "CA",
              ("94102", "94103", "94107", "94109", "94110", "94114", "94117", "94122"), 1.0),
        Metro("oakland", "Oakland", 37.8044, -122.2712, 37.700, 37.885, -122.345, -122.115,
              "America/Los_Angeles", "CA",
              ("94601", "94606", "94607", "94610", "94611", "94612", "94618"), 0.6),
        Metro("san-jose", "San Jose", 37.3382, -121.8863, 37.200, 37.470, -122.040, -121.760,
              "America/Los_Angeles", "CA",
              ("95110", "95112", "95113", "95116", "95125", "95126", "95128"), 0.7),
        Metro("berkeley", "Berkeley", 37.8715, -122.2730, 37.845, 37.905, -122.320, -122.235,
              "America/Los_Angeles", "CA",
              ("94702", "94703", "94704", "94705", "94709", "94710"), 0.3),
        Metro("los-angeles", "Los Angeles", 34.0522, -118.2437, 33.900, 34.200, -118.500,
              -118.150, "America/Los_Angeles", "CA",
              ("90012", "90013", "90015", "90026", "90028", "90036", "90057"), 1.2),
        Metro("seattle", "Seattle", 47.6062, -122.3321, 47.500, 47.720, -122.420, -122.250,
              "America/Los_Angeles", "WA",
              ("98101", "98102", "98103", "98104", "98109", "98112", "98122"), 0.8),
        Metro("chicago", "Chicago", 41.8781, -87.6298, 41.750, 42.000, -87.750, -87.580,
              "America/Chicago", "IL",
              ("60601", "60605", "60607", "60610", "60614", "60622", "60647"), 1.0),
        Metro("new-york", "New York", 40.7128, -74.0060, 40.600, 40.880, -74.050, -73.850,
              "America/New_York", "NY",
              ("10001", "10002", "10003", "10011", "10012", "10019", "11211", "11215"), 1.4),
    )
}  # fmt: skip

# The metros served when `GODO_METROS` is unset (and the synthetic city's default).
DEFAULT_METROS: tuple[str, ...] = ("san-francisco", "oakland", "san-jose")
