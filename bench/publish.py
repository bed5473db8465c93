"""Publishing and reading feeds: the store's fast paths against naive baselines, side by side.

    uv run python -m bench.publish [--users 1000] [--per-user 50] [--repeats 3] [--reads 2000]
    uv run python -m bench.publish --json   # the same run, only the figures as one JSON object

Uses DATABASE_URL / REDIS_URL when set, else the embedded servers under .godo/. Each run gets
a scratch database and Redis prefix, dropped afterwards. Baselines run in the same process on
the same data, so the ratios hold on a noisy machine even when the absolute numbers do not.

The ceiling for publishing is COPY itself (issue 15: publish_run >= 0.8x `psql \\copy`): each
repeat of `publish_run` is followed by `psql \\copy` of the same rows (the same columns
`publish_run` COPYs, run id included, from a CSV file written beforehand) into the same
`recommendations` table, under a run of its own that is deleted after each repeat, so both
write the same rows into the same indexes. The \\copy time is psql's own `\\timing` (from
sending the command to its end, psql's start and connection left out). psql is the one on
PATH, else the embedded server's (`pgserver`); without either the comparison is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
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

from bench.targets import Target, ratio, report
from core.settings import get_settings
from godo import services
from store import migrate
from store.db import copy_frame, make_engine, sqlalchemy_url
from store.feed import read_feed
from store.keys import RedisKeys
from store.live_cache import LiveCache
from store.publish import CERTAIN, RECOMMENDATION_COLUMNS, publish_run
from store.schema import recommendation_runs, recommendations

TARGET_PUBLISH_OVER_COPY = 0.8
COPY_RUN_ID = "bench-psql-copy"
# The columns publish_run COPYs into `recommendations`, in its order.
COPY_COLUMNS = [*RECOMMENDATION_COLUMNS, "run_id"]
_PSQL_TIME = re.compile(r"^Time: ([0-9.]+) ms", re.MULTILINE)


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


def find_psql() -> str | None:
    """psql on PATH, else the one the embedded server's wheel ships; None when neither."""
    found = shutil.which("psql")
    if found:
        return found
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    shipped = Path(spec.origin).parent / "pginstall" / "bin" / "psql"
    return str(shipped) if shipped.exists() else None


def copy_frame_of(recs: pl.DataFrame, run_id: str) -> pl.DataFrame:
    """The frame publish_run COPYs for `recs` (propensity filled as it fills it)."""
    if "propensity" not in recs.columns:
        recs = recs.with_columns(propensity=pl.lit(CERTAIN))
    return recs.with_columns(run_id=pl.lit(run_id)).select(COPY_COLUMNS)


def psql_copy_command(psql: str, url: str, columns: list[str], csv_path: Path) -> list[str]:
    """psql timing one `\\copy` of a CSV file into `recommendations`; stops at an error."""
    target = f"recommendations({', '.join(columns)})"
    quoted = str(csv_path).replace("'", "''")
    return [
        *(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url),
        *("-c", "\\timing on"),
        *("-c", f"\\copy {target} FROM '{quoted}' WITH (FORMAT csv, NULL '\\N')"),
    ]


def psql_seconds(output: str) -> float:
    """The `Time: ... ms` psql's `\\timing` printed, in seconds."""
    found = _PSQL_TIME.findall(output)
    if len(found) != 1:
        raise ValueError(f"expected one psql timing line, got {len(found)}:\n{output}")
    return float(found[0]) / 1000


def timed_psql_copy(engine: sa.Engine, psql: str, csv_path: Path) -> float:
    """Seconds of one psql \\copy into a run of its own, which is deleted (untimed) after."""
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with engine.begin() as conn:
        conn.execute(
            recommendation_runs.insert().values(id=COPY_RUN_ID, status="failed", model="copy")
        )
    try:
        done = subprocess.run(
            psql_copy_command(psql, url, COPY_COLUMNS, csv_path),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql \\copy failed ({done.returncode}): {done.stderr}")
        return psql_seconds(done.stdout)
    finally:
        with engine.begin() as conn:
            conn.execute(
                recommendation_runs.delete().where(recommendation_runs.c.id == COPY_RUN_ID)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--per-user", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print only the figures as JSON")
    args = parser.parse_args()
    data_dir = get_settings().data_path
    psql = find_psql()
    with scratch(data_dir) as (engine, client, keys), tempfile.TemporaryDirectory() as tmp:
        event_ids = seed_catalogue(engine, args.events)
        recs = make_recs(args.users, args.per_user, event_ids)
        fallback = recs.filter(pl.col("user_id") == 1).drop("user_id")
        counter = iter(range(10**6))
        csv_path = Path(tmp) / "recommendations.csv"
        copy_frame_of(recs, COPY_RUN_ID).write_csv(csv_path, include_header=False, null_value="\\N")

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

        # publish_run and \copy alternate, so drift in the machine's load falls on both.
        fast_times: list[float] = []
        copy_times: list[float] = []
        for _ in range(args.repeats):
            fast_times += timed(fast, 1)
            if psql is not None:
                copy_times.append(timed_psql_copy(engine, psql, csv_path))
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
    copy_best = min(copy_times) if copy_times else float("nan")
    target = Target(
        "publish_run / psql \\copy rows/s",
        ratio(copy_best, fast_best),  # rows/s over rows/s of the same rows: the inverse times
        ">=",
        TARGET_PUBLISH_OVER_COPY,
    )
    if args.json:
        figures = {
            "rows": rows,
            "repeats": args.repeats,
            "publish_run_seconds": round(fast_best, 4),
            "publish_run_rows_per_s": round(rows / fast_best, 1),
            "naive_seconds": round(slow_best, 4),
            "naive_rows_per_s": round(rows / slow_best, 1),
            "psql": psql,
            "psql_copy_seconds": round(copy_best, 4) if copy_times else None,
            "psql_copy_rows_per_s": round(rows / copy_best, 1) if copy_times else None,
            "publish_over_copy": target.figures()["value"],
            "targets": [target.figures()],
            "read_ms": {
                "redis_cached": {"p50": round(cached_p50, 3), "p99": round(cached_p99, 3)},
                "redis_uncached": {"p50": round(redis_p50, 3), "p99": round(redis_p99, 3)},
                "postgres": {"p50": round(pg_p50, 3), "p99": round(pg_p99, 3)},
            },
        }
        print(json.dumps(figures, allow_nan=False))
        return
    print(
        f"publish {args.users:,} users x {args.per_user} = {rows:,} rows (best of {args.repeats})"
    )
    print(
        f"  publish_run (COPY + pipelined Redis)     {fast_best:8.3f} s "
        f"{rows / fast_best:12,.0f} rows/s"
    )
    if copy_times:
        print(
            f"  psql \\copy of the same rows (the floor)  {copy_best:8.3f} s "
            f"{rows / copy_best:12,.0f} rows/s   ({psql}; psql's \\timing, start-up excluded)"
        )
    else:
        print(
            "  psql \\copy: skipped, no psql client on PATH nor in pgserver "
            "(apt-get install postgresql-client)"
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
    print("targets (issue 15):")
    for text in report([target]):
        print(text)


if __name__ == "__main__":
    main()
