"""Bad input that used to get a 500 (issue 14, section 2): each is now a 4xx problem naming
the field, and nothing is stored. Real app, real Postgres and Redis; one test per case.

The property-based sweep over every route is `test_api_input_properties.py`; these pin the
cases found by hand, so a regression names itself.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from httpx import Response

from tests.integration.conftest import INPUT_EVENTS, INPUT_RUN_ID, table_counts

PROBLEM = "application/problem+json"
NUL = "\x00"
EARLIEST_EDGE = "0001-01-01T00:00:00+14:00"
LATEST_EDGE = "9999-12-31T23:59:59-14:00"
TOO_BIG_FOR_BIGINT = 2**63


@pytest.fixture
def client(input_client: TestClient, engine: sa.Engine) -> Iterator[TestClient]:
    """The app as user 1; after the test, no table has gained or lost a row."""
    before = table_counts(engine)
    yield input_client
    assert table_counts(engine) == before


def _assert_refused(response: Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert field in response.json()["detail"]


def _swipe(**overrides: Any) -> dict[str, Any]:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    swipe = {
        "client_id": str(uuid.uuid4()),
        "event_id": INPUT_EVENTS[0],
        "direction": "like",
        "ts": ts.isoformat(),
    }
    return {"swipes": [{**swipe, **overrides}]}


def _b64(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


# --- NUL bytes and lone surrogates ---------------------------------------------------------


def test_nul_in_attendance_notes_is_a_422(client: TestClient) -> None:
    response = client.put(
        f"/v1/events/{INPUT_EVENTS[0]}/attendance", json={"status": "going", "notes": f"a{NUL}b"}
    )
    _assert_refused(response, 422, "body.notes")


def test_a_lone_surrogate_in_attendance_notes_is_a_422(client: TestClient) -> None:
    response = client.put(
        f"/v1/events/{INPUT_EVENTS[0]}/attendance",
        content=b'{"status": "going", "notes": "a\\ud800b"}',
        headers={"Content-Type": "application/json"},
    )
    _assert_refused(response, 422, "body.notes")


@pytest.mark.parametrize("field", ["client_id", "event_id", "impression_id"])
def test_nul_in_a_swipe_is_a_422(client: TestClient, field: str) -> None:
    response = client.post("/v1/swipes", json=_swipe(**{field: f"ev{NUL}1"}))
    _assert_refused(response, 422, f"body.swipes.0.{field}")


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_nul_in_the_attendance_path_is_a_422(client: TestClient, method: str) -> None:
    body = {"status": "going"} if method == "PUT" else None
    response = client.request(method, "/v1/events/ev%001/attendance", json=body)
    _assert_refused(response, 422, "path.event_id")


def test_nul_in_the_event_path_is_a_422(client: TestClient) -> None:
    _assert_refused(client.get("/v1/events/ev%001"), 422, "path.event_id")


def test_nul_in_a_push_token_is_a_422(client: TestClient) -> None:
    response = client.post(
        "/v1/me/devices",
        json={"expo_push_token": f"ExponentPushToken[ab{NUL}cd]", "platform": "ios"},
    )
    _assert_refused(response, 422, "body.expo_push_token")


def test_nul_in_a_push_token_path_is_a_422(client: TestClient) -> None:
    response = client.delete("/v1/me/devices/ExponentPushToken%5Bab%00cd%5D")
    _assert_refused(response, 422, "path.token")


def test_nul_in_an_invited_address_is_a_422(client: TestClient) -> None:
    response = client.post("/v1/invites", json={"email": f"rui{NUL}@example.com"})
    _assert_refused(response, 422, "body.email")


def test_nul_in_a_calendar_cursor_is_a_422(client: TestClient) -> None:
    cursor = _b64({"t": "2030-01-01T00:00:00+00:00", "e": f"ev{NUL}1"})
    _assert_refused(client.get("/v1/me/calendar", params={"cursor": cursor}), 422, "query.cursor")


def test_nul_in_a_feed_cursor_is_a_422(client: TestClient, engine: sa.Engine) -> None:
    cursor = _b64({"r": f"{INPUT_RUN_ID}{NUL}", "k": 1})
    _assert_refused(client.get("/v1/feed", params={"cursor": cursor}), 422, "query.cursor")


# --- times -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/me/calendar", "/v1/users/2/calendar"])
@pytest.mark.parametrize(
    ("parameter", "value"),
    [("from", EARLIEST_EDGE), ("from", LATEST_EDGE), ("to", LATEST_EDGE), ("to", EARLIEST_EDGE)],
)
def test_calendar_range_at_the_edges_of_time_is_a_422(
    client: TestClient, path: str, parameter: str, value: str
) -> None:
    response = client.get(path, params={parameter: value})
    _assert_refused(response, 422, f"query.{parameter}")


@pytest.mark.parametrize("edge", [EARLIEST_EDGE, LATEST_EDGE])
def test_a_calendar_cursor_at_the_edges_of_time_is_a_422(client: TestClient, edge: str) -> None:
    cursor = _b64({"t": edge, "e": INPUT_EVENTS[0]})
    _assert_refused(client.get("/v1/me/calendar", params={"cursor": cursor}), 422, "query.cursor")


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+00:00", "1999-12-31T23:59:59+00:00"])
def test_a_swipe_from_before_2000_is_a_422(client: TestClient, ts: str) -> None:
    _assert_refused(client.post("/v1/swipes", json=_swipe(ts=ts)), 422, "body.swipes.0.ts")


def test_a_swipe_at_the_end_of_time_is_a_422(client: TestClient) -> None:
    _assert_refused(client.post("/v1/swipes", json=_swipe(ts=LATEST_EDGE)), 422, "body.swipes.0.ts")


# --- integers --------------------------------------------------------------------------------


def test_a_user_id_beyond_bigint_is_a_422(client: TestClient) -> None:
    response = client.get(f"/v1/users/{TOO_BIG_FOR_BIGINT}/calendar")
    _assert_refused(response, 422, "path.user_id")


@pytest.mark.parametrize("rank", [TOO_BIG_FOR_BIGINT, 2**31])
def test_a_feed_cursor_beyond_any_rank_is_a_422(client: TestClient, rank: int) -> None:
    cursor = _b64({"r": INPUT_RUN_ID, "k": rank})
    _assert_refused(client.get("/v1/feed", params={"cursor": cursor}), 422, "query.cursor")


# --- body size -------------------------------------------------------------------------------


def _huge_notes(size: int) -> bytes:
    return b'{"status": "going", "notes": "' + b"x" * size + b'"}'


def test_a_body_over_the_limit_is_a_413_before_it_is_read(client: TestClient) -> None:
    body = _huge_notes(10 * 1024 * 1024)
    response = client.put(
        f"/v1/events/{INPUT_EVENTS[0]}/attendance",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    _assert_refused(response, 413, "body")
    assert response.json()["status"] == 413


def test_a_chunked_body_over_the_limit_is_a_413(client: TestClient) -> None:
    chunk = b"x" * 65536

    def chunks() -> Iterator[bytes]:
        yield b'{"status": "going", "notes": "'
        for _ in range(32):  # 2 MiB: twice the default limit, and no Content-Length
            yield chunk
        yield b'"}'

    response = client.put(
        f"/v1/events/{INPUT_EVENTS[0]}/attendance",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    _assert_refused(response, 413, "body")


def test_a_body_under_the_limit_is_still_read(client: TestClient) -> None:
    """The limit refuses only what is over it: a body of a few KiB reaches validation."""
    response = client.put(
        f"/v1/events/{INPUT_EVENTS[0]}/attendance",
        content=_huge_notes(4096),
        headers={"Content-Type": "application/json"},
    )
    _assert_refused(response, 422, "body.notes")  # over MAX_NOTES_CHARS, under the byte limit
