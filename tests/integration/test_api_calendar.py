"""Attendance, calendars and the iCalendar feed end to end: real Postgres and Redis, HTTP.

Visibility is checked with different users' tokens against the same owner, because a leak is
what matters most here: private entries and notes must reach the owner and nobody else. Redis
"down" is a URL pointing at a closed port, never a mock.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import polars as pl
import pytest
import redis
import sqlalchemy as sa
import vobject
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from store.app_data import upsert_catalogue
from store.db import copy_frame
from store.keys import RedisKeys
from store.schema import users
from tests.integration.conftest import app_client, auth_headers

CLOSED_REDIS = "redis://127.0.0.1:1/0"
PROBLEM = "application/problem+json"
OWNER, FRIEND, STRANGER, ONE_SIDED = 1, 2, 3, 4
USERS = [OWNER, FRIEND, STRANGER, ONE_SIDED]
NOW = datetime.now(UTC).replace(microsecond=0)
# id -> (days from now, timezone, venue); ev-3 and ev-4 start at the same instant (ties).
EVENTS: dict[str, tuple[float, str | None, str | None]] = {
    "ev-1": (1, "Europe/Lisbon", "v-1"),
    "ev-2": (2, "America/New_York", "v-2"),
    "ev-3": (3, "Asia/Kolkata", None),
    "ev-4": (3, None, "v-1"),
    "ev-5": (4, "Europe/Lisbon", "v-2"),
    "ev-6": (5, "Europe/Lisbon", "v-1"),
    "ev-old": (-10, "Europe/Lisbon", "v-1"),
}
VENUES = {"v-1": "Coliseu", "v-2": "Musicbox"}


def _seed(engine: sa.Engine) -> None:
    """Four users, two venues, seven events; OWNER and FRIEND are mutual friends, ONE_SIDED
    has only the owner's row (which must not make them a friend)."""
    users = pl.DataFrame(
        {"id": USERS, "display_name": [f"user {u}" for u in USERS], "metro": ["lisbon"] * 4}
    )
    venues = pl.DataFrame(
        {"id": list(VENUES), "name": list(VENUES.values()), "metro": ["lisbon"] * len(VENUES)}
    )
    ids = list(EVENTS)
    events = pl.DataFrame(
        {
            "id": ids,
            "name": [f"Event {e}" for e in ids],
            "category": ["music"] * len(ids),
            "start_utc": [NOW + timedelta(days=EVENTS[e][0]) for e in ids],
            "end_utc": [NOW + timedelta(days=EVENTS[e][0], hours=3) for e in ids],
            "timezone": [EVENTS[e][1] for e in ids],
            "venue_id": [EVENTS[e][2] for e in ids],
            "is_free": [True] * len(ids),
            "metro": ["lisbon"] * len(ids),
            "status": ["live"] * len(ids),
            "is_active": [True] * len(ids),
        },
        schema_overrides={
            "start_utc": pl.Datetime("us", "UTC"),
            "end_utc": pl.Datetime("us", "UTC"),
        },
    )
    friendships = pl.DataFrame(
        {"user_id": [OWNER, FRIEND, OWNER], "friend_id": [FRIEND, OWNER, ONE_SIDED]}
    )
    with engine.begin() as conn:
        copy_frame(conn, "users", users)
        copy_frame(conn, "venues", venues)
        copy_frame(conn, "events", events)
        copy_frame(conn, "friendships", friendships)


@pytest.fixture
def seeded(engine: sa.Engine) -> sa.Engine:
    _seed(engine)
    return engine


@pytest.fixture
def app_data(seeded: sa.Engine) -> None:
    """`client` starts on the `seeded` world."""


def _put(
    client: TestClient, settings: Settings, event_id: str, user_id: int = OWNER, **body: Any
) -> Any:
    response = client.put(
        f"/v1/events/{event_id}/attendance", json=body, headers=auth_headers(settings, user_id)
    )
    assert response.status_code == 200, response.text
    return response.json()


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body


def _fields(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


def _ids(body: dict[str, Any]) -> list[str]:
    return [item["event_id"] for item in body["items"]]


@pytest.fixture
def owner_calendar(client: TestClient, settings: Settings) -> None:
    """The owner's answers, one per visibility, each with a note nobody else may read."""
    _put(client, settings, "ev-1", status="going", visibility="public", notes="n1")
    _put(client, settings, "ev-2", status="interested", visibility="friends", notes="n2")
    _put(client, settings, "ev-3", status="going", visibility="private", notes="n3")
    _put(client, settings, "ev-4", status="not_going", visibility="public", notes="n4")
    _put(client, settings, "ev-5", status="interested", notes="n5")  # default: friends
    _put(client, settings, "ev-old", status="went", visibility="public", notes="old")


# --- attendance ----------------------------------------------------------------------------


def test_put_stores_and_replaces_the_callers_row(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    first = _put(client, settings, "ev-1", status="going", notes="bring earplugs")
    assert first["event_id"] == "ev-1"
    assert (first["status"], first["visibility"], first["notes"]) == (
        "going",
        "friends",
        "bring earplugs",
    )
    second = _put(client, settings, "ev-1", status="interested", visibility="public")
    assert (second["status"], second["visibility"], second["notes"]) == (
        "interested",
        "public",
        None,
    )
    assert datetime.fromisoformat(second["updated_at"]) >= datetime.fromisoformat(
        first["updated_at"]
    )
    with seeded.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT user_id, event_id, status, visibility, notes FROM event_attendance")
        ).all()
    assert [tuple(row) for row in rows] == [(OWNER, "ev-1", "interested", "public", None)]


def test_put_accepts_went(client: TestClient, settings: Settings) -> None:
    assert _put(client, settings, "ev-old", status="went")["status"] == "went"


def test_put_unknown_event_is_404(client: TestClient, settings: Settings) -> None:
    response = client.put(
        "/v1/events/nope/attendance",
        json={"status": "going"},
        headers=auth_headers(settings, OWNER),
    )
    assert "nope" in _assert_problem(response, 404)["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "maybe"}, "body.status"),
        ({}, "body.status"),
        ({"status": "going", "visibility": "everyone"}, "body.visibility"),
        ({"status": "going", "notes": "x" * 1001}, "body.notes"),
        ({"status": "going", "colour": "red"}, "body.colour"),
    ],
)
def test_put_bad_values_are_422_naming_the_field(
    client: TestClient, settings: Settings, body: dict[str, Any], field: str
) -> None:
    response = client.put(
        "/v1/events/ev-1/attendance", json=body, headers=auth_headers(settings, OWNER)
    )
    assert _fields(_assert_problem(response, 422)) == [field]


def test_attendance_needs_a_bearer_token(client: TestClient) -> None:
    response = client.put("/v1/events/ev-1/attendance", json={"status": "going"})
    _assert_problem(response, 401)


def test_delete_is_idempotent(client: TestClient, settings: Settings, seeded: sa.Engine) -> None:
    _put(client, settings, "ev-1", status="going")
    for _ in range(2):
        response = client.delete(
            "/v1/events/ev-1/attendance", headers=auth_headers(settings, OWNER)
        )
        assert response.status_code == 204, response.text
        assert response.content == b""
    unknown = client.delete("/v1/events/nope/attendance", headers=auth_headers(settings, OWNER))
    assert unknown.status_code == 204
    with seeded.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM event_attendance")).scalar() == 0


# --- my calendar ---------------------------------------------------------------------------


@pytest.mark.usefixtures("owner_calendar")
def test_my_calendar_lists_everything_in_start_order(
    client: TestClient, settings: Settings
) -> None:
    response = client.get("/v1/me/calendar", headers=auth_headers(settings, OWNER))
    assert response.status_code == 200, response.text
    body = response.json()
    # ev-old started ten days ago: before the default window (a day back).
    assert _ids(body) == ["ev-1", "ev-2", "ev-3", "ev-4", "ev-5"]
    assert body["user_id"] == OWNER and body["next_cursor"] is None
    by_id = {item["event_id"]: item for item in body["items"]}
    first = by_id["ev-1"]
    assert first["event_name"] == "Event ev-1"
    assert first["venue_name"] == "Coliseu"
    assert (first["status"], first["visibility"], first["notes"]) == ("going", "public", "n1")
    start = NOW + timedelta(days=1)
    assert datetime.fromisoformat(first["start_utc"]) == start
    assert datetime.fromisoformat(first["end_utc"]) == start + timedelta(hours=3)
    # The start in the event's own zone, as an ISO string with that zone's offset.
    for event_id in ("ev-1", "ev-2", "ev-3"):
        item = by_id[event_id]
        local = datetime.fromisoformat(item["start_local"])
        assert local == datetime.fromisoformat(item["start_utc"])
        assert item["timezone"] == EVENTS[event_id][1]
    assert datetime.fromisoformat(by_id["ev-3"]["start_local"]).utcoffset() == timedelta(
        hours=5, minutes=30
    )
    assert by_id["ev-4"]["timezone"] == "UTC"  # no zone on the event
    assert by_id["ev-3"]["venue_name"] is None
    assert by_id["ev-3"]["notes"] == "n3" and by_id["ev-3"]["visibility"] == "private"


@pytest.mark.usefixtures("owner_calendar")
def test_calendar_filters_by_status_and_window(client: TestClient, settings: Settings) -> None:
    headers = auth_headers(settings, OWNER)
    repeated = client.get(
        "/v1/me/calendar", params=[("status", "going"), ("status", "went")], headers=headers
    )
    assert _ids(repeated.json()) == ["ev-1", "ev-3"]
    comma = client.get("/v1/me/calendar?status=interested,not_going", headers=headers)
    assert _ids(comma.json()) == ["ev-2", "ev-4", "ev-5"]
    window = client.get(
        "/v1/me/calendar",
        params={
            "from": (NOW - timedelta(days=30)).isoformat(),
            "to": (NOW + timedelta(days=2, hours=1)).isoformat(),
        },
        headers=headers,
    )
    assert _ids(window.json()) == ["ev-old", "ev-1", "ev-2"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "maybe"}, "query.status"),
        ({"status": "going,maybe"}, "query.status"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "201"}, "query.limit"),
        ({"from": "2026-01-01T00:00:00"}, "query.from"),  # naive: which zone?
        ({"from": "yesterday"}, "query.from"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "query.to"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
    ],
)
def test_bad_calendar_queries_are_422_naming_the_parameter(
    client: TestClient, settings: Settings, params: dict[str, str], field: str
) -> None:
    response = client.get("/v1/me/calendar", params=params, headers=auth_headers(settings, OWNER))
    body = _assert_problem(response, 422)
    assert _fields(body) == [field]
    assert field in body["detail"]


def test_keyset_paging_returns_every_entry_once(client: TestClient, settings: Settings) -> None:
    for event_id in EVENTS:
        _put(client, settings, event_id, status="going")
    headers = auth_headers(settings, OWNER)
    params: dict[str, str] = {"from": (NOW - timedelta(days=30)).isoformat(), "limit": "2"}
    seen: list[str] = []
    pages = 0
    while True:
        body = client.get("/v1/me/calendar", params=params, headers=headers).json()
        seen += _ids(body)
        pages += 1
        assert len(body["items"]) <= 2
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    by_start = sorted(EVENTS, key=lambda e: (EVENTS[e][0], e))
    assert seen == by_start  # ev-3 and ev-4 share a start: the id breaks the tie
    assert pages == 4


# --- other users' calendars ----------------------------------------------------------------


@pytest.mark.usefixtures("owner_calendar")
@pytest.mark.parametrize(
    ("viewer", "expected"),
    [
        (OWNER, ["ev-1", "ev-2", "ev-3", "ev-4", "ev-5"]),
        (FRIEND, ["ev-1", "ev-2", "ev-4", "ev-5"]),
        (STRANGER, ["ev-1", "ev-4"]),
        (ONE_SIDED, ["ev-1", "ev-4"]),  # the owner's row alone is not a friendship
    ],
)
def test_users_see_what_the_owner_allows(
    client: TestClient, settings: Settings, viewer: int, expected: list[str]
) -> None:
    response = client.get(f"/v1/users/{OWNER}/calendar", headers=auth_headers(settings, viewer))
    assert response.status_code == 200, response.text
    body = response.json()
    assert _ids(body) == expected
    notes = [item["notes"] for item in body["items"]]
    if viewer == OWNER:
        assert notes == ["n1", "n2", "n3", "n4", "n5"]
    else:
        assert notes == [None] * len(expected)
        assert "private" not in {item["visibility"] for item in body["items"]}
        assert all(not item["notes"] for item in body["items"])


@pytest.mark.usefixtures("owner_calendar")
def test_private_entries_and_notes_never_leak_through_filters_or_cache(
    client: TestClient, settings: Settings
) -> None:
    """Asking for the private entry's status, repeatedly (cache), shows nothing of it."""
    for _ in range(2):
        for viewer in (FRIEND, STRANGER):
            response = client.get(
                f"/v1/users/{OWNER}/calendar?status=going", headers=auth_headers(settings, viewer)
            )
            assert _ids(response.json()) == ["ev-1"]
            assert "n3" not in response.text and "n1" not in response.text
    # The owner's own view (cached under another tier) still has everything.
    mine = client.get(
        f"/v1/users/{OWNER}/calendar?status=going", headers=auth_headers(settings, OWNER)
    )
    assert _ids(mine.json()) == ["ev-1", "ev-3"]


def test_unknown_user_calendar_is_404(client: TestClient, settings: Settings) -> None:
    response = client.get("/v1/users/999/calendar", headers=auth_headers(settings, OWNER))
    _assert_problem(response, 404)
    bad = client.get("/v1/users/zero/calendar", headers=auth_headers(settings, OWNER))
    assert _fields(_assert_problem(bad, 422)) == ["path.user_id"]


# --- cache ---------------------------------------------------------------------------------


def _cache_count(client: TestClient, result: str) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "godo_cache_requests_total"
                and sample.labels.get("cache") == "calendar"
                and sample.labels.get("result") == result
            ):
                return sample.value
    return 0.0


@pytest.mark.usefixtures("owner_calendar")
def test_second_identical_request_is_a_cache_hit(
    client: TestClient, settings: Settings, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    headers = auth_headers(settings, OWNER)
    first = client.get("/v1/me/calendar?limit=3", headers=headers)
    assert (_cache_count(client, "hit"), _cache_count(client, "miss")) == (0, 1)
    second = client.get("/v1/me/calendar?limit=3", headers=headers)
    assert (_cache_count(client, "hit"), _cache_count(client, "miss")) == (1, 1)
    assert second.json() == first.json()
    pages = list(redis_client.scan_iter(f"{redis_keys.prefix}:calendar:user:{OWNER}:v[0-9]*"))
    assert len(pages) == 1
    assert 0 < redis_client.ttl(pages[0]) <= 300
    client.get("/v1/me/calendar?limit=4", headers=headers)  # other parameters: other entry
    assert _cache_count(client, "miss") == 2


@pytest.mark.usefixtures("owner_calendar")
def test_attendance_changes_show_at_once(
    client: TestClient, settings: Settings, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    headers = auth_headers(settings, OWNER)
    before = client.get("/v1/me/calendar", headers=headers).json()
    version = int(redis_client.get(redis_keys.calendar_version(OWNER)) or 0)
    _put(client, settings, "ev-6", status="going", notes="new")
    after = client.get("/v1/me/calendar", headers=headers).json()
    assert _ids(after) == [*_ids(before), "ev-6"]
    assert int(redis_client.get(redis_keys.calendar_version(OWNER)) or 0) == version + 1
    # Other viewers' cached pages of this owner are dropped too.
    friend = client.get(
        f"/v1/users/{OWNER}/calendar", headers=auth_headers(settings, FRIEND)
    ).json()
    assert "ev-6" in _ids(friend)
    client.delete("/v1/events/ev-6/attendance", headers=headers)
    assert "ev-6" not in _ids(client.get("/v1/me/calendar", headers=headers).json())
    friend = client.get(
        f"/v1/users/{OWNER}/calendar", headers=auth_headers(settings, FRIEND)
    ).json()
    assert "ev-6" not in _ids(friend)


@pytest.mark.usefixtures("owner_calendar")
def test_redis_down_still_serves_calendars(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": CLOSED_REDIS})
    with app_client(down) as client:
        headers = auth_headers(settings, OWNER)
        changed = client.put(
            "/v1/events/ev-6/attendance", json={"status": "going"}, headers=headers
        )
        mine = client.get("/v1/me/calendar", headers=headers)
        theirs = client.get(f"/v1/users/{OWNER}/calendar", headers=auth_headers(settings, STRANGER))
    assert changed.status_code == 200, changed.text
    assert mine.status_code == 200, mine.text
    assert _ids(mine.json()) == ["ev-1", "ev-2", "ev-3", "ev-4", "ev-5", "ev-6"]
    assert _ids(theirs.json()) == ["ev-1", "ev-4"]


# --- iCalendar feed ------------------------------------------------------------------------


def _new_token(client: TestClient, settings: Settings, user_id: int = OWNER) -> dict[str, Any]:
    response = client.post("/v1/me/calendar-token", headers=auth_headers(settings, user_id))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.usefixtures("owner_calendar")
def test_feed_lists_plans_as_vevents(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    token = _new_token(client, settings)
    assert token["path"] == f"/v1/me/calendar.ics?token={token['token']}"
    with seeded.connect() as conn:
        stored = conn.execute(sa.text("SELECT user_id, token_hash FROM calendar_tokens")).all()
    assert [tuple(row) for row in stored] == [
        (OWNER, hashlib.sha256(token["token"].encode()).hexdigest())
    ]

    response = client.get(token["path"])  # no bearer token: the URL's secret is the key
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    calendar = icalendar.Calendar.from_ical(response.content)
    assert str(calendar["VERSION"]) == "2.0"
    assert calendar["PRODID"] and str(calendar["X-WR-CALNAME"]) == "Godo: user 1"
    vevents = {str(e["SUMMARY"]): e for e in calendar.walk("VEVENT")}
    # not_going (ev-4) is left out; private entries are the owner's own, so they are in.
    assert set(vevents) == {f"Event {e}" for e in ("ev-old", "ev-1", "ev-2", "ev-3", "ev-5")}
    going = vevents["Event ev-1"]
    assert str(going["STATUS"]) == "CONFIRMED"
    assert str(going["LOCATION"]) == "Coliseu"
    assert going.decoded("DTSTART") == NOW + timedelta(days=1)
    assert going.decoded("DTSTART").utcoffset() == timedelta(0)
    assert going.decoded("DTEND") == NOW + timedelta(days=1, hours=3)
    assert str(vevents["Event ev-2"]["STATUS"]) == "TENTATIVE"
    assert str(vevents["Event ev-old"]["STATUS"]) == "CONFIRMED"  # went
    assert "LOCATION" not in vevents["Event ev-3"]
    uids = [str(e["UID"]) for e in calendar.walk("VEVENT")]
    assert len(set(uids)) == len(uids)

    # UIDs are stable, so a phone updates events in place when an answer changes.
    _put(client, settings, "ev-1", status="interested")
    again = icalendar.Calendar.from_ical(client.get(token["path"]).content)
    updated = {str(e["SUMMARY"]): e for e in again.walk("VEVENT")}["Event ev-1"]
    assert str(updated["UID"]) == str(going["UID"])
    assert str(updated["STATUS"]) == "TENTATIVE"


@pytest.mark.parametrize(
    "display_name",
    ["Ann, Bob; and \\ Cat", "two\nlines", "crlf\r\nname", 'quote " and , comma'],
)
def test_calendar_name_is_escaped_text_for_any_display_name(
    client: TestClient, settings: Settings, seeded: sa.Engine, display_name: str
) -> None:
    """X-WR-CALNAME was written raw: readers cut it at the comma and a newline was a 500."""
    with seeded.begin() as conn:
        conn.execute(sa.update(users).where(users.c.id == OWNER).values(display_name=display_name))
    _put(client, settings, "ev-1", status="going")
    response = client.get(_new_token(client, settings)["path"])
    assert response.status_code == 200, response.text
    parsed = vobject.readOne(response.content.decode())
    # A TEXT value keeps CR LF as an escaped newline (RFC 5545 3.3.11 has only \n).
    assert parsed.x_wr_calname.value == "Godo: " + display_name.replace("\r\n", "\n")
    [vevent] = parsed.vevent_list
    assert vevent.summary.value == "Event ev-1"


def _catalogue(engine: sa.Engine) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The seeded events and venues in the shapes the ingest hands `upsert_catalogue`."""
    with engine.connect() as conn:
        events = pl.DataFrame(
            [
                dict(row)
                for row in conn.execute(
                    sa.text(
                        "SELECT id AS event_id, name, summary, url, venue_id, metro, category, "
                        "start_utc, end_utc, timezone, is_free, price_min_cents, "
                        "price_max_cents, currency, capacity, status, is_active, changed_at "
                        "FROM events ORDER BY id"
                    )
                ).mappings()
            ],
            infer_schema_length=None,
        )
        venues = pl.DataFrame(
            [
                dict(row)
                for row in conn.execute(
                    sa.text(
                        "SELECT id AS venue_id, name, address, city, metro, latitude, "
                        "longitude, capacity FROM venues ORDER BY id"
                    )
                ).mappings()
            ],
            infer_schema_length=None,
        )
    return events, venues


def _reingest(engine: sa.Engine, event_id: str, **changes: Any) -> None:
    events, venues = _catalogue(engine)
    changed = events.with_columns(
        pl.when(pl.col("event_id") == event_id)
        .then(pl.lit(v).cast(events.schema[k]))
        .otherwise(pl.col(k))
        .alias(k)
        for k, v in changes.items()
    )
    with engine.begin() as conn:
        upsert_catalogue(conn, events=changed, venues=venues)


def _vevent(client: TestClient, path: str, summary: str) -> Any:
    calendar = icalendar.Calendar.from_ical(client.get(path).content)
    return {str(e["SUMMARY"]): e for e in calendar.walk("VEVENT")}[summary]


def test_a_time_change_bumps_sequence_and_last_modified_and_a_cancel_says_cancelled(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    """Phones keep their copy of a UID unless SEQUENCE or LAST-MODIFIED moves; the feed
    used to leave both alone when an event moved, and said CONFIRMED for a cancelled one."""
    _put(client, settings, "ev-1", status="going")
    path = _new_token(client, settings)["path"]
    first = _vevent(client, path, "Event ev-1")
    assert first.decoded("SEQUENCE") == 0
    _reingest(seeded, "ev-1")  # the hourly upsert with nothing changed: nothing moves
    same = _vevent(client, path, "Event ev-1")
    assert same.decoded("SEQUENCE") == 0
    assert same.decoded("LAST-MODIFIED") == first.decoded("LAST-MODIFIED")

    moved = NOW + timedelta(days=1, hours=2)
    _reingest(seeded, "ev-1", start_utc=moved, end_utc=moved + timedelta(hours=3))
    second = _vevent(client, path, "Event ev-1")
    assert second.decoded("DTSTART") == moved
    assert second.decoded("SEQUENCE") == 1
    assert second.decoded("LAST-MODIFIED") >= first.decoded("LAST-MODIFIED")
    with seeded.connect() as conn:
        changed_at = conn.execute(
            sa.text("SELECT schedule_changed_at FROM events WHERE id = 'ev-1'")
        ).scalar_one()
    assert second.decoded("LAST-MODIFIED") == changed_at.replace(microsecond=0)
    assert str(second["STATUS"]) == "CONFIRMED"

    _reingest(seeded, "ev-1", status="canceled", is_active=False)
    cancelled = _vevent(client, path, "Event ev-1")
    assert str(cancelled["STATUS"]) == "CANCELLED"
    assert cancelled.decoded("SEQUENCE") == 2
    assert str(cancelled["UID"]) == str(first["UID"])


@pytest.mark.usefixtures("owner_calendar")
def test_rotated_and_revoked_tokens_stop_working(client: TestClient, settings: Settings) -> None:
    old = _new_token(client, settings)
    new = _new_token(client, settings)
    assert new["token"] != old["token"]
    _assert_problem(client.get(old["path"]), 404)
    assert client.get(new["path"]).status_code == 200

    revoked = client.delete("/v1/me/calendar-token", headers=auth_headers(settings, OWNER))
    assert revoked.status_code == 204
    gone = _assert_problem(client.get(new["path"]), 404)
    never = _assert_problem(client.get("/v1/me/calendar.ics?token=made-up"), 404)
    assert gone["detail"] == never["detail"]  # nothing tells a revoked token from a guess
    again = client.delete("/v1/me/calendar-token", headers=auth_headers(settings, OWNER))
    assert again.status_code == 204


def test_feed_tokens_are_per_user(client: TestClient, settings: Settings) -> None:
    _put(client, settings, "ev-1", status="going", visibility="private")
    _put(client, settings, "ev-2", user_id=FRIEND, status="going")
    friend = _new_token(client, settings, FRIEND)
    body = icalendar.Calendar.from_ical(client.get(friend["path"]).content)
    assert [str(e["SUMMARY"]) for e in body.walk("VEVENT")] == ["Event ev-2"]


def test_feed_needs_a_token(client: TestClient, settings: Settings) -> None:
    assert _fields(_assert_problem(client.get("/v1/me/calendar.ics"), 422)) == ["query.token"]
    _assert_problem(client.post("/v1/me/calendar-token"), 401)


def test_numbers_are_not_dates(client: TestClient, settings: Settings) -> None:
    """`from=0.5` is not an ISO date-time, whatever pydantic would make of it."""
    for path in ("/v1/me/calendar", f"/v1/users/{OWNER}/calendar"):
        response = client.get(path, params={"from": "0.5"}, headers=auth_headers(settings, OWNER))
        assert response.status_code == 422 and "from" in response.text
