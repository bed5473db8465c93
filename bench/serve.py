"""Serving the feed over real sockets: `GET /v1/feed` against a bare endpoint of the same app.

    uv run python -m bench.serve [--users 100000] [--items 50] [--seconds 10] [--concurrency 32]
    uv run python -m bench.serve --json   # the same run, only the figures as one JSON object

Why: `bench.publish` times `read_feed` as a function call; this measures what a client sees,
through uvicorn, the middleware stack (metrics, security headers, CORS, gzip, the rate
limiter), authentication, Redis and the live card query in Postgres. The baseline is a bare
endpoint (`GET /bench/bare`, constant JSON) added to the same app in the same server process,
so the feed/bare ratio is what the feed itself costs on top of the HTTP and middleware floor.

How: a scratch database and Redis prefix (dropped afterwards) get `--events` events and a run of
`--users` users x `--items` items published with `store.publish.publish_run`. uvicorn serves
`bench.serve:bench_app` (`--factory`, 1 worker, no access log) in a subprocess on loopback;
the settings reach it through the environment it inherits. A load generator in this process
(plain asyncio HTTP/1.1 over keep-alive connections, lighter than an HTTP library so more of
the CPU is left to the server) drives each endpoint closed-loop with `--concurrency`
connections, rotating through pre-issued tokens of up to 10,000 users, then drives the feed
open-loop at half its measured peak (requests paced on a fixed schedule, latency counted from
the scheduled send time, so a stall is not hidden by the client waiting). Uses DATABASE_URL /
REDIS_URL when set, else the embedded servers under .godo/ (`godo.services`).

Recording impressions (`GODO_RECORD_IMPRESSIONS`, on by default: one XADD per page and a
signed id per item) is then measured side by side: the feed runs closed-loop on a server with
recording off and one with it on, alternating `--rounds` times (off, on, off, on, ...) so
drift in the machine's load falls on both, and the server CPU per feed request of each is
compared. The impressions the "on" servers appended are then moved into Postgres once with
`store.impressions.flush_impressions`, which times the pipeline's side.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import redis
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from godo import services
from godo.settings import Settings, get_settings
from godo.tokens import issue_token
from serving.app import create_app
from store import migrate
from store.db import copy_frame, make_engine, sqlalchemy_url
from store.impressions import flush_impressions
from store.keys import RedisKeys
from store.live_cache import warm_friend_ids
from store.publish import publish_run

BARE_PATH = "/bench/bare"
FEED_PATH = "/v1/feed"
MAX_TOKENS = 10_000
WARMUP_SECONDS = 2.0
BENCH_SECRET = "bench-serve-secret-0123456789abcdefghijklmnop"
# High enough that the limiter never refuses a request here; it still runs on every one.
UNTHROTTLED = 1_000_000_000
TARGET_RATIO = 0.6
TARGET_P99_MS = 10.0
TARGET_RECORDING_CPU = 1.05  # recording may cost at most 5% more server CPU per feed request


def bench_app() -> FastAPI:
    """`create_app()` (settings from the environment) plus the bare baseline endpoint.

    Added here rather than in the app so the app's code stays as it ships; the endpoint goes
    through the same middleware (and so the same rate limiter) as the feed.
    """
    app = create_app()

    @app.get(BARE_PATH, include_in_schema=False)
    async def bare() -> dict[str, bool]:
        return {"ok": True}

    return app


# --- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scratch:
    database_url: str
    redis_url: str
    engine: sa.Engine
    redis_client: redis.Redis
    keys: RedisKeys


@contextmanager
def scratch(data_dir: Path) -> Iterator[Scratch]:
    """A migrated database and a Redis prefix of this run's own, dropped afterwards."""
    urls = services.resolve(data_dir, os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"))
    name = f"godo_bench_serve_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(sqlalchemy_url(urls.database_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(urls.database_url).set(database=name).render_as_string(hide_password=False)
    client = redis.Redis.from_url(urls.redis_url)
    keys = RedisKeys(prefix=f"godo-bench-serve-{uuid.uuid4().hex[:8]}")
    engine: sa.Engine | None = None
    try:
        migrate.upgrade(url)
        engine = make_engine(url)
        yield Scratch(url, urls.redis_url, engine, client, keys)
    finally:
        if engine is not None:
            engine.dispose()
        batch: list[bytes] = []
        for key in client.scan_iter(match=keys.namespace_pattern(), count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
        client.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed_events(engine: sa.Engine, n_events: int) -> None:
    """Upcoming, live events at one venue, so every published item hydrates to a card."""
    now = datetime.now(UTC).replace(microsecond=0)
    with engine.begin() as conn:
        copy_frame(
            conn,
            "venues",
            pl.DataFrame({"id": ["v1"], "name": ["Hall"], "metro": ["sf"], "capacity": [5000]}),
        )
        copy_frame(
            conn,
            "events",
            pl.DataFrame(
                {
                    "id": [f"ev{i}" for i in range(n_events)],
                    "name": [f"Event {i}" for i in range(n_events)],
                    "venue_id": "v1",
                    "metro": "sf",
                    "category": "music",
                    "start_utc": [now + timedelta(days=1 + i % 30) for i in range(n_events)],
                    "end_utc": [now + timedelta(days=1 + i % 30, hours=3) for i in range(n_events)],
                    "is_free": [i % 3 == 0 for i in range(n_events)],
                    "price_min_cents": [None if i % 3 == 0 else 1500 for i in range(n_events)],
                    "status": "live",
                    "is_active": True,
                },
                schema_overrides={
                    "start_utc": pl.Datetime("us", "UTC"),
                    "end_utc": pl.Datetime("us", "UTC"),
                    "price_min_cents": pl.Int64,
                },
            ),
        )


def make_recommendations(users: int, items: int, n_events: int) -> pl.DataFrame:
    """`items` distinct events per user (needs `n_events >= items`), built column-wise."""
    index = pl.int_range(0, users * items, eager=True, dtype=pl.Int64)
    return (
        pl.DataFrame({"i": index})
        .with_columns(user_id=pl.col("i") // items + 1, rank=pl.col("i") % items + 1)
        .with_columns(
            event_id=pl.lit("ev")
            + ((pl.col("user_id") * 7 + pl.col("rank")) % n_events).cast(pl.Utf8),
            score=1.0 / pl.col("rank"),
            reason=pl.lit("bench"),
        )
        .drop("i")
    )


# --- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def uvicorn_server(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`uvicorn bench.serve:bench_app --factory` on loopback, ready when /health answers."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.serve:bench_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not become ready in 60 s") from None
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_stack() -> str:
    """The event loop and HTTP parser uvicorn picks here (`auto`: uvloop, httptools if present)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} + {http}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the load generator ----------------------------------------------------------------------


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


@dataclass(frozen=True)
class Phase:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu: float
    client_cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU per request answered in the measured window."""
        return self.server_cpu / self.requests * 1000 if self.requests else float("nan")

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Tokens:
    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = tokens
        self.next = 0

    def take(self) -> str:
        token = self.tokens[self.next % len(self.tokens)]
        self.next += 1
        return token


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
    cpu: dict[str, float] = {}

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
        await asyncio.sleep(WARMUP_SECONDS)
        cpu["server"], cpu["client"] = cpu_seconds(server_pid), time.process_time()

    await asyncio.gather(mark_cpu(), *(worker(c) for c in connections))
    server_cpu = cpu_seconds(server_pid) - cpu["server"]
    client_cpu = time.process_time() - cpu["client"]
    for conn in connections:
        conn.close()
    return Phase(len(latencies), errors, seconds, latencies, server_cpu, client_cpu)


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
    cpu: dict[str, float] = {}

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
            cpu["server"], cpu["client"] = cpu_seconds(server_pid), time.process_time()
            measure_from = scheduled
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - measure_from
    server_cpu = cpu_seconds(server_pid) - cpu["server"]
    client_cpu = time.process_time() - cpu["client"]
    while not pool.empty():
        pool.get_nowait().close()
    return Phase(len(latencies), errors, elapsed, latencies, server_cpu, client_cpu)


# --- main ------------------------------------------------------------------------------------


def line(name: str, phase: Phase) -> str:
    return (
        f"  {name:<26} {phase.rps:9,.0f} rps   p50 {phase.percentile(0.5):7.2f} ms   "
        f"p99 {phase.percentile(0.99):7.2f} ms   errors {phase.errors}   "
        f"cpu: server {phase.server_cpu / phase.seconds:4.2f} cores, "
        f"load generator {phase.client_cpu / phase.seconds:4.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=3, help="off/on pairs of the recording comparison"
    )
    parser.add_argument("--json", action="store_true", help="print only the figures as JSON")
    args = parser.parse_args()
    if args.events < args.items:
        parser.error("--events must be at least --items (each list holds distinct events)")
    data_dir = get_settings().data_path

    with scratch(data_dir) as store:
        started = time.perf_counter()
        seed_events(store.engine, args.events)
        recommendations = make_recommendations(args.users, args.items, args.events)
        result = publish_run(
            engine=store.engine,
            redis_client=store.redis_client,
            keys=store.keys,
            run_id=f"bench-serve-{uuid.uuid4().hex[:8]}",
            model="bench",
            recommendations=recommendations,
            fallback=recommendations.filter(pl.col("user_id") == 1).drop("user_id"),
            ttl_seconds=3600,
        )
        # As the `published_feed` asset does after publishing.
        warm_friend_ids(store.engine, store.redis_client, store.keys, range(1, args.users + 1))
        del recommendations
        setup_seconds = time.perf_counter() - started
        env = {
            "DATABASE_URL": store.database_url,
            "REDIS_URL": store.redis_url,
            "GODO_REDIS_PREFIX": store.keys.prefix,
            "GODO_JWT_SECRET": BENCH_SECRET,
            "GODO_RATE_LIMIT_PER_MINUTE": str(UNTHROTTLED),
            "GODO_RATE_LIMIT_BURST": str(UNTHROTTLED),
        }
        settings = Settings(jwt_secret=SecretStr(BENCH_SECRET), _env_file=None)  # type: ignore[call-arg]
        n_tokens = min(MAX_TOKENS, args.users)
        step = max(1, args.users // n_tokens)
        tokens = Tokens([issue_token(settings, 1 + i * step) for i in range(n_tokens)])
        port = free_port()
        if not args.json:
            print(f"setup done in {setup_seconds:.1f} s; measuring", flush=True)
        with uvicorn_server(env, port) as server:
            bare = asyncio.run(
                closed_loop(port, BARE_PATH, tokens, args.concurrency, args.seconds, server.pid)
            )
            feed = asyncio.run(
                closed_loop(port, FEED_PATH, tokens, args.concurrency, args.seconds, server.pid)
            )
            half = asyncio.run(
                open_loop(
                    port,
                    FEED_PATH,
                    tokens,
                    args.concurrency,
                    feed.rps / 2,
                    args.seconds,
                    server.pid,
                )
            )
        store.redis_client.delete(store.keys.impressions())
        recording: dict[bool, list[Phase]] = {False: [], True: []}
        for _ in range(args.rounds):
            for on in (False, True):
                mode_env = {**env, "GODO_RECORD_IMPRESSIONS": "true" if on else "false"}
                with uvicorn_server(mode_env, port) as server:
                    recording[on].append(
                        asyncio.run(
                            closed_loop(
                                port, FEED_PATH, tokens, args.concurrency, args.seconds, server.pid
                            )
                        )
                    )
        pages = store.redis_client.xlen(store.keys.impressions())
        flush_started = time.perf_counter()
        flushed = flush_impressions(
            engine=store.engine,
            redis_client=store.redis_client,
            keys=store.keys,
            now=datetime.now(UTC),
            retention_days=1,
        )
        flush_seconds = time.perf_counter() - flush_started

    cpu_off = statistics.median(p.cpu_ms_per_request for p in recording[False])
    cpu_on = statistics.median(p.cpu_ms_per_request for p in recording[True])
    cpu_ratio = cpu_on / cpu_off
    ratio = feed.rps / bare.rps
    p99_half = half.percentile(0.99)
    if args.json:
        print(
            json.dumps(
                {
                    "users": args.users,
                    "items": args.items,
                    "seconds": args.seconds,
                    "concurrency": args.concurrency,
                    "phases": {
                        name: _figures(phase)
                        for name, phase in (("bare", bare), ("feed", feed), ("feed_half", half))
                    },
                    "feed_over_bare_rps": round(ratio, 3),
                    "feed_p99_ms_at_half_load": round(p99_half, 2),
                    "recording": {
                        "off": [_figures(p) for p in recording[False]],
                        "on": [_figures(p) for p in recording[True]],
                        "cpu_ms_per_request_off": round(cpu_off, 4),
                        "cpu_ms_per_request_on": round(cpu_on, 4),
                        "cpu_ratio_on_over_off": round(cpu_ratio, 4),
                        "target_ratio": TARGET_RECORDING_CPU,
                        "met": cpu_ratio <= TARGET_RECORDING_CPU,
                    },
                    "flush": {
                        "pages": pages,
                        "impressions": flushed.inserted,
                        "seconds": round(flush_seconds, 3),
                    },
                }
            )
        )
        return
    print(
        f"serve {args.users:,} users x {args.items} items ({result.n_rows:,} rows, "
        f"{args.events:,} events; published in {result.seconds:.1f} s, setup {setup_seconds:.1f} s)"
    )
    print(
        f"uvicorn, 1 worker, {server_stack()}, no access log, loopback; "
        f"{args.concurrency} keep-alive connections, {n_tokens:,} users' tokens in rotation; "
        f"{args.seconds:g} s per phase after {WARMUP_SECONDS:g} s warm-up"
    )
    print(
        f"load generator (asyncio HTTP/1.1) runs in this process and shares the "
        f"{os.cpu_count()} cores with the server, Redis and Postgres: absolute rps are a floor"
    )
    print(
        "rate limiter still in the path of both endpoints (JWT check + one Redis script per "
        "request), set to 1e9/min so it never refuses"
    )
    print(line("bare GET /bench/bare", bare))
    print(line("feed GET /v1/feed (full)", feed))
    print(line(f"feed at 50% ({feed.rps / 2:,.0f}/s)", half))
    print("targets:")
    met = "met" if ratio >= TARGET_RATIO else "missed"
    print(f"  feed / bare rps      {ratio:5.2f}x   (target >= {TARGET_RATIO}x: {met})")
    met = "met" if p99_half <= TARGET_P99_MS else "missed"
    print(f"  feed p99 at 50% load {p99_half:5.2f} ms  (target <= {TARGET_P99_MS:g} ms: {met})")
    print("recording impressions, server CPU per feed request (median of the rounds):")
    for on in (False, True):
        per_round = ", ".join(f"{p.cpu_ms_per_request:.3f}" for p in recording[on])
        median = cpu_on if on else cpu_off
        label = "on " if on else "off"
        print(f"  recording {label}  {median:6.3f} ms   (rounds: {per_round})")
    met = "met" if cpu_ratio <= TARGET_RECORDING_CPU else "missed"
    print(
        f"  on / off CPU         {cpu_ratio:5.3f}x   (target <= {TARGET_RECORDING_CPU:.2f}x: {met})"
    )
    rate = flushed.inserted / flush_seconds if flush_seconds else float("nan")
    print(
        f"moved {pages:,} pages ({flushed.inserted:,} impressions) from the stream into "
        f"Postgres in {flush_seconds:.2f} s ({rate:,.0f} impressions/s)"
    )
    errors = [p.errors for p in (bare, feed, half, *recording[False], *recording[True])]
    if any(errors):
        print("  note: non-200 responses were counted as errors above")


def _figures(phase: Phase) -> dict[str, float]:
    return {
        "rps": round(phase.rps, 1),
        "p50_ms": round(phase.percentile(0.5), 2),
        "p99_ms": round(phase.percentile(0.99), 2),
        "errors": phase.errors,
        "server_cores": round(phase.server_cpu / phase.seconds, 3),
        "server_cpu_ms_per_request": round(phase.cpu_ms_per_request, 4),
    }


if __name__ == "__main__":
    main()
