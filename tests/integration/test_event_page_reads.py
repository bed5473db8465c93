"""`store.cards.read_event_page`: the one read behind `GET /v1/events/{id}` (real Postgres)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from store.calendar import set_attendance
from store.cards import read_event_page
from store.schema import friendships, users
from tests.integration.conftest import seed_upcoming_events

VIEWER, SHARER, HIDER = 1, 2, 3


def test_the_event_page_shows_the_card_and_only_friends_who_share(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(users),
            [
                {"id": user, "display_name": name, "metro": "sf"}
                for user, name in ((VIEWER, "Viewer"), (SHARER, "Sharer"), (HIDER, "Hider"))
            ],
        )
        conn.execute(
            sa.insert(friendships),
            [
                {"user_id": a, "friend_id": b}
                for friend in (SHARER, HIDER)
                for a, b in ((VIEWER, friend), (friend, VIEWER))
            ],
        )
        seed_upcoming_events(conn, ["ev-1"], datetime.now(UTC))
    for user, visibility in ((SHARER, "friends"), (HIDER, "private")):
        set_attendance(
            engine, user_id=user, event_id="ev-1", status="going", visibility=visibility, notes=None
        )

    page = read_event_page(engine, "ev-1", viewer_id=VIEWER)
    assert page is not None
    assert page.card.event_id == "ev-1" and page.card.name == "Event ev-1"
    assert [(f.user_id, f.display_name) for f in page.friends_going] == [(SHARER, "Sharer")]
    assert page.card.visible_going_count == 1  # the private answer is nobody's business
    assert read_event_page(engine, "no-such-event", viewer_id=VIEWER) is None
