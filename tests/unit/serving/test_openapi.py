"""The OpenAPI document: every operation summarised, exemplified and honest about its statuses.

Building the schema needs no database: `create_app` opens its pools in the lifespan, which
`app.openapi()` never runs. The checks here are about documentation only; what the endpoints
actually answer is covered by the integration tests.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import pytest
from pydantic import BaseModel

from core.settings import Settings
from serving.app import create_app
from serving.problem_types import BY_CODE
from serving.problems import PROBLEM_MEDIA_TYPE
from serving.routers import calendar, health
from serving.schemas import (
    EventOut,
    FeedItemOut,
    FeedOut,
    FriendOut,
    PriceOut,
    ProblemOut,
    SwipeBatchIn,
    SwipeBatchOut,
    SwipeIn,
    VenueOut,
)

ICS = ("get", "/v1/me/calendar.ics")
INVITE = ("get", "/v1/invites/{token}")
UNSUBSCRIBE_GET = ("get", "/v1/email/unsubscribe")
UNSUBSCRIBE_POST = ("post", "/v1/email/unsubscribe")
# Operations that authenticate by a token in the URL, not a bearer token: no 401.
NO_BEARER = {ICS, INVITE, UNSUBSCRIBE_GET, UNSUBSCRIBE_POST}
HEALTH = ("get", "/health")

# Every status each operation can answer (500 aside, which is never expected). 400 is FastAPI's
# answer to a body that is not JSON at all, 413 to one over `max_body_bytes` (documented where
# a body is expected).
EXPECTED_STATUSES: dict[tuple[str, str], set[int]] = {
    HEALTH: {200, 503},
    ("get", "/v1/feed"): {200, 304, 401, 410, 422, 429, 503},
    ("post", "/v1/swipes"): {200, 400, 401, 404, 413, 422, 429, 503},
    ("get", "/v1/events/{event_id}"): {200, 401, 404, 422, 429, 503},
    ("put", "/v1/events/{event_id}/attendance"): {200, 400, 401, 404, 413, 422, 429, 503},
    ("delete", "/v1/events/{event_id}/attendance"): {204, 401, 422, 429, 503},
    ("get", "/v1/me/calendar"): {200, 401, 422, 429, 503},
    ("get", "/v1/users/{user_id}/calendar"): {200, 401, 404, 422, 429, 503},
    ("post", "/v1/me/calendar-token"): {201, 401, 404, 429, 503},
    ("delete", "/v1/me/calendar-token"): {204, 401, 429, 503},
    ICS: {200, 404, 422, 429, 503},
    ("get", "/v1/me/friends"): {200, 401, 429, 503},
    ("post", "/v1/me/devices"): {200, 201, 400, 401, 404, 413, 422, 429, 503},
    ("delete", "/v1/me/devices/{token}"): {204, 401, 422, 429, 503},
    ("put", "/v1/me/notification-preferences"): {200, 400, 401, 404, 413, 422, 429, 503},
    ("post", "/v1/invites"): {201, 400, 401, 404, 409, 413, 422, 429, 503},
    INVITE: {200, 404, 410, 422, 429, 503},
    UNSUBSCRIBE_GET: {200, 404, 422, 429, 503},
    UNSUBSCRIBE_POST: {200, 404, 422, 429, 503},
    ("post", "/v1/friends/{user_id}"): {200, 201, 401, 404, 422, 429, 503},
    ("post", "/v1/friends/{user_id}/accept"): {200, 401, 404, 422, 429, 503},
    ("delete", "/v1/friends/{user_id}"): {204, 401, 422, 429, 503},
}
# Operations whose documentation is not complete yet: those two checks are expected to fail for
# them; every other check applies. Remove an entry (and add it to `EXPECTED_STATUSES`) once done.
PENDING_DOCUMENTATION: frozenset[tuple[str, str]] = frozenset()

# Every operation's id, as client generators name their methods (`serving.docs.operation_id`).
# A change here renames a method in every generated client: make it on purpose, and say so.
OPERATION_IDS: dict[tuple[str, str], str] = {
    HEALTH: "getHealth",
    ("get", "/v1/feed"): "getFeed",
    ("post", "/v1/swipes"): "postSwipes",
    ("get", "/v1/events/{event_id}"): "getEvent",
    ("put", "/v1/events/{event_id}/attendance"): "putAttendance",
    ("delete", "/v1/events/{event_id}/attendance"): "deleteAttendance",
    ("get", "/v1/me/calendar"): "getMyCalendar",
    ("get", "/v1/users/{user_id}/calendar"): "getUserCalendar",
    ("post", "/v1/me/calendar-token"): "postCalendarToken",
    ("delete", "/v1/me/calendar-token"): "deleteCalendarToken",
    ICS: "getCalendarIcs",
    ("get", "/v1/me/friends"): "getMyFriends",
    ("post", "/v1/friends/{user_id}"): "postFriend",
    ("post", "/v1/friends/{user_id}/accept"): "postFriendAccept",
    ("delete", "/v1/friends/{user_id}"): "deleteFriend",
    ("post", "/v1/me/devices"): "postDevice",
    ("delete", "/v1/me/devices/{token}"): "deleteDevice",
    ("put", "/v1/me/notification-preferences"): "putNotificationPreferences",
    ("post", "/v1/invites"): "postInvite",
    INVITE: "getInvite",
    UNSUBSCRIBE_GET: "getUnsubscribe",
    UNSUBSCRIBE_POST: "postUnsubscribe",
}
# camelCase, led by the HTTP method: `getFeed`, `putNotificationPreferences`.
OPERATION_ID = re.compile(r"(get|post|put|patch|delete)(?:[A-Z][a-z0-9]*)+")

# Models with `examples` in their JSON schema; each example must be a valid instance.
EXAMPLE_MODELS: list[type[BaseModel]] = [
    VenueOut,
    PriceOut,
    FeedItemOut,
    FeedOut,
    FriendOut,
    EventOut,
    SwipeIn,
    SwipeBatchIn,
    SwipeBatchOut,
    calendar.AttendanceIn,
    calendar.AttendanceOut,
    calendar.CalendarEntryOut,
    calendar.CalendarOut,
    calendar.CalendarTokenOut,
    health.HealthOut,
    health.StoreHealthOut,
    health.PublishedRunOut,
]


def _build_openapi() -> dict[str, Any]:
    settings = Settings(database_url=None, redis_url=None, _env_file=None)  # type: ignore[call-arg]
    return create_app(settings).openapi()


OPENAPI = _build_openapi()
OPERATIONS = [
    (method, path, operation)
    for path, item in OPENAPI["paths"].items()
    if path == "/health" or path.startswith("/v1/")
    for method, operation in item.items()
]


def _params(*, pending_fail: bool) -> list[Any]:
    """`OPERATIONS` as test parameters, named `GET /v1/feed`.

    With `pending_fail`, the operations in `PENDING_DOCUMENTATION` are expected to fail (and
    strictly so: once one passes, it must leave the list).
    """
    pending = pytest.mark.xfail(strict=True, reason="listed in PENDING_DOCUMENTATION")
    return [
        pytest.param(
            method,
            path,
            operation,
            id=f"{method.upper()} {path}",
            marks=[pending] if pending_fail and (method, path) in PENDING_DOCUMENTATION else [],
        )
        for method, path, operation in OPERATIONS
    ]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = OPENAPI["components"]["schemas"][
        ref.removeprefix("#/components/schemas/")
    ]
    return resolved


def _has_example(media: dict[str, Any]) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    return bool(_resolve(media.get("schema", {})).get("examples"))


def _media_examples(media: dict[str, Any]) -> list[Any]:
    examples = [example["value"] for example in media.get("examples", {}).values()]
    return examples + ([media["example"]] if "example" in media else [])


def test_every_operation_is_listed() -> None:
    documented = {(method, path) for method, path, _ in OPERATIONS}
    assert documented == set(EXPECTED_STATUSES) | PENDING_DOCUMENTATION


def test_operation_ids_are_the_listed_ones() -> None:
    assert {(method, path): op["operationId"] for method, path, op in OPERATIONS} == OPERATION_IDS


def test_operation_ids_are_unique_camel_case_and_lead_with_the_method() -> None:
    ids = [
        operation["operationId"]
        for item in OPENAPI["paths"].values()
        for operation in item.values()
    ]
    assert len(ids) == len(set(ids))
    for (method, _), operation_id in OPERATION_IDS.items():
        assert OPERATION_ID.fullmatch(operation_id), operation_id
        assert operation_id.startswith(method), operation_id


def test_the_description_lists_every_problem_kind_and_points_to_the_live_protocol() -> None:
    description = OPENAPI["info"]["description"]
    for kind in BY_CODE.values():
        assert f"| `{kind.code}` | `{kind.uri}` | {kind.status} |" in description
    assert "docs/asyncapi.yaml" in description and "docs/problems.md" in description


def test_one_friend_schema_for_the_friends_list_and_the_friends_going() -> None:
    schemas = OPENAPI["components"]["schemas"]
    # Two models of one name would both be renamed to `module__path__Name`.
    assert not [name for name in schemas if "__" in name]
    assert [name for name in schemas if "FriendOut" in name] == ["FriendOut"]
    friend = {"$ref": "#/components/schemas/FriendOut"}
    assert schemas["FriendsOut"]["properties"]["friends"]["items"] == friend
    assert schemas["EventOut"]["properties"]["friends_going"]["items"] == friend
    assert set(schemas["FriendOut"]["required"]) == {"user_id", "display_name", "since"}


@pytest.mark.parametrize(("method", "path", "operation"), _params(pending_fail=False))
def test_summary_description_and_tag(method: str, path: str, operation: dict[str, Any]) -> None:
    assert operation.get("summary")
    assert operation.get("description")
    assert operation.get("tags")


@pytest.mark.parametrize(("method", "path", "operation"), _params(pending_fail=True))
def test_every_status_it_can_answer_is_documented(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    documented = {int(status) for status in operation["responses"]}
    assert documented == EXPECTED_STATUSES[method, path]


@pytest.mark.parametrize(("method", "path", "operation"), _params(pending_fail=True))
def test_v1_operations_document_401_and_429(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    if path == "/health":
        return  # no auth, and exempt from rate limits
    responses = operation["responses"]
    assert "429" in responses, "rate limits apply to all of /v1"
    if (method, path) in NO_BEARER:
        assert "401" not in responses  # these authenticate with a signed token in the URL
    else:
        assert "401" in responses


@pytest.mark.parametrize(("method", "path", "operation"), _params(pending_fail=False))
def test_successful_json_responses_have_examples(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    for status, response in operation["responses"].items():
        if status.startswith("2"):
            for media_type, media in response.get("content", {}).items():
                if "json" in media_type:
                    assert _has_example(media), status


@pytest.mark.parametrize(("method", "path", "operation"), _params(pending_fail=False))
def test_request_bodies_have_examples(method: str, path: str, operation: dict[str, Any]) -> None:
    for media in operation.get("requestBody", {}).get("content", {}).values():
        assert _has_example(media)


@pytest.mark.parametrize(("method", "path", "operation"), _params(pending_fail=False))
def test_error_responses_are_problems_with_examples(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    for status, response in operation["responses"].items():
        if int(status) < 400:
            continue  # 2xx, and the feed's 304 (no body)
        if (method, path) == HEALTH:
            # /health answers 503 with its usual body, so probes can read what failed.
            assert _has_example(response["content"]["application/json"]), status
            continue
        assert list(response["content"]) == [PROBLEM_MEDIA_TYPE], status
        examples = _media_examples(response["content"][PROBLEM_MEDIA_TYPE])
        assert examples, status
        for example in examples:
            problem = ProblemOut.model_validate(example)
            assert problem.status == int(status)
            assert problem.title == HTTPStatus(int(status)).phrase
            assert problem.instance.startswith("/v1/")
            assert (problem.errors is not None) == (status == "422")
            # A registered kind of this status (docs/problems.md), never about:blank.
            assert problem.code in BY_CODE, example
            assert problem.type == BY_CODE[problem.code].uri
            assert BY_CODE[problem.code].status == int(status)


@pytest.mark.parametrize(("method", "path", "operation"), _params(pending_fail=False))
def test_retry_after_and_challenge_headers_are_documented(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    responses = operation["responses"]
    if "401" in responses:
        assert "WWW-Authenticate" in responses["401"]["headers"]
    if "429" in responses:
        assert "Retry-After" in responses["429"]["headers"]
    if "503" in responses and (method, path) != HEALTH:
        assert "Retry-After" in responses["503"]["headers"]


def test_the_feed_documents_its_validators() -> None:
    responses = OPENAPI["paths"]["/v1/feed"]["get"]["responses"]
    assert "ETag" in responses["200"]["headers"]
    assert "ETag" in responses["304"]["headers"]
    assert "content" not in responses["304"]


def test_the_ics_feed_has_an_example() -> None:
    media = OPENAPI["paths"][ICS[1]][ICS[0]]["responses"]["200"]["content"]["text/calendar"]
    assert media["example"].startswith("BEGIN:VCALENDAR\r\n")


@pytest.mark.parametrize("model", EXAMPLE_MODELS, ids=lambda model: model.__name__)
def test_model_examples_are_valid_instances(model: type[BaseModel]) -> None:
    examples = model.model_json_schema().get("examples")
    assert examples, f"{model.__name__} has no examples"
    for example in examples:
        model.model_validate(example)
