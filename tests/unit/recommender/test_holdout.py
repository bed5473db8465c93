"""The holdout protocol, the stage lists and the champion gate, on the tiny offline city."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from recommender import holdout as ev
from sources.synthetic.offline import OfflineCity

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)  # the tiny city's `now` (see conftest)


def test_cutoff_is_days_before_the_last_swipe(city: OfflineCity) -> None:
    last = city.swipes["created_at"].max()
    assert ev.holdout_cutoff(city.swipes, 7) == last - timedelta(days=7)
    with pytest.raises(ValueError, match="no swipes"):
        ev.holdout_cutoff(city.swipes.head(0), 7)
    with pytest.raises(ValueError, match="> 0"):
        ev.holdout_cutoff(city.swipes, 0)


def test_train_side_is_strictly_before_the_cutoff(holdout: ev.Holdout) -> None:
    assert holdout.swipes["created_at"].max() < holdout.cutoff
    assert holdout.attendance["updated_at"].max() < holdout.cutoff


def test_judged_events_were_showable_and_unseen_at_the_cutoff(holdout: ev.Holdout) -> None:
    assert holdout.test.height > 0
    assert (holdout.test["relevance"] > 0).all()
    eligible = set(holdout.eligible["event_id"].to_list())
    assert set(holdout.test["event_id"].to_list()) <= eligible
    seen = holdout.test.join(holdout.interactions, on=["user_id", "event_id"])
    assert seen.is_empty()
    assert set(holdout.users["user_id"].to_list()) == set(holdout.test["user_id"].to_list())


def test_events_that_ended_since_still_count_as_showable_then(city: OfflineCity) -> None:
    """Status "ended" today says nothing about the cutoff; "canceled" does."""
    events = pl.DataFrame(
        {"status": ["ended", "completed", "canceled", "draft", "live"]}
    ).with_columns(is_active=pl.lit(False))
    assert ev.catalogue_at(events, NOW)["is_active"].to_list() == [True, True, False, False, True]


def test_relevance_is_graded_and_takes_the_strongest_action() -> None:
    cutoff = NOW
    swipes = pl.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "event_id": ["a", "b", "a", "c"],
            "action": ["like", "superlike", "pass", "like"],
            "created_at": [NOW + timedelta(hours=1)] * 3 + [NOW - timedelta(hours=1)],
        }
    )
    attendance = pl.DataFrame(
        {
            "user_id": [1, 2],
            "event_id": ["a", "a"],
            "status": ["going", "interested"],
            "updated_at": [NOW + timedelta(hours=2)] * 2,
        }
    )
    got = ev.relevance_after(swipes, attendance, cutoff)
    assert got.rows() == [(1, "a", 2), (1, "b", 2)]


def test_max_users_samples_whole_users(city: OfflineCity, holdout: ev.Holdout) -> None:
    small = ev.split_at(holdout.cutoff, city.tables, max_users=5)
    assert small.users.height == 5
    assert set(small.test["user_id"].to_list()) == set(small.users["user_id"].to_list())


def test_random_lists_stay_in_metro_and_unseen(holdout: ev.Holdout) -> None:
    lists = ev.random_lists(holdout, n=10)
    assert lists.group_by("user_id").len()["len"].max() == 10
    metro = lists.join(holdout.users.select("user_id", "metro"), on="user_id").join(
        holdout.eligible.select("event_id", pl.col("metro").alias("event_metro")), on="event_id"
    )
    assert (metro["metro"] == metro["event_metro"]).all()
    assert lists.join(holdout.interactions, on=["user_id", "event_id"]).is_empty()


def test_candidate_recall_counts_per_source_and_union() -> None:
    test = pl.DataFrame({"user_id": [1, 1, 2], "event_id": ["a", "b", "c"], "relevance": [1, 1, 2]})
    proposed = pl.DataFrame(
        {"user_id": [1, 1, 2], "event_id": ["a", "x", "c"], "source": ["als", "geo", "geo"]}
    )
    recall = ev.candidate_recall(proposed, test)
    assert recall["candidate_recall"] == pytest.approx((0.5 + 1.0) / 2)
    assert recall["candidate_recall.als"] == pytest.approx((0.5 + 0.0) / 2)
    assert recall["candidate_recall.geo"] == pytest.approx((0.0 + 1.0) / 2)


def _table(value: dict[str, float], gain: tuple[float, float, float] | None) -> pl.DataFrame:
    """A gate input: online values per model, the challenger's paired gain interval."""
    rows = []
    for model, v in value.items():
        g = gain if model == ev.CHALLENGER and gain is not None else (None, None, None)
        rows.append(
            {"model": model, "ndcg@10": 0.5, "online_value": v}
            | dict(zip(ev.GAIN_COLUMNS, g, strict=True))
        )
    return pl.DataFrame(rows, schema_overrides=dict.fromkeys(ev.GAIN_COLUMNS, pl.Float64))


def test_gate_promotes_only_when_the_lower_bound_of_the_gain_is_above_zero() -> None:
    assert ev.gate(_table({"final_feed": 1.0}, None)).passed  # no champion yet
    better = ev.gate(_table({"final_feed": 5.2, "champion": 5.0}, (0.2, 0.05, 0.35)))
    assert better.passed and better.gain_low == 0.05 and "beats" in better.reason
    # Higher on average but the interval reaches below zero: noise, the champion stays.
    unsure = ev.gate(_table({"final_feed": 5.1, "champion": 5.0}, (0.1, -0.02, 0.2)))
    assert not unsure.passed and "does not beat" in unsure.reason
    tie = ev.gate(_table({"final_feed": 5.0, "champion": 5.0}, (0.0, 0.0, 0.0)))
    assert not tie.passed
    assert not ev.gate(_table({"random": 9.0}, None)).passed  # no challenger row
    assert not ev.gate(
        _table({"final_feed": 5.2, "champion": 5.0}, (0.2, 0.05, 0.35)), min_gain=0.1
    ).passed


def test_gate_never_promotes_on_holdout_ndcg_alone() -> None:
    """Production data without a simulator or impression log: nothing unbiased to decide on."""
    table = pl.DataFrame({"model": ["final_feed", "champion"], "ndcg@10": [0.9, 0.1]})
    decision = ev.gate(ev.with_online(table, None))
    assert not decision.passed and "no unbiased estimate" in decision.reason


def test_key_metrics_are_the_feeds_few_numbers() -> None:
    """Eight numbers of the new feed, not every stage's every metric; missing ones are None."""
    table = _table({"final_feed": 5.2, "champion": 5.0, "oracle": 6.0}, (0.2, 0.05, 0.35))
    table = table.with_columns(
        pl.lit(0.3).alias("recall@20"), pl.lit(0.2).alias("map@10"), pl.lit(0.4).alias("coverage")
    )
    metrics = ev.key_metrics(table, {"candidate_recall": 0.7, "candidate_recall.als": 0.2})
    assert metrics == pytest.approx(
        {
            "ndcg@10": 0.5,
            "recall@20": 0.3,
            "map@10": 0.2,
            "coverage": 0.4,
            "value": 5.2,
            "oracle_gap": 0.8,
            "gain_low": 0.05,
            "candidate_recall": 0.7,
        }
    )
    without = ev.key_metrics(ev.with_online(pl.DataFrame({"model": ["final_feed"]}), None), {})
    assert set(without.values()) == {None}


def test_whole_evaluation_scores_every_stage_and_beats_random(
    holdout: ev.Holdout, stage_models: ev.StageModels
) -> None:
    models = stage_models
    lists = ev.baseline_lists(holdout, models.als)
    feed = ev.feed_lists(holdout, models, per_source=50)
    recall = ev.candidate_recall(feed.pop("candidates"), holdout.test)
    scores = ev.ranker_scores(feed.pop("scored"), holdout.test)
    lists |= feed
    table = ev.score_table(lists, holdout, versions={"final_feed": 3})
    assert set(table["model"].to_list()) == {
        "random",
        "popularity",
        "als",
        "ranker",
        "final_feed",
        ev.NO_EXPLORATION,
    }
    ndcg = dict(zip(table["model"].to_list(), table["ndcg@10"].to_list(), strict=True))
    assert ndcg["final_feed"] > ndcg["random"]
    assert table.filter(pl.col("model") == "final_feed")["version"].item() == 3
    assert 0 < recall["candidate_recall"] <= 1
    assert scores["label"].max() > 0 and scores.height > holdout.test.height
    buckets = ev.activity_buckets(lists, holdout)
    assert set(buckets["model"].unique().to_list()) == set(lists)
