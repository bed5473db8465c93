"""The API's card cache against real Postgres and Redis: fast, yet never stale across processes.

Two app instances share one database and one Redis, as two API processes do. Instance A
serves the feed (and caches its cards and the viewer's friends); every write goes through
instance B's API. A must reflect each write on its very next request, because the write
bumped a Redis counter that A checks, not because A's cache expired.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from core.settings import Settings
from store.db import copy_frame, make_engine
from store.keys import RedisKeys
from store.live_cache import touch_catalogue, touch_events, touch_friends
from store.publish import publish_run
from tests.integration.conftest import app_client, auth_headers

VIEWER, FRIEND, OTHER = 1, 2, 3
CLOSED_POSTGRES = "postgresql://godo@127.0.0.1:1/godo"
EVENTS = ["ev-1", "ev-2", "ev-3"]


@pytest.fixture
def published(engine: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with engine.begin() as conn:
        copy_frame(
            conn,
            "users",
            pl.DataFrame(
                {
                    "id": [VIEWER, FRIEND, OTHER],
                    "display_name": ["Viewer", "Friend", "Other"],
                    "metro": ["lisbon"] * 3,
                }
            ),
        )
        copy_frame(
            conn, "venues", pl.DataFrame({"id": ["v-1"], "name": ["Hall"], "metro": ["lisbon"]})
        )
        copy_frame(
            conn,
            "events",
            pl.DataFrame(
                {
                    "id": EVENTS,
                    "name": ["Jazz", "Market", "Meetup"],
                    "category": ["music", "food", "tech"],
                    "start_utc": [now + timedelta(days=d) for d in (1, 2, 3)],
                    "venue_id": ["v-1"] * 3,
                    "metro": ["lisbon"] * 3,
                    "capacity": [2, 100, 100],
                    "is_free": [True] * 3,
                    "status": ["live"] * 3,
                    "is_active": [True] * 3,
                },
                schema_overrides={"start_utc": pl.Datetime("us", "UTC")},
            ),
        )
    publish_run(
        engine=engine,
        redis_client=redis_client,
        keys=redis_keys,
        run_id="run-cache-1",
        model="test-model",
        recommendations=pl.DataFrame(
            {
                "user_id": [VIEWER] * 3,
                "rank": [1, 2, 3],
                "event_id": EVENTS,
                "score": [0.9, 0.8, 0.7],
                "reason": ["als"] * 3,
            }
        ),
        fallback=pl.DataFrame(
            {"rank": [1], "event_id": ["ev-1"], "score": [1.0], "reason": ["pop"]}
        ),
        ttl_seconds=600,
    )


@pytest.fixture
def apps(settings: Settings, published: None) -> Iterator[tuple[TestClient, TestClient]]:
    """Instance A (serves the feed) and instance B (takes the writes)."""
    with app_client(settings) as a, app_client(settings) as b:
        yield a, b


def _feed(client: TestClient, settings: Settings) -> dict[str, dict[str, Any]]:
    response = client.get("/v1/feed", headers=auth_headers(settings, VIEWER))
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "redis"
    # Impression ids differ on every response (each showing is an impression): left out.
    return {
        item["event_id"]: {k: v for k, v in item.items() if k != "impression_id"}
        for item in response.json()["items"]
    }


def _rsvp(client: TestClient, settings: Settings, user_id: int, event_id: str, **body: str) -> None:
    response = client.put(
        f"/v1/events/{event_id}/attendance", json=body, headers=auth_headers(settings, user_id)
    )
    assert response.status_code == 200, response.text


def _befriend(client: TestClient, settings: Settings, a: int, b: int) -> None:
    assert client.post(f"/v1/friends/{b}", headers=auth_headers(settings, a)).status_code == 201
    accepted = client.post(f"/v1/friends/{a}/accept", headers=auth_headers(settings, b))
    assert accepted.status_code == 200, accepted.text


def test_a_cached_card_is_reused_until_its_counter_moves(
    apps: tuple[TestClient, TestClient],
    settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    """An out-of-band rename is not seen while the counters stand still: the cache is real."""
    a, _ = apps
    assert _feed(a, settings)["ev-1"]["name"] == "Jazz"
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE events SET name = 'Jazz (moved)' WHERE id = 'ev-1'"))
    assert _feed(a, settings)["ev-1"]["name"] == "Jazz"  # served from A's cache

    assert touch_events(redis_client, redis_keys, ["ev-1"])
    assert _feed(a, settings)["ev-1"]["name"] == "Jazz (moved)"


def test_a_bulk_load_invalidates_every_card(
    apps: tuple[TestClient, TestClient],
    settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    a, _ = apps
    assert set(_feed(a, settings)) == set(EVENTS)
    with engine.begin() as conn:  # what an upstream cancellation looks like after the ingest
        conn.execute(sa.text("UPDATE events SET status = 'canceled' WHERE id = 'ev-2'"))
    assert touch_catalogue(redis_client, redis_keys)
    assert set(_feed(a, settings)) == {"ev-1", "ev-3"}


def test_rsvps_and_friendships_made_elsewhere_show_on_the_next_request(
    apps: tuple[TestClient, TestClient], settings: Settings
) -> None:
    a, b = apps
    assert _feed(a, settings)["ev-1"]["friends_going"] == 0

    # A friend made through the other process, then their RSVP: both reach A at once.
    _befriend(b, settings, VIEWER, FRIEND)
    _rsvp(b, settings, FRIEND, "ev-1", status="going", visibility="friends")
    assert _feed(a, settings)["ev-1"]["friends_going"] == 1

    # Going private hides them from the count at once.
    _rsvp(b, settings, FRIEND, "ev-1", status="going", visibility="private")
    assert _feed(a, settings)["ev-1"]["friends_going"] == 0

    # Public again, then unfriended: the count follows the friendship.
    _rsvp(b, settings, FRIEND, "ev-1", status="going", visibility="public")
    assert _feed(a, settings)["ev-1"]["friends_going"] == 1
    assert (
        b.delete(f"/v1/friends/{FRIEND}", headers=auth_headers(settings, VIEWER)).status_code == 204
    )
    assert _feed(a, settings)["ev-1"]["friends_going"] == 0


def test_the_last_seat_taken_elsewhere_drops_the_event_and_a_freed_one_brings_it_back(
    apps: tuple[TestClient, TestClient], settings: Settings
) -> None:
    a, b = apps
    _rsvp(b, settings, FRIEND, "ev-1", status="going", visibility="public")
    assert "ev-1" in _feed(a, settings)  # one of two seats taken
    _rsvp(b, settings, OTHER, "ev-1", status="going", visibility="private")
    assert "ev-1" not in _feed(a, settings)  # full, though the last RSVP is private

    assert (
        b.delete("/v1/events/ev-1/attendance", headers=auth_headers(settings, OTHER)).status_code
        == 204
    )
    assert "ev-1" in _feed(a, settings)


def test_a_stale_entry_is_not_trusted_past_its_max_age(
    settings: Settings, published: None, engine: sa.Engine
) -> None:
    """A write that could not bump its counter heals after `card_cache_seconds`."""
    with app_client(settings.model_copy(update={"card_cache_seconds": 0})) as a:
        assert _feed(a, settings)["ev-3"]["name"] == "Meetup"
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE events SET name = 'Meetup 2' WHERE id = 'ev-3'"))
        assert _feed(a, settings)["ev-3"]["name"] == "Meetup 2"


def test_the_friend_list_is_shared_through_redis_until_its_counter_moves(
    apps: tuple[TestClient, TestClient],
    settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    a, b = apps
    _rsvp(b, settings, FRIEND, "ev-2", status="going", visibility="public")
    assert _feed(a, settings)["ev-2"]["friends_going"] == 0
    assert redis_client.exists(redis_keys.friend_ids(VIEWER))  # stored for every process

    with engine.begin() as conn:  # befriended behind the API's back: the stored list stands
        conn.execute(
            sa.text("INSERT INTO friendships (user_id, friend_id) VALUES (:a, :b), (:b, :a)"),
            {"a": VIEWER, "b": FRIEND},
        )
    assert _feed(b, settings)["ev-2"]["friends_going"] == 0

    assert touch_friends(redis_client, redis_keys, [VIEWER])
    assert _feed(b, settings)["ev-2"]["friends_going"] == 1


def test_with_postgres_down_cached_pages_are_still_served(
    settings: Settings, published: None, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    """Cards and friends come from the caches, so a warm page needs no Postgres at all."""
    with app_client(settings) as a:
        warm = _feed(a, settings)
        a.app.state.engine = make_engine(CLOSED_POSTGRES)  # type: ignore[attr-defined]
        assert _feed(a, settings) == warm

        # A card that must be read again (its event changed) cannot be: 503, not a stale card.
        assert touch_events(redis_client, redis_keys, ["ev-2"])
        response = a.get("/v1/feed", headers=auth_headers(settings, VIEWER))
        assert response.status_code == 503
        assert response.headers["retry-after"]
