"""Both step runners against real Redis and Postgres: same results, failures thrown back in."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio
import sqlalchemy as sa

from godo import services
from store.keys import RedisKeys
from store.steps import (
    PostgresStep,
    RedisStep,
    Steps,
    on_one_connection,
    run_async,
    run_blocking,
)

CLOSED_REDIS = "redis://127.0.0.1:1/0"


def _logic(key: str) -> Steps[dict[str, Any]]:
    """Reads a key and the database, and recovers from whatever Redis does."""
    seen: dict[str, Any] = {}
    try:
        value, members = yield RedisStep([("GET", key), ("SMEMBERS", key + ":set")])
        seen["redis"] = (value, members)
    except redis.RedisError as error:
        seen["redis_error"] = type(error).__name__
    seen["postgres"] = yield PostgresStep(
        lambda conn: conn.execute(sa.text("SELECT 41 + 1")).scalar()
    )
    return seen


def _run_both(engine: sa.Engine, url: str, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    blocking_client = redis.Redis.from_url(url, socket_connect_timeout=1)
    blocking = run_blocking(_logic(key), engine=engine, redis_client=blocking_client)
    blocking_client.close()

    async def on_the_loop() -> dict[str, Any]:
        client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=1)
        try:
            return await run_async(_logic(key), engine=engine, redis_client=client)
        finally:
            await client.aclose()  # type: ignore[attr-defined]

    return blocking, asyncio.run(on_the_loop())


def test_both_runners_give_the_same_results(
    engine: sa.Engine,
    service_urls: services.ServiceUrls,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    key = f"{redis_keys.prefix}:steps"
    redis_client.set(key, "hello")
    redis_client.sadd(key + ":set", "a", "b")
    blocking, on_loop = _run_both(engine, service_urls.redis_url, key)
    assert blocking == on_loop == {"redis": (b"hello", {b"a", b"b"}), "postgres": 42}


def test_a_failing_step_is_thrown_into_the_logic_which_recovers(engine: sa.Engine) -> None:
    blocking, on_loop = _run_both(engine, CLOSED_REDIS, "any")
    assert blocking == on_loop == {"redis_error": "ConnectionError", "postgres": 42}


def test_an_error_the_logic_does_not_handle_reaches_the_caller(engine: sa.Engine) -> None:
    def logic() -> Steps[None]:
        yield PostgresStep(lambda conn: conn.execute(sa.text("SELECT * FROM no_such_table")))

    with pytest.raises(sa.exc.ProgrammingError):
        run_blocking(logic(), engine=engine, redis_client=redis.Redis.from_url(CLOSED_REDIS))


def _backend_pids() -> Steps[tuple[int, int, str]]:
    """Two reads and a failing one, recovered from: what `on_one_connection` must carry."""
    pid = sa.text("SELECT pg_backend_pid()")
    first = yield PostgresStep(lambda conn: conn.execute(pid).scalar())
    try:
        yield PostgresStep(lambda conn: conn.execute(sa.text("SELECT 1/0")).scalar())
        outcome = "no error"
    except sa.exc.DataError as error:
        outcome = type(error.orig).__name__
    second = yield PostgresStep(lambda conn: conn.execute(pid).scalar())
    return first, second, outcome


def test_postgres_steps_on_one_connection_run_as_one_step(
    engine: sa.Engine, service_urls: services.ServiceUrls
) -> None:
    async def on_the_loop() -> tuple[int, int, str]:
        client = redis.asyncio.Redis.from_url(service_urls.redis_url)
        try:
            return await run_async(
                _single_step(on_one_connection(_backend_pids())), engine=engine, redis_client=client
            )
        finally:
            await client.aclose()  # type: ignore[attr-defined]

    first, second, outcome = asyncio.run(on_the_loop())
    assert first == second  # one connection for the whole sub-read
    assert outcome == "DivisionByZero"  # a failing step is thrown back in, as in the runners


def _single_step(step: PostgresStep[Any]) -> Steps[Any]:
    return (yield step)


def test_a_redis_step_inside_one_connection_is_refused(
    engine: sa.Engine, redis_client: redis.Redis
) -> None:
    def wrong() -> Steps[Any]:
        yield RedisStep([("PING",)])

    with pytest.raises(TypeError, match="Redis step"):
        run_blocking(
            _single_step(on_one_connection(wrong())), engine=engine, redis_client=redis_client
        )
