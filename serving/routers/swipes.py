"""`POST /v1/swipes`: store a batch of the caller's swipes and drop them from their feed."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.exceptions import RequestValidationError

from serving.deps import (
    CurrentUserId,
    EngineDep,
    ImpressionCheckDep,
    KeysDep,
    RedisDep,
    SettingsDep,
)
from serving.problems import problem_responses
from serving.schemas import SwipeBatchIn, SwipeBatchOut
from store.errors import UnknownUserError
from store.swipes import (
    SwipeRecord,
    UnknownEventsError,
    hide_swiped_from_feed,
    record_swipes,
)

router = APIRouter(tags=["swipes"])


@router.post(
    "/swipes",
    response_model=SwipeBatchOut,
    summary="Record a batch of the caller's swipes",
    response_description="What the batch stored, and whether the feed caught up.",
    responses=problem_responses(
        400,
        401,
        404,
        413,
        422,
        429,
        503,
        instance="/v1/swipes",
        examples={
            404: {"Unknown user": {"detail": "User 42 does not exist."}},
            422: {
                "Unknown event": {
                    "detail": "body.swipes.1.event_id: unknown event '812345678902'",
                    "errors": [
                        {
                            "loc": ["body", "swipes", 1, "event_id"],
                            "field": "body.swipes.1.event_id",
                            "msg": "unknown event '812345678902'",
                            "type": "unknown_event",
                        }
                    ],
                },
                "Repeated client_id": {
                    "detail": "body.swipes: Value error, client_id repeated within the batch: "
                    "6f1c2d3e-8a4b-4c5d-9e6f-7a8b9c0d1e2f",
                    "errors": [
                        {
                            "loc": ["body", "swipes"],
                            "field": "body.swipes",
                            "msg": "Value error, client_id repeated within the batch: "
                            "6f1c2d3e-8a4b-4c5d-9e6f-7a8b9c0d1e2f",
                            "type": "value_error",
                        }
                    ],
                },
            },
        },
    ),
)
def post_swipes(
    batch: SwipeBatchIn,
    user_id: CurrentUserId,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
    settings: SettingsDep,
    impressions: ImpressionCheckDep,
) -> SwipeBatchOut:
    """Idempotent by `client_id`: resending a batch stores nothing twice (`duplicates`).

    All or nothing: when any swipe is invalid (including an unknown `event_id`) the answer is
    a 422 naming it and nothing is stored. The swipes belong to the token's user, whatever the
    body says. `feed_updated: false` means they are stored but the feed may still show their
    events for a while.

    A swipe's `impression_id` (from the feed item swiped) is stored with it when it verifies:
    signed by this API, issued to the caller, for this event, not expired. Any other id is
    ignored (counted in `/metrics`), never an error: the swipe is stored without it.
    """
    # A plain `def`: Postgres and Redis calls block, so FastAPI runs this in its thread pool.
    attributions = [
        impressions.verify(s.impression_id, user_id=user_id, event_id=s.event_id)
        for s in batch.swipes
    ]
    records = [
        SwipeRecord(s.client_id, s.event_id, s.direction, s.ts, a.impression_id)
        for s, a in zip(batch.swipes, attributions, strict=True)
    ]
    try:
        result = record_swipes(engine, user_id, records)
    except UnknownEventsError as error:
        # Raised as a validation error so the 422 has the same shape as any other bad field.
        unknown = set(error.event_ids)
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "swipes", index, "event_id"),
                    "msg": f"unknown event {swipe.event_id!r}",
                    "type": "unknown_event",
                }
                for index, swipe in enumerate(batch.swipes)
                if swipe.event_id in unknown
            ]
        ) from error
    except UnknownUserError as error:
        raise HTTPException(404, f"User {user_id} does not exist.") from error
    impressions.count(attributions, action="swipe")
    feed_updated = hide_swiped_from_feed(
        redis_client=redis_client,
        keys=keys,
        user_id=user_id,
        event_ids={s.event_id for s in batch.swipes},
        ttl_seconds=settings.feed_run_ttl_seconds,
    )
    return SwipeBatchOut(
        stored=result.stored, duplicates=result.duplicates, feed_updated=feed_updated
    )
