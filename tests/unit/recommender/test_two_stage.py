"""One code path: the nightly feed is the generic two-stage core with the app's plug-ins."""

from __future__ import annotations

import polars as pl

from models import two_stage
from models.ranker import CANDIDATE_FEATURES
from recommender import feed
from recommender import holdout as ev

PER_SOURCE = 50


def test_the_nightly_ranker_order_is_the_core_over_the_nightly_plug_ins(
    holdout: ev.Holdout, stage_models: ev.StageModels
) -> None:
    """What the evaluation asset scores as `ranker` is exactly `propose` -> `scored` ->
    `top_n` of the core, fed the nightly generators and `features_at` as of the cutoff."""
    lists = ev.feed_lists(holdout, stage_models, per_source=PER_SOURCE)
    fitted = feed.generators(
        als=stage_models.als,
        users=holdout.users,
        events=holdout.events,
        venues=holdout.venues,
        interactions=holdout.interactions,
    )
    proposed = two_stage.propose(
        fitted,
        users=holdout.users,
        eligible=holdout.eligible,
        exclude=holdout.interactions,
        per_source=PER_SOURCE,
    )
    featurize = feed.nightly_features(
        now=holdout.cutoff,
        swipes=holdout.swipes,
        attendance=holdout.attendance,
        friendships=holdout.friendships,
        events=holdout.events,
        users=holdout.users,
        venues=holdout.venues,
    )
    scored = two_stage.scored(proposed, featurize=featurize, ranker=stage_models.ranker)
    assert lists["candidates"].equals(proposed)
    assert lists["ranker"].equals(two_stage.top_n(scored, ev.LIST_LENGTH))


def test_nightly_candidates_carry_every_generator_ease_and_item_knn_included(
    holdout: ev.Holdout, stage_models: ev.StageModels
) -> None:
    proposed = ev.feed_lists(holdout, stage_models, per_source=PER_SOURCE)["candidates"]
    assert set(CANDIDATE_FEATURES) <= set(proposed.columns)
    assert {"score_ease", "score_item_knn"} <= set(CANDIDATE_FEATURES)
    for column in ("score_ease", "score_item_knn"):
        assert proposed[column].is_not_null().any(), column
    assert set(proposed["source"].unique()) <= set(feed.SOURCES)
    # every pair is proposed once, however many generators proposed it
    assert proposed.select(pl.struct("user_id", "event_id").is_unique().all()).item()
