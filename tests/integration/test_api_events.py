"""`GET /v1/events/{event_id}` end to end: real Postgres, HTTP through the app, no mocks.

The event page reads the catalogue and attendance live, so no run needs publishing: each test
seeds a venue, an event, a few users, friendships (one row per direction) and RSVPs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from core.settings import Settings
from core.tokens import issue_token
from store.db import copy_frame

PROBLEM = "application/problem+json"
HALL = (40.7411, -73.9897)  # a venue in Manhattan
NEARBY = (40.7527, -73.9772)  # about 1.5 km away
# A January start, so New York is on standard time (-05:00) whatever today's date is.
START = datetime(datetime.now(UTC).year + 1, 1, 15, 0, 30, tzinfo=UTC)
FRIENDS_SINCE = datetime(2025, 11, 20, 18, 4, 5, tzinfo=UTC)


@pytest.fixture
def seeded(engine: sa.Engine) -> None:
    """One event in New York, users 1-5: 1 and 2 are friends, so are 1 and 3, 2 and 3."""
    with engine.begin() as conn:
        copy_frame(
            conn,
            "venues",
            pl.DataFrame(
                {
                    "id": ["v-ny"],
                    "name": ["Flatiron Loft"],
                    "address": ["1 Broadway"],
                    "metro": ["nyc"],
                    "latitude": [HALL[0]],
                    "longitude": [HALL[1]],
                }
            ),
        )
        copy_frame(
            conn,
            "events",
            pl.DataFrame(
                {
                    "id": ["ev-ny"],
                    "name": ["Winter Jazz"],
                    "category": ["music"],
                    "start_utc": [START],
                    "end_utc": [START + timedelta(hours=3)],
                    "timezone": ["America/New_York"],
                    "is_free": [False],
                    "price_min_cents": [2000],
                    "price_max_cents": [4500],
                    "currency": ["USD"],
                    "capacity": [100],
                    "venue_id": ["v-ny"],
                    "metro": ["nyc"],
                    "status": ["live"],
                    "is_active": [True],
                },
                schema_overrides={
                    "start_utc": pl.Datetime("us", "UTC"),
                    "end_utc": pl.Datetime("us", "UTC"),
                },
            ),
        )
        copy_frame(
            conn,
            "users",
            pl.DataFrame(
                {
                    "id": [1, 2, 3, 4, 5],
                    "display_name": ["Ana", "Bruno", "Carla", "Dinis", "Eva"],
                    "metro": ["nyc"] * 5,
                }
            ),
        )
        friendships = [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2), (1, 4)]  # 4 one-sided
        copy_frame(
            conn,
            "friendships",
            pl.DataFrame(
                {"user_id": [a for a, _ in friendships], "friend_id": [b for _, b in friendships]}
            ),
        )
        # Each user's rows are dated by the user, so `since` shows whose row was read.
        conn.execute(
            sa.text("UPDATE friendships SET created_at = :since + user_id * interval '1 day'"),
            {"since": FRIENDS_SINCE},
        )


def _since(viewer_id: int) -> str:
    """`since` of every friend `viewer_id` sees, as the API writes it (see `seeded`)."""
    return (FRIENDS_SINCE + timedelta(days=viewer_id)).isoformat().replace("+00:00", "Z")


def _rsvp(engine: sa.Engine, user_id: int, status: str, visibility: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO event_attendance (user_id, event_id, status, visibility) "
                "VALUES (:u, 'ev-ny', :s, :v)"
            ),
            {"u": user_id, "s": status, "v": visibility},
        )


def _get(
    client: TestClient, settings: Settings, user_id: int, event_id: str = "ev-ny", **params: Any
) -> Any:
    token = issue_token(settings, user_id)
    return client.get(
        f"/v1/events/{event_id}", params=params, headers={"Authorization": f"Bearer {token}"}
    )


def test_event_page_shows_the_card_in_local_time(
    client: TestClient, api_settings: Settings, seeded: None
) -> None:
    response = _get(client, api_settings, 1, lat=NEARBY[0], lon=NEARBY[1])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["event_id"] == "ev-ny" and body["name"] == "Winter Jazz"
    assert datetime.fromisoformat(body["start_utc"]) == START
    # 00:30 UTC on 15 January is 19:30 the evening before in New York (EST, -05:00).
    assert body["start_local"] == f"{START.year}-01-14T19:30:00-05:00"
    assert body["timezone"] == "America/New_York"
    assert body["venue"] == {
        "name": "Flatiron Loft",
        "address": "1 Broadway",
        "latitude": HALL[0],
        "longitude": HALL[1],
    }
    assert 1.2 < body["distance_km"] < 1.8
    assert body["price"] == {
        "is_free": False,
        "price_min_cents": 2000,
        "price_max_cents": 4500,
        "currency": "USD",
    }
    assert body["image_url"] is None
    assert body["status"] == "live" and body["cancelled"] is False and body["full"] is False
    assert body["going_count"] == 0 and body["friends_going"] == []


def test_friends_going_lists_friends_who_share_never_private(
    client: TestClient, api_settings: Settings, engine: sa.Engine, seeded: None
) -> None:
    _rsvp(engine, 2, "going", "friends")
    _rsvp(engine, 3, "going", "private")
    _rsvp(engine, 4, "going", "public")  # 1 lists 4, but 4 never befriended 1
    _rsvp(engine, 5, "going", "public")  # a stranger
    _rsvp(engine, 1, "interested", "public")

    ana = _get(client, api_settings, 1).json()
    # The same `FriendOut` as the friends list: `since` is when Ana befriended Bruno.
    assert ana["friends_going"] == [{"user_id": 2, "display_name": "Bruno", "since": _since(1)}]
    assert ana["going_count"] == 3  # 2, 4 and 5; 3's private RSVP is nobody else's business

    # Bruno is Carla's friend too, and still never sees her private RSVP.
    bruno = _get(client, api_settings, 2).json()
    assert bruno["friends_going"] == [] and bruno["going_count"] == 3
    carla = _get(client, api_settings, 3).json()
    assert carla["friends_going"] == [{"user_id": 2, "display_name": "Bruno", "since": _since(3)}]


def test_cancelled_or_full_event_still_opens_saying_so(
    client: TestClient, api_settings: Settings, engine: sa.Engine, seeded: None
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE events SET capacity = 1, status = 'canceled'"))
    _rsvp(engine, 3, "going", "private")  # a private RSVP still takes the seat
    body = _get(client, api_settings, 1).json()
    assert body["cancelled"] is True and body["full"] is True
    assert body["going_count"] == 0


def test_unknown_event_is_a_404_problem(
    client: TestClient, api_settings: Settings, seeded: None
) -> None:
    response = _get(client, api_settings, 1, event_id="no-such-event")
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "no-such-event" in response.json()["detail"]


def test_event_page_needs_a_token_and_a_whole_position(
    client: TestClient, api_settings: Settings, seeded: None
) -> None:
    assert client.get("/v1/events/ev-ny").status_code == 401
    response = _get(client, api_settings, 1, lat=40.7)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["query.lon"]
