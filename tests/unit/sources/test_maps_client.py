"""The Google Maps client against a real local HTTP server replaying Google-shaped JSON.

Every Geocoding status and the Places (New) HTTP errors take their own path; the field mask
is sent; the API key (which Geocoding carries in the query string) never reaches a log line
or an exception; addresses normalise to stable cache keys; cost estimates follow the tier.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from sources.google_maps import (
    DEFAULT_FIELD_MASK,
    GeocodeResult,
    HttpMapsClient,
    MapsRequestError,
    MapsUnavailable,
    estimated_cost_usd,
    normalize_address,
)
from sources.google_maps.client import GEOCODING_API, PLACE_DETAILS_API, place_details_tier
from sources.http import CallStats

if TYPE_CHECKING:
    from tests.unit.sources.conftest import ScriptedServer, SleepRecorder

API_KEY = "AIzaSyD-FAKE-KEY_0123456789abcdefghijk"
GEOCODE_PATH = "/maps/api/geocode/json"
PLACE_ID = "ChIJ8fbp5wh-j4ARH_j9KXhNmUU"
PLACE_PATH = f"/v1/places/{PLACE_ID}"


def geocode_ok() -> dict[str, Any]:
    """A Geocoding response in Google's shape (trimmed to one result)."""
    return {
        "results": [
            {
                "address_components": [
                    {"long_name": "777", "short_name": "777", "types": ["street_number"]},
                    {"long_name": "Valencia Street", "short_name": "Valencia St",
                     "types": ["route"]},
                    {"long_name": "San Francisco", "short_name": "SF",
                     "types": ["locality", "political"]},
                    {"long_name": "California", "short_name": "CA",
                     "types": ["administrative_area_level_1", "political"]},
                    {"long_name": "United States", "short_name": "US",
                     "types": ["country", "political"]},
                    {"long_name": "94110", "short_name": "94110", "types": ["postal_code"]},
                ],
                "formatted_address": "777 Valencia St, San Francisco, CA 94110, USA",
                "geometry": {
                    "location": {"lat": 37.7609236, "lng": -122.4214012},
                    "location_type": "ROOFTOP",
                    "viewport": {
                        "northeast": {"lat": 37.7622725, "lng": -122.4200522},
                        "southwest": {"lat": 37.7595746, "lng": -122.4227502},
                    },
                },
                "place_id": PLACE_ID,
                "plus_code": {"compound_code": "QHJH+9C San Francisco, CA, USA",
                              "global_code": "849VQHJH+9C"},
                "types": ["street_address"],
            }
        ],
        "status": "OK",
    }  # fmt: skip


def geocode_status(status: str, message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"results": [], "status": status}
    if message is not None:
        body["error_message"] = message
    return body


def place() -> dict[str, Any]:
    """A Places (New) `Place` limited to the default field mask."""
    return {
        "id": PLACE_ID,
        "types": ["night_club", "bar", "point_of_interest", "establishment"],
        "formattedAddress": "777 Valencia St, San Francisco, CA 94110, USA",
        "location": {"latitude": 37.7609236, "longitude": -122.4214012},
        "websiteUri": "https://thechapelsf.com/",
        "utcOffsetMinutes": -480,
        "businessStatus": "OPERATIONAL",
        "displayName": {"text": "The Chapel", "languageCode": "en"},
        "primaryType": "night_club",
    }


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def maps(server: ScriptedServer, sleeps: SleepRecorder, **kwargs: Any) -> HttpMapsClient:
    return HttpMapsClient(
        api_key=API_KEY,
        geocode_base_url=f"{server.url}/maps/api/",
        places_base_url=f"{server.url}/v1/",
        sleep=sleeps,
        **kwargs,
    )


# ------------------------------------------------------------------------ Geocoding


def test_geocode_ok_returns_the_first_result(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    scripted_server.script(GEOCODE_PATH, scripted_server.reply(body=geocode_ok()))
    with maps(scripted_server, sleeps) as client:
        result = client.geocode("777 Valencia St, San Francisco, CA")

    assert result.status == "OK"
    assert result.place_id == PLACE_ID
    assert result.formatted_address == "777 Valencia St, San Francisco, CA 94110, USA"
    assert (result.latitude, result.longitude) == (37.7609236, -122.4214012)
    assert result.location_type == "ROOFTOP"
    assert result.types == ["street_address"]
    assert result.address_components is not None and len(result.address_components) == 6
    (request,) = scripted_server.requests_to(GEOCODE_PATH)
    assert request.param("address") == "777 Valencia St, San Francisco, CA"
    assert request.param("key") == API_KEY
    assert client.stats.calls_by_api == {GEOCODING_API: 1}


def test_zero_results_is_a_result_not_an_error(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    scripted_server.script(GEOCODE_PATH, scripted_server.reply(body=geocode_status("ZERO_RESULTS")))
    with maps(scripted_server, sleeps) as client:
        result = client.geocode("1 Nowhere Lane, Atlantis")
    assert result == GeocodeResult(status="ZERO_RESULTS")
    assert result.place_id is None and result.latitude is None and result.longitude is None
    assert len(scripted_server.requests) == 1 and sleeps.calls == []
    assert client.stats.errors == 0


@pytest.mark.parametrize(
    ("transient", "http_status", "throttled"),
    [
        (geocode_status("OVER_QUERY_LIMIT", "You have exceeded your rate-limit for this API."),
         200, 1),
        (geocode_status("UNKNOWN_ERROR"), 200, 0),
        (geocode_status("OVER_QUERY_LIMIT", "Too many requests"), 429, 1),
        ("<html>Bad Gateway</html>", 502, 0),
    ],
    ids=["over_query_limit", "unknown_error", "http_429", "http_502"],
)  # fmt: skip
def test_transient_geocode_failures_back_off_then_succeed(
    scripted_server: ScriptedServer,
    sleeps: SleepRecorder,
    transient: Any,
    http_status: int,
    throttled: int,
) -> None:
    scripted_server.script(
        GEOCODE_PATH,
        scripted_server.reply(http_status, transient),
        scripted_server.reply(body=geocode_ok()),
    )
    with maps(scripted_server, sleeps, max_backoff_seconds=8.0) as client:
        result = client.geocode("777 Valencia St")
    assert result.status == "OK" and result.place_id == PLACE_ID
    assert len(scripted_server.requests_to(GEOCODE_PATH)) == 2
    assert len(sleeps.calls) == 1 and 0 < sleeps.calls[0] <= 8.0
    assert (client.stats.calls, client.stats.retries, client.stats.throttled) == (2, 1, throttled)


def test_over_query_limit_honours_retry_after(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    scripted_server.script(
        GEOCODE_PATH,
        scripted_server.reply(
            429, geocode_status("OVER_QUERY_LIMIT"), headers={"Retry-After": "3"}
        ),
        scripted_server.reply(body=geocode_ok()),
    )
    with maps(scripted_server, sleeps) as client:
        assert client.geocode("777 Valencia St").status == "OK"
    assert sleeps.calls == [pytest.approx(3.0)]


def test_persistent_over_query_limit_gives_up(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    scripted_server.script(
        GEOCODE_PATH,
        *[scripted_server.reply(body=geocode_status("OVER_QUERY_LIMIT")) for _ in range(3)],
    )
    with maps(scripted_server, sleeps, max_attempts=3) as client:
        with pytest.raises(MapsUnavailable) as caught:
            client.geocode("777 Valencia St")
    assert caught.value.attempts == 3 and caught.value.status == "OVER_QUERY_LIMIT"
    assert len(scripted_server.requests) == 3 and len(sleeps.calls) == 2


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("REQUEST_DENIED", f"The provided API key is invalid. (key={API_KEY})"),
        ("INVALID_REQUEST", "Invalid request. Missing the 'address', 'components', 'latlng' or "
                            "'place_id' parameter."),
        ("OVER_DAILY_LIMIT", "You have exceeded your daily request quota for this API."),
    ],
)  # fmt: skip
def test_fatal_geocode_statuses_raise_without_retry(
    scripted_server: ScriptedServer, sleeps: SleepRecorder, status: str, message: str
) -> None:
    scripted_server.script(
        GEOCODE_PATH,
        scripted_server.reply(body=geocode_status(status, message)),
        scripted_server.reply(body=geocode_ok()),  # a retry would find this: it must not
    )
    with maps(scripted_server, sleeps) as client:
        with pytest.raises(MapsRequestError) as caught:
            client.geocode("777 Valencia St")
    assert caught.value.status == status
    assert caught.value.error_message == message.replace(API_KEY, "[REDACTED]")
    assert API_KEY not in str(caught.value)
    assert len(scripted_server.requests) == 1 and sleeps.calls == []


def test_empty_address_is_refused_without_a_call(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    with maps(scripted_server, sleeps) as client, pytest.raises(ValueError):
        client.geocode("   ")
    assert scripted_server.requests == []


def test_geocode_timeout_is_retried(scripted_server: ScriptedServer, sleeps: SleepRecorder) -> None:
    scripted_server.script(
        GEOCODE_PATH,
        scripted_server.reply(body=geocode_ok(), delay=0.4),
        scripted_server.reply(body=geocode_ok()),
    )
    with maps(scripted_server, sleeps, timeout_seconds=0.1) as client:
        assert client.geocode("777 Valencia St").status == "OK"
    assert client.stats.errors == 1 and len(sleeps.calls) == 1


# ------------------------------------------------------------------------ Places (New)


def test_place_details_sends_field_mask_and_key_header(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    scripted_server.script(PLACE_PATH, scripted_server.reply(body=place()))
    with maps(scripted_server, sleeps) as client:
        details = client.place_details(PLACE_ID)

    assert details.place_id == PLACE_ID
    assert details.display_name == "The Chapel"
    assert details.formatted_address == "777 Valencia St, San Francisco, CA 94110, USA"
    assert (details.latitude, details.longitude) == (37.7609236, -122.4214012)
    assert details.types == ["night_club", "bar", "point_of_interest", "establishment"]
    assert details.primary_type == "night_club"
    assert details.business_status == "OPERATIONAL"
    assert details.utc_offset_minutes == -480
    assert details.website_uri == "https://thechapelsf.com/"
    assert details.raw == place()
    (request,) = scripted_server.requests_to(PLACE_PATH)
    assert request.headers["x-goog-fieldmask"] == DEFAULT_FIELD_MASK
    assert request.headers["x-goog-api-key"] == API_KEY
    assert API_KEY not in request.raw_query
    assert client.stats.calls_by_api == {PLACE_DETAILS_API: 1}


def test_place_details_with_a_narrower_mask_leaves_fields_empty(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    scripted_server.script(
        PLACE_PATH, scripted_server.reply(body={"id": PLACE_ID, "businessStatus": "OPERATIONAL"})
    )
    with maps(scripted_server, sleeps, field_mask="id,businessStatus") as client:
        details = client.place_details(PLACE_ID)
    assert details.business_status == "OPERATIONAL"
    assert details.display_name is None and details.types == [] and details.latitude is None
    assert scripted_server.requests[0].headers["x-goog-fieldmask"] == "id,businessStatus"


@pytest.mark.parametrize(
    ("code", "status"), [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (503, "UNAVAILABLE")]
)
def test_place_details_retries_throttling_and_server_errors(
    scripted_server: ScriptedServer, sleeps: SleepRecorder, code: int, status: str
) -> None:
    scripted_server.script(
        PLACE_PATH,
        scripted_server.reply(code, google_error(code, status, "Try again later.")),
        scripted_server.reply(body=place()),
    )
    with maps(scripted_server, sleeps) as client:
        assert client.place_details(PLACE_ID).display_name == "The Chapel"
    assert len(scripted_server.requests) == 2 and len(sleeps.calls) == 1
    assert client.stats.throttled == (1 if code == 429 else 0)


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        (400, "INVALID_ARGUMENT", f"Not a valid Place ID: {PLACE_ID}"),
        (403, "PERMISSION_DENIED", "Places API (New) has not been used in project 1234 before "
                                   "or it is disabled."),
        (404, "NOT_FOUND", "Requested entity was not found."),
    ],
)  # fmt: skip
def test_place_details_client_errors_raise_without_retry(
    scripted_server: ScriptedServer, sleeps: SleepRecorder, code: int, status: str, message: str
) -> None:
    scripted_server.script(
        PLACE_PATH,
        scripted_server.reply(code, google_error(code, status, message)),
        scripted_server.reply(body=place()),
    )
    with maps(scripted_server, sleeps) as client:
        with pytest.raises(MapsRequestError) as caught:
            client.place_details(PLACE_ID)
    assert (caught.value.status, caught.value.http_status) == (status, code)
    assert caught.value.error_message == message
    assert len(scripted_server.requests) == 1 and sleeps.calls == []


# ------------------------------------------------------------------------ secrets


def test_api_key_never_appears_in_logs_or_errors(
    scripted_server: ScriptedServer, sleeps: SleepRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sources"):
        caplog.set_level(logging.DEBUG, logger=name)
    scripted_server.script(
        GEOCODE_PATH,
        scripted_server.reply(body=geocode_status("OVER_QUERY_LIMIT", f"slow down {API_KEY}")),
        scripted_server.reply(body=geocode_ok()),
        scripted_server.reply(body=geocode_status("REQUEST_DENIED", f"key {API_KEY} refused")),
    )
    scripted_server.script(
        PLACE_PATH, scripted_server.reply(403, google_error(403, "PERMISSION_DENIED", API_KEY))
    )
    errors: list[Exception] = []
    with maps(scripted_server, sleeps) as client:
        client.geocode("777 Valencia St")
        for call in (lambda: client.geocode("x"), lambda: client.place_details(PLACE_ID)):
            try:
                call()
            except MapsRequestError as exc:
                errors.append(exc)

    url_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("geocode/json" in line and "key=[REDACTED]" in line for line in url_lines)
    assert any(r.name == "sources.google_maps.client" for r in caplog.records)
    assert API_KEY not in caplog.text
    assert all(API_KEY not in r.getMessage() for r in caplog.records)
    assert len(errors) == 2
    assert all(API_KEY not in str(e) and API_KEY not in repr(e) for e in errors)


# ------------------------------------------------------------------------ cost


def test_cost_estimate_follows_the_field_mask_tier() -> None:
    assert place_details_tier(DEFAULT_FIELD_MASK) == "enterprise"  # websiteUri
    assert place_details_tier("id,displayName,businessStatus,utcOffsetMinutes") == "pro"
    assert place_details_tier("id,formattedAddress,location,types") == "essentials"
    assert place_details_tier("id") == "essentials_ids_only"
    assert place_details_tier("*") == "enterprise_atmosphere"

    stats = CallStats()
    for _ in range(1000):
        stats.count_call(GEOCODING_API)
    for _ in range(500):
        stats.count_call(PLACE_DETAILS_API)
    assert estimated_cost_usd(stats) == pytest.approx(5.00 + 10.00)
    assert estimated_cost_usd(stats, field_mask="id,displayName") == pytest.approx(5.00 + 8.50)
    assert estimated_cost_usd(CallStats()) == 0.0


# ------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  777 Valencia St.,  San Francisco, CA 94110 ", "777 valencia st san francisco ca 94110"),
        ("777 VALENCIA ST SAN FRANCISCO CA 94110", "777 valencia st san francisco ca 94110"),
        ("777 Valencia St\tSan Francisco;CA\n94110", "777 valencia st san francisco ca 94110"),
        ("Unit #5, 10 O'Farrell St.", "unit 5 10 ofarrell st"),
        ("10 O\u2019Farrell St", "10 ofarrell st"),
        ("1.5 Mile Rd (rear entrance)", "1.5 mile rd rear entrance"),
        ("12\u201314 Rue de l\u2019\u00c9glise", "12-14 rue de l\u00e9glise"),
        ("Hauptstra\u00dfe 5", "hauptstrasse 5"),
        ("\uff17\uff17\uff17 Valencia", "777 valencia"),
        ("Smith & Jones Hall, 1/2 Market St", "smith & jones hall 1/2 market st"),
        ("...", ""),
    ],
)
def test_normalize_address(text: str, expected: str) -> None:
    assert normalize_address(text) == expected


def test_normalize_address_is_idempotent() -> None:
    once = normalize_address("Unit #5, 10 O'Farrell St., San Francisco")
    assert normalize_address(once) == once
