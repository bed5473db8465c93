"""Eventbrite API v3 client: organization event listings and single events, fetched raw.

Why this shape:

- Public event search is gone (2019-2020), so the catalogue is read per followed organization
  with ``GET /v3/organizations/{id}/events/``, one page at a time, following
  ``pagination.continuation`` while ``has_more_items`` is true. Pages are yielded as they
  arrive so the caller can land them before the next call can fail.
- Records are returned exactly as received; `sources.eventbrite.parse` owns validation, so a
  parser fix can be replayed over landed JSON without calling the API again.
- Incremental fetches: the organization listing has no "changed since" filter (its filters
  are status, order_by, time_filter, name/currency/series filters, page_size; only the
  *orders* endpoints take ``changed_since``), so the client pages everything and drops records
  whose ``changed`` is older than the caller's cut-off, counting them. Network calls are not
  saved, but downstream parsing and upserts are.
- Every attempt (retries included) spends the client-side `RateBudget`; 429, 5xx, timeouts and
  transport errors are retried with backoff that honours ``Retry-After``; other 4xx fail at
  once with Eventbrite's own error code. The bearer token is redacted from logs and errors.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
from tenacity import RetryCallState

from sources.http import (
    CallStats,
    ClosingClient,
    RateBudget,
    RetryableFailure,
    build_retrying,
    parse_retry_after,
    protect_secret,
    redact,
    release_secret,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_EXPAND",
    "EventbriteClient",
    "EventbriteError",
    "EventbriteException",
    "EventbritePage",
    "EventbriteUnavailable",
    "HttpEventbriteClient",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://www.eventbriteapi.com/v3/"
# What the feed needs from each record; `organizer` is left out (not used downstream, and each
# expansion makes the response heavier).
DEFAULT_EXPAND = ("venue", "category", "subcategory", "format", "ticket_availability", "logo")
API_NAME = "eventbrite"
_TOKEN_SHAPE = re.compile(r"[!-~]+")  # printable ASCII, no whitespace: safe in a header


# The three listings Eventbrite still offers since public search closed in 2020.
Owner = Literal["organizations", "venues", "organizers"]
OWNERS: tuple[Owner, ...] = ("organizations", "venues", "organizers")


@dataclass(frozen=True)
class EventbritePage:
    """One list page as fetched: raw event records plus the pagination state that led on.

    ``events`` are the records kept after the ``changed_since`` cut-off (all of them without
    one), untouched; ``skipped_unchanged`` counts the ones left out. ``continuation`` is the
    token the server returned with this page (None on the last page).
    """

    owner_id: str
    page_number: int
    events: list[dict[str, Any]]
    continuation: str | None
    has_more_items: bool
    skipped_unchanged: int = 0


class EventbriteException(Exception):
    """Base of the client's own errors (budget exhaustion is `sources.http.BudgetExhausted`)."""


class EventbriteError(EventbriteException):
    """Eventbrite refused the request (4xx other than 429): fix the request, do not retry.

    Fields mirror Eventbrite's error JSON ``{"status_code", "error", "error_description"}``,
    e.g. ``401 INVALID_AUTH`` or ``404 NOT_FOUND``.
    """

    def __init__(self, status_code: int, error: str, error_description: str) -> None:
        self.status_code = status_code
        self.error = error
        self.error_description = error_description
        super().__init__(f"Eventbrite {status_code} {error}: {error_description}")


class EventbriteUnavailable(EventbriteException):
    """Eventbrite kept failing transiently (429/5xx/timeouts) until the retry policy gave up.

    The caller should keep what it already has and try again on its next run.
    """

    def __init__(self, *, status_code: int | None, attempts: int, reason: str) -> None:
        self.status_code = status_code
        self.attempts = attempts
        self.reason = reason
        status = f"HTTP {status_code}" if status_code is not None else "no HTTP response"
        super().__init__(
            f"Eventbrite unavailable after {attempts} attempt(s); last: {status} ({reason})"
        )


class EventbriteClient(ClosingClient, ABC):
    """What the pipeline needs from Eventbrite; tests and the demo use the HTTP implementation
    against a local server rather than a stand-in class, so this stays small."""

    stats: CallStats

    @abstractmethod
    def list_events(
        self, owner: Owner, owner_id: str, *, changed_since: datetime | None = None
    ) -> Iterator[EventbritePage]:
        """Every page of the events an organization, venue or organizer lists, to the last.

        With ``changed_since`` (timezone-aware; the caller subtracts its overlap window), a
        page keeps only records whose ``changed`` is at or after it; records without a
        parseable ``changed`` are kept, so nothing is dropped on a guess.
        """

    def list_organization_events(
        self, organization_id: str, *, changed_since: datetime | None = None
    ) -> Iterator[EventbritePage]:
        """`list_events` for an organization, the usual way to follow a metro's events."""
        return self.list_events("organizations", organization_id, changed_since=changed_since)

    @abstractmethod
    def get_event(self, event_id: str) -> dict[str, Any]:
        """One event, raw (used to confirm the status when a listing and reality disagree)."""

    @abstractmethod
    def get_venue(self, venue_id: str) -> dict[str, Any]:
        """One venue, raw (for records that name a ``venue_id`` without the expansion).

        Raises `EventbriteError` with ``status_code`` 404 when Eventbrite has no such venue.
        """


def parse_utc(value: Any) -> datetime | None:
    """An Eventbrite UTC time ("2026-05-12T02:00:00Z"), or None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # Eventbrite always writes UTC with a Z; a bare timestamp is read as UTC for filtering only.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _split_by_changed(
    events: list[Any], changed_since: datetime | None
) -> tuple[list[dict[str, Any]], int]:
    if changed_since is None:
        return list(events), 0
    kept: list[Any] = []
    skipped = 0
    for record in events:
        changed = parse_utc(record.get("changed")) if isinstance(record, dict) else None
        if changed is not None and changed < changed_since:
            skipped += 1
        else:
            # Records of unexpected shape are kept: the parser quarantines them with a reason.
            kept.append(record)
    return kept, skipped


class HttpEventbriteClient(EventbriteClient):
    """The real client (httpx, tenacity). Not thread-safe for `stats`; use one per thread.

    ``time_filter`` (default ``current_future``; None to omit) and ``status`` (None: the
    server's default; e.g. ``"live,canceled"``) are passed to the listing as-is. Share one
    ``rate_budget`` between clients that use the same token.
    """

    def __init__(
        self,
        *,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_seconds: float = 10.0,
        calls_per_hour: int = 2000,
        page_size: int = 50,
        max_attempts: int = 5,
        max_backoff_seconds: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        time_filter: str | None = "current_future",
        status: str | None = None,
        expand: Sequence[str] = DEFAULT_EXPAND,
        rate_budget: RateBudget | None = None,
    ) -> None:
        if not token or not _TOKEN_SHAPE.fullmatch(token):
            # Never echo the token itself, not even in this message.
            raise ValueError("Eventbrite token must be non-empty printable ASCII without spaces")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        if not 1 <= page_size <= 200:
            raise ValueError(f"page_size must be between 1 and 200, got {page_size}")
        self._token = token
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout_seconds = timeout_seconds
        self.page_size = page_size
        self.max_attempts = max_attempts
        self.max_backoff_seconds = max_backoff_seconds
        self.time_filter = time_filter
        self.status = status
        self.expand = tuple(expand)
        self.budget = rate_budget if rate_budget is not None else RateBudget(calls_per_hour)
        self.stats = CallStats()
        self._sleep = sleep
        protect_secret(token, extra_loggers=(logger.name,))
        self._closed = False
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_seconds),
            transport=transport,
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "godo-ingest",
            },
        )

    # ---------------------------------------------------------------- public API

    def list_events(
        self, owner: Owner, owner_id: str, *, changed_since: datetime | None = None
    ) -> Iterator[EventbritePage]:
        if owner not in OWNERS:
            raise ValueError(f"owner must be one of {OWNERS}, got {owner!r}")
        if changed_since is not None and changed_since.tzinfo is None:
            raise ValueError("changed_since must be timezone-aware (Eventbrite times are UTC)")
        path = f"{owner}/{quote(owner_id, safe='')}/events/"
        base_params = self._list_params()
        continuation: str | None = None
        seen: set[str] = set()
        fetched = 0
        while True:
            params = dict(base_params)
            if continuation is not None:
                params["continuation"] = continuation
            payload = self._get_json(path, params)
            events = payload.get("events")
            if not isinstance(events, list):
                raise EventbriteError(
                    200, "INVALID_RESPONSE", "list page without an 'events' array"
                )
            pagination = payload.get("pagination")
            pagination = pagination if isinstance(pagination, dict) else {}
            has_more = bool(pagination.get("has_more_items"))
            token = pagination.get("continuation")
            next_token = token if isinstance(token, str) and token else None
            fetched += 1
            number = pagination.get("page_number")
            kept, skipped = _split_by_changed(events, changed_since)
            logger.debug(
                "eventbrite %s %s page %d: %d events, %d unchanged, more=%s",
                owner, owner_id, fetched, len(kept), skipped, has_more,
            )  # fmt: skip
            yield EventbritePage(
                owner_id=owner_id,
                page_number=number if isinstance(number, int) else fetched,
                events=kept,
                continuation=next_token,
                has_more_items=has_more,
                skipped_unchanged=skipped,
            )
            if not has_more:
                return
            if next_token is None:
                raise EventbriteError(
                    200, "INVALID_RESPONSE", "has_more_items is true but no continuation given"
                )
            if next_token in seen:
                raise EventbriteError(
                    200, "INVALID_RESPONSE", "continuation repeated; refusing to loop forever"
                )
            seen.add(next_token)
            continuation = next_token

    def get_event(self, event_id: str) -> dict[str, Any]:
        path = f"events/{quote(event_id, safe='')}/"
        return self._get_json(path, {"expand": ",".join(self.expand)})

    def get_venue(self, venue_id: str) -> dict[str, Any]:
        return self._get_json(f"venues/{quote(venue_id, safe='')}/", {})

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._http.close()
            release_secret(self._token)

    # ---------------------------------------------------------------- plumbing

    def _list_params(self) -> dict[str, str]:
        params = {"expand": ",".join(self.expand), "page_size": str(self.page_size)}
        if self.time_filter:
            params["time_filter"] = self.time_filter
        if self.status:
            params["status"] = self.status
        return params

    def _redact(self, text: str) -> str:
        return redact(text, [self._token])

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        self.stats.retries += 1
        outcome = retry_state.outcome
        failure = outcome.exception() if outcome is not None else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "eventbrite call failed (%s); attempt %d of %d, retrying in %.1fs",
            failure, retry_state.attempt_number, self.max_attempts, wait,
        )  # fmt: skip

    def _get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        retrying = build_retrying(
            max_attempts=self.max_attempts,
            max_backoff_seconds=self.max_backoff_seconds,
            sleep=self._sleep,
            before_sleep=self._before_sleep,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return self._attempt(path, params)
        except RetryableFailure as failure:
            reason = failure.description
            if failure.retry_after is not None and failure.retry_after > self.max_backoff_seconds:
                reason += (
                    f"; server asked to wait {failure.retry_after:.0f}s, "
                    f"more than max_backoff_seconds={self.max_backoff_seconds:g}"
                )
            status = failure.status if isinstance(failure.status, int) else None
            raise EventbriteUnavailable(
                status_code=status, attempts=attempts, reason=reason
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _attempt(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        self.budget.acquire()  # BudgetExhausted is not retryable: it propagates at once
        self.stats.count_call(API_NAME)
        try:
            response = self._http.get(path, params=params)
        except httpx.TimeoutException as exc:
            self.stats.errors += 1
            raise RetryableFailure(
                f"{type(exc).__name__} after {self.timeout_seconds:g}s on GET {path}"
            ) from None
        except httpx.HTTPError as exc:
            self.stats.errors += 1
            detail = self._redact(str(exc))
            raise RetryableFailure(f"{type(exc).__name__} on GET {path}: {detail}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            self.stats.errors += 1
            if status == 429:
                self.stats.throttled += 1
            _, error, description = self._error_fields(response)
            raise RetryableFailure(
                f"{error} on GET {path}: {description}",
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                throttled=status == 429,
            )
        if not 200 <= status < 300:
            self.stats.errors += 1
            raise EventbriteError(*self._error_fields(response))
        try:
            payload = response.json()
        except ValueError:
            self.stats.errors += 1
            raise RetryableFailure(f"invalid JSON body on GET {path}", status=status) from None
        if not isinstance(payload, dict):
            self.stats.errors += 1
            raise RetryableFailure(f"JSON body is not an object on GET {path}", status=status)
        return payload

    def _error_fields(self, response: httpx.Response) -> tuple[int, str, str]:
        """(status_code, error, error_description) from Eventbrite's error JSON, redacted."""
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        code = body.get("status_code")
        status_code = code if isinstance(code, int) else response.status_code
        error = str(body.get("error") or f"HTTP_{response.status_code}")
        description = body.get("error_description")
        if not description:
            description = response.text[:200] if body == {} else ""
        return status_code, self._redact(error), self._redact(str(description))
