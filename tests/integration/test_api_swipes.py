"""The swipes API end to end: real Postgres and Redis, HTTP through the app.

Rows are read back from Postgres (the source of truth) and the feed through `GET /v1/feed`, so
these tests pin what the app sees, not how the store does it. Redis "down" is a URL pointing at
a closed port, never a mock.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from core.settings import Settings
from store.db import copy_frame
from store.keys import RedisKeys
from store.publish import publish_run
from tests.integration.conftest import app_client, auth_headers

RUN_ID = "run-swipes-test-1"
CLOSED_REDIS = "redis://127.0.0.1:1/0"
PROBLEM = "application/problem+json"
EVENT_IDS = ["ev-1", "ev-2", "ev-3", "ev-4"]
USERS = [1, 2]
USER_1_FEED = ["ev-3", "ev-1", "ev-4"]


def _seed(engine: sa.Engine) -> None:
    """Two users and four upcoming events: what swipes refer to (foreign keys)."""
    now = datetime.now(UTC).replace(microsecond=0)
    users = pl.DataFrame(
        {
            "id": USERS,
            "display_name": [f"user {u}" for u in USERS],
            "metro": ["lisbon"] * len(USERS),
        }
    )
    events = pl.DataFrame(
        {
            "id": EVENT_IDS,
            "name": [f"Event {e}" for e in EVENT_IDS],
            "category": ["music"] * len(EVENT_IDS),
            "start_utc": [now + timedelta(days=i + 1) for i in range(len(EVENT_IDS))],
            "is_free": [True] * len(EVENT_IDS),
            "metro": ["lisbon"] * len(EVENT_IDS),
            "status": ["live"] * len(EVENT_IDS),
            "is_active": [True] * len(EVENT_IDS),
        },
        schema_overrides={"start_utc": pl.Datetime("us", "UTC")},
    )
    with engine.begin() as conn:
        copy_frame(conn, "users", users)
        copy_frame(conn, "events", events)


@pytest.fixture
def seeded(engine: sa.Engine) -> sa.Engine:
    _seed(engine)
    return engine


@pytest.fixture
def published(seeded: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys) -> str:
    """A published run giving user 1 a feed, exactly as the pipeline publishes one."""
    publish_run(
        engine=seeded,
        redis_client=redis_client,
        keys=redis_keys,
        run_id=RUN_ID,
        model="test-model",
        recommendations=pl.DataFrame(
            {
                "user_id": [1] * len(USER_1_FEED),
                "rank": list(range(1, len(USER_1_FEED) + 1)),
                "event_id": USER_1_FEED,
                "score": [0.9, 0.8, 0.7],
                "reason": ["als"] * len(USER_1_FEED),
            }
        ),
        fallback=pl.DataFrame(
            {"rank": [1], "event_id": ["ev-2"], "score": [0.5], "reason": ["popular"]}
        ),
        ttl_seconds=600,
    )
    return RUN_ID


@pytest.fixture
def app_data(seeded: sa.Engine) -> None:
    """`client` starts on the `seeded` world."""


def _swipe(event_id: str, direction: str = "like", **overrides: Any) -> dict[str, Any]:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    swipe = {
        "client_id": str(uuid.uuid4()),
        "event_id": event_id,
        "direction": direction,
        "ts": ts.isoformat(),
    }
    return {**swipe, **overrides}


def _rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(
            sa.text(
                "SELECT id, client_id, user_id, event_id, action, position, swiped_at, "
                "created_at FROM swipes ORDER BY created_at, client_id"
            )
        )
        return [dict(row._mapping) for row in result]


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body


def _fields(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


# --- storing -------------------------------------------------------------------------------


def test_batch_is_stored_for_the_token_user(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    batch = [_swipe("ev-1", "like"), _swipe("ev-2", "pass"), _swipe("ev-3", "superlike")]
    response = client.post("/v1/swipes", json={"swipes": batch}, headers=auth_headers(settings, 1))
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 3, "duplicates": 0, "feed_updated": True}
    rows = _rows(seeded)
    by_client = {row["client_id"]: row for row in rows}
    assert set(by_client) == {s["client_id"] for s in batch}
    for swipe in batch:
        row = by_client[swipe["client_id"]]
        assert row["user_id"] == 1
        assert row["event_id"] == swipe["event_id"]
        assert row["action"] == swipe["direction"]
        assert row["swiped_at"] == datetime.fromisoformat(swipe["ts"])
        assert row["swiped_at"] < row["created_at"] <= datetime.now(UTC)
        assert row["position"] is None
        assert isinstance(row["id"], uuid.UUID) and str(row["id"]) != swipe["client_id"]


def test_retried_batch_is_stored_once(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    batch = [_swipe("ev-1"), _swipe("ev-2", "pass")]
    first = client.post("/v1/swipes", json={"swipes": batch}, headers=auth_headers(settings, 1))
    again = client.post("/v1/swipes", json={"swipes": batch}, headers=auth_headers(settings, 1))
    assert first.json() == {"stored": 2, "duplicates": 0, "feed_updated": True}
    assert again.status_code == 200, again.text
    assert again.json() == {"stored": 0, "duplicates": 2, "feed_updated": True}
    extended = client.post(
        "/v1/swipes", json={"swipes": [*batch, _swipe("ev-3")]}, headers=auth_headers(settings, 1)
    )
    assert extended.json() == {"stored": 1, "duplicates": 2, "feed_updated": True}
    assert len(_rows(seeded)) == 3


def test_user_comes_from_the_token_not_the_body(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    swipe = _swipe("ev-1")
    response = client.post(
        "/v1/swipes",
        json={"swipes": [{**swipe, "user_id": 1}], "user_id": 1},
        headers=auth_headers(settings, 2),
    )
    assert response.status_code == 200, response.text
    assert [row["user_id"] for row in _rows(seeded)] == [2]


def test_client_ids_are_scoped_per_user(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    """Another user reusing a client id neither overwrites nor hides the first user's swipe."""
    swipe = _swipe("ev-1", client_id="same-id")
    for user_id in USERS:
        response = client.post(
            "/v1/swipes", json={"swipes": [swipe]}, headers=auth_headers(settings, user_id)
        )
        assert response.json()["stored"] == 1, response.text
    assert sorted(row["user_id"] for row in _rows(seeded)) == USERS


# --- the feed ------------------------------------------------------------------------------


def test_swiped_event_leaves_the_feed_at_once(
    client: TestClient, settings: Settings, published: str
) -> None:
    before = client.get("/v1/feed", headers=auth_headers(settings, 1)).json()
    assert [item["event_id"] for item in before["items"]] == USER_1_FEED
    response = client.post(
        "/v1/swipes", json={"swipes": [_swipe("ev-3", "pass")]}, headers=auth_headers(settings, 1)
    )
    assert response.json()["feed_updated"] is True, response.text
    after = client.get("/v1/feed", headers=auth_headers(settings, 1)).json()
    assert after["source"] == "redis"
    assert [item["event_id"] for item in after["items"]] == ["ev-1", "ev-4"]


def test_redis_down_still_stores_the_swipes(
    settings: Settings, seeded: sa.Engine, published: str
) -> None:
    down = settings.model_copy(update={"redis_url": CLOSED_REDIS})
    batch = [_swipe("ev-3")]
    with app_client(down) as client:
        response = client.post(
            "/v1/swipes", json={"swipes": batch}, headers=auth_headers(settings, 1)
        )
        feed = client.get("/v1/feed", headers=auth_headers(settings, 1)).json()
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 1, "duplicates": 0, "feed_updated": False}
    assert [row["event_id"] for row in _rows(seeded)] == ["ev-3"]
    # Meanwhile the feed comes from Postgres, which drops swipes stored since the publish.
    assert feed["source"] == "postgres"
    assert [item["event_id"] for item in feed["items"]] == ["ev-1", "ev-4"]

    # Resending once Redis is back stores nothing new but does catch the feed up.
    with app_client(settings) as client:
        again = client.post("/v1/swipes", json={"swipes": batch}, headers=auth_headers(settings, 1))
        feed = client.get("/v1/feed", headers=auth_headers(settings, 1)).json()
    assert again.json() == {"stored": 0, "duplicates": 1, "feed_updated": True}
    assert [item["event_id"] for item in feed["items"]] == ["ev-1", "ev-4"]


# --- validation: all or nothing ------------------------------------------------------------


def test_more_than_100_swipes_is_a_422_naming_swipes(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    batch = [_swipe(EVENT_IDS[i % len(EVENT_IDS)]) for i in range(101)]
    response = client.post("/v1/swipes", json={"swipes": batch}, headers=auth_headers(settings, 1))
    body = _assert_problem(response, 422)
    assert _fields(body) == ["body.swipes"]
    assert _rows(seeded) == []


def test_empty_batch_is_a_422(client: TestClient, settings: Settings) -> None:
    response = client.post("/v1/swipes", json={"swipes": []}, headers=auth_headers(settings, 1))
    assert _fields(_assert_problem(response, 422)) == ["body.swipes"]


def test_future_ts_is_a_422_naming_that_items_ts(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    batch = [_swipe("ev-1"), _swipe("ev-2"), _swipe("ev-3"), _swipe("ev-4", ts=future)]
    response = client.post("/v1/swipes", json={"swipes": batch}, headers=auth_headers(settings, 1))
    body = _assert_problem(response, 422)
    assert [error["loc"] for error in body["errors"]] == [["body", "swipes", 3, "ts"]]
    assert "future" in body["detail"]
    assert _rows(seeded) == []


def test_small_clock_skew_is_tolerated_but_not_stored_in_the_future(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    ahead = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    response = client.post(
        "/v1/swipes", json={"swipes": [_swipe("ev-1", ts=ahead)]}, headers=auth_headers(settings, 1)
    )
    assert response.status_code == 200, response.text
    [row] = _rows(seeded)
    assert row["swiped_at"] == row["created_at"]


def test_naive_ts_is_a_422_naming_ts(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    naive = _swipe("ev-1", ts="2026-01-01T12:00:00")
    response = client.post(
        "/v1/swipes", json={"swipes": [naive]}, headers=auth_headers(settings, 1)
    )
    assert _fields(_assert_problem(response, 422)) == ["body.swipes.0.ts"]
    assert _rows(seeded) == []


def test_repeated_client_id_in_a_batch_is_a_422(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    batch = [_swipe("ev-1", client_id="dup"), _swipe("ev-2", client_id="dup")]
    response = client.post("/v1/swipes", json={"swipes": batch}, headers=auth_headers(settings, 1))
    body = _assert_problem(response, 422)
    assert _fields(body) == ["body.swipes"]
    assert "dup" in body["detail"]
    assert _rows(seeded) == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"direction": "maybe"}, "direction"),
        ({"client_id": ""}, "client_id"),
        ({"client_id": "x" * 65}, "client_id"),
    ],
    ids=["bad-direction", "empty-client-id", "long-client-id"],
)
def test_bad_item_field_is_a_422_naming_it(
    client: TestClient, settings: Settings, overrides: dict[str, Any], field: str
) -> None:
    response = client.post(
        "/v1/swipes",
        json={"swipes": [_swipe("ev-1", **overrides)]},
        headers=auth_headers(settings, 1),
    )
    assert _fields(_assert_problem(response, 422)) == [f"body.swipes.0.{field}"]


def test_unknown_event_is_a_422_naming_it_and_nothing_is_stored(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    batch = [_swipe("ev-1"), _swipe("ev-nope"), _swipe("ev-2"), _swipe("ev-gone")]
    response = client.post("/v1/swipes", json={"swipes": batch}, headers=auth_headers(settings, 1))
    body = _assert_problem(response, 422)
    assert _fields(body) == ["body.swipes.1.event_id", "body.swipes.3.event_id"]
    assert "ev-nope" in body["detail"] and "ev-gone" in body["detail"]
    assert {error["type"] for error in body["errors"]} == {"unknown_event"}
    assert _rows(seeded) == []


# --- authentication ------------------------------------------------------------------------


def test_missing_token_is_a_401(client: TestClient, seeded: sa.Engine) -> None:
    response = client.post("/v1/swipes", json={"swipes": [_swipe("ev-1")]})
    _assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert _rows(seeded) == []


def test_token_of_a_user_without_a_row_is_a_404(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    response = client.post(
        "/v1/swipes", json={"swipes": [_swipe("ev-1")]}, headers=auth_headers(settings, 999)
    )
    assert "999" in _assert_problem(response, 404)["detail"]
    assert _rows(seeded) == []
