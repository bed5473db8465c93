"""EASE on a large synthetic catalogue: peak memory and seconds of a fit, and of scoring.

    uv run python -m bench.ease_memory                 # 20,000 items, 50,000 users
    uv run python -m bench.ease_memory --json          # one JSON object, nothing else

EASE's cost is its dense items x items matrix (n² floats, inverted in O(n³)), so the figure
that matters is the peak resident memory at the catalogue size `EASEParams.max_items` allows:
the fit must stay inside 8 GiB at 20,000 items. Interactions are drawn with Zipf-like item
popularity (a few items in most histories, a long tail), the shape that makes XᵀX dense.
Peak RSS is the whole process's (`getrusage`), data generation included, so it is an upper
bound on the fit's own.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from models.ease import EASEModel, EASEParams


def synthetic_interactions(n_users: int, n_items: int, per_user: int, seed: int) -> pl.DataFrame:
    """user_id, event_id, weight: `per_user` items per user on average, Zipf-ish popularity."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    counts = rng.poisson(per_user, n_users).clip(1, n_items)
    users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    items = rng.choice(n_items, size=int(counts.sum()), p=popularity)
    frame = pl.DataFrame({"user_id": users, "item": items}).unique(["user_id", "item"])
    return frame.select(
        "user_id",
        event_id=pl.format("e{}", pl.col("item")),
        weight=pl.lit(1.0),
    )


def rss_mib() -> float:
    """Current resident memory, from /proc (Linux)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    frame = synthetic_interactions(args.users, args.items, args.per_user, args.seed)
    data_seconds = time.perf_counter() - started
    before = rss_mib()
    model = EASEModel(EASEParams(l2=args.l2, max_items=args.items))
    started = time.perf_counter()
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        model.fit(frame)
    fit_seconds = time.perf_counter() - started
    peak_after_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    users = pl.DataFrame(
        {"user_id": np.arange(min(args.recommend_users, args.users)), "metro": "all"}
    )
    candidates = pl.DataFrame({"event_id": model.history.event_ids, "metro": "all"})
    started = time.perf_counter()
    recs = model.recommend(
        users=users,
        candidates=candidates,
        exclude=frame.filter(pl.col("user_id") < users.height).select("user_id", "event_id"),
        n=100,
    )
    recommend_seconds = time.perf_counter() - started
    return {
        "items": len(model.history.event_ids),
        "users": args.users,
        "interactions": frame.height,
        "l2": args.l2,
        "blas_threads": args.blas_threads,
        "data_seconds": round(data_seconds, 2),
        "rss_before_fit_mib": round(before, 1),
        "fit_seconds": round(fit_seconds, 2),
        "peak_rss_after_fit_mib": round(peak_after_fit, 1),
        "weights_mib": round(model.weights.nbytes / 2**20, 1),
        "recommend_users": users.height,
        "recommend_rows": recs.height,
        "recommend_seconds": round(recommend_seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--per-user", type=int, default=60)
    parser.add_argument("--l2", type=float, default=EASEParams().l2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recommend-users", type=int, default=4096)
    parser.add_argument(
        "--blas-threads", type=int, default=None, help="BLAS threads for the fit (default: all)"
    )
    parser.add_argument("--json", action="store_true", help="print only a JSON object")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"EASE on {result['items']:,} items x {result['users']:,} users "
        f"({result['interactions']:,} interactions, l2 {result['l2']:g})"
    )
    print(f"  data generation        {result['data_seconds']:8.2f} s")
    print(f"  RSS before fit         {result['rss_before_fit_mib']:8.1f} MiB")
    print(f"  fit                    {result['fit_seconds']:8.2f} s")
    print(f"  peak RSS after fit     {result['peak_rss_after_fit_mib']:8.1f} MiB")
    print(f"  B (items x items)      {result['weights_mib']:8.1f} MiB")
    print(
        f"  recommend top 100 for  {result['recommend_users']:,} users: "
        f"{result['recommend_seconds']:.2f} s ({result['recommend_rows']:,} rows)"
    )
    print(f"  peak RSS (process)     {result['peak_rss_mib']:8.1f} MiB (limit 8,192 MiB)")


if __name__ == "__main__":
    main()
