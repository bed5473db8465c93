from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from features.point_in_time import TRAINING_SCHEMA, features_at, training_examples

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
    rows: list[tuple[str, str, datetime | None, int | None, bool, int | None]],
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
    homes: dict[int, tuple[float | None, float | None]],
    venue_at: dict[str | None, tuple[float | None, float | None]],
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
    start = ev["start_utc"]
    timed = [events[s["event_id"]]["start_utc"] for s in my_likes]
    timed = [d for d in timed if d is not None]
    liked_prices = [naive_price(events[s["event_id"]]) for s in my_likes]
    priced = [p for p in liked_prices if p is not None]
    mean_price = sum(priced) / len(priced) if priced else 0.0
    price = naive_price(ev)
    week_ago = t - timedelta(days=7)
    friends_interested = [
        a
        for a in attendance
        if a["event_id"] == event
        and a["status"] == "interested"
        and a["updated_at"] < t
        and (user, a["user_id"]) in friends
        and a["visibility"] in ("public", "friends")
    ]
    decayed = sum(decay(t, s["created_at"]) for s in mine)
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
        "days_until_start": (
            (ev["start_utc"] - t) / timedelta(days=1) if ev["start_utc"] is not None else None
        ),
        "fill_rate_before": len(going) / capacity if capacity else None,
        "friends_going_before": len(friends_going),
        "user_category_affinity_decayed": (
            sum(decay(t, s["created_at"]) for s in in_cat) / decayed if mine else 0.0
        ),
        "event_trending_7d": len([s for s in on_event if s["created_at"] >= week_ago]),
        "event_likes_7d": len([s for s in event_likes if s["created_at"] >= week_ago]),
        "friends_interested_before": len(friends_interested),
        "weekday_match": (
            None
            if start is None
            else sum(d.weekday() == start.weekday() for d in timed) / len(timed)
            if timed
            else 0.0
        ),
        "hour_match": (
            None
            if start is None
            else sum(d.hour // 3 == start.hour // 3 for d in timed) / len(timed)
            if timed
            else 0.0
        ),
        "price_ratio": price / mean_price if price is not None and mean_price > 0 else None,
        "distance_km": naive_distance(homes.get(user), venue_at.get(ev.get("venue_id"))),
    }


def decay(t: datetime, then: datetime) -> float:
    """Weight of a swipe at `then` as of `t`: halves every 14 days."""
    return float(2 ** (-((t - then) / timedelta(days=14))))


def naive_price(event: dict[str, Any]) -> float | None:
    if event["price_min_cents"] is not None:
        return float(event["price_min_cents"]) / 100
    return 0.0 if event["is_free"] else None


def naive_distance(
    home: tuple[float | None, float | None] | None, venue: tuple[float | None, float | None] | None
) -> float | None:
    if home is None or venue is None or None in home or None in venue:
        return None
    (lat1, lon1), (lat2, lon2) = home, venue
    assert lat1 is not None and lon1 is not None and lat2 is not None and lon2 is not None
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def random_history(seed: int, step: timedelta = timedelta(minutes=1)) -> tuple[pl.DataFrame, ...]:
    """Swipes and RSVPs on a grid of 41 instants `step` apart (coarse, so ties are common).

    A minute step keeps everything within the 7-day window and the decay near 1; a 12-hour
    step spreads the history over 20 days, so windows cut through it and decay bites.
    """
    rng = random.Random(seed)
    extra = random.Random(seed + 1_000)  # the new columns, without disturbing `rng`'s stream
    users = list(range(1, 9))
    event_ids = [f"e{i}" for i in range(6)]

    def when(units: int) -> datetime:
        return T0 + units * step

    events = events_frame(
        [
            (
                e,
                rng.choice(["music", "food", "art"]),
                at(rng.randint(-100, 400) * step / timedelta(minutes=1) + extra.randint(0, 1439)),
                rng.choice([None, 0, 1000, 2500]),
                rng.random() < 0.3,
                rng.choice([None, 0, 5, 20]),
            )
            for e in event_ids
        ]
    ).with_columns(
        # one event without a start (weekday/hour unknown), venues v0-v3 and one unknown venue
        pl.when(pl.col("event_id") == "e5").then(None).otherwise("start_utc").alias("start_utc"),
        venue_id=pl.Series(
            [extra.choice(["v0", "v1", "v2", "v3", "nowhere", None]) for _ in event_ids]
        ),
    )
    venues = pl.DataFrame(
        {
            "venue_id": ["v0", "v1", "v2", "v3"],
            "latitude": [37.77, 37.80, None, 40.71],
            "longitude": [-122.42, -122.27, -122.0, -74.0],
        }
    )
    swipes = swipes_frame(
        [
            (
                f"s{i:03d}",
                rng.choice(users),
                rng.choice(event_ids),
                rng.choice(["pass", "pass", "like", "superlike"]),
                when(rng.randint(0, 40)),
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
                when(rng.randint(0, 40)),
            )
            for u, e in sorted(pairs)
        ]
    )
    friendships = friendships_frame(
        [(a, b) for a in users for b in users if a < b and rng.random() < 0.4]
    )
    user_frame = pl.DataFrame(
        {
            "user_id": users,
            "created_at": [at(-rng.randint(0, 5000)) for _ in users],
            "home_lat": [None if u == 8 else 37.7 + extra.random() / 10 for u in users],
            "home_lon": [-122.5 + extra.random() / 10 for _ in users],
        },
        schema={
            "user_id": pl.Int64,
            "created_at": pl.Datetime("us", "UTC"),
            "home_lat": pl.Float64,
            "home_lon": pl.Float64,
        },
    )
    return swipes, attendance, friendships, events, user_frame, venues


@pytest.mark.parametrize("step", [timedelta(minutes=1), timedelta(hours=12)], ids=["1min", "12h"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_features_match_a_naive_loop(seed: int, step: timedelta) -> None:
    swipes, attendance, friendships, events, users, venues = random_history(seed, step)
    got = by_swipe(training_examples(swipes, attendance, friendships, events, users, venues=venues))

    swipe_rows = swipes.to_dicts()
    attendance_rows = attendance.to_dicts()
    friends = {(r["user_id"], r["friend_id"]) for r in friendships.to_dicts()}
    event_rows = {r["event_id"]: r for r in events.to_dicts()}
    user_created = {r["user_id"]: r["created_at"] for r in users.to_dicts()}
    homes = {r["user_id"]: (r["home_lat"], r["home_lon"]) for r in users.to_dicts()}
    venue_at = {r["venue_id"]: (r["latitude"], r["longitude"]) for r in venues.to_dicts()}
    assert len(got) == len(swipe_rows)
    compared = set()
    for swipe in swipe_rows:
        want = naive_features(
            swipe, swipe_rows, attendance_rows, friends, event_rows, user_created, homes, venue_at
        )
        compared |= set(want)
        row = got[swipe["swipe_id"]]
        for name, value in want.items():
            if isinstance(value, float):  # sums and day fractions may differ in the last bits
                assert row[name] == pytest.approx(value, rel=1e-12), (swipe["swipe_id"], name)
            else:  # counts, labels and "unknown" (None) must match exactly
                assert row[name] == value, (swipe["swipe_id"], name)
    new = {
        "distance_km",
        "user_category_affinity_decayed",
        "event_trending_7d",
        "event_likes_7d",
        "friends_interested_before",
        "weekday_match",
        "hour_match",
        "price_ratio",
    }
    assert new <= compared


# --- the features of the issue: distance, decayed affinity, trending, friends interested,
# --- weekday/hour match, price ratio


def days(n: float) -> datetime:
    return T0 + timedelta(days=n)


def queries_frame(rows: list[tuple[int, str, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(i, *row) for i, row in enumerate(rows)],
        schema={
            "q": pl.Int64,
            "user_id": pl.Int64,
            "event_id": pl.Utf8,
            "as_of": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


def features_by_query(
    queries: pl.DataFrame,
    swipes: pl.DataFrame,
    *,
    attendance: pl.DataFrame | None = None,
    friendships: pl.DataFrame | None = None,
    events: pl.DataFrame = EVENTS,
    users: pl.DataFrame | None = None,
    venues: pl.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """features_at, rows back in query order."""
    frame = features_at(
        queries,
        swipes=swipes,
        attendance=attendance if attendance is not None else attendance_frame([]),
        friendships=friendships if friendships is not None else friendships_frame([]),
        events=events,
        users=users if users is not None else users_frame([1, 2, 3]),
        venues=venues,
    )
    return frame.sort("q").to_dicts()


KM_PER_DEGREE = 6371.0088 * math.pi / 180  # along a meridian or the equator


def test_distance_km_from_home_to_venue_and_null_when_anything_is_unknown() -> None:
    events = EVENTS.with_columns(venue_id=pl.Series(["north", "east", "blank", None]))
    venues = pl.DataFrame(
        {
            "venue_id": ["north", "east", "blank", "unused"],
            "latitude": [1.0, 0.0, None, 5.0],
            "longitude": [0.0, 2.0, 3.0, 5.0],
        }
    )
    users = users_frame([1, 2]).with_columns(
        home_lat=pl.Series([0.0, None], dtype=pl.Float64),
        home_lon=pl.Series([0.0, None], dtype=pl.Float64),
    )
    queries = queries_frame(
        [
            (1, "jazz-a", days(1)),  # home (0, 0) to (1, 0): one degree north
            (1, "jazz-b", days(1)),  # to (0, 2): two degrees east on the equator
            (1, "jazz-c", days(1)),  # venue without a latitude
            (1, "run", days(1)),  # event without a venue
            (2, "jazz-a", days(1)),  # user without a home
            (3, "jazz-a", days(1)),  # user not in the users frame
        ]
    )
    rows = features_by_query(queries, swipes_frame([]), events=events, users=users, venues=venues)
    assert rows[0]["distance_km"] == pytest.approx(KM_PER_DEGREE, rel=1e-12)
    assert rows[1]["distance_km"] == pytest.approx(2 * KM_PER_DEGREE, rel=1e-12)
    assert [r["distance_km"] for r in rows[2:]] == [None] * 4

    # without venues, venue ids or home columns: null, and the schema is unchanged
    for kwargs in (
        {"events": events, "users": users, "venues": None},
        {"events": EVENTS, "users": users, "venues": venues},
        {"events": events, "users": users_frame([1, 2]), "venues": venues},
    ):
        rows = features_by_query(queries, swipes_frame([]), **kwargs)  # type: ignore[arg-type]
        assert {r["distance_km"] for r in rows} == {None}


def test_decayed_category_affinity_halves_a_like_every_14_days() -> None:
    swipes = swipes_frame(
        [
            ("a", 1, "jazz-a", "like", days(0)),  # music
            ("b", 1, "run", "pass", days(14)),  # sports pass: in the denominator only
            ("c", 1, "run", "superlike", days(21)),  # sports
            # the earliest swipe, on an event outside the catalogue (no category): the decay's
            # origin must be the same for the per-category and the per-user sums
            ("z", 3, "ghost", "like", days(-30)),
        ]
    )
    queries = queries_frame(
        [
            (1, "jazz-b", days(28)),  # music
            (1, "run", days(28)),  # sports
            (1, "jazz-b", days(14)),  # the pass at exactly 14 days is not yet known
            (2, "jazz-b", days(28)),  # no history
        ]
    )
    rows = features_by_query(queries, swipes)
    w_a, w_b, w_c = 2.0**-2, 2.0**-1, 2.0**-0.5  # 28, 14 and 7 days old = 2, 1, 0.5 half-lives
    total = w_a + w_b + w_c
    assert rows[0]["user_category_affinity_decayed"] == pytest.approx(w_a / total, rel=1e-12)
    assert rows[1]["user_category_affinity_decayed"] == pytest.approx(w_c / total, rel=1e-12)
    assert rows[2]["user_category_affinity_decayed"] == 1.0
    assert rows[3]["user_category_affinity_decayed"] == 0.0
    # the undecayed share would be 1/3 for music: decay moves weight to the recent sports like
    assert (
        rows[0]["user_category_affinity_decayed"]
        < 1 / 3
        < rows[1]["user_category_affinity_decayed"]
    )


@pytest.mark.parametrize("span_days", [365, 3 * 365])
def test_decayed_affinity_stays_finite_and_exact_over_long_histories(span_days: int) -> None:
    swipes = swipes_frame(
        [
            ("old", 1, "jazz-a", "like", days(0)),
            ("new", 1, "run", "like", days(span_days)),
        ]
    )
    queries = queries_frame([(1, "jazz-b", days(span_days + 1)), (1, "run", days(span_days + 1))])
    music, sports = (
        r["user_category_affinity_decayed"] for r in features_by_query(queries, swipes)
    )
    old, new = 2.0 ** (-(span_days + 1) / 14), 2.0 ** (-1 / 14)
    assert music == pytest.approx(old / (old + new), rel=1e-9)
    assert sports == pytest.approx(new / (old + new), rel=1e-12)
    assert math.isfinite(music) and math.isfinite(sports)


def test_trending_counts_the_7_days_strictly_before_as_of() -> None:
    swipes = swipes_frame(
        [
            ("a", 1, "jazz-a", "like", days(0)),
            ("b", 2, "jazz-a", "pass", days(3)),  # exactly 7 days before the day-10 query: in
            ("c", 3, "jazz-a", "superlike", days(5)),
            ("d", 1, "jazz-a", "pass", days(6.5)),
            ("e", 2, "jazz-a", "like", days(10)),  # at the day-10 query: not yet known
            ("f", 3, "jazz-b", "like", days(9)),  # another event
        ]
    )
    queries = queries_frame(
        [
            (1, "jazz-a", days(10)),
            (1, "jazz-a", days(5)),
            (1, "jazz-a", days(16)),  # only "e" (day 10) is within [9, 16)
            (1, "jazz-a", days(0)),
            (1, "jazz-c", days(10)),  # never swiped
        ]
    )
    rows = features_by_query(queries, swipes)
    got = [(r["event_trending_7d"], r["event_likes_7d"]) for r in rows]
    assert got == [(3, 1), (2, 1), (1, 1), (0, 0), (0, 0)]
    assert rows[0]["event_swipes_before"] == 4  # the lifetime count keeps "a"


def test_friends_interested_counts_shared_interested_rsvps_of_friends_before_as_of() -> None:
    attendance = attendance_frame(
        [
            (2, "jazz-a", "interested", "public", at(1)),  # friend, public: counts
            (3, "jazz-a", "interested", "friends", at(2)),  # friend, friends-only: counts
            (4, "jazz-a", "interested", "private", at(3)),  # friend, private: never
            (5, "jazz-a", "interested", "public", at(4)),  # not a friend: never
            (6, "jazz-a", "going", "public", at(5)),  # friend, going: the other count
            (7, "jazz-a", "interested", "public", at(60)),  # friend, at the query: not yet
            (8, "jazz-a", "interested", "public", at(61)),  # friend, after the query
            (9, "jazz-b", "interested", "public", at(6)),  # friend, other event
        ]
    )
    friendships = friendships_frame([(1, f) for f in (2, 3, 4, 6, 7, 8, 9)] + [(5, 10)])
    queries = queries_frame([(1, "jazz-a", at(60)), (1, "jazz-a", at(120)), (10, "jazz-a", at(60))])
    rows = features_by_query(
        queries, swipes_frame([]), attendance=attendance, friendships=friendships
    )
    assert [r["friends_interested_before"] for r in rows] == [2, 4, 1]
    assert [r["friends_going_before"] for r in rows] == [1, 1, 0]


@pytest.mark.parametrize("visibility, want", [("public", 2), ("friends", 2), ("private", 1)])
def test_private_interested_rsvp_is_the_only_difference(visibility: str, want: int) -> None:
    attendance = attendance_frame(
        [
            (2, "jazz-a", "interested", "public", at(1)),
            (3, "jazz-a", "interested", visibility, at(2)),
        ]
    )
    rows = features_by_query(
        queries_frame([(1, "jazz-a", at(60))]),
        swipes_frame([]),
        attendance=attendance,
        friendships=friendships_frame([(1, 2), (1, 3)]),
    )
    assert rows[0]["friends_interested_before"] == want


MONDAY = T0.replace(hour=0)  # 2026-03-02 is a Monday
WHEN_EVENTS = events_frame(
    [
        ("mon-19", "music", MONDAY + timedelta(hours=19), None, False, None),
        ("mon-20", "music", MONDAY + timedelta(hours=20), None, False, None),
        ("thu-19", "music", MONDAY + timedelta(days=3, hours=19), None, False, None),
        ("thu-09", "sports", MONDAY + timedelta(days=3, hours=9), None, False, None),
        ("sat-13", "sports", MONDAY + timedelta(days=5, hours=13), None, False, None),
        ("sat-23", "art", MONDAY + timedelta(days=5, hours=23), None, False, None),
        ("someday", "art", None, None, False, None),
    ]
)


def test_weekday_and_hour_match_are_shares_of_the_users_likes() -> None:
    swipes = swipes_frame(
        [
            ("a", 1, "mon-19", "like", at(0)),
            ("b", 1, "thu-19", "superlike", at(1)),
            ("c", 1, "thu-09", "like", at(2)),
            ("d", 1, "sat-13", "pass", at(3)),  # a pass is not a like
            ("e", 1, "someday", "like", at(4)),  # a like without a start: in no share
            ("f", 1, "sat-23", "like", at(10)),  # at the queries: not yet known
        ]
    )
    queries = queries_frame(
        [
            (1, "mon-20", at(10)),  # Monday 18-21h: 1 of 3 on Monday, 2 of 3 in 18-21h
            (1, "thu-09", at(10)),  # Thursday 9-12h: 2 of 3 on Thursday, 1 of 3 in 9-12h
            (1, "sat-13", at(10)),  # Saturday 12-15h: none
            (1, "someday", at(10)),  # start unknown: unknown
            (2, "mon-20", at(10)),  # no likes: 0
        ]
    )
    rows = features_by_query(queries, swipes, events=WHEN_EVENTS)
    got = [(r["weekday_match"], r["hour_match"]) for r in rows]
    assert got == [
        pytest.approx((1 / 3, 2 / 3)),
        pytest.approx((2 / 3, 1 / 3)),
        (0.0, 0.0),
        (None, None),
        (0.0, 0.0),
    ]


def test_price_ratio_compares_with_the_mean_price_the_user_liked() -> None:
    swipes = swipes_frame(
        [
            ("a", 1, "jazz-a", "like", at(0)),  # $15
            ("b", 1, "jazz-b", "like", at(1)),  # free, no price: $0
            ("c", 1, "jazz-c", "superlike", at(2)),  # $20
            ("d", 1, "run", "like", at(3)),  # price unknown: not in the mean
            ("p", 2, "jazz-a", "pass", at(0)),  # passes say nothing about price
            ("f", 3, "jazz-b", "like", at(0)),  # only free likes: mean 0
            ("x", 1, "jazz-a", "like", at(10)),  # at the queries: not yet known
        ]
    )
    queries = queries_frame(
        [
            (1, "jazz-c", at(10)),  # $20 / ($35 / 3)
            (1, "jazz-a", at(10)),  # $15 / ($35 / 3)
            (1, "jazz-b", at(10)),  # $0
            (1, "run", at(10)),  # price unknown
            (2, "jazz-a", at(10)),  # no likes
            (3, "jazz-a", at(10)),  # mean liked price 0
            (1, "jazz-a", at(1)),  # only "a" known: $15 / $15
        ]
    )
    rows = features_by_query(queries, swipes)
    got = [r["price_ratio"] for r in rows]
    assert got[:3] == [pytest.approx(20 * 3 / 35), pytest.approx(15 * 3 / 35), 0.0]
    assert got[3:6] == [None, None, None]
    assert got[6] == pytest.approx(1.0)


NEW_FEATURES = (
    "distance_km",
    "user_category_affinity_decayed",
    "event_trending_7d",
    "event_likes_7d",
    "friends_interested_before",
    "weekday_match",
    "hour_match",
    "price_ratio",
)


def test_new_features_ignore_everything_at_or_after_as_of() -> None:
    """Adding swipes and RSVPs at or after as_of changes no feature, new ones included."""
    as_of = days(20)
    events = WHEN_EVENTS.with_columns(
        price_min_cents=pl.Series([1000, 3000, 2000, None, 500, 800, 0]),
        venue_id=pl.lit("v"),
    )
    venues = pl.DataFrame({"venue_id": ["v"], "latitude": [0.5], "longitude": [0.5]})
    users = users_frame([1, 2, 3]).with_columns(home_lat=pl.lit(0.0), home_lon=pl.lit(0.0))
    past_swipes = [
        ("p1", 1, "mon-19", "like", days(2)),
        ("p2", 1, "thu-19", "superlike", days(9)),
        ("p3", 1, "sat-13", "pass", days(15)),
        ("p4", 1, "thu-09", "like", days(19)),
        ("p5", 2, "mon-20", "like", days(14)),
        ("p6", 3, "mon-20", "pass", days(18)),
        ("p7", 2, "thu-19", "like", days(19.5)),
    ]
    past_rsvps = [
        (2, "mon-20", "going", "public", days(5)),
        (3, "mon-20", "interested", "friends", days(16)),
        (3, "thu-19", "interested", "public", days(17)),
    ]
    # everything below happens at or after as_of, and would change every new feature
    future_swipes = [
        ("f1", 1, "mon-20", "like", as_of),  # exactly at as_of
        ("f2", 1, "sat-23", "superlike", as_of),
        ("f3", 2, "mon-20", "superlike", as_of),
        ("f4", 3, "thu-19", "like", as_of),
        ("f5", 1, "sat-13", "like", as_of + timedelta(microseconds=1)),
        ("f6", 3, "mon-20", "like", days(21)),
        ("f7", 1, "mon-19", "pass", days(30)),
    ]
    future_rsvps = [
        (2, "thu-19", "interested", "public", as_of),  # exactly at as_of
        (2, "sat-13", "interested", "public", as_of),
        (3, "sat-23", "going", "public", as_of),
        (2, "sat-23", "interested", "friends", days(25)),
    ]
    friendships = friendships_frame([(1, 2), (1, 3)])
    queries = queries_frame(
        [(1, e, as_of) for e in ("mon-20", "thu-19", "sat-13", "sat-23", "someday")]
        + [(2, "mon-20", as_of), (3, "thu-19", as_of)]
    )

    def run(swipe_rows: list[Any], rsvp_rows: list[Any]) -> list[dict[str, Any]]:
        return features_by_query(
            queries,
            swipes_frame(swipe_rows),
            attendance=attendance_frame(rsvp_rows),
            friendships=friendships,
            events=events,
            users=users,
            venues=venues,
        )

    before = run(past_swipes, past_rsvps)
    after = run(past_swipes + future_swipes, past_rsvps + future_rsvps)
    for old, new in zip(before, after, strict=True):
        for name in TRAINING_SCHEMA:
            if name not in old:
                continue
            if isinstance(old[name], float):  # decayed sums may differ in the last bits
                assert new[name] == pytest.approx(old[name], rel=1e-12), (old["event_id"], name)
            else:
                assert new[name] == old[name], (old["event_id"], name)
    # the history is not trivial: each new feature is non-zero somewhere before as_of
    for name in NEW_FEATURES:
        assert any(row[name] for row in before), name
    # and the future rows do reach a query made just after them
    later = queries.with_columns(as_of=pl.lit(days(21.5)).dt.convert_time_zone("UTC"))
    moved = features_by_query(
        later,
        swipes_frame(past_swipes + future_swipes),
        attendance=attendance_frame(past_rsvps + future_rsvps),
        friendships=friendships,
        events=events,
        users=users,
        venues=venues,
    )
    changed = {
        name
        for a, b in zip(before, moved, strict=True)
        for name in NEW_FEATURES
        if a[name] != b[name]
    }
    assert changed == set(NEW_FEATURES) - {"distance_km"}  # static: time cannot change it
