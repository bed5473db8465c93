"""One contract every candidate model honours (after implicit's recommender_base_test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from models.als import ALSModel, ALSParams
from models.base import CandidateModel, ModelFitError, NotFittedError
from models.content import ContentModel
from models.geo import GeoModel
from models.popularity import PopularityModel
from models.topn import blend


def two_communities() -> pl.DataFrame:
    """Users 1-20 like music events m*, users 21-40 like food events f*; one item each held out."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, 41):
        prefix = "m" if user <= 20 else "f"
        for item in rng.choice(10, size=6, replace=False):
            rows.append({"user_id": user, "event_id": f"{prefix}{item}", "weight": 1.0})
    rows.append({"user_id": 1, "event_id": "f0", "weight": 0.0})  # a pass
    return pl.DataFrame(rows)


INTERACTIONS = two_communities()
USERS = pl.DataFrame({"user_id": list(range(1, 41)) + [99], "metro": ["sf"] * 40 + ["sf"]})
CANDIDATES = pl.DataFrame(
    {
        "event_id": [f"m{i}" for i in range(10)] + [f"f{i}" for i in range(10)] + ["oak1"],
        "metro": ["sf"] * 20 + ["oakland"],
    }
)
SEEN = INTERACTIONS.select("user_id", "event_id")


class CandidateContract:
    def make(self) -> CandidateModel:
        raise NotImplementedError

    def recommend(self, model: CandidateModel, n: int = 5) -> pl.DataFrame:
        return model.recommend(users=USERS, candidates=CANDIDATES, exclude=SEEN, n=n)

    def test_ranks_are_1_to_n_without_duplicates(self) -> None:
        recs = self.recommend(self.make().fit(INTERACTIONS))
        for _, group in recs.group_by("user_id"):
            assert group.sort("rank")["rank"].to_list() == list(range(1, group.height + 1))
            assert group.height <= 5
            assert group["event_id"].n_unique() == group.height
            assert group.sort("rank")["score"].is_sorted(descending=True)

    def test_never_recommends_seen_or_other_metro_events(self) -> None:
        recs = self.recommend(self.make().fit(INTERACTIONS), n=20)
        assert recs.join(SEEN, on=["user_id", "event_id"]).height == 0
        assert "oak1" not in recs["event_id"].to_list()

    def test_save_load_round_trip(self, tmp_path: Path) -> None:
        model = self.make().fit(INTERACTIONS)
        path = tmp_path / f"model-{model.name}"
        model.save(path)
        loaded = type(model).load(path)
        assert self.recommend(loaded).equals(self.recommend(model))

    def test_unfitted_model_refuses(self) -> None:
        with pytest.raises(NotFittedError):
            self.recommend(self.make())


class TestPopularity(CandidateContract):
    def make(self) -> CandidateModel:
        return PopularityModel()

    def test_cold_user_gets_the_metro_bestsellers(self) -> None:
        recs = self.recommend(PopularityModel().fit(INTERACTIONS), n=3)
        cold = recs.filter(pl.col("user_id") == 99)["event_id"].to_list()
        scores = INTERACTIONS.group_by("event_id").agg(pl.col("weight").sum())
        best = scores.sort(["weight", "event_id"], descending=[True, False])["event_id"][:3]
        assert cold == best.to_list()


class TestALS(CandidateContract):
    def make(self) -> CandidateModel:
        return ALSModel(ALSParams(factors=4, iterations=15, regularization=0.1))

    def test_learns_the_communities(self) -> None:
        recs = self.recommend(self.make().fit(INTERACTIONS), n=3)
        music_fans = recs.filter(pl.col("user_id") <= 20)
        food_fans = recs.filter((pl.col("user_id") > 20) & (pl.col("user_id") < 99))
        assert music_fans["event_id"].str.starts_with("m").mean() > 0.9  # type: ignore[operator]
        assert food_fans["event_id"].str.starts_with("f").mean() > 0.9  # type: ignore[operator]

    def test_cold_users_get_nothing_from_als(self) -> None:
        recs = self.recommend(self.make().fit(INTERACTIONS))
        assert 99 not in recs["user_id"].to_list()

    def test_no_positive_interactions_fails_loudly(self) -> None:
        with pytest.raises(ModelFitError):
            self.make().fit(INTERACTIONS.with_columns(weight=pl.lit(0.0)))

    def test_passes_are_negatives_not_missing(self) -> None:
        """A music fan who passed the music events they did not like scores them lower than
        the same model that ignores passes: a pass is a "no", not an unseen event."""
        liked = set(INTERACTIONS.filter(pl.col("user_id") == 2)["event_id"].to_list())
        passed = sorted({f"m{i}" for i in range(10)} - liked)
        data = pl.concat(
            [
                INTERACTIONS,
                pl.DataFrame({"user_id": [2] * len(passed), "event_id": passed, "weight": 0.0}),
            ]
        )
        params = ALSParams(factors=4, iterations=15, regularization=0.1)

        def score(model: ALSModel) -> float:
            f = model.fitted
            user = int(np.searchsorted(f.user_ids, 2))
            items = np.searchsorted(f.event_ids, passed)
            return float((f.item_factors[items] @ f.user_factors[user]).mean())

        heard = ALSModel(params).fit(data)
        ignored = ALSModel(ALSParams(**{**vars(params), "pass_confidence": 0.0})).fit(data)
        assert score(heard) < score(ignored) - 0.05


MUSIC_WORDS = [
    "jazz",
    "quartet",
    "vinyl",
    "dj",
    "techno",
    "choir",
    "piano",
    "indie",
    "blues",
    "opera",
]
FOOD_WORDS = [
    "tacos",
    "ramen",
    "wine",
    "bakery",
    "bbq",
    "dumplings",
    "cheese",
    "coffee",
    "vegan",
    "oyster",
]
EVENT_TEXT = pl.DataFrame(
    {
        "event_id": [f"m{i}" for i in range(10)] + [f"f{i}" for i in range(10)] + ["oak1"],
        "name": [f"{w} night" for w in MUSIC_WORDS]
        + [f"{w} tasting" for w in FOOD_WORDS]
        + ["harbor jazz cruise"],
        "summary": ["live music on stage"] * 10 + ["eat and drink with friends"] * 9 + [None, None],
        "category": ["music"] * 10 + ["food"] * 10 + ["music"],
    }
)


class TestContent(CandidateContract):
    def make(self) -> CandidateModel:
        return ContentModel(EVENT_TEXT)

    def test_learns_the_communities(self) -> None:
        recs = self.recommend(self.make().fit(INTERACTIONS), n=3)
        music_fans = recs.filter(pl.col("user_id") <= 20)
        food_fans = recs.filter((pl.col("user_id") > 20) & (pl.col("user_id") < 99))
        assert music_fans["event_id"].str.starts_with("m").all()
        assert food_fans["event_id"].str.starts_with("f").all()
        assert 99 not in recs["user_id"].to_list()  # no likes, no profile: popularity's job

    def test_no_positive_interactions_fails_loudly(self) -> None:
        with pytest.raises(ModelFitError):
            self.make().fit(INTERACTIONS.with_columns(weight=pl.lit(0.0)))


def scattered_homes() -> pl.DataFrame:
    """Users 1-40 around central SF (user 99 has no home), deterministic."""
    rng = np.random.default_rng(1)
    return pl.DataFrame(
        {
            "user_id": list(range(1, 41)),
            "home_lat": 37.77 + rng.normal(0, 0.03, 40),
            "home_lon": -122.42 + rng.normal(0, 0.03, 40),
        }
    )


def scattered_venues() -> pl.DataFrame:
    rng = np.random.default_rng(2)
    ids = CANDIDATES["event_id"].to_list()
    lat = (37.77 + rng.normal(0, 0.03, len(ids))).tolist()
    lon = (-122.42 + rng.normal(0, 0.03, len(ids))).tolist()
    lat[ids.index("oak1")], lon[ids.index("oak1")] = 37.80, -122.27
    return pl.DataFrame({"event_id": ids, "latitude": lat, "longitude": lon})


class TestGeo(CandidateContract):
    def make(self) -> CandidateModel:
        return GeoModel(scattered_homes(), scattered_venues())

    def test_users_without_home_get_nothing(self) -> None:
        recs = self.recommend(self.make().fit(INTERACTIONS))
        assert 99 not in recs["user_id"].to_list()
        assert recs["user_id"].n_unique() == 40


def test_blend_prefers_the_first_source_and_fills_without_duplicates() -> None:
    als = pl.DataFrame(
        {"user_id": [1, 1], "rank": [1, 2], "event_id": ["x", "y"], "score": [0.9, 0.8]}
    )
    popular = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "rank": [1, 2, 3, 1],
            "event_id": ["y", "z", "w", "z"],
            "score": [50.0, 40, 30, 40],
        }
    )
    top = blend([("als", als), ("popular", popular)], n=3)
    assert top.select("user_id", "rank", "event_id", "reason").rows() == [
        (1, 1, "x", "als"),
        (1, 2, "y", "als"),
        (1, 3, "z", "popular"),
        (2, 1, "z", "popular"),
    ]
