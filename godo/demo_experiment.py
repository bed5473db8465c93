"""The demo's A/B experiment: the champion against the popularity rule, on the synthetic city,
served by the API and answered by the simulator's users.

Why each step is the production one:

- the experiment is created with `store.experiments.create_experiment` (what `godo experiment
  create` calls) and its arms are published by the `published_arms` asset;
- a sample of the city's users each open the app once: a real HTTP request with a real JWT
  to the API, in process (`fastapi.testclient`: the same app `godo serve` runs, lifespan,
  middleware, rate limits and all), gets the page of their arm with its impression ids;
- what they do with it is the simulator's (`sources.synthetic.sessions`: position bias, true
  utility), sent back as the app would: `POST /v1/swipes` with each swiped card's
  `impression_id`, `PUT /v1/events/{id}/attendance` for each RSVP with its id;
- then the `impression_log` and `online_metrics` assets run, and the table printed is the
  experiment's online tables (`godo.promotion.experiment_tables`, what `promote` decides on).

The simulator also gives the *expected* value of the pages each arm served (one session, like
1, superlike or going 2): the arm with the higher expected value is the one that should win,
and the report says whether the measured value per impression (the same grades) agrees. The
number of users is bounded (`MAX_USERS`, 400): each costs a feed page, a swipe batch and
about two and a half RSVPs, some 35 ms on a busy 2-core machine, and 400 users already
separate the arms far beyond their intervals.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import redis
import sqlalchemy as sa

from core.settings import Settings
from core.tokens import issue_token
from godo.demo import Step, StepFailed, bind_resources, execute, job_for
from godo.promotion import experiment_tables
from models.evaluation.bootstrap import Interval, mean_interval, resample_indices
from models.evaluation.online import OnlineTables
from pipelines.resources import SyntheticCityResource
from pipelines.tracking import ModelRegistry
from serving.app import create_app
from sources.synthetic.online import SimulatedHoldout
from sources.synthetic.sessions import answer_pages, page_decks
from store.db import read_frame
from store.experiments import (
    ArmSpec,
    Experiment,
    ExperimentSpec,
    Serves,
    create_experiment,
    list_experiments,
    stop_experiment,
)
from store.keys import RedisKeys

with warnings.catch_warnings():
    # Starlette's notice about its test client's HTTP library: nothing the demo can act on.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

NAME_PREFIX = "demo-ab-"
LAYER = "demo"
SALT = "demo-ab"
MAX_USERS = 400
SEED = 2_024
CONTROL, CHALLENGER = "control", "popularity"
ARMS = (
    ArmSpec(CONTROL, 0.5, Serves("model", "champion")),
    ArmSpec(CHALLENGER, 0.5, Serves("rule", "popularity")),
)
_ATTENDANCE = pl.Schema(
    {
        "user_id": pl.Int64(),
        "event_id": pl.Utf8(),
        "status": pl.Utf8(),
        "updated_at": pl.Datetime("us", "UTC"),
    }
)


@dataclass(frozen=True)
class ExperimentDemo:
    experiment: Experiment
    users: int  # users who opened the app
    requests: dict[str, int]  # feed, swipes, attendance: requests made
    simulated: dict[str, Interval]  # per arm: expected value per session, 95% over users
    tables: OnlineTables
    seconds: dict[str, float]  # publish (arms), sessions (the API), metrics (the two assets)

    @property
    def expected_winner(self) -> str:
        """The arm whose served pages are worth more to its users, by the hidden truth."""
        return max(self.simulated, key=lambda arm: self.simulated[arm].value)

    def measured(self, metric: str = "value_per_impression") -> dict[str, float]:
        return {
            str(row["arm"]): float(row[metric]) for row in self.tables.by_arm.iter_rows(named=True)
        }


def start_experiment(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    registry: ModelRegistry,
    now: datetime,
) -> Experiment:
    """Stop the previous demo's experiment (a demo run leaves none running unless it failed
    half-way) and create this one, in a layer of its own so no other experiment is in the way."""
    for experiment in list_experiments(engine):
        if experiment.name.startswith(NAME_PREFIX) and experiment.status(now) == "running":
            stop_experiment(
                engine=engine, redis_client=redis_client, keys=keys, name=experiment.name
            )
    spec = ExperimentSpec(
        name=f"{NAME_PREFIX}{now:%Y%m%d-%H%M%S}",
        arms=ARMS,
        start=now,
        end=now + timedelta(days=1),
        layer=LAYER,
        salt=SALT,  # the same users in the same arms every run, so runs compare
    )
    return create_experiment(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        spec=spec,
        model_registered=lambda ref: registry.resolve(ref) is not None,
    )


def _materialize(
    defs: dg.Definitions, resources: dict[str, Any], instance: dg.DagsterInstance, asset: str
) -> None:
    """`asset` as a run of its job (`publish_feed`, `move_impressions`, ...), as the demo runs."""
    keys = [dg.AssetKey(asset)]
    result = execute(bind_resources(defs, resources), Step(keys, job_for(defs, keys)), instance)
    if not result.success:
        raise StepFailed(asset, f"run {result.run_id} failed (see the Dagster UI)")


def _simulation(
    engine: sa.Engine, city: SyntheticCityResource, users: np.ndarray, now: datetime
) -> SimulatedHoldout:
    """The hidden world at `now` for `users`, friends' RSVPs as Postgres holds them."""
    world = city.world()
    with engine.connect() as conn:
        attendance = read_frame(
            conn,
            "SELECT user_id, event_id, status::text AS status, updated_at FROM event_attendance",
            _ATTENDANCE,
        )
    known = list(world.event_index)
    swipes = pl.DataFrame(
        schema={"user_id": pl.Int64, "event_id": pl.Utf8, "created_at": pl.Datetime("us", "UTC")}
    )
    return SimulatedHoldout.at(
        world,
        city.behaviour_config(),
        now,
        users,
        swipes,
        attendance.filter(pl.col("event_id").is_in(known)),
    )


@dataclass(frozen=True)
class _Sessions:
    pages: dict[int, list[str]]  # user -> event ids of the page served, in rank order
    runs: dict[int, str | None]  # user -> the run that served the page
    answers: pl.DataFrame  # `sources.synthetic.sessions.ANSWER_SCHEMA`
    requests: dict[str, int]


def _sessions(client: TestClient, settings: Settings, simulation: SimulatedHoldout) -> _Sessions:
    """Every user opens the app once and answers their page through the API."""
    requests = {"feed": 0, "swipes": 0, "attendance": 0}
    pages: dict[int, list[str]] = {}
    ids: dict[tuple[int, str], str | None] = {}
    runs: dict[int, str | None] = {}
    headers: dict[int, dict[str, str]] = {}
    for user in simulation.user_ids.tolist():
        headers[user] = {"Authorization": f"Bearer {issue_token(settings, user)}"}
        response = client.get(
            "/v1/feed", params={"limit": simulation.deck_length}, headers=headers[user]
        )
        response.raise_for_status()
        requests["feed"] += 1
        body = response.json()
        runs[user] = body["run_id"]
        pages[user] = [item["event_id"] for item in body["items"]]
        for item in body["items"]:
            ids[(user, item["event_id"])] = item.get("impression_id")
    answers = answer_pages(simulation, page_decks(simulation, pages), SEED)
    swiped = answers.filter(pl.col("examined"))
    stamp = datetime.now(UTC).isoformat()
    for (user,), cards in swiped.partition_by("user_id", as_dict=True).items():
        batch = [
            {
                "client_id": str(uuid.uuid4()),
                "event_id": card["event_id"],
                "direction": card["action"],
                "ts": stamp,
                "impression_id": ids[(int(user), card["event_id"])],
            }
            for card in cards.iter_rows(named=True)
        ]
        client.post(
            "/v1/swipes", json={"swipes": batch}, headers=headers[int(user)]
        ).raise_for_status()
        requests["swipes"] += 1
    for card in answers.filter(pl.col("rsvp").is_not_null()).iter_rows(named=True):
        user = int(card["user_id"])
        client.put(
            f"/v1/events/{card['event_id']}/attendance",
            json={
                "status": card["rsvp"],
                "visibility": "public",
                "impression_id": ids[(user, card["event_id"])],
            },
            headers=headers[user],
        ).raise_for_status()
        requests["attendance"] += 1
    return _Sessions(pages, runs, answers, requests)


def _simulated_values(
    simulation: SimulatedHoldout, pages: Mapping[int, list[str]], arms: Mapping[int, str]
) -> dict[str, Interval]:
    """Per arm: the expected value of one session over the pages it served (the simulator's
    closed form), with a bootstrap interval over the arm's users."""
    values = simulation.outcomes(page_decks(simulation, pages)).value
    labels = np.array([arms.get(int(u), "none") for u in simulation.user_ids])
    out: dict[str, Interval] = {}
    for arm in sorted(set(labels.tolist())):
        mine = values[labels == arm]
        out[arm] = mean_interval(mine, resample_indices(mine.size, seed=SEED))
    return out


def run_experiment(
    *,
    defs: dg.Definitions,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    settings: Settings,
    max_users: int = MAX_USERS,
) -> ExperimentDemo:
    """Create the experiment, publish its arms, let simulated users use the API, measure."""
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[phase], clock = now - clock, now

    engine = resources["postgres"].engine()
    redis_resource = resources["redis"]
    redis_client, keys = redis_resource.client(), redis_resource.key_layout()
    city: SyntheticCityResource = resources["city"]
    experiment = start_experiment(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        registry=resources["mlflow"].registry(),
        now=datetime.now(UTC),
    )
    _materialize(defs, resources, instance, "published_arms")
    lap("publish")
    rng = np.random.default_rng(SEED)
    population = np.arange(1, city.n_users + 1)
    users = np.sort(rng.choice(population, size=min(max_users, population.size), replace=False))
    simulation = _simulation(engine, city, users, datetime.now(UTC))
    app_settings = settings.model_copy(
        update={
            "database_url": resources["postgres"].database_url,
            "redis_url": redis_resource.url,
            "redis_prefix": keys.prefix,
        }
    )
    with TestClient(create_app(app_settings)) as client:
        sessions = _sessions(client, app_settings, simulation)
    with engine.connect() as conn:
        arm_of_run = {
            row.id: row.arm
            for row in conn.execute(
                sa.text("SELECT id, arm FROM recommendation_runs WHERE experiment = :name"),
                {"name": experiment.name},
            )
        }
    arms = {user: arm_of_run.get(run, "none") for user, run in sessions.runs.items()}
    simulated = _simulated_values(simulation, sessions.pages, arms)
    lap("sessions")
    _materialize(defs, resources, instance, "impression_log")
    _materialize(defs, resources, instance, "online_metrics")
    tables = experiment_tables(engine, experiment, datetime.now(UTC))
    stopped = stop_experiment(
        engine=engine, redis_client=redis_client, keys=keys, name=experiment.name
    )
    redis_client.close()
    lap("metrics")
    return ExperimentDemo(stopped, len(users), sessions.requests, simulated, tables, seconds)
