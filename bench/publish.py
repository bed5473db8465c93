"""Publishing and reading feeds: the store's fast paths against naive baselines, side by side.

    uv run python -m bench.publish [--users 1000] [--per-user 50] [--repeats 3] [--reads 2000]

Uses DATABASE_URL / REDIS_URL when set, else the embedded servers under .godo/. Each run gets
a scratch database and Redis prefix, dropped afterwards. Baselines run in the same process on
the same data, so the ratios hold on a noisy machine even when the absolute numbers do not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from godo import services
from godo.settings import get_settings
from store import migrate
from store.db import copy_frame, make_engine, sqlalchemy_url
from store.feed import read_feed
from store.keys import RedisKeys
from store.live_cache import LiveCache
from store.publish import publish_run
from store.schema import recommendation_runs, recommendations


@contextmanager
def scratch(data_dir: Path) -> Iterator[tuple[sa.Engine, redis.Redis, RedisKeys]]:
    urls = services.resolve(data_dir, os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"))
    name = f"godo_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(sqlalchemy_url(urls.database_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(urls.database_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    engine = make_engine(url)
    client = redis.Redis.from_url(urls.redis_url)
    keys = RedisKeys(prefix=f"godo-bench-{uuid.uuid4().hex[:8]}")
    try:
        yield engine, client, keys
    finally:
        engine.dispose()
        stale = list(client.scan_iter(match=keys.namespace_pattern(), count=1000))
        for start in range(0, len(stale), 1000):
            client.delete(*stale[start : start + 1000])
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed_catalogue(engine: sa.Engine, n_events: int) -> list[str]:
    now = datetime.now(UTC)
    ids = [f"ev{i}" for i in range(n_events)]
    with engine.begin() as conn:
        copy_frame(conn, "venues", pl.DataFrame({"id": ["v1"], "name": ["Hall"], "metro": ["sf"]}))
        copy_frame(
            conn,
            "events",
            pl.DataFrame(
                {
                    "id": ids,
                    "name": [f"Event {i}" for i in range(n_events)],
                    "venue_id": "v1",
                    "metro": "sf",
                    "category": "Music",
                    "start_utc": [now + timedelta(days=1 + i % 30) for i in range(n_events)],
                    "is_free": True,
                    "status": "live",
                    "is_active": True,
                }
            ),
        )
    return ids


def make_recs(users: int, per_user: int, event_ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [u for u in range(1, users + 1) for _ in range(per_user)],
            "rank": [r for _ in range(users) for r in range(1, per_user + 1)],
            "event_id": [
                event_ids[(u * 7 + r) % len(event_ids)]
                for u in range(users)
                for r in range(per_user)
            ],
            "score": [1.0 / r for _ in range(users) for r in range(1, per_user + 1)],
            "reason": "bench",
        }
    )


def naive_publish(
    engine: sa.Engine, client: redis.Redis, keys: RedisKeys, run_id: str, recs: pl.DataFrame
) -> None:
    """What publish_run replaces: one INSERT per row, one Redis round trip per user."""
    with engine.begin() as conn:
        conn.execute(
            recommendation_runs.insert().values(id=run_id, status="published", model="naive")
        )
        for row in recs.iter_rows(named=True):
            conn.execute(recommendations.insert().values(run_id=run_id, **row))
    for (user_id,), group in recs.group_by("user_id"):
        client.set(
            keys.run_user_feed(run_id, int(user_id)),
            group.write_json(),
            ex=600,
        )
    client.set(keys.current_run(), run_id)


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def latency(fn: Callable[[], object], n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--per-user", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    data_dir = get_settings().data_path
    with scratch(data_dir) as (engine, client, keys):
        event_ids = seed_catalogue(engine, args.events)
        recs = make_recs(args.users, args.per_user, event_ids)
        fallback = recs.filter(pl.col("user_id") == 1).drop("user_id")
        counter = iter(range(10**6))

        def fast() -> None:
            publish_run(
                engine=engine,
                redis_client=client,
                keys=keys,
                run_id=f"fast-{next(counter)}",
                model="bench",
                recommendations=recs,
                fallback=fallback,
                ttl_seconds=600,
            )

        def slow() -> None:
            naive_publish(engine, client, keys, f"naive-{next(counter)}", recs)

        fast_times = timed(fast, args.repeats)
        slow_times = timed(slow, args.repeats)
        fast()  # leave a real run published for the read benchmark
        user_ids = iter(i % args.users + 1 for i in range(10**9))

        cache = LiveCache()

        def read_cached() -> None:
            """As the API reads: cards from its process cache, checked against Redis."""
            read_feed(
                engine=engine, redis_client=client, keys=keys, user_id=next(user_ids), cache=cache
            )

        def read_uncached() -> None:
            read_feed(engine=engine, redis_client=client, keys=keys, user_id=next(user_ids))

        read_cached()  # the first read fills the card cache
        cached_p50, cached_p99 = latency(read_cached, args.reads)
        redis_p50, redis_p99 = latency(read_uncached, args.reads)
        client.delete(keys.current_run())
        pg_p50, pg_p99 = latency(read_uncached, args.reads)

    rows = recs.height
    fast_best, slow_best = min(fast_times), min(slow_times)
    print(
        f"publish {args.users:,} users x {args.per_user} = {rows:,} rows (best of {args.repeats})"
    )
    print(
        f"  publish_run (COPY + pipelined Redis)     {fast_best:8.3f} s "
        f"{rows / fast_best:12,.0f} rows/s"
    )
    print(
        f"  baseline (row INSERT + one SET per user) {slow_best:8.3f} s "
        f"{rows / slow_best:12,.0f} rows/s"
    )
    print(f"  speed-up                                 {slow_best / fast_best:8.1f} x")
    print(f"read_feed, {args.reads:,} reads of {args.per_user} items")
    print(
        f"  from Redis, cards cached   p50 {cached_p50:6.2f} ms   p99 {cached_p99:6.2f} ms  "
        "(the API's path)"
    )
    print(
        f"  from Redis, cards queried  p50 {redis_p50:6.2f} ms   p99 {redis_p99:6.2f} ms  "
        "(no cache)"
    )
    print(
        f"  from Postgres              p50 {pg_p50:6.2f} ms   p99 {pg_p99:6.2f} ms  "
        "(Redis has no run: the fallback)"
    )


if __name__ == "__main__":
    main()
