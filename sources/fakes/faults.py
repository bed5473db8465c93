"""What can go wrong upstream, as switches a test or the demo flips while the fake runs.

Why a separate, mutable plan: the failure modes the ingest code must survive (rate-limit
bursts, 5xx, slow answers, broken records, cancelled events listed as live, venues without
coordinates, addresses Google cannot find, events edited since the last run) are what the
tests are about, and they must be switchable between two requests of one run, not only when
the server starts. ``FakeUpstream`` reads a consistent ``FaultView`` snapshot per request.

Every per-record choice is a pure function of the id (a hash), never of a random generator, so
the same plan on the same world selects the same venues and corrupts records the same way in
every process and on every run.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

Api = Literal["eventbrite", "geocode", "places"]
"""The three upstream APIs the fake speaks."""

Scope = Literal["eventbrite", "geocode", "places", "all"]
"""Which API a request-level fault (429 burst, 5xx, slowness) applies to."""

MalformationKind = Literal["missing_start_utc", "empty_name", "end_before_start", "bad_start_utc"]
MALFORMATION_KINDS: tuple[MalformationKind, ...] = get_args(MalformationKind)
"""How a record listed in ``malformed_event_ids`` is broken; see ``malformation_kind``."""

GEOCODE_STATUSES = frozenset(
    {
        "OK",
        "ZERO_RESULTS",
        "OVER_DAILY_LIMIT",
        "OVER_QUERY_LIMIT",
        "REQUEST_DENIED",
        "INVALID_REQUEST",
        "UNKNOWN_ERROR",
    }
)


def unit_hash(*parts: str) -> float:
    """A stable number in [0, 1) for a key: deterministic selection without an RNG."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def malformation_kind(event_id: str) -> MalformationKind:
    """How the fake corrupts this event when it is malformed (stable per id).

    Each kind is something the Eventbrite parser must quarantine: a missing ``start.utc``, a
    blank ``name.text``, an ``end.utc`` before ``start.utc``, and a ``start.utc`` that is not a
    time at all.
    """
    return MALFORMATION_KINDS[int(unit_hash("malformed", event_id) * len(MALFORMATION_KINDS))]


def normalize_address(address: str) -> str:
    """Casefold, collapse whitespace and drop spaces before commas: the geocoder's lookup key.

    Google tolerates such differences, so the fake does too; anything else (abbreviations,
    missing parts) is a different address, as far as the fake is concerned.
    """
    return " ".join(address.split()).replace(" ,", ",").casefold()


def _in_scope(scope: Scope, api: Api) -> bool:
    return scope == "all" or scope == api


@dataclass(frozen=True)
class FaultView:
    """An immutable snapshot of a ``FaultPlan``, taken once per request."""

    malformed_event_ids: frozenset[str]
    cancelled_event_ids: frozenset[str]
    venues_without_coordinates_share: float
    zero_results_addresses: frozenset[str]
    geocode_statuses: dict[str, str]
    changed_event_ids: dict[str, datetime]
    approximate_addresses: frozenset[str] = frozenset()
    unexpanded_event_ids: frozenset[str] = frozenset()
    missing_venue_ids: frozenset[str] = frozenset()

    def hides_coordinates(self, venue_id: str) -> bool:
        """Whether this venue's latitude/longitude are null in Eventbrite's venue JSON."""
        share = self.venues_without_coordinates_share
        return share > 0 and unit_hash("no-coordinates", venue_id) < share

    def geocode_status(self, address: str) -> str | None:
        """A forced Geocoding status for this address, or None for a normal lookup."""
        key = normalize_address(address)
        if key in self.geocode_statuses:
            return self.geocode_statuses[key]
        if key in self.zero_results_addresses:
            return "ZERO_RESULTS"
        return None


@dataclass(eq=False)
class FaultPlan:
    """Faults the fake injects; change fields (or call ``update``) while the server runs.

    Request-level faults, each limited to one API by its ``*_scope`` ("all" by default):

    - ``burst_429``: the next N in-scope requests are rate-limited. Eventbrite answers HTTP 429
      ``HIT_RATE_LIMIT`` and Places HTTP 429 ``RESOURCE_EXHAUSTED``, both with
      ``Retry-After: retry_after_seconds``; Geocoding answers HTTP 200 with
      ``"status": "OVER_QUERY_LIMIT"`` and no Retry-After, which is what Google does.
    - ``fail_500``: the next N in-scope requests fail with HTTP ``fail_status`` (500 or 503)
      and the provider's error JSON. Rate-limit bursts are served first when both are set.
    - ``slow_seconds``: every in-scope response is delayed by this long.

    Record-level faults:

    - ``malformed_event_ids``: these records are corrupted in list responses (never in
      ``GET /v3/events/{id}/``), each in the way ``malformation_kind`` names.
    - ``cancelled_event_ids``: forced canceled: the single-event endpoint says ``canceled``,
      list responses say ``live`` (Eventbrite's known quirk).
    - ``venues_without_coordinates_share``: this share of venues (chosen by a hash of the venue
      id) has null latitude/longitude in Eventbrite's venue JSON, so the geocoder is needed.
      The Geocoding and Places APIs still know their true location.
    - ``zero_results_addresses``: Geocoding answers ``ZERO_RESULTS`` for these addresses.
    - ``geocode_statuses``: address -> any Geocoding status (``OVER_DAILY_LIMIT``,
      ``UNKNOWN_ERROR``, ...) to answer for it, so every status path can be exercised.
    - ``changed_event_ids``: event id -> the ``changed`` time the fake reports instead of the
      world's; fill it with ``touch`` to simulate edits for incremental ingest.
    - ``approximate_addresses``: Geocoding matches only the city of these addresses and
      answers ``partial_match: true``, ``location_type: APPROXIMATE`` at the city centre.
    - ``unexpanded_event_ids``: these records come without their ``venue`` and ``category``
      objects even when the expansions are asked for (only ``venue_id``/``category_id``), as
      real records sometimes do.
    - ``missing_venue_ids``: ``GET /v3/venues/{id}/`` answers 404 ``NOT_FOUND`` for these.

    Addresses are compared after ``normalize_address``. ``now`` is the fake's present; the
    server sets it to the world's ``now`` when left unset.
    """

    burst_429: int = 0
    burst_429_scope: Scope = "all"
    retry_after_seconds: int = 1
    fail_500: int = 0
    fail_500_scope: Scope = "all"
    fail_status: int = 500
    slow_seconds: float = 0.0
    slow_scope: Scope = "all"
    malformed_event_ids: set[str] = field(default_factory=set)
    cancelled_event_ids: set[str] = field(default_factory=set)
    venues_without_coordinates_share: float = 0.0
    zero_results_addresses: set[str] = field(default_factory=set)
    geocode_statuses: dict[str, str] = field(default_factory=dict)
    changed_event_ids: dict[str, datetime] = field(default_factory=dict)
    approximate_addresses: set[str] = field(default_factory=set)
    unexpanded_event_ids: set[str] = field(default_factory=set)
    missing_venue_ids: set[str] = field(default_factory=set)
    now: datetime | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        for name in ("burst_429", "fail_500", "retry_after_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"FaultPlan.{name} must be a non-negative integer: {value!r}")
        if not 500 <= self.fail_status <= 599:
            raise ValueError(f"FaultPlan.fail_status must be a 5xx status: {self.fail_status}")
        if self.slow_seconds < 0:
            raise ValueError(f"FaultPlan.slow_seconds must be >= 0: {self.slow_seconds}")
        if not 0.0 <= self.venues_without_coordinates_share <= 1.0:
            raise ValueError(
                "FaultPlan.venues_without_coordinates_share must be in [0, 1]: "
                f"{self.venues_without_coordinates_share}"
            )
        unknown = {s for s in self.geocode_statuses.values() if s not in GEOCODE_STATUSES}
        if unknown:
            raise ValueError(f"unknown Geocoding status(es) {sorted(unknown)}")
        for name in ("burst_429_scope", "fail_500_scope", "slow_scope"):
            if getattr(self, name) not in get_args(Scope):
                raise ValueError(f"FaultPlan.{name} must be one of {get_args(Scope)}")

    def update(self, **changes: Any) -> FaultPlan:
        """Set several fields at once, atomically with respect to requests being served."""
        names = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(changes) - names
        if unknown:
            raise TypeError(f"FaultPlan has no field(s) {sorted(unknown)}")
        with self._lock:
            previous = {name: getattr(self, name) for name in changes}
            for name, value in changes.items():
                setattr(self, name, value)
            try:
                self._validate()
            except ValueError:
                for name, value in previous.items():
                    setattr(self, name, value)
                raise
        return self

    def touch(self, event_ids: Iterable[str] | str, at: datetime | None = None) -> datetime:
        """Report these events (one id or many) as changed at ``at``; returns the time used.

        Without ``at``: one second after the latest of the fake's ``now`` and every earlier
        touch, so a touched event is always newer than any high-water mark taken before, and
        a later touch is newer than an earlier one, independent of the wall clock.
        """
        ids = [event_ids] if isinstance(event_ids, str) else [str(e) for e in event_ids]
        with self._lock:
            if at is None:
                latest = max([self.now or datetime.now(UTC), *self.changed_event_ids.values()])
                at = latest + timedelta(seconds=1)
            if at.tzinfo is None:
                raise ValueError("touch(at=...) must be timezone-aware")
            at = at.astimezone(UTC).replace(microsecond=0)
            for event_id in ids:
                self.changed_event_ids[event_id] = at
            return at

    def take_rate_limit(self, api: Api) -> bool:
        """Consume one request of a 429 burst if it applies to ``api``."""
        with self._lock:
            if self.burst_429 > 0 and _in_scope(self.burst_429_scope, api):
                self.burst_429 -= 1
                return True
            return False

    def take_failure(self, api: Api) -> int | None:
        """Consume one request of a 5xx run if it applies to ``api``; returns the status."""
        with self._lock:
            if self.fail_500 > 0 and _in_scope(self.fail_500_scope, api):
                self.fail_500 -= 1
                return self.fail_status
            return None

    def delay_for(self, api: Api) -> float:
        """Seconds to wait before answering a request to ``api``."""
        with self._lock:
            return self.slow_seconds if _in_scope(self.slow_scope, api) else 0.0

    def view(self) -> FaultView:
        """A consistent snapshot of the record-level faults for one request."""
        with self._lock:
            return FaultView(
                malformed_event_ids=frozenset(self.malformed_event_ids),
                cancelled_event_ids=frozenset(self.cancelled_event_ids),
                venues_without_coordinates_share=self.venues_without_coordinates_share,
                zero_results_addresses=frozenset(
                    normalize_address(a) for a in self.zero_results_addresses
                ),
                geocode_statuses={
                    normalize_address(a): s for a, s in self.geocode_statuses.items()
                },
                changed_event_ids=dict(self.changed_event_ids),
                approximate_addresses=frozenset(
                    normalize_address(a) for a in self.approximate_addresses
                ),
                unexpanded_event_ids=frozenset(self.unexpanded_event_ids),
                missing_venue_ids=frozenset(self.missing_venue_ids),
            )
