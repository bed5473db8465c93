"""Ranking quality on the synthetic city: every stage and baseline side by side, then targets.

    uv run python -m bench.quality            # default city: 4,000 users, 4,000 events

The city is built in memory (`sources.synthetic.offline`), the models train before a
time-based cutoff exactly as the nightly run does (`pipelines.training`), and every list is
scored by `pipelines.evaluation` on the days after the cutoff (full ranking, no sampled
negatives). The oracle ranks by the simulator's hidden utility. Targets are reported, not
asserted: the issue's are final NDCG@10 >= 1.3x ALS, >= 2x popularity, >= 0.85x oracle.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import polars as pl

from pipelines import evaluation as ev
from pipelines import training
from sources.synthetic.behaviour import Activity, oracle_top_n
from sources.synthetic.offline import OfflineCity, build_offline_city
from sources.synthetic.world import CityConfig

T = TypeVar("T")
TARGETS = {"als": 1.3, "popularity": 2.0, "oracle": 0.85}
COLUMNS = ("model", "ndcg@10", "recall@20", "map@10", "mrr", "coverage", "novelty", "ild@10")


def timed(label: str, timings: dict[str, float], fn: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = fn()
    timings[label] = time.perf_counter() - started
    return result


def oracle_lists(city: OfflineCity, holdout: ev.Holdout) -> pl.DataFrame:
    """The hidden-utility ranking at the cutoff, knowing only the swipes before it."""
    before = Activity(
        config=city.activity.config,
        swipes=holdout.swipes,
        attendance=holdout.attendance,
        impressions=pl.DataFrame(),
    )
    users = holdout.users["user_id"].to_numpy()
    return oracle_top_n(city.world, before, users, ev.LIST_LENGTH, now=holdout.cutoff)


def run(config: CityConfig, holdout_days: float, per_source: int) -> None:
    timings: dict[str, float] = {}
    city = timed("build city", timings, lambda: build_offline_city(config))
    cutoff = ev.holdout_cutoff(city.swipes, holdout_days)
    holdout = ev.split_at(cutoff, city.tables)
    models = timed(
        "train (ALS + ranker snapshots)",
        timings,
        lambda: training.train(holdout, city.tables, per_source=per_source),
    )
    lists = timed("baselines", timings, lambda: ev.baseline_lists(holdout, models.als))
    feed = timed(
        "candidates + ranker + re-rank",
        timings,
        lambda: ev.feed_lists(holdout, models, per_source=per_source),
    )
    recall = ev.candidate_recall(feed.pop("candidates"), holdout.test)
    feed.pop("scored")
    lists |= feed
    lists[ev.ORACLE] = timed("oracle", timings, lambda: oracle_lists(city, holdout))
    table = timed("metrics", timings, lambda: ev.score_table(lists, holdout))
    report(config, holdout, table, recall, timings)


def report(
    config: CityConfig,
    holdout: ev.Holdout,
    table: pl.DataFrame,
    recall: dict[str, float],
    timings: dict[str, float],
) -> None:
    print(
        f"synthetic city: {config.n_users:,} users, {config.n_events:,} events; holdout after "
        f"{holdout.cutoff:%Y-%m-%d %H:%M} UTC: {holdout.users.height:,} users, "
        f"{holdout.test.height:,} judged events, {holdout.eligible.height:,} eligible events"
    )
    with pl.Config(tbl_rows=20, tbl_cols=20, tbl_width_chars=200, float_precision=4):
        print(table.select(COLUMNS))
    print("candidate recall (share of each user's judged events reaching the ranker):")
    for name, value in recall.items():
        print(f"  {name:<32} {value:8.3f}")
    ndcg = dict(zip(table["model"].to_list(), table["ndcg@10"].to_list(), strict=True))
    final = ndcg[ev.CHALLENGER]
    print("targets (final feed NDCG@10 against):")
    for model, target in TARGETS.items():
        ratio = final / ndcg[model]
        verdict = "met" if ratio >= target else f"missed by {target - ratio:.2f}x"
        print(f"  {model:<12} {ratio:5.2f}x  (target {target:.2f}x: {verdict})")
    print(
        f"  ranker order before re-ranking: {ndcg['ranker'] / ndcg['popularity']:.2f}x popularity"
    )
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--venues", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout-days", type=float, default=7.0)
    parser.add_argument("--per-source", type=int, default=100)
    args = parser.parse_args()
    config = CityConfig(
        seed=args.seed,
        n_users=args.users,
        n_events=args.events,
        n_venues=args.venues,
        now=datetime(2026, 11, 25, 10, tzinfo=UTC),
    )
    run(config, args.holdout_days, args.per_source)


if __name__ == "__main__":
    main()
