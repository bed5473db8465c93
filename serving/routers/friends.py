"""Friends: `GET /v1/me/friends`, and requesting, accepting and removing friends.

Thin over `store.friends`, which decides what a call does to a pair under a lock. This module
maps outcomes to statuses, and drops both users' cached calendars whenever a friendship
starts or ends, since what each may see of the other's calendar just changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, NoReturn

from fastapi import APIRouter, HTTPException, Path, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from serving.deps import CurrentUserId, EngineDep, KeysDep, RedisDep
from serving.problems import problem_responses
from serving.schemas import MAX_BIGINT, FriendOut
from store.calendar import invalidate_calendar
from store.errors import UnknownUserError
from store.friends import (
    FriendLists,
    NoSuchRequestError,
    Outcome,
    accept_request,
    friend_lists,
    remove,
    send_request,
)
from store.keys import RedisKeys
from store.live_cache import touch_friends

router = APIRouter(tags=["friends"])

# Bounded to Postgres' BIGINT, so an absurd id is a 422 rather than a database error.
OtherUserIdPath = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="The other user.")]


class FriendRequestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user_id: int = Field(description="The other user: the requester, or the one asked.")
    display_name: str
    requested_at: datetime


class FriendsOut(BaseModel):
    """The caller's friends and pending requests, each list complete (not paged)."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "friends": [
                        {
                            "user_id": 42,
                            "display_name": "Ana",
                            "since": "2026-11-20T18:04:05Z",
                        }
                    ],
                    "incoming": [
                        {
                            "user_id": 7,
                            "display_name": "Rui",
                            "requested_at": "2026-11-27T09:30:00Z",
                        }
                    ],
                    "outgoing": [],
                }
            ]
        },
    )

    friends: list[FriendOut] = Field(description="Mutual friends, by display name.")
    incoming: list[FriendRequestOut] = Field(
        description="Requests to the caller, newest first: accept or decline them."
    )
    outgoing: list[FriendRequestOut] = Field(
        description="The caller's requests still pending, newest first."
    )


class FriendStateOut(BaseModel):
    """Where the caller and the other user stand after the call."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"state": "requested"}, {"state": "friends"}]}
    )

    state: Literal["requested", "friends"] = Field(
        description="`requested`: the caller's request is pending; `friends`: mutual friends."
    )


@router.get(
    "/me/friends",
    response_model=FriendsOut,
    summary="The caller's friends and pending friend requests",
    responses=problem_responses(401, 429, 503, instance="/v1/me/friends"),
)
def get_my_friends(user_id: CurrentUserId, engine: EngineDep) -> FriendsOut:
    """Everything the friends screen shows, from one database snapshot."""
    return _friends_out(friend_lists(engine, user_id))


@router.post(
    "/friends/{user_id}",
    response_model=FriendStateOut,
    status_code=201,
    summary="Ask a user to be friends (accepts their request if they already asked)",
    responses={
        200: {
            "description": "Already friends, now friends (they had asked the caller), or the "
            "request was already pending.",
            "model": FriendStateOut,
        },
        **problem_responses(401, 404, 422, 429, 503, instance="/v1/friends/42"),
    },
)
def post_friend(
    user_id: OtherUserIdPath,
    caller_id: CurrentUserId,
    response: Response,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
) -> FriendStateOut:
    """201 when a new request was made; 200 for every outcome that creates no request.

    Asking someone who already asked the caller is an accept, so two people tapping "add" on
    each other end up friends rather than with two pending requests. Retrying is harmless.
    """
    _not_self(user_id, caller_id)
    try:
        outcome = send_request(engine, from_user_id=caller_id, to_user_id=user_id)
    except UnknownUserError as error:
        raise HTTPException(404, f"User {error.user_id} does not exist.") from error
    if not (outcome.state == "requested" and outcome.created):
        response.status_code = 200
    return _state_out(outcome, caller_id, user_id, redis_client=redis_client, keys=keys)


@router.post(
    "/friends/{user_id}/accept",
    response_model=FriendStateOut,
    summary="Accept a user's friend request",
    responses=problem_responses(401, 404, 422, 429, 503, instance="/v1/friends/42/accept"),
)
def post_friend_accept(
    user_id: OtherUserIdPath,
    caller_id: CurrentUserId,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
) -> FriendStateOut:
    """Idempotent: accepting again (a retry, a second device) answers `friends` as well.

    404 only when there is neither a pending request from the user nor a friendship.
    """
    _not_self(user_id, caller_id)
    try:
        outcome = accept_request(engine, user_id=caller_id, from_user_id=user_id)
    except NoSuchRequestError as error:
        raise HTTPException(404, f"No friend request from user {user_id}.") from error
    return _state_out(outcome, caller_id, user_id, redis_client=redis_client, keys=keys)


@router.delete(
    "/friends/{user_id}",
    status_code=204,
    summary="Remove a friend, or cancel or decline a pending request",
    responses=problem_responses(401, 422, 429, 503, instance="/v1/friends/42"),
)
def delete_friend(
    user_id: OtherUserIdPath,
    caller_id: CurrentUserId,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
) -> Response:
    """Whatever is between the two goes; 204 even when there was nothing (a retried DELETE).

    Either side may call it, so the same call declines an incoming request and cancels an
    outgoing one.
    """
    _not_self(user_id, caller_id)
    if remove(engine, user_id=caller_id, other_user_id=user_id):
        _invalidate(redis_client, keys, caller_id, user_id)
    return Response(status_code=204)


def _not_self(user_id: int, caller_id: int) -> None:
    if user_id == caller_id:
        _invalid_user_id("must be another user than the caller", user_id)


def _invalid_user_id(message: str, value: int) -> NoReturn:
    raise RequestValidationError(
        [{"loc": ("path", "user_id"), "msg": message, "type": "value_error", "input": value}]
    )


def _state_out(
    outcome: Outcome,
    caller_id: int,
    user_id: int,
    *,
    redis_client: RedisDep,
    keys: RedisKeys,
) -> FriendStateOut:
    if outcome.friendship_changed:
        _invalidate(redis_client, keys, caller_id, user_id)
    return FriendStateOut(state=outcome.state)


def _invalidate(redis_client: RedisDep, keys: RedisKeys, *user_ids: int) -> None:
    """Each user's cached calendar pages and friend set were cached for the old relationship.

    Best effort after the commit: both helpers log a Redis failure, and what was cached
    before expires within minutes (calendar pages) or `card_cache_seconds` (friend sets).
    """
    for user_id in user_ids:
        invalidate_calendar(redis_client=redis_client, keys=keys, user_id=user_id)
    touch_friends(redis_client, keys, user_ids)


def _friends_out(lists: FriendLists) -> FriendsOut:
    return FriendsOut.model_validate(lists)
