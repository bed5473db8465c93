"""One ingest pass over a metro's followed listings, with cancelled-event confirmation.

Records that name a ``venue_id`` without the expanded ``venue`` are completed by
``fetch_venues`` (``GET /v3/venues/{id}/``), so the parser does not have to quarantine them.

Listings can say "live" for an event that was cancelled; the single-event endpoint tells the
truth. So after paging, every upcoming "live" record the pass kept is confirmed by id (up to
a cap, soonest first, so that when the cap bites the events a feed would show come first),
and the confirmed record is returned after the listed one: whoever keeps the newest record
per event ends up with the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sources.eventbrite.client import (
    EventbriteClient,
    EventbriteError,
    EventbriteException,
    Owner,
    parse_utc,
)

Record = tuple[str, dict[str, Any]]  # (listed by, e.g. "organizations/123"; raw event)


@dataclass
class Fetch:
    """What one pass brought back, in the order it was fetched."""

    listed: list[Record] = field(default_factory=list)
    confirmed: list[Record] = field(default_factory=list)
    listed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    confirmed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    pages: int = 0
    skipped_unchanged: int = 0
    disagreements: int = 0


def fetch_listings(
    client: EventbriteClient,
    followed: Sequence[tuple[Owner, str]],
    *,
    changed_since: datetime | None,
    max_status_checks: int,
) -> Fetch:
    """Page every followed listing, then confirm the upcoming "live" records by id."""
    fetch = Fetch()
    for owner, owner_id in followed:
        for page in client.list_events(owner, owner_id, changed_since=changed_since):
            fetch.pages += 1
            fetch.skipped_unchanged += page.skipped_unchanged
            fetch.listed.extend((f"{owner}/{owner_id}", event) for event in page.events)
    # One check per event, however many followed listings show it.
    upcoming = list(
        {
            str(e["id"]): (src, e)
            for src, e in fetch.listed
            if listed_as_upcoming(e, fetch.listed_at)
        }.values()
    )
    upcoming.sort(key=lambda record: str(record[1]["start"]["utc"]))
    fetch.confirmed_at = datetime.now(UTC)
    for source, listed in upcoming[:max_status_checks]:
        single = client.get_event(str(listed["id"]))
        fetch.confirmed.append((source, single))
        fetch.disagreements += listed.get("status") != single.get("status")
    return fetch


def listed_as_upcoming(event: dict[str, Any], now: datetime) -> bool:
    """A record that claims to be live and not yet started: worth confirming by id."""
    start = parse_utc((event.get("start") or {}).get("utc"))
    return event.get("status") == "live" and start is not None and start > now and "id" in event


@dataclass
class VenueFetch:
    """What ``fetch_venues`` brought back: records by id, ids Eventbrite has not (404), and
    ids that failed otherwise (with the error), to be asked again on the next run."""

    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_found: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def fetch_venues(client: EventbriteClient, venue_ids: Sequence[str], *, limit: int) -> VenueFetch:
    """``GET /v3/venues/{id}/`` for up to ``limit`` ids (sorted, so a capped run is stable).

    One venue failing never stops the others: a 404 is an answer (kept, so it is not asked
    every hour), anything else is reported in ``failed`` and asked again next time. Budget
    exhaustion (`sources.http.BudgetExhausted`) still propagates: the whole pass must wait.
    """
    fetch = VenueFetch()
    for venue_id in sorted(venue_ids)[:limit]:
        try:
            fetch.found[venue_id] = client.get_venue(venue_id)
        except EventbriteError as error:
            if error.status_code == 404:
                fetch.not_found.append(venue_id)
            else:
                fetch.failed[venue_id] = str(error)
        except EventbriteException as error:
            fetch.failed[venue_id] = str(error)
    return fetch
