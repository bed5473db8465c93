"""The feed API end to end: real Postgres and Redis, a published run, HTTP through the app.

Each test seeds a few events, publishes a run with `store.publish.publish_run` exactly as the
pipeline does, and reads it back through `TestClient`, whose context manager runs the app's
lifespan (so the app opens its own pools, as in production). Outages are real too: a store
"down" is a URL pointing at a closed port, never a mock.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.settings import Settings
from core.tokens import issue_token
from serving import cursors
from serving.app import create_app
from store.db import copy_frame
from store.feed import mark_seen
from store.keys import RedisKeys
from store.publish import publish_run
from tests.integration.conftest import app_client, auth_headers

RUN_ID = "run-api-test-1"
CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_POSTGRES = "postgresql://godo@127.0.0.1:1/godo"
PROBLEM = "application/problem+json"

# (id, name, category, days from now, free?, min price) -- start times are whole seconds because
# published items carry second precision, so both read paths give identical timestamps.
EVENTS = [
    ("ev-1", "Jazz on the Roof", "music", 1, False, 1500),
    ("ev-2", "Night Market", "food", 2, True, None),
    ("ev-3", "Data Science Meetup", "tech", 3, True, None),
    ("ev-4", "Derby Match", "sports", 4, False, 3000),
    ("ev-5", "Poetry Slam", "arts", 5, False, 800),
]
USER_LISTS = {1: ["ev-3", "ev-1", "ev-4"], 2: ["ev-2", "ev-5"]}
FALLBACK = ["ev-5", "ev-2", "ev-1"]
NAMES = {event_id: name for event_id, name, *_ in EVENTS}


def _seed_events(engine: sa.Engine) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    venues = pl.DataFrame(
        {"id": ["v-1"], "name": ["Harbour Hall"], "metro": ["lisbon"], "capacity": [400]}
    )
    events = pl.DataFrame(
        {
            "id": [e[0] for e in EVENTS],
            "name": [e[1] for e in EVENTS],
            "category": [e[2] for e in EVENTS],
            "start_utc": [now + timedelta(days=e[3]) for e in EVENTS],
            "end_utc": [now + timedelta(days=e[3], hours=3) for e in EVENTS],
            "is_free": [e[4] for e in EVENTS],
            "price_min_cents": [e[5] for e in EVENTS],
            "venue_id": ["v-1"] * len(EVENTS),
            "metro": ["lisbon"] * len(EVENTS),
            "status": ["live"] * len(EVENTS),
            "is_active": [True] * len(EVENTS),
        },
        schema_overrides={
            "start_utc": pl.Datetime("us", "UTC"),
            "end_utc": pl.Datetime("us", "UTC"),
        },
    )
    with engine.begin() as conn:
        copy_frame(conn, "venues", venues)
        copy_frame(conn, "events", events)


def _ranked(event_ids: list[str]) -> dict[str, list[Any]]:
    return {
        "rank": list(range(1, len(event_ids) + 1)),
        "event_id": event_ids,
        "score": [round(1.0 - 0.1 * i, 3) for i in range(len(event_ids))],
        "reason": ["als"] * len(event_ids),
    }


@pytest.fixture
def published(engine: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys) -> str:
    """Seed events and publish one run (two users with lists, plus a fallback)."""
    _seed_events(engine)
    recommendations = pl.concat(
        pl.DataFrame({"user_id": [user_id] * len(ids), **_ranked(ids)})
        for user_id, ids in USER_LISTS.items()
    )
    publish_run(
        engine=engine,
        redis_client=redis_client,
        keys=redis_keys,
        run_id=RUN_ID,
        model="test-model",
        recommendations=recommendations,
        fallback=pl.DataFrame(_ranked(FALLBACK)),
        ttl_seconds=600,
    )
    return RUN_ID


def _without_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "impression_id"} for item in items]


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    assert body["instance"] == response.request.url.path
    return body


# --- the feed ------------------------------------------------------------------------------


def test_feed_is_the_published_ranked_list(
    client: TestClient, settings: Settings, published: str
) -> None:
    response = client.get("/v1/feed", headers=auth_headers(settings, 1))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == 1
    assert body["run_id"] == published
    assert body["source"] == "redis"
    assert body["cold_start"] is False
    assert [item["event_id"] for item in body["items"]] == USER_LISTS[1]
    assert [item["name"] for item in body["items"]] == [NAMES[e] for e in USER_LISTS[1]]
    assert [item["rank"] for item in body["items"]] == [1, 2, 3]
    assert [item["score"] for item in body["items"]] == [1.0, 0.9, 0.8]
    first = body["items"][0]
    assert first["venue"]["name"] == "Harbour Hall"
    assert first["metro"] == "lisbon"
    assert first["price"]["is_free"] is True and first["price"]["price_min_cents"] is None
    assert datetime.fromisoformat(first["start_utc"]) > datetime.now(UTC)
    assert first["friends_going"] == 0
    assert first["distance_km"] is None and first["image_url"] is None
    assert first["reason"] == "als"


def test_limit_cuts_the_list(client: TestClient, settings: Settings, published: str) -> None:
    response = client.get("/v1/feed", params={"limit": 1}, headers=auth_headers(settings, 1))
    assert response.status_code == 200, response.text
    assert [item["event_id"] for item in response.json()["items"]] == USER_LISTS[1][:1]


def test_unknown_user_gets_the_fallback(
    client: TestClient, settings: Settings, published: str
) -> None:
    response = client.get("/v1/feed", headers=auth_headers(settings, 987_654))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cold_start"] is True
    assert body["run_id"] == published
    assert [item["event_id"] for item in body["items"]] == FALLBACK


def test_swiped_event_leaves_the_feed(
    client: TestClient,
    settings: Settings,
    published: str,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    mark_seen(
        redis_client=redis_client,
        keys=redis_keys,
        user_id=1,
        event_ids=["ev-3"],
        ttl_seconds=600,
    )
    response = client.get("/v1/feed", headers=auth_headers(settings, 1))
    assert response.status_code == 200, response.text
    assert [item["event_id"] for item in response.json()["items"]] == ["ev-1", "ev-4"]


def test_without_the_redis_pointer_postgres_serves_the_same_feed(
    client: TestClient,
    settings: Settings,
    published: str,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    from_redis = client.get("/v1/feed", headers=auth_headers(settings, 1)).json()
    redis_client.delete(redis_keys.current_run())
    response = client.get("/v1/feed", headers=auth_headers(settings, 1))
    assert response.status_code == 200, response.text
    from_postgres = response.json()
    assert from_redis["source"] == "redis"
    assert from_postgres["source"] == "postgres"
    assert from_postgres["run_id"] == published
    # The same cards; each response has ids of its own (every showing is an impression).
    assert _without_ids(from_postgres["items"]) == _without_ids(from_redis["items"])


def test_redis_down_still_serves_the_feed_from_postgres(
    settings: Settings, engine: sa.Engine, published: str
) -> None:
    down = settings.model_copy(update={"redis_url": CLOSED_REDIS})
    with app_client(down) as client:
        response = client.get("/v1/feed", headers=auth_headers(settings, 2))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "postgres"
    assert [item["event_id"] for item in body["items"]] == USER_LISTS[2]


def test_before_any_run_the_feed_is_empty_not_an_error(
    client: TestClient, settings: Settings
) -> None:
    response = client.get("/v1/feed", headers=auth_headers(settings, 1))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": 1,
        "run_id": None,
        "source": "none",
        "cold_start": True,
        "items": [],
        "next_cursor": None,
    }


def test_both_stores_down_is_a_503_problem(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": CLOSED_REDIS, "database_url": CLOSED_POSTGRES})
    with app_client(down) as client:
        response = client.get("/v1/feed", headers=auth_headers(settings, 1))
    body = _assert_problem(response, 503)
    assert response.headers["retry-after"].isdigit()
    assert "127.0.0.1" not in response.text and "psycopg" not in response.text
    assert body["type"] != "about:blank"


# --- authentication ------------------------------------------------------------------------


def test_missing_token_is_a_401_problem_with_a_challenge(client: TestClient) -> None:
    response = client.get("/v1/feed")
    body = _assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Missing bearer token" in body["detail"]
    assert body["title"] == "Unauthorized"


def test_non_bearer_scheme_counts_as_missing(client: TestClient) -> None:
    response = client.get("/v1/feed", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    _assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (
            lambda s: issue_token(s.model_copy(update={"jwt_secret": SecretStr("x" * 40)}), 1),
            "signature",
        ),
        (
            lambda s: issue_token(s, 1, ttl_seconds=60, now=datetime.now(UTC) - timedelta(hours=2)),
            "expired",
        ),
        (lambda s: "definitely.not.ajwt", "malformed"),
    ],
    ids=["bad-signature", "expired", "malformed"],
)
def test_invalid_token_is_a_401_problem_saying_why(
    client: TestClient, settings: Settings, make_token: Any, reason: str
) -> None:
    response = client.get("/v1/feed", headers={"Authorization": f"Bearer {make_token(settings)}"})
    body = _assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert reason in body["detail"]


# --- validation and other errors -----------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "abc", "201", "-1"])
def test_bad_limit_is_a_422_problem_naming_the_field(
    client: TestClient, settings: Settings, limit: str
) -> None:
    response = client.get("/v1/feed", params={"limit": limit}, headers=auth_headers(settings, 1))
    body = _assert_problem(response, 422)
    assert body["detail"].startswith("query.limit: ")
    assert [error["field"] for error in body["errors"]] == ["query.limit"]
    assert all("input" not in error for error in body["errors"])


def test_unknown_route_is_a_404_problem(client: TestClient) -> None:
    _assert_problem(client.get("/v1/nothing-here"), 404)


def test_unexpected_error_is_a_500_problem_without_internals(settings: Settings) -> None:
    origin = "https://app.godo.example"
    app = create_app(settings.model_copy(update={"cors_origins": [origin]}))

    def boom() -> None:
        raise RuntimeError("connection string postgresql://secret@db leaked")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"Origin": origin})
    body = _assert_problem(response, 500)
    assert "secret" not in response.text
    assert body["detail"] == "An unexpected error occurred."
    # Answered inside the middleware stack: hardened and readable by the browser app.
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["access-control-allow-origin"] == origin


def test_startup_without_store_urls_fails_clearly() -> None:
    app = create_app(Settings(database_url=None, redis_url=None, _env_file=None))  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match="DATABASE_URL and REDIS_URL"), TestClient(app):
        pass


# --- paging, pinning and revalidation -------------------------------------------------------


def _ids(body: dict[str, object]) -> list[str]:
    return [item["event_id"] for item in body["items"]]  # type: ignore[attr-defined, index]


def test_pages_walk_the_list_once_and_end(
    client: TestClient, settings: Settings, published: str
) -> None:
    first = client.get("/v1/feed", params={"limit": 2}, headers=auth_headers(settings, 1)).json()
    assert _ids(first) == USER_LISTS[1][:2] and first["next_cursor"]
    second = client.get(
        "/v1/feed",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=auth_headers(settings, 1),
    ).json()
    assert _ids(second) == USER_LISTS[1][2:] and second["next_cursor"] is None


def test_a_cursor_stays_on_its_run_while_a_new_run_is_published(
    client: TestClient,
    settings: Settings,
    published: str,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    first = client.get("/v1/feed", params={"limit": 1}, headers=auth_headers(settings, 1)).json()
    publish_run(
        engine=engine,
        redis_client=redis_client,
        keys=redis_keys,
        run_id="run-api-test-2",
        model="test-model",
        recommendations=pl.DataFrame({"user_id": [1, 1], **_ranked(["ev-5", "ev-2"])}),
        fallback=pl.DataFrame(_ranked(["ev-1"])),
        ttl_seconds=600,
    )
    rest = client.get(
        "/v1/feed", params={"cursor": first["next_cursor"]}, headers=auth_headers(settings, 1)
    ).json()
    assert rest["run_id"] == published and _ids(rest) == USER_LISTS[1][1:]
    fresh = client.get("/v1/feed", headers=auth_headers(settings, 1)).json()
    assert fresh["run_id"] == "run-api-test-2" and _ids(fresh) == ["ev-5", "ev-2"]

    # The same holds on the Postgres path, once Redis's copy of the old run has expired.
    redis_client.delete(*redis_client.keys(redis_keys.run_pattern(published)))
    again = client.get(
        "/v1/feed", params={"cursor": first["next_cursor"]}, headers=auth_headers(settings, 1)
    ).json()
    assert again["source"] == "postgres" and _ids(again) == USER_LISTS[1][1:]


def test_swipes_between_pages_do_not_shift_the_next_page(
    client: TestClient, settings: Settings, published: str, engine: sa.Engine
) -> None:
    """On the Postgres path too: swipes after the run was published leave the feed."""
    first = client.get("/v1/feed", params={"limit": 1}, headers=auth_headers(settings, 1)).json()
    with engine.begin() as conn:
        copy_frame(conn, "users", pl.DataFrame({"id": [1], "display_name": ["A."], "metro": ["x"]}))
        copy_frame(
            conn,
            "swipes",
            pl.DataFrame(
                {
                    "id": [str(uuid.uuid4())],
                    "user_id": [1],
                    "event_id": [USER_LISTS[1][0]],
                    "action": ["like"],
                }
            ),
        )
    settings_pg = settings.model_copy(update={"redis_url": CLOSED_REDIS})
    with app_client(settings_pg) as pg_client:
        rest = pg_client.get(
            "/v1/feed", params={"cursor": first["next_cursor"]}, headers=auth_headers(settings, 1)
        ).json()
        whole = pg_client.get("/v1/feed", headers=auth_headers(settings, 1)).json()
    assert _ids(rest) == USER_LISTS[1][1:]
    assert USER_LISTS[1][0] not in _ids(whole)


def test_a_cursor_for_a_dropped_run_is_410(
    client: TestClient, settings: Settings, published: str
) -> None:
    gone = cursors.encode(cursors.Cursor(run_id="run-long-gone", after_rank=1), settings.cursor_key)
    response = client.get("/v1/feed", params={"cursor": gone}, headers=auth_headers(settings, 1))
    assert response.status_code == 410
    assert response.headers["content-type"].startswith(PROBLEM)


def test_a_made_up_cursor_is_a_422_naming_it(
    client: TestClient, settings: Settings, published: str
) -> None:
    key = settings.cursor_key
    for bad in ("not-base64!", cursors.encode(cursors.Cursor("r", 1), key)[:-3], "e30"):
        response = client.get("/v1/feed", params={"cursor": bad}, headers=auth_headers(settings, 1))
        assert response.status_code == 422, bad
        assert "cursor" in response.text


def test_etag_revalidates_and_changes_with_the_list(
    client: TestClient,
    settings: Settings,
    published: str,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    first = client.get("/v1/feed", headers=auth_headers(settings, 1))
    etag = first.headers["etag"]
    assert first.headers["cache-control"].startswith("private")
    same = client.get("/v1/feed", headers={**auth_headers(settings, 1), "If-None-Match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    redis_client.sadd(redis_keys.seen(published, 1), USER_LISTS[1][0])
    changed = client.get("/v1/feed", headers={**auth_headers(settings, 1), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    other = client.get("/v1/feed", headers={**auth_headers(settings, 2), "If-None-Match": etag})
    assert other.status_code == 200  # another user's list never matches


# --- hydrated cards: local time, distance, live drops, friends ------------------------------

# Harbour Hall's coordinates, and a point about 1.6 km north of it.
HALL = (38.7223, -9.1393)
NEARBY = (38.7369, -9.1427)


def _execute(engine: sa.Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _add_users(engine: sa.Engine, *user_ids: int) -> None:
    names = [f"User {user_id}" for user_id in user_ids]
    frame = pl.DataFrame(
        {"id": list(user_ids), "display_name": names, "metro": ["lisbon"] * len(user_ids)}
    )
    with engine.begin() as conn:
        copy_frame(conn, "users", frame)


def _befriend(engine: sa.Engine, a: int, b: int, *, mutual: bool = True) -> None:
    """One row per direction, as the app stores a friendship; `mutual=False` writes a's only."""
    pairs = [(a, b), (b, a)] if mutual else [(a, b)]
    for user_id, friend_id in pairs:
        _execute(
            engine,
            "INSERT INTO friendships (user_id, friend_id) VALUES (:u, :f)",
            u=user_id,
            f=friend_id,
        )


def _rsvp(engine: sa.Engine, user_id: int, event_id: str, status: str, visibility: str) -> None:
    _execute(
        engine,
        "INSERT INTO event_attendance (user_id, event_id, status, visibility) "
        "VALUES (:u, :e, :s, :v)",
        u=user_id,
        e=event_id,
        s=status,
        v=visibility,
    )


def _read(settings: Settings, path: str, user_id: int, **params: Any) -> dict[str, Any]:
    """The feed as `path` ("redis" or "postgres") serves it: Postgres when Redis is down."""
    if path == "postgres":
        settings = settings.model_copy(update={"redis_url": CLOSED_REDIS})
    with app_client(settings) as client:
        response = client.get("/v1/feed", params=params, headers=auth_headers(settings, user_id))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["source"] == path
    return body


def _by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["event_id"]: item for item in body["items"]}


@pytest.mark.parametrize("path", ["redis", "postgres"])
def test_cards_carry_local_time_venue_price_and_distance(
    settings: Settings, engine: sa.Engine, published: str, path: str
) -> None:
    _execute(
        engine,
        "UPDATE venues SET address = 'Rua do Cais 1', latitude = :lat, longitude = :lon",
        lat=HALL[0],
        lon=HALL[1],
    )
    _execute(
        engine,
        "UPDATE events SET timezone = 'America/New_York', currency = 'USD', "
        "price_max_cents = 2500 WHERE id = 'ev-1'",
    )
    body = _read(settings, path, 1, lat=NEARBY[0], lon=NEARBY[1])
    card = _by_id(body)["ev-1"]
    assert card["name"] == "Jazz on the Roof" and card["category"] == "music"
    assert card["timezone"] == "America/New_York"
    start_utc = datetime.fromisoformat(card["start_utc"])
    start_local = datetime.fromisoformat(card["start_local"])
    assert start_local == start_utc  # the same instant...
    offset = start_local.utcoffset()
    assert offset in (timedelta(hours=-5), timedelta(hours=-4))  # ...shown in New York time
    assert offset == start_utc.astimezone(ZoneInfo("America/New_York")).utcoffset()
    assert card["start_local"].endswith(("-05:00", "-04:00"))
    assert card["venue"] == {
        "name": "Harbour Hall",
        "address": "Rua do Cais 1",
        "latitude": HALL[0],
        "longitude": HALL[1],
    }
    assert card["price"] == {
        "is_free": False,
        "price_min_cents": 1500,
        "price_max_cents": 2500,
        "currency": "USD",
    }
    assert card["image_url"] is None
    assert 1.4 < card["distance_km"] < 1.8
    # An event without a timezone is shown in UTC rather than guessed.
    untimed = _by_id(body)["ev-3"]
    assert untimed["timezone"] == "UTC" and untimed["start_local"].endswith(("Z", "+00:00"))


def test_distance_is_null_without_a_position(
    client: TestClient, settings: Settings, engine: sa.Engine, published: str
) -> None:
    _execute(
        engine, "UPDATE venues SET latitude = :lat, longitude = :lon", lat=HALL[0], lon=HALL[1]
    )
    body = client.get("/v1/feed", headers=auth_headers(settings, 1)).json()
    assert {item["distance_km"] for item in body["items"]} == {None}


@pytest.mark.parametrize(
    ("params", "missing"),
    [({"lat": "38.7"}, "lon"), ({"lon": "-9.1"}, "lat")],
    ids=["lat-without-lon", "lon-without-lat"],
)
def test_half_a_position_is_a_422_naming_the_missing_one(
    client: TestClient, settings: Settings, published: str, params: dict[str, str], missing: str
) -> None:
    response = client.get("/v1/feed", params=params, headers=auth_headers(settings, 1))
    body = _assert_problem(response, 422)
    assert [error["field"] for error in body["errors"]] == [f"query.{missing}"]
    assert body["detail"].startswith(f"query.{missing}: ")


@pytest.mark.parametrize(("lat", "lon"), [("91", "0"), ("0", "-181"), ("nan", "0")])
def test_a_position_off_the_globe_is_a_422(
    client: TestClient, settings: Settings, published: str, lat: str, lon: str
) -> None:
    response = client.get(
        "/v1/feed", params={"lat": lat, "lon": lon}, headers=auth_headers(settings, 1)
    )
    _assert_problem(response, 422)


@pytest.mark.parametrize("path", ["redis", "postgres"])
def test_cancelled_and_full_events_leave_the_feed_at_read_time(
    settings: Settings, engine: sa.Engine, published: str, path: str
) -> None:
    """Published before the change, dropped after it: the run itself is never rewritten."""
    _add_users(engine, 7, 8)
    # Cancelled upstream but still listed as active (a known source quirk): status decides.
    _execute(engine, "UPDATE events SET status = 'canceled' WHERE id = 'ev-3'")
    # Full: a private RSVP is invisible to others but still takes the last seat.
    _execute(engine, "UPDATE events SET capacity = 1 WHERE id = 'ev-4'")
    _rsvp(engine, 7, "ev-4", "going", "private")
    # Room left: one of two seats taken, and an "interested" takes none.
    _execute(engine, "UPDATE events SET capacity = 2 WHERE id = 'ev-1'")
    _rsvp(engine, 7, "ev-1", "going", "public")
    _rsvp(engine, 8, "ev-1", "interested", "public")
    # Withdrawn: no longer active.
    _execute(engine, "UPDATE events SET is_active = false WHERE id = 'ev-5'")

    assert _ids(_read(settings, path, 1)) == ["ev-1"]
    assert _ids(_read(settings, path, 2)) == ["ev-2"]


@pytest.mark.parametrize("path", ["redis", "postgres"])
def test_drops_keep_pages_and_the_cursor_exact(
    settings: Settings, engine: sa.Engine, published: str, path: str
) -> None:
    _execute(engine, "UPDATE events SET status = 'canceled' WHERE id = 'ev-3'")
    first = _read(settings, path, 1, limit=1)
    assert _ids(first) == ["ev-1"] and first["next_cursor"]
    second = _read(settings, path, 1, limit=1, cursor=first["next_cursor"])
    assert _ids(second) == ["ev-4"] and second["next_cursor"] is None

    # Nothing showable after the page: no cursor pointing at an empty page.
    _execute(engine, "UPDATE events SET is_active = false WHERE id = 'ev-4'")
    only = _read(settings, path, 1, limit=1)
    assert _ids(only) == ["ev-1"] and only["next_cursor"] is None


@pytest.mark.parametrize("path", ["redis", "postgres"])
def test_friends_going_counts_only_friends_who_share_their_rsvp(
    settings: Settings, engine: sa.Engine, published: str, path: str
) -> None:
    _add_users(engine, 1, 2, 3, 4, 5, 6)
    _befriend(engine, 1, 2)
    _befriend(engine, 1, 3)
    _befriend(engine, 1, 4, mutual=False)  # 1 lists 4, 4 never accepted
    _befriend(engine, 6, 2)
    _befriend(engine, 6, 3)
    _rsvp(engine, 2, "ev-1", "going", "friends")  # counted for 1 and 6
    _rsvp(engine, 3, "ev-1", "going", "private")  # never counted, for anyone
    _rsvp(engine, 4, "ev-1", "going", "public")  # not a mutual friend of 1
    _rsvp(engine, 5, "ev-1", "going", "public")  # nobody's friend
    _rsvp(engine, 2, "ev-4", "interested", "public")  # not going
    _rsvp(engine, 3, "ev-4", "going", "private")

    mine = _by_id(_read(settings, path, 1))
    assert mine["ev-1"]["friends_going"] == 1
    assert mine["ev-4"]["friends_going"] == 0
    assert mine["ev-3"]["friends_going"] == 0
    # User 6 has no list of their own (the fallback holds ev-1) and is 3's friend too.
    theirs = _by_id(_read(settings, path, 6))
    assert theirs["ev-1"]["friends_going"] == 1
    # User 3's own private RSVP is theirs; it never makes 2's count either.
    _befriend(engine, 2, 3)
    _rsvp(engine, 3, "ev-2", "going", "private")
    assert _by_id(_read(settings, path, 2))["ev-2"]["friends_going"] == 0


def test_405_lists_every_method_of_the_path(client: TestClient, settings: Settings) -> None:
    """Two handlers serve one resource (PUT and DELETE): `Allow` must name both."""
    response = client.post("/v1/events/ev-1/attendance", headers=auth_headers(settings, 1))
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"PUT", "DELETE"}
