"""What content and geo candidates are for: reaching users with events nobody swiped yet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.geo import haversine_km
from models.base import ModelFitError
from models.content import ContentModel, ContentParams
from models.geo import GeoModel

EVENTS = pl.DataFrame(
    {
        "event_id": ["jazz1", "jazz2", "jazz_new", "sport1", "sport_new", "blues1", "blank"],
        "name": [
            "Late night jazz trio",
            "Jazz brunch with saxophone quartet",
            "Saxophone jazz trio live",
            "Giants baseball watch party",
            "Warriors basketball watch party",
            "Blues guitar open mic",
            None,
        ],
        "summary": [
            "Smoky jazz club downtown",
            None,
            "Brand new jazz night",
            "Big screen and beers",
            "Courtside vibes on the big screen",
            "Bring your guitar",
            None,
        ],
        "category": ["music", "music", "music", "sports", "sports", "music", None],
    }
)
ALL_SF = EVENTS.select("event_id", metro=pl.lit("sf"))
USERS = pl.DataFrame({"user_id": [1, 2], "metro": ["sf", "sf"]})
# user 1 liked the jazz events; user 2 liked jazz but passed on the blues night
LIKES = pl.DataFrame(
    {
        "user_id": [1, 1, 2, 2, 2, 3],
        "event_id": ["jazz1", "jazz2", "jazz1", "jazz2", "blues1", "sport1"],
        "weight": [1.0, 3.0, 1.0, 3.0, 0.0, 1.0],
    }
)


def recommend_content(model: ContentModel, n: int = 10) -> pl.DataFrame:
    return model.recommend(users=USERS, candidates=ALL_SF, exclude=LIKES, n=n)


def events_for(user: int, recs: pl.DataFrame) -> list[str]:
    return recs.filter(pl.col("user_id") == user).sort("rank")["event_id"].to_list()


def test_brand_new_event_reaches_the_users_whose_likes_read_like_it() -> None:
    recs = recommend_content(ContentModel(EVENTS).fit(LIKES))
    assert events_for(1, recs)[0] == "jazz_new"  # no interaction at all, first by text


def test_jazz_fan_gets_jazz_before_sports() -> None:
    order = events_for(1, recommend_content(ContentModel(EVENTS).fit(LIKES)))
    assert "sport1" not in order or order.index("jazz_new") < order.index("sport1")
    assert "sport_new" not in order or order.index("jazz_new") < order.index("sport_new")


def test_passes_push_similar_items_down() -> None:
    extra = pl.DataFrame({"event_id": ["blues2"], "metro": ["sf"]})
    events = pl.concat(
        [
            EVENTS,
            pl.DataFrame(
                {
                    "event_id": ["blues2"],
                    "name": ["Blues guitar jam"],
                    "summary": ["Bring your guitar"],
                    "category": ["music"],
                }
            ),
        ]
    )
    model = ContentModel(events).fit(LIKES)
    recs = model.recommend(users=USERS, candidates=pl.concat([ALL_SF, extra]), exclude=LIKES, n=10)
    score = {(u, e): s for u, e, s in recs.select("user_id", "event_id", "score").rows()}
    # both liked the same jazz; only user 2 passed the blues night, so blues2 drops for them
    assert score.get((2, "blues2"), 0.0) < score[(1, "blues2")]


def test_user_without_likes_and_event_without_text_are_left_out() -> None:
    recs = (
        ContentModel(EVENTS)
        .fit(LIKES)
        .recommend(
            users=pl.DataFrame({"user_id": [1, 7], "metro": ["sf", "sf"]}),
            candidates=ALL_SF,
            exclude=LIKES,
            n=10,
        )
    )
    assert recs["user_id"].unique().to_list() == [1]
    assert "blank" not in recs["event_id"].to_list()


def test_no_text_fails_loudly() -> None:
    blank = EVENTS.with_columns(name=pl.lit(None), summary=pl.lit(None), category=pl.lit(None))
    with pytest.raises(ModelFitError):
        ContentModel(blank).fit(LIKES)


def test_loaded_model_can_score_events_created_after_the_fit(tmp_path: Path) -> None:
    old = EVENTS.filter(pl.col("event_id") != "jazz_new")
    ContentModel(old).fit(LIKES).save(tmp_path / "content.npz")
    loaded = ContentModel.load(tmp_path / "content.npz")
    assert "jazz_new" not in recommend_content(loaded)["event_id"].to_list()
    loaded.add_events(EVENTS.filter(pl.col("event_id") == "jazz_new"))
    assert events_for(1, recommend_content(loaded))[0] == "jazz_new"


# ---- cold start: onboarding categories ----

MUSIC = {"jazz1", "jazz2", "jazz_new", "blues1"}
NEWCOMERS = pl.DataFrame({"user_id": [8, 9], "metro": ["sf", "sf"]})
NO_EXCLUDE_EVENTS = pl.DataFrame(schema={"user_id": pl.Int64, "event_id": pl.Utf8})


def onboarding(picks: dict[int, list[str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"user_id": list(picks), "onboarding_categories": list(picks.values())},
        schema={"user_id": pl.Int64, "onboarding_categories": pl.List(pl.Utf8)},
    )


def recommend_newcomers(model: ContentModel, users: pl.DataFrame = NEWCOMERS) -> pl.DataFrame:
    return model.recommend(users=users, candidates=ALL_SF, exclude=NO_EXCLUDE_EVENTS, n=10)


def test_newcomer_who_picked_music_gets_music_first() -> None:
    model = ContentModel(EVENTS).fit(LIKES, onboarding({8: ["music"], 9: []}))
    order = events_for(8, recommend_newcomers(model))
    assert order and set(order[: len(MUSIC)]) == MUSIC
    assert "blank" not in order


def test_newcomer_without_swipes_or_onboarding_gets_nothing() -> None:
    model = ContentModel(EVENTS).fit(LIKES, onboarding({8: ["music"], 9: []}))
    recs = recommend_newcomers(model)
    assert 9 not in recs["user_id"].to_list()
    unknown = onboarding({8: ["quilting circles"]})  # no event says so: no profile
    assert recommend_newcomers(ContentModel(EVENTS).fit(LIKES, unknown)).is_empty()


def test_category_names_with_spaces_and_punctuation_match_event_categories() -> None:
    events = EVENTS.with_columns(
        category=pl.col("category").replace({"sports": "Sports & Fitness", "music": "Music"})
    )
    model = ContentModel(events).fit(LIKES, onboarding({8: ["Sports & Fitness"]}))
    assert set(events_for(8, recommend_newcomers(model))) == {"sport1", "sport_new"}


def test_a_city_where_nobody_swiped_yet_still_fits_from_onboarding() -> None:
    nobody = LIKES.head(0)
    model = ContentModel(EVENTS).fit(nobody, onboarding({8: ["sports"]}))
    assert set(events_for(8, recommend_newcomers(model))) == {"sport1", "sport_new"}
    with pytest.raises(ModelFitError):
        ContentModel(EVENTS).fit(nobody, onboarding({8: []}))
    with pytest.raises(ModelFitError):
        ContentModel(EVENTS).fit(nobody, pl.DataFrame({"user_id": [8]}))  # no such column


def test_likes_outrank_onboarding_unless_a_prior_is_asked_for() -> None:
    """User 1 liked jazz but ticked sports: by default the likes alone decide."""
    picks = onboarding({1: ["sports"]})
    plain = recommend_content(ContentModel(EVENTS).fit(LIKES))
    assert recommend_content(ContentModel(EVENTS).fit(LIKES, picks)).equals(plain)
    nudged = recommend_content(
        ContentModel(EVENTS, ContentParams(onboarding_prior=0.5)).fit(LIKES, picks)
    )
    assert events_for(1, nudged)[0] == "jazz_new"  # still a jazz fan first
    assert "sport_new" in events_for(1, nudged)
    assert "sport_new" not in events_for(1, plain)


def test_onboarding_profiles_survive_save_and_load(tmp_path: Path) -> None:
    params = ContentParams(onboarding_prior=0.25)
    model = ContentModel(EVENTS, params).fit(LIKES, onboarding({8: ["music"], 1: ["sports"]}))
    model.save(tmp_path / "content.npz")
    loaded = ContentModel.load(tmp_path / "content.npz")
    assert loaded.params == params
    assert recommend_newcomers(loaded).equals(recommend_newcomers(model))
    assert recommend_content(loaded).equals(recommend_content(model))


# ---- geo ----

SF = (37.7749, -122.4194)
OAKLAND = (37.8044, -122.2712)


def test_haversine_known_distances() -> None:
    assert haversine_km(*SF, *OAKLAND) == pytest.approx(13.4, abs=1.0)
    assert haversine_km(*SF, *SF) == 0.0
    matrix = haversine_km(
        np.array([SF[0], OAKLAND[0]])[:, None],
        np.array([SF[1], OAKLAND[1]])[:, None],
        np.array([SF[0], OAKLAND[0], SF[0]]),
        np.array([SF[1], OAKLAND[1], SF[1]]),
    )
    assert matrix.shape == (2, 3)
    np.testing.assert_allclose(matrix, matrix[:, [0, 1, 0]])
    np.testing.assert_allclose(np.diag(matrix[:, :2]), 0.0, atol=1e-9)


HOMES = pl.DataFrame({"user_id": [1, 2], "home_lat": [SF[0], None], "home_lon": [SF[1], None]})
VENUES = pl.DataFrame(
    {
        "event_id": ["near", "mid", "far", "nowhere", "oak"],
        "latitude": [37.776, 37.79, 37.85, None, OAKLAND[0]],
        "longitude": [-122.42, -122.40, -122.30, None, OAKLAND[1]],
    }
)
GEO_CANDIDATES = pl.DataFrame(
    {
        "event_id": ["far", "mid", "near", "nowhere", "unplaced", "oak"],
        "metro": ["sf", "sf", "sf", "sf", "sf", "oakland"],
    }
)
NO_EXCLUDE = pl.DataFrame(schema={"user_id": pl.Int64, "event_id": pl.Utf8})


def recommend_geo(model: GeoModel, users: pl.DataFrame = USERS) -> pl.DataFrame:
    return model.recommend(users=users, candidates=GEO_CANDIDATES, exclude=NO_EXCLUDE, n=10)


def test_nearest_event_ranks_first_and_unlocated_never_appear() -> None:
    recs = recommend_geo(GeoModel(HOMES, VENUES).fit(LIKES))
    assert events_for(1, recs) == ["near", "mid", "far"]  # no coordinates, no oakland
    assert recs["score"][0] == pytest.approx(np.exp(-0.14 / 5.0), abs=0.01)


def test_users_without_home_get_nothing() -> None:
    assert 2 not in recommend_geo(GeoModel(HOMES, VENUES).fit(LIKES))["user_id"].to_list()


def test_popularity_breaks_ties_at_one_venue() -> None:
    venues = pl.DataFrame(
        {"event_id": ["quiet", "busy"], "latitude": [37.78] * 2, "longitude": [-122.41] * 2}
    )
    liked = pl.DataFrame({"user_id": [5], "event_id": ["busy"], "weight": [3.0]})
    recs = (
        GeoModel(HOMES, venues)
        .fit(liked)
        .recommend(
            users=USERS,
            candidates=pl.DataFrame({"event_id": ["quiet", "busy"], "metro": ["sf", "sf"]}),
            exclude=NO_EXCLUDE,
            n=2,
        )
    )
    assert events_for(1, recs) == ["busy", "quiet"]


def test_scale_is_configurable_and_survives_save(tmp_path: Path) -> None:
    model = GeoModel(HOMES, VENUES, scale_km=1.0).fit(LIKES)
    model.save(tmp_path / "geo.parquet")
    loaded = GeoModel.load(tmp_path / "geo.parquet")
    assert loaded.scale_km == 1.0
    assert recommend_geo(loaded).equals(recommend_geo(model))
    wide = recommend_geo(GeoModel(HOMES, VENUES, scale_km=50.0).fit(LIKES))
    assert recommend_geo(model)["score"][-1] < wide["score"][-1]
