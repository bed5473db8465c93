from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from features.catalogue import upcoming_active
from features.interactions import interactions, positive

SWIPES = pl.DataFrame(
    {
        "user_id": [1, 1, 1, 2],
        "event_id": ["a", "b", "c", "a"],
        "action": ["like", "pass", "superlike", "pass"],
    }
)
ATTENDANCE = pl.DataFrame(
    {"user_id": [1, 3], "event_id": ["a", "d"], "status": ["going", "interested"]}
)


def test_weights_sum_swipes_and_rsvps_per_pair() -> None:
    frame = interactions(SWIPES, ATTENDANCE)
    got = {
        (r["user_id"], r["event_id"]): (r["weight"], r["n_swipes"], r["liked"])
        for r in frame.to_dicts()
    }
    assert got == {
        (1, "a"): (5.0, 1, True),  # like 1 + going 4
        (1, "b"): (0.0, 1, False),  # a pass is seen, not wanted
        (1, "c"): (3.0, 1, True),
        (2, "a"): (0.0, 1, False),
        (3, "d"): (2.0, 0, True),  # an RSVP without a swipe still counts
    }
    assert positive(frame).height == 3


def test_unknown_action_is_an_error_not_a_zero() -> None:
    bad = SWIPES.with_columns(action=pl.lit("maybe"))
    with pytest.raises(pl.exceptions.InvalidOperationError):
        interactions(bad, ATTENDANCE)


def test_upcoming_active_keeps_only_future_active_events() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    events = pl.DataFrame(
        {
            "event_id": ["past", "cancelled", "soon", "later"],
            "metro": ["sf"] * 4,
            "start_utc": [
                now - timedelta(hours=1),
                now + timedelta(days=1),
                now + timedelta(minutes=5),
                now + timedelta(days=9),
            ],
            "is_active": [True, False, True, True],
        }
    ).with_columns(pl.col("start_utc").dt.replace_time_zone("UTC"))
    assert upcoming_active(events, now)["event_id"].to_list() == ["later", "soon"]
