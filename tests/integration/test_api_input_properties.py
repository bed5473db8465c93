"""Property-based: whatever a client sends to any route, never a 5xx, and a 4xx stores nothing.

Hypothesis draws each route's inputs from what broke the API before (issue 14) mixed with
valid values, so requests get past the first check and reach the stores: text with NUL bytes
and unpaired surrogates, times at the ends of Python's range with ±14 h offsets, integers past
BIGINT, hand-made cursors, wrong JSON types, bodies over `max_body_bytes` (with and without a
`Content-Length`). Requests go to the real app over real Postgres and Redis; after each one,
the row count of every table is compared with before when the answer is a 4xx.

Schemathesis (`test_api_schemathesis.py`) checks the documented schema; it found none of
these, because it draws from the schema, which says nothing of NUL or BIGINT. The profile is
`api-ci` (derandomized, 15 examples a route); `GODO_HYPOTHESIS_PROFILE=api-deep` fuzzes
harder.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
# NUL first: Hypothesis tries a strategy's first branch early, and NUL is what Postgres refuses.
NASTY_TEXT = st.one_of(
    _NUL_TEXT,
    _SURROGATE_TEXT,
    st.text(max_size=24),
    st.text(min_size=200, max_size=1500),
    st.sampled_from(["", " ", "%00", "\\u0000", "ev-1\n", "../../etc", "null", "0"]),
)
EXTREME_INT = st.one_of(
    st.sampled_from([2**63, 2**31, 2**15, 2**63 - 1, 2**64, -(2**63) - 1, 0, -1]),
    st.integers(min_value=-(2**70), max_value=2**70),
)
EXTREME_TIME = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "2200-01-01T00:00:01Z",
            "2026-01-01T00:00:00",  # no timezone
            "0",
            "1e308",
        ]
    ),
    st.builds(
        lambda d, offset: d.isoformat() + offset,
        st.datetimes(),  # naive, year 1 to 9999
        st.sampled_from(["+14:00", "-14:00", "Z", "+05:45", ""]),
    ),
)
JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), EXTREME_INT, st.floats(allow_nan=False), NASTY_TEXT
)
NASTY_INT = st.one_of(EXTREME_INT, NASTY_TEXT)
NASTY_TIME = st.one_of(EXTREME_TIME, NASTY_TEXT)
# In a JSON body a field can also have the wrong type altogether.
BODY_TEXT = st.one_of(NASTY_TEXT, JSON_SCALAR)
BODY_TIME = st.one_of(EXTREME_TIME, JSON_SCALAR)
BODY_INT = st.one_of(EXTREME_INT, JSON_SCALAR)


def _b64(document: object) -> str:
    raw = json.dumps(document).encode()  # ASCII: surrogates are escaped
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FEED_CURSOR = st.one_of(
    st.builds(
        lambda r, k: _b64({"r": r, "k": k}),
        st.one_of(st.just(INPUT_RUN_ID), NASTY_TEXT),
        st.one_of(st.just(1), EXTREME_INT, JSON_SCALAR),
    ),
    NASTY_TEXT,
)
CALENDAR_CURSOR = st.one_of(
    st.builds(
        lambda t, e: _b64({"t": t, "e": e}),
        st.one_of(st.just("2030-01-01T00:00:00+00:00"), EXTREME_TIME),
        st.one_of(st.just(INPUT_EVENTS[0]), NASTY_TEXT),
    ),
    NASTY_TEXT,
)


def _now_minus_a_minute() -> str:
    return (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


# Valid values, so that a request with one bad input gets past every other check.
MISSING = st.just(NO_BODY)
AN_EVENT = st.sampled_from(INPUT_EVENTS)
A_USER = st.sampled_from([INPUT_OTHER_USER, INPUT_USER])
A_TOKEN = st.text(alphabet="abcdefXYZ0123456789-_.", min_size=1, max_size=80)
A_PUSH_TOKEN = st.builds(
    lambda t: f"ExponentPushToken[{t}]", st.text(alphabet="abcXYZ0123456789", min_size=1)
)
NASTY_PUSH_TOKEN = st.one_of(st.builds(lambda t: f"ExponentPushToken[{t}]", NASTY_TEXT), BODY_TEXT)


# --- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request: `path` is quoted here (surrogates included), the body sent as JSON text."""

    method: str
    path: str
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = NO_BODY


@dataclass(frozen=True)
class Input:
    """One input of a route: what a valid request sends, and what a hostile one may."""

    valid: st.SearchStrategy[Any]
    nasty: st.SearchStrategy[Any]


@dataclass(frozen=True)
class Route:
    """A route's inputs, and how a request is built from one value of each."""

    build: Callable[[dict[str, Any]], Call]
    inputs: dict[str, Input]


@st.composite
def requests_to(draw: st.DrawFn, route: Route) -> Call:
    """A request to `route` with one input (or none) hostile and the others valid: one bad
    input at a time is what reaches deepest, since any other bad one would be refused first."""
    names = list(route.inputs)
    hostile = draw(st.sampled_from([*names, None]))
    values = {
        name: draw(spec.nasty if name == hostile else spec.valid)
        for name, spec in route.inputs.items()
    }
    return route.build(values)


def _segment(value: object) -> str:
    return quote(str(value), safe="", errors="surrogatepass")


def _present(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value is not NO_BODY}


def send(client: TestClient, call: Call) -> Response:
    query = urlencode(_present(call.query), doseq=True, errors="surrogatepass")
    url = call.path + (f"?{query}" if query else "")
    if call.body is NO_BODY:
        return client.request(call.method, url)
    content = json.dumps(call.body).encode()  # `\ud800` stays an escape, as a client sends it
    return client.request(
        call.method, url, content=content, headers={"Content-Type": "application/json"}
    )


_POSITION = {
    "lat": Input(st.one_of(MISSING, st.just(38.72)), st.one_of(st.floats(), NASTY_TEXT)),
    "lon": Input(st.one_of(MISSING, st.just(-9.14)), st.one_of(st.floats(), NASTY_TEXT)),
}
_CALENDAR_QUERY = {
    "from": Input(st.one_of(MISSING, st.just("2020-01-01T00:00:00Z")), NASTY_TIME),
    "to": Input(MISSING, NASTY_TIME),
    "status": Input(st.one_of(MISSING, st.just(["going", "interested"])), st.lists(NASTY_TEXT)),
    "limit": Input(st.one_of(MISSING, st.integers(1, 200)), NASTY_INT),
    "cursor": Input(MISSING, CALENDAR_CURSOR),
}


def _query(method: str, path: str, names: set[str]) -> Callable[[dict[str, Any]], Call]:
    return lambda v: Call(method, path, {k: v[k] for k in names})


# Every route that takes an input; the only inputs of the others are a bearer token and
# headers, which the schemathesis and protection tests cover.
ROUTES: dict[str, Route] = {
    "GET /v1/feed": Route(
        _query("GET", "/v1/feed", {"limit", "cursor", "lat", "lon"}),
        {
            "limit": Input(st.one_of(MISSING, st.integers(1, 200)), NASTY_INT),
            "cursor": Input(MISSING, FEED_CURSOR),
            **_POSITION,
        },
    ),
    "POST /v1/swipes": Route(
        lambda v: Call(
            "POST",
            "/v1/swipes",
            body={"swipes": [_present(v)]},
        ),
        {
            "client_id": Input(st.uuids().map(str), BODY_TEXT),
            "event_id": Input(AN_EVENT, BODY_TEXT),
            "direction": Input(st.sampled_from(["like", "pass", "superlike"]), BODY_TEXT),
            "ts": Input(st.builds(_now_minus_a_minute), BODY_TIME),
            "impression_id": Input(st.one_of(MISSING, st.none()), BODY_TEXT),
        },
    ),
    "GET /v1/events/{event_id}": Route(
        lambda v: Call(
            "GET", f"/v1/events/{_segment(v['event_id'])}", {"lat": v["lat"], "lon": v["lon"]}
        ),
        {"event_id": Input(AN_EVENT, NASTY_TEXT), **_POSITION},
    ),
    "PUT /v1/events/{event_id}/attendance": Route(
        lambda v: Call(
            "PUT",
            f"/v1/events/{_segment(v['event_id'])}/attendance",
            body=_present({k: v[k] for k in ("status", "visibility", "notes", "impression_id")}),
        ),
        {
            "event_id": Input(AN_EVENT, NASTY_TEXT),
            "status": Input(st.sampled_from(["going", "interested", "went"]), BODY_TEXT),
            "visibility": Input(st.sampled_from(["public", "friends", "private"]), BODY_TEXT),
            "notes": Input(st.one_of(MISSING, st.just("Meet at 8.")), BODY_TEXT),
            "impression_id": Input(MISSING, BODY_TEXT),
        },
    ),
    "DELETE /v1/events/{event_id}/attendance": Route(
        lambda v: Call("DELETE", f"/v1/events/{_segment(v['event_id'])}/attendance"),
        {"event_id": Input(AN_EVENT, NASTY_TEXT)},
    ),
    "GET /v1/me/calendar": Route(
        _query("GET", "/v1/me/calendar", set(_CALENDAR_QUERY)), _CALENDAR_QUERY
    ),
    "GET /v1/users/{user_id}/calendar": Route(
        lambda v: Call(
            "GET",
            f"/v1/users/{_segment(v['user_id'])}/calendar",
            {k: v[k] for k in _CALENDAR_QUERY},
        ),
        {"user_id": Input(A_USER, NASTY_INT), **_CALENDAR_QUERY},
    ),
    "GET /v1/me/calendar.ics": Route(
        _query("GET", "/v1/me/calendar.ics", {"token"}), {"token": Input(A_TOKEN, NASTY_TEXT)}
    ),
    "POST /v1/me/devices": Route(
        lambda v: Call("POST", "/v1/me/devices", body=v),
        {
            "expo_push_token": Input(A_PUSH_TOKEN, NASTY_PUSH_TOKEN),
            "platform": Input(st.sampled_from(["ios", "android"]), BODY_TEXT),
        },
    ),
    "DELETE /v1/me/devices/{token}": Route(
        lambda v: Call("DELETE", f"/v1/me/devices/{_segment(v['token'])}"),
        {"token": Input(A_PUSH_TOKEN, NASTY_PUSH_TOKEN)},
    ),
    "PUT /v1/me/notification-preferences": Route(
        lambda v: Call("PUT", "/v1/me/notification-preferences", body=_present(v)),
        {
            "reminder_lead_minutes": Input(st.integers(0, 10080), BODY_INT),
            "quiet_start": Input(st.just("22:00"), BODY_TIME),
            "quiet_end": Input(st.just("07:30:00"), BODY_TIME),
            "timezone": Input(st.sampled_from(["Europe/Lisbon", "UTC"]), BODY_TEXT),
        },
    ),
    "POST /v1/invites": Route(
        lambda v: Call("POST", "/v1/invites", body={"email": v["email"]}),
        {
            "email": Input(
                st.sampled_from(["rui@example.com", "ana.b@example.org"]),
                st.one_of(st.builds(lambda t: f"{t}@example.com", NASTY_TEXT), BODY_TEXT),
            )
        },
    ),
    "GET /v1/invites/{token}": Route(
        lambda v: Call("GET", f"/v1/invites/{_segment(v['token'])}"),
        {"token": Input(A_TOKEN, NASTY_TEXT)},
    ),
    "GET /v1/email/unsubscribe": Route(
        _query("GET", "/v1/email/unsubscribe", {"token"}), {"token": Input(A_TOKEN, NASTY_TEXT)}
    ),
    "POST /v1/email/unsubscribe": Route(
        _query("POST", "/v1/email/unsubscribe", {"token"}),
        {"token": Input(A_TOKEN, NASTY_TEXT)},
    ),
    "POST /v1/friends/{user_id}": Route(
        lambda v: Call("POST", f"/v1/friends/{_segment(v['user_id'])}"),
        {"user_id": Input(A_USER, NASTY_INT)},
    ),
    "POST /v1/friends/{user_id}/accept": Route(
        lambda v: Call("POST", f"/v1/friends/{_segment(v['user_id'])}/accept"),
        {"user_id": Input(A_USER, NASTY_INT)},
    ),
    "DELETE /v1/friends/{user_id}": Route(
        lambda v: Call("DELETE", f"/v1/friends/{_segment(v['user_id'])}"),
        {"user_id": Input(A_USER, NASTY_INT)},
    ),
}
BODY_ROUTES = {
    "POST /v1/swipes": "/v1/swipes",
    "PUT /v1/events/{event_id}/attendance": f"/v1/events/{INPUT_EVENTS[0]}/attendance",
    "POST /v1/me/devices": "/v1/me/devices",
    "PUT /v1/me/notification-preferences": "/v1/me/notification-preferences",
    "POST /v1/invites": "/v1/invites",
}


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
    input_client: TestClient, engine: sa.Engine, route: str
) -> None:
    @hypothesis_settings(PROFILE)
    @given(call=requests_to(ROUTES[route]))
    def check(call: Call) -> None:
        assert_no_5xx_and_nothing_stored_on_4xx(input_client, engine, call)

    check()


@pytest.mark.parametrize("route", list(BODY_ROUTES))
def test_a_body_over_the_limit_is_a_413_however_it_is_sent(
    input_client: TestClient, engine: sa.Engine, route: str
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
            input_client,
            engine,
            method=method,
            url=path,
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413

    check()
