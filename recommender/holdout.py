"""Offline evaluation of the whole feed on a time-based holdout, and the champion gate.

The question the nightly run must answer is "would yesterday's data have predicted today's
likes?", so everything here is cut at one instant, the *cutoff*: models train on what happened
before it, and each stage ranks, for every holdout user, every event it could have shown at the
cutoff (full ranking, no sampled negatives). The likes, superlikes and "going" RSVPs after the
cutoff are the relevance judgements. Every stage and baseline is scored the same way, side by
side: random, popularity, ALS alone, candidates + ranker, the final (re-ranked) feed, the
current champion's final feed, and, on the synthetic city, the oracle ranking by hidden utility.

That logged holdout only judges what the old app happened to show, so it rewards predicting
exposure (a model can beat the oracle on it). What decides is the unbiased value: on the
synthetic city every list is served to the same holdout users in the simulator
(`simulated_online`, see `sources.synthetic.online`), on real data an off-policy estimate from
logged impressions; the gate promotes only when the paired 95% interval of the challenger's
gain over the champion lies above zero.

I/O-free glue over `models/` and `features/` (no Dagster, no MLflow), so the evaluation asset,
`bench/quality.py` and tests run the very same code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import polars as pl

from features.catalogue import upcoming_active
from features.interactions import interactions as build_interactions
from features.point_in_time import LABELS, UTC_US
from features.tables import AppTables
from models.als import ALSModel
from models.evaluation import by_activity_bucket, evaluate, side_by_side
from models.evaluation.bootstrap import (
    N_BOOTSTRAP,
    Interval,
    paired_difference,
    policy_table,
    resample_indices,
)
from models.evaluation.off_policy import LoggedBandit, estimate_all
from models.exploration import Exploration
from models.popularity import PopularityModel
from models.ranker import LambdaRanker
from models.rerank import FEED_EXPLORATION
from models.two_stage import top_n
from recommender import feed
from sources.synthetic.online import (
    NO_CARD,
    OUTCOMES,
    LoggedCards,
    SimulatedHoldout,
    logged_first_cards,
)

K_VALUES = (10, 20)
LIST_LENGTH = max(K_VALUES)
# Statuses that a later moment cannot undo: ended/completed/started only say time has passed.
NEVER_SHOWABLE = ("canceled", "draft")
GOING_RELEVANCE = 2  # an RSVP "going" counts like a superlike
CHALLENGER = "final_feed"
NO_EXPLORATION = "no_exploration"  # the final feed with every slot deterministic
CHAMPION = "champion"
ORACLE = "oracle"
GATE_METRIC = "value"  # expected graded relevance per session, simulated or off-policy
MIN_GAIN = 0.0  # a gain whose 95% lower bound is above 0 is enough
ONLINE_COLUMNS = ("value", "low", "high", "likes", "superlikes", "going", "ndcg@10")
GAIN_COLUMNS = ("gain", "gain_low", "gain_high")
OFF_POLICY_SESSIONS = 200  # logged sessions per holdout user for the off-policy estimates
CLIP_WEIGHT = 100.0  # clipped IPS caps importance weights here


@dataclass(frozen=True)
class Holdout:
    """The world as it stood at `cutoff` (train side) and what users did after it (test)."""

    cutoff: datetime
    swipes: pl.DataFrame
    attendance: pl.DataFrame
    interactions: pl.DataFrame
    events: pl.DataFrame
    eligible: pl.DataFrame
    users: pl.DataFrame
    test: pl.DataFrame
    venues: pl.DataFrame
    friendships: pl.DataFrame


@dataclass(frozen=True)
class StageModels:
    """The learned parts of one feed model: what the registry versions."""

    als: ALSModel
    ranker: LambdaRanker


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    metric: str
    challenger: float
    champion: float | None
    reason: str
    gain_low: float | None = None
    gain_high: float | None = None


@dataclass(frozen=True)
class OnlineEvaluation:
    """The simulated online table and each policy's value per holdout user (same users)."""

    table: pl.DataFrame
    per_user: dict[str, npt.NDArray[np.float64]]
    users: npt.NDArray[np.int64]
    n_bootstrap: int
    seed: int

    def gain(self, challenger: str, champion: str) -> Interval | None:
        """Paired interval of (challenger − champion); None when either was not served."""
        if challenger not in self.per_user or champion not in self.per_user:
            return None
        indices = resample_indices(self.users.size, self.n_bootstrap, self.seed)
        return paired_difference(self.per_user[challenger], self.per_user[champion], indices)


def holdout_cutoff(swipes: pl.DataFrame, days: float) -> datetime:
    """`days` before the last swipe: the newest stretch of behaviour is the holdout."""
    if swipes.is_empty():
        raise ValueError("no swipes: nothing to hold out")
    if days <= 0:
        raise ValueError(f"holdout days must be > 0, got {days}")
    last: datetime = swipes.select(pl.col("created_at").cast(UTC_US).max()).item()
    return last - timedelta(days=days)


def catalogue_at(events: pl.DataFrame, cutoff: datetime) -> pl.DataFrame:
    """Events with `is_active` as it was at the cutoff.

    Today's status of an event that started after the cutoff is "ended", which says nothing
    about whether it could have been shown then; only cancelled and draft events could not.
    The catalogue keeps no publish time, so events created after the cutoff stay in the pool:
    every model (and the oracle) faces the same pool, which keeps the comparison fair.
    """
    return events.with_columns(is_active=~pl.col("status").is_in(NEVER_SHOWABLE))


def relevance_after(
    swipes: pl.DataFrame, attendance: pl.DataFrame, cutoff: datetime
) -> pl.DataFrame:
    """user_id, event_id, relevance (1 like, 2 superlike or going) for actions after cutoff."""
    after = pl.lit(cutoff).cast(UTC_US)
    liked = swipes.filter(pl.col("created_at").cast(UTC_US) >= after).select(
        "user_id",
        "event_id",
        relevance=pl.col("action").replace_strict(LABELS, return_dtype=pl.Int64),
    )
    going = attendance.filter(
        (pl.col("updated_at").cast(UTC_US) >= after) & (pl.col("status") == "going")
    ).select("user_id", "event_id", relevance=pl.lit(GOING_RELEVANCE, dtype=pl.Int64))
    return (
        pl.concat([liked, going])
        .group_by("user_id", "event_id")
        .agg(pl.col("relevance").max())
        .filter(pl.col("relevance") > 0)
        .sort("user_id", "event_id")
    )


def split_at(
    cutoff: datetime,
    tables: AppTables,
    *,
    max_users: int | None = None,
    seed: int = 0,
) -> Holdout:
    """Train side strictly before `cutoff`; test = post-cutoff positives on showable events.

    A judged event must have been recommendable at the cutoff (upcoming, not cancelled) and
    not already swiped by the user before it, otherwise no model could have ranked it.
    `max_users` samples test users (seeded) to bound the cost on big datasets.
    """
    train = tables.before(cutoff)
    seen = build_interactions(train.swipes, train.attendance)
    catalogue = catalogue_at(tables.events, cutoff)
    eligible = upcoming_active(catalogue, cutoff)
    judged = (
        relevance_after(tables.swipes, tables.attendance, cutoff)
        .join(eligible.select("event_id", "metro"), on="event_id")
        .join(tables.users.select("user_id", "metro"), on=["user_id", "metro"])
        .join(seen.select("user_id", "event_id"), on=["user_id", "event_id"], how="anti")
        .drop("metro")
    )
    test_users = judged.select("user_id").unique().sort("user_id")
    if max_users is not None and test_users.height > max_users:
        test_users = test_users.sample(max_users, seed=seed).sort("user_id")
        judged = judged.join(test_users, on="user_id", how="semi")
    return Holdout(
        cutoff=cutoff,
        swipes=train.swipes,
        attendance=train.attendance,
        interactions=seen,
        events=catalogue,
        eligible=eligible,
        users=tables.users.join(test_users, on="user_id", how="semi").sort("user_id"),
        test=judged,
        venues=tables.venues,
        friendships=tables.friendships,
    )


def random_lists(holdout: Holdout, n: int = LIST_LENGTH, seed: int = 0) -> pl.DataFrame:
    """`n` random unseen events of the user's metro: the floor every stage must clear."""
    rng = np.random.default_rng(seed)
    pairs = (
        holdout.users.select("user_id", "metro")
        .join(holdout.eligible.select("event_id", "metro"), on="metro")
        .join(
            holdout.interactions.select("user_id", "event_id"),
            on=["user_id", "event_id"],
            how="anti",
        )
    )
    return (
        pairs.with_columns(key=pl.Series(rng.random(pairs.height)))
        .sort("user_id", "key")
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32))
        .filter(pl.col("rank") <= n)
        .select("user_id", "rank", "event_id")
    )


def by_score(scored: pl.DataFrame, n: int = LIST_LENGTH) -> pl.DataFrame:
    """The ranker's order before any re-ranking: user_id, rank, event_id, score (the
    two-stage core's `top_n`, as `godo evaluate`'s pipeline row uses it)."""
    return top_n(scored, n)


def evaluation_run(holdout: Holdout) -> str:
    """The run id that seeds the evaluation's exploration draws: one per cutoff, so the
    challenger and the champion explore with the same uniforms (a tie stays exactly 0)."""
    return f"evaluation@{holdout.cutoff.isoformat()}"


def feed_lists(
    holdout: Holdout,
    models: StageModels,
    *,
    per_source: int,
    n: int = LIST_LENGTH,
    exploration: Exploration = FEED_EXPLORATION,
) -> dict[str, pl.DataFrame]:
    """What one model would have served at the cutoff: candidates, every candidate with its
    features and score (`scored`), the ranker's order and the final feed.

    EASE, item-kNN, content, geo and popularity are refitted on the train side here exactly
    as the publish step refits them on everything; only ALS and the ranker are the versioned
    artifacts. `final_feed` is what would be published, explored slots drawn as the nightly
    run draws them (seeded by `evaluation_run`); when `exploration` explores at all,
    `no_exploration` is the same feed with every slot deterministic, so the simulated value
    lost to exploring is the difference of two rows.
    """
    proposed = feed.candidates(
        als=models.als,
        users=holdout.users,
        events=holdout.events,
        venues=holdout.venues,
        interactions=holdout.interactions,
        eligible=holdout.eligible,
        per_source=per_source,
    )
    scored = feed.scored(
        proposed,
        ranker=models.ranker,
        now=holdout.cutoff,
        swipes=holdout.swipes,
        attendance=holdout.attendance,
        friendships=holdout.friendships,
        events=holdout.events,
        users=holdout.users,
        venues=holdout.venues,
    )

    def final(explored: Exploration) -> pl.DataFrame:
        return feed.feed(
            scored,
            now=holdout.cutoff,
            events=holdout.events,
            venues=holdout.venues,
            users=holdout.users,
            interactions=holdout.interactions,
            n=n,
            run_id=evaluation_run(holdout),
            exploration=explored,
        )

    lists = {
        "candidates": proposed,
        "scored": scored,
        "ranker": by_score(scored, n),
        CHALLENGER: final(exploration),
    }
    if exploration.share > 0:
        lists[NO_EXPLORATION] = final(Exploration(share=0.0))
    return lists


def baseline_lists(
    holdout: Holdout, als: ALSModel, n: int = LIST_LENGTH
) -> dict[str, pl.DataFrame]:
    """Random, popularity by metro and ALS alone, each over the same eligible pool."""
    request = {
        "users": holdout.users.select("user_id", "metro"),
        "candidates": holdout.eligible,
        "exclude": holdout.interactions.select("user_id", "event_id"),
        "n": n,
    }
    return {
        "random": random_lists(holdout, n),
        "popularity": PopularityModel().fit(holdout.interactions).recommend(**request),  # type: ignore[arg-type]
        "als": als.recommend(**request),  # type: ignore[arg-type]
    }


def candidate_recall(proposed: pl.DataFrame, test: pl.DataFrame) -> dict[str, float]:
    """Share of each user's judged events that reach the ranker, per source and for the union.

    Averaged over test users, like recall@K with K = the candidate list; a source that proposes
    nothing for a user counts 0 for that user.
    """
    users = test.group_by("user_id").agg(relevant=pl.len())

    def recall(frame: pl.DataFrame) -> float:
        hits = (
            test.join(frame.select("user_id", "event_id").unique(), on=["user_id", "event_id"])
            .group_by("user_id")
            .agg(hits=pl.len())
        )
        share = (
            users.join(hits, on="user_id", how="left")
            .select((pl.col("hits").fill_null(0) / pl.col("relevant")).mean())
            .item()
        )
        return float(share or 0.0)

    result = {"candidate_recall": recall(proposed)}
    for source in proposed["source"].unique().sort().to_list():
        result[f"candidate_recall.{source}"] = recall(proposed.filter(pl.col("source") == source))
    result["candidates_per_user"] = float(proposed.height / max(1, proposed["user_id"].n_unique()))
    return result


def score_table(
    lists: dict[str, pl.DataFrame], holdout: Holdout, versions: dict[str, int] | None = None
) -> pl.DataFrame:
    """Every metric of every list side by side (see `models.evaluation.evaluate`), best first.

    Coverage is over the eligible pool, novelty against train popularity, intra-list
    diversity by category. `versions` adds the registry version of models that have one.
    """
    item_features = holdout.events.select("event_id", "category")
    train = holdout.interactions.filter(pl.col("liked"))
    results = {
        name: evaluate(
            recs,
            holdout.test,
            K_VALUES,
            train=train,
            catalogue_size=max(1, holdout.eligible.height),
            item_features=item_features,
        )
        for name, recs in lists.items()
    }
    table = side_by_side(results)
    versions = versions or {}
    return table.with_columns(
        version=pl.col("model").replace_strict(versions, default=None, return_dtype=pl.Int64)
    )


def activity_buckets(lists: dict[str, pl.DataFrame], holdout: Holdout, k: int = 10) -> pl.DataFrame:
    """NDCG@k per user-activity bucket for every list, long format with a `model` column."""
    train = holdout.interactions.filter(pl.col("n_swipes") > 0)
    frames = [
        by_activity_bucket(recs, holdout.test, train, k=k).select(
            pl.lit(name).alias("model"), pl.all()
        )
        for name, recs in lists.items()
    ]
    return pl.concat(frames)


def ranker_scores(scored: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """The ranker's score of every candidate and its holdout label (0 when untouched).

    Separated label distributions mean the score carries signal; overlapping ones mean not.
    """
    return (
        scored.select("user_id", "event_id", "score")
        .join(test, on=["user_id", "event_id"], how="left")
        .select("score", label=pl.col("relevance").fill_null(0))
    )


def simulated_online(
    simulation: SimulatedHoldout,
    lists: dict[str, pl.DataFrame],
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> OnlineEvaluation:
    """Every list served to the holdout users in the simulator, with the oracle on top.

    The oracle row is the simulator's own ceiling (`SimulatedHoldout.oracle_decks`), so any
    `oracle` entry of `lists` (the logged-holdout oracle) is replaced by it here.
    """
    outcomes = {
        name: simulation.outcomes(simulation.decks(recs))
        for name, recs in lists.items()
        if name != ORACLE
    }
    outcomes[ORACLE] = simulation.outcomes(simulation.oracle_decks())
    columns = {name: {k: o.column(k) for k in OUTCOMES} for name, o in outcomes.items()}
    table = policy_table(columns, n_bootstrap=n_bootstrap, seed=seed)
    return OnlineEvaluation(
        table=table,
        per_user={name: o.value for name, o in outcomes.items()},
        users=simulation.user_ids,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )


def with_online(table: pl.DataFrame, online: OnlineEvaluation | None) -> pl.DataFrame:
    """The holdout table with the simulated online columns (`online_*`) and, on the
    challenger's row, the paired interval of its gain over the champion (`gain*`).

    Without a simulation (production data) the columns are there and null, so the gate and
    the readers see one shape everywhere.
    """
    online_columns = [f"online_{c}" for c in ONLINE_COLUMNS]
    if online is None:
        return table.with_columns(
            [pl.lit(None, dtype=pl.Float64).alias(c) for c in [*online_columns, *GAIN_COLUMNS]]
        )
    renamed = online.table.select(
        "model", *[pl.col(c).alias(f"online_{c}") for c in ONLINE_COLUMNS]
    )
    merged = table.join(renamed, on="model", how="full", coalesce=True)
    gain = online.gain(CHALLENGER, CHAMPION)
    values = (gain.value, gain.low, gain.high) if gain is not None else (None, None, None)
    return merged.with_columns(
        [
            pl.when(pl.col("model") == CHALLENGER)
            .then(pl.lit(v, dtype=pl.Float64))
            .otherwise(pl.lit(None, dtype=pl.Float64))
            .alias(name)
            for name, v in zip(GAIN_COLUMNS, values, strict=True)
        ]
    ).sort(pl.col("online_value").fill_null(float("-inf")), descending=True)


def gate(
    table: pl.DataFrame,
    min_gain: float = MIN_GAIN,
    challenger: str = CHALLENGER,
    champion: str = CHAMPION,
) -> GateDecision:
    """Promote the challenger only if the lower 95% bound of its gain over the champion on
    the unbiased value is above `min_gain`.

    The gain is the paired bootstrap interval of (challenger − champion) over the same users
    (`with_online`). NDCG on the logged holdout rewards predicting what the old app showed,
    so it is reported but never decides. No champion row: the first model is promoted. No
    unbiased estimate (no simulated city, no impression log yet): the champion stays.
    """
    rows = {row["model"]: row for row in table.iter_rows(named=True)}
    new = rows.get(challenger)
    if new is None:
        return GateDecision(False, GATE_METRIC, float("nan"), None, f"no row for {challenger}")
    value = new.get(f"online_{GATE_METRIC}")
    if champion not in rows:
        return GateDecision(True, GATE_METRIC, _or_nan(value), None, "no champion yet")
    old = _or_nan(rows[champion].get(f"online_{GATE_METRIC}"))
    low, high = new.get("gain_low"), new.get("gain_high")
    if low is None or high is None or math.isnan(low):
        reason = (
            "no unbiased estimate of the challenger's value (no simulated city and no "
            "impression log): the champion stays; holdout NDCG does not decide"
        )
        return GateDecision(False, GATE_METRIC, _or_nan(value), old, reason)
    passed = low > min_gain
    verdict = "beats" if passed else "does not beat"
    reason = (
        f"challenger {verdict} champion: {GATE_METRIC} {_or_nan(value):.4f} vs {old:.4f}, "
        f"gain {new['gain']:+.4f} (95% interval {low:+.4f} to {high:+.4f}; "
        f"the lower bound must exceed {min_gain})"
    )
    return GateDecision(passed, GATE_METRIC, _or_nan(value), old, reason, low, high)


KEY_METRICS = ("ndcg@10", "recall@20", "map@10", "coverage")
STAGES_TABLE = "stages.json"  # the run's table artifact: every metric of every stage
CANDIDATES_TABLE = "candidate_recall.json"  # recall of the candidate union and each source


def key_metrics(table: pl.DataFrame, recall: Mapping[str, float]) -> dict[str, float | None]:
    """The few numbers a run charts: the new feed's holdout `KEY_METRICS`, its simulated
    `value`, the `oracle_gap` (oracle's value minus the feed's: what is left to gain), the
    gate's `gain_low` over the champion and the union's `candidate_recall`.

    Every stage's every metric stays in the run's table artifact; a hundred one-bar charts
    hide the handful that say whether the run is healthy. None where a number does not exist
    (no simulated city, no champion).
    """
    rows = {row["model"]: row for row in table.iter_rows(named=True)}
    challenger = rows.get(CHALLENGER, {})
    metrics: dict[str, float | None] = {name: challenger.get(name) for name in KEY_METRICS}
    value = challenger.get(f"online_{GATE_METRIC}")
    ceiling = rows.get(ORACLE, {}).get(f"online_{GATE_METRIC}")
    metrics[GATE_METRIC] = value
    metrics["oracle_gap"] = None if value is None or ceiling is None else ceiling - value
    metrics["gain_low"] = challenger.get("gain_low")
    metrics["candidate_recall"] = recall.get("candidate_recall")
    return metrics


def _or_nan(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def off_policy(
    simulation: SimulatedHoldout,
    lists: dict[str, pl.DataFrame],
    *,
    sessions: int = OFF_POLICY_SESSIONS,
    seed: int = 0,
    lambda_: float = CLIP_WEIGHT,
    n_bootstrap: int = N_BOOTSTRAP,
) -> pl.DataFrame:
    """Off-policy estimates of every list's session value from a log of the old app's feed.

    The log is the first card of `sessions` logged sessions per holdout user (exact
    propensities); the target policy shows event e with the examination probability of its
    deck slot, so value = E[Σ_slot exam[slot] · grade], the quantity `simulated_online`
    computes from the hidden truth. The reward model of DM and DR is fitted on a second,
    independent log, as a model trained on last week's impressions would be. Intervals are
    bootstraps over logged rounds (`n_bootstrap` resamples).
    Returns model, estimator, value, low, high.
    """
    logged = logged_first_cards(simulation, sessions, seed)
    model = RewardModel.fit(
        logged_first_cards(simulation, sessions, seed + 1),
        simulation.event_categories,
        simulation.user_ids.size,
    )
    rows: list[dict[str, object]] = []
    decks = {name: simulation.decks(recs) for name, recs in lists.items() if name != ORACLE}
    decks[ORACLE] = simulation.oracle_decks()
    for name, deck in decks.items():
        bandit = target_bandit(deck, logged, model)
        for estimate in estimate_all(bandit, lambda_=lambda_, n_bootstrap=n_bootstrap, seed=seed):
            rows.append(
                {
                    "model": name,
                    "estimator": estimate.name,
                    "value": estimate.value,
                    "low": estimate.low,
                    "high": estimate.high,
                }
            )
    return pl.DataFrame(rows)


def target_bandit(
    decks: npt.NDArray[np.int64], logged: LoggedCards, model: RewardModel
) -> LoggedBandit:
    """The logged first cards seen through one target policy's decks.

    π(e | u) = exam[slot of e] / M_u with M_u = Σ exam over u's filled slots; rewards and the
    reward model are scaled by M_u so every estimator estimates E_u[Σ_slot exam · grade].
    """
    exam = logged.exam[: decks.shape[1]]
    filled = decks != NO_CARD
    mass = (filled * exam).sum(axis=1)
    slot_weight = (decks[logged.user_rows] == logged.events[:, None]) @ exam
    m = mass[logged.user_rows]
    target = np.divide(slot_weight, m, out=np.zeros_like(slot_weight), where=m > 0)
    q_logged = model.predict(logged.user_rows, logged.events)
    users, slots = np.nonzero(filled)
    q_deck = np.zeros(decks.shape)
    q_deck[users, slots] = model.predict(users, decks[users, slots])
    q_target = (q_deck @ exam)[logged.user_rows]
    return LoggedBandit(
        reward=logged.reward * m,
        pscore=logged.pscore,
        target_pscore=target,
        estimated_reward=q_logged * m,
        target_value_dm=q_target,
    )


@dataclass(frozen=True)
class RewardModel:
    """q̂(u, e) = μ + b_e + b_(u, category(e)), each shrunk towards zero: DM's reward model.

    What an analyst fits on last week's impressions with public columns only: how each event
    and each user's taste for its category fared. DR needs a model that removes variance and
    stays unbiased when the model is wrong; DM alone inherits all of its bias.
    """

    mean: float
    event_bias: npt.NDArray[np.float64]  # by world event row
    taste_bias: npt.NDArray[np.float64]  # (holdout user row, category)
    categories: npt.NDArray[np.int64]  # category code by world event row

    @classmethod
    def fit(
        cls,
        logged: LoggedCards,
        categories: npt.NDArray[np.int64],
        n_users: int,
        shrink: float = 10.0,
    ) -> RewardModel:
        mean = float(logged.reward.mean()) if logged.reward.size else 0.0
        residual = logged.reward - mean
        n_events = categories.size
        counts = np.bincount(logged.events, minlength=n_events)
        event_bias = np.bincount(logged.events, residual, minlength=n_events) / (counts + shrink)
        residual = residual - event_bias[logged.events]
        n_cats = int(categories.max()) + 1 if categories.size else 1
        cell = logged.user_rows * n_cats + categories[logged.events]
        size = n_users * n_cats
        cell_counts = np.bincount(cell, minlength=size)
        taste = np.bincount(cell, residual, minlength=size) / (cell_counts + shrink)
        return cls(mean, event_bias, taste.reshape(n_users, n_cats), categories)

    def predict(
        self, user_rows: npt.NDArray[np.int64], events: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        q = (
            self.mean
            + self.event_bias[events]
            + self.taste_bias[user_rows, self.categories[events]]
        )
        return np.asarray(np.clip(q, 0.0, None), dtype=np.float64)
