"""Google Maps: Geocoding (address to coordinates) and Places (New) details, behind one client.

The pipeline depends on `MapsClient`; `HttpMapsClient` is the production implementation that
tests and the demo point at a local server.
"""

from sources.google_maps.client import (
    DEFAULT_FIELD_MASK,
    GeocodeResult,
    HttpMapsClient,
    MapsClient,
    MapsException,
    MapsRequestError,
    MapsUnavailable,
    PlaceDetails,
    estimated_cost_usd,
    normalize_address,
)

__all__ = [
    "DEFAULT_FIELD_MASK",
    "GeocodeResult",
    "HttpMapsClient",
    "MapsClient",
    "MapsException",
    "MapsRequestError",
    "MapsUnavailable",
    "PlaceDetails",
    "estimated_cost_usd",
    "normalize_address",
]
