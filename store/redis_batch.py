"""Group commit for Redis: the commands of concurrent requests share one pipeline.

Why: in the API, a round trip through redis-py's asyncio client costs far more CPU than the
commands in it (taking a connection, the timeout machinery, a write and a read, waking the
task), and a feed request made three of them (the rate limiter's bucket, the feed's
pipeline, the impressions' XADD). Under load many requests wait on Redis at once; sending
what they wait on together turns N round trips into one (`bench.serve` measures it).

How: `send(commands)` queues the commands and awaits their replies. While no pipeline is in
flight, the first caller's flush starts on the next turn of the event loop, so everything
queued in the same turn goes with it; while one is in flight, new commands wait for it to
return and then all go in the next. So an idle server adds no delay (one request, one
pipeline, as before) and a busy one sends one pipeline per round trip, however many requests
it carries. Replies are handed back per caller; a command's error is raised to its caller
only, and an outage (the connection failed, or the circuit breaker is open) to every caller
of that pipeline, each as the exception it would have got alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio

Command = tuple[Any, ...]
_Waiter = tuple[list[Command], "asyncio.Future[list[Any]]"]
# A pipeline this long is sent even while more callers queue: a bound on the reply to parse
# and on how long the first caller in a batch waits behind the others.
MAX_BATCH_COMMANDS = 2048


class RedisBatcher:
    """Sends the commands of concurrent callers in shared pipelines (one event loop)."""

    def __init__(self, client: redis.asyncio.Redis, max_commands: int = MAX_BATCH_COMMANDS) -> None:
        self.client = client
        self.max_commands = max_commands
        self._queue: list[_Waiter] = []
        self._flush_task: asyncio.Task[None] | None = None

    async def send(self, commands: list[Command]) -> list[Any]:
        """The replies to `commands`, in order; raises the first error among them."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((commands, future))
        if self._flush_task is None:
            # Runs from the next turn of the loop: what else is queued in this one goes along.
            self._flush_task = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                await self._send_batch(self._take())
        finally:
            self._flush_task = None

    def _take(self) -> list[_Waiter]:
        """The oldest callers, up to `max_commands` commands (at least one caller)."""
        taken, count = 0, 0
        for commands, _ in self._queue:
            if taken and count + len(commands) > self.max_commands:
                break
            taken += 1
            count += len(commands)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    async def _send_batch(self, batch: list[_Waiter]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for commands, _ in batch:
            for command in commands:
                pipe.execute_command(*command)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as outage:  # every caller gets it; cancellation included
            for _, future in batch:
                if not future.done():
                    future.set_exception(_copy(outage))
            if not isinstance(outage, Exception):
                raise
            return
        start = 0
        for commands, future in batch:
            part = replies[start : start + len(commands)]
            start += len(commands)
            if future.done():  # the caller went away (its request was cancelled)
                continue
            error = next((reply for reply in part if isinstance(reply, Exception)), None)
            if error is None:
                future.set_result(part)
            else:
                future.set_exception(error)


def _copy(error: BaseException) -> BaseException:
    """Each waiter raises an exception object of its own (tracebacks are per raise)."""
    if isinstance(error, asyncio.CancelledError):
        return asyncio.CancelledError()
    try:
        clone = type(error)(*error.args)
    except Exception:
        return error
    clone.__cause__ = error
    return clone
