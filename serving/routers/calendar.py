"""Attendance and calendars: `PUT/DELETE /v1/events/{id}/attendance`, calendars, iCal feed.

Thin over `store.calendar` and `store.rsvp`: this module parses and validates requests, calls
one store function per action, maps store errors to problems and shapes responses; visibility,
caching, live pushes and the feed are decided in the store.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import JsonDict

from serving.deps import CurrentUserId, EngineDep, ImpressionCheckDep, KeysDep, RedisDep
from serving.observability import record_cache
from serving.problem_types import STORE_UNAVAILABLE
from serving.problems import problem_responses
from serving.schemas import (
    IMPRESSION_ID_EXAMPLE,
    QueryTime,
    StoredText,
    UserIdPath,
    query_time_error,
    storable_text_error,
)
from store.calendar import (
    ATTENDANCE_STATUSES,
    Attendance,
    CalendarEntry,
    CalendarPage,
    CalendarQuery,
    InvalidCursorError,
    Tier,
    UnknownEventError,
    cached_calendar,
    calendar_ics,
    decode_cursor,
    encode_cursor,
    issue_calendar_token,
    revoke_calendar_token,
    user_for_token,
    viewer_tier,
)
from store.errors import UnknownUserError
from store.rsvp import cancel_rsvp, rsvp

router = APIRouter(tags=["calendar"])

MAX_NOTES_CHARS = 1000
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
DEFAULT_LOOKBACK = timedelta(days=1)
# The default `from` moves with the clock; rounding it down keeps repeated requests on the
# same cache key for as long as a cached page lives.
DEFAULT_FROM_GRANULARITY_SECONDS = 300
ICS_MEDIA_TYPE = "text/calendar; charset=utf-8"
ICS_PATH = "/v1/me/calendar.ics"

AttendanceStatusIn = Literal["going", "interested", "not_going", "went"]
VisibilityIn = Literal["public", "friends", "private"]

# Realistic bodies for the OpenAPI document (documentation only).
_EVENT_PATH_EXAMPLE = "/v1/events/812345678901/attendance"
_ENTRY_EXAMPLE: JsonDict = {
    "event_id": "812345678901",
    "event_name": "Mission Jazz Night",
    "event_status": "live",
    "status": "going",
    "visibility": "friends",
    "notes": "Meet Jonas at the bar at 8.",
    "start_utc": "2026-03-14T03:30:00Z",
    "end_utc": "2026-03-14T06:00:00Z",
    "start_local": "2026-03-13T20:30:00-07:00",
    "timezone": "America/Los_Angeles",
    "venue_name": "The Chapel",
}
# What `store.calendar.encode_cursor` gives after that entry.
_CALENDAR_CURSOR_EXAMPLE = (
    "eyJ0IjogIjIwMjYtMDMtMTRUMDM6MzA6MDArMDA6MDAiLCAiZSI6ICI4MTIzNDU2Nzg5MDEifQ"
)
_TOKEN_EXAMPLE = "t9OjT-gDvM5A5ExlC1Q4Yisz8yFWqu6Gd5gxsuGvgz8"
_ICS_EXAMPLE = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Godo//Calendar feed//EN\r\n"
    "CALSCALE:GREGORIAN\r\nX-WR-CALNAME:Godo: Maya R.\r\nBEGIN:VEVENT\r\n"
    "SUMMARY:Mission Jazz Night\r\nDTSTART:20260314T033000Z\r\nDTEND:20260314T060000Z\r\n"
    "DTSTAMP:20260302T091527Z\r\nUID:42-812345678901@godo\r\nLOCATION:The Chapel\r\n"
    "STATUS:CONFIRMED\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


class AttendanceIn(BaseModel):
    """The caller's answer for an event; a PUT replaces every field."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "status": "going",
                    "visibility": "friends",
                    "notes": "Meet Jonas at the bar at 8.",
                },
                {"status": "interested", "visibility": "private"},
                {"status": "going", "impression_id": IMPRESSION_ID_EXAMPLE},
            ]
        },
    )

    status: AttendanceStatusIn
    visibility: VisibilityIn = Field(
        default="friends",
        description="Who sees it on the caller's calendar: everyone, mutual friends, or only "
        "the caller.",
    )
    notes: StoredText | None = Field(
        default=None,
        max_length=MAX_NOTES_CHARS,
        description="Private to the caller, whatever the visibility.",
    )
    impression_id: StoredText | None = Field(
        default=None,
        max_length=512,
        description="The `impression_id` of the feed item that led to this answer, if any. "
        "Stored when it is valid (signed by this API, issued to the caller for this event, not "
        "expired); otherwise ignored and the answer is stored without it. A PUT without one "
        "keeps the impression stored before.",
    )


class AttendanceOut(BaseModel):
    """The caller's stored answer for an event."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "event_id": "812345678901",
                    "status": "going",
                    "visibility": "friends",
                    "notes": "Meet Jonas at the bar at 8.",
                    "updated_at": "2026-03-02T09:15:27.512000Z",
                }
            ]
        },
    )

    event_id: str
    status: AttendanceStatusIn
    visibility: VisibilityIn
    notes: str | None
    updated_at: datetime


class CalendarEntryOut(BaseModel):
    """One event on a calendar, with its owner's answer."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_ENTRY_EXAMPLE]}
    )

    event_id: str
    event_name: str
    event_status: str = Field(description="The event's own status (e.g. cancelled).")
    status: AttendanceStatusIn
    visibility: VisibilityIn
    notes: str | None = Field(description="Only ever shown to the calendar's owner.")
    start_utc: datetime
    end_utc: datetime | None
    start_local: str = Field(description="The start in the event's timezone, ISO 8601 with offset.")
    timezone: str = Field(description="The IANA zone of `start_local` (UTC when unknown).")
    venue_name: str | None


class CalendarOut(BaseModel):
    """A page of a user's calendar, ordered by start."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": 42,
                    "items": [_ENTRY_EXAMPLE],
                    "next_cursor": _CALENDAR_CURSOR_EXAMPLE,
                },
                {
                    "user_id": 19,
                    "items": [{**_ENTRY_EXAMPLE, "notes": None}],
                    "next_cursor": None,
                },
            ]
        }
    )

    user_id: int
    items: list[CalendarEntryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class CalendarTokenOut(BaseModel):
    """The caller's new calendar feed secret, and the feed's path with it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": _TOKEN_EXAMPLE,
                    "path": f"{ICS_PATH}?token={_TOKEN_EXAMPLE}",
                }
            ]
        }
    )

    token: str = Field(description="Shown once: only its hash is stored.")
    path: str = Field(description="The feed's URL path (with the token) for a calendar app.")


# --- attendance ----------------------------------------------------------------------------


EventIdPath = Annotated[StoredText, Path(min_length=1, max_length=256)]
_EVENT_ID_TOO_LONG: dict[str, dict[str, Any]] = {
    "Event id too long": {
        "detail": "path.event_id: String should have at most 256 characters",
        "errors": [
            {
                "loc": ["path", "event_id"],
                "field": "path.event_id",
                "msg": "String should have at most 256 characters",
                "type": "string_too_long",
            }
        ],
    }
}


@router.put(
    "/events/{event_id}/attendance",
    response_model=AttendanceOut,
    summary="Set the caller's attendance for an event",
    response_description="The caller's stored answer.",
    responses=problem_responses(
        400,
        401,
        404,
        413,
        422,
        429,
        503,
        instance=_EVENT_PATH_EXAMPLE,
        examples={
            404: {
                "Unknown event": {"detail": "Event '812345678901' does not exist."},
                "Unknown user": {"detail": "User 42 does not exist."},
            },
            422: {
                "Unknown status": {
                    "detail": "body.status: Input should be 'going', 'interested', 'not_going' "
                    "or 'went'",
                    "errors": [
                        {
                            "loc": ["body", "status"],
                            "field": "body.status",
                            "msg": "Input should be 'going', 'interested', 'not_going' or 'went'",
                            "type": "literal_error",
                        }
                    ],
                }
            },
        },
    ),
)
def put_attendance(
    event_id: EventIdPath,
    body: AttendanceIn,
    user_id: CurrentUserId,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
    impressions: ImpressionCheckDep,
) -> AttendanceOut:
    """Insert or replace the caller's row; the caller's cached calendars are dropped at once.

    An `impression_id` that does not verify (another user's, another event's, expired,
    forged) is ignored and counted in `/metrics`; the answer is stored all the same.
    """
    attribution = impressions.verify(body.impression_id, user_id=user_id, event_id=event_id)
    try:
        stored = rsvp(
            engine,
            redis_client,
            keys,
            user_id=user_id,
            event_id=event_id,
            status=body.status,
            visibility=body.visibility,
            notes=body.notes,
            impression_id=attribution.impression_id,
        )
    except UnknownEventError as error:
        raise HTTPException(404, f"Event {event_id!r} does not exist.") from error
    except UnknownUserError as error:
        raise HTTPException(404, f"User {user_id} does not exist.") from error
    impressions.count([attribution], action="rsvp")
    return _attendance_out(stored)


@router.delete(
    "/events/{event_id}/attendance",
    status_code=204,
    summary="Remove the caller's attendance for an event",
    response_description="No Content: the caller has no answer for the event (any more).",
    responses=problem_responses(
        401,
        422,
        429,
        503,
        instance=_EVENT_PATH_EXAMPLE,
        examples={422: _EVENT_ID_TOO_LONG},
    ),
)
def delete_attendance(
    event_id: EventIdPath,
    user_id: CurrentUserId,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
) -> Response:
    """Idempotent: 204 whether or not there was a row (so a retried DELETE is not an error)."""
    cancel_rsvp(engine, redis_client, keys, user_id=user_id, event_id=event_id)
    return Response(status_code=204)


def _attendance_out(stored: Attendance) -> AttendanceOut:
    return AttendanceOut.model_validate(stored)


# --- calendars -----------------------------------------------------------------------------


def _iso_only(value: object) -> object:
    """Refuse bare numbers: pydantic would read `from=0.5` as a Unix time, which the schema
    (`format: date-time`) does not allow and no client means."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("expected an ISO 8601 date-time with a timezone, not a number")
    return value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
IsoDateTime = Annotated[QueryTime, BeforeValidator(_iso_only)]


def _calendar_query(
    start_from: Annotated[
        IsoDateTime | None,
        Query(alias="from", description="Earliest start (default: a day ago)."),
    ] = None,
    start_before: Annotated[
        IsoDateTime | None, Query(alias="to", description="Events starting before this.")
    ] = None,
    status: Annotated[
        list[StoredText] | None,
        Query(description="Attendance statuses to include: repeat it or comma-separate them."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[StoredText | None, Query(max_length=1024)] = None,
) -> CalendarQuery:
    """The page a calendar request asks for, or a 422 naming the bad parameter."""
    if start_from is None:
        now = datetime.now(UTC)
        floored = int(now.timestamp()) // DEFAULT_FROM_GRANULARITY_SECONDS
        start_from = datetime.fromtimestamp(floored * DEFAULT_FROM_GRANULARITY_SECONDS, UTC)
        start_from -= DEFAULT_LOOKBACK
    if start_before is not None and start_before <= start_from:
        _invalid("to", "must be later than `from`", start_before.isoformat())
    statuses = sorted({s.strip() for value in status or [] for s in value.split(",") if s.strip()})
    unknown = [s for s in statuses if s not in ATTENDANCE_STATUSES]
    if unknown:
        _invalid("status", f"unknown status {unknown[0]!r}; use {', '.join(ATTENDANCE_STATUSES)}")
    after = None
    if cursor is not None:
        try:
            after = decode_cursor(cursor)
        except InvalidCursorError:
            after = None
        # A hand-made cursor can carry what no issued one does: a time at the edge of the
        # calendar or text Postgres cannot compare with.
        if (
            after is None
            or query_time_error(after[0]) is not None
            or storable_text_error(after[1]) is not None
        ):
            _invalid("cursor", "not a cursor this API issued; start again without one")
    return CalendarQuery(
        start_from=start_from,
        start_before=start_before,
        statuses=tuple(statuses),
        limit=limit,
        after=after,
    )


def _invalid(parameter: str, message: str, value: str | None = None) -> NoReturn:
    raise RequestValidationError(
        [{"loc": ("query", parameter), "msg": message, "type": "value_error", "input": value}]
    )


CalendarQueryDep = Annotated[CalendarQuery, Depends(_calendar_query)]

_CALENDAR_QUERY_ERRORS: dict[str, dict[str, Any]] = {
    "Empty range": {
        "detail": "query.to: must be later than `from`",
        "errors": [
            {
                "loc": ["query", "to"],
                "field": "query.to",
                "msg": "must be later than `from`",
                "type": "value_error",
            }
        ],
    },
    "Unknown status": {
        "detail": "query.status: unknown status 'maybe'; use going, interested, not_going, went",
        "errors": [
            {
                "loc": ["query", "status"],
                "field": "query.status",
                "msg": "unknown status 'maybe'; use going, interested, not_going, went",
                "type": "value_error",
            }
        ],
    },
}


@router.get(
    "/me/calendar",
    response_model=CalendarOut,
    summary="The caller's calendar",
    response_description="A page of the caller's calendar, notes and private entries included.",
    responses=problem_responses(
        401, 422, 429, 503, instance="/v1/me/calendar", examples={422: _CALENDAR_QUERY_ERRORS}
    ),
)
def get_my_calendar(
    request: Request,
    user_id: CurrentUserId,  # before the query: a caller without a token learns nothing else
    query: CalendarQueryDep,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
) -> CalendarOut:
    """Every entry of the caller, notes and private ones included, ordered by start.

    Cached for a few minutes; any attendance change by the caller shows on the next request.
    """
    return _calendar(
        request,
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        owner_id=user_id,
        query=query,
        tier="owner",
    )


@router.get(
    "/users/{user_id}/calendar",
    response_model=CalendarOut,
    summary="A user's calendar, as the caller may see it",
    response_description="A page of the entries of the user the caller may see.",
    responses=problem_responses(
        401,
        404,
        422,
        429,
        503,
        instance="/v1/users/19/calendar",
        examples={
            404: {"Unknown user": {"detail": "User 19 does not exist."}},
            422: _CALENDAR_QUERY_ERRORS,
        },
    ),
)
def get_user_calendar(
    request: Request,
    caller_id: CurrentUserId,  # before the query: a caller without a token learns nothing else
    user_id: UserIdPath,
    query: CalendarQueryDep,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
) -> CalendarOut:
    """Mutual friends see public and friends-only entries, anyone else public ones only.

    Private entries and notes are only ever shown to the owner (who sees their whole calendar
    here too).
    """
    try:
        tier = viewer_tier(engine, owner_id=user_id, viewer_id=caller_id)
    except UnknownUserError as error:
        raise HTTPException(404, f"User {user_id} does not exist.") from error
    return _calendar(
        request,
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        owner_id=user_id,
        query=query,
        tier=tier,
    )


def _calendar(
    request: Request,
    *,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
    owner_id: int,
    query: CalendarQuery,
    tier: Tier,
) -> CalendarOut:
    page, hit = cached_calendar(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        owner_id=owner_id,
        query=query,
        tier=tier,
    )
    record_cache(request, "calendar", hit)
    return _calendar_out(owner_id, page)


def _calendar_out(owner_id: int, page: CalendarPage) -> CalendarOut:
    return CalendarOut(
        user_id=owner_id,
        items=[_entry_out(entry) for entry in page.entries],
        next_cursor=encode_cursor(page.next_after) if page.next_after else None,
    )


def _entry_out(entry: CalendarEntry) -> CalendarEntryOut:
    return CalendarEntryOut.model_validate(entry)


# --- iCalendar feed ------------------------------------------------------------------------


@router.post(
    "/me/calendar-token",
    response_model=CalendarTokenOut,
    status_code=201,
    summary="Create or rotate the caller's calendar feed token",
    response_description="Created: the new token (shown once) and the feed's path with it.",
    responses=problem_responses(
        401,
        404,
        429,
        503,
        instance="/v1/me/calendar-token",
        examples={404: {"Unknown user": {"detail": "User 42 does not exist."}}},
    ),
)
def post_calendar_token(user_id: CurrentUserId, engine: EngineDep) -> CalendarTokenOut:
    """A new secret for `GET /v1/me/calendar.ics`; the previous one stops working at once.

    The token is in the response only: the server keeps its hash, so a lost token is replaced,
    never recovered.
    """
    try:
        token = issue_calendar_token(engine, user_id)
    except UnknownUserError as error:
        raise HTTPException(404, f"User {user_id} does not exist.") from error
    return CalendarTokenOut(token=token, path=f"{ICS_PATH}?{urlencode({'token': token})}")


@router.delete(
    "/me/calendar-token",
    status_code=204,
    summary="Revoke the caller's calendar feed token",
    response_description="No Content: the caller has no feed token (any more).",
    responses=problem_responses(401, 429, 503, instance="/v1/me/calendar-token"),
)
def delete_calendar_token(user_id: CurrentUserId, engine: EngineDep) -> Response:
    """Idempotent: 204 whether or not a token existed."""
    revoke_calendar_token(engine, user_id)
    return Response(status_code=204)


@router.get(
    "/me/calendar.ics",
    summary="The caller's calendar as an iCalendar feed (token in the URL, no bearer)",
    response_class=Response,
    responses={
        200: {
            "content": {"text/calendar": {"example": _ICS_EXAMPLE}},
            "description": "An iCalendar document (RFC 5545), times in UTC.",
            "headers": {
                "Cache-Control": {
                    "description": "Calendar apps may reuse the feed for 5 minutes.",
                    "schema": {"type": "string", "examples": ["private, max-age=300"]},
                }
            },
        },
        **problem_responses(
            404,
            422,
            429,
            503,
            instance="/v1/me/calendar.ics",
            examples={
                404: {"Unknown token": {"detail": "No calendar feed for this token."}},
                422: {
                    "Missing token": {
                        "detail": "query.token: Field required",
                        "errors": [
                            {
                                "loc": ["query", "token"],
                                "field": "query.token",
                                "msg": "Field required",
                                "type": "missing",
                            }
                        ],
                    }
                },
                429: {
                    "Rate limited": {
                        "detail": "Rate limit exceeded for this client IP (100 requests per "
                        "minute, bursts of 200); retry in 1 s."
                    }
                },
                503: {
                    "Store unavailable": {
                        "kind": STORE_UNAVAILABLE,
                        "detail": "A data store is temporarily unreachable; retry shortly.",
                    }
                },
            },
        ),
    },
)
def get_calendar_ics(
    token: Annotated[StoredText, Query(min_length=1, max_length=256)], engine: EngineDep
) -> Response:
    """For calendar apps, which cannot send bearer tokens: the secret in the URL is the key.

    An unknown, rotated or revoked token is a plain 404, the same as for a user that does not
    exist, so the answer tells nothing about accounts.
    """
    user_id = user_for_token(engine, token)
    if user_id is None:
        raise HTTPException(404, "No calendar feed for this token.")
    return Response(
        content=calendar_ics(engine, user_id),
        media_type=ICS_MEDIA_TYPE,
        headers={"Cache-Control": "private, max-age=300"},
    )
