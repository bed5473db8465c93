"""The Eventbrite client against a real local HTTP server replaying Eventbrite-shaped JSON.

Covers pagination to the last page, the expansions asked for, retries that honour
`Retry-After`, giving up cleanly, 4xx without retry, the incremental cut-off, the client-side
rate budget, timeouts, and that the token never reaches a log line or an exception.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import pytest

from sources.eventbrite.client import (
    DEFAULT_EXPAND,
    EventbriteError,
    EventbriteUnavailable,
    HttpEventbriteClient,
)
from sources.http import BudgetExhausted, RateBudget, parse_retry_after

if TYPE_CHECKING:
    from tests.unit.sources.conftest import ScriptedServer, SleepRecorder

TOKEN = "EBTOKEN7QX2PRIVATE9ZZ"
ORG = "2201839487"
LIST_PATH = f"/v3/organizations/{ORG}/events/"


def event(event_id: str, changed: str | None = "2026-02-20T10:00:00Z", **extra: Any) -> dict:
    """An event record in the shape of `GET /v3/organizations/{id}/events/?expand=...`."""
    record: dict[str, Any] = {
        "id": event_id,
        "name": {"text": f"Event {event_id}", "html": f"Event {event_id}"},
        "description": {"text": "A night out", "html": "<p>A night out</p>"},
        "summary": "A night out",
        "url": f"https://www.eventbrite.com/e/event-{event_id}",
        "start": {
            "timezone": "America/Los_Angeles",
            "local": "2026-03-10T19:00:00",
            "utc": "2026-03-11T02:00:00Z",
        },
        "end": {
            "timezone": "America/Los_Angeles",
            "local": "2026-03-10T22:00:00",
            "utc": "2026-03-11T05:00:00Z",
        },
        "created": "2026-01-05T08:00:00Z",
        "published": "2026-01-06T08:00:00Z",
        "status": "live",
        "currency": "USD",
        "online_event": False,
        "is_free": False,
        "listed": True,
        "capacity": 120,
        "organization_id": ORG,
        "venue_id": "88001",
        "venue": {
            "id": "88001",
            "name": "The Chapel",
            "address": {
                "address_1": "777 Valencia St",
                "city": "San Francisco",
                "region": "CA",
                "postal_code": "94110",
                "country": "US",
                "latitude": "37.7609",
                "longitude": "-122.4214",
                "localized_address_display": "777 Valencia St, San Francisco, CA 94110",
            },
            "latitude": "37.7609",
            "longitude": "-122.4214",
        },
        "category": {"id": "103", "name": "Music", "short_name": "Music"},
        "ticket_availability": {
            "has_available_tickets": True,
            "minimum_ticket_price": {
                "currency": "USD",
                "value": 2500,
                "major_value": "25.00",
                "display": "25.00 USD",
            },
            "maximum_ticket_price": {
                "currency": "USD",
                "value": 4000,
                "major_value": "40.00",
                "display": "40.00 USD",
            },
            "is_sold_out": False,
        },
    }
    if changed is not None:
        record["changed"] = changed
    record.update(extra)
    return record


def page(
    events: list[dict], number: int, continuation: str | None, has_more: bool
) -> dict[str, Any]:
    pagination: dict[str, Any] = {
        "object_count": 7,
        "page_number": number,
        "page_size": 50,
        "page_count": 3,
        "has_more_items": has_more,
    }
    if continuation is not None:
        pagination["continuation"] = continuation
    return {"pagination": pagination, "events": events}


def client(server: ScriptedServer, sleeps: SleepRecorder, **kwargs: Any) -> HttpEventbriteClient:
    return HttpEventbriteClient(token=TOKEN, base_url=f"{server.url}/v3/", sleep=sleeps, **kwargs)


# ------------------------------------------------------------------------ pagination


def test_follows_continuation_to_the_last_page(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    reply = scripted_server.reply
    scripted_server.script(
        LIST_PATH,
        reply(body=page([event("1"), event("2"), event("3")], 1, "dGhpcyBpcyBwYWdlIDE", True)),
        reply(body=page([event("4"), event("5")], 2, "dGhpcyBpcyBwYWdlIDI", True)),
        reply(body=page([event("6"), event("7")], 3, None, False)),
    )
    with client(scripted_server, sleeps) as eb:
        pages = list(eb.list_organization_events(ORG))

    assert [p.page_number for p in pages] == [1, 2, 3]
    assert [e["id"] for p in pages for e in p.events] == ["1", "2", "3", "4", "5", "6", "7"]
    assert [p.has_more_items for p in pages] == [True, True, False]
    assert pages[-1].continuation is None
    assert all(p.owner_id == ORG and p.skipped_unchanged == 0 for p in pages)
    assert pages[0].events[0] == event("1")  # raw record, untouched

    sent = scripted_server.requests_to(LIST_PATH)
    assert [r.param("continuation") for r in sent] == [
        None,
        "dGhpcyBpcyBwYWdlIDE",
        "dGhpcyBpcyBwYWdlIDI",
    ]
    for request in sent:
        assert request.param("expand") is not None
        assert set(request.param("expand").split(",")) == set(DEFAULT_EXPAND)
        assert {"venue", "category", "subcategory", "format", "ticket_availability", "logo"} <= set(
            request.param("expand").split(",")
        )
        assert request.param("page_size") == "50"
        assert request.param("time_filter") == "current_future"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert eb.stats.calls == 3 and eb.stats.retries == 0 and sleeps.calls == []


def test_has_more_items_without_continuation_fails_loudly(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    reply = scripted_server.reply
    scripted_server.script(LIST_PATH, reply(body=page([event("1")], 1, None, True)))
    with client(scripted_server, sleeps) as eb, pytest.raises(EventbriteError) as caught:
        list(eb.list_organization_events(ORG))
    assert caught.value.error == "INVALID_RESPONSE"


def test_get_event_returns_the_raw_record(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    reply = scripted_server.reply
    canceled = event("42", status="canceled")
    scripted_server.script("/v3/events/42/", reply(body=canceled))
    with client(scripted_server, sleeps) as eb:
        assert eb.get_event("42") == canceled
    (request,) = scripted_server.requests_to("/v3/events/42/")
    assert set(request.param("expand").split(",")) == set(DEFAULT_EXPAND)


# ------------------------------------------------------------------------ retries


def test_resumes_after_429_honouring_retry_after(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    reply = scripted_server.reply
    rate_limited = {
        "status_code": 429,
        "error": "HIT_RATE_LIMIT",
        "error_description": "Hourly rate limit has been reached for this token.",
    }
    scripted_server.script(
        LIST_PATH,
        reply(body=page([event("1"), event("2")], 1, "Y29udGludWU", True)),
        reply(429, rate_limited, headers={"Retry-After": "2"}),
        reply(body=page([event("3")], 2, None, False)),
    )
    with client(scripted_server, sleeps) as eb:
        pages = list(eb.list_organization_events(ORG))

    assert sleeps.calls == [pytest.approx(2.0)]
    assert [e["id"] for p in pages for e in p.events] == ["1", "2", "3"]
    sent = scripted_server.requests_to(LIST_PATH)
    assert [r.param("continuation") for r in sent] == [None, "Y29udGludWU", "Y29udGludWU"]
    assert (eb.stats.calls, eb.stats.retries, eb.stats.throttled) == (3, 1, 1)


def test_gives_up_after_max_attempts_of_5xx(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    reply = scripted_server.reply
    unavailable = {
        "status_code": 503,
        "error": "SERVICE_UNAVAILABLE",
        "error_description": "Service temporarily unavailable.",
    }
    scripted_server.script(
        LIST_PATH,
        *[reply(503, unavailable) for _ in range(3)],
        reply(body=page([event("1")], 1, None, False)),  # must never be reached
    )
    eb = client(scripted_server, sleeps, max_attempts=3, max_backoff_seconds=4.0)
    with eb, pytest.raises(EventbriteUnavailable) as caught:
        list(eb.list_organization_events(ORG))

    assert caught.value.attempts == 3
    assert caught.value.status_code == 503
    assert "503" in str(caught.value) and "3 attempt" in str(caught.value)
    assert len(scripted_server.requests_to(LIST_PATH)) == 3
    assert scripted_server.pending(LIST_PATH) == 1
    assert len(sleeps.calls) == 2
    assert all(0 < s <= 4.0 for s in sleeps.calls)  # exponential with jitter, capped
    assert eb.stats.errors == 3 and eb.stats.retries == 2


def test_retry_after_longer_than_max_backoff_gives_up_without_sleeping(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    reply = scripted_server.reply
    scripted_server.script(
        LIST_PATH,
        reply(429, {"status_code": 429, "error": "HIT_RATE_LIMIT", "error_description": ""},
              headers={"Retry-After": "3600"}),
    )  # fmt: skip
    eb = client(scripted_server, sleeps, max_backoff_seconds=60.0)
    with eb, pytest.raises(EventbriteUnavailable) as caught:
        list(eb.list_organization_events(ORG))
    assert caught.value.attempts == 1 and sleeps.calls == []
    assert "3600" in str(caught.value)


def test_401_raises_eventbrite_error_without_retry(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    reply = scripted_server.reply
    scripted_server.script(
        LIST_PATH,
        reply(
            401,
            {
                "status_code": 401,
                "error": "INVALID_AUTH",
                "error_description": "The OAuth token you provided was invalid.",
            },
        ),
    )
    with client(scripted_server, sleeps) as eb, pytest.raises(EventbriteError) as caught:
        list(eb.list_organization_events(ORG))

    error = caught.value
    assert (error.status_code, error.error) == (401, "INVALID_AUTH")
    assert error.error_description == "The OAuth token you provided was invalid."
    assert len(scripted_server.requests_to(LIST_PATH)) == 1
    assert sleeps.calls == []
    assert TOKEN not in str(error)


def test_timeout_is_retried(scripted_server: ScriptedServer, sleeps: SleepRecorder) -> None:
    reply = scripted_server.reply
    scripted_server.script(
        LIST_PATH,
        reply(body=page([event("1")], 1, None, False), delay=0.5),
        reply(body=page([event("1")], 1, None, False)),
    )
    with client(scripted_server, sleeps, timeout_seconds=0.15) as eb:
        pages = list(eb.list_organization_events(ORG))
    assert [e["id"] for e in pages[0].events] == ["1"]
    assert len(sleeps.calls) == 1
    assert (eb.stats.calls, eb.stats.errors, eb.stats.retries) == (2, 1, 1)


# ------------------------------------------------------------------------ incremental


def test_changed_since_keeps_changed_records_and_counts_the_rest(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    reply = scripted_server.reply
    since = datetime(2026, 2, 20, 12, 0, tzinfo=UTC)
    scripted_server.script(
        LIST_PATH,
        reply(
            body=page(
                [
                    event("old-1", changed="2026-02-01T00:00:00Z"),
                    event("edge", changed="2026-02-20T12:00:00Z"),  # equal: kept
                    event("new-1", changed="2026-02-21T09:30:00Z"),
                    event("no-changed", changed=None),  # unknown: kept, parser decides
                ],
                1,
                "bmV4dA",
                True,
            )
        ),
        reply(
            body=page(
                [
                    event("old-2", changed="2026-02-20T11:59:59Z"),
                    event("new-2", changed="2026-03-01T00:00:00Z"),
                ],
                2,
                None,
                False,
            )
        ),
    )
    with client(scripted_server, sleeps) as eb:
        pages = list(eb.list_organization_events(ORG, changed_since=since))

    assert [[e["id"] for e in p.events] for p in pages] == [
        ["edge", "new-1", "no-changed"],
        ["new-2"],
    ]
    assert [p.skipped_unchanged for p in pages] == [1, 1]
    assert len(scripted_server.requests_to(LIST_PATH)) == 2  # still pages everything


def test_changed_since_must_be_timezone_aware(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    with client(scripted_server, sleeps) as eb, pytest.raises(ValueError):
        list(eb.list_organization_events(ORG, changed_since=datetime(2026, 1, 1)))
    assert scripted_server.requests == []


# ------------------------------------------------------------------------ rate budget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_budget_slides_and_raises_when_spent() -> None:
    clock = FakeClock()
    budget = RateBudget(2, clock=clock)
    budget.acquire()
    clock.now += 600
    budget.acquire()
    with pytest.raises(BudgetExhausted) as caught:
        budget.acquire()
    assert caught.value.retry_in_seconds == pytest.approx(3000.0)
    assert budget.remaining == 0
    clock.now += 3000  # the first call leaves the window
    budget.acquire()
    assert budget.remaining == 0


def test_every_attempt_spends_the_budget(
    scripted_server: ScriptedServer, sleeps: SleepRecorder
) -> None:
    reply = scripted_server.reply
    error = {"status_code": 500, "error": "INTERNAL_ERROR", "error_description": "oops"}
    scripted_server.script(
        LIST_PATH,
        reply(body=page([event("1")], 1, "cDI", True)),
        reply(500, error),
        reply(body=page([event("2")], 2, None, False)),
    )
    budget = RateBudget(2, clock=FakeClock())
    received: list[str] = []
    with client(scripted_server, sleeps, rate_budget=budget) as eb:
        with pytest.raises(BudgetExhausted) as caught:
            for p in eb.list_organization_events(ORG):
                received.extend(e["id"] for e in p.events)
    assert received == ["1"]  # pages fetched before the budget ran out are kept
    assert caught.value.retry_in_seconds == pytest.approx(3600.0)
    assert len(scripted_server.requests_to(LIST_PATH)) == 2  # the retry was not sent


# ------------------------------------------------------------------------ secrets


def test_token_never_appears_in_logs_or_errors(
    scripted_server: ScriptedServer, sleeps: SleepRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    reply = scripted_server.reply
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sources"):
        caplog.set_level(logging.DEBUG, logger=name)
    scripted_server.script(
        LIST_PATH,
        reply(429, {"status_code": 429, "error": "HIT_RATE_LIMIT", "error_description": "slow"},
              headers={"Retry-After": "1"}),
        reply(body=page([event("1")], 1, None, False)),
        reply(403, {"status_code": 403, "error": "NOT_AUTHORIZED",
                    "error_description": f"token {TOKEN} may not read this organization"}),
    )  # fmt: skip
    with client(scripted_server, sleeps) as eb:
        list(eb.list_organization_events(ORG))
        with pytest.raises(EventbriteError) as caught:
            list(eb.list_organization_events(ORG))

    assert any(r.name == "httpx" and "HTTP Request" in r.getMessage() for r in caplog.records)
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert any(r.name == "sources.eventbrite.client" for r in caplog.records)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert "[REDACTED]" in str(caught.value)


def test_malformed_token_is_rejected_without_echoing_it() -> None:
    with pytest.raises(ValueError) as caught:
        HttpEventbriteClient(token="bad token\nInjected: 1")
    assert "bad token" not in str(caught.value)


# ------------------------------------------------------------------------ Retry-After


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after(
        format_datetime(now + timedelta(seconds=30), usegmt=True), now=now
    ) == (pytest.approx(30.0))
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
