"""Google Geocoding API and Places API (New) Place Details, with every status handled apart.

Why each path differs:

- Geocoding answers HTTP 200 with a ``status`` field. ``ZERO_RESULTS`` is an answer (the
  address does not exist for Google) and is returned as a result, so the pipeline can cache it
  and stop asking. ``OVER_QUERY_LIMIT`` (or HTTP 429) means slow down: back off and retry.
  ``UNKNOWN_ERROR`` is a server hiccup the docs say may succeed on retry. ``REQUEST_DENIED``,
  ``INVALID_REQUEST`` and ``OVER_DAILY_LIMIT`` will fail the same way every time (bad key,
  bad input, billing), so they raise `MapsRequestError` at once instead of a retry storm.
- Places (New) speaks HTTP status codes with ``{"error": {"code", "message", "status"}}``:
  429 ``RESOURCE_EXHAUSTED`` and 5xx are retried, other 4xx raise `MapsRequestError`.
  ``X-Goog-FieldMask`` is mandatory and decides the billing tier, so it is explicit.
- The Geocoding key must travel in the query string, which httpx logs at INFO: the key is
  registered with `sources.http`'s redaction filter and scrubbed from every error message.
  Places gets the key in the ``X-Goog-Api-Key`` header instead.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import RetryCallState

from sources.http import (
    CallStats,
    ClosingClient,
    RetryableFailure,
    build_retrying,
    parse_retry_after,
    protect_secret,
    redact,
    release_secret,
)

__all__ = [
    "DEFAULT_FIELD_MASK",
    "GEOCODING_API",
    "GEOCODING_USD_PER_1000",
    "PLACE_DETAILS_API",
    "PLACE_DETAILS_USD_PER_1000",
    "GeocodeResult",
    "HttpMapsClient",
    "MapsClient",
    "MapsException",
    "MapsRequestError",
    "MapsUnavailable",
    "PlaceDetails",
    "estimated_cost_usd",
    "normalize_address",
    "place_details_tier",
]

logger = logging.getLogger(__name__)

GEOCODING_API = "geocoding"
PLACE_DETAILS_API = "place_details"
DEFAULT_FIELD_MASK = (
    "id,displayName,formattedAddress,location,types,primaryType,businessStatus,"
    "utcOffsetMinutes,websiteUri"
)

# --------------------------------------------------------------------------------------------
# Cost estimates (USD per 1,000 billable requests, first volume band 0-100,000 per month,
# global pricing list, pay-as-you-go; monthly free caps per SKU are ignored, so this is an
# upper bound). Sources read:
# - Geocoding: https://developers.google.com/maps/documentation/geocoding/usage-and-billing
#   ("SKU: Geocoding", Essentials, USD 5.00 per 1,000 up to 100,000/month).
# - Place Details (New): https://developers.google.com/maps/billing-and-pricing/pricing and
#   https://developers.google.com/maps/documentation/places/web-service/usage-and-billing
#   ("billed at the highest SKU applicable to your request"): Essentials 5.00, Pro 17.00,
#   Enterprise 20.00, Enterprise + Atmosphere 25.00; IDs-only is free.
# The default field mask includes `websiteUri`, an Enterprise field: USD 20 per 1,000. Dropping
# it (and nothing else Enterprise) would bill at Pro (USD 17).
# --------------------------------------------------------------------------------------------
GEOCODING_USD_PER_1000 = 5.00
PLACE_DETAILS_USD_PER_1000 = {
    "essentials_ids_only": 0.00,
    "essentials": 5.00,
    "pro": 17.00,
    "enterprise": 20.00,
    "enterprise_atmosphere": 25.00,
}
_IDS_ONLY_FIELDS = frozenset({"id", "name", "attributions", "photos"})
_ESSENTIALS_FIELDS = frozenset(
    {
        "addressComponents", "adrFormatAddress", "formattedAddress", "location", "plusCode",
        "postalAddress", "shortFormattedAddress", "types", "viewport",
    }
)  # fmt: skip
_PRO_FIELDS = frozenset(
    {
        "accessibilityOptions", "businessStatus", "containingPlaces", "displayName",
        "googleMapsLinks", "googleMapsUri", "iconBackgroundColor", "iconMaskBaseUri",
        "primaryType", "primaryTypeDisplayName", "pureServiceAreaBusiness", "subDestinations",
        "utcOffsetMinutes",
    }
)  # fmt: skip
_ENTERPRISE_FIELDS = frozenset(
    {
        "currentOpeningHours", "currentSecondaryOpeningHours", "internationalPhoneNumber",
        "nationalPhoneNumber", "priceLevel", "priceRange", "rating", "regularOpeningHours",
        "regularSecondaryOpeningHours", "userRatingCount", "websiteUri",
    }
)  # fmt: skip


def place_details_tier(field_mask: str) -> str:
    """The Place Details SKU a field mask bills at (the most expensive field wins).

    Unknown fields (and ``*``) are assumed to be Enterprise + Atmosphere, the top tier, so the
    estimate errs high rather than low.
    """
    tiers = ["essentials_ids_only", "essentials", "pro", "enterprise", "enterprise_atmosphere"]
    level = 0
    for raw in field_mask.split(","):
        name = raw.strip().removeprefix("places.").split(".")[0]
        if not name:
            continue
        if name in _IDS_ONLY_FIELDS:
            rank = 0
        elif name in _ESSENTIALS_FIELDS:
            rank = 1
        elif name in _PRO_FIELDS:
            rank = 2
        elif name in _ENTERPRISE_FIELDS:
            rank = 3
        else:
            rank = 4
        level = max(level, rank)
    return tiers[level]


def estimated_cost_usd(stats: CallStats, *, field_mask: str = DEFAULT_FIELD_MASK) -> float:
    """Upper-bound cost of the calls in ``stats``: every attempt counted, retries included.

    Google does not bill most error responses and grants free monthly caps per SKU, so the real
    bill is at most this.
    """
    geocoding = stats.calls_by_api.get(GEOCODING_API, 0)
    details = stats.calls_by_api.get(PLACE_DETAILS_API, 0)
    per_1000 = PLACE_DETAILS_USD_PER_1000[place_details_tier(field_mask)]
    return (geocoding * GEOCODING_USD_PER_1000 + details * per_1000) / 1000.0


# --------------------------------------------------------------------------------------------
# Address normalisation (the geocode cache key)
# --------------------------------------------------------------------------------------------

_DASHES = re.compile(r"[\u2010-\u2015\u2212]")
_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc`\u00b4]")
_PERIOD_OUTSIDE_NUMBER = re.compile(r"(?<!\d)\.|\.(?!\d)")
_SEPARATORS = re.compile(r"[,;:!?\"\u201c\u201d()\[\]{}#*_|<>]")
_WHITESPACE = re.compile(r"\s+")


def normalize_address(text: str) -> str:
    """A cache key that is equal for spellings of an address that mean the same thing.

    Unicode-normalised (NFKC) and case-folded; apostrophes and abbreviation periods removed
    ("St." = "St", "O'Brien" = "OBrien"); commas, semicolons, quotes, brackets and ``#`` become
    spaces; whitespace collapsed. Kept because they carry meaning: hyphens (``12-14``), slashes
    (``1/2``), ``&``, decimal points (``1.5 Mile Rd``), accents. Words are not expanded
    (``Street`` vs ``St`` stay different): guessing abbreviations could merge distinct places,
    and a rare extra cache miss only costs one call.
    """
    out = unicodedata.normalize("NFKC", text).casefold()
    out = _DASHES.sub("-", out)
    out = _APOSTROPHES.sub("", out)
    out = _PERIOD_OUTSIDE_NUMBER.sub("", out)
    out = _SEPARATORS.sub(" ", out)
    return _WHITESPACE.sub(" ", out).strip()


# --------------------------------------------------------------------------------------------
# Results and errors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeocodeResult:
    """The first Geocoding result, or an empty ``ZERO_RESULTS`` answer (all fields None)."""

    status: str
    place_id: str | None = None
    formatted_address: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_type: str | None = None
    address_components: list[dict[str, Any]] | None = None
    types: list[str] | None = None
    # Google did not match the whole address (a typo, a missing part, a different street):
    # the point may be somewhere else entirely. See also `location_type` APPROXIMATE.
    partial_match: bool = False


@dataclass(frozen=True)
class PlaceDetails:
    """Fields of a Places (New) ``Place``; a field missing from the response (or the mask) is
    None. ``raw`` keeps the whole response for fields not modelled here."""

    place_id: str
    display_name: str | None
    formatted_address: str | None
    latitude: float | None
    longitude: float | None
    types: list[str]
    primary_type: str | None
    business_status: str | None
    utc_offset_minutes: int | None
    website_uri: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


class MapsException(Exception):
    """Base of the Maps client's errors."""


class MapsRequestError(MapsException):
    """Google refused the request in a way retrying will not fix (bad key, bad input, quota
    exhausted for the day, unknown place): fail loudly with Google's own status and message."""

    def __init__(self, status: str, error_message: str, *, http_status: int | None = None):
        self.status = status
        self.error_message = error_message
        self.http_status = http_status
        super().__init__(f"Google Maps {status}: {error_message or '(no message)'}")


class MapsUnavailable(MapsException):
    """Transient failures (throttling, 5xx, timeouts, UNKNOWN_ERROR) outlasted the retries."""

    def __init__(self, *, api: str, status: str | None, attempts: int, reason: str) -> None:
        self.api = api
        self.status = status
        self.attempts = attempts
        self.reason = reason
        super().__init__(
            f"Google {api} unavailable after {attempts} attempt(s); last: {status} ({reason})"
        )


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------


class MapsClient(ClosingClient, ABC):
    """What the venue pipeline needs from Google Maps."""

    stats: CallStats

    @abstractmethod
    def geocode(self, address: str) -> GeocodeResult:
        """The best match for a free-text address (``status`` OK or ZERO_RESULTS)."""

    @abstractmethod
    def place_details(self, place_id: str) -> PlaceDetails:
        """Details of one place, limited to the client's field mask."""


_GEOCODE_RETRY = frozenset({"OVER_QUERY_LIMIT", "UNKNOWN_ERROR"})
_GEOCODE_FATAL = frozenset({"REQUEST_DENIED", "INVALID_REQUEST", "OVER_DAILY_LIMIT"})


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class HttpMapsClient(MapsClient):
    """The real client for Geocoding and Places (New). Not thread-safe for `stats`."""

    def __init__(
        self,
        *,
        api_key: str,
        geocode_base_url: str = "https://maps.googleapis.com/maps/api/",
        places_base_url: str = "https://places.googleapis.com/v1/",
        field_mask: str = DEFAULT_FIELD_MASK,
        timeout_seconds: float = 10.0,
        max_attempts: int = 5,
        max_backoff_seconds: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key or not re.fullmatch(r"[!-~]+", api_key):
            raise ValueError("Google Maps API key must be non-empty printable ASCII")
        if not field_mask.strip():
            raise ValueError("field_mask is mandatory for Places (New) and decides the bill")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self._api_key = api_key
        self.geocode_base_url = geocode_base_url.rstrip("/") + "/"
        self.places_base_url = places_base_url.rstrip("/") + "/"
        self.field_mask = field_mask
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.max_backoff_seconds = max_backoff_seconds
        self.stats = CallStats()
        self._sleep = sleep
        protect_secret(api_key, extra_loggers=(logger.name,))
        self._closed = False
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds),
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "godo-ingest"},
        )

    # ---------------------------------------------------------------- public API

    def geocode(self, address: str) -> GeocodeResult:
        if not address or not address.strip():
            # Google would answer INVALID_REQUEST and may still bill; don't ask.
            raise ValueError("cannot geocode an empty address")
        url = self.geocode_base_url + "geocode/json"
        params = {"address": address, "key": self._api_key}
        payload = self._call(GEOCODING_API, lambda: self._geocode_attempt(url, params))
        status = payload.get("status")
        results = payload.get("results")
        if status == "ZERO_RESULTS" or not results:
            return GeocodeResult(status="ZERO_RESULTS")
        first = results[0] if isinstance(results, list) else None
        if not isinstance(first, dict):
            raise MapsRequestError("INVALID_RESPONSE", "geocode result is not an object")
        geometry = _obj(first.get("geometry"))
        location = _obj(geometry.get("location"))
        components = first.get("address_components")
        types = first.get("types")
        return GeocodeResult(
            status="OK",
            place_id=_str(first.get("place_id")),
            formatted_address=_str(first.get("formatted_address")),
            latitude=_float(location.get("lat")),
            longitude=_float(location.get("lng")),
            location_type=_str(geometry.get("location_type")),
            address_components=(
                [c for c in components if isinstance(c, dict)]
                if isinstance(components, list)
                else []
            ),
            types=[t for t in types if isinstance(t, str)] if isinstance(types, list) else [],
            partial_match=first.get("partial_match") is True,
        )

    def place_details(self, place_id: str) -> PlaceDetails:
        if not place_id or not place_id.strip():
            raise ValueError("place_id must be non-empty")
        url = self.places_base_url + f"places/{quote(place_id, safe='')}"
        headers = {"X-Goog-Api-Key": self._api_key, "X-Goog-FieldMask": self.field_mask}
        raw = self._call(PLACE_DETAILS_API, lambda: self._places_attempt(url, headers))
        display = raw.get("displayName")
        location = _obj(raw.get("location"))
        types = raw.get("types")
        offset = raw.get("utcOffsetMinutes")
        return PlaceDetails(
            place_id=_str(raw.get("id")) or place_id,
            display_name=_str(display.get("text")) if isinstance(display, dict) else None,
            formatted_address=_str(raw.get("formattedAddress")),
            latitude=_float(location.get("latitude")),
            longitude=_float(location.get("longitude")),
            types=[t for t in types if isinstance(t, str)] if isinstance(types, list) else [],
            primary_type=_str(raw.get("primaryType")),
            business_status=_str(raw.get("businessStatus")),
            utc_offset_minutes=(
                offset if isinstance(offset, int) and not isinstance(offset, bool) else None
            ),
            website_uri=_str(raw.get("websiteUri")),
            raw=raw,
        )

    def estimated_cost_usd(self) -> float:
        """`estimated_cost_usd` of this client's calls at its own field mask."""
        return estimated_cost_usd(self.stats, field_mask=self.field_mask)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._http.close()
            release_secret(self._api_key)

    # ---------------------------------------------------------------- plumbing

    def _redact(self, text: str) -> str:
        return redact(text, [self._api_key])

    def _call(self, api: str, attempt_once: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        def before_sleep(retry_state: RetryCallState) -> None:
            self.stats.retries += 1
            outcome = retry_state.outcome
            failure = outcome.exception() if outcome is not None else None
            wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
            logger.warning(
                "google %s call failed (%s); attempt %d of %d, retrying in %.1fs",
                api, failure, retry_state.attempt_number, self.max_attempts, wait,
            )  # fmt: skip

        retrying = build_retrying(
            max_attempts=self.max_attempts,
            max_backoff_seconds=self.max_backoff_seconds,
            sleep=self._sleep,
            before_sleep=before_sleep,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    self.stats.count_call(api)
                    return attempt_once()
        except RetryableFailure as failure:
            reason = failure.description
            if failure.retry_after is not None and failure.retry_after > self.max_backoff_seconds:
                reason += f"; server asked to wait {failure.retry_after:.0f}s"
            status = None if failure.status is None else str(failure.status)
            raise MapsUnavailable(
                api=api, status=status, attempts=attempts, reason=reason
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _send(self, method_url: str, **kwargs: Any) -> httpx.Response:
        """One GET; transport failures become retryable, with the key scrubbed."""
        try:
            return self._http.get(method_url, **kwargs)
        except httpx.TimeoutException as exc:
            self.stats.errors += 1
            raise RetryableFailure(
                f"{type(exc).__name__} after {self.timeout_seconds:g}s"
            ) from None
        except httpx.HTTPError as exc:
            self.stats.errors += 1
            raise RetryableFailure(f"{type(exc).__name__}: {self._redact(str(exc))}") from None

    def _json_object(self, response: httpx.Response) -> dict[str, Any] | None:
        try:
            body = response.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _geocode_attempt(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        response = self._send(url, params=params)
        code = response.status_code
        body = self._json_object(response)
        status = _str(body.get("status")) if body is not None else None
        message = self._redact(_str(body.get("error_message")) or "") if body is not None else ""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if code == 429 or status == "OVER_QUERY_LIMIT":
            self.stats.errors += 1
            self.stats.throttled += 1
            raise RetryableFailure(
                f"OVER_QUERY_LIMIT (HTTP {code}) {message}".strip(),
                status=status or code,
                retry_after=retry_after,
                throttled=True,
            )
        if code >= 500 or status == "UNKNOWN_ERROR":
            self.stats.errors += 1
            raise RetryableFailure(
                f"{status or 'server error'} (HTTP {code}) {message}".strip(),
                status=status or code,
                retry_after=retry_after,
            )
        if status in _GEOCODE_FATAL:
            self.stats.errors += 1
            raise MapsRequestError(status, message, http_status=code)
        if code != 200 or body is None or status not in {"OK", "ZERO_RESULTS"}:
            self.stats.errors += 1
            text = message or self._redact(response.text[:200])
            raise MapsRequestError(status or f"HTTP_{code}", text, http_status=code)
        return body

    def _places_attempt(self, url: str, headers: dict[str, str]) -> dict[str, Any]:
        response = self._send(url, headers=headers)
        code = response.status_code
        body = self._json_object(response)
        if code == 200:
            if body is None:
                self.stats.errors += 1
                raise RetryableFailure("invalid JSON body from Places", status=code)
            return body
        self.stats.errors += 1
        error = body.get("error") if body is not None else None
        error = error if isinstance(error, dict) else {}
        status = _str(error.get("status")) or f"HTTP_{code}"
        message = self._redact(_str(error.get("message")) or response.text[:200])
        if code == 429 or code >= 500:
            throttled = code == 429
            if throttled:
                self.stats.throttled += 1
            raise RetryableFailure(
                f"{status} (HTTP {code}) {message}".strip(),
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                throttled=throttled,
            )
        raise MapsRequestError(status, message, http_status=code)
