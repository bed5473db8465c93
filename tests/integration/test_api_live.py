"""`/v1/live` against real Postgres and Redis, with two API instances as two processes.

Clients connect to instance A; every write goes through instance B (or `publish_run`), so an
event only arrives if it really went through Redis. Each receive has a timeout, so a missing
event fails the test instead of hanging it. "Nothing was delivered" is proven without sleeping:
after the change that must stay silent, a change that must be delivered is made, and the
client's very next message has to be that one.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import polars as pl
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from core.settings import Settings
from core.tokens import issue_token
from store.calendar import set_attendance
from store.db import copy_frame
from store.keys import RedisKeys
from store.live_events import (
    USER_STREAM_MAX_EVENTS,
    publish_feed_refreshed,
    publish_rsvp_change,
)
from store.publish import publish_run
from tests.conftest import assert_documented_live_message
from tests.integration.conftest import app_client, auth_headers

VIEWER, FRIEND, STRANGER, OTHER_FRIEND = 1, 2, 3, 4
EVENTS = ["ev-1", "ev-2", "ev-3"]
RECEIVE_TIMEOUT_SECONDS = 5.0
CLOSED_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def world(engine: sa.Engine) -> None:
    """Four users and three events. VIEWER and FRIEND are mutual friends; so are FRIEND and
    OTHER_FRIEND. STRANGER only has a one-sided row towards FRIEND, which must not count."""
    now = datetime.now(UTC).replace(microsecond=0)
    with engine.begin() as conn:
        copy_frame(
            conn,
            "users",
            pl.DataFrame(
                {
                    "id": [VIEWER, FRIEND, STRANGER, OTHER_FRIEND],
                    "display_name": ["Viewer", "Friend", "Stranger", "Other"],
                    "metro": ["lisbon"] * 4,
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
                    "capacity": [100] * 3,
                    "is_free": [True] * 3,
                    "status": ["live"] * 3,
                    "is_active": [True] * 3,
                },
                schema_overrides={"start_utc": pl.Datetime("us", "UTC")},
            ),
        )
        conn.execute(
            sa.text("INSERT INTO friendships (user_id, friend_id) VALUES (:a, :b)"),
            [
                {"a": VIEWER, "b": FRIEND},
                {"a": FRIEND, "b": VIEWER},
                {"a": FRIEND, "b": OTHER_FRIEND},
                {"a": OTHER_FRIEND, "b": FRIEND},
                {"a": STRANGER, "b": FRIEND},  # one-sided: not a friendship
            ],
        )


@pytest.fixture
def apps(api_settings: Settings, world: None) -> Iterator[tuple[TestClient, TestClient]]:
    """Instance A (holds the WebSockets) and instance B (takes the writes)."""
    with app_client(api_settings) as a, app_client(api_settings) as b:
        yield a, b


def _connect(
    client: TestClient, settings: Settings, user_id: int, **params: str
) -> WebSocketTestSession:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return client.websocket_connect(
        f"/v1/live?{query}" if query else "/v1/live", headers=auth_headers(settings, user_id)
    )


def _receive(ws: WebSocketTestSession, timeout: float = RECEIVE_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The next server message, or a failure after `timeout` (the session's own blocks)."""

    async def receive() -> Any:
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    try:
        message = ws.portal.call(receive)
    except TimeoutError:
        pytest.fail(f"no live message within {timeout} s")
    ws._raise_on_close(message)
    decoded: dict[str, Any] = json.loads(message["text"])
    assert_documented_live_message(decoded)  # every message, as docs/asyncapi.yaml has it
    return decoded


def _hello(ws: WebSocketTestSession, user_id: int) -> dict[str, Any]:
    """The first message: once it arrives the connection is subscribed (nothing is missed)."""
    hello = _receive(ws)
    assert hello["type"] == "hello" and hello["data"] == {"user_id": user_id}, hello
    return hello


def _rsvp(client: TestClient, settings: Settings, user_id: int, event_id: str, **body: str) -> None:
    response = client.put(
        f"/v1/events/{event_id}/attendance", json=body, headers=auth_headers(settings, user_id)
    )
    assert response.status_code == 200, response.text


def _unrsvp(client: TestClient, settings: Settings, user_id: int, event_id: str) -> None:
    response = client.delete(
        f"/v1/events/{event_id}/attendance", headers=auth_headers(settings, user_id)
    )
    assert response.status_code == 204, response.text


def _publish(engine: sa.Engine, redis_client: redis.Redis, keys: RedisKeys, run_id: str) -> None:
    publish_run(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        run_id=run_id,
        model="test-model",
        recommendations=pl.DataFrame(
            {
                "user_id": [VIEWER],
                "rank": [1],
                "event_id": ["ev-1"],
                "score": [0.9],
                "reason": ["als"],
            }
        ),
        fallback=pl.DataFrame(
            {"rank": [1], "event_id": ["ev-1"], "score": [1.0], "reason": ["pop"]}
        ),
        ttl_seconds=600,
    )


def test_a_friends_rsvp_made_through_b_reaches_a_client_of_a(
    apps: tuple[TestClient, TestClient], api_settings: Settings
) -> None:
    a, b = apps
    with _connect(a, api_settings, VIEWER) as ws:
        _hello(ws, VIEWER)
        _rsvp(b, api_settings, FRIEND, "ev-1", status="going", visibility="friends", notes="secret")
        event = _receive(ws)
    assert event["type"] == "friend_rsvp"
    data = event["data"]
    assert data.pop("updated_at")
    assert data == {
        "user_id": FRIEND,
        "event_id": "ev-1",
        "status": "going",
        "visibility": "friends",
    }
    assert "secret" not in json.dumps(event)  # notes never leave their owner


def test_private_rsvps_and_strangers_get_nothing(
    apps: tuple[TestClient, TestClient],
    api_settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    a, b = apps
    with (
        _connect(a, api_settings, VIEWER) as viewer,
        _connect(a, api_settings, STRANGER) as stranger,
    ):
        _hello(viewer, VIEWER)
        _hello(stranger, STRANGER)

        # Private, then private again, then deleted while private: never a message to anyone.
        _rsvp(b, api_settings, FRIEND, "ev-1", status="going", visibility="private")
        _rsvp(b, api_settings, FRIEND, "ev-1", status="interested", visibility="private")
        _unrsvp(b, api_settings, FRIEND, "ev-1")
        # A public answer goes to mutual friends only: the viewer's next message is this one.
        _rsvp(b, api_settings, FRIEND, "ev-2", status="going", visibility="public")
        first = _receive(viewer)
        assert (first["type"], first["data"]["event_id"]) == ("friend_rsvp", "ev-2")

        # Public -> private: a neutral removal, to those who could see it, and no status.
        _rsvp(b, api_settings, FRIEND, "ev-2", status="not_going", visibility="private")
        removed = _receive(viewer)
        assert removed["type"] == "friend_rsvp_removed"
        assert removed["data"] == {"user_id": FRIEND, "event_id": "ev-2"}

        # The stranger's first message is the broadcast: none of the above reached them.
        _publish(engine, redis_client, redis_keys, "run-live-1")
        assert _receive(stranger)["type"] == "feed_refreshed"
        assert _receive(viewer)["type"] == "feed_refreshed"

    # Only the viewer's and OTHER_FRIEND's streams exist (OTHER_FRIEND is FRIEND's friend).
    keys = {
        key.decode() for key in redis_client.scan_iter(match=f"{redis_keys.prefix}:live:user:*")
    }
    streams = {redis_keys.live_user_stream(VIEWER), redis_keys.live_user_stream(4)}
    assert keys == streams | {redis_keys.stream_added(stream) for stream in streams}
    for key in keys:  # each stream and its count of entries added expire together
        assert 0 < redis_client.ttl(key) <= 7 * 24 * 3600


def test_feed_refreshed_reaches_clients_of_both_instances_after_publish_run(
    apps: tuple[TestClient, TestClient],
    api_settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    a, b = apps
    with (
        _connect(a, api_settings, VIEWER) as on_a,
        _connect(b, api_settings, STRANGER) as on_b,
    ):
        _hello(on_a, VIEWER)
        _hello(on_b, STRANGER)
        _publish(engine, redis_client, redis_keys, "run-live-2")
        for ws in (on_a, on_b):
            event = _receive(ws)
            assert (event["type"], event["data"]) == ("feed_refreshed", {"run_id": "run-live-2"})


def test_a_reconnect_replays_missed_events_exactly_once_then_goes_live(
    apps: tuple[TestClient, TestClient],
    api_settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    a, b = apps
    with _connect(a, api_settings, VIEWER) as ws:
        _hello(ws, VIEWER)
        _rsvp(b, api_settings, FRIEND, "ev-1", status="going", visibility="friends")
        seen = _receive(ws)
    assert seen["data"]["event_id"] == "ev-1"

    # Offline: two answers and a new run.
    _rsvp(b, api_settings, FRIEND, "ev-2", status="interested", visibility="public")
    _publish(engine, redis_client, redis_keys, "run-live-3")
    _rsvp(b, api_settings, FRIEND, "ev-3", status="going", visibility="friends")

    # Back, through the query-string token a browser would use.
    token = issue_token(api_settings, VIEWER)
    with a.websocket_connect(f"/v1/live?token={token}&last_event_id={seen['id']}") as ws:
        _hello(ws, VIEWER)
        replayed = [_receive(ws) for _ in range(3)]
        assert [
            (e["type"], e["data"].get("event_id") or e["data"].get("run_id")) for e in replayed
        ] == [
            ("friend_rsvp", "ev-2"),
            ("feed_refreshed", "run-live-3"),
            ("friend_rsvp", "ev-3"),
        ]
        assert len({e["id"] for e in [seen, *replayed]}) == 4
        # Then live, with nothing replayed twice: the next message is the new one.
        _rsvp(b, api_settings, FRIEND, "ev-1", status="went", visibility="friends")
        live = _receive(ws)
        assert (live["type"], live["data"]["status"]) == ("friend_rsvp", "went")
        last_id = live["id"]

    # Resuming from the newest id replays nothing: the first message after hello is new.
    with _connect(a, api_settings, VIEWER, last_event_id=last_id) as ws:
        assert _hello(ws, VIEWER)["id"] == last_id
        _unrsvp(b, api_settings, FRIEND, "ev-1")
        assert _receive(ws)["type"] == "friend_rsvp_removed"


def test_a_resume_from_trimmed_events_is_told_to_resync(
    apps: tuple[TestClient, TestClient],
    api_settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    a, b = apps
    with _connect(a, api_settings, VIEWER) as ws:
        _hello(ws, VIEWER)
        _rsvp(b, api_settings, FRIEND, "ev-1", status="going", visibility="friends")
        first = _receive(ws)
    # More answers than the stream keeps (written by the store: the API would rate-limit us).
    stored = set_attendance(
        engine, user_id=FRIEND, event_id="ev-2", status="going", visibility="friends", notes=None
    )
    for _ in range(USER_STREAM_MAX_EVENTS + 200):
        publish_rsvp_change(
            engine,
            redis_client,
            redis_keys,
            actor_id=FRIEND,
            event_id="ev-2",
            before=None,
            after=stored,
        )
    assert redis_client.xlen(redis_keys.live_user_stream(VIEWER)) < USER_STREAM_MAX_EVENTS + 201
    with _connect(a, api_settings, VIEWER, last_event_id=first["id"]) as ws:
        _hello(ws, VIEWER)
        assert _receive(ws)["type"] == "resync"
        assert _receive(ws)["data"]["event_id"] == "ev-2"  # then what the stream still holds


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param({}, id="missing"),
        pytest.param({"headers": {"Authorization": "Bearer not-a-jwt"}}, id="malformed"),
        pytest.param({"path": "?token=not-a-jwt"}, id="malformed-query"),
        pytest.param({"expired": True}, id="expired"),
    ],
)
def test_a_bad_token_is_closed_with_4401(
    apps: tuple[TestClient, TestClient], api_settings: Settings, auth: dict[str, Any]
) -> None:
    a, _ = apps
    headers = auth.get("headers", {})
    if auth.get("expired"):
        past = datetime.now(UTC) - timedelta(hours=2)
        headers = {"Authorization": f"Bearer {issue_token(api_settings, VIEWER, now=past)}"}
    with a.websocket_connect("/v1/live" + auth.get("path", ""), headers=headers) as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            _receive(ws)
    assert closed.value.code == 4401
    assert closed.value.reason


def test_a_malformed_last_event_id_is_closed_with_4400(
    apps: tuple[TestClient, TestClient], api_settings: Settings
) -> None:
    a, _ = apps
    with _connect(a, api_settings, VIEWER, last_event_id="yesterday") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            _receive(ws)
    assert closed.value.code == 4400


def test_writes_succeed_and_publishing_is_skipped_when_redis_is_down(
    engine: sa.Engine,
    world: None,
    redis_keys: RedisKeys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Best effort: the write has committed; a dead Redis costs the push and a warning only."""
    dead = redis.Redis.from_url(CLOSED_REDIS, socket_connect_timeout=0.2)
    stored = set_attendance(
        engine, user_id=FRIEND, event_id="ev-1", status="going", visibility="public", notes=None
    )
    with caplog.at_level(logging.WARNING, logger="store.live_events"):
        told = publish_rsvp_change(
            engine, dead, redis_keys, actor_id=FRIEND, event_id="ev-1", before=None, after=stored
        )
        assert told == 0
        assert publish_feed_refreshed(dead, redis_keys, "run-x") is False
    assert len([r for r in caplog.records if "not sent" in r.getMessage()]) == 2


def test_connections_past_the_per_user_cap_are_closed_with_1008(
    api_settings: Settings, world: None
) -> None:
    capped = api_settings.model_copy(update={"live_max_per_user": 2})
    with app_client(capped) as client, contextlib.ExitStack() as open_sockets:
        for _ in range(2):
            _hello(open_sockets.enter_context(_connect(client, capped, VIEWER)), VIEWER)
        with _connect(client, capped, VIEWER) as third:
            with pytest.raises(WebSocketDisconnect) as closed:
                _receive(third)
        assert closed.value.code == 1008 and "user" in closed.value.reason
        # another user is not held back, and a closed socket frees its slot
        with _connect(client, capped, FRIEND) as friend:
            _hello(friend, FRIEND)
        open_sockets.close()
        with _connect(client, capped, VIEWER) as again:
            _hello(again, VIEWER)


def test_connections_past_the_per_address_cap_are_closed_beforeauth_headers(
    api_settings: Settings, world: None
) -> None:
    capped = api_settings.model_copy(update={"live_max_per_address": 2})
    with app_client(capped) as client, contextlib.ExitStack() as open_sockets:
        for user in (VIEWER, FRIEND):
            _hello(open_sockets.enter_context(_connect(client, capped, user)), user)
        with client.websocket_connect("/v1/live") as anonymous:  # no token: refused first
            with pytest.raises(WebSocketDisconnect) as closed:
                _receive(anonymous)
        assert closed.value.code == 1008 and "address" in closed.value.reason
