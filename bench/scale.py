"""Does the model stage scale: 100k users, 20k events, ~10M swipes in 24 GiB and 10 minutes?

    uv run python -m bench.scale                                   # 100k users / 20k events
    uv run python -m bench.scale --users 20000 --events 5000       # a quicker look
    uv run python -m bench.scale --json                            # one JSON object, nothing else

Why: the nightly run trains and evaluates the whole model stage (holdout split, ALS, ranker
snapshots, LambdaRank, then the holdout evaluation) in one go, and the target machine has 2
cores and 24 GiB. This benchmark runs that stage exactly as the nightly assets call it
(`recommender.fitting`, `recommender.holdout`), first on the default-size city as a baseline
and then on the big one, in the same process, and prints both side by side: swipes, seconds
per phase, peak RSS per phase, and seconds per million swipes, so the scaling is visible.

The city is built in memory (`sources.synthetic.offline`); building it is timed and reported
but is not part of the model stage. Only the warehouse tables the nightly run reads are kept
for the stage (the simulator's world, impressions and hidden truth are dropped first), so the
stage's memory is what the nightly run would hold. Peak RSS per phase comes from a thread that
samples VmRSS in /proc/self/status every 0.5 s; `ru_maxrss` is the process-wide high-water
mark. Targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from features.tables import AppTables
from models.als import ALSModel
from recommender import fitting
from recommender import holdout as ev
from recommender.holdout import StageModels
from sources.synthetic.behaviour import BehaviourConfig
from sources.synthetic.offline import build_offline_city
from sources.synthetic.online import SimulatedHoldout
from sources.synthetic.world import CityConfig, build_world

T = TypeVar("T")
KIB_PER_GIB = 1024**2
TARGET_SECONDS = 600.0
TARGET_GIB = 24.0
EVAL_USERS = 5000  # pipelines.assets.evaluation.EvaluationConfig.max_users
STATUS = Path("/proc/self/status")
PHASES = (
    "split",
    "als",
    "examples",
    "ranker",
    "eval split",
    "baselines",
    "feed",
    "metrics",
    "sim online",
)


def rss_kib() -> int:
    """Current resident set size in KiB (VmRSS), 0 where /proc is unavailable."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def max_rss_gib() -> float:
    """The process's high-water mark so far (`ru_maxrss` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_GIB


class RssSampler:
    """Samples VmRSS every `interval` seconds; `peak()` is the highest since `reset()`."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._peak = rss_kib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        value = rss_kib()
        with self._lock:
            self._peak = max(self._peak, value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def reset(self) -> None:
        with self._lock:
            self._peak = rss_kib()

    def peak(self) -> int:
        self._sample()
        with self._lock:
            return self._peak


@dataclass
class StageRun:
    """One run of the model stage: sizes, seconds and peak RSS (KiB) per phase."""

    label: str
    users: int
    events: int
    swipes: int
    build_seconds: float
    build_peak_kib: int
    tables_rss_kib: int
    seconds: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def peak_kib(self) -> int:
        return max(self.peaks.values(), default=0)

    @property
    def seconds_per_million(self) -> float:
        return self.total / max(self.swipes / 1e6, 1e-9)


def build(
    config: CityConfig, behaviour: BehaviourConfig, sampler: RssSampler, label: str
) -> tuple[AppTables, StageRun]:
    """Build the city (timed), keep only the warehouse tables, and start the run's record."""
    gc.collect()
    sampler.reset()
    started = time.perf_counter()
    city = build_offline_city(config, behaviour)
    seconds = time.perf_counter() - started
    peak = sampler.peak()
    tables = city.tables
    print(
        f"[{label}] city built in {seconds:.1f} s: {config.n_users:,} users, "
        f"{city.events.height:,} events, {city.venues.height:,} venues, "
        f"{city.swipes.height:,} swipes ({city.swipes.height / config.n_users:.1f}/user), "
        f"{city.attendance.height:,} RSVPs, {city.friendships.height:,} friendships, "
        f"{city.activity.impressions.height:,} impressions; peak RSS {peak / KIB_PER_GIB:.2f} "
        f"GiB, ru_maxrss {max_rss_gib():.2f} GiB",
        flush=True,
    )
    del city  # the world, impressions and hidden truth: the nightly run never holds them
    gc.collect()
    run = StageRun(
        label=label,
        users=config.n_users,
        events=tables.events.height,
        swipes=tables.swipes.height,
        build_seconds=seconds,
        build_peak_kib=peak,
        tables_rss_kib=rss_kib(),
    )
    print(
        f"[{label}] RSS with only the warehouse tables: {run.tables_rss_kib / KIB_PER_GIB:.2f} GiB",
        flush=True,
    )
    return tables, run


def model_stage(
    tables: AppTables,
    run: StageRun,
    sampler: RssSampler,
    *,
    config: CityConfig,
    behaviour: BehaviourConfig,
    holdout_days: float,
    per_source: int,
    eval_users: int,
) -> None:
    """Train and evaluate as the nightly assets do, each phase timed and RSS-sampled.

    The simulated online evaluation rebuilds the hidden world from its config, as the
    evaluation asset does (the simulation itself, swipes and impressions, is not redone).
    """

    def phase(name: str, fn: Callable[[], T]) -> T:
        sampler.reset()
        started = time.perf_counter()
        result = fn()
        run.seconds[name] = time.perf_counter() - started
        run.peaks[name] = sampler.peak()
        print(
            f"[{run.label}] {name:<11} {run.seconds[name]:8.1f} s   peak RSS "
            f"{run.peaks[name] / KIB_PER_GIB:6.2f} GiB",
            flush=True,
        )
        return result

    t = tables

    def split() -> ev.Holdout:
        cutoff = ev.holdout_cutoff(t.swipes, holdout_days)
        return ev.split_at(cutoff, t)

    def train() -> StageModels:
        """Split, ALS and ranker; the examples and train split are freed on return."""
        holdout = phase("split", split)
        run.counts["interaction pairs"] = holdout.interactions.height
        als = phase("als", lambda: ALSModel().fit(holdout.interactions))
        examples = phase(
            "examples",
            lambda: fitting.ranker_examples(holdout.cutoff, t),
        )
        run.counts["ranker examples"] = examples.height
        run.counts["queries"] = examples.select("user_id", "created_at").n_unique()
        ranker = phase("ranker", lambda: fitting.fit_ranker(examples))
        return StageModels(als=als, ranker=ranker)

    models = train()
    gc.collect()

    def eval_split() -> ev.Holdout:
        cutoff = ev.holdout_cutoff(t.swipes, holdout_days)
        return ev.split_at(cutoff, t, max_users=eval_users, seed=0)

    test = phase("eval split", eval_split)
    run.counts["eval users"] = test.users.height
    lists = phase("baselines", lambda: ev.baseline_lists(test, models.als))
    feed = phase(
        "feed",
        lambda: ev.feed_lists(test, models, per_source=per_source),
    )
    run.counts["eval candidates"] = feed.pop("candidates").height
    feed.pop("scored")
    lists |= feed
    table = phase("metrics", lambda: ev.score_table(lists, test))

    def simulated() -> pl.DataFrame:
        simulation = SimulatedHoldout.at(
            build_world(config),
            behaviour,
            test.cutoff,
            test.users["user_id"].to_numpy(),
            test.swipes,
            test.attendance,
        )
        return ev.simulated_online(simulation, lists).table

    online = phase("sim online", simulated)
    values = dict(zip(online["model"].to_list(), online["value"].to_list(), strict=True))
    print(
        f"[{run.label}] simulated online value: "
        + ", ".join(f"{name} {value:.3f}" for name, value in sorted(values.items())),
        flush=True,
    )
    ndcg = dict(zip(table["model"].to_list(), table["ndcg@10"].to_list(), strict=True))
    print(
        f"[{run.label}] NDCG@10: "
        + ", ".join(f"{name} {value:.4f}" for name, value in sorted(ndcg.items())),
        flush=True,
    )


def gib(kib: int) -> float:
    return round(kib / KIB_PER_GIB, 2)


def report(runs: list[StageRun]) -> None:
    rows = [
        {
            "run": r.label,
            "users": r.users,
            "events": r.events,
            "swipes": r.swipes,
            **r.counts,
            "build s": round(r.build_seconds, 1),
            "stage s": round(r.total, 1),
            "peak GiB": gib(r.peak_kib),
            "s per M swipes": round(r.seconds_per_million, 1),
        }
        for r in runs
    ]
    seconds = [{"run": r.label} | {p: round(r.seconds[p], 1) for p in PHASES} for r in runs]
    peaks = [{"run": r.label} | {p: gib(r.peaks[p]) for p in PHASES} for r in runs]
    with pl.Config(tbl_rows=10, tbl_cols=30, tbl_width_chars=220, thousands_separator=","):
        print("model stage, side by side (same process):")
        print(pl.DataFrame(rows))
        print("seconds per phase:")
        print(pl.DataFrame(seconds))
        print("peak RSS per phase (GiB, sampled every 0.5 s):")
        print(pl.DataFrame(peaks))
    if len(runs) == 2:
        small, big = runs
        print(
            f"scale-up: {big.swipes / small.swipes:.1f}x swipes, {big.total / small.total:.1f}x "
            f"stage seconds, {big.peak_kib / max(small.peak_kib, 1):.1f}x peak RSS; seconds per "
            f"million swipes {small.seconds_per_million:.1f} -> {big.seconds_per_million:.1f}"
        )
    big = runs[-1]
    seconds_ok = big.total < TARGET_SECONDS
    memory = max_rss_gib()
    memory_ok = memory < TARGET_GIB
    print(
        f"targets ({big.label}: {big.users:,} users, {big.events:,} events, "
        f"{big.swipes:,} swipes, 2 cores):"
    )
    print(
        f"  model stage {big.total:7.1f} s   (target < {TARGET_SECONDS:.0f} s: "
        f"{'met' if seconds_ok else 'missed'}); city build {big.build_seconds:.1f} s not counted"
    )
    print(
        f"  peak memory {memory:7.2f} GiB (ru_maxrss, whole process incl. city build; target "
        f"< {TARGET_GIB:.0f} GiB: {'met' if memory_ok else 'missed'}); model stage alone "
        f"{gib(big.peak_kib):.2f} GiB"
    )


def as_json(runs: list[StageRun]) -> dict[str, Any]:
    """The figures of `report` as one object: every run's phases, and the targets' verdicts."""
    big = runs[-1]
    memory = max_rss_gib()
    return {
        "runs": {
            r.label: {
                "users": r.users,
                "events": r.events,
                "swipes": r.swipes,
                **r.counts,
                "build_seconds": round(r.build_seconds, 1),
                "stage_seconds": round(r.total, 1),
                "peak_gib": gib(r.peak_kib),
                "seconds": {p: round(r.seconds[p], 1) for p in PHASES},
                "peak_gib_by_phase": {p: gib(r.peaks[p]) for p in PHASES},
            }
            for r in runs
        },
        "targets": {
            "stage_seconds": {
                "value": round(big.total, 1),
                "limit": TARGET_SECONDS,
                "met": big.total < TARGET_SECONDS,
            },
            "max_rss_gib": {
                "value": round(memory, 2),
                "limit": TARGET_GIB,
                "met": memory < TARGET_GIB,
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--venues", type=int, default=1500)
    parser.add_argument("--sessions-per-user", type=float, default=17.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout-days", type=float, default=7.0)
    parser.add_argument("--per-source", type=int, default=100)
    parser.add_argument("--eval-users", type=int, default=EVAL_USERS)
    parser.add_argument("--no-baseline", action="store_true", help="skip the default-size run")
    parser.add_argument("--json", action="store_true", help="print only the figures as JSON")
    args = parser.parse_args()
    now = datetime(2026, 11, 25, 10, tzinfo=UTC)
    plans = []
    if not args.no_baseline:
        plans.append(("baseline", CityConfig(seed=args.seed, now=now), BehaviourConfig()))
    plans.append(
        (
            "scale",
            CityConfig(
                seed=args.seed,
                n_users=args.users,
                n_events=args.events,
                n_venues=args.venues,
                now=now,
            ),
            BehaviourConfig(sessions_per_user=args.sessions_per_user),
        )
    )
    runs: list[StageRun] = []
    # With --json, progress lines go to stderr so stdout holds only the JSON object.
    progress = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with progress, RssSampler() as sampler:
        for label, config, behaviour in plans:
            tables, run = build(config, behaviour, sampler, label)
            model_stage(
                tables,
                run,
                sampler,
                config=config,
                behaviour=behaviour,
                holdout_days=args.holdout_days,
                per_source=args.per_source,
                eval_users=args.eval_users,
            )
            runs.append(run)
            del tables
            gc.collect()
    if args.json:
        json.dump(as_json(runs), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        report(runs)


if __name__ == "__main__":
    main()
