"""`GET /v1/feed`: the caller's ranked events from the current published run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from serving.deps import CurrentUserId, EngineDep, KeysDep, RedisDep, SettingsDep
from serving.problems import problem_responses
from serving.schemas import FeedOut
from store.feed import read_feed

MAX_LIMIT = 200

router = APIRouter(tags=["feed"])


@router.get(
    "/feed",
    response_model=FeedOut,
    summary="The caller's ranked feed",
    responses=problem_responses(401, 422, 503),
)
def get_feed(
    user_id: CurrentUserId,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
    settings: SettingsDep,
    limit: Annotated[
        int | None,
        Query(
            ge=1, le=MAX_LIMIT, description="Items to return; default: the configured feed size."
        ),
    ] = None,
) -> FeedOut:
    """Served from Redis, or from Postgres when Redis is down or the run's keys expired.

    Events that have started or that the user swiped since the run was published are left
    out. A user the run has no list for gets the run's cold-start list (`cold_start: true`).
    """
    # A plain `def`: `read_feed` does blocking I/O, so FastAPI runs it in its thread pool.
    feed = read_feed(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        user_id=user_id,
        limit=limit or min(settings.feed_size, MAX_LIMIT),
    )
    return FeedOut.model_validate(feed)
