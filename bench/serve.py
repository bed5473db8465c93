"""Serving the feed against the framework's floor, over real sockets, with an external load.

    uv run python -m bench.serve [--users 20000] [--items 50] [--seconds 10] [--concurrency 32]
    uv run python -m bench.serve --json   # the same run, only the figures as one JSON object
    uv run python -m bench.serve --recording-rounds 3   # plus impressions on/off (issue 13)

Why: `bench.publish` times `read_feed` as a function call; this measures what a client sees,
through uvicorn, the middleware stack (metrics, security headers, CORS, gzip, the rate
limiter), authentication, Redis and Postgres, against two baselines in the same run:

- the floor: a minimal FastAPI app with one constant endpoint and no middleware
  (`bench.serve:floor_app`, `GET /floor`), the most any FastAPI route can do on this server;
- bare: the production app (`create_app()`, every middleware on) plus a constant endpoint
  (`GET /bench/bare`), so bare/floor is what the middleware costs and feed/bare the feed.

Then the feed (`GET /v1/feed?limit=20`, 20 items) on 2 workers, and on a server whose
`REDIS_URL` points at a port nobody listens on: every read falls back to Postgres and the
rate limiter fails open (issue 15's targets are ratios to the floor, see `targets_for`).

How: a scratch database and Redis prefix (dropped afterwards) get `--events` events and a run of
`--users` users x `--items` items published with `store.publish.publish_run`. Each server is
`uvicorn <app> --factory` (uvloop + httptools, 1 worker unless said, no access log) in a
subprocess on loopback; settings reach it through the environment it inherits. At saturation
the load is `wrk` (1 thread, `--concurrency` connections; `bench.wrk`), each request carrying
the next of up to 10,000 users' pre-issued tokens; without wrk the bench says how to install
it and falls back to its own asyncio generator (`bench.load`). At half of the feed's peak the
three endpoints get the asyncio open-loop generator (wrk cannot pace requests): latency counts
from each request's scheduled send time. Server CPU is read from /proc (the server process and
its workers) around each measured window. Uses DATABASE_URL / REDIS_URL when set, else the
embedded servers under .godo/ (`godo.services`).

With `--recording-rounds N`, recording impressions (`GODO_RECORD_IMPRESSIONS`) is measured
side by side: the feed (its default page) runs at saturation on a server with recording off
and one with it on, alternating N times (off, on, off, on, ...) so drift in the machine's
load falls on both, and the server CPU per feed request of each is compared. The impressions
the "on" servers appended are then moved into Postgres once with
`store.impressions.flush_impressions`, which times the pipeline's side.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import polars as pl
import redis
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from bench import wrk
from bench.load import WARMUP_SECONDS, Phase, paced, saturate, worker_balance
from bench.targets import Target, figure, ratio, report
from core.settings import Settings, get_settings
from core.tokens import issue_token
from godo import services
from serving.app import create_app
from store import migrate
from store.db import copy_frame, make_engine, sqlalchemy_url
from store.impressions import flush_impressions
from store.keys import RedisKeys
from store.live_cache import warm_friend_ids
from store.publish import publish_run

FLOOR_APP = "bench.serve:floor_app"
BENCH_APP = "bench.serve:bench_app"
FLOOR_PATH = "/floor"
BARE_PATH = "/bench/bare"
PID_PATH = "/bench/pid"
FEED_PATH = "/v1/feed?limit=20"
RECORDING_PATH = "/v1/feed"  # the default page, as issue 13 measured it
MAX_TOKENS = 10_000
# The servers of the main run, by the name their log is reported under.
SERVERS = ("floor", "bare and feed", "2 workers", "Redis down")
# What `store.feed` logs for each read (of a feed, or of cards) it serves from Postgres because
# Redis failed: expected with Redis down; elsewhere it means Redis timed out (a busy machine)
# and the phase mixed both paths.
FELL_BACK = "redis unavailable, reading"
# uvicorn's workers accept from one shared socket, and wrk opens all its connections at once:
# the kernel may hand most of them (even all) to one worker, which stays with them for the
# whole run, and that measures one worker, not two. A run whose less busy worker used under
# half the busier one's CPU is made again, up to `BALANCE_ATTEMPTS` runs in all.
MIN_BALANCE = 0.5
BALANCE_ATTEMPTS = 3
# Generous: on a busy 2-core machine two workers importing the app at once take a while.
READY_SECONDS = 180
BENCH_SECRET = "bench-serve-secret-0123456789abcdefghijklmnop"
# High enough that the limiter never refuses a request here; it still runs on every one.
UNTHROTTLED = 1_000_000_000
# Issue 15's targets.
TARGET_FEED_OVER_FLOOR = 0.4
TARGET_P99_HALF_MS = 10.0
TARGET_TWO_WORKERS = 1.6
TARGET_FALLBACK_OVER_FLOOR = 0.15
TARGET_RECORDING_CPU = 1.05  # recording may cost at most 5% more server CPU per feed request


def floor_app() -> FastAPI:
    """The framework's floor: FastAPI with one constant endpoint and no middleware at all."""
    app = FastAPI()

    @app.get(FLOOR_PATH)
    async def floor() -> dict[str, bool]:
        return {"ok": True}

    return app


def bench_app() -> FastAPI:
    """`create_app()` (settings from the environment) plus the bare baseline endpoint.

    Added here rather than in the app so the app's code stays as it ships; the endpoints go
    through the same middleware (and so the same rate limiter) as the feed. `GET /bench/pid`
    tells which worker answered, so a multi-worker server is used only once all are up.
    """
    app = create_app()

    @app.get(BARE_PATH, include_in_schema=False)
    async def bare() -> dict[str, bool]:
        return {"ok": True}

    @app.get(PID_PATH, include_in_schema=False)
    async def pid() -> dict[str, int]:
        return {"pid": os.getpid()}

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


# --- the servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as response:
        body: bytes = response.read()
    return body


@contextmanager
def uvicorn_server(
    env: dict[str, str],
    port: int,
    *,
    app: str = BENCH_APP,
    workers: int = 1,
    ready_path: str = "/health",
    log: IO[bytes] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`uvicorn <app> --factory` on loopback, ready when `ready_path` answers (and, with
    several workers, once `/bench/pid` has been answered by each: a connection opened while
    one is still starting would stay on the other for the whole run). The server's output
    goes to `log` when given, else to this process's."""
    command = [
        *(sys.executable, "-m", "uvicorn", app, "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        *("--no-access-log", "--log-level", "warning"),
    ]
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT if log else None
    )
    try:
        deadline = time.monotonic() + READY_SECONDS
        pids: set[int] = set()
        while True:
            if process.poll() is not None:
                tail = "\n".join(log_lines(log)[-20:]) if log else "(its output is above)"
                raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{tail}")
            try:
                _get(f"http://127.0.0.1:{port}{ready_path}")
                if workers == 1:
                    break
                pids.add(json.loads(_get(f"http://127.0.0.1:{port}{PID_PATH}"))["pid"])
                if len(pids) >= workers:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"uvicorn ({app}, {workers} workers) not ready in {READY_SECONDS} s"
                )
            time.sleep(0.05 if pids else 0.2)
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


def log_lines(log: IO[bytes]) -> list[str]:
    """Everything written to a server's log file so far."""
    log.seek(0)
    return log.read().decode(errors="replace").splitlines()


def fell_back(lines: Sequence[str]) -> int:
    """Feed reads a server logged as served from Postgres because Redis failed."""
    return sum(FELL_BACK in line for line in lines)


def log_summary(logs: dict[str, list[str]]) -> str:
    """`floor 0, bare and feed 4 (2 reads fell back to Postgres), ...`"""
    parts = []
    for name, lines in logs.items():
        fallbacks = fell_back(lines)
        reads = "read" if fallbacks == 1 else "reads"
        note = f" ({fallbacks:,} {reads} fell back to Postgres)" if fallbacks else ""
        parts.append(f"{name} {len(lines):,}{note}")
    return ", ".join(parts)


# --- the measurements --------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """How every phase is driven: the tokens, connections, seconds and generator."""

    tokens: Sequence[str]
    connections: int
    seconds: float
    use_wrk: bool

    def saturate(
        self, port: int, path: str, server_pid: int, *, connections: int | None = None
    ) -> Phase:
        return saturate(
            port,
            path,
            self.tokens,
            connections=connections or self.connections,
            seconds=self.seconds,
            server_pid=server_pid,
            use_wrk=self.use_wrk,
        )

    def paced(self, port: int, path: str, server_pid: int, rate: float) -> Phase:
        return paced(
            port,
            path,
            self.tokens,
            connections=self.connections,
            rate=rate,
            seconds=self.seconds,
            server_pid=server_pid,
        )


@dataclass(frozen=True)
class Results:
    floor: Phase
    bare: Phase
    feed: Phase
    # Every run on 2 workers: another was made when the kernel gave nearly all of wrk's
    # connections to one worker (see `MIN_BALANCE`).
    feed_2_workers_attempts: list[Phase]
    feed_fallback: Phase
    floor_half: Phase
    bare_half: Phase
    feed_half: Phase
    # What each server logged (kept out of the report, but counted: see `FELL_BACK`).
    server_logs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def feed_2_workers(self) -> Phase:
        """The attempt whose two workers shared the load most evenly."""
        return max(
            self.feed_2_workers_attempts,
            key=lambda p: _or_zero(worker_balance(p.server_cpu_by_process)),
        )

    def saturation_rows(self) -> list[tuple[str, Phase]]:
        return [
            (f"floor   GET {FLOOR_PATH}", self.floor),
            (f"bare    GET {BARE_PATH}", self.bare),
            (f"feed    GET {FEED_PATH}", self.feed),
            ("feed, 2 workers", self.feed_2_workers),
            ("feed on Postgres (Redis down)", self.feed_fallback),
        ]

    def half_rows(self) -> list[tuple[str, Phase]]:
        return [
            (f"floor   GET {FLOOR_PATH}", self.floor_half),
            (f"bare    GET {BARE_PATH}", self.bare_half),
            (f"feed    GET {FEED_PATH}", self.feed_half),
        ]

    def ratios(self) -> dict[str, float]:
        return {
            "bare_over_floor": ratio(self.bare.rps, self.floor.rps),
            "feed_over_floor": ratio(self.feed.rps, self.floor.rps),
            "feed_over_bare": ratio(self.feed.rps, self.bare.rps),
            "feed_2_workers_over_1": ratio(self.feed_2_workers.rps, self.feed.rps),
            "feed_fallback_over_floor": ratio(self.feed_fallback.rps, self.floor.rps),
        }


def _or_zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def targets_for(results: Results) -> list[Target]:
    """Issue 15's serving targets, from one run's figures."""
    ratios = results.ratios()
    return [
        Target("feed / floor rps", ratios["feed_over_floor"], ">=", TARGET_FEED_OVER_FLOOR),
        Target("feed p99 at half load", results.feed_half.p99_ms, "<=", TARGET_P99_HALF_MS, "ms"),
        Target(
            "feed 2 workers / 1 worker", ratios["feed_2_workers_over_1"], ">=", TARGET_TWO_WORKERS
        ),
        Target(
            "feed on Postgres / floor rps",
            ratios["feed_fallback_over_floor"],
            ">=",
            TARGET_FALLBACK_OVER_FLOOR,
        ),
    ]


def measure(env: dict[str, str], load: Load) -> Results:
    """Every phase of the main run, in an order that keeps each comparison close in time."""
    with ExitStack() as files:
        logs = {name: files.enter_context(tempfile.TemporaryFile()) for name in SERVERS}
        with ExitStack() as servers:
            floor_port = free_port()
            floor_server = servers.enter_context(
                uvicorn_server(
                    env, floor_port, app=FLOOR_APP, ready_path=FLOOR_PATH, log=logs["floor"]
                )
            )
            port = free_port()
            server = servers.enter_context(uvicorn_server(env, port, log=logs["bare and feed"]))
            floor = load.saturate(floor_port, FLOOR_PATH, floor_server.pid)
            bare = load.saturate(port, BARE_PATH, server.pid)
            feed = load.saturate(port, FEED_PATH, server.pid)
            rate = feed.rps / 2
            floor_half = load.paced(floor_port, FLOOR_PATH, floor_server.pid, rate)
            bare_half = load.paced(port, BARE_PATH, server.pid, rate)
            feed_half = load.paced(port, FEED_PATH, server.pid, rate)
        port = free_port()
        with uvicorn_server(env, port, workers=2, log=logs["2 workers"]) as server:
            attempts: list[Phase] = []
            while len(attempts) < BALANCE_ATTEMPTS:
                attempts.append(
                    load.saturate(port, FEED_PATH, server.pid, connections=2 * load.connections)
                )
                if worker_balance(attempts[-1].server_cpu_by_process) >= MIN_BALANCE:
                    break
        port = free_port()
        redis_down = {**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
        with uvicorn_server(redis_down, port, log=logs["Redis down"]) as server:
            fallback = load.saturate(port, FEED_PATH, server.pid)
        # Read once every server has stopped: they share the files' offsets while running.
        server_logs = {name: log_lines(log) for name, log in logs.items()}
    return Results(
        floor,
        bare,
        feed,
        attempts,
        fallback,
        floor_half,
        bare_half,
        feed_half,
        server_logs=server_logs,
    )


@dataclass(frozen=True)
class Recording:
    off: list[Phase]
    on: list[Phase]
    pages: int
    impressions: int
    flush_seconds: float

    @property
    def cpu_off(self) -> float:
        return statistics.median(p.cpu_ms_per_request for p in self.off)

    @property
    def cpu_on(self) -> float:
        return statistics.median(p.cpu_ms_per_request for p in self.on)

    @property
    def target(self) -> Target:
        cpu_ratio = ratio(self.cpu_on, self.cpu_off)
        return Target("recording on / off CPU", cpu_ratio, "<=", TARGET_RECORDING_CPU)

    def figures(self) -> dict[str, object]:
        return {
            "path": RECORDING_PATH,
            "off": [p.figures() for p in self.off],
            "on": [p.figures() for p in self.on],
            "cpu_ms_per_request_off": figure(self.cpu_off, 4),
            "cpu_ms_per_request_on": figure(self.cpu_on, 4),
            "cpu_ratio_on_over_off": figure(self.target.value, 4),
            "target_ratio": TARGET_RECORDING_CPU,
            "met": self.target.met,
            "flush": {
                "pages": self.pages,
                "impressions": self.impressions,
                "seconds": figure(self.flush_seconds, 3),
            },
        }


def measure_recording(store: Scratch, env: dict[str, str], load: Load, rounds: int) -> Recording:
    """The feed at saturation with recording off, then on, `rounds` times; then one flush."""
    store.redis_client.delete(store.keys.impressions())
    phases: dict[bool, list[Phase]] = {False: [], True: []}
    for _ in range(rounds):
        for on in (False, True):
            mode_env = {**env, "GODO_RECORD_IMPRESSIONS": "true" if on else "false"}
            port = free_port()
            with uvicorn_server(mode_env, port) as server:
                phases[on].append(load.saturate(port, RECORDING_PATH, server.pid))
    pages = store.redis_client.xlen(store.keys.impressions())
    started = time.perf_counter()
    flushed = flush_impressions(
        engine=store.engine,
        redis_client=store.redis_client,
        keys=store.keys,
        now=datetime.now(UTC),
        retention_days=1,
    )
    return Recording(
        phases[False], phases[True], pages, flushed.inserted, time.perf_counter() - started
    )


# --- the report --------------------------------------------------------------------------------

HEADER = (
    f"  {'':<30} {'rps':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10} {'/ floor':>8}  errors"
)


def row(name: str, phase: Phase, floor_rps: float | None) -> str:
    """One line of the table (the ratio to the floor's rps unless `floor_rps` is None); the
    CPU split per process when there are several."""
    split = ""
    if len(phase.server_cpu_by_process) > 1 and phase.seconds:
        cores = ", ".join(f"{cpu / phase.seconds:.2f}" for cpu in phase.server_cpu_by_process)
        split = f"   (cores per process: {cores})"
    versus = f"{ratio(phase.rps, floor_rps):7.2f}x" if floor_rps is not None else f"{'':8}"
    return (
        f"  {name:<30} {phase.rps:9,.0f} {phase.p50_ms:8.2f} {phase.p99_ms:8.2f} "
        f"{phase.cpu_ms_per_request:10.3f} {versus}  {phase.errors}{split}"
    )


def print_report(
    args: argparse.Namespace,
    setup: str,
    generator: str,
    results: Results,
    recording: Recording | None,
) -> None:
    cores = os.cpu_count()
    print(setup)
    print(
        f"uvicorn, 1 worker unless said, {server_stack()}, no access log, loopback; "
        f"{min(MAX_TOKENS, args.users):,} users' tokens in rotation; "
        f"{args.seconds:g} s per phase after {WARMUP_SECONDS:g} s warm-up"
    )
    print(
        f"at saturation: {generator}, 1 thread, {args.concurrency} keep-alive connections "
        f"({2 * args.concurrency} for 2 workers); it shares the {cores} cores with the servers, "
        "Redis and Postgres, so absolute rps are a floor"
    )
    print(
        "rate limiter in the path of bare and feed (JWT check + one Redis script per request), "
        "set to 1e9/min so it never refuses; the floor app has no middleware at all"
    )
    print(HEADER)
    for name, phase in results.saturation_rows():
        print(row(name, phase, results.floor.rps))
    balances = ", ".join(
        f"{worker_balance(p.server_cpu_by_process):.2f}" for p in results.feed_2_workers_attempts
    )
    print(
        f"  (2 workers: CPU summed over uvicorn's processes, the load generator on the same "
        f"{cores} cores; second/first worker CPU per run: {balances}, the most even shown, a "
        f"run made again below {MIN_BALANCE:g}. Redis down: REDIS_URL names a closed port, "
        "every read from Postgres, whose CPU is not counted above)"
    )
    print(f"  (server logs, in lines: {log_summary(results.server_logs)})")
    print(
        f"at half the feed's peak ({results.feed.rps / 2:,.0f} requests/s each), open-loop "
        "asyncio generator (wrk cannot pace requests), latency from the scheduled send time:"
    )
    print(HEADER)
    for name, phase in results.half_rows():
        print(row(name, phase, None))
    print("targets (issue 15):")
    for text in report(targets_for(results)):
        print(text)
    if any(phase.errors for _, phase in results.saturation_rows() + results.half_rows()):
        print("  note: errors are responses >= 400 and socket errors (timeouts included)")
    if recording is not None:
        print_recording(recording)


def print_recording(recording: Recording) -> None:
    print(
        f"recording impressions ({RECORDING_PATH}), server CPU per feed request "
        "(median of the rounds):"
    )
    for label, phases, median in (
        ("off", recording.off, recording.cpu_off),
        ("on ", recording.on, recording.cpu_on),
    ):
        per_round = ", ".join(f"{p.cpu_ms_per_request:.3f}" for p in phases)
        print(f"  recording {label}  {median:6.3f} ms   (rounds: {per_round})")
    for text in report([recording.target]):
        print(text)
    rate = ratio(recording.impressions, recording.flush_seconds)
    print(
        f"moved {recording.pages:,} pages ({recording.impressions:,} impressions) from the "
        f"stream into Postgres in {recording.flush_seconds:.2f} s ({rate:,.0f} impressions/s)"
    )


def json_report(
    args: argparse.Namespace, generator: str, results: Results, recording: Recording | None
) -> dict[str, object]:
    targets = targets_for(results)
    figures: dict[str, object] = {
        "floor_rps": figure(results.floor.rps, 1),
        "bare_rps": figure(results.bare.rps, 1),
        "feed_rps": figure(results.feed.rps, 1),
        "feed_p99_half_ms": figure(results.feed_half.p99_ms, 2),
        "feed_rps_2_workers": figure(results.feed_2_workers.rps, 1),
        "feed_fallback_rps": figure(results.feed_fallback.rps, 1),
        "server_logs": {
            name: {
                "lines": len(lines),
                "fell_back_to_postgres": fell_back(lines),
                "last": lines[-1] if lines else None,
            }
            for name, lines in results.server_logs.items()
        },
        "ratios": {name: figure(value, 4) for name, value in results.ratios().items()},
        "targets": [t.figures() for t in targets],
        "targets_met": all(t.met for t in targets),
        "load_generator": generator,
        "half_load_generator": "asyncio open-loop (in-process)",
        "users": args.users,
        "items": args.items,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "feed_path": FEED_PATH,
        "phases": {
            "floor": results.floor.figures(),
            "bare": results.bare.figures(),
            "feed": results.feed.figures(),
            "feed_2_workers": results.feed_2_workers.figures(),
            "feed_2_workers_attempts": [
                {
                    **p.figures(),
                    "worker_balance": figure(worker_balance(p.server_cpu_by_process), 3),
                }
                for p in results.feed_2_workers_attempts
            ],
            "feed_fallback": results.feed_fallback.figures(),
            "floor_half": results.floor_half.figures(),
            "bare_half": results.bare_half.figures(),
            "feed_half": results.feed_half.figures(),
        },
    }
    if recording is not None:
        figures["recording"] = recording.figures()
    return figures


# --- main --------------------------------------------------------------------------------------


def choose_generator(choice: str) -> bool:
    """Whether to use wrk; says how to install it when it is missing (on stderr, so `--json`
    stays one object)."""
    if choice == "asyncio":
        return False
    if wrk.available():
        return True
    if choice == "wrk":
        raise SystemExit(f"wrk is not installed: {wrk.INSTALL_HINT}")
    print(
        f"wrk not found, falling back to the in-process asyncio generator (it competes with the "
        f"server for CPU, so rps are lower); to install it: {wrk.INSTALL_HINT}",
        file=sys.stderr,
    )
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "asyncio"),
        default="auto",
        help="load at saturation: wrk when installed (auto), or the in-process asyncio one",
    )
    parser.add_argument(
        "--recording-rounds",
        type=int,
        default=0,
        help="off/on pairs of the impressions-recording comparison (issue 13); 0 skips it",
    )
    parser.add_argument("--json", action="store_true", help="print only the figures as JSON")
    args = parser.parse_args()
    if args.events < args.items:
        parser.error("--events must be at least --items (each list holds distinct events)")
    use_wrk = choose_generator(args.generator)
    generator = wrk.version() if use_wrk else "asyncio (in-process)"
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
        tokens = [issue_token(settings, 1 + i * step) for i in range(n_tokens)]
        load = Load(tokens, args.concurrency, args.seconds, use_wrk)
        if not args.json:
            print(f"setup done in {setup_seconds:.1f} s; measuring", flush=True)
        results = measure(env, load)
        recording = (
            measure_recording(store, env, load, args.recording_rounds)
            if args.recording_rounds > 0
            else None
        )

    if args.json:
        print(json.dumps(json_report(args, generator, results, recording), allow_nan=False))
        return
    setup = (
        f"serve {args.users:,} users x {args.items} items ({result.n_rows:,} rows, "
        f"{args.events:,} events; published in {result.seconds:.1f} s, setup {setup_seconds:.1f} s)"
    )
    print_report(args, setup, generator, results, recording)


if __name__ == "__main__":
    main()
