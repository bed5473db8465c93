"""Faults against a real API under load, then the invariants that must survive them.

    uv run python -m bench.chaos                  # or: make chaos
    uv run python -m bench.chaos --json           # only the figures, as one JSON object

Why: the API promises never a 500 and never a split between its stores. This holds it to that
with real failures, not mocks: a dedicated PostgreSQL and Redis (the embedded servers, in a
temporary directory of their own, so nothing else on the machine is touched) behind a real
uvicorn, a bounded load of swipes, feed reads and RSVPs over loopback, and, one after the
other: Redis killed and restarted empty, Redis paused (SIGSTOP) and resumed, PostgreSQL
restarted, and publishes killed (SIGKILL) at random moments of their run, each followed by a
complete publish.

Afterwards it checks:
- every acknowledged swipe (2xx) is stored exactly once, and so is every acknowledged RSVP;
- no feed response mixes two runs (each run ranks events of its own, so an item names its run);
- no 5xx but the documented 503 (with `Retry-After`);
- both stores name the same current run, complete in each (polled for up to
  `--settle-seconds`, since a Redis that restarted empty is refilled in the background);
- no publish is left `staged`.
and prints a table: faults injected, requests, responses by status, data lost. The exit code is
1 when an invariant fails, so `make chaos` can gate on it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import redis
import sqlalchemy as sa
from pydantic import SecretStr

from bench.serve import free_port, uvicorn_server
from core.settings import Settings
from core.tokens import issue_token
from godo import services
from store import migrate
from store.db import copy_frame, make_engine
from store.keys import RedisKeys
from store.publish import publish_run

SECRET = "chaos-bench-secret-Vq3nL8xR2mZ7wK4pT9sB6yH1cF5g"
PREFIX = "godo-chaos"
USERS = 1000
EVENTS_PER_RUN = 40
ITEMS = 20
RUNS = 8  # the initial run, the publishes that get killed, and the complete ones after them
UNTHROTTLED = 1_000_000_000


# --- the world ---------------------------------------------------------------------------


def event_id(run: int, i: int) -> str:
    """Each run ranks events of its own, so any item in a response names its run."""
    return f"r{run}e{i}"


def run_id(run: int) -> str:
    return f"chaos-run-{run}"


def seed(engine: sa.Engine) -> None:
    """Users, one venue and every run's events, all upcoming and live."""
    now = datetime.now(UTC).replace(microsecond=0)
    ids = [event_id(run, i) for run in range(RUNS) for i in range(EVENTS_PER_RUN)]
    with engine.begin() as conn:
        copy_frame(
            conn,
            "users",
            pl.DataFrame(
                {
                    "id": list(range(1, USERS + 1)),
                    "display_name": [f"u{u}" for u in range(1, USERS + 1)],
                    "metro": "sf",
                }
            ),
        )
        copy_frame(conn, "venues", pl.DataFrame({"id": ["v1"], "name": ["Hall"], "metro": ["sf"]}))
        copy_frame(
            conn,
            "events",
            pl.DataFrame(
                {
                    "id": ids,
                    "name": ids,
                    "venue_id": "v1",
                    "metro": "sf",
                    "category": "music",
                    "start_utc": [now + timedelta(days=2)] * len(ids),
                    "capacity": 100_000,
                    "is_free": True,
                    "status": "live",
                    "is_active": True,
                },
                schema_overrides={"start_utc": pl.Datetime("us", "UTC")},
            ),
        )


def lists(run: int) -> pl.DataFrame:
    """Every user's `ITEMS` events of `run`, in a per-user order."""
    rows = [
        (user, rank + 1, event_id(run, (user + rank) % EVENTS_PER_RUN), 1.0 / (rank + 1), "chaos")
        for user in range(1, USERS + 1)
        for rank in range(ITEMS)
    ]
    return pl.DataFrame(
        rows, schema=["user_id", "rank", "event_id", "score", "reason"], orient="row"
    )


def publish(database_url: str, redis_url: str, run: int, *, ready: bool = False) -> float:
    """One complete publish of `run` (what the killed child processes also try); seconds.

    With `ready`, prints "ready" just before `publish_run` starts, so a parent can time its
    kill from the publish itself rather than from the child's imports."""
    engine = make_engine(database_url)
    client = redis.Redis.from_url(redis_url)
    recommendations = lists(run)
    fallback = recommendations.filter(pl.col("user_id") == 1).drop("user_id")
    try:
        if ready:
            print("ready", flush=True)
        started = time.monotonic()
        publish_run(
            engine=engine,
            redis_client=client,
            keys=RedisKeys(prefix=PREFIX),
            run_id=run_id(run),
            model="chaos",
            recommendations=recommendations,
            fallback=fallback,
            ttl_seconds=3600,
            batch_size=20,
        )
        return time.monotonic() - started
    finally:
        client.close()
        engine.dispose()


# --- the services ------------------------------------------------------------------------


@dataclass
class Services:
    """A PostgreSQL and a Redis of this run's own, under `data_dir`."""

    data_dir: Path
    database_url: str = ""
    redis_url: str = ""

    def start(self) -> None:
        self.database_url = services.start_postgres(self.data_dir)
        self.redis_url = services.start_redis(self.data_dir)

    def stop(self) -> None:
        redis_pid = self.redis_pid()
        if redis_pid is not None:
            os.kill(redis_pid, signal.SIGCONT)  # a paused server cannot shut down
        services.stop_redis(self.data_dir)
        services.stop_postgres(self.data_dir)

    def redis_pid(self) -> int | None:
        pidfile = services.redis_dir(self.data_dir) / "redis.pid"
        return int(pidfile.read_text().strip()) if pidfile.exists() else None


@contextmanager
def dedicated_services() -> Iterator[Services]:
    with tempfile.TemporaryDirectory(prefix="godo-chaos-") as tmp:
        own = Services(Path(tmp))
        own.start()
        try:
            yield own
        finally:
            own.stop()


# --- the load ----------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the clients sent and what they were told."""

    statuses: Counter[int] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    acked_swipes: set[tuple[int, str]] = field(default_factory=set)
    acked_rsvps: dict[tuple[int, str], str] = field(default_factory=dict)
    mixed_pages: int = 0
    undocumented_503: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    phase: str = "calm"  # set by the fault thread: what is being done to the stores now
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def answer(self, kind: str, response: httpx.Response, seconds: float) -> None:
        self.seconds.setdefault(self.phase, []).append(seconds)
        self.by_kind[kind] += 1
        self.statuses[response.status_code] += 1
        if response.status_code == 503 and "retry-after" not in response.headers:
            self.undocumented_503 += 1


def run_of(item_event: str) -> int:
    return int(item_event[1:].split("e", 1)[0])


async def client_loop(
    base: str, tokens: dict[int, str], ledger: Ledger, stop: asyncio.Event, seed_: int
) -> None:
    """One client: feed reads, swipes and RSVPs in a random mix until `stop`."""
    rng = random.Random(seed_)
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as http:
        while not stop.is_set():
            user = rng.randint(1, USERS)
            headers = {"Authorization": f"Bearer {tokens[user]}"}
            kind = rng.choices(["feed", "swipe", "rsvp"], weights=[5, 4, 1])[0]
            sent = time.perf_counter()
            try:
                if kind == "feed":
                    response = await http.get("/v1/feed", headers=headers)
                    if response.status_code == 200:
                        runs = {run_of(item["event_id"]) for item in response.json()["items"]}
                        if len(runs) > 1:
                            ledger.mixed_pages += 1
                elif kind == "swipe":
                    client_id = uuid.uuid4().hex
                    event = event_id(rng.randrange(RUNS), rng.randrange(EVENTS_PER_RUN))
                    body = {
                        "swipes": [
                            {
                                "client_id": client_id,
                                "event_id": event,
                                "direction": rng.choice(["like", "pass", "superlike"]),
                                "ts": datetime.now(UTC).isoformat(),
                            }
                        ]
                    }
                    response = await http.post("/v1/swipes", json=body, headers=headers)
                    if response.is_success:
                        ledger.acked_swipes.add((user, client_id))
                else:
                    event = event_id(rng.randrange(RUNS), rng.randrange(EVENTS_PER_RUN))
                    status = rng.choice(["going", "interested", "not_going"])
                    response = await http.put(
                        f"/v1/events/{event}/attendance", json={"status": status}, headers=headers
                    )
                    if response.is_success:
                        ledger.acked_rsvps[(user, event)] = status
                ledger.answer(kind, response, time.perf_counter() - sent)
            except httpx.HTTPError as error:  # a timeout or reset: the client saw no answer
                ledger.errors[type(error).__name__] += 1
            await asyncio.sleep(0.005)


# --- the faults --------------------------------------------------------------------------


def kill_redis(own: Services, seconds: float) -> None:
    """Redis down for `seconds`, back empty (no persistence): every key gone."""
    services.stop_redis(own.data_dir)
    time.sleep(seconds)
    services.start_redis(own.data_dir)


def pause_redis(own: Services, seconds: float) -> None:
    """Redis hung: the socket accepts, nothing answers."""
    pid = own.redis_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def restart_postgres(own: Services, seconds: float) -> None:
    """PostgreSQL stopped (fast: connections cut) and started again `seconds` later, with the
    options it ran with (`postmaster.opts`), through the wheel's pg_ctl as the server's user
    (pgserver's in-process handle would not start it a second time)."""
    pgdata = services.postgres_dir(own.data_dir)
    user = services._pgserver().get_server(pgdata, cleanup_mode=None).system_user
    ran_with = shlex.split((pgdata / "postmaster.opts").read_text())[1:]
    options = [o for i, o in enumerate(ran_with) if o != "-D" and ran_with[i - 1] != "-D"]
    services.stop_postgres(own.data_dir)
    time.sleep(seconds)
    commands = importlib.import_module("pgserver._commands")
    log = pgdata / "restart.log"
    commands.pg_ctl(
        ["-w", "-l", str(log), "-o", shlex.join(options), "start"], pgdata=pgdata, user=user
    )


def killed_publish(own: Services, run: int, after: float) -> float:
    """A publish of `run` in a child process, SIGKILLed `after` seconds into `publish_run`."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.chaos", "--publish-child", str(run)],
        env={
            **os.environ,
            "CHAOS_DATABASE_URL": own.database_url,
            "CHAOS_REDIS_URL": own.redis_url,
        },
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()  # imports and connections done: the publish starts now
    if line.strip() != "ready":
        child.kill()
        raise RuntimeError(f"publish child did not start: {line!r}")
    time.sleep(after)
    child.send_signal(signal.SIGKILL)
    child.wait()
    return after


# --- the invariants ----------------------------------------------------------------------


def stored_swipes(engine: sa.Engine, acked: set[tuple[int, str]]) -> tuple[int, int]:
    """(acknowledged swipes missing, acknowledged swipes stored more than once)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT user_id, client_id, count(*) FROM swipes GROUP BY 1, 2")
        ).all()
    counts = {(int(u), str(c)): int(n) for u, c, n in rows}
    missing = sum(1 for key in acked if counts.get(key, 0) == 0)
    doubled = sum(1 for key in acked if counts.get(key, 0) > 1)
    return missing, doubled


def stored_rsvps(engine: sa.Engine, acked: dict[tuple[int, str], str]) -> int:
    """Acknowledged RSVPs whose latest acknowledged status is not what is stored."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT user_id, event_id, status FROM event_attendance")).all()
    stored = {(int(u), str(e)): str(s) for u, e, s in rows}
    # Concurrent clients may answer the same pair: only a pair with no row at all is lost.
    return sum(1 for key in acked if key not in stored)


def current_runs(engine: sa.Engine, client: redis.Redis) -> tuple[str | None, str | None, int]:
    """(Redis' current run, Postgres' newest published run, runs left `staged`)."""
    try:
        pointer = client.get(RedisKeys(prefix=PREFIX).current_run())
        in_redis = pointer.decode() if pointer else None
    except redis.RedisError:
        in_redis = None
    with engine.connect() as conn:
        newest = conn.execute(
            sa.text(
                "SELECT id FROM recommendation_runs WHERE status = 'published' "
                "AND experiment IS NULL ORDER BY published_at DESC LIMIT 1"
            )
        ).scalar_one_or_none()
        staged = conn.execute(
            sa.text("SELECT count(*) FROM recommendation_runs WHERE status = 'staged'")
        ).scalar_one()
    return in_redis, None if newest is None else str(newest), int(staged)


def settle(
    engine: sa.Engine, client: redis.Redis, seconds: float
) -> tuple[str | None, str | None, int, float]:
    """Poll until both stores name one run and nothing is staged, or `seconds` pass."""
    started = time.monotonic()
    while True:
        in_redis, in_postgres, staged = current_runs(engine, client)
        waited = time.monotonic() - started
        if (in_redis == in_postgres and staged == 0) or waited > seconds:
            return in_redis, in_postgres, staged, waited
        time.sleep(1.0)


# --- the run -----------------------------------------------------------------------------


@dataclass
class Outcome:
    faults: list[dict[str, Any]]
    ledger: Ledger
    swipes_missing: int
    swipes_doubled: int
    rsvps_missing: int
    redis_run: str | None
    postgres_run: str | None
    staged: int
    settled_seconds: float
    seconds: float

    @property
    def server_errors(self) -> int:
        return sum(
            n for status, n in self.ledger.statuses.items() if status >= 500 and status != 503
        )

    @property
    def ok(self) -> bool:
        return (
            self.swipes_missing == 0
            and self.swipes_doubled == 0
            and self.rsvps_missing == 0
            and self.ledger.mixed_pages == 0
            and self.server_errors == 0
            and self.ledger.undocumented_503 == 0
            and self.redis_run is not None
            and self.redis_run == self.postgres_run
            and self.staged == 0
        )


def chaos(
    *, clients: int, fault_seconds: float, crashes: int, settle_seconds: float, seed_: int
) -> Outcome:
    started = time.monotonic()
    with dedicated_services() as own:
        migrate.upgrade(own.database_url)
        engine = make_engine(own.database_url)
        seed(engine)
        publish_seconds = publish(own.database_url, own.redis_url, 0)
        settings = Settings(jwt_secret=SecretStr(SECRET), _env_file=None)  # type: ignore[call-arg]
        tokens = {
            user: issue_token(settings, user, ttl_seconds=3600) for user in range(1, USERS + 1)
        }
        env = {
            "DATABASE_URL": own.database_url,
            "REDIS_URL": own.redis_url,
            "GODO_REDIS_PREFIX": PREFIX,
            "GODO_JWT_SECRET": SECRET,
            "GODO_RATE_LIMIT_PER_MINUTE": str(UNTHROTTLED),
            "GODO_RATE_LIMIT_BURST": str(UNTHROTTLED),
        }
        port = free_port()
        ledger = Ledger()
        faults: list[dict[str, Any]] = []
        with uvicorn_server(env, port):
            faults = asyncio.run(
                _under_load(
                    own,
                    f"http://127.0.0.1:{port}",
                    tokens,
                    ledger,
                    clients,
                    fault_seconds,
                    crashes,
                    publish_seconds,
                    seed_,
                )
            )
            client = redis.Redis.from_url(own.redis_url)
            in_redis, in_postgres, staged, waited = settle(engine, client, settle_seconds)
            client.close()
        missing, doubled = stored_swipes(engine, ledger.acked_swipes)
        rsvps_missing = stored_rsvps(engine, ledger.acked_rsvps)
        engine.dispose()
    return Outcome(
        faults=faults,
        ledger=ledger,
        swipes_missing=missing,
        swipes_doubled=doubled,
        rsvps_missing=rsvps_missing,
        redis_run=in_redis,
        postgres_run=in_postgres,
        staged=staged,
        settled_seconds=waited,
        seconds=time.monotonic() - started,
    )


async def _under_load(
    own: Services,
    base: str,
    tokens: dict[int, str],
    ledger: Ledger,
    clients: int,
    fault_seconds: float,
    crashes: int,
    publish_seconds: float,
    seed_: int,
) -> list[dict[str, Any]]:
    """Run the clients while the faults are injected one after the other (in a thread)."""
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(client_loop(base, tokens, ledger, stop, seed_ * 1000 + i))
        for i in range(clients)
    ]
    faults: list[dict[str, Any]] = []

    def inject() -> None:
        time.sleep(fault_seconds)  # a calm start
        for name, fault in (
            ("redis killed, restarted empty", kill_redis),
            ("redis paused (SIGSTOP)", pause_redis),
            ("postgres restarted", restart_postgres),
        ):
            t0 = time.monotonic()
            ledger.phase = name
            fault(own, fault_seconds)
            faults.append({"fault": name, "seconds": round(time.monotonic() - t0, 2)})
            ledger.phase = f"after {name}"
            time.sleep(fault_seconds)  # recovery under load
        ledger.phase = "publishes killed"
        for k in range(crashes):  # kills spread evenly over a publish's duration
            run = 1 + k
            after = killed_publish(own, run, publish_seconds * (k + 0.5) / crashes)
            faults.append({"fault": f"publish of {run_id(run)} killed", "seconds": round(after, 2)})
        publish(own.database_url, own.redis_url, RUNS - 1)  # a complete publish after the crashes
        faults.append({"fault": f"complete publish of {run_id(RUNS - 1)}", "seconds": 0.0})
        time.sleep(fault_seconds)

    await asyncio.to_thread(inject)
    stop.set()
    await asyncio.gather(*workers)
    return faults


def report(outcome: Outcome) -> None:
    ledger = outcome.ledger
    print(f"chaos: {len(outcome.faults)} faults in {outcome.seconds:.0f} s")
    print(pl.DataFrame(outcome.faults))
    print(
        "requests: "
        + ", ".join(f"{kind} {n:,}" for kind, n in sorted(ledger.by_kind.items()))
        + f"; no answer (timeout/reset): {sum(ledger.errors.values()):,}"
    )
    print(
        "responses by status: "
        + ", ".join(f"{s}: {n:,}" for s, n in sorted(ledger.statuses.items()))
    )
    rows = [
        ("acknowledged swipes lost", outcome.swipes_missing),
        ("acknowledged swipes stored twice", outcome.swipes_doubled),
        ("acknowledged RSVPs lost", outcome.rsvps_missing),
        ("feed pages mixing two runs", ledger.mixed_pages),
        ("5xx other than 503", outcome.server_errors),
        ("503 without Retry-After", ledger.undocumented_503),
        ("runs left staged", outcome.staged),
    ]
    for name, value in rows:
        print(f"  {name:<34} {value}")
    print(
        f"  current run: redis {outcome.redis_run}, postgres {outcome.postgres_run} "
        f"(after {outcome.settled_seconds:.0f} s)"
    )
    print("invariants: " + ("all held" if outcome.ok else "BROKEN"))


def latencies(ledger: Ledger) -> dict[str, tuple[int, float, float]]:
    """(answers, p50 ms, p99 ms) per phase, in the order the phases ran."""
    return {
        phase: (len(seconds), 1000 * quantile(seconds, 0.5), 1000 * quantile(seconds, 0.99))
        for phase, seconds in ledger.seconds.items()
    }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def as_json(outcome: Outcome) -> dict[str, Any]:
    ledger = outcome.ledger
    return {
        "faults": outcome.faults,
        "requests": dict(ledger.by_kind),
        "no_answer": dict(ledger.errors),
        "statuses": {str(k): v for k, v in sorted(ledger.statuses.items())},
        "latency_ms": {
            phase: {"n": n, "p50": round(p50, 1), "p99": round(p99, 1)}
            for phase, (n, p50, p99) in latencies(ledger).items()
        },
        "lost": {
            "swipes": outcome.swipes_missing,
            "rsvps": outcome.rsvps_missing,
        },
        "swipes_doubled": outcome.swipes_doubled,
        "mixed_pages": ledger.mixed_pages,
        "server_errors": outcome.server_errors,
        "undocumented_503": ledger.undocumented_503,
        "current_run": {"redis": outcome.redis_run, "postgres": outcome.postgres_run},
        "staged": outcome.staged,
        "ok": outcome.ok,
        "seconds": round(outcome.seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--fault-seconds", type=float, default=3.0)
    parser.add_argument("--crashes", type=int, default=RUNS - 2)
    parser.add_argument("--settle-seconds", type=float, default=70.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print only the figures as JSON")
    parser.add_argument("--publish-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_child is not None:  # the child a crash test kills
        publish(
            os.environ["CHAOS_DATABASE_URL"],
            os.environ["CHAOS_REDIS_URL"],
            args.publish_child,
            ready=True,
        )
        return
    outcome = chaos(
        clients=args.clients,
        fault_seconds=args.fault_seconds,
        crashes=min(args.crashes, RUNS - 2),
        settle_seconds=args.settle_seconds,
        seed_=args.seed,
    )
    if args.json:
        json.dump(as_json(outcome), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        report(outcome)
    sys.exit(0 if outcome.ok else 1)


if __name__ == "__main__":
    main()
