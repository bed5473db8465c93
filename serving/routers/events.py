"""`GET /v1/events/{event_id}`: one event's card, its live state and which friends are going."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from serving.deps import CurrentUserId, EngineDep, OriginDep
from serving.feed_body import card_document
from serving.problems import problem_responses
from serving.schemas import EventOut, FriendOut, StoredText
from store.cards import read_event_page

router = APIRouter(tags=["events"])


@router.get(
    "/events/{event_id}",
    response_model=EventOut,
    summary="One event, with the caller's friends going",
    response_description="The event's card, its live state and the caller's friends going.",
    responses=problem_responses(
        401,
        404,
        422,
        429,
        503,
        instance="/v1/events/812345678901",
        examples={
            404: {"Unknown event": {"detail": "No event with id '812345678901'."}},
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
                }
            },
        },
    ),
)
def get_event(
    user_id: CurrentUserId,
    engine: EngineDep,
    origin: OriginDep,
    event_id: Annotated[StoredText, Path(min_length=1, max_length=256)],
) -> EventOut:
    """The card the feed shows, plus who is going, read live from Postgres.

    Unlike the feed, a cancelled, full or past event is still returned (a shared link must
    open), with `cancelled` and `full` saying why the app should not offer it. Friends and
    counts only include RSVPs their owner shares (public or friends-only): a private RSVP is
    never visible to anyone else. 404 when no such event exists.
    """
    # A plain `def`: the reads block, so FastAPI runs this in its thread pool.
    page = read_event_page(engine, event_id, viewer_id=user_id)
    if page is None:
        raise HTTPException(status_code=404, detail=f"No event with id {event_id!r}.")
    card = page.card
    return EventOut(
        **card_document(card),
        distance_km=card.distance_km(origin),
        status=card.status,
        cancelled=card.cancelled,
        full=card.full,
        going_count=card.visible_going_count,
        friends_going=[FriendOut.model_validate(f) for f in page.friends_going],
    )
