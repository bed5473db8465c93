"""Load for `bench.serve`: one measured phase against a server process, and how it was driven.

Two generators. At saturation, `wrk` (`bench.wrk`) when it is installed, else `closed_loop`
here. At a fixed rate, always `open_loop` here (wrk cannot pace): plain asyncio HTTP/1.1 over
keep-alive connections, requests sent on a schedule whether or not earlier ones returned, with
latency counted from the scheduled send time so a stall is not hidden by the client waiting.

The server's CPU is read from /proc for the process and every descendant (uvicorn's workers),
before and after the measured window.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import wrk
from bench.targets import figure

WARMUP_SECONDS = 2.0
ASYNCIO = "asyncio (in-process, Python)"


@dataclass(frozen=True)
class Phase:
    """One measured window: throughput, latency, errors and who spent how much CPU."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    client_cpu: float
    generator: str
    # CPU seconds of each server process in the window (the master and its workers).
    server_cpu_by_process: tuple[float, ...] = ()

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU per request answered in the measured window."""
        return self.server_cpu / self.requests * 1000 if self.requests else math.nan

    def figures(self) -> dict[str, object]:
        return {
            "rps": figure(self.rps, 1),
            "p50_ms": figure(self.p50_ms, 2),
            "p99_ms": figure(self.p99_ms, 2),
            "requests": self.requests,
            "errors": self.errors,
            "server_cores": figure(self.server_cpu / self.seconds, 3) if self.seconds else None,
            "server_cpu_ms_per_request": figure(self.cpu_ms_per_request, 4),
            "load_generator_cores": (
                figure(self.client_cpu / self.seconds, 3) if self.seconds else None
            ),
            "server_cores_by_process": [
                figure(cpu / self.seconds, 3) for cpu in self.server_cpu_by_process
            ],
            "generator": self.generator,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` quantile (0..1) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- server CPU --------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0 elsewhere or once it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, found by parent id in /proc (the kernel's
    `/proc/<pid>/task/*/children` is not always there)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of `pid` and each of its descendants."""
    return {p: cpu_seconds(p) for p in descendants(pid)}


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> tuple[float, ...]:
    """Per process, the CPU spent between two `tree_cpu` samples (a process that appeared in
    between counts from zero; one that vanished is left out, its time unknown)."""
    return tuple(after[pid] - before.get(pid, 0.0) for pid in sorted(after))


def worker_balance(cpu_by_process: Sequence[float]) -> float:
    """CPU of the second-busiest process over the busiest's: near 1 when two workers shared
    the load, near 0 when one got (nearly) every connection. NaN with fewer than two."""
    busiest = sorted(cpu_by_process, reverse=True)[:2]
    if len(busiest) < 2 or busiest[0] <= 0:
        return math.nan
    return busiest[1] / busiest[0]


# --- wrk at saturation -------------------------------------------------------------------------


def saturate(
    port: int,
    path: str,
    tokens: Sequence[str],
    *,
    connections: int,
    seconds: float,
    server_pid: int,
    use_wrk: bool,
) -> Phase:
    """Closed-loop load after a warm-up: wrk (1 thread) when `use_wrk`, else `closed_loop`."""
    if not use_wrk:
        return asyncio.run(
            closed_loop(port, path, Tokens(tokens), connections, seconds, server_pid)
        )
    url = f"http://127.0.0.1:{port}"
    wrk.run_wrk(url, path, tokens, threads=1, connections=connections, seconds=WARMUP_SECONDS)
    before = tree_cpu(server_pid)
    report = wrk.run_wrk(url, path, tokens, threads=1, connections=connections, seconds=seconds)
    spent = cpu_spent(before, tree_cpu(server_pid))
    return Phase(
        requests=report.requests,
        errors=report.errors,
        seconds=report.seconds,
        p50_ms=report.p50_ms,
        p99_ms=report.p99_ms,
        server_cpu=sum(spent),
        client_cpu=report.client_cpu,
        generator="wrk",
        server_cpu_by_process=spent,
    )


# --- the asyncio generator ---------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; just enough of the protocol for these responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        return cls(reader, writer)

    async def get(self, path: str, token: str) -> int:
        """Send one GET and read the whole response; returns the status code."""
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        self.writer.write(request.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"response without Content-Length: {head!r}")
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


class Tokens:
    """Pre-issued tokens handed out in rotation."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = tokens
        self.next = 0

    def take(self) -> str:
        token = self.tokens[self.next % len(self.tokens)]
        self.next += 1
        return token


def _phase(
    latencies: list[float],
    errors: int,
    seconds: float,
    server: tuple[dict[int, float], dict[int, float]],
    client_cpu: float,
) -> Phase:
    spent = cpu_spent(*server)
    return Phase(
        requests=len(latencies),
        errors=errors,
        seconds=seconds,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        server_cpu=sum(spent),
        client_cpu=client_cpu,
        generator=ASYNCIO,
        server_cpu_by_process=spent,
    )


async def closed_loop(
    port: int, path: str, tokens: Tokens, concurrency: int, seconds: float, server_pid: int
) -> Phase:
    """`concurrency` connections, each sending its next request as soon as one is answered."""
    connections = [await Connection.open(port) for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    measure_from = started + WARMUP_SECONDS
    stop_at = measure_from + seconds
    before: dict[int, float] = {}
    client_before = 0.0

    async def worker(conn: Connection) -> None:
        nonlocal errors
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            status = await conn.get(path, tokens.take())
            if sent >= measure_from:
                latencies.append((time.perf_counter() - sent) * 1000)
                errors += status != 200

    async def mark_cpu() -> None:
        nonlocal before, client_before
        await asyncio.sleep(WARMUP_SECONDS)
        before, client_before = tree_cpu(server_pid), time.process_time()

    await asyncio.gather(mark_cpu(), *(worker(c) for c in connections))
    after, client_cpu = tree_cpu(server_pid), time.process_time() - client_before
    for conn in connections:
        conn.close()
    return _phase(latencies, errors, seconds, (before, after), client_cpu)


async def open_loop(
    port: int,
    path: str,
    tokens: Tokens,
    concurrency: int,
    rate: float,
    seconds: float,
    server_pid: int,
) -> Phase:
    """Requests sent on a fixed schedule at `rate`/s whether or not earlier ones returned.

    Latency is measured from each request's scheduled time, so waiting for a free connection
    (the server falling behind) counts against it.
    """
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(concurrency):
        pool.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    errors = 0
    total = int(rate * (WARMUP_SECONDS + seconds))
    warmup = int(rate * WARMUP_SECONDS)
    tasks: list[asyncio.Task[None]] = []
    before: dict[int, float] = {}
    client_before = 0.0

    async def one(index: int, scheduled: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await conn.get(path, tokens.take())
        finally:
            pool.put_nowait(conn)
        if index >= warmup:
            latencies.append((time.perf_counter() - scheduled) * 1000)
            errors += status != 200

    started = measure_from = time.perf_counter()
    for index in range(total):
        scheduled = started + index / rate
        if index == warmup:
            before, client_before = tree_cpu(server_pid), time.process_time()
            measure_from = scheduled
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - measure_from
    after, client_cpu = tree_cpu(server_pid), time.process_time() - client_before
    while not pool.empty():
        pool.get_nowait().close()
    return _phase(latencies, errors, elapsed, (before, after), client_cpu)


def paced(
    port: int,
    path: str,
    tokens: Sequence[str],
    *,
    connections: int,
    rate: float,
    seconds: float,
    server_pid: int,
) -> Phase:
    """`open_loop` at `rate`/s, run to completion."""
    return asyncio.run(
        open_loop(port, path, Tokens(tokens), connections, rate, seconds, server_pid)
    )
