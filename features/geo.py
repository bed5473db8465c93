"""Venue coordinates against their metro: which are usable, which need the geocoder."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl


def inside_bounds() -> pl.Expr:
    """True where latitude/longitude fall inside the row's metro box (null when unknown)."""
    return pl.col("latitude").is_between(pl.col("min_lat"), pl.col("max_lat")) & pl.col(
        "longitude"
    ).is_between(pl.col("min_lon"), pl.col("max_lon"))


def flag_coordinates(venues: pl.DataFrame, bounds: pl.DataFrame) -> pl.DataFrame:
    """Add `has_coordinates` and `outside_metro` to each venue.

    `bounds` has metro, min_lat, max_lat, min_lon, max_lon. A venue of a metro missing from
    `bounds` is never silently accepted: it counts as outside.
    """
    box = bounds.select("metro", "min_lat", "max_lat", "min_lon", "max_lon")
    return (
        venues.join(box, on="metro", how="left")
        .with_columns(
            has_coordinates=pl.col("latitude").is_not_null() & pl.col("longitude").is_not_null()
        )
        .with_columns(outside_metro=pl.col("has_coordinates") & ~inside_bounds().fill_null(False))
        .drop("min_lat", "max_lat", "min_lon", "max_lon")
    )


def needs_geocoding(flagged: pl.DataFrame) -> pl.DataFrame:
    """Venues whose own coordinates cannot be trusted: missing, or outside their metro."""
    return flagged.filter(~pl.col("has_coordinates") | pl.col("outside_metro"))


APPROXIMATE_LOCATION_TYPES = frozenset({"APPROXIMATE"})


def approximate_geocode() -> pl.Expr:
    """A geocode Google itself calls imprecise: `partial_match`, or an APPROXIMATE location.

    Such a point is typically the centroid of a city, postcode or street (Google's
    `location_type` docs), or of a different address that matched only in part; trusting it
    would put a venue kilometres from where it is. Null columns (rows cached before they
    existed) read as precise, which is what the pipeline assumed then.
    """
    return pl.col("location_type").is_in(list(APPROXIMATE_LOCATION_TYPES)).fill_null(
        False
    ) | pl.col("partial_match").fill_null(False)


def apply_geocodes(flagged: pl.DataFrame, geocodes: pl.DataFrame) -> pl.DataFrame:
    """Take Google's coordinates where Eventbrite's are unusable and Google found the place.

    `flagged` comes from `flag_coordinates` plus an `address_key`; `geocodes` has address_key,
    status, place_id, geo_latitude, geo_longitude and optionally location_type and
    partial_match. Adds `coordinate_source` (eventbrite, geocoded or none),
    `coordinate_quality` (exact, approximate or none), `geocode_status` and `place_id`; the
    caller re-flags the result.

    An approximate geocode (`approximate_geocode`) is not used: the venue keeps no point
    (unknown, as a point outside its metro is) and `coordinate_quality` says `approximate`,
    so distance features and the feed's radius filter treat it as unknown geography instead
    of placing it at a city centroid.
    """
    optional = {"location_type": pl.Utf8(), "partial_match": pl.Boolean()}
    looked_up = (
        geocodes.with_columns(
            pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in optional.items()
            if name not in geocodes.columns
        )
        .select(
            "address_key",
            "status",
            "place_id",
            "geo_latitude",
            "geo_longitude",
            _approximate=approximate_geocode(),
        )
        .unique("address_key", keep="last")
    )
    trusted = pl.col("has_coordinates") & ~pl.col("outside_metro")
    answered = pl.col("status") == "OK"
    found = answered & ~pl.col("_approximate").fill_null(False)
    return (
        flagged.join(looked_up, on="address_key", how="left")
        .with_columns(
            coordinate_source=pl.when(trusted)
            .then(pl.lit("eventbrite"))
            .when(found)
            .then(pl.lit("geocoded"))
            .otherwise(pl.lit("none")),
            coordinate_quality=pl.when(trusted | found)
            .then(pl.lit("exact"))
            .when(answered)
            .then(pl.lit("approximate"))
            .otherwise(pl.lit("none")),
            # The place of an approximate answer is the city, not the venue: no details.
            place_id=pl.when(found).then("place_id"),
            latitude=pl.when(trusted).then("latitude").when(found).then("geo_latitude"),
            longitude=pl.when(trusted).then("longitude").when(found).then("geo_longitude"),
        )
        .rename({"status": "geocode_status"})
        .drop("geo_latitude", "geo_longitude", "has_coordinates", "outside_metro", "_approximate")
    )


EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG); the error against the ellipsoid is < 0.5 %


def haversine_km(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Great-circle distance in km between points given in degrees, with numpy broadcasting.

    Broadcasting is the point: `haversine_km(u_lat[:, None], u_lon[:, None], e_lat, e_lon)`
    gives the whole users x events matrix in one call, without a Python loop.
    """
    phi1, lam1, phi2, lam2 = (
        np.radians(np.asarray(x, dtype=np.float64)) for x in (lat1, lon1, lat2, lon2)
    )
    a = (
        np.sin((phi2 - phi1) / 2) ** 2
        + np.cos(phi1) * np.cos(phi2) * np.sin((lam2 - lam1) / 2) ** 2
    )
    # clip: rounding can push `a` a hair above 1 for antipodal points, and arcsin would NaN
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))
