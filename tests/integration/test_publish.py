"""publish_run and read_feed against real PostgreSQL and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pytest
import redis
import sqlalchemy as sa

from store.db import copy_frame
from store.feed import read_feed
from store.keys import RedisKeys
from store.publish import PublishError, publish_run

NOW = datetime.now(UTC).replace(microsecond=0)
EVENT_IDS = [f"e{i}" for i in range(1, 9)]


@pytest.fixture
def catalogue(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        copy_frame(
            conn,
            "venues",
            pl.DataFrame(
                {
                    "id": ["v1"],
                    "name": ["The Chapel"],
                    "metro": ["sf"],
                    "latitude": [37.76],
                    "longitude": [-122.42],
                }
            ),
        )
        copy_frame(
            conn,
            "events",
            pl.DataFrame(
                {
                    "id": EVENT_IDS,
                    "name": [f"Event {i}" for i in range(1, 9)],
                    "venue_id": ["v1"] * 8,
                    "metro": ["sf"] * 8,
                    "category": ["Music"] * 8,
                    "start_utc": [NOW + timedelta(days=i) for i in range(1, 9)],
                    "is_free": [True] * 8,
                    "status": ["live"] * 8,
                    "is_active": [True] * 8,
                }
            ),
        )
    return engine


def recs(users: list[int], events: list[str], reason: str) -> pl.DataFrame:
    rows = [
        {"user_id": u, "rank": r, "event_id": e, "score": 1.0 / r, "reason": reason}
        for u in users
        for r, e in enumerate(events, start=1)
    ]
    return pl.DataFrame(rows)


FALLBACK = pl.DataFrame({"rank": [1], "event_id": ["e8"], "score": [9.0], "reason": ["popular"]})


def publish(
    engine: sa.Engine,
    client: redis.Redis,
    keys: RedisKeys,
    run_id: str,
    frame: pl.DataFrame,
    **kwargs: object,
) -> None:
    publish_run(
        engine=engine,
        redis_client=client,
        keys=keys,
        run_id=run_id,
        model="test",
        recommendations=frame,
        fallback=FALLBACK,
        ttl_seconds=600,
        **kwargs,
    )  # type: ignore[arg-type]


def feed_ids(
    engine: sa.Engine, client: redis.Redis, keys: RedisKeys, user_id: int
) -> tuple[str | None, str, list[str]]:
    feed = read_feed(engine=engine, redis_client=client, keys=keys, user_id=user_id)
    return feed.run_id, feed.source, [i.event_id for i in feed.items]


def test_second_publish_flips_readers_to_the_second_run(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    publish(catalogue, redis_client, redis_keys, "run-1", recs([1, 2], ["e1", "e2"], "a"))
    assert feed_ids(catalogue, redis_client, redis_keys, 1) == ("run-1", "redis", ["e1", "e2"])
    publish(catalogue, redis_client, redis_keys, "run-2", recs([1, 2], ["e3", "e4", "e5"], "b"))
    assert feed_ids(catalogue, redis_client, redis_keys, 1) == (
        "run-2",
        "redis",
        ["e3", "e4", "e5"],
    )
    with catalogue.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT run_id, count(*) FROM recommendations GROUP BY run_id ORDER BY run_id")
        ).all()
        statuses = dict(conn.execute(sa.text("SELECT id, status FROM recommendation_runs")).all())
    assert [tuple(r) for r in rows] == [("run-1", 4), ("run-2", 6)]
    assert statuses == {"run-1": "published", "run-2": "published"}
    redis_client.delete(redis_keys.current_run())
    assert feed_ids(catalogue, redis_client, redis_keys, 1) == (
        "run-2",
        "postgres",
        ["e3", "e4", "e5"],
    )


def test_publish_failing_half_way_leaves_readers_on_the_complete_first_run(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    users = list(range(1, 11))
    publish(catalogue, redis_client, redis_keys, "run-1", recs(users, ["e1", "e2", "e3"], "a"))

    def crash_after_first_batch(written: int, total: int) -> None:
        if written < total:
            raise ConnectionError(f"lost the connection after {written} of {total} users")

    with pytest.raises(PublishError, match="after 4 of 10 users"):
        publish(
            catalogue,
            redis_client,
            redis_keys,
            "run-2",
            recs(users, ["e6", "e7"], "b"),
            batch_size=4,
            on_progress=crash_after_first_batch,
        )

    # Some of run-2's keys were written, yet every reader still sees all of run-1.
    assert redis_client.exists(redis_keys.run_user_feed("run-2", 1)) == 1
    for user in users:
        assert feed_ids(catalogue, redis_client, redis_keys, user) == (
            "run-1",
            "redis",
            ["e1", "e2", "e3"],
        )
    redis_client.delete(redis_keys.current_run())
    for user in users:
        assert feed_ids(catalogue, redis_client, redis_keys, user) == (
            "run-1",
            "postgres",
            ["e1", "e2", "e3"],
        )
    with catalogue.connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM recommendation_runs WHERE id = 'run-2'")
        ).scalar_one()
    assert status == "failed"


def test_publish_refuses_duplicate_ranks_and_keeps_the_old_run(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    publish(catalogue, redis_client, redis_keys, "run-1", recs([1], ["e1"], "a"))
    bad = pl.concat([recs([1], ["e2"], "b"), recs([1], ["e3"], "b")])
    with pytest.raises(ValueError, match="duplicate"):
        publish(catalogue, redis_client, redis_keys, "run-2", bad)
    assert feed_ids(catalogue, redis_client, redis_keys, 1) == ("run-1", "redis", ["e1"])


def test_publish_refuses_events_missing_from_the_catalogue(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    with pytest.raises(PublishError, match="missing from the events table"):
        publish(catalogue, redis_client, redis_keys, "run-1", recs([1], ["e1", "nope"], "a"))
    assert feed_ids(catalogue, redis_client, redis_keys, 1) == (None, "none", [])


def test_feed_drops_started_events_and_unknown_users_get_the_fallback(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    publish(catalogue, redis_client, redis_keys, "run-1", recs([1], ["e1", "e2", "e3"], "a"))
    later = NOW + timedelta(days=1, hours=12)  # e1 has started by then
    feed = read_feed(
        engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=1, now=later
    )
    assert [i.event_id for i in feed.items] == ["e2", "e3"]
    stranger = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=999)
    assert stranger.cold_start and [i.event_id for i in stranger.items] == ["e8"]


def test_postgres_keeps_only_the_newest_runs(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    for i in range(1, 5):
        publish(
            catalogue, redis_client, redis_keys, f"run-{i}", recs([1], [f"e{i}"], "a"), keep_runs=2
        )
    with catalogue.connect() as conn:
        runs = conn.execute(sa.text("SELECT id FROM recommendation_runs ORDER BY id")).scalars()
        kept_rows = conn.execute(
            sa.text("SELECT DISTINCT run_id FROM recommendations ORDER BY run_id")
        ).scalars()
        assert list(runs) == ["run-3", "run-4"]
        assert list(kept_rows) == ["run-3", "run-4"]
    redis_client.delete(redis_keys.current_run())
    assert feed_ids(catalogue, redis_client, redis_keys, 1) == ("run-4", "postgres", ["e4"])


def test_propensities_round_trip_through_redis_and_postgres(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    frame = recs([1], ["e1", "e2", "e3"], "a").with_columns(propensity=pl.Series([1.0, 0.125, 1.0]))
    publish(catalogue, redis_client, redis_keys, "run-1", frame)
    blob = orjson.loads(redis_client.get(redis_keys.run_user_feed("run-1", 1)) or b"[]")
    assert [item["propensity"] for item in blob] == [1.0, 0.125, 1.0]
    with catalogue.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT propensity FROM recommendations WHERE run_id = 'run-1' ORDER BY rank")
        ).scalars()
        assert list(stored) == [1.0, 0.125, 1.0]
    hot = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=1)
    assert hot.source == "redis"
    assert [(i.event_id, i.propensity) for i in hot.items] == [
        ("e1", 1.0),
        ("e2", 0.125),
        ("e3", 1.0),
    ]
    redis_client.delete(redis_keys.current_run())
    durable = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=1)
    assert durable.source == "postgres"
    assert [(i.event_id, i.propensity) for i in durable.items] == [
        ("e1", 1.0),
        ("e2", 0.125),
        ("e3", 1.0),
    ]
    stranger = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=9)
    assert stranger.cold_start and [i.propensity for i in stranger.items] == [1.0]


def test_runs_published_before_propensities_read_as_certain(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    """Rows and JSON items written without the field (an older publisher) read as 1.0."""
    publish(catalogue, redis_client, redis_keys, "run-1", recs([1], ["e1", "e2"], "a"))
    key = redis_keys.run_user_feed("run-1", 1)
    items = orjson.loads(redis_client.get(key) or b"[]")
    assert [item.pop("propensity") for item in items] == [1.0, 1.0]  # absent column: certain
    redis_client.set(key, orjson.dumps(items))
    hot = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=1)
    assert hot.source == "redis" and [i.propensity for i in hot.items] == [1.0, 1.0]

    with catalogue.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO recommendation_runs (id, status, model, published_at) "
                "VALUES ('old-run', 'published', 'old', now() + interval '1 minute')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO recommendations (run_id, user_id, rank, event_id, score, reason) "
                "VALUES ('old-run', 1, 1, 'e3', 1.0, 'a'), ('old-run', 1, 2, 'e4', 0.5, 'a')"
            )
        )
    redis_client.delete(redis_keys.current_run())
    durable = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=1)
    assert durable.run_id == "old-run" and durable.source == "postgres"
    assert [(i.event_id, i.propensity) for i in durable.items] == [("e3", 1.0), ("e4", 1.0)]


@pytest.mark.parametrize("bad", [0.0, 1.5, float("nan")])
def test_publish_refuses_a_propensity_outside_0_1(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys, bad: float
) -> None:
    frame = recs([1], ["e1", "e2"], "a").with_columns(propensity=pl.Series([1.0, bad]))
    with pytest.raises(ValueError, match="propensities"):
        publish(catalogue, redis_client, redis_keys, "run-1", frame)
    assert feed_ids(catalogue, redis_client, redis_keys, 1) == (None, "none", [])
