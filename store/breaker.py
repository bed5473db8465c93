"""A circuit breaker around Redis, so a hung Redis costs a request nothing instead of seconds.

Why: Redis paused (SIGSTOP) or a network that drops packets does not refuse connections, it
just never answers, so every command waits out the socket timeout (and its retry) before the
caller falls back to Postgres: 2-4 s per swipe, feed read and health probe, and a thread
pool that fills up behind them. The breaker counts consecutive failures (connection errors
and timeouts: the server not answering, not the server answering with an error); after
`failure_threshold` of them it *opens*, and for `open_seconds` every command fails at once
with `CircuitOpenError`, a `redis.ConnectionError`, so every caller's existing Redis-outage
path (Postgres fallback, fail-open rate limit, impressions counted lost) runs without
waiting.

Closing: once `open_seconds` have passed, the next command is let through as a probe
(*half-open*; the others keep failing fast); its success closes the breaker, its failure
opens it again. The API also probes from its background keeper (`serving.keeper`) with a
PING of its own every second, so users' requests are never the probe while the keeper runs.

One breaker per process, shared by the process's blocking and asyncio clients (they talk to
the same server). The state is a few numbers under a lock, so a check costs well under a
microsecond.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import redis
import redis.asyncio
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline
from redis.connection import HiredisRespSerializer  # type: ignore[attr-defined]  # stubs predate it

BreakerState = Literal["closed", "open", "half_open"]
# Errors that mean "Redis did not answer"; anything else (a ResponseError...) is an answer.
_OUTAGES = (redis.ConnectionError, redis.TimeoutError, OSError)


class CircuitOpenError(redis.ConnectionError):
    """Redis was failing moments ago: the command was not sent (fail fast, no socket wait)."""


class CircuitBreaker:
    """Consecutive-failure breaker with half-open probes (see the module docstring)."""

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        open_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or open_seconds <= 0:
            raise ValueError("a breaker needs failure_threshold >= 1 and open_seconds > 0")
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None  # None: closed
        self._probing = False
        self.opened = 0  # how many times it opened (metrics, tests)
        self.refused = 0  # commands failed fast while open

    @property
    def state(self) -> BreakerState:
        with self._lock:
            if self._open_until is None:
                return "closed"
            return "half_open" if self._clock() >= self._open_until else "open"

    def before(self) -> None:
        """Raise `CircuitOpenError` unless a command may be sent now."""
        with self._lock:
            if self._open_until is None:
                return
            if self._clock() >= self._open_until and not self._probing:
                self._probing = True  # this caller is the half-open probe
                return
            self.refused += 1
        raise CircuitOpenError("redis circuit open: failing fast while redis is unhealthy")

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = None
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._open_until is not None or self._failures >= self.failure_threshold:
                if self._open_until is None:
                    self.opened += 1
                self._open_until = self._clock() + self.open_seconds

    def call(self, command: Callable[[], Any]) -> Any:
        """Run a blocking `command` through the breaker."""
        self.before()
        try:
            result = command()
        except _OUTAGES:
            self.failure()
            raise
        self.success()
        return result


class GuardedRedis(redis.Redis):
    """`redis.Redis` whose commands and pipelines go through a `CircuitBreaker`."""

    breaker: CircuitBreaker

    @classmethod
    def connect(cls, url: str, breaker: CircuitBreaker, **kwargs: Any) -> GuardedRedis:
        """Like `from_url` (`kwargs` go to the pool), reporting to `breaker`."""
        client = cls(connection_pool=redis.ConnectionPool.from_url(url, **kwargs))
        client.auto_close_connection_pool = True  # type: ignore[attr-defined]  # as `from_url`
        client.breaker = breaker
        return client

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self.breaker.call(
            lambda: super(GuardedRedis, self).execute_command(*args, **options)
        )

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        pipe = _GuardedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.breaker = self.breaker
        return pipe


class _GuardedPipeline(Pipeline):
    breaker: CircuitBreaker

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        result: list[Any] = self.breaker.call(
            lambda: super(_GuardedPipeline, self).execute(raise_on_error)
        )
        return result


class GuardedAsyncRedis(redis.asyncio.Redis):
    """`redis.asyncio.Redis` whose commands and pipelines go through a `CircuitBreaker`."""

    breaker: CircuitBreaker

    @classmethod
    def connect(cls, url: str, breaker: CircuitBreaker, **kwargs: Any) -> GuardedAsyncRedis:
        """Like `from_url` (`kwargs` go to the pool), reporting to `breaker`; commands are
        packed by hiredis (`HiredisPackedConnection`) for plain TCP URLs."""
        if url.startswith("redis://"):
            kwargs.setdefault("connection_class", HiredisPackedConnection)
        pool: redis.asyncio.ConnectionPool = redis.asyncio.ConnectionPool.from_url(url, **kwargs)
        client = cls(connection_pool=pool)
        client.auto_close_connection_pool = True
        client.breaker = breaker
        return client

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.breaker.before()
        try:
            result = await super().execute_command(*args, **options)
        except _OUTAGES:
            self.breaker.failure()
            raise
        self.breaker.success()
        return result

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> AsyncPipeline:
        pipe = _GuardedAsyncPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.breaker = self.breaker
        return pipe


class HiredisPackedConnection(redis.asyncio.Connection):
    """An asyncio connection whose commands are packed by hiredis's C packer.

    Why: redis-py's blocking connections pack with hiredis when it is installed, its asyncio
    connections always in Python, and packing the feed's dozen commands per request was one
    of the API's larger CPU costs (`bench/README.md`). The bytes are the same; the serializer
    is redis-py's own (`redis.connection.HiredisRespSerializer`).
    """

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._packer.pack(*args)


class _GuardedAsyncPipeline(AsyncPipeline):
    breaker: CircuitBreaker

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.breaker.before()
        try:
            result: list[Any] = await super().execute(raise_on_error)
        except _OUTAGES:
            self.breaker.failure()
            raise
        self.breaker.success()
        return result
