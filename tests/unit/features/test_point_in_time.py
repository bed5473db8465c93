from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from features.point_in_time import TRAINING_SCHEMA, training_examples

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def swipes_frame(rows: list[tuple[str, int, str, str, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "swipe_id": pl.Utf8,
            "user_id": pl.Int64,
            "event_id": pl.Utf8,
            "action": pl.Utf8,
            "created_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


def attendance_frame(rows: list[tuple[int, str, str, str, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "user_id": pl.Int64,
            "event_id": pl.Utf8,
            "status": pl.Utf8,
            "visibility": pl.Utf8,
            "updated_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


def friendships_frame(pairs: list[tuple[int, int]]) -> pl.DataFrame:
    both = pairs + [(b, a) for a, b in pairs]
    return pl.DataFrame(both, schema={"user_id": pl.Int64, "friend_id": pl.Int64}, orient="row")


def events_frame(
    rows: list[tuple[str, str, datetime, int | None, bool, int | None]],
) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "event_id": pl.Utf8,
            "category": pl.Utf8,
            "start_utc": pl.Datetime("us", "UTC"),
            "price_min_cents": pl.Int64,
            "is_free": pl.Boolean,
            "capacity": pl.Int64,
        },
        orient="row",
    )


def users_frame(ids: list[int], created: datetime = T0 - timedelta(days=10)) -> pl.DataFrame:
    return pl.DataFrame(
        {"user_id": ids, "created_at": [created] * len(ids)},
        schema={"user_id": pl.Int64, "created_at": pl.Datetime("us", "UTC")},
    )


START = T0 + timedelta(days=3, hours=7)  # Thursday 19:00 UTC
EVENTS = events_frame(
    [
        ("jazz-a", "music", START, 1500, False, 100),
        ("jazz-b", "music", START, None, True, None),
        ("jazz-c", "music", START, 2000, False, 0),
        ("run", "sports", START - timedelta(days=5), None, False, 50),
    ]
)
N_CATEGORIES = 2  # music, sports


def by_swipe(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["swipe_id"]: row for row in frame.to_dicts()}


def examples(
    swipes: pl.DataFrame,
    attendance: pl.DataFrame | None = None,
    friendships: pl.DataFrame | None = None,
    events: pl.DataFrame = EVENTS,
) -> dict[str, dict[str, Any]]:
    attendance = attendance if attendance is not None else attendance_frame([])
    friendships = friendships if friendships is not None else friendships_frame([])
    users = users_frame(sorted(set(swipes["user_id"].to_list())))
    return by_swipe(training_examples(swipes, attendance, friendships, events, users))


def test_one_row_per_swipe_with_graded_label_and_schema() -> None:
    swipes = swipes_frame(
        [
            ("s1", 1, "jazz-a", "pass", at(0)),
            ("s2", 1, "jazz-b", "like", at(1)),
            ("s3", 1, "jazz-c", "superlike", at(2)),
        ]
    )
    frame = training_examples(
        swipes, attendance_frame([]), friendships_frame([]), EVENTS, users_frame([1])
    )
    assert frame.schema == pl.Schema(TRAINING_SCHEMA)
    assert frame["swipe_id"].to_list() == ["s1", "s2", "s3"]
    assert frame["label"].to_list() == [0, 1, 2]


def test_features_ignore_everything_at_or_after_the_swipe() -> None:
    swipes = swipes_frame(
        [
            ("t1", 1, "jazz-a", "like", at(10)),
            ("t2", 1, "jazz-b", "pass", at(20)),
            ("t3", 1, "jazz-c", "like", at(30)),  # a later like must not reach t2
            ("u2", 2, "jazz-a", "like", at(25)),  # a later like on jazz-a must not reach t1
        ]
    )
    attendance = attendance_frame(
        [
            (2, "jazz-b", "going", "public", at(19)),  # before t2: counts
            (3, "jazz-b", "going", "public", at(21)),  # after t2: must not count
            (3, "jazz-a", "going", "public", at(11)),  # after t1: must not count at t1
        ]
    )
    got = examples(swipes, attendance, friendships_frame([(1, 2), (1, 3)]))

    t1, t2, u2 = got["t1"], got["t2"], got["u2"]
    assert t1["user_n_swipes_before"] == 0
    assert t1["event_likes_before"] == 0
    assert t1["event_swipes_before"] == 0
    assert t1["event_going_before"] == 0
    assert t1["friends_going_before"] == 0

    assert t2["user_n_swipes_before"] == 1
    assert t2["user_like_rate_before"] == pytest.approx((1 + 1) / (1 + 2))
    # exactly one prior like (t1), in music: (1 + 1) / (1 + 2 categories)
    assert t2["user_category_affinity_before"] == pytest.approx(2 / (1 + N_CATEGORIES))
    assert t2["event_going_before"] == 1
    assert t2["friends_going_before"] == 1

    # user 2 at 25 sees t1's like on jazz-a and user 3's RSVP at 11
    assert u2["event_swipes_before"] == 1
    assert u2["event_likes_before"] == 1
    assert u2["event_going_before"] == 1
    assert u2["user_n_swipes_before"] == 0


def test_rows_at_the_same_instant_do_not_see_each_other() -> None:
    swipes = swipes_frame(
        [
            ("a", 1, "jazz-a", "like", at(5)),
            ("b", 1, "jazz-b", "like", at(5)),
            ("c", 2, "jazz-a", "like", at(5)),
            ("d", 1, "jazz-c", "like", at(6)),
        ]
    )
    attendance = attendance_frame([(2, "jazz-a", "going", "public", at(5))])
    got = examples(swipes, attendance, friendships_frame([(1, 2)]))
    assert [got[s]["user_n_swipes_before"] for s in "abcd"] == [0, 0, 0, 2]
    assert got["c"]["event_swipes_before"] == 0
    assert got["a"]["event_going_before"] == 0
    assert got["a"]["friends_going_before"] == 0


def test_private_rsvps_of_friends_never_count_and_non_friends_never_count() -> None:
    swipes = swipes_frame([("s", 1, "jazz-a", "pass", at(60))])
    attendance = attendance_frame(
        [
            (2, "jazz-a", "going", "public", at(1)),  # friend, public: counts
            (3, "jazz-a", "going", "friends", at(2)),  # friend, friends-only: counts
            (4, "jazz-a", "going", "private", at(3)),  # friend, private: never
            (5, "jazz-a", "going", "public", at(4)),  # not a friend: never
            (6, "jazz-a", "interested", "public", at(5)),  # friend, not going: no
            (7, "jazz-b", "going", "public", at(6)),  # friend, other event: no
        ]
    )
    friendships = friendships_frame([(1, 2), (1, 3), (1, 4), (1, 6), (1, 7), (5, 9)])
    row = examples(swipes, attendance, friendships)["s"]
    assert row["friends_going_before"] == 2
    # the anonymous head count includes every going RSVP on the event, private too
    assert row["event_going_before"] == 4


def test_private_rsvp_is_the_only_difference() -> None:
    """Flipping one friend's RSVP to private changes friends_going_before by exactly one."""
    swipes = swipes_frame([("s", 1, "jazz-a", "pass", at(60))])
    friendships = friendships_frame([(1, 2), (1, 3)])

    def friends_going(visibility: str) -> int:
        attendance = attendance_frame(
            [
                (2, "jazz-a", "going", "public", at(1)),
                (3, "jazz-a", "going", visibility, at(2)),
            ]
        )
        return int(examples(swipes, attendance, friendships)["s"]["friends_going_before"])

    assert friends_going("public") == 2
    assert friends_going("friends") == 2
    assert friends_going("private") == 1


def test_smoothing_dates_price_and_fill_rate_by_hand() -> None:
    swipes = swipes_frame(
        [
            ("p1", 1, "run", "like", at(0)),
            ("p2", 1, "run", "superlike", at(1)),
            ("p3", 1, "jazz-a", "pass", at(2)),
            ("p4", 1, "run", "pass", at(3)),
            ("x", 1, "jazz-a", "like", at(24 * 60)),  # one day after T0
            ("y", 1, "jazz-b", "like", at(24 * 60 + 1)),
            ("z", 1, "jazz-c", "like", at(24 * 60 + 2)),
            ("r", 1, "run", "pass", at(24 * 60 + 3)),
        ]
    )
    attendance = attendance_frame(
        [
            (8, "jazz-a", "going", "private", at(10)),
            (9, "jazz-a", "going", "public", at(11)),
            (9, "jazz-b", "going", "public", at(11)),
            (9, "jazz-c", "going", "public", at(11)),
            (7, "jazz-a", "not_going", "public", at(11)),
        ]
    )
    got = examples(swipes, attendance)
    x = got["x"]
    assert x["user_n_swipes_before"] == 4
    assert x["user_like_rate_before"] == pytest.approx((2 + 1) / (4 + 2))
    # 2 prior likes, none in music
    assert x["user_category_affinity_before"] == pytest.approx((0 + 1) / (2 + N_CATEGORIES))
    assert x["event_swipes_before"] == 1
    assert x["event_likes_before"] == 0
    assert x["event_like_rate_before"] == pytest.approx((0 + 1) / (1 + 2))
    assert x["days_since_user_created"] == pytest.approx(11.0)
    assert x["days_until_start"] == pytest.approx(2 + 7 / 24)
    assert x["price_min_usd"] == pytest.approx(15.0)
    assert x["is_free"] is False
    assert x["event_going_before"] == 2
    assert x["fill_rate_before"] == pytest.approx(2 / 100)
    assert (x["start_dow"], x["start_hour"]) == (4, 19)  # Thursday, 19:00 UTC

    assert got["y"]["fill_rate_before"] is None  # capacity unknown
    assert got["y"]["is_free"] is True
    assert got["y"]["price_min_usd"] == 0.0  # free without a price is $0
    assert got["z"]["fill_rate_before"] is None  # capacity 0 is not a capacity
    assert got["y"]["event_going_before"] == 1

    r = got["r"]  # the run started before this swipe: a negative lead time
    assert r["days_until_start"] == pytest.approx(-3 + 7 / 24 - 3 / (24 * 60))
    assert r["days_until_start"] < 0
    assert r["price_min_usd"] is None
    assert r["event_swipes_before"] == 3
    assert r["event_like_rate_before"] == pytest.approx((2 + 1) / (3 + 2))
    assert r["user_category_affinity_before"] == pytest.approx((2 + 1) / (5 + N_CATEGORIES))


def test_onboarding_match_marks_the_categories_a_user_picked_from_the_first_swipe() -> None:
    """Picked at signup, so known before any swipe: the very first swipe already sees it."""
    swipes = swipes_frame(
        [
            ("m", 1, "jazz-a", "pass", at(0)),  # music, picked
            ("s", 1, "run", "like", at(1)),  # sports, not picked
            ("o", 2, "jazz-b", "like", at(2)),  # user 2 skipped onboarding
            ("x", 3, "jazz-c", "like", at(3)),  # user 3 is not in the users frame
        ]
    )
    users = users_frame([1, 2]).with_columns(
        onboarding_categories=pl.Series([["music", "food"], []], dtype=pl.List(pl.Utf8))
    )
    frame = training_examples(swipes, attendance_frame([]), friendships_frame([]), EVENTS, users)
    got = by_swipe(frame)
    assert got["m"]["user_n_swipes_before"] == 0
    assert {k: row["onboarding_match"] for k, row in got.items()} == {
        "m": 1,
        "s": 0,
        "o": 0,
        "x": 0,
    }
    assert frame.schema["onboarding_match"] == pl.Int8


def test_onboarding_match_is_zero_for_users_frames_without_the_column() -> None:
    swipes = swipes_frame([("a", 1, "jazz-a", "like", at(0)), ("b", 1, "run", "pass", at(1))])
    assert {row["onboarding_match"] for row in examples(swipes).values()} == {0}


def naive_features(
    swipe: dict[str, Any],
    swipes: list[dict[str, Any]],
    attendance: list[dict[str, Any]],
    friends: set[tuple[int, int]],
    events: dict[str, dict[str, Any]],
    user_created: dict[int, datetime],
) -> dict[str, Any]:
    """The definitions, spelled out with a loop over rows strictly before the swipe."""
    t, user, event = swipe["created_at"], swipe["user_id"], swipe["event_id"]
    categories = {e["category"] for e in events.values()}
    ev = events[event]
    past = [s for s in swipes if s["created_at"] < t]
    mine = [s for s in past if s["user_id"] == user]
    my_likes = [s for s in mine if s["action"] in ("like", "superlike")]
    in_cat = [s for s in my_likes if events[s["event_id"]]["category"] == ev["category"]]
    on_event = [s for s in past if s["event_id"] == event]
    event_likes = [s for s in on_event if s["action"] in ("like", "superlike")]
    going = [
        a
        for a in attendance
        if a["event_id"] == event and a["status"] == "going" and a["updated_at"] < t
    ]
    friends_going = [
        a
        for a in going
        if (user, a["user_id"]) in friends and a["visibility"] in ("public", "friends")
    ]
    capacity = ev["capacity"]
    return {
        "label": {"pass": 0, "like": 1, "superlike": 2}[swipe["action"]],
        "user_n_swipes_before": len(mine),
        "user_like_rate_before": (len(my_likes) + 1) / (len(mine) + 2),
        "user_category_affinity_before": (len(in_cat) + 1) / (len(my_likes) + len(categories)),
        "days_since_user_created": (t - user_created[user]) / timedelta(days=1),
        "event_swipes_before": len(on_event),
        "event_likes_before": len(event_likes),
        "event_like_rate_before": (len(event_likes) + 1) / (len(on_event) + 2),
        "event_going_before": len(going),
        "days_until_start": (ev["start_utc"] - t) / timedelta(days=1),
        "fill_rate_before": len(going) / capacity if capacity else None,
        "friends_going_before": len(friends_going),
    }


def random_history(seed: int) -> tuple[pl.DataFrame, ...]:
    rng = random.Random(seed)
    users = list(range(1, 9))
    event_ids = [f"e{i}" for i in range(6)]
    events = events_frame(
        [
            (
                e,
                rng.choice(["music", "food", "art"]),
                at(rng.randint(-100, 400)),
                rng.choice([None, 0, 1000]),
                rng.random() < 0.3,
                rng.choice([None, 0, 5, 20]),
            )
            for e in event_ids
        ]
    )
    # coarse timestamps so ties between swipes and RSVPs happen often
    swipes = swipes_frame(
        [
            (
                f"s{i:03d}",
                rng.choice(users),
                rng.choice(event_ids),
                rng.choice(["pass", "pass", "like", "superlike"]),
                at(rng.randint(0, 40)),
            )
            for i in range(250)
        ]
    )
    pairs = {(u, e) for u in users for e in event_ids if rng.random() < 0.4}
    attendance = attendance_frame(
        [
            (
                u,
                e,
                rng.choice(["going", "going", "interested", "not_going"]),
                rng.choice(["public", "friends", "private"]),
                at(rng.randint(0, 40)),
            )
            for u, e in sorted(pairs)
        ]
    )
    friendships = friendships_frame(
        [(a, b) for a in users for b in users if a < b and rng.random() < 0.4]
    )
    user_frame = pl.DataFrame(
        {"user_id": users, "created_at": [at(-rng.randint(0, 5000)) for _ in users]},
        schema={"user_id": pl.Int64, "created_at": pl.Datetime("us", "UTC")},
    )
    return swipes, attendance, friendships, events, user_frame


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_features_match_a_naive_loop(seed: int) -> None:
    swipes, attendance, friendships, events, users = random_history(seed)
    got = by_swipe(training_examples(swipes, attendance, friendships, events, users))

    swipe_rows = swipes.to_dicts()
    attendance_rows = attendance.to_dicts()
    friends = {(r["user_id"], r["friend_id"]) for r in friendships.to_dicts()}
    event_rows = {r["event_id"]: r for r in events.to_dicts()}
    user_created = {r["user_id"]: r["created_at"] for r in users.to_dicts()}
    assert len(got) == len(swipe_rows)
    for swipe in swipe_rows:
        want = naive_features(swipe, swipe_rows, attendance_rows, friends, event_rows, user_created)
        row = got[swipe["swipe_id"]]
        for name, value in want.items():
            if isinstance(value, float):  # day fractions may differ in the last bit
                assert row[name] == pytest.approx(value, rel=1e-12), (swipe["swipe_id"], name)
            else:  # counts, labels and "no capacity" must match exactly
                assert row[name] == value, (swipe["swipe_id"], name)
