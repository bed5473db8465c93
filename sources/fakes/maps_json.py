"""Google Maps Geocoding and Places (New) JSON for the venues of a synthetic world.

Why: the geocoding code must be exercised on the shapes Google returns (snake_case Geocoding
results, camelCase Places resources, field masks), without a key or a bill. Everything here is
a pure function of a ``World.venues`` row, so a venue always gets the same fake ``place_id``,
plus code, rating and business status.

Decisions:

- ``place_id`` is ``"ChIJ"`` plus a hash of the venue id: stable, opaque and shaped like a
  real one. The Geocoding result and the Places resource of a venue share it.
- Coordinates are the world's true venue coordinates, also for venues whose Eventbrite JSON
  hides them (``FaultPlan.venues_without_coordinates_share``): that is what geocoding is for.
- ``formatted_address`` follows Google's US format (``"2022 Lake St, San Francisco, CA 94103,
  USA"``); the lookup also accepts Eventbrite's ``localized_address_display``.
- The plus code is a real Open Location Code of the venue's point (10 digits).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sources.fakes.faults import unit_hash

REGION_NAMES = {"CA": "California", "WA": "Washington", "IL": "Illinois", "NY": "New York"}
COUNTRY_NAMES = {"US": "United States"}
_COUNTRY_IN_ADDRESS = {"US": "USA"}
_STREET_SUFFIXES = {"St": "Street", "Ave": "Avenue", "Blvd": "Boulevard", "Rd": "Road"}

# Venue names end with a kind ("Golden Music Hall"); the kind decides the place type.
_PRIMARY_TYPES = {
    "Music Hall": "concert_hall",
    "Club": "night_club",
    "Lounge": "bar",
    "Ballroom": "banquet_hall",
    "Amphitheater": "amphitheatre",
    "Kitchen": "restaurant",
    "Market Hall": "market",
    "Brewing Co.": "brewery",
    "Wine Bar": "wine_bar",
    "Food Hall": "food_court",
    "Theater": "performing_arts_theater",
    "Gallery": "art_gallery",
    "Playhouse": "performing_arts_theater",
    "Arts Center": "cultural_center",
    "Fitness Studio": "fitness_center",
    "Athletic Club": "sports_club",
    "Climbing Gym": "gym",
    "Field": "athletic_field",
    "Innovation Hub": "coworking_space",
    "Coworking": "coworking_space",
    "Labs": "corporate_office",
    "Tech Campus": "corporate_office",
    "Community Center": "community_center",
    "Library": "library",
    "Commons": "community_center",
    "Civic Hall": "event_venue",
    "Cinema": "movie_theater",
    "Screening Room": "movie_theater",
    "Comedy Club": "comedy_club",
    "Yoga Studio": "yoga_studio",
    "Wellness Center": "wellness_center",
    "Meditation Loft": "wellness_center",
    "Conference Center": "convention_center",
    "Hotel Ballroom": "hotel",
    "Business Club": "event_venue",
    "Museum": "museum",
    "Learning Center": "school",
    "Science Center": "museum",
    "Playground Pavilion": "park",
}
_KINDS_LONGEST_FIRST = sorted(_PRIMARY_TYPES, key=len, reverse=True)

# Top-level fields of a Places (New) ``Place`` that a field mask may name. The fake fills a
# subset (``place_resource``); a known field it has no data for is omitted, as Google omits
# empty fields. A name outside this list is rejected with 400, as Google rejects it.
KNOWN_PLACE_FIELDS = frozenset(
    """
    accessibilityOptions addressComponents addressDescriptor adrFormatAddress allowsDogs
    attributions businessStatus containingPlaces curbsidePickup currentOpeningHours
    currentSecondaryOpeningHours delivery dineIn displayName editorialSummary evChargeOptions
    formattedAddress fuelOptions generativeSummary goodForChildren goodForGroups
    goodForWatchingSports googleMapsLinks googleMapsUri iconBackgroundColor iconMaskBaseUri id
    internationalPhoneNumber liveMusic location menuForChildren name nationalPhoneNumber
    outdoorSeating parkingOptions paymentOptions photos plusCode postalAddress priceLevel
    priceRange primaryType primaryTypeDisplayName pureServiceAreaBusiness rating
    regularOpeningHours regularSecondaryOpeningHours reservable restroom reviews
    servesBeer servesBreakfast servesBrunch servesCocktails servesCoffee servesDessert
    servesDinner servesLunch servesVegetarianFood servesWine shortFormattedAddress
    subDestinations takeout timeZone types userRatingCount utcOffsetMinutes viewport websiteUri
    """.split()
)

_OLC_ALPHABET = "23456789CFGHJMPQRVWX"
_VIEWPORT_HALF_SPAN = 0.0013499


class FieldMaskError(ValueError):
    """A field mask names a field a Place does not have (Google answers 400)."""


def place_id_for(venue_id: str) -> str:
    """The fake Google place id of a venue: ``ChIJ`` + 23 url-safe characters of a hash."""
    digest = hashlib.sha256(f"godo-venue:{venue_id}".encode()).digest()
    return "ChIJ" + base64.urlsafe_b64encode(digest).decode()[:23]


def formatted_address(venue: Mapping[str, Any]) -> str:
    """Google's one-line US address: street, city, region and postal code, country."""
    country = _COUNTRY_IN_ADDRESS.get(venue["country"], venue["country"])
    return (
        f"{venue['address_1']}, {venue['city']}, {venue['region']} "
        f"{venue['postal_code']}, {country}"
    )


def eventbrite_display_address(venue: Mapping[str, Any]) -> str:
    """The ``localized_address_display`` Eventbrite shows for this venue."""
    return f"{venue['address_1']}, {venue['city']}, {venue['region']} {venue['postal_code']}"


def lookup_addresses(venue: Mapping[str, Any]) -> tuple[str, ...]:
    """Every address text that geocodes to this venue (before normalisation)."""
    display = eventbrite_display_address(venue)
    return (display, f"{display}, {venue['country']}", formatted_address(venue))


def open_location_code(latitude: float, longitude: float) -> str:
    """The 10-digit Open Location Code ("plus code") of a point, e.g. ``849VCWC8+W5``."""
    lat = min(max(latitude, -90.0), 90.0)
    lng = (longitude + 180.0) % 360.0 - 180.0
    lat_value = min(int((lat + 90.0) * 8000), 180 * 8000 - 1)
    lng_value = int((lng + 180.0) * 8000)
    digits = ""
    for _ in range(5):
        digits = _OLC_ALPHABET[lat_value % 20] + _OLC_ALPHABET[lng_value % 20] + digits
        lat_value //= 20
        lng_value //= 20
    return f"{digits[:8]}+{digits[8:]}"


def _route(street: str) -> tuple[str, str, str]:
    """(street number, long route, short route) of ``"2022 Lake St"``."""
    number, _, route = street.partition(" ")
    if not number.isdigit():
        number, route = "", street
    words = route.split()
    if words and words[-1] in _STREET_SUFFIXES:
        long_route = " ".join([*words[:-1], _STREET_SUFFIXES[words[-1]]])
    else:
        long_route = route
    return number, long_route, route


def _components(venue: Mapping[str, Any]) -> list[tuple[str, str, list[str]]]:
    number, long_route, short_route = _route(venue["address_1"])
    parts: list[tuple[str, str, list[str]]] = []
    if number:
        parts.append((number, number, ["street_number"]))
    parts += [
        (long_route, short_route, ["route"]),
        (venue["city"], venue["city"], ["locality", "political"]),
        (
            REGION_NAMES.get(venue["region"], venue["region"]),
            venue["region"],
            ["administrative_area_level_1", "political"],
        ),
        (
            COUNTRY_NAMES.get(venue["country"], venue["country"]),
            venue["country"],
            ["country", "political"],
        ),
        (venue["postal_code"], venue["postal_code"], ["postal_code"]),
    ]
    return parts


def _plus_code(venue: Mapping[str, Any]) -> tuple[str, str]:
    """(global code, compound code); the compound code drops the area prefix for the city."""
    code = open_location_code(venue["latitude"], venue["longitude"])
    country = _COUNTRY_IN_ADDRESS.get(venue["country"], venue["country"])
    return code, f"{code[4:]} {venue['city']}, {venue['region']}, {country}"


def geocode_result(venue: Mapping[str, Any]) -> dict[str, Any]:
    """One element of a Geocoding API ``results`` array for a ``World.venues`` row."""
    lat, lng = float(venue["latitude"]), float(venue["longitude"])
    global_code, compound_code = _plus_code(venue)
    return {
        "address_components": [
            {"long_name": long, "short_name": short, "types": types}
            for long, short, types in _components(venue)
        ],
        "formatted_address": formatted_address(venue),
        "geometry": {
            "location": {"lat": lat, "lng": lng},
            "location_type": "ROOFTOP",
            "viewport": {
                "northeast": {
                    "lat": round(lat + _VIEWPORT_HALF_SPAN, 7),
                    "lng": round(lng + _VIEWPORT_HALF_SPAN, 7),
                },
                "southwest": {
                    "lat": round(lat - _VIEWPORT_HALF_SPAN, 7),
                    "lng": round(lng - _VIEWPORT_HALF_SPAN, 7),
                },
            },
        },
        "place_id": place_id_for(venue["venue_id"]),
        "plus_code": {"compound_code": compound_code, "global_code": global_code},
        "types": ["street_address"],
    }


def approximate_geocode_result(
    venue: Mapping[str, Any], center_lat: float, center_lon: float
) -> dict[str, Any]:
    """What Google answers when it matched only the city of a venue's address.

    ``partial_match: true``, ``location_type: APPROXIMATE`` and the city's centroid (the
    metro's centre here): the shape of a real answer for an address Google could not place,
    which a geocoder client must not take for the venue's own point.
    """
    country = _COUNTRY_IN_ADDRESS.get(venue["country"], venue["country"])
    city = f"{venue['city']}, {venue['region']}, {country}"
    return {
        "address_components": [
            {"long_name": venue["city"], "short_name": venue["city"], "types": ["locality"]},
        ],
        "formatted_address": city,
        "geometry": {
            "location": {"lat": center_lat, "lng": center_lon},
            "location_type": "APPROXIMATE",
        },
        "partial_match": True,
        "place_id": place_id_for(f"city:{city}"),
        "types": ["locality", "political"],
    }


def primary_type(venue_name: str) -> str:
    """The Places type of a venue, from the kind its name ends with (else ``event_venue``)."""
    for kind in _KINDS_LONGEST_FIRST:
        if venue_name.endswith(kind):
            return _PRIMARY_TYPES[kind]
    return "event_venue"


def _business_status(venue_id: str) -> str:
    u = unit_hash("business-status", venue_id)
    return "CLOSED_PERMANENTLY" if u < 0.02 else "CLOSED_TEMPORARILY" if u < 0.06 else "OPERATIONAL"


def place_resource(venue: Mapping[str, Any], timezone: str, now: datetime) -> dict[str, Any]:
    """The full Places (New) ``Place`` of a venue; ``apply_field_mask`` cuts it down.

    ``utcOffsetMinutes`` is the venue's offset at ``now`` (the world's present), so it follows
    daylight saving time like Google's does.
    """
    venue_id = venue["venue_id"]
    place_id = place_id_for(venue_id)
    lat, lng = float(venue["latitude"]), float(venue["longitude"])
    kind = primary_type(venue["name"])
    offset = ZoneInfo(timezone).utcoffset(now)
    slug = re.sub(r"[^a-z0-9]+", "-", venue["name"].lower()).strip("-")
    global_code, compound_code = _plus_code(venue)
    cid = int.from_bytes(hashlib.sha256(place_id.encode()).digest()[:8], "big") >> 1
    return {
        "name": f"places/{place_id}",
        "id": place_id,
        "types": list(dict.fromkeys([kind, "point_of_interest", "establishment"])),
        "formattedAddress": formatted_address(venue),
        "shortFormattedAddress": f"{venue['address_1']}, {venue['city']}",
        "addressComponents": [
            {"longText": long, "shortText": short, "types": types, "languageCode": "en"}
            for long, short, types in _components(venue)
        ],
        "plusCode": {"globalCode": global_code, "compoundCode": compound_code},
        "location": {"latitude": lat, "longitude": lng},
        "viewport": {
            "low": {
                "latitude": round(lat - _VIEWPORT_HALF_SPAN, 7),
                "longitude": round(lng - _VIEWPORT_HALF_SPAN, 7),
            },
            "high": {
                "latitude": round(lat + _VIEWPORT_HALF_SPAN, 7),
                "longitude": round(lng + _VIEWPORT_HALF_SPAN, 7),
            },
        },
        "rating": round(3.5 + 1.4 * unit_hash("rating", venue_id), 1),
        "userRatingCount": 5 + int(2000 * unit_hash("rating-count", venue_id)),
        "googleMapsUri": f"https://maps.google.com/?cid={cid}",
        "websiteUri": f"https://{slug}.example.com/",
        "utcOffsetMinutes": int(offset.total_seconds() // 60) if offset is not None else 0,
        "businessStatus": _business_status(venue_id),
        "displayName": {"text": venue["name"], "languageCode": "en"},
        "primaryType": kind,
        "primaryTypeDisplayName": {
            "text": kind.replace("_", " ").title(),
            "languageCode": "en-US",
        },
        "timeZone": {"id": timezone},
    }


def parse_field_mask(mask: str) -> list[str]:
    """The paths of an ``X-Goog-FieldMask`` value (comma-separated; ``*`` means all)."""
    return [path.strip() for path in mask.split(",") if path.strip()]


def _select(value: Any, path: list[str], full: str) -> Any:
    if not path:
        return copy.deepcopy(value)
    if isinstance(value, list):
        return [_select(item, path, full) for item in value]
    if not isinstance(value, dict) or path[0] not in value:
        raise FieldMaskError(_unknown_path(full))
    return {path[0]: _select(value[path[0]], path[1:], full)}


def _unknown_path(path: str) -> str:
    return f"Error expanding 'fields' parameter. Cannot find matching fields for path '{path}'."


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            for target, item in zip(into[key], value, strict=True):
                if isinstance(target, dict) and isinstance(item, dict):
                    _merge(target, item)
        else:
            into[key] = value


def apply_field_mask(place: Mapping[str, Any], paths: list[str]) -> dict[str, Any]:
    """Only the fields ``paths`` name (``displayName`` or ``displayName.text`` style).

    Raises ``FieldMaskError`` for a field a Place does not have. A known field the fake has
    no data for is left out of the answer, as Google leaves out empty fields.
    """
    if "*" in paths:
        return copy.deepcopy(dict(place))
    result: dict[str, Any] = {}
    for full in paths:
        head, *rest = full.split(".")
        if head not in KNOWN_PLACE_FIELDS:
            raise FieldMaskError(_unknown_path(full))
        if head not in place:
            continue
        _merge(result, _select(dict(place), [head, *rest], full))
    return result
