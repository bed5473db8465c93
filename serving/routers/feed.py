"""`GET /v1/feed`: the caller's ranked events from the current published run."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from serving import cursors
from serving.deps import CurrentUserId, FeedServicesDep, OriginDep
from serving.feed_body import feed_body, with_impression_ids
from serving.observability import record_feed_source, record_impressions
from serving.problem_types import FEED_CURSOR_EXPIRED
from serving.problems import ProblemError, problem_responses
from serving.schemas import FeedOut, StoredText
from store.feed import Feed, RunGone, read_feed_async
from store.impressions import NOT_RECORDED, record_impressions_async

MAX_LIMIT = 200

router = APIRouter(tags=["feed"])


# Documentation of the caching headers of a feed response (200 and 304).
_ETAG_HEADER = {
    "description": "Weak validator of the body; send it back as `If-None-Match`.",
    "schema": {"type": "string", "examples": ['W/"5d41402abc4b2a76b9719d91"']},
}
_CACHE_CONTROL_HEADER = {
    "description": "Always revalidate: the feed changes with every swipe and published run.",
    "schema": {"type": "string", "examples": ["private, max-age=0, must-revalidate"]},
}


@router.get(
    "/feed",
    response_model=FeedOut,
    summary="The caller's ranked feed",
    responses={
        200: {
            "description": "A page of the caller's feed.",
            "headers": {"ETag": _ETAG_HEADER, "Cache-Control": _CACHE_CONTROL_HEADER},
        },
        304: {
            "description": "Not Modified: the `If-None-Match` ETag still holds (no body).",
            "headers": {"ETag": _ETAG_HEADER, "Cache-Control": _CACHE_CONTROL_HEADER},
        },
        **problem_responses(
            401,
            410,
            422,
            429,
            503,
            instance="/v1/feed",
            examples={
                410: {
                    "Cursor's run dropped": {
                        "kind": FEED_CURSOR_EXPIRED,
                        "detail": "The run this cursor pages through "
                        "(3f9c1b52-7a4e-4d0b-9a61-2c8e5f0d7b13) has been replaced and dropped, "
                        "or was never published; request the feed again without a cursor.",
                    }
                },
                422: {
                    "Half a position": {
                        "detail": "query.lon: Field required when `lat` is given",
                        "errors": [
                            {
                                "loc": ["query", "lon"],
                                "field": "query.lon",
                                "msg": "Field required when `lat` is given",
                                "type": "missing",
                            }
                        ],
                    },
                    "Cursor not issued by the API": {
                        "detail": "query.cursor: not a cursor this API issued; start again "
                        "without one",
                        "errors": [
                            {
                                "loc": ["query", "cursor"],
                                "field": "query.cursor",
                                "msg": "not a cursor this API issued; start again without one",
                                "type": "value_error",
                            }
                        ],
                    },
                },
            },
        ),
    },
)
async def get_feed(
    request: Request,
    user_id: CurrentUserId,
    services: FeedServicesDep,
    origin: OriginDep,
    limit: Annotated[
        int | None,
        Query(
            ge=1, le=MAX_LIMIT, description="Items to return; default: the configured feed size."
        ),
    ] = None,
    cursor: Annotated[
        StoredText | None,
        Query(max_length=512, description="`next_cursor` of the previous page, to continue."),
    ] = None,
) -> Response:
    """Served from Redis, or from Postgres when Redis is down or the run's keys expired.

    Each card is read live: events that have started, were cancelled or are full, or that
    the user swiped since the run was published, are left out, and `friends_going` counts the
    caller's friends going right now. With `lat` and `lon`, each card carries `distance_km`.
    A user the run has no list for gets the run's cold-start list (`cold_start: true`).
    A cursor pins the run it came from, so pages stay in one list while a new run is
    published; 410 when that run is no longer kept (start again without a cursor). The ETag
    lets the app revalidate cheaply with `If-None-Match`.

    Every item served is recorded as an impression and carries its signed `impression_id`,
    to send back with the swipe or RSVP it leads to. The ETag ignores the ids (weak: the same
    cards with other ids are the same page), and a 304 records nothing. With Redis down the
    page is still served, its ids null.
    """
    page = cursors.decode(cursor, services.cursor_key) if cursor else None
    # On the event loop: Redis is awaited, and Postgres (only on a cache miss or outage) runs
    # in the thread pool (`store.steps`). The body is built here, not by FastAPI from
    # `FeedOut`: see `serving.feed_body`.
    try:
        feed = await read_feed_async(
            engine=services.engine,
            redis_client=services.redis,
            keys=services.keys,
            user_id=user_id,
            limit=limit or min(services.settings.feed_size, MAX_LIMIT),
            run_id=page.run_id if page else None,
            after_rank=page.after_rank if page else 0,
            origin=origin,
            cache=services.cache,
        )
    except RunGone as gone:
        raise ProblemError(
            FEED_CURSOR_EXPIRED,
            f"The run this cursor pages through ({gone}) has been replaced and dropped, "
            "or was never published; request the feed again without a cursor.",
        ) from None
    record_feed_source(request, "cold_start" if feed.cold_start else feed.source)
    template = feed_body(feed, _next_cursor(feed, services.cursor_key))
    etag = _etag(template)
    headers = {"ETag": etag, "Cache-Control": "private, max-age=0, must-revalidate"}
    if etag in _if_none_match(request):
        return Response(status_code=304, headers=headers)
    recorded = NOT_RECORDED
    if services.settings.record_impressions:
        # One XADD, awaited: the ids below exist only once their impressions are in Redis.
        recorded = await record_impressions_async(
            redis_client=services.redis, keys=services.keys, key=services.impression_key, feed=feed
        )
        stored = len(feed.items) if recorded.ids is not None else 0
        record_impressions(request, recorded=stored, lost=recorded.lost)
    body = with_impression_ids(template, recorded.ids)
    return Response(content=body, media_type="application/json", headers=headers)


def _next_cursor(feed: Feed, key: bytes) -> str | None:
    if not (feed.has_more and feed.items and feed.run_id is not None):
        return None
    cursor = cursors.Cursor(run_id=feed.run_id, after_rank=feed.items[-1].rank)
    return cursors.encode(cursor, key)


def _etag(body: bytes) -> str:
    """A weak validator of what the client would receive, impression ids aside."""
    return f'W/"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'


def _if_none_match(request: Request) -> set[str]:
    header = request.headers.get("if-none-match", "")
    return {tag.strip() for tag in header.split(",") if tag.strip()}
