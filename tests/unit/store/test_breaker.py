"""The circuit breaker's state machine, on a clock the test moves (no Redis needed: the
breaker against a real hung Redis is in `tests/integration/test_faults.py`)."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio

from store.breaker import CircuitBreaker, CircuitOpenError, HiredisPackedConnection


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _hang() -> None:
    raise redis.TimeoutError("Timeout reading from socket")


def _breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, open_seconds=5.0, clock=clock)


def test_it_opens_after_consecutive_failures_and_then_fails_fast() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        with pytest.raises(redis.TimeoutError):
            breaker.call(_hang)
    assert breaker.state == "open" and breaker.opened == 1
    sent = []
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: sent.append("GET"))
    assert sent == [] and breaker.refused == 1
    assert isinstance(CircuitOpenError(), redis.ConnectionError)  # callers' fallbacks apply


def test_a_success_in_between_resets_the_count() -> None:
    breaker = _breaker(Clock())
    for _ in range(2):
        with pytest.raises(redis.TimeoutError):
            breaker.call(_hang)
    assert breaker.call(lambda: "PONG") == "PONG"
    with pytest.raises(redis.TimeoutError):
        breaker.call(_hang)
    assert breaker.state == "closed"


def test_answers_that_are_errors_are_not_outages() -> None:
    breaker = _breaker(Clock())

    def wrong_type() -> None:
        raise redis.ResponseError("WRONGTYPE")

    for _ in range(5):
        with pytest.raises(redis.ResponseError):
            breaker.call(wrong_type)
    assert breaker.state == "closed"


def test_one_probe_at_a_time_once_open_seconds_passed() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        with pytest.raises(redis.TimeoutError):
            breaker.call(_hang)
    clock.now += 5.0
    assert breaker.state == "half_open"
    breaker.before()  # this caller is the probe
    with pytest.raises(CircuitOpenError):
        breaker.before()  # everyone else still fails fast meanwhile
    breaker.failure()  # the probe failed: open again, for another open_seconds
    assert breaker.state == "open"
    clock.now += 4.9
    with pytest.raises(CircuitOpenError):
        breaker.before()
    clock.now += 0.1
    assert breaker.call(lambda: "PONG") == "PONG"  # the probe succeeded: closed
    assert breaker.state == "closed" and breaker.opened == 1


def test_a_failure_while_open_keeps_it_open_longer() -> None:
    """What the keeper's failed PINGs do, so users' requests are never the probe."""
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        with pytest.raises(redis.TimeoutError):
            breaker.call(_hang)
    for _ in range(10):
        clock.now += 1.0
        breaker.failure()
        assert breaker.state == "open"
    breaker.success()
    assert breaker.state == "closed"


@pytest.mark.parametrize(
    "command",
    [
        ("GET", "godo:run:r1:user:42"),
        ("SET", b"bytes-key", "ünïcode value", "PX", 1500),
        ("EVALSHA", "a" * 40, 1, "godo:ratelimit:user:7", 16666.666666666668, 1_000_000_000),
        ("HMGET", "meta", "experiment", "arm", "model_version", "published"),
        ("XADD", "stream", "*", "p", b"\x00\xff" * 600),  # binary, over the chunk size
        ("CONFIG GET", "maxmemory"),  # a two-word command name is split, as redis-py does
    ],
)
def test_hiredis_packing_sends_the_bytes_redis_py_would(command: tuple[object, ...]) -> None:
    python = redis.asyncio.Connection().pack_command(*command)
    assert HiredisPackedConnection().pack_command(*command) == [b"".join(python)]


def test_hiredis_packing_refuses_what_redis_py_refuses() -> None:
    with pytest.raises(redis.DataError):
        HiredisPackedConnection().pack_command("SET", "k", {"not": "encodable"})
