"""The API's Redis group commit against a real server: shared pipelines, per-caller replies
and errors, outages to every caller, and no stall when idle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio

from godo import services
from store.keys import RedisKeys
from store.redis_batch import RedisBatcher
from store.steps import RedisStep, Steps, run_async

CLOSED_REDIS = "redis://127.0.0.1:1/0"


class CountingRedis(redis.asyncio.Redis):
    """A real client that counts the pipelines it hands out (each one is a round trip)."""

    pipelines = 0

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Any:
        self.pipelines += 1
        return super().pipeline(transaction, shard_hint)


def _with_batcher(url: str, body: Callable[[RedisBatcher, CountingRedis], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        client = CountingRedis.from_url(url, socket_connect_timeout=1)
        try:
            return await body(RedisBatcher(client), client)
        finally:
            await client.aclose()  # type: ignore[attr-defined]

    return asyncio.run(main())


def test_concurrent_callers_share_round_trips_and_get_their_own_replies(
    service_urls: services.ServiceUrls, redis_keys: RedisKeys
) -> None:
    prefix = redis_keys.prefix

    async def body(batcher: RedisBatcher, client: CountingRedis) -> tuple[list[Any], int]:
        replies = await asyncio.gather(
            *(
                batcher.send([("SET", f"{prefix}:k{i}", i), ("INCRBY", f"{prefix}:n{i}", i)])
                for i in range(50)
            )
        )
        return replies, client.pipelines

    replies, pipelines = _with_batcher(service_urls.redis_url, body)
    assert replies == [[True, i] for i in range(50)]
    assert pipelines == 1  # fifty callers in the same turn of the loop: one round trip


def test_callers_arriving_during_a_round_trip_go_together_in_the_next(
    service_urls: services.ServiceUrls, redis_keys: RedisKeys
) -> None:
    key = f"{redis_keys.prefix}:counter"

    async def body(batcher: RedisBatcher, client: CountingRedis) -> tuple[list[Any], int]:
        first = asyncio.ensure_future(batcher.send([("INCR", key)]))
        await asyncio.sleep(0)  # the first pipeline is now in flight
        later = [asyncio.ensure_future(batcher.send([("INCR", key)])) for _ in range(20)]
        replies = await asyncio.gather(first, *later)
        return replies, client.pipelines

    replies, pipelines = _with_batcher(service_urls.redis_url, body)
    assert sorted(r[0] for r in replies) == list(range(1, 22))
    assert pipelines == 2


def test_a_command_error_reaches_only_its_caller(
    service_urls: services.ServiceUrls, redis_keys: RedisKeys
) -> None:
    text, number = f"{redis_keys.prefix}:text", f"{redis_keys.prefix}:number"

    async def body(batcher: RedisBatcher, client: CountingRedis) -> list[Any]:
        await batcher.send([("SET", text, "not a number")])
        return await asyncio.gather(
            batcher.send([("INCR", number)]),
            batcher.send([("GET", text), ("INCR", text)]),  # WRONGTYPE-like: not an integer
            batcher.send([("INCR", number)]),
            return_exceptions=True,
        )

    ok_first, failed, ok_last = _with_batcher(service_urls.redis_url, body)
    assert ok_first == [1] and ok_last == [2]
    assert isinstance(failed, redis.ResponseError)
    assert "not an integer" in str(failed)


def test_an_outage_reaches_every_caller_and_the_batcher_recovers(
    service_urls: services.ServiceUrls,
) -> None:
    async def body(batcher: RedisBatcher, client: CountingRedis) -> list[Any]:
        return await asyncio.gather(
            *(batcher.send([("PING",)]) for _ in range(5)), return_exceptions=True
        )

    outcomes = _with_batcher(CLOSED_REDIS, body)
    assert all(isinstance(o, redis.ConnectionError) for o in outcomes)
    assert len({id(o) for o in outcomes}) == 5  # each caller raises an exception of its own

    async def after_idle(batcher: RedisBatcher, client: CountingRedis) -> list[Any]:
        first = await batcher.send([("PING",)])
        await asyncio.sleep(0.01)  # the flush has ended; the next caller starts another
        return [first, await batcher.send([("PING",)]), client.pipelines]

    assert _with_batcher(service_urls.redis_url, after_idle) == [[True], [True], 2]


def test_a_cancelled_caller_does_not_disturb_the_others(
    service_urls: services.ServiceUrls, redis_keys: RedisKeys
) -> None:
    key = f"{redis_keys.prefix}:cancel"

    async def body(batcher: RedisBatcher, client: CountingRedis) -> list[Any]:
        doomed = asyncio.ensure_future(batcher.send([("INCR", key)]))
        kept = asyncio.ensure_future(batcher.send([("INCR", key)]))
        await asyncio.sleep(0)  # both are queued, the pipeline not yet sent
        doomed.cancel()
        return [await kept, await batcher.send([("GET", key)])]

    kept, (value,) = _with_batcher(service_urls.redis_url, body)
    # The cancelled caller's command was already queued and still ran: only its reply is lost.
    assert kept == [2] and value == b"2"


def test_feed_steps_read_through_the_batcher_like_through_a_client(
    service_urls: services.ServiceUrls, redis_keys: RedisKeys, engine: Any
) -> None:
    key = f"{redis_keys.prefix}:steps"

    def logic() -> Steps[Any]:
        (value,) = yield RedisStep([("GET", key)])
        return value

    async def body(batcher: RedisBatcher, client: CountingRedis) -> list[Any]:
        await client.set(key, "v")
        return await asyncio.gather(
            *(run_async(logic(), engine=engine, redis_client=batcher) for _ in range(10))
        )

    assert _with_batcher(service_urls.redis_url, body) == [b"v"] * 10
