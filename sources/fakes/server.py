"""A local fake of the Eventbrite API v3 and the Google Maps Geocoding + Places (New) APIs.

Why: the ingest code must be tested, and the demo must run, through the same HTTP clients that
production uses, without tokens, quotas or network. ``FakeUpstream`` serves JSON generated
from a synthetic ``World`` on a free localhost port, speaks the providers' real shapes,
statuses and error bodies, and injects the failures a ``FaultPlan`` asks for. Point the
clients' base URLs at ``eventbrite_base_url``, ``geocode_base_url`` and ``places_base_url``.

Standard library only (``http.server``), run in a daemon thread: nothing to install, and a
test can start one per module in a few milliseconds.

Endpoints (all GET):

- ``/v3/organizations/{id}/events/``, ``/v3/venues/{id}/events/``,
  ``/v3/organizers/{id}/events/``: list responses with ``pagination`` and opaque
  ``continuation`` tokens; ``page_size`` (default 50, at most 200), ``time_filter``
  (``all`` by default, ``current_future``, ``past``; relative to the world's ``now``),
  ``status`` (comma-separated, on the status as listed), ``order_by`` (``start_asc`` by
  default, ``start_desc``, ``created_asc``, ``created_desc``, ``name_asc``, ``name_desc``) and
  ``expand`` (only the expansions named are included).
- ``/v3/events/{id}/``: one event with its true status and the expansions asked for.
- ``/v3/venues/{id}/``: one venue (the object a ``venue`` expansion carries).
- ``/maps/api/geocode/json?address=...&key=...`` (also ``place_id=...``).
- ``/v1/places/{place_id}`` with ``X-Goog-Api-Key`` and ``X-Goog-FieldMask``.

Deliberate strictness: Eventbrite also accepts ``?token=`` in the URL, the fake does not, so a
client that would leak its token into URLs (and access logs) fails against the fake. The
server never logs query strings (the Maps key travels in one).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs, urlsplit

from core.metros import METROS
from sources.fakes.faults import (
    Api,
    FaultPlan,
    FaultView,
    malformation_kind,
    normalize_address,
)
from sources.fakes.lifecycle import LocalFakeServer
from sources.fakes.maps_json import (
    FieldMaskError,
    apply_field_mask,
    approximate_geocode_result,
    geocode_result,
    lookup_addresses,
    parse_field_mask,
    place_id_for,
    place_resource,
)
from sources.synthetic.eventbrite_json import (
    EXPANSIONS,
    event_records,
    organizer_record,
    quirk_live_event_ids,
    venue_record,
)
from sources.synthetic.world import CityConfig, World, build_world

log = logging.getLogger(__name__)

DEFAULT_EVENTBRITE_TOKEN = "fake-eventbrite-token"
DEFAULT_MAPS_KEY = "fake-maps-key"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

TIME_FILTERS = ("all", "current_future", "past")
ORDERS = ("start_asc", "start_desc", "created_asc", "created_desc", "name_asc", "name_desc")
EVENT_STATUSES = ("draft", "live", "started", "ended", "completed", "canceled")
SUPPORTED_EXPANSIONS = frozenset((*EXPANSIONS, "organizer"))

# Endpoint names used by ``FakeUpstream.counts``.
ORGANIZATION_EVENTS = "eventbrite.organization_events"
VENUE_EVENTS = "eventbrite.venue_events"
ORGANIZER_EVENTS = "eventbrite.organizer_events"
EVENT = "eventbrite.event"
VENUE = "eventbrite.venue"
GEOCODE = "geocode"
PLACE_DETAILS = "places.details"
UNKNOWN = "unknown"

_ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"
_LISTINGS = {
    "organizations": ("organization_id", ORGANIZATION_EVENTS, "organization"),
    "venues": ("venue_id", VENUE_EVENTS, "venue"),
    "organizers": ("organizer_id", ORGANIZER_EVENTS, "organizer"),
}
_LIST_PATH = re.compile(r"^/v3/(organizations|venues|organizers)/([^/]+)/events/?$")
_EVENT_PATH = re.compile(r"^/v3/events/([^/]+)/?$")
_VENUE_PATH = re.compile(r"^/v3/venues/([^/]+)/?$")
_GEOCODE_PATH = re.compile(r"^/maps/api/geocode/json/?$")
_PLACE_PATH = re.compile(r"^/v1/places/([^/:]+)$")


class RecordedRequest(NamedTuple):
    """One request as the fake received it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeResponse:
    """What the fake answers: HTTP status, a JSON-serialisable body, extra headers."""

    status: int
    body: Any
    headers: dict[str, str]


def _json(status: int, body: Any, **headers: str) -> FakeResponse:
    return FakeResponse(status, body, headers)


@dataclass(frozen=True)
class _EventFacts:
    """What filtering and ordering need, kept apart from the JSON record."""

    start: datetime
    end: datetime
    created: datetime
    name: str
    status: str


def _parse_utc(text: str) -> datetime:
    return datetime.strptime(text, _ISO_UTC).replace(tzinfo=UTC)


def _eventbrite_error(status: int, error: str, description: str, **headers: str) -> FakeResponse:
    body = {"status_code": status, "error": error, "error_description": description}
    return _json(status, body, **headers)


def _places_error(status: int, code: str, message: str, **headers: str) -> FakeResponse:
    return _json(status, {"error": {"code": status, "message": message, "status": code}}, **headers)


def _geocode_status(status: str, message: str | None = None, http: int = 200) -> FakeResponse:
    body: dict[str, Any] = {"results": [], "status": status}
    if message is not None:
        body["error_message"] = message
    return _json(http, body)


_GEOCODE_MESSAGES = {
    "OVER_DAILY_LIMIT": "You have exceeded your daily request quota for this API.",
    "OVER_QUERY_LIMIT": "You have exceeded your rate-limit for this API.",
    "REQUEST_DENIED": "This API project is not authorized to use this API.",
    "INVALID_REQUEST": "Invalid request.",
    "UNKNOWN_ERROR": "An internal error occurred. Please try again.",
}


_Route = Callable[[RecordedRequest, FaultView], FakeResponse]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    upstream: FakeUpstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test, a retrying client) is normal here, not an
        # error worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        log.exception("fake upstream: error serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Parses the request, hands it to ``FakeUpstream.handle`` and writes JSON back."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs; every answer has a length
    server_version = "GodoFakeUpstream/1.0"
    timeout = 30  # idle keep-alive connections end instead of holding a thread forever
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms to each.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # drain the body so the connection stays usable
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        upstream = cast(_Server, self.server).upstream
        request = RecordedRequest(self.command, split.path, query, headers)
        try:
            response = upstream.handle(request)
        except Exception:  # a bug in the fake must show up as a 500, not a dropped socket
            log.exception("fake upstream failed on %s %s", self.command, split.path)
            response = _json(500, {"error": "fake upstream bug, see the server log"})
        payload = json.dumps(response.body, ensure_ascii=False).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # The default logs the request line with its query string, which carries the Maps
        # key; keep only the method and path, at debug level.
        log.debug("%s %s", self.command, urlsplit(self.path).path)


class FakeUpstream(LocalFakeServer):
    """Eventbrite + Google Maps, served from a synthetic world on localhost.

    Use as a context manager (``with FakeUpstream(world) as fake: ...``) or call ``start`` and
    ``stop``. ``faults`` may be changed while the server runs. ``requests`` and ``counts``
    record what arrived, for assertions such as "the second run made zero geocoding calls".
    ``eventbrite_token`` and ``maps_key`` are the only credentials it accepts; the defaults
    are public fake values, safe to print.
    """

    def __init__(
        self,
        world: World,
        *,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        eventbrite_token: str = DEFAULT_EVENTBRITE_TOKEN,
        maps_key: str = DEFAULT_MAPS_KEY,
    ) -> None:
        super().__init__(host=host, port=port)
        self.world = world
        self.faults = faults if faults is not None else FaultPlan()
        self.eventbrite_token = eventbrite_token
        self.maps_key = maps_key
        self._log_lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._counts: Counter[str] = Counter()

        # Everything a request needs is computed once: records never change, faults are
        # applied to shallow copies per request.
        self._now = world.config.now
        self._records = {r["id"]: r for r in event_records(world)}
        self._order = list(self._records)  # start time, then id
        self._quirk = quirk_live_event_ids(world)
        self._facts = {
            event_id: _EventFacts(
                start=_parse_utc(r["start"]["utc"]),
                end=_parse_utc(r["end"]["utc"]),
                created=_parse_utc(r["created"]),
                name=r["name"]["text"],
                status=r["status"],
            )
            for event_id, r in self._records.items()
        }
        self._organizers = {
            org["organization_id"]: organizer_record(org)
            for org in world.organizations.iter_rows(named=True)
        }
        self._listing_owners = {
            "organizations": frozenset(self._organizers),
            "venues": frozenset(world.venues["venue_id"].to_list()),
            "organizers": frozenset(self._organizers),
        }
        self._by_owner: dict[tuple[str, str], list[str]] = {}
        for event_id in self._order:
            for kind, (field, _, _) in _LISTINGS.items():
                owner_key = (kind, self._records[event_id][field])
                self._by_owner.setdefault(owner_key, []).append(event_id)
        timezones = dict(
            zip(world.metros["metro"].to_list(), world.metros["timezone"].to_list(), strict=True)
        )
        self._geocode_results: dict[str, dict[str, Any]] = {}
        self._approximate_results: dict[str, dict[str, Any]] = {}
        self._venue_records: dict[str, dict[str, Any]] = {}
        self._places: dict[str, dict[str, Any]] = {}
        self._address_index: dict[str, str] = {}
        self._place_index: dict[str, str] = {}
        for venue in world.venues.iter_rows(named=True):
            venue_id = venue["venue_id"]
            self._geocode_results[venue_id] = geocode_result(venue)
            metro = METROS[venue["metro"]]
            self._approximate_results[venue_id] = approximate_geocode_result(
                venue, metro.center_lat, metro.center_lon
            )
            self._venue_records[venue_id] = venue_record(venue)
            self._places[venue_id] = place_resource(venue, timezones[venue["metro"]], self._now)
            self._place_index[place_id_for(venue_id)] = venue_id
            for address in lookup_addresses(venue):
                # Two venues at one address: the first keeps it, as Google returns one place.
                self._address_index.setdefault(normalize_address(address), venue_id)

    @property
    def faults(self) -> FaultPlan:
        """The plan in force; mutate it, or assign a new one, while the server runs."""
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        if plan.now is None:
            plan.now = self.world.config.now  # the fake's present, for ``FaultPlan.touch``
        self._faults = plan

    # -- lifecycle --------------------------------------------------------------------------

    thread_name = "fake-upstream"

    def _make_server(self) -> _Server:
        server = _Server((self.host, self.port), _Handler)
        server.upstream = self
        return server

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeUpstream is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def eventbrite_base_url(self) -> str:
        return f"{self.base_url}/v3/"

    @property
    def geocode_base_url(self) -> str:
        return f"{self.base_url}/maps/api/"

    @property
    def places_base_url(self) -> str:
        return f"{self.base_url}/v1/"

    # -- what arrived -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, in arrival order."""
        with self._log_lock:
            return list(self._requests)

    @property
    def counts(self) -> dict[str, int]:
        """Requests received per endpoint (``ORGANIZATION_EVENTS``, ``GEOCODE``, ...)."""
        with self._log_lock:
            return dict(self._counts)

    def count(self, endpoint: str) -> int:
        """Requests received by one endpoint, whatever their outcome."""
        with self._log_lock:
            return self._counts[endpoint]

    def reset_log(self) -> None:
        """Forget recorded requests and counts (faults are left alone)."""
        with self._log_lock:
            self._requests.clear()
            self._counts.clear()

    # -- helpers for tests and the demo -----------------------------------------------------

    def venues_without_coordinates(self) -> frozenset[str]:
        """Venue ids whose Eventbrite JSON currently has null latitude/longitude."""
        view = self.faults.view()
        return frozenset(v for v in self._listing_owners["venues"] if view.hides_coordinates(v))

    def place_id(self, venue_id: str) -> str:
        """The fake Google place id of a venue (what geocoding it returns)."""
        return place_id_for(venue_id)

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> FakeResponse:
        """Route one request; public so the fake can also be driven without sockets."""
        endpoint, api, route = self._route(request)
        with self._log_lock:
            self._requests.append(request)
            self._counts[endpoint] += 1
        faults = self.faults  # one plan per request, even if a test swaps it meanwhile
        if api is not None:
            delay = faults.delay_for(api)
            if delay > 0:
                time.sleep(delay)
            if faults.take_rate_limit(api):
                return self._rate_limited(api, faults.retry_after_seconds)
            failure = faults.take_failure(api)
            if failure is not None:
                return self._server_error(api, failure)
        if route is None:
            return self._not_found(api, request.path)
        if request.method not in ("GET", "HEAD"):
            return self._method_not_allowed(api, request.method)
        return route(request, faults.view())

    def _route(self, request: RecordedRequest) -> tuple[str, Api | None, _Route | None]:
        path = request.path
        if match := _LIST_PATH.match(path):
            kind, owner = match.groups()
            endpoint = _LISTINGS[kind][1]
            return endpoint, "eventbrite", lambda r, v: self._list_events(r, v, kind, owner)
        if match := _EVENT_PATH.match(path):
            event_id = match.group(1)
            return EVENT, "eventbrite", lambda r, v: self._single_event(r, v, event_id)
        if match := _VENUE_PATH.match(path):
            venue_id = match.group(1)
            return VENUE, "eventbrite", lambda r, v: self._single_venue(r, v, venue_id)
        if _GEOCODE_PATH.match(path):
            return GEOCODE, "geocode", self._geocode
        if match := _PLACE_PATH.match(path):
            place_id = match.group(1)
            return PLACE_DETAILS, "places", lambda r, v: self._place_details(r, v, place_id)
        if path.startswith("/v3/"):
            return UNKNOWN, "eventbrite", None
        if path.startswith("/maps/api/"):
            return UNKNOWN, "geocode", None
        if path.startswith("/v1/"):
            return UNKNOWN, "places", None
        return UNKNOWN, None, None

    def _rate_limited(self, api: Api, retry_after_seconds: int) -> FakeResponse:
        retry_after = str(retry_after_seconds)
        if api == "eventbrite":
            return _eventbrite_error(
                429,
                "HIT_RATE_LIMIT",
                "Hit rate limit. Please wait and try again.",
                **{"Retry-After": retry_after},
            )
        if api == "geocode":  # Google's Geocoding API: HTTP 200, status in the body
            return _geocode_status("OVER_QUERY_LIMIT", _GEOCODE_MESSAGES["OVER_QUERY_LIMIT"])
        return _places_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Requests' of service places.",
            **{"Retry-After": retry_after},
        )

    def _server_error(self, api: Api, status: int) -> FakeResponse:
        unavailable = status == 503
        if api == "eventbrite":
            if unavailable:
                return _eventbrite_error(
                    503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable."
                )
            return _eventbrite_error(status, "INTERNAL_ERROR", "An internal error occurred.")
        if api == "geocode":
            return _geocode_status("UNKNOWN_ERROR", _GEOCODE_MESSAGES["UNKNOWN_ERROR"], status)
        if unavailable:
            return _places_error(503, "UNAVAILABLE", "The service is currently unavailable.")
        return _places_error(status, "INTERNAL", "Internal error encountered.")

    def _not_found(self, api: Api | None, path: str) -> FakeResponse:
        if api == "places":
            return _places_error(404, "NOT_FOUND", f"Method not found: {path}")
        if api == "geocode":
            return _json(404, {"error": f"no such Maps endpoint: {path}"})
        return _eventbrite_error(404, "NOT_FOUND", f"The path {path} does not exist.")

    def _method_not_allowed(self, api: Api | None, method: str) -> FakeResponse:
        if api == "places":
            return _places_error(405, "METHOD_NOT_ALLOWED", f"{method} is not supported here.")
        return _eventbrite_error(
            405, "METHOD_NOT_ALLOWED", f"{method} is not supported by the fake."
        )

    # -- Eventbrite -------------------------------------------------------------------------

    def _eventbrite_auth(self, request: RecordedRequest) -> FakeResponse | None:
        header = request.headers.get("authorization", "")
        if not header:
            return _eventbrite_error(401, "NO_AUTH", "An OAuth token is required for all requests.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.eventbrite_token:
            return _eventbrite_error(
                401, "INVALID_AUTH", "The OAuth token you provided was invalid."
            )
        return None

    @staticmethod
    def _expansions(request: RecordedRequest) -> frozenset[str] | FakeResponse:
        names = frozenset(
            n.strip() for n in request.query.get("expand", "").split(",") if n.strip()
        )
        unknown = sorted(names - SUPPORTED_EXPANSIONS)
        if unknown:
            return _eventbrite_error(
                400,
                "ARGUMENTS_ERROR",
                f"There are errors with your arguments: expand - unknown expansion {unknown}",
            )
        return names

    def _render(
        self, event_id: str, expand: frozenset[str], view: FaultView, *, listing: bool
    ) -> dict[str, Any]:
        """One event record with the request's expansions and the plan's faults applied."""
        record = dict(self._records[event_id])  # shallow: nested objects are replaced, not edited
        if event_id in view.cancelled_event_ids:
            record["status"] = "live" if listing else "canceled"
        elif listing and event_id in self._quirk:
            record["status"] = "live"
        if event_id in view.changed_event_ids:
            record["changed"] = view.changed_event_ids[event_id].strftime(_ISO_UTC)
        for name in EXPANSIONS:
            if name not in expand:
                del record[name]
        if "organizer" in expand:
            record["organizer"] = self._organizers.get(record["organizer_id"])
        if event_id in view.unexpanded_event_ids:
            record.pop("venue", None)
            record.pop("category", None)
        venue = record.get("venue")
        if venue is not None:
            record["venue"] = _hide_coordinates(venue, view)
        if listing and event_id in view.malformed_event_ids:
            _corrupt(record)
        return record

    def _list_events(
        self, request: RecordedRequest, view: FaultView, kind: str, owner: str
    ) -> FakeResponse:
        if (denied := self._eventbrite_auth(request)) is not None:
            return denied
        noun = _LISTINGS[kind][2]
        if owner not in self._listing_owners[kind]:
            return _eventbrite_error(404, "NOT_FOUND", f"The {noun} you requested does not exist.")
        query = request.query
        expand = self._expansions(request)
        if isinstance(expand, FakeResponse):
            return expand
        args = _ListArgs.parse(query)
        if isinstance(args, FakeResponse):
            return args

        scope = f"{kind}:{owner}:{args.fingerprint}"
        offset, page_number = 0, 1
        if "continuation" in query:
            position = _read_continuation(query["continuation"], scope)
            if position is None:
                return _eventbrite_error(
                    400,
                    "INVALID_CONTINUATION",
                    "The continuation token you provided is invalid or does not belong to "
                    "this request.",
                )
            offset, page_number = position
        elif "page" in query:
            page = _positive_int(query["page"])
            if page is None:
                return _eventbrite_error(
                    400, "ARGUMENTS_ERROR", "There are errors with your arguments: page - INVALID"
                )
            offset, page_number = (page - 1) * args.page_size, page

        ids = self._select(kind, owner, args, view)
        total = len(ids)
        chunk = ids[offset : offset + args.page_size]
        has_more = offset + args.page_size < total
        pagination: dict[str, Any] = {
            "object_count": total,
            "page_number": page_number,
            "page_size": args.page_size,
            "page_count": max(1, -(-total // args.page_size)),
            "has_more_items": has_more,
        }
        if has_more:
            pagination["continuation"] = _write_continuation(
                scope, offset + args.page_size, page_number + 1
            )
        events = [self._render(e, expand, view, listing=True) for e in chunk]
        return _json(200, {"pagination": pagination, "events": events})

    def _select(self, kind: str, owner: str, args: _ListArgs, view: FaultView) -> list[str]:
        def listed_status(event_id: str) -> str:
            if event_id in view.cancelled_event_ids or event_id in self._quirk:
                return "live"
            return self._facts[event_id].status

        ids = list(self._by_owner.get((kind, owner), ()))
        if args.time_filter == "current_future":
            ids = [e for e in ids if self._facts[e].end > self._now]
        elif args.time_filter == "past":
            ids = [e for e in ids if self._facts[e].end <= self._now]
        if args.statuses is not None:
            ids = [e for e in ids if listed_status(e) in args.statuses]
        key, descending = args.order_by.rsplit("_", 1)
        if key != "start" or descending == "desc":
            sort_key: Callable[[str], Any] = {
                "start": lambda e: (self._facts[e].start, e),
                "created": lambda e: (self._facts[e].created, e),
                "name": lambda e: (self._facts[e].name.casefold(), e),
            }[key]
            ids.sort(key=sort_key, reverse=descending == "desc")
        return ids

    def _single_event(
        self, request: RecordedRequest, view: FaultView, event_id: str
    ) -> FakeResponse:
        if (denied := self._eventbrite_auth(request)) is not None:
            return denied
        if event_id not in self._records:
            return _eventbrite_error(404, "NOT_FOUND", "The event you requested does not exist.")
        expand = self._expansions(request)
        if isinstance(expand, FakeResponse):
            return expand
        return _json(200, self._render(event_id, expand, view, listing=False))

    def _single_venue(
        self, request: RecordedRequest, view: FaultView, venue_id: str
    ) -> FakeResponse:
        if (denied := self._eventbrite_auth(request)) is not None:
            return denied
        if venue_id not in self._venue_records or venue_id in view.missing_venue_ids:
            return _eventbrite_error(404, "NOT_FOUND", "The venue you requested does not exist.")
        return _json(200, _hide_coordinates(self._venue_records[venue_id], view))

    # -- Google Geocoding -------------------------------------------------------------------

    def _geocode(self, request: RecordedRequest, view: FaultView) -> FakeResponse:
        query = request.query
        key = query.get("key", "")
        if not key:
            return _geocode_status(
                "REQUEST_DENIED",
                "You must use an API key to authenticate each request to Google Maps Platform "
                "APIs.",
            )
        if key != self.maps_key:
            return _geocode_status("REQUEST_DENIED", "The provided API key is invalid.")
        address = query.get("address", "").strip()
        place_id = query.get("place_id", "").strip()
        if not address and not place_id:
            # Google answers this one with HTTP 400 (the other statuses come with 200).
            return _geocode_status(
                "INVALID_REQUEST",
                "Invalid request. Missing the 'address', 'components', 'latlng' or 'place_id' "
                "parameter.",
                http=400,
            )
        if address:
            forced = view.geocode_status(address)
            if forced is not None and forced != "OK":
                message = _GEOCODE_MESSAGES.get(forced)
                return _geocode_status(forced, message, 400 if forced == "INVALID_REQUEST" else 200)
            venue_id = self._address_index.get(normalize_address(address))
        else:
            venue_id = self._place_index.get(place_id)
        if venue_id is None:
            return _geocode_status("ZERO_RESULTS")
        if address and normalize_address(address) in view.approximate_addresses:
            return _json(200, {"results": [self._approximate_results[venue_id]], "status": "OK"})
        return _json(200, {"results": [self._geocode_results[venue_id]], "status": "OK"})

    # -- Google Places (New) ----------------------------------------------------------------

    def _place_details(
        self, request: RecordedRequest, view: FaultView, place_id: str
    ) -> FakeResponse:
        del view  # Places has no record-level faults (yet); same signature as the others
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        if not key:
            return _places_error(
                403,
                "PERMISSION_DENIED",
                "The request is missing a valid API key.",
            )
        if key != self.maps_key:
            return _places_error(
                400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."
            )
        mask = request.headers.get("x-goog-fieldmask") or request.query.get("fields", "")
        paths = parse_field_mask(mask)
        if not paths:
            return _places_error(
                400,
                "INVALID_ARGUMENT",
                "FieldMask is a required parameter. See "
                "https://cloud.google.com/apis/docs/system-parameters on how to provide it. "
                "As an example, you can set the header 'X-Goog-FieldMask' to value "
                "'displayName' to ask for the display name.",
            )
        venue_id = self._place_index.get(place_id)
        if venue_id is None:
            return _places_error(404, "NOT_FOUND", "Requested entity was not found.")
        try:
            body = apply_field_mask(self._places[venue_id], paths)
        except FieldMaskError as exc:
            return _places_error(400, "INVALID_ARGUMENT", str(exc))
        return _json(200, body)


# -- Eventbrite list arguments and continuation tokens ---------------------------------------


@dataclass(frozen=True)
class _ListArgs:
    page_size: int
    time_filter: str
    order_by: str
    statuses: frozenset[str] | None

    @property
    def fingerprint(self) -> str:
        """What a continuation is bound to: the same listing with the same filters."""
        statuses = ",".join(sorted(self.statuses)) if self.statuses is not None else "all"
        return f"{self.time_filter}|{self.order_by}|{statuses}"

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> _ListArgs | FakeResponse:
        def bad(name: str) -> FakeResponse:
            return _eventbrite_error(
                400, "ARGUMENTS_ERROR", f"There are errors with your arguments: {name} - INVALID"
            )

        page_size = DEFAULT_PAGE_SIZE
        if "page_size" in query:
            parsed = _positive_int(query["page_size"])
            if parsed is None:
                return bad("page_size")
            page_size = min(parsed, MAX_PAGE_SIZE)
        time_filter = query.get("time_filter", "all") or "all"
        if time_filter not in TIME_FILTERS:
            return bad("time_filter")
        order_by = query.get("order_by", "start_asc") or "start_asc"
        if order_by not in ORDERS:
            return bad("order_by")
        statuses: frozenset[str] | None = None
        raw_status = query.get("status", "")
        if raw_status and raw_status != "all":
            statuses = frozenset(s.strip() for s in raw_status.split(",") if s.strip())
            if not statuses <= set(EVENT_STATUSES):
                return bad("status")
        return cls(page_size, time_filter, order_by, statuses)


def _positive_int(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value > 0 else None


def _write_continuation(scope: str, offset: int, page_number: int) -> str:
    """An opaque cursor, like Eventbrite's: clients must pass it back, never build one."""
    raw = json.dumps({"s": scope, "o": offset, "p": page_number}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _read_continuation(token: str, scope: str) -> tuple[int, int] | None:
    """(offset, page number) of a token issued for ``scope``, or None if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        offset, page = data["o"], data["p"]
        valid = (
            data["s"] == scope
            and isinstance(offset, int)
            and isinstance(page, int)
            and offset >= 0
            and page >= 1
        )
    except (binascii.Error, ValueError, TypeError, KeyError):
        return None
    return (offset, page) if valid else None


def _hide_coordinates(venue: dict[str, Any], view: FaultView) -> dict[str, Any]:
    """The venue object, with null coordinates when the plan hides this venue's."""
    if not view.hides_coordinates(venue["id"]):
        return venue
    address = {**venue["address"], "latitude": None, "longitude": None}
    return {**venue, "address": address, "latitude": None, "longitude": None}


def _corrupt(record: dict[str, Any]) -> None:
    """Break a listed record the way ``malformation_kind`` says (replacing nested objects)."""
    kind = malformation_kind(record["id"])
    if kind == "missing_start_utc":
        record["start"] = {k: v for k, v in record["start"].items() if k != "utc"}
    elif kind == "empty_name":
        record["name"] = {"text": "", "html": ""}
    elif kind == "end_before_start":
        start = _parse_utc(record["start"]["utc"])
        record["end"] = {**record["end"], "utc": (start - timedelta(hours=1)).strftime(_ISO_UTC)}
    else:  # bad_start_utc
        record["start"] = {**record["start"], "utc": "TBA"}


# -- standalone entry point ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Serve a synthetic city until Ctrl-C, for poking at the fake by hand (curl, httpie)."""
    parser = argparse.ArgumentParser(
        prog="python -m sources.fakes.server", description=main.__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tiny", action="store_true", help="the unit tests' tiny city")
    parser.add_argument(
        "--now", type=datetime.fromisoformat, default=None, help="the world's present (ISO)"
    )
    parser.add_argument("--eventbrite-token", default=DEFAULT_EVENTBRITE_TOKEN)
    parser.add_argument("--maps-key", default=DEFAULT_MAPS_KEY)
    parser.add_argument("--no-coordinates-share", type=float, default=0.0)
    args = parser.parse_args(argv)

    now = args.now
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    config = CityConfig.tiny(now=now, seed=args.seed) if args.tiny else CityConfig(seed=args.seed)
    if now is not None and not args.tiny:
        config = config.replace(now=now)
    world = build_world(config)
    faults = FaultPlan(venues_without_coordinates_share=args.no_coordinates_share)
    fake = FakeUpstream(
        world,
        faults=faults,
        host=args.host,
        port=args.port,
        eventbrite_token=args.eventbrite_token,
        maps_key=args.maps_key,
    ).start()
    org = world.organizations["organization_id"][0]
    venue = world.venues.row(0, named=True)
    print(f"Fake upstream for a city of seed {config.seed}, now={config.now.isoformat()}")
    print(f"  base URL    {fake.base_url}")
    bearer = f"Authorization: Bearer {fake.eventbrite_token}"
    print(f"  Eventbrite  {fake.eventbrite_base_url}   ({bearer})")
    print(f"  Geocoding   {fake.geocode_base_url}   (key={fake.maps_key})")
    print(f"  Places      {fake.places_base_url}   (X-Goog-Api-Key: {fake.maps_key})")
    print("Try:")
    print(
        f"  curl -H 'Authorization: Bearer {fake.eventbrite_token}' "
        f"'{fake.eventbrite_base_url}organizations/{org}/events/?page_size=2&expand=venue'"
    )
    print(
        f"  curl '{fake.geocode_base_url}geocode/json?key={fake.maps_key}&address="
        f"{venue['address_1'].replace(' ', '+')},+{venue['city'].replace(' ', '+')}"
        f",+{venue['region']}+{venue['postal_code']}'"
    )
    print(
        f"  curl -H 'X-Goog-Api-Key: {fake.maps_key}' -H 'X-Goog-FieldMask: displayName,location' "
        f"'{fake.places_base_url}places/{fake.place_id(venue['venue_id'])}'"
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
