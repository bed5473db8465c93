"""Ranking quality on the synthetic city: simulated online value first, then off-policy
estimates beside it, then the logged holdout.

    uv run python -m bench.quality            # default city: 4,000 users, 4,000 events
    uv run python -m bench.quality --json     # only the figures, as one JSON object

The city is built in memory (`sources.synthetic.offline`), the models train before a
time-based cutoff exactly as the nightly run does (`recommender.fitting`), and every list is
judged three ways by `recommender.holdout`:

1. simulated online: each list served as one session to every holdout user in the simulator,
   expected graded relevance per session (like 1, superlike or going 2) with a 95% bootstrap
   interval over users; the oracle (true utility order) is the ceiling by construction;
2. off-policy: IPS, clipped IPS, SNIPS, DM and DR from a log of the old app's feed, each set
   beside the simulated value (bias, and whether it falls inside the simulated interval);
3. the logged holdout: what users did after the cutoff with what the old app showed them,
   which rewards predicting exposure (a model can beat the oracle there).

Targets are reported, not asserted: final feed >= 0.9x the oracle, >= 1.5x ALS, >= 2x
popularity on the simulated online value, and no policy above the oracle.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import polars as pl

from recommender import fitting
from recommender import holdout as ev
from sources.synthetic.behaviour import Activity, oracle_top_n
from sources.synthetic.offline import OfflineCity, build_offline_city
from sources.synthetic.online import SimulatedHoldout
from sources.synthetic.world import CityConfig

T = TypeVar("T")
TARGETS = {"oracle": 0.9, "als": 1.5, "popularity": 2.0}
HOLDOUT_COLUMNS = ("ndcg@10", "recall@20", "map@10", "mrr", "coverage", "novelty", "ild@10")
ONLINE_COLUMNS = ("model", "value", "low", "high", "likes", "superlikes", "going", "ndcg@10")


@dataclass(frozen=True)
class Quality:
    """Everything one run measured."""

    config: CityConfig
    holdout: ev.Holdout
    online: pl.DataFrame
    off_policy: pl.DataFrame
    holdout_table: pl.DataFrame
    recall: dict[str, float]
    timings: dict[str, float]


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


def measure(config: CityConfig, holdout_days: float, per_source: int, sessions: int) -> Quality:
    timings: dict[str, float] = {}
    city = timed("build city", timings, lambda: build_offline_city(config))
    cutoff = ev.holdout_cutoff(city.swipes, holdout_days)
    holdout = ev.split_at(cutoff, city.tables)
    models = timed(
        "train (ALS + ranker)",
        timings,
        lambda: fitting.train(holdout, city.tables),
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
    simulation = SimulatedHoldout.at(
        city.world,
        city.activity.config,
        cutoff,
        holdout.users["user_id"].to_numpy(),
        holdout.swipes,
        holdout.attendance,
    )
    online = timed(
        "simulated online", timings, lambda: ev.simulated_online(simulation, lists).table
    )
    off_policy = timed(
        "off-policy",
        timings,
        lambda: ev.off_policy(simulation, lists, sessions=sessions, n_bootstrap=1000),
    )
    lists[ev.ORACLE] = timed("oracle", timings, lambda: oracle_lists(city, holdout))
    table = timed("holdout metrics", timings, lambda: ev.score_table(lists, holdout))
    return Quality(config, holdout, online, off_policy, table, recall, timings)


def beside(online: pl.DataFrame, off_policy: pl.DataFrame) -> pl.DataFrame:
    """Each estimate with the simulated value it estimates, its bias and whether it falls
    inside the simulated 95% interval."""
    truth = online.select(
        "model", simulated=pl.col("value"), sim_low=pl.col("low"), sim_high=pl.col("high")
    )
    return off_policy.join(truth, on="model").with_columns(
        bias=pl.col("value") - pl.col("simulated"),
        inside=(pl.col("value") >= pl.col("sim_low")) & (pl.col("value") <= pl.col("sim_high")),
    )


def as_json(quality: Quality) -> dict[str, Any]:
    online = {
        row["model"]: {"value": row["value"], "low": row["low"], "high": row["high"]}
        for row in quality.online.iter_rows(named=True)
    }
    holdout = {
        row["model"]: {c: row[c] for c in HOLDOUT_COLUMNS}
        for row in quality.holdout_table.iter_rows(named=True)
    }
    off: dict[str, dict[str, Any]] = {}
    for row in beside(quality.online, quality.off_policy).iter_rows(named=True):
        off.setdefault(row["model"], {})[row["estimator"]] = {
            "value": row["value"],
            "low": row["low"],
            "high": row["high"],
            "bias": row["bias"],
            "inside_simulated_interval": row["inside"],
        }
    return {"simulated_online": online, "holdout": holdout, "off_policy": off}


def report(quality: Quality) -> None:
    config, holdout = quality.config, quality.holdout
    print(
        f"synthetic city: {config.n_users:,} users, {config.n_events:,} events; holdout after "
        f"{holdout.cutoff:%Y-%m-%d %H:%M} UTC: {holdout.users.height:,} users, "
        f"{holdout.test.height:,} judged events, {holdout.eligible.height:,} eligible events"
    )
    with pl.Config(tbl_rows=40, tbl_cols=20, tbl_width_chars=200, float_precision=4):
        print(
            "\nsimulated online: one session per holdout user; value = expected graded "
            "relevance per session (95% bootstrap interval over users)"
        )
        print(quality.online.select(ONLINE_COLUMNS))
        print("\noff-policy estimates from the old app's log, beside the simulated value")
        print(
            beside(quality.online, quality.off_policy).select(
                "model", "estimator", "value", "low", "high", "simulated", "bias", "inside"
            )
        )
        print("\nlogged holdout (rewards predicting what the old app showed; does not gate)")
        print(quality.holdout_table.select("model", *HOLDOUT_COLUMNS))
    print("candidate recall (share of each user's judged events reaching the ranker):")
    for name, value in quality.recall.items():
        print(f"  {name:<32} {value:8.3f}")
    values = dict(zip(quality.online["model"], quality.online["value"], strict=True))
    highs = dict(zip(quality.online["model"], quality.online["high"], strict=True))
    final = values[ev.CHALLENGER]
    print("targets (final feed simulated online value against):")
    for model, target in TARGETS.items():
        ratio = final / values[model]
        verdict = "met" if ratio >= target else f"missed by {target - ratio:.2f}x"
        print(f"  {model:<12} {ratio:5.2f}x  (target {target:.2f}x: {verdict})")
    above = [m for m, v in values.items() if m != ev.ORACLE and v > highs[ev.ORACLE]]
    print(f"  policies above the oracle's interval: {', '.join(above) or 'none'}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in quality.timings.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--venues", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout-days", type=float, default=7.0)
    parser.add_argument("--per-source", type=int, default=100)
    parser.add_argument(
        "--sessions", type=int, default=ev.OFF_POLICY_SESSIONS, help="logged sessions per user"
    )
    parser.add_argument("--json", action="store_true", help="print only the figures as JSON")
    args = parser.parse_args()
    config = CityConfig(
        seed=args.seed,
        n_users=args.users,
        n_events=args.events,
        n_venues=args.venues,
        now=datetime(2026, 11, 25, 10, tzinfo=UTC),
    )
    quality = measure(config, args.holdout_days, args.per_source, args.sessions)
    if args.json:
        json.dump(as_json(quality), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        report(quality)


if __name__ == "__main__":
    main()
