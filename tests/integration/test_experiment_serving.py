"""Serving experiments against real PostgreSQL and Redis: per-arm publishing and its atomic
flip, the feed serving each user's arm (Redis, Postgres and the API), stopping, and
assignment agreeing across processes."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import redis
import redis.asyncio
import sqlalchemy as sa

from core.settings import Settings
from core.tokens import issue_token
from godo.services import ServiceUrls
from store.experiments import (
    ArmSpec,
    Experiment,
    ExperimentSpec,
    Serves,
    ServingExperiments,
    create_experiment,
    get_experiment,
    stop_experiment,
)
from store.feed import Feed, mark_seen, read_feed, read_feed_async
from store.keys import RedisKeys
from store.live_cache import LiveCache
from store.publish import PublishError, publish_run
from tests.integration.conftest import app_client, seed_upcoming_events

NOW = datetime.now(UTC).replace(microsecond=0)
USERS = list(range(1, 201))
EVENTS = [f"e{i}" for i in range(1, 8)]
# What each run ranks for every user: the feed's items say which run served them.
LISTS = {"champion": ["e1", "e2"], "control": ["e3", "e4"], "popular": ["e5", "e6"]}


@pytest.fixture
def catalogue(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        seed_upcoming_events(conn, EVENTS, NOW)
    return engine


def _lists(events: list[str], users: list[int] = USERS) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"user_id": u, "rank": r, "event_id": e, "score": 1.0 / r, "reason": "test"}
            for u in users
            for r, e in enumerate(events, start=1)
        ]
    )


def _publish(
    engine: sa.Engine,
    client: redis.Redis,
    keys: RedisKeys,
    run_id: str,
    events: list[str],
    arm: str | None = None,
    **kwargs: object,
) -> None:
    publish_run(
        engine=engine,
        redis_client=client,
        keys=keys,
        run_id=run_id,
        model="test",
        recommendations=_lists(events),
        fallback=pl.DataFrame({"rank": [1], "event_id": ["e7"], "score": [1.0], "reason": ["p"]}),
        ttl_seconds=600,
        experiment=None if arm is None else "ab",
        arm=arm,
        model_version={None: "1", "control": "1", "popular": "popularity"}[arm],
        **kwargs,  # type: ignore[arg-type]
    )


def _experiment(engine: sa.Engine, client: redis.Redis, keys: RedisKeys) -> Experiment:
    """`ab`: half the users, split evenly between the champion model and popularity."""
    return create_experiment(
        engine=engine,
        redis_client=client,
        keys=keys,
        spec=ExperimentSpec(
            name="ab",
            arms=(
                ArmSpec("control", 0.5, Serves("model", "champion")),
                ArmSpec("popular", 0.5, Serves("rule", "popularity")),
            ),
            start=NOW - timedelta(hours=1),
            end=NOW + timedelta(days=7),
            traffic=(0.0, 0.5),
            salt="fixed-salt",
        ),
        model_registered=lambda ref: ref == "champion",
    )


@pytest.fixture
def experiment(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> Experiment:
    """The champion's run and both arms' runs published, and the experiment running."""
    _publish(catalogue, redis_client, redis_keys, "champion-1", LISTS["champion"])
    found = _experiment(catalogue, redis_client, redis_keys)
    for arm in ("control", "popular"):
        _publish(catalogue, redis_client, redis_keys, f"{arm}-1", LISTS[arm], arm=arm)
    return found


def _expected(experiment: Experiment, user: int) -> str | None:
    """The arm the user should be served (None: the champion), from the stored definition."""
    assignment = ServingExperiments((experiment.serving(),)).assignment(user, NOW.timestamp())
    return None if assignment is None else assignment.arm


def _served(feed: Feed) -> tuple[str | None, list[str]]:
    return feed.arm, [item.event_id for item in feed.items]


def test_the_feed_serves_each_users_arm_and_the_champion_to_everyone_else(
    experiment: Experiment, catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    expected = {user: _expected(experiment, user) for user in USERS}
    counts = {arm: list(expected.values()).count(arm) for arm in (None, "control", "popular")}
    assert all(count > 20 for count in counts.values()), counts  # all three kinds are tested
    for user in USERS:
        feed = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=user)
        arm = expected[user]
        assert _served(feed) == (arm, LISTS[arm or "champion"]), user
        assert feed.experiment == (None if arm is None else "ab")
        assert feed.run_id == f"{arm or 'champion'}-1"
        assert feed.model_version == ("popularity" if arm == "popular" else "1")


def test_the_postgres_path_serves_the_same_arms(
    experiment: Experiment, catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    """Redis lost every pointer and the serving document: Postgres resolves alone."""
    redis_client.delete(
        redis_keys.current_run(),
        redis_keys.experiments(),
        redis_keys.arm_run("ab", "control"),
        redis_keys.arm_run("ab", "popular"),
    )
    for user in USERS[:60]:
        feed = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=user)
        arm = _expected(experiment, user)
        assert feed.source == "postgres"
        assert _served(feed) == (arm, LISTS[arm or "champion"]), user
        assert feed.model_version == ("popularity" if arm == "popular" else "1")


def test_the_api_serves_arms_and_stop_sends_everyone_back_at_once(
    experiment: Experiment,
    api_settings: Settings,
    catalogue: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    participants = [u for u in USERS if _expected(experiment, u) is not None][:20]
    with app_client(api_settings) as client:

        def served(user: int) -> tuple[str, list[str]]:
            headers = {"Authorization": f"Bearer {issue_token(api_settings, user)}"}
            body = client.get("/v1/feed", headers=headers).json()
            return body["run_id"], [item["event_id"] for item in body["items"]]

        for _ in range(2):  # the second pass is served from this process's hints
            for user in participants:
                arm = _expected(experiment, user)
                assert served(user) == (f"{arm}-1", LISTS[arm or "champion"])
        stop_experiment(engine=catalogue, redis_client=redis_client, keys=redis_keys, name="ab")
        for user in participants:
            assert served(user) == ("champion-1", LISTS["champion"])


def test_the_async_read_with_a_cache_follows_a_new_arm_run(
    experiment: Experiment,
    catalogue: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    service_urls: ServiceUrls,
) -> None:
    """The hints a process keeps are checked in the same round trip, so a new arm run (and a
    stop) show on the very next read."""
    user = next(u for u in USERS if _expected(experiment, u) == "popular")
    cache = LiveCache()

    async def read() -> Feed:
        client = redis.asyncio.Redis.from_url(service_urls.redis_url)
        try:
            return await read_feed_async(
                engine=catalogue, redis_client=client, keys=redis_keys, user_id=user, cache=cache
            )
        finally:
            await client.aclose()

    assert _served(asyncio.run(read())) == ("popular", LISTS["popular"])
    _publish(catalogue, redis_client, redis_keys, "popular-2", ["e6"], arm="popular")
    feed = asyncio.run(read())
    assert feed.run_id == "popular-2" and _served(feed) == ("popular", ["e6"])
    stop_experiment(engine=catalogue, redis_client=redis_client, keys=redis_keys, name="ab")
    assert _served(asyncio.run(read())) == (None, LISTS["champion"])


def test_an_unpublished_arm_serves_the_champion_and_says_so(
    catalogue: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _publish(catalogue, redis_client, redis_keys, "champion-1", LISTS["champion"])
    found = _experiment(catalogue, redis_client, redis_keys)
    _publish(catalogue, redis_client, redis_keys, "control-1", LISTS["control"], arm="control")
    popular = next(u for u in USERS if _expected(found, u) == "popular")
    control = next(u for u in USERS if _expected(found, u) == "control")
    with caplog.at_level(logging.WARNING, logger="store.feed"):
        feed = read_feed(
            engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=popular
        )
    assert feed.run_id == "champion-1" and _served(feed) == (None, LISTS["champion"])
    assert "arm 'popular' of experiment 'ab' has no published run yet" in caplog.text
    feed = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=control)
    assert _served(feed) == ("control", LISTS["control"])


def test_a_reader_never_sees_a_half_written_arm_run(
    experiment: Experiment, catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    in_arm = [u for u in USERS if _expected(experiment, u) == "popular"]

    def crash_after_first_batch(written: int, total: int) -> None:
        if written < total:
            raise ConnectionError(f"lost Redis after {written} of {total} users")

    with pytest.raises(PublishError, match="after 50 of 200 users"):
        _publish(
            catalogue,
            redis_client,
            redis_keys,
            "popular-2",
            ["e7"],
            arm="popular",
            batch_size=50,
            on_progress=crash_after_first_batch,
        )
    assert redis_client.exists(redis_keys.run_user_feed("popular-2", 1)) == 1  # half written
    assert redis_client.get(redis_keys.arm_run("ab", "popular")) == b"popular-1"
    assert redis_client.get(redis_keys.current_run()) == b"champion-1"
    for user in in_arm:
        feed = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=user)
        assert feed.run_id == "popular-1" and _served(feed) == ("popular", LISTS["popular"])
    # A complete run flips the arm's pointer and nothing else.
    _publish(catalogue, redis_client, redis_keys, "popular-3", ["e7"], arm="popular")
    assert redis_client.get(redis_keys.arm_run("ab", "popular")) == b"popular-3"
    assert redis_client.get(redis_keys.arm_run("ab", "control")) == b"control-1"
    assert redis_client.get(redis_keys.current_run()) == b"champion-1"
    with catalogue.connect() as conn:
        runs = {
            row.id: row.status
            for row in conn.execute(sa.text("SELECT id, status FROM recommendation_runs"))
        }
    assert runs["popular-2"] == "failed" and runs["popular-3"] == "published"


def test_each_lineage_keeps_its_newest_runs(
    catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    _experiment(catalogue, redis_client, redis_keys)
    for i in range(1, 4):
        _publish(catalogue, redis_client, redis_keys, f"champion-{i}", ["e1"], keep_runs=2)
        for arm in ("control", "popular"):
            _publish(catalogue, redis_client, redis_keys, f"{arm}-{i}", ["e2"], arm, keep_runs=2)
    with catalogue.connect() as conn:
        kept = set(conn.execute(sa.text("SELECT id FROM recommendation_runs")).scalars())
    lineages = ("champion", "control", "popular")
    assert kept == {f"{lineage}-{i}" for lineage in lineages for i in (2, 3)}


def test_a_swipe_leaves_the_arm_feed(
    experiment: Experiment, catalogue: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    user = next(u for u in USERS if _expected(experiment, u) == "control")
    mark_seen(
        redis_client=redis_client, keys=redis_keys, user_id=user, event_ids=["e3"], ttl_seconds=60
    )
    feed = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=user)
    assert _served(feed) == ("control", ["e4"])


def test_another_process_assigns_every_user_as_the_feed_does(
    experiment: Experiment,
    catalogue: sa.Engine,
    database_url: str,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    """A fresh interpreter (another hash seed) reads the experiment from Postgres and assigns
    every user to the arm the feed served them."""
    script = (
        "import sys\n"
        "from store.db import make_engine\n"
        "from store.experiments import serving_document\n"
        "engine = make_engine(sys.argv[1])\n"
        "with engine.connect() as conn:\n"
        "    document = serving_document(conn)\n"
        "for user in range(1, 201):\n"
        "    a = document.assignment(user, float(sys.argv[2]))\n"
        "    print(user, a.arm if a else '-')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, database_url, str(NOW.timestamp())],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONHASHSEED": "4242"},
    )
    there = dict(line.split() for line in result.stdout.splitlines())
    for user in USERS:
        feed = read_feed(engine=catalogue, redis_client=redis_client, keys=redis_keys, user_id=user)
        assert there[str(user)] == (feed.arm or "-"), user
    assert get_experiment(catalogue, "ab") == experiment
