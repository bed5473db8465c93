"""Reads written once, run both blocking and async: a generator yields the I/O it needs.

Why: the feed is read by blocking code (the CLI, benchmarks, tests) and by the API, where
the hot path must not leave the event loop: handing each request to a worker thread cost
more than the read itself (`bench.serve`). Rather than keep two copies of the feed logic in
step, the logic is a generator that yields `RedisStep`s (commands sent in one pipeline) and
`PostgresStep`s (a function of a connection) and receives their results; `run_blocking` and
`run_async` carry the steps out. A step that fails is thrown back into the generator at the
`yield`, so the logic handles a Redis outage where it happens, with ordinary `try`.

In `run_async`, Redis goes through the asyncio client on the event loop, and Postgres (the
rare step once caches are warm) runs in the thread pool on one connection per read, opened
only when a step first needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import anyio.to_thread
import redis
import redis.asyncio
import sqlalchemy as sa

from store.redis_batch import RedisBatcher

T = TypeVar("T")


@dataclass(frozen=True)
class RedisStep:
    """Commands such as `("GET", key)`, sent in one pipeline; the result is their replies."""

    commands: list[tuple[Any, ...]]


@dataclass(frozen=True)
class PostgresStep(Generic[T]):
    """A read on the run's connection (autocommit: single statements need no transaction)."""

    read: Callable[[sa.Connection], T]


Step = RedisStep | PostgresStep[Any]
Steps = Generator[Step, Any, T]


class _Connection:
    """One Postgres connection for a whole read, opened by the first step that needs it."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.stack = ExitStack()
        self.conn: sa.Connection | None = None

    def read(self, step: PostgresStep[Any]) -> Any:
        if self.conn is None:
            conn = self.stack.enter_context(self.engine.connect())
            self.conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        return step.read(self.conn)

    def close(self) -> None:
        self.stack.close()


def run_blocking(steps: Steps[T], *, engine: sa.Engine, redis_client: redis.Redis) -> T:
    """Carry out `steps` with blocking clients; returns what the generator returns."""
    connection = _Connection(engine)
    try:
        outcome: _Outcome = (None, None)
        while True:
            finished, value = _advance(steps, outcome)
            if finished:
                return value
            try:
                if isinstance(value, RedisStep):
                    outcome = (_pipeline(redis_client, value).execute(), None)
                else:
                    outcome = (connection.read(value), None)
            except Exception as failure:  # handed to the logic, which decides
                outcome = (None, failure)
    finally:
        connection.close()


async def run_async(
    steps: Steps[T], *, engine: sa.Engine, redis_client: redis.asyncio.Redis | RedisBatcher
) -> T:
    """Carry out `steps` on the event loop (Redis) and the thread pool (Postgres).

    With a `RedisBatcher` (the API's), each step's commands share a pipeline with those of
    concurrent reads; with a client, each step is a pipeline of its own.
    """
    connection = _Connection(engine)
    try:
        outcome: _Outcome = (None, None)
        while True:
            finished, value = _advance(steps, outcome)
            if finished:
                return value
            try:
                if isinstance(value, RedisStep):
                    outcome = (await _send_async(redis_client, value), None)
                else:
                    outcome = (await anyio.to_thread.run_sync(connection.read, value), None)
            except Exception as failure:
                outcome = (None, failure)
    finally:
        if connection.conn is not None:
            await anyio.to_thread.run_sync(connection.close)


def on_one_connection(steps: Steps[T]) -> PostgresStep[T]:
    """`steps`, which ask only Postgres, as one step: run on one connection in one go.

    Why: `run_async` hands each Postgres step to the thread pool, a thread hop per step;
    when a read knows the rest of its work is Postgres alone (the feed with Redis down), one
    hop carries all of it. A Redis step inside is a bug, raised as such.
    """

    def read(conn: sa.Connection) -> T:
        outcome: _Outcome = (None, None)
        while True:
            finished, value = _advance(steps, outcome)
            if finished:
                return cast(T, value)
            if isinstance(value, RedisStep):
                raise TypeError("a Redis step inside on_one_connection")
            try:
                outcome = (value.read(conn), None)
            except Exception as failure:
                outcome = (None, failure)

    return PostgresStep(read)


# What the last step gave: its result, or the exception to throw into the generator.
_Outcome = tuple[Any, Exception | None]


def _advance(steps: Steps[Any], outcome: _Outcome) -> tuple[bool, Any]:
    """Resume the generator with the last outcome: (True, its return value) or (False, step)."""
    reply, error = outcome
    try:
        return False, steps.send(reply) if error is None else steps.throw(error)
    except StopIteration as done:
        return True, done.value


async def _send_async(client: redis.asyncio.Redis | RedisBatcher, step: RedisStep) -> Any:
    if isinstance(client, RedisBatcher):
        return await client.send(step.commands)
    return await _pipeline(client, step).execute()


_P = TypeVar("_P", redis.Redis, redis.asyncio.Redis)


def _pipeline(client: _P, step: RedisStep) -> Any:
    """`step`'s commands queued on a pipeline of `client` (blocking or asyncio alike)."""
    pipe = client.pipeline(transaction=False)
    for command in step.commands:
        pipe.execute_command(*command)
    return pipe
