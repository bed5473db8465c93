"""Property-based: whatever a client sends to any route, never a 5xx, and a 4xx stores nothing.

Hypothesis draws each route's inputs from what broke the API before (issue 14) mixed with
valid values, so requests get past the first check and reach the stores: text with NUL bytes
and unpaired surrogates, times at the ends of Python's range with ±14 h offsets, integers past
BIGINT, hand-made cursors, wrong JSON types, bodies over `max_body_bytes` (with and without a
`Content-Length`). Requests go to the real app over real Postgres and Redis; after each one,
the row count of every table is compared with before when the answer is a 4xx.

Schemathesis (`test_api_schemathesis.py`) checks the documented schema; it found none of
these, because it draws from the schema, which says nothing of NUL or BIGINT. The profile is
`api-ci` (derandomized, a dozen examples a route); `GODO_HYPOTHESIS_PROFILE=api-deep` fuzzes
harder.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from httpx import Response
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.integration.conftest import (
    INPUT_EVENTS,
    INPUT_OTHER_USER,
    INPUT_RUN_ID,
    INPUT_USER,
    table_counts,
)

PROFILE = hypothesis_settings.get_profile(os.environ.get("GODO_HYPOTHESIS_PROFILE", "api-ci"))
PROBLEM = "application/problem+json"
MAX_BODY_BYTES = 1024 * 1024  # the default `Settings.max_body_bytes`
NO_BODY = object()

# --- the nasty inputs --------------------------------------------------------------------------

_NUL_TEXT = st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=8), st.text(max_size=8))
_SURROGATE_TEXT = st.builds(
    lambda a, s, b: f"{a}{s}{b}",
    st.text(max_size=8),
    st.characters(categories=["Cs"]),
    st.text(max_size=8),
)
NASTY_TEXT = st.one_of(
    st.text(max_size=24),
    _NUL_TEXT,
    _SURROGATE_TEXT,
    st.text(min_size=200, max_size=1500),
    st.sampled_from(["", " ", "%00", "\\u0000", "ev-1\n", "../../etc", "null", "0"]),
)


def text_or(*valid: str) -> st.SearchStrategy[str]:
    """Valid values half the time (so requests reach the stores), nasty text otherwise."""
    return st.one_of(st.sampled_from(valid), NASTY_TEXT)


EXTREME_INT = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2, 2**15, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]),
)
_OFFSETS = ["+14:00", "-14:00", "+00:00", "Z", "+05:45", ""]
EXTREME_TIME = st.one_of(
    st.builds(
        lambda d, offset: d.isoformat() + offset,
        st.datetimes(),  # naive, year 1 to 9999
        st.sampled_from(_OFFSETS),
    ),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "1999-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "2200-01-01T00:00:01Z",
            "0",
            "1e308",
            "not a time",
        ]
    ),
)
JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), EXTREME_INT, st.floats(allow_nan=False), NASTY_TEXT
)
SOME_EVENT = text_or(*INPUT_EVENTS)


def _b64(document: object) -> str:
    raw = json.dumps(document).encode()  # ASCII: surrogates are escaped
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FEED_CURSOR = st.one_of(
    NASTY_TEXT,
    st.builds(
        lambda r, k: _b64({"r": r, "k": k}),
        text_or(INPUT_RUN_ID),
        st.one_of(EXTREME_INT, JSON_SCALAR),
    ),
)
CALENDAR_CURSOR = st.one_of(
    NASTY_TEXT, st.builds(lambda t, e: _b64({"t": t, "e": e}), EXTREME_TIME, SOME_EVENT)
)


# --- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request: `path` is quoted here (surrogates included), the body sent as JSON text."""

    method: str
    path: str
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = NO_BODY


def _segment(value: object) -> str:
    return quote(str(value), safe="", errors="surrogatepass")


def _drop_missing(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value is not NO_BODY}


def send(client: TestClient, call: Call) -> Response:
    query = urlencode(_drop_missing(call.query), doseq=True, errors="surrogatepass")
    url = call.path + (f"?{query}" if query else "")
    if call.body is NO_BODY:
        return client.request(call.method, url)
    content = json.dumps(call.body).encode()  # `\ud800` stays an escape, as a client sends it
    return client.request(
        call.method, url, content=content, headers={"Content-Type": "application/json"}
    )


def _calendar_query() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "from": EXTREME_TIME,
            "to": EXTREME_TIME,
            "status": st.lists(text_or("going", "interested", "went"), max_size=2),
            "limit": EXTREME_INT,
            "cursor": CALENDAR_CURSOR,
        },
    )


def _position() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "lat": st.one_of(st.floats(), NASTY_TEXT),
            "lon": st.one_of(st.floats(), NASTY_TEXT),
        },
    )


_SWIPE = st.fixed_dictionaries(
    {
        "client_id": text_or("c-1", "c-2", "c-3"),
        "event_id": SOME_EVENT,
        "direction": text_or("like", "pass", "superlike"),
        "ts": EXTREME_TIME,
    },
    optional={"impression_id": st.one_of(st.none(), NASTY_TEXT)},
)
_ATTENDANCE = st.fixed_dictionaries(
    {"status": text_or("going", "interested", "not_going", "went")},
    optional={
        "visibility": text_or("public", "friends", "private"),
        "notes": st.one_of(st.none(), NASTY_TEXT, JSON_SCALAR),
        "impression_id": st.one_of(st.none(), NASTY_TEXT),
    },
)
_PUSH_TOKEN = st.one_of(NASTY_TEXT, st.builds(lambda t: f"ExponentPushToken[{t}]", NASTY_TEXT))
_USER_ID = st.one_of(EXTREME_INT, st.sampled_from([INPUT_OTHER_USER, INPUT_USER]), NASTY_TEXT)
_TOKEN = st.one_of(NASTY_TEXT, st.text(alphabet="abcdefXYZ0123456789-_.", max_size=80))

# Per route: the strategy of its requests. Every route with an input is here.
ROUTES: dict[str, st.SearchStrategy[Call]] = {
    "GET /v1/feed": st.builds(
        lambda q, p: Call("GET", "/v1/feed", {**q, **p}),
        st.fixed_dictionaries({}, optional={"limit": EXTREME_INT, "cursor": FEED_CURSOR}),
        _position(),
    ),
    "POST /v1/swipes": st.builds(
        lambda swipes: Call("POST", "/v1/swipes", body={"swipes": swipes}),
        st.one_of(st.lists(_SWIPE, max_size=3), JSON_SCALAR),
    ),
    "GET /v1/events/{event_id}": st.builds(
        lambda e, p: Call("GET", f"/v1/events/{_segment(e)}", p), SOME_EVENT, _position()
    ),
    "PUT /v1/events/{event_id}/attendance": st.builds(
        lambda e, b: Call("PUT", f"/v1/events/{_segment(e)}/attendance", body=b),
        SOME_EVENT,
        st.one_of(_ATTENDANCE, JSON_SCALAR),
    ),
    "DELETE /v1/events/{event_id}/attendance": st.builds(
        lambda e: Call("DELETE", f"/v1/events/{_segment(e)}/attendance"), SOME_EVENT
    ),
    "GET /v1/me/calendar": st.builds(
        lambda q: Call("GET", "/v1/me/calendar", q), _calendar_query()
    ),
    "GET /v1/users/{user_id}/calendar": st.builds(
        lambda u, q: Call("GET", f"/v1/users/{_segment(u)}/calendar", q),
        _USER_ID,
        _calendar_query(),
    ),
    "GET /v1/me/calendar.ics": st.builds(
        lambda t: Call("GET", "/v1/me/calendar.ics", {"token": t}), _TOKEN
    ),
    "POST /v1/me/devices": st.builds(
        lambda t, p: Call("POST", "/v1/me/devices", body={"expo_push_token": t, "platform": p}),
        _PUSH_TOKEN,
        text_or("ios", "android"),
    ),
    "DELETE /v1/me/devices/{token}": st.builds(
        lambda t: Call("DELETE", f"/v1/me/devices/{_segment(t)}"), _PUSH_TOKEN
    ),
    "PUT /v1/me/notification-preferences": st.builds(
        lambda b: Call("PUT", "/v1/me/notification-preferences", body=b),
        st.fixed_dictionaries(
            {},
            optional={
                "reminder_lead_minutes": st.one_of(EXTREME_INT, JSON_SCALAR),
                "quiet_start": text_or("22:00", "07:30:00"),
                "quiet_end": text_or("07:00"),
                "timezone": text_or("Europe/Lisbon", "UTC"),
            },
        ),
    ),
    "POST /v1/invites": st.builds(
        lambda local, domain: Call("POST", "/v1/invites", body={"email": f"{local}@{domain}"}),
        text_or("rui", "ana.b"),
        text_or("example.com"),
    ),
    "GET /v1/invites/{token}": st.builds(
        lambda t: Call("GET", f"/v1/invites/{_segment(t)}"), _TOKEN
    ),
    "GET /v1/email/unsubscribe": st.builds(
        lambda t: Call("GET", "/v1/email/unsubscribe", {"token": t}), _TOKEN
    ),
    "POST /v1/email/unsubscribe": st.builds(
        lambda t: Call("POST", "/v1/email/unsubscribe", {"token": t}), _TOKEN
    ),
    "POST /v1/friends/{user_id}": st.builds(
        lambda u: Call("POST", f"/v1/friends/{_segment(u)}"), _USER_ID
    ),
    "POST /v1/friends/{user_id}/accept": st.builds(
        lambda u: Call("POST", f"/v1/friends/{_segment(u)}/accept"), _USER_ID
    ),
    "DELETE /v1/friends/{user_id}": st.builds(
        lambda u: Call("DELETE", f"/v1/friends/{_segment(u)}"), _USER_ID
    ),
}
BODY_ROUTES = {
    "POST /v1/swipes": "/v1/swipes",
    "PUT /v1/events/{event_id}/attendance": f"/v1/events/{INPUT_EVENTS[0]}/attendance",
    "POST /v1/me/devices": "/v1/me/devices",
    "PUT /v1/me/notification-preferences": "/v1/me/notification-preferences",
    "POST /v1/invites": "/v1/invites",
}


@pytest.fixture
def client(input_client: TestClient) -> Iterator[TestClient]:
    yield input_client


def assert_no_5xx_and_nothing_stored_on_4xx(
    client: TestClient, engine: sa.Engine, call: Call | None = None, **request: Any
) -> Response:
    before = table_counts(engine)
    response = send(client, call) if call is not None else client.request(**request)
    assert response.status_code < 500, response.text
    if 400 <= response.status_code < 500:
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["status"] == response.status_code and problem["detail"]
        if response.status_code == 422:
            assert all(error["field"] for error in problem["errors"])  # each names its field
        assert table_counts(engine) == before, "a refused request stored something"
    return response


@pytest.mark.parametrize("route", list(ROUTES))
def test_no_input_gets_a_5xx_or_stores_on_a_4xx(
    client: TestClient, engine: sa.Engine, route: str
) -> None:
    @hypothesis_settings(PROFILE)
    @given(call=ROUTES[route])
    def check(call: Call) -> None:
        assert_no_5xx_and_nothing_stored_on_4xx(client, engine, call)

    check()


@pytest.mark.parametrize("route", list(BODY_ROUTES))
def test_a_body_over_the_limit_is_a_413_however_it_is_sent(
    client: TestClient, engine: sa.Engine, route: str
) -> None:
    method, path = route.split(" ")[0], BODY_ROUTES[route]

    @hypothesis_settings(PROFILE, max_examples=min(PROFILE.max_examples, 4))
    @given(
        size=st.integers(min_value=MAX_BODY_BYTES + 1, max_value=3 * MAX_BODY_BYTES),
        chunked=st.booleans(),
    )
    def check(size: int, chunked: bool) -> None:
        body = b'{"x": "' + b"x" * (size - 9) + b'"}'
        assert len(body) == size
        content: bytes | Iterator[bytes] = (
            iter([body[i : i + 65536] for i in range(0, size, 65536)]) if chunked else body
        )
        response = assert_no_5xx_and_nothing_stored_on_4xx(
            client,
            engine,
            method=method,
            url=path,
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413

    check()
