"""The re-rank step: valid, varied, exploring and explained feeds, on hand-made tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from models.exploration import Exploration
from models.rerank import diversify, final_feed, hard_filters, reasons

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
SF = (37.7749, -122.4194)
NYC = (40.7128, -74.0060)


def events_table() -> pl.DataFrame:
    later, earlier = NOW + timedelta(days=2), NOW - timedelta(days=1)
    rows = [
        # event_id, is_active, start, lat, lon, category
        ("ok", True, later, SF[0] + 0.01, SF[1], "jazz"),
        ("past", True, earlier, SF[0], SF[1], "jazz"),
        ("inactive", False, later, SF[0], SF[1], "jazz"),
        ("nyc", True, later, NYC[0], NYC[1], "jazz"),
        ("swiped", True, later, SF[0], SF[1], "jazz"),
        ("nocoords", True, later, None, None, "food"),
    ]
    return pl.DataFrame(
        rows,
        schema={
            "event_id": pl.Utf8,
            "is_active": pl.Boolean,
            "start_utc": pl.Datetime("us", "UTC"),
            "latitude": pl.Float64,
            "longitude": pl.Float64,
            "category": pl.Utf8,
        },
        orient="row",
    )


USERS = pl.DataFrame(
    {"user_id": [1, 2], "home_lat": [SF[0], None], "home_lon": [SF[1], None]},
    schema={"user_id": pl.Int64, "home_lat": pl.Float64, "home_lon": pl.Float64},
)
SWIPED = pl.DataFrame({"user_id": [1], "event_id": ["swiped"]})


def scored_for(users: list[int], items: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [u for u in users for _ in items],
            "event_id": items * len(users),
            "score": [float(len(items) - i) for _ in users for i in range(len(items))],
        }
    )


def test_hard_filters_drop_invalid_events_and_keep_unknown_geography() -> None:
    items = ["ok", "past", "inactive", "nyc", "swiped", "nocoords"]
    scored = scored_for([1], items).with_columns(extra=pl.lit("x"))
    kept = hard_filters(scored, events=events_table(), users=USERS, swiped=SWIPED, now=NOW)
    assert sorted(kept["event_id"]) == ["nocoords", "ok"]
    assert kept.columns == ["user_id", "event_id", "score", "extra"]


def test_hard_filters_user_without_home_passes_distance_but_not_other_rules() -> None:
    scored = scored_for([2], ["ok", "nyc", "past", "swiped"])
    kept = hard_filters(scored, events=events_table(), users=USERS, swiped=SWIPED, now=NOW)
    # user 2 has no home and did not swipe "swiped"
    assert sorted(kept["event_id"]) == ["nyc", "ok", "swiped"]


def test_hard_filters_user_radius_column_overrides_default() -> None:
    users = USERS.with_columns(radius_km=pl.Series([5000.0, None]))
    kept = hard_filters(
        scored_for([1], ["nyc"]), events=events_table(), users=users, swiped=SWIPED, now=NOW
    )
    assert kept["event_id"].to_list() == ["nyc"]


CATS = pl.DataFrame(
    {
        "event_id": ["j1", "j2", "j3", "j4", "j5", "f1", "f2", "s1", "u1"],
        "category": ["jazz"] * 5 + ["food"] * 2 + ["sport", None],
    }
)


def cand(user: int = 1) -> pl.DataFrame:
    ids = ["j1", "j2", "j3", "j4", "j5", "f1", "f2", "s1"]
    return pl.DataFrame(
        {"user_id": [user] * len(ids), "event_id": ids, "score": [9.0, 8, 7, 6, 5, 4, 3, 2]}
    )


def test_category_cap_holds_and_back_fills_in_score_order() -> None:
    out = diversify(cand(), categories=CATS, n=6, max_per_category=2)
    assert out["event_id"].to_list() == ["j1", "j2", "f1", "f2", "s1", "j3"]
    assert out["rank"].to_list() == [1, 2, 3, 4, 5, 6]


def test_category_cap_holds_when_alternatives_exist() -> None:
    out = diversify(cand(), categories=CATS, n=5, max_per_category=2)
    assert out["event_id"].to_list() == ["j1", "j2", "f1", "f2", "s1"]


def test_uncategorised_events_are_not_capped_together() -> None:
    scored = pl.DataFrame(
        {"user_id": [1, 1, 1], "event_id": ["u1", "x", "y"], "score": [3.0, 2, 1]}
    )
    out = diversify(scored, categories=CATS, n=3, max_per_category=1)
    assert out["event_id"].to_list() == ["u1", "x", "y"]


def test_mmr_lambda_one_is_pure_score_order() -> None:
    scored = pl.concat([cand(1), cand(2)])
    out = diversify(scored, categories=CATS, n=8, max_per_category=10, mmr_lambda=1.0)
    for user in (1, 2):
        got = out.filter(pl.col("user_id") == user).sort("rank")["event_id"].to_list()
        assert got == cand()["event_id"].to_list()


def test_mmr_small_lambda_interleaves_categories() -> None:
    out = diversify(cand(), categories=CATS, n=6, max_per_category=10, mmr_lambda=0.1)
    got = out["event_id"].to_list()
    # each category's best first; once every category is represented the max-similarity
    # penalty is equal for all, so the rest follow score order
    assert got == ["j1", "f1", "s1", "j2", "j3", "j4"]


def test_mmr_respects_cap_and_matches_vectorised_path() -> None:
    capped = diversify(cand(), categories=CATS, n=6, max_per_category=2, mmr_lambda=1.0)
    plain = diversify(cand(), categories=CATS, n=6, max_per_category=2)
    assert capped["event_id"].to_list() == plain["event_id"].to_list()


def test_reasons_priority_and_plural() -> None:
    ranked = pl.DataFrame(
        {
            "user_id": [1] * 7,
            "event_id": ["a", "b", "c", "d", "e", "f", "g"],
            "category": ["jazz", "jazz", "jazz", "food", "food", "food", "food"],
            "reason": [None, None, None, None, None, None, "set upstream"],
        }
    )
    friends = pl.DataFrame({"user_id": [1, 1, 2], "event_id": ["a", "b", "d"], "n": [3, 1, 5]})
    liked = pl.DataFrame({"user_id": [1, 2], "category": ["jazz", "food"]})
    source = pl.DataFrame(
        {
            "user_id": [1] * 4,
            "event_id": ["a", "c", "d", "e"],
            "source": ["popularity", "geo", "geo", "als"],
        }
    )
    out = reasons(ranked, friends_going=friends, liked_categories=liked, source=source)
    assert out["reason"].to_list() == [
        "3 friends going",
        "1 friend going",
        "because you liked jazz",
        "close to you",
        "people like you liked this",
        "picked for you",
        "set upstream",  # a reason already given is kept
    ]
    assert out.columns == ranked.columns


def test_onboarding_picks_explain_items_for_users_without_likes() -> None:
    """User 3 never liked anything but ticked food at signup; user 1 liked jazz."""
    ranked = pl.DataFrame(
        {
            "user_id": [3, 3, 3, 3, 3, 1],
            "event_id": ["a", "b", "c", "d", "e", "f"],
            "category": ["food", "food", "jazz", "jazz", "food", "food"],
        }
    )
    friends = pl.DataFrame({"user_id": [3], "event_id": ["e"], "n": [2]})
    liked = pl.DataFrame({"user_id": [1], "category": ["jazz"]})
    picks = pl.DataFrame({"user_id": [3, 3, 1], "category": ["food", "sport", "food"]})
    source = pl.DataFrame(
        {
            "user_id": [3, 3, 3, 3, 1],
            "event_id": ["a", "c", "d", "e", "f"],
            "source": ["popularity", "content", "geo", "als", "popularity"],
        }
    )
    out = reasons(
        ranked,
        friends_going=friends,
        liked_categories=liked,
        source=source,
        onboarding_categories=picks,
    )
    assert out["reason"].to_list() == [
        "because you picked food",
        "because you picked food",  # no source at all: the pick still explains it
        "picked for you",  # content, but user 3 liked nothing it could be similar to
        "close to you",
        "2 friends going",  # social proof still comes first
        "popular near you",  # user 1 has likes: onboarding no longer speaks for them
    ]
    without = reasons(ranked, friends_going=friends, liked_categories=liked, source=source)
    assert without["reason"][0] == "popular near you"


def _dense_case(exploration: Exploration, run_id: str = "run-1") -> pl.DataFrame:
    later = NOW + timedelta(days=3)
    ids = [f"ev{i}" for i in range(12)]
    events = pl.DataFrame(
        {
            "event_id": ids,
            "is_active": [True] * 12,
            "start_utc": [later] * 12,
            "latitude": [SF[0]] * 12,
            "longitude": [SF[1]] * 12,
            "category": ["jazz", "food", "sport"] * 4,
        }
    )
    scored = pl.DataFrame(
        {
            "user_id": [u for u in (1, 2) for _ in range(10)],
            "event_id": ids[:10] * 2,
            "score": [float(10 - i) for _ in (1, 2) for i in range(10)],
        }
    )
    return final_feed(
        scored,
        events=events,
        users=USERS,
        swiped=SWIPED.with_columns(event_id=pl.lit("ev0")),
        now=NOW,
        friends_going=pl.DataFrame({"user_id": [1], "event_id": ["ev1"], "n": [2]}),
        liked_categories=pl.DataFrame({"user_id": [2], "category": ["sport"]}),
        source=scored.select("user_id", "event_id").with_columns(source=pl.lit("als")),
        run_id=run_id,
        n=6,
        max_per_category=2,
        exploration=exploration,
    )


def test_final_feed_ranks_are_dense_and_unique() -> None:
    feed = _dense_case(Exploration(share=0.5, temperature=1.0))
    assert feed.columns == ["user_id", "rank", "event_id", "score", "reason", "propensity"]
    for user in (1, 2):
        rows = feed.filter(pl.col("user_id") == user)
        assert rows["rank"].to_list() == list(range(1, 7))
        assert rows["event_id"].n_unique() == 6
        assert rows["reason"].null_count() == 0
        # odd ranks keep the diversified order (certain), even ranks are drawn
        certain = rows.filter(pl.col("rank") % 2 == 1)["propensity"]
        drawn = rows.filter(pl.col("rank") % 2 == 0)["propensity"]
        assert (certain == 1.0).all()
        assert ((drawn > 0) & (drawn < 1)).all()
        assert set(rows["event_id"]) <= {f"ev{i}" for i in range(10)}  # only scored events
    user1 = feed.filter(pl.col("user_id") == 1)
    assert "ev0" not in user1["event_id"].to_list()  # swiped: never drawn either
    assert user1.filter(pl.col("rank") == 1)["event_id"][0] == "ev1"
    assert user1.filter(pl.col("event_id") == "ev1")["reason"][0] == "2 friends going"
    assert feed.equals(_dense_case(Exploration(share=0.5, temperature=1.0)))  # same run


def test_final_feed_without_exploration_is_the_diversified_order_all_certain() -> None:
    feed = _dense_case(Exploration(share=0.0))
    assert (feed["propensity"] == 1.0).all()
    user1 = feed.filter(pl.col("user_id") == 1)["event_id"].to_list()
    # ev0 swiped; capped at 2 per category (jazz ev3, ev6, ev9; food ev1, ev4, ev7; ...)
    assert user1 == ["ev1", "ev2", "ev3", "ev4", "ev5", "ev6"]
    assert feed.equals(_dense_case(Exploration(share=0.0), run_id="another run"))


def test_final_feed_says_why_for_a_newcomer_from_their_onboarding_picks() -> None:
    later = NOW + timedelta(days=3)
    ids = [f"ev{i}" for i in range(6)]
    events = pl.DataFrame(
        {
            "event_id": ids,
            "is_active": [True] * 6,
            "start_utc": [later] * 6,
            "latitude": [SF[0]] * 6,
            "longitude": [SF[1]] * 6,
            "category": ["jazz", "food", "sport"] * 2,
        }
    )
    scored = pl.DataFrame(
        {"user_id": [2] * 6, "event_id": ids, "score": [float(6 - i) for i in range(6)]}
    )
    feed = final_feed(
        scored,
        events=events,
        users=USERS,
        swiped=SWIPED.head(0),
        now=NOW,
        friends_going=pl.DataFrame(
            schema={"user_id": pl.Int64, "event_id": pl.Utf8, "n": pl.Int64}
        ),
        liked_categories=pl.DataFrame(schema={"user_id": pl.Int64, "category": pl.Utf8}),
        source=scored.select("user_id", "event_id").with_columns(source=pl.lit("popularity")),
        run_id="run-1",
        onboarding_categories=pl.DataFrame({"user_id": [2], "category": ["food"]}),
        n=6,
    )
    why = dict(zip(feed["event_id"].to_list(), feed["reason"].to_list(), strict=True))
    assert why["ev1"] == why["ev4"] == "because you picked food"
    assert why["ev0"] == "popular near you"


@pytest.mark.parametrize("bad", [{"max_per_category": 0}, {"mmr_lambda": 1.5}])
def test_diversify_rejects_bad_parameters(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        diversify(cand(), categories=CATS, n=3, **bad)  # type: ignore[arg-type]
