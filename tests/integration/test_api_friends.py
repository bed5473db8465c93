"""Friend requests and friendships end to end: real Postgres and Redis, HTTP, two users' tokens.

A friendship is both `friendships` rows, so every test that changes one checks the rows
themselves, not only the answers. The privacy test goes through the calendar router: a pending
request must not widen what the requester sees, an accepted one must, and a removed one must
stop doing so at once (which only holds if the cached calendar pages are dropped).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from core.settings import Settings
from serving.app import create_app
from store import friends as friends_store
from store.keys import RedisKeys
from store.schema import events, friendships, users
from tests.integration.conftest import app_client, auth_headers

CLOSED_REDIS = "redis://127.0.0.1:1/0"
PROBLEM = "application/problem+json"
ANA, BEN, CAT = 1, 2, 3
UNKNOWN = 999
NAMES = {ANA: "Ana", BEN: "Ben", CAT: "Cat"}
NOW = datetime.now(UTC).replace(microsecond=0)
T = TypeVar("T")


@pytest.fixture
def seeded(engine: sa.Engine) -> sa.Engine:
    """Three users and two upcoming events; nobody is friends with anybody yet."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(users),
            [{"id": u, "display_name": name, "metro": "lisbon"} for u, name in NAMES.items()],
        )
        conn.execute(
            sa.insert(events),
            [
                {
                    "id": event_id,
                    "name": f"Event {event_id}",
                    "metro": "lisbon",
                    "category": "music",
                    "start_utc": NOW + timedelta(days=days),
                    "is_free": True,
                    "status": "live",
                    "is_active": True,
                }
                for event_id, days in (("ev-1", 1), ("ev-2", 2))
            ],
        )
    return engine


@pytest.fixture
def app_data(seeded: sa.Engine) -> None:
    """`client` starts on the `seeded` world."""


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body


def _fields(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


def _ask(client: TestClient, settings: Settings, caller: int, other: int) -> Any:
    return client.post(f"/v1/friends/{other}", headers=auth_headers(settings, caller))


def _accept(client: TestClient, settings: Settings, caller: int, other: int) -> Any:
    return client.post(f"/v1/friends/{other}/accept", headers=auth_headers(settings, caller))


def _remove(client: TestClient, settings: Settings, caller: int, other: int) -> Any:
    return client.delete(f"/v1/friends/{other}", headers=auth_headers(settings, caller))


def _lists(client: TestClient, settings: Settings, caller: int) -> dict[str, Any]:
    response = client.get("/v1/me/friends", headers=auth_headers(settings, caller))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _ids(items: list[dict[str, Any]]) -> list[int]:
    return [item["user_id"] for item in items]


def _rows(engine: sa.Engine) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(friendships rows, friend_requests rows) as (from, to) pairs."""
    with engine.connect() as conn:
        friends = conn.execute(sa.text("SELECT user_id, friend_id FROM friendships")).all()
        requests = conn.execute(
            sa.text("SELECT from_user_id, to_user_id FROM friend_requests")
        ).all()
    return {(a, b) for a, b in friends}, {(a, b) for a, b in requests}


def _befriend(client: TestClient, settings: Settings, a: int, b: int) -> None:
    assert _ask(client, settings, a, b).status_code == 201
    assert _accept(client, settings, b, a).json() == {"state": "friends"}


# --- request and accept --------------------------------------------------------------------


def test_request_then_accept(client: TestClient, settings: Settings, seeded: sa.Engine) -> None:
    asked = _ask(client, settings, ANA, BEN)
    assert asked.status_code == 201, asked.text
    assert asked.json() == {"state": "requested"}
    assert _rows(seeded) == (set(), {(ANA, BEN)})  # a request is not half a friendship

    ana, ben = _lists(client, settings, ANA), _lists(client, settings, BEN)
    assert (ana["friends"], ana["incoming"], _ids(ana["outgoing"])) == ([], [], [BEN])
    assert (ben["friends"], _ids(ben["incoming"]), ben["outgoing"]) == ([], [ANA], [])
    incoming = ben["incoming"][0]
    assert incoming["display_name"] == "Ana"
    assert datetime.fromisoformat(incoming["requested_at"]) >= NOW - timedelta(minutes=1)
    assert ana["outgoing"][0]["display_name"] == "Ben"
    # Only the two of them see the request.
    assert _lists(client, settings, CAT) == {"friends": [], "incoming": [], "outgoing": []}

    accepted = _accept(client, settings, BEN, ANA)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"state": "friends"}
    assert _rows(seeded) == ({(ANA, BEN), (BEN, ANA)}, set())

    ana, ben = _lists(client, settings, ANA), _lists(client, settings, BEN)
    assert (_ids(ana["friends"]), ana["incoming"], ana["outgoing"]) == ([BEN], [], [])
    assert (_ids(ben["friends"]), ben["incoming"], ben["outgoing"]) == ([ANA], [], [])
    assert ana["friends"][0]["display_name"] == "Ben"
    assert datetime.fromisoformat(ana["friends"][0]["since"]) >= NOW - timedelta(minutes=1)


def test_friends_are_listed_by_name(client: TestClient, settings: Settings) -> None:
    _befriend(client, settings, ANA, CAT)
    _befriend(client, settings, BEN, ANA)
    assert _ids(_lists(client, settings, ANA)["friends"]) == [BEN, CAT]


def test_asking_someone_who_asked_you_accepts(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    assert _ask(client, settings, ANA, BEN).status_code == 201
    crossed = _ask(client, settings, BEN, ANA)
    assert crossed.status_code == 200, crossed.text
    assert crossed.json() == {"state": "friends"}
    assert _rows(seeded) == ({(ANA, BEN), (BEN, ANA)}, set())


def test_requests_and_accepts_are_idempotent(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    assert _ask(client, settings, ANA, BEN).status_code == 201
    again = _ask(client, settings, ANA, BEN)
    assert (again.status_code, again.json()) == (200, {"state": "requested"})
    assert _rows(seeded) == (set(), {(ANA, BEN)})

    assert _accept(client, settings, BEN, ANA).status_code == 200
    for response in (
        _accept(client, settings, BEN, ANA),  # a retried accept
        _ask(client, settings, ANA, BEN),  # asking a friend
        _ask(client, settings, BEN, ANA),
    ):
        assert (response.status_code, response.json()) == (200, {"state": "friends"})
    assert _rows(seeded) == ({(ANA, BEN), (BEN, ANA)}, set())


def test_a_one_sided_row_is_not_a_friendship(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    """A row left by older code grants nothing: listing, asking and accepting ignore it."""
    with seeded.begin() as conn:
        conn.execute(sa.insert(friendships).values(user_id=ANA, friend_id=BEN))
    assert _lists(client, settings, ANA)["friends"] == []
    assert _ask(client, settings, ANA, BEN).json() == {"state": "requested"}
    assert _accept(client, settings, BEN, ANA).json() == {"state": "friends"}
    assert _rows(seeded) == ({(ANA, BEN), (BEN, ANA)}, set())


# --- decline, cancel, remove ---------------------------------------------------------------


@pytest.mark.parametrize("caller", [BEN, ANA], ids=["decline", "cancel"])
def test_delete_drops_a_pending_request_either_way(
    client: TestClient, settings: Settings, seeded: sa.Engine, caller: int
) -> None:
    assert _ask(client, settings, ANA, BEN).status_code == 201
    other = ANA if caller == BEN else BEN
    response = _remove(client, settings, caller, other)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert _rows(seeded) == (set(), set())
    assert _lists(client, settings, ANA)["outgoing"] == []
    assert _lists(client, settings, BEN)["incoming"] == []
    _assert_problem(_accept(client, settings, BEN, ANA), 404)  # nothing left to accept


def test_remove_deletes_both_rows_and_is_idempotent(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    _befriend(client, settings, ANA, BEN)
    _befriend(client, settings, ANA, CAT)
    for _ in range(2):
        response = _remove(client, settings, BEN, ANA)  # either side may end it
        assert response.status_code == 204, response.text
    assert _rows(seeded) == ({(ANA, CAT), (CAT, ANA)}, set())
    assert _ids(_lists(client, settings, ANA)["friends"]) == [CAT]
    assert _lists(client, settings, BEN)["friends"] == []
    # Nothing between them, or a user that does not exist: still 204.
    assert _remove(client, settings, BEN, CAT).status_code == 204
    assert _remove(client, settings, BEN, UNKNOWN).status_code == 204
    # Friends again only through a new request.
    assert _ask(client, settings, BEN, ANA).json() == {"state": "requested"}


# --- errors --------------------------------------------------------------------------------


def test_unknown_users_and_missing_requests_are_404(
    client: TestClient, settings: Settings, seeded: sa.Engine
) -> None:
    assert str(UNKNOWN) in _assert_problem(_ask(client, settings, ANA, UNKNOWN), 404)["detail"]
    _assert_problem(_accept(client, settings, ANA, BEN), 404)  # Ben never asked
    _assert_problem(_accept(client, settings, ANA, UNKNOWN), 404)
    assert _ask(client, settings, ANA, BEN).status_code == 201
    _assert_problem(_accept(client, settings, ANA, BEN), 404)  # the requester cannot accept
    assert _rows(seeded) == (set(), {(ANA, BEN)})


def test_a_caller_without_a_user_row_cannot_ask(client: TestClient, settings: Settings) -> None:
    _assert_problem(_ask(client, settings, UNKNOWN, ANA), 404)
    assert _lists(client, settings, UNKNOWN) == {"friends": [], "incoming": [], "outgoing": []}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/v1/friends/{ANA}"),
        ("POST", f"/v1/friends/{ANA}/accept"),
        ("DELETE", f"/v1/friends/{ANA}"),
        ("POST", "/v1/friends/0"),
        ("POST", "/v1/friends/someone"),
        ("POST", "/v1/friends/0/accept"),
        ("DELETE", "/v1/friends/-1"),
        ("POST", f"/v1/friends/{2**63}"),  # beyond BIGINT
    ],
)
def test_yourself_and_bad_ids_are_422_naming_user_id(
    client: TestClient, settings: Settings, seeded: sa.Engine, method: str, path: str
) -> None:
    response = client.request(method, path, headers=auth_headers(settings, ANA))
    body = _assert_problem(response, 422)
    assert _fields(body) == ["path.user_id"]
    assert "path.user_id" in body["detail"]
    assert _rows(seeded) == (set(), set())


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/me/friends"),
        ("POST", f"/v1/friends/{BEN}"),
        ("POST", f"/v1/friends/{BEN}/accept"),
        ("DELETE", f"/v1/friends/{BEN}"),
    ],
)
def test_friends_need_a_bearer_token(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    _assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- what friends may see ------------------------------------------------------------------


def _calendar_ids(client: TestClient, settings: Settings, viewer: int, owner: int) -> list[str]:
    response = client.get(f"/v1/users/{owner}/calendar", headers=auth_headers(settings, viewer))
    assert response.status_code == 200, response.text
    return [item["event_id"] for item in response.json()["items"]]


def test_only_an_accepted_friendship_opens_friends_only_entries(
    client: TestClient, settings: Settings, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    for event_id, visibility in (("ev-1", "friends"), ("ev-2", "public")):
        response = client.put(
            f"/v1/events/{event_id}/attendance",
            json={"status": "going", "visibility": visibility},
            headers=auth_headers(settings, BEN),
        )
        assert response.status_code == 200, response.text
    # Read twice each time, so the second read comes from the cache.
    for _ in range(2):
        assert _calendar_ids(client, settings, ANA, BEN) == ["ev-2"]

    assert _ask(client, settings, ANA, BEN).status_code == 201
    for _ in range(2):
        assert _calendar_ids(client, settings, ANA, BEN) == ["ev-2"]  # pending: nothing more

    def versions() -> list[int]:
        return [int(redis_client.get(redis_keys.calendar_version(u)) or 0) for u in (ANA, BEN)]

    before = versions()
    assert _accept(client, settings, BEN, ANA).status_code == 200
    assert versions() == [before[0] + 1, before[1] + 1]
    for _ in range(2):
        assert _calendar_ids(client, settings, ANA, BEN) == ["ev-1", "ev-2"]
    assert _calendar_ids(client, settings, CAT, BEN) == ["ev-2"]  # still a stranger

    assert _remove(client, settings, ANA, BEN).status_code == 204
    assert versions() == [before[0] + 2, before[1] + 2]
    for _ in range(2):
        assert _calendar_ids(client, settings, ANA, BEN) == ["ev-2"]
    # Removing nothing changes nothing, so no cache is dropped for it.
    assert _remove(client, settings, ANA, BEN).status_code == 204
    assert versions() == [before[0] + 2, before[1] + 2]


def test_redis_down_still_changes_friendships(settings: Settings, seeded: sa.Engine) -> None:
    down = settings.model_copy(update={"redis_url": CLOSED_REDIS})
    with app_client(down) as client:
        assert _ask(client, settings, ANA, BEN).status_code == 201
        assert _accept(client, settings, BEN, ANA).status_code == 200
        assert _rows(seeded) == ({(ANA, BEN), (BEN, ANA)}, set())
        assert _remove(client, settings, ANA, BEN).status_code == 204
    assert _rows(seeded) == (set(), set())


# --- concurrency ---------------------------------------------------------------------------


def _at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run the calls in threads released together, so their transactions overlap."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_accepts_all_succeed(seeded: sa.Engine) -> None:
    for _ in range(5):
        friends_store.send_request(seeded, from_user_id=ANA, to_user_id=BEN)
        outcomes = _at_once(
            [
                lambda: friends_store.accept_request(seeded, user_id=BEN, from_user_id=ANA)
                for _ in range(4)
            ]
        )
        assert {o.state for o in outcomes} == {"friends"}
        assert sum(o.friendship_changed for o in outcomes) == 1
        assert _rows(seeded) == ({(ANA, BEN), (BEN, ANA)}, set())
        assert friends_store.remove(seeded, user_id=ANA, other_user_id=BEN)


def test_crossing_requests_make_friends(seeded: sa.Engine) -> None:
    """Both ask at the same moment: one request is made, the other accepts it."""
    for _ in range(5):
        outcomes = _at_once(
            [
                lambda: friends_store.send_request(seeded, from_user_id=ANA, to_user_id=BEN),
                lambda: friends_store.send_request(seeded, from_user_id=BEN, to_user_id=ANA),
            ]
        )
        assert sorted(o.state for o in outcomes) == ["friends", "requested"]
        assert _rows(seeded) == ({(ANA, BEN), (BEN, ANA)}, set())
        assert friends_store.remove(seeded, user_id=BEN, other_user_id=ANA)


# --- schema --------------------------------------------------------------------------------


def test_openapi_documents_the_models_with_examples(settings: Settings) -> None:
    schema = create_app(settings).openapi()
    components = schema["components"]["schemas"]
    assert components["FriendsOut"]["examples"][0]["friends"][0]["display_name"] == "Ana"
    assert {"state": "friends"} in components["FriendStateOut"]["examples"]
    post = schema["paths"]["/v1/friends/{user_id}"]["post"]
    assert {"200", "201", "401", "404", "422"} <= set(post["responses"])
    assert post["tags"] == ["friends"]
