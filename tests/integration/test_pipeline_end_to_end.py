"""A tiny synthetic city through every asset, against real PostgreSQL and Redis, then the API."""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import jupytext
import mlflow.artifacts
import mlflow.pyfunc
import nbformat
import polars as pl
import pytest
import redis
import sqlalchemy as sa
from nbclient.exceptions import CellExecutionError

from core.settings import REPO_ROOT, Settings
from core.tokens import issue_token
from godo.demo import (
    OutreachFakes,
    StepReport,
    definitions_to_run,
    demo_resources,
    run_assets,
)
from godo.demo_experiment import run_experiment
from godo.services import ServiceUrls
from models.feed_model import RerankConfig, candidate_input
from models.rerank import FEED_EXPLORATION
from pipelines.definitions import defs
from pipelines.partitions import metro_partitions
from pipelines.resources import MLflowResource, SyntheticCityResource
from pipelines.tracking import read_table
from recommender.fitting import fit_ranker
from recommender.holdout import CANDIDATES_TABLE, STAGES_TABLE
from sources.fakes import FakeUpstream, FaultPlan
from store.app_data import most_active_user
from store.cards import load_live_cards
from store.experiments import (
    ArmSpec,
    ExperimentSpec,
    Serves,
    ServingExperiments,
    create_experiment,
    stop_experiment,
)
from store.feed import read_feed
from store.keys import RedisKeys
from store.schema import metadata
from tests.conftest import NOTEBOOK_DIR, execute_in_notebook_dir
from tests.integration.conftest import app_client

# Jupytext notebooks; `_shared.py` and other underscored modules are their helpers.
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.py") if not p.name.startswith("_"))


@dataclass(frozen=True)
class TinyCity:
    steps: list[StepReport]
    warehouse: Path
    keys: RedisKeys
    resources: dict[str, Any]
    dagster_home: Path  # a persistent instance: the notebooks read its run history
    pushed: int  # messages the fake Expo received
    emailed: int  # emails the fake Resend received
    runs: list[dg.DagsterRun]  # the instance's runs right after the demo, oldest first


@pytest.fixture(scope="module")
def tiny_city(
    tmp_path_factory: pytest.TempPathFactory,
    session_engine: sa.Engine,
    database_url: str,
    service_urls: ServiceUrls,
    redis_client: redis.Redis,
) -> Iterator[TinyCity]:
    """One pipeline run over a tiny city, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("tiny-city")
    keys = RedisKeys(prefix=f"godo-test-{uuid.uuid4().hex[:10]}")
    with session_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)}"))
    settings = Settings(data_dir=folder, redis_prefix=keys.prefix)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    city = SyntheticCityResource(
        metros=["san-francisco", "oakland"],
        n_venues=20,
        n_events=150,
        n_users=120,
        now=now.isoformat(),
    )
    faults = FaultPlan(venues_without_coordinates_share=0.3)
    with FakeUpstream(city.world(), faults=faults) as upstream, OutreachFakes() as outreach:
        resources = demo_resources(
            settings,
            database_url=database_url,
            redis_url=service_urls.redis_url,
            city=city,
            upstream=upstream,
            outreach=outreach,
        )
        dagster_home = folder / "dagster"
        dagster_home.mkdir()
        with dg.DagsterInstance.local_temp(str(dagster_home)) as instance:
            steps = run_assets(defs, resources, instance)
            runs = list(reversed(instance.get_runs()))
        pushed, emailed = len(outreach.expo.sent), len(outreach.resend.messages)
    yield TinyCity(
        steps, settings.warehouse_path, keys, resources, dagster_home, pushed, emailed, runs
    )
    stale = list(redis_client.scan_iter(match=keys.namespace_pattern(), count=1000))
    if stale:
        redis_client.delete(*stale)


def test_every_asset_runs_and_the_api_serves_the_published_feed(
    tiny_city: TinyCity,
    session_engine: sa.Engine,
    database_url: str,
    service_urls: ServiceUrls,
    redis_client: redis.Redis,
) -> None:
    engine, redis_keys = session_engine, tiny_city.keys
    ran = {name.split(" (")[0] for step in tiny_city.steps for name in step.name.split(", ")}
    assert ran == {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    rows: dict[str, int] = {}
    for step in tiny_city.steps:
        for asset, count in step.rows.items():
            rows[asset] = rows.get(asset, 0) + count  # partitions add up
    assert rows["events"] == 150 and rows["app_users"] == 120 and rows["app_swipes"] > 0
    checks = {name: ok for step in tiny_city.steps for name, ok in step.checks.items()}
    assert checks and all(checks.values()), checks

    with engine.connect() as conn:
        run_id = conn.execute(
            sa.text("SELECT id FROM recommendation_runs WHERE status = 'published'")
        ).scalar_one()
        user_id = conn.execute(
            sa.text(
                "SELECT user_id FROM recommendations WHERE run_id = :r "
                "GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
            ),
            {"r": run_id},
        ).scalar_one()
        stored = [
            r[0]
            for r in conn.execute(
                sa.text(
                    "SELECT event_id FROM recommendations WHERE run_id = :r AND user_id = :u "
                    "ORDER BY rank"
                ),
                {"r": run_id, "u": user_id},
            )
        ]
        swiped = {
            r[0]
            for r in conn.execute(
                sa.text("SELECT event_id FROM swipes WHERE user_id = :u"), {"u": user_id}
            )
        }
        events = {
            r.id: r for r in conn.execute(sa.text("SELECT id, start_utc, is_active FROM events"))
        }
        slots = conn.execute(
            sa.text("SELECT rank, propensity FROM recommendations WHERE run_id = :r"),
            {"r": run_id},
        ).all()
    assert redis_client.get(redis_keys.current_run()) == run_id.encode()
    # Explored slots carry their draw's probability; every other slot was certain.
    drawn = {rank for rank, propensity in slots if propensity < 1.0}
    assert drawn and drawn <= set(FEED_EXPLORATION.slots(max(rank for rank, _ in slots)))
    assert all(0.0 < propensity <= 1.0 for _, propensity in slots)

    settings = Settings(
        database_url=database_url, redis_url=service_urls.redis_url, redis_prefix=redis_keys.prefix
    )
    token = issue_token(settings, user_id)
    with app_client(settings) as client:
        response = client.get(
            "/v1/feed", params={"limit": 200}, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200
    body = response.json()
    served = [item["event_id"] for item in body["items"]]
    assert body["run_id"] == run_id and body["source"] == "redis" and not body["cold_start"]
    # The run's list, less what the feed drops at read time (store.feed): events that started,
    # were cancelled or filled up since the publish (activity keeps writing RSVPs).
    now = datetime.now(UTC)
    with engine.connect() as conn:
        cards = load_live_cards(conn, stored)
    showable = [event_id for event_id in stored if cards[event_id].showable(now)]
    assert served == showable and len(served) > 0
    stored_rank = {event_id: rank for rank, event_id in enumerate(stored, start=1)}
    assert [item["rank"] for item in body["items"]] == [stored_rank[e] for e in served]
    for event_id in served:
        assert event_id not in swiped
        assert events[event_id].is_active
        assert events[event_id].start_utc > now


def test_every_demo_run_is_a_named_job_with_the_run_queue_tags(tiny_city: TinyCity) -> None:
    """The UI's Jobs pages and timeline show the demo as production: no ad-hoc asset runs."""
    runs = tiny_city.runs
    assert len(runs) == len(tiny_city.steps)
    queue_tag = {
        "ingest_metro": "ingest",
        "simulate_city": "synthetic",
        "retrain_and_evaluate": "retrain",
        "publish_feed": "publish",
        "notify_users": "outreach",
        "check_push_receipts": "outreach",
        "move_impressions": "impressions",
        "compute_online_metrics": "monitoring",
    }
    for run, step in zip(runs, tiny_city.steps, strict=True):
        # Not `__ephemeral_asset_job__` (what `materialize` names a run) nor `__ASSET_JOB`.
        assert run.job_name in queue_tag, (run.job_name, step.name)
        assert run.tags["godo/pipeline"] == queue_tag[run.job_name], step.name
        assert run.tags["godo/launched_by"] == "demo"
        # Every run succeeds, the retrain too: a rejected challenger is a WARN, not a failure.
        assert run.status == dg.DagsterRunStatus.SUCCESS, (step.name, run.status)
    ingest = [run for run in runs if run.job_name == "ingest_metro"]
    # Three ingest definitions (one a multi-asset) for each metro partition.
    metros = metro_partitions.get_partition_keys()
    assert len(ingest) == 3 * len(metros)
    assert sorted(run.tags["dagster/partition"] for run in ingest) == sorted(metros * 3)
    assert all("dagster/partition" not in r.tags for r in runs if r.job_name != "ingest_metro")
    assert {run.job_name for run in runs} == set(queue_tag)


# --- notebooks: executed top to bottom in a real kernel, on the tiny city's outputs ----------

RESULTS_MARKER = "notebook-results:"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LIKES = ("like", "superlike")


@dataclass(frozen=True)
class NotebookRun:
    results: dict[str, Any]  # the plain variables the notebook ends with, through JSON
    notebook: nbformat.NotebookNode  # the executed notebook, outputs included
    figures: Path  # GODO_NOTEBOOK_FIGURES


def _pipeline_rows(tiny_city: TinyCity) -> dict[str, int]:
    rows: dict[str, int] = {}
    for step in tiny_city.steps:
        for asset, count in step.rows.items():
            rows[asset] = rows.get(asset, 0) + count  # partitions add up
    return rows


def _notebook_env(tiny_city: TinyCity, figures: Path, user: int | None) -> dict[str, str]:
    """This environment, pointed at the tiny city: the same variables a data scientist sets.

    GODO_DATA_DIR is relative to the repository root, and the warehouse and the MLflow store
    are found only through it: the kernel starts in notebooks/, so a data folder resolved
    against the working directory (the bug of notebooks/.godo) fails the first cell.
    """
    mlflow: MLflowResource = tiny_city.resources["mlflow"]
    assert mlflow.tracking_uri == f"sqlite:///{tiny_city.warehouse.parent / 'mlflow.db'}"
    # Dropped: the kernel's inline backend draws figures; locations come from GODO_DATA_DIR.
    dropped = {"MPLBACKEND", "GODO_NOTEBOOK_USER", "GODO_WAREHOUSE", "GODO_MLFLOW_TRACKING_URI"}
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    env |= {
        "GODO_DATA_DIR": os.path.relpath(tiny_city.warehouse.parent, REPO_ROOT),
        "GODO_MLFLOW_EXPERIMENT": mlflow.experiment,
        "GODO_MLFLOW_MODEL_NAME": mlflow.model_name,
        "DATABASE_URL": tiny_city.resources["postgres"].database_url,
        "REDIS_URL": tiny_city.resources["redis"].url,
        "GODO_REDIS_PREFIX": tiny_city.keys.prefix,
        "DAGSTER_HOME": str(tiny_city.dagster_home),
        "GODO_NOTEBOOK_FIGURES": str(figures),
    }
    if user is not None:
        env["GODO_NOTEBOOK_USER"] = str(user)
    return env


def _execute_notebook(
    path: Path, env: dict[str, str], names: tuple[str, ...], folder: Path
) -> NotebookRun:
    """Convert with jupytext, run every cell in a `python3` kernel started in notebooks/ (as
    Jupyter starts it), read back `names`.

    A last cell, added here, prints the variables as JSON. A cell that raises fails the test
    with the cell's source and traceback; the executed copy is kept beside the figures.
    """
    notebook = jupytext.read(path)
    dump = {
        "kernel_prefix": "sys.prefix",
        "kernel_cwd": "__import__('os').getcwd()",
        **{name: name for name in names},
    }
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            "import json, sys\n"
            f"print({RESULTS_MARKER!r} + json.dumps({{"
            + ", ".join(f"{key!r}: {value}" for key, value in dump.items())
            + "}, default=str))"
        )
    )
    assert path.parent == NOTEBOOK_DIR
    executed = folder / f"{path.stem}.ipynb"
    try:
        execute_in_notebook_dir(notebook, env)
    except CellExecutionError as error:
        cell_error = _ANSI.sub("", str(error))
        pytest.fail(f"{path.name} raised (see {executed}):\n{cell_error}", pytrace=False)
    finally:
        nbformat.write(notebook, executed)
    printed = "".join(
        output.get("text", "") for output in notebook.cells[-1].outputs if output.name == "stdout"
    )
    line = next(line for line in printed.splitlines() if line.startswith(RESULTS_MARKER))
    results = json.loads(line.removeprefix(RESULTS_MARKER))
    # nbclient's `python3` resolved to this venv's ipykernel: the kernel ran this interpreter.
    assert results.pop("kernel_prefix") == sys.prefix
    assert Path(results.pop("kernel_cwd")) == NOTEBOOK_DIR
    return NotebookRun(results, notebook, Path(env["GODO_NOTEBOOK_FIGURES"]))


def _check_figures(run: NotebookRun) -> None:
    """Every figure was drawn inline in the notebook and saved as a PNG."""
    names, files = run.results["figure_names"], run.results["figure_files"]
    assert names and len(files) == len(names)
    for name, file in zip(names, files, strict=True):
        path = Path(file)
        assert path.parent == run.figures and path.stem == name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
    inline = [
        output
        for cell in run.notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(inline) >= len(names)


def _check_explore_swipes_and_events(
    run: NotebookRun, tiny_city: TinyCity, engine: sa.Engine, redis_client: redis.Redis
) -> None:
    results, rows = run.results, _pipeline_rows(tiny_city)
    assert results["counts"]["app_swipes"] == rows["app_swipes"] > 0
    for table, count in results["counts"].items():
        if table in rows:  # every table the pipeline reported a row count for
            assert count == rows[table], table
    with engine.connect() as conn:
        daily = conn.execute(
            sa.text(
                "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*) "
                "FROM swipes GROUP BY 1"
            )
        ).all()
        by_position = conn.execute(
            sa.text(
                "SELECT position, avg(CASE WHEN action IN :likes THEN 1.0 ELSE 0.0 END) "
                "FROM swipes WHERE position IS NOT NULL GROUP BY position"
            ).bindparams(sa.bindparam("likes", expanding=True)),
            {"likes": list(LIKES)},
        ).all()
        per_metro_category = conn.execute(
            sa.text("SELECT metro, category, count(*) FROM events GROUP BY metro, category")
        ).all()
    assert results["swipes_per_day"] == dict(daily)
    assert sum(results["swipes_per_day"].values()) == rows["app_swipes"]
    rates = {int(position): rate for position, rate in results["like_rate_by_position"].items()}
    assert rates == pytest.approx({position: float(rate) for position, rate in by_position})
    expected: dict[str, dict[str, int]] = {}
    for metro, category, n in per_metro_category:
        expected.setdefault(metro, {})[category] = n
    assert results["events_per_metro_category"] == expected
    assert sum(sum(c.values()) for c in expected.values()) == rows["events"]
    assert set(results["figure_names"]) >= {"swipes_per_day", "position_bias"}


def _check_compare_models(
    run: NotebookRun, tiny_city: TinyCity, engine: sa.Engine, redis_client: redis.Redis
) -> None:
    results = run.results
    registry = tiny_city.resources["mlflow"].registry()
    client = registry.client
    experiment = client.get_experiment_by_name(registry.experiment)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert results["run_ids"] == [r.info.run_id for r in runs]
    for mlflow_run in runs:
        table = read_table(client, mlflow_run.info.run_id, STAGES_TABLE)
        logged = (
            {}
            if table is None
            else dict(
                table.filter(pl.col("online_value").is_not_null())
                .select("model", "online_value")
                .iter_rows()
            )
        )
        assert results["metric_by_run"][mlflow_run.info.run_id] == pytest.approx(logged)
        assert results["trained_by"][mlflow_run.info.run_id] == mlflow_run.data.tags.get(
            "dagster_run_id"
        )
    champion = registry.champion()
    assert champion is not None
    assert results["champion_version"] == champion.version
    assert results["champion_run_id"] == champion.run_id
    # The champion, loaded as a pyfunc, ranked its input example: 1..5 per user.
    ranked = pl.DataFrame(results["champion_ranked_rows"])
    assert ranked.height > 0 and set(results["champion_inputs"]) >= {"user_id", "event_id"}
    assert ranked.group_by("user_id").agg(pl.col("rank").max())["rank"].max() <= 5
    per_user = ranked.group_by("user_id").agg(pl.col("rank").sort())
    assert all(ranks == list(range(1, len(ranks) + 1)) for ranks in per_user["rank"].to_list())
    first = registry.version(1)  # registered by the fixture's own pipeline run
    assert results["versions"][first.run_id] == 1
    stages = results["metric_by_run"][first.run_id]
    assert {"random", "popularity", "als", "ranker", "final_feed", "oracle"} <= set(stages)
    assert stages["final_feed"] > stages["random"]
    # The run that trained it is in the Dagster instance the notebook read.
    with dg.DagsterInstance.from_config(str(tiny_city.dagster_home)) as instance:
        assert instance.get_run_by_id(results["trained_by"][first.run_id]) is not None


def _check_inspect_user_feed(
    run: NotebookRun,
    tiny_city: TinyCity,
    engine: sa.Engine,
    redis_client: redis.Redis,
    chosen: int | None = None,
) -> None:
    results = run.results
    with engine.connect() as conn:
        user_id = chosen if chosen is not None else most_active_user(conn)
        run_id = conn.execute(
            sa.text("SELECT id FROM recommendation_runs WHERE status = 'published'")
        ).scalar_one()
        stored = conn.execute(
            sa.text(
                "SELECT event_id, rank, reason FROM recommendations "
                "WHERE run_id = :r AND user_id = :u ORDER BY rank"
            ),
            {"r": run_id, "u": user_id},
        ).all()
        # What the feed may still offer: not started, not cancelled, not full.
        showable = set(
            conn.execute(
                sa.text(
                    "SELECT e.id FROM events AS e WHERE e.id = ANY(:ids) AND e.is_active "
                    "AND lower(e.status) NOT IN ('canceled', 'cancelled') AND e.start_utc > now() "
                    "AND (e.capacity IS NULL OR e.capacity > (SELECT count(*) "
                    "FROM event_attendance AS ea WHERE ea.event_id = e.id AND ea.status = 'going'))"
                ),
                {"ids": [row.event_id for row in stored]},
            ).scalars()
        )
        recent = conn.execute(
            sa.text(
                "SELECT event_id FROM swipes WHERE user_id = :u "
                "ORDER BY created_at DESC, id LIMIT 20"
            ),
            {"u": user_id},
        ).scalars()
        friends = conn.execute(
            sa.text(
                "SELECT mine.friend_id FROM friendships AS mine JOIN friendships AS theirs "
                "ON theirs.user_id = mine.friend_id AND theirs.friend_id = mine.user_id "
                "WHERE mine.user_id = :u"
            ),
            {"u": user_id},
        ).scalars()
        going = conn.execute(
            sa.text(
                "SELECT ea.event_id, ea.user_id FROM event_attendance AS ea "
                "JOIN friendships AS mine ON mine.user_id = :u AND mine.friend_id = ea.user_id "
                "JOIN friendships AS theirs ON theirs.user_id = ea.user_id "
                "AND theirs.friend_id = :u "
                "WHERE ea.status = 'going' AND ea.visibility IN ('public', 'friends')"
            ),
            {"u": user_id},
        ).all()
        expected_recent, expected_friends = list(recent), sorted(friends)
    assert results["user_id"] == user_id
    assert results["run_id"] == run_id
    assert redis_client.get(tiny_city.keys.current_run()) == run_id.encode()
    assert results["feed_source"] == "redis" and not results["cold_start"]
    assert results["stored_event_ids"] == [row.event_id for row in stored] and stored
    # Served: the stored list, in order, minus what became unshowable (e.g. sold out) since.
    served = [row for row in stored if row.event_id in showable]
    assert results["feed_event_ids"] == [row.event_id for row in served] and served
    assert results["feed_ranks"] == [row.rank for row in served]
    assert results["feed_reasons"] == [row.reason for row in served]
    assert results["recent_swipe_event_ids"] == expected_recent and expected_recent
    assert results["friend_ids"] == expected_friends
    in_feed = set(results["feed_event_ids"])
    expected_going: dict[str, list[int]] = {}
    for event_id, friend in going:
        if event_id in in_feed:
            expected_going.setdefault(event_id, []).append(friend)
    assert {e: sorted(ids) for e, ids in results["friends_going"].items()} == {
        e: sorted(ids) for e, ids in expected_going.items()
    }
    if chosen is not None:
        assert results["friends_going"], "the chosen user has friends going to feed events"
    # The published run is the Dagster run of the publishing step, in the persistent instance.
    published_by = results["published_by"]
    assert published_by["dagster_run_id"] == run_id and published_by["status"] == "SUCCESS"
    with dg.DagsterInstance.from_config(str(tiny_city.dagster_home)) as instance:
        assert instance.get_run_by_id(run_id) is not None
    # The fixture's only publish ranked with version 1, promoted by that same pipeline run.
    assert results["model_version"] == 1
    assert set(results["figure_names"]) >= {"feed_scores_and_reasons"}


NotebookCheck = Callable[[NotebookRun, TinyCity, sa.Engine, redis.Redis], None]
# Per notebook: the variables it ends with that the test reads, and what must hold of them.
NOTEBOOK_CHECKS: dict[str, tuple[tuple[str, ...], NotebookCheck]] = {
    "explore_swipes_and_events": (
        ("counts", "swipes_per_day", "like_rate_by_position", "events_per_metro_category"),
        _check_explore_swipes_and_events,
    ),
    "compare_models": (
        ("run_ids", "metric_by_run", "versions", "trained_by", "champion_version")
        + ("champion_run_id", "champion_ranked_rows", "champion_inputs"),
        _check_compare_models,
    ),
    "inspect_user_feed": (
        ("user_id", "run_id", "feed_source", "cold_start", "feed_event_ids", "feed_ranks")
        + ("feed_reasons", "stored_event_ids", "recent_swipe_event_ids", "friend_ids")
        + ("friends_going", "published_by", "model_version"),
        _check_inspect_user_feed,
    ),
}
# Every notebook once with its defaults; inspect_user_feed also for a user picked with
# GODO_NOTEBOOK_USER whose feed has friends going (the most active user's may have none).
CHOSEN_USER = "user-with-friends-going"
NOTEBOOK_RUNS = [pytest.param(path, None, id=path.name) for path in NOTEBOOKS] + [
    pytest.param(
        NOTEBOOK_DIR / "inspect_user_feed.py", CHOSEN_USER, id=f"inspect_user_feed.py-{CHOSEN_USER}"
    )
]


def _user_with_friends_going(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT r.user_id FROM recommendations AS r "
                "JOIN recommendation_runs AS runs ON runs.id = r.run_id "
                "AND runs.status = 'published' "
                "JOIN event_attendance AS ea ON ea.event_id = r.event_id "
                "AND ea.status = 'going' AND ea.visibility IN ('public', 'friends') "
                "JOIN friendships AS mine ON mine.user_id = r.user_id "
                "AND mine.friend_id = ea.user_id "
                "JOIN friendships AS theirs ON theirs.user_id = ea.user_id "
                "AND theirs.friend_id = r.user_id "
                "GROUP BY r.user_id ORDER BY count(*) DESC, r.user_id LIMIT 1"
            )
        ).scalar_one()


@pytest.mark.parametrize(("notebook", "user"), NOTEBOOK_RUNS)
def test_notebook_runs_on_the_pipeline_output(
    notebook: Path,
    user: str | None,
    tiny_city: TinyCity,
    session_engine: sa.Engine,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """Each notebook, run top to bottom in a Jupyter kernel on what the pipeline really built,
    computes what Postgres, MLflow, Redis and Dagster hold."""
    assert notebook.stem in NOTEBOOK_CHECKS, f"say what {notebook.name} must compute"
    names, check = NOTEBOOK_CHECKS[notebook.stem]
    chosen = _user_with_friends_going(session_engine) if user == CHOSEN_USER else None
    env = _notebook_env(tiny_city, tmp_path / "figures", chosen)
    run = _execute_notebook(notebook, env, (*names, "figure_names", "figure_files"), tmp_path)
    _check_figures(run)
    if chosen is None:
        check(run, tiny_city, session_engine, redis_client)
    else:
        _check_inspect_user_feed(run, tiny_city, session_engine, redis_client, chosen)


def _evaluate_and_gate(tiny_city: TinyCity) -> dg.ExecuteInProcessResult:
    """One run of the evaluation, its blocking check and the promotion, as the demo runs it."""
    return dg.materialize(
        definitions_to_run(defs),
        selection=["ranking_evaluation", "champion_model"],
        resources=tiny_city.resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _register_a_worse_champion(tiny_city: TinyCity, mlflow: MLflowResource) -> int:
    """A ranker trained to put untouched candidates first, promoted by hand."""
    version = _register_a_worse_version(tiny_city, mlflow)
    mlflow.registry().promote(version, reason="test: a deliberately worse champion")
    return version


def _register_a_worse_version(tiny_city: TinyCity, mlflow: MLflowResource) -> int:
    """A ranker trained to put untouched candidates first, registered (not promoted)."""
    with duckdb.connect(str(tiny_city.warehouse), read_only=True) as con:
        examples = con.sql("SELECT * FROM godo.ranker_examples").pl()
    inverted = examples.with_columns(
        label=pl.when(pl.col("label") > 0).then(0).otherwise(1).cast(pl.Int8)
    ).with_columns(pl.col("created_at").dt.convert_time_zone("UTC"))
    ranker = fit_ranker(inverted)
    registry = mlflow.registry()
    champion = registry.champion()
    assert champion is not None
    bundle = registry.download_bundle(champion.version, tiny_city.warehouse.parent / "worse")
    ranker.save(bundle / "ranker.txt")
    with registry.start_run("worse-on-purpose") as run:
        run.log_bundle(bundle)
        version = run.register_feed_model(
            bundle,
            als_file="als_model.npz",
            ranker_file="ranker.txt",
            config=RerankConfig(),
            input_example=candidate_input(examples.head(20), ranker.features),
        )
    return version


def test_champion_moves_only_when_the_gate_passes(tiny_city: TinyCity) -> None:
    mlflow: MLflowResource = tiny_city.resources["mlflow"]
    registry = mlflow.registry()
    first = registry.champion()
    assert first is not None  # the pipeline run promoted its first model

    # Same data, same code: the new version ties, which is not beating the champion. That is
    # a normal night: the run succeeds, the gate warns with its numbers, nothing is promoted.
    tie = _evaluate_and_gate(tiny_city)
    assert tie.success
    (verdict,) = tie.get_asset_check_evaluations()
    assert verdict.check_name == "beats_champion"
    assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.WARN
    assert verdict.description is not None and verdict.description.startswith("champion kept:")
    assert verdict.metadata["gain_low"].value <= 0 <= verdict.metadata["gain_high"].value
    materialized = {
        e.materialization.asset_key.to_user_string() for e in tie.get_asset_materialization_events()
    }
    assert materialized == {"ranking_evaluation"}  # champion_model: ran, materialized nothing
    assert "champion_model" in {e.step_key for e in tie.get_step_success_events()}
    table = tie.output_for_node("ranking_evaluation")
    versions = dict(zip(table["model"].to_list(), table["version"].to_list(), strict=True))
    assert versions["champion"] == first.version and versions["final_feed"] > first.version
    assert registry.champion().version == first.version  # type: ignore[union-attr]
    _check_mlflow_links(tie, mlflow, versions["final_feed"])
    rejected = registry.version(versions["final_feed"]).tags
    assert rejected["godo.gate"] == "rejected" and "does not beat" in rejected["godo.gate_reason"]

    worse = _register_a_worse_champion(tiny_city, mlflow)
    assert registry.champion().version == worse  # type: ignore[union-attr]
    better = _evaluate_and_gate(tiny_city)
    assert better.success
    table = better.output_for_node("ranking_evaluation")
    value = dict(zip(table["model"].to_list(), table["online_value"].to_list(), strict=True))
    assert value["final_feed"] > value["champion"]
    assert table.filter(pl.col("model") == "final_feed")["gain_low"].item() > 0
    new = table.filter(pl.col("model") == "final_feed")["version"].item()
    assert registry.champion().version == new  # type: ignore[union-attr]
    (promotion,) = better.asset_materializations_for_node("champion_model")
    assert promotion.metadata["version"].value == new
    assert promotion.metadata["replaced"].value == worse
    assert registry.version(new).tags["godo.gate"] == "promoted"


def _check_mlflow_links(
    result: dg.ExecuteInProcessResult, mlflow: MLflowResource, version: int
) -> None:
    """The evaluation links to its MLflow run and version, and shows its plots inline; the
    ranker it registered (`ranker_model`) gets the same links as an observation."""
    registry = mlflow.registry()
    (evaluation,) = result.asset_materializations_for_node("ranking_evaluation")
    metadata = evaluation.metadata
    run_id = str(metadata["mlflow_run_id"].value)
    ui = mlflow.ui_url.rstrip("/")
    assert metadata["mlflow_run"] == dg.MetadataValue.url(
        f"{ui}/#/experiments/{registry.experiment_id}/runs/{run_id}"
    )
    assert metadata["model_version"] == dg.MetadataValue.url(
        f"{ui}/#/models/{mlflow.model_name}/versions/{version}"
    )
    assert registry.version(version).run_id == run_id
    shown = str(metadata["plots"].value)
    assert isinstance(metadata["plots"], dg.MarkdownMetadataValue)
    assert shown.count("](data:image/png;base64,") == len(
        registry.client.list_artifacts(run_id, "plots")
    )
    (observed,) = [
        e.asset_observation_data.asset_observation
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    ]
    assert observed.asset_key == dg.AssetKey("ranker_model")
    assert observed.metadata["mlflow_run"] == metadata["mlflow_run"]
    assert observed.metadata["model_version"] == metadata["model_version"]


def test_the_training_run_is_tracked_in_mlflow(tiny_city: TinyCity, tmp_path: Path) -> None:
    """Params, a few key metrics, the stage table, the plots, the feature list, the bundle, the
    gate's verdict on the version, and the whole feed registered as a pyfunc."""
    registry = tiny_city.resources["mlflow"].registry()
    first = registry.version(1)
    client = registry.client
    run = client.get_run(first.run_id)
    assert run.info.run_name == f"retrain-{run.data.tags['cutoff'][:10]}-v1-passed"
    assert {
        "als.factors",
        "ease.l2",
        "item_knn.weighting",
        "ranker.learning_rate",
        "holdout.cutoff",
    } <= set(run.data.params)
    # A handful of charts, not one per stage and metric.
    assert set(run.data.metrics) == {
        "ndcg_at_10",
        "recall_at_20",
        "map_at_10",
        "coverage",
        "value",
        "oracle_gap",
        "gain_low",
        "candidate_recall",
    } - {"gain_low"}  # the first model had no champion to gain over
    assert run.data.metrics["oracle_gap"] >= 0
    stages = read_table(client, first.run_id, STAGES_TABLE)
    assert stages is not None
    by_model = {row["model"]: row for row in stages.iter_rows(named=True)}
    for stage in ("random", "popularity", "als", "ranker", "final_feed", "oracle"):
        assert by_model[stage]["ndcg@10"] is not None, stage
    assert by_model["final_feed"]["ndcg@10"] > by_model["random"]["ndcg@10"]
    assert run.data.metrics["ndcg_at_10"] == pytest.approx(by_model["final_feed"]["ndcg@10"])
    assert by_model["oracle"]["online_value"] >= by_model["final_feed"]["online_value"]
    assert by_model["final_feed"]["online_value"] > by_model["random"]["online_value"]
    assert 0 < run.data.metrics["candidate_recall"] <= 1
    plots = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert {"plots/ndcg_by_model.png", "plots/feature_importance.png"} <= plots
    top = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"features.json", "bundle", STAGES_TABLE, CANDIDATES_TABLE} <= top
    bundle = registry.download_bundle(1, tiny_city.warehouse.parent / "check-bundle")
    assert {"als_model.npz", "ranker.txt", "ranker.txt.json"} <= {p.name for p in bundle.iterdir()}
    assert first.tags["godo.gate"] in {"passed", "promoted"}
    assert first.tags["godo.gate_reason"]
    # The version is the feed model: a pyfunc with a signature and an input example.
    source = client.get_model_version(registry.model_name, "1").source
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp_path))
    model = mlflow.pyfunc.load_model(local)
    assert model.metadata.signature is not None
    assert model.metadata.saved_input_example_info is not None
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert [e.name for e in client.search_experiments()] == [registry.experiment]


def test_the_synthetic_city_is_notified_through_the_fakes(tiny_city: TinyCity) -> None:
    """Every outreach asset ran against the local fakes: what they report was received."""
    outcomes = {s.name: s.outcomes for s in tiny_city.steps if s.outcomes}
    assert {"event_reminders", "friend_going_notifications", "weekly_digest_push"} <= set(outcomes)
    assert "weekly_digest_email" in outcomes
    push_sent = sum(
        outcomes[name].get("sent", 0)
        for name in ("event_reminders", "friend_going_notifications", "weekly_digest_push")
    )
    assert push_sent == tiny_city.pushed > 0
    assert outcomes["weekly_digest_email"].get("sent", 0) == tiny_city.emailed > 0


def test_each_experiment_arm_is_published_with_what_it_serves(
    tiny_city: TinyCity, session_engine: sa.Engine, redis_client: redis.Redis
) -> None:
    """Arms on the champion, on another registered version and on popularity: each gets a
    run of its own behind its own pointer, ranked by what it names; the feed serves them."""
    mlflow: MLflowResource = tiny_city.resources["mlflow"]
    registry = mlflow.registry()
    champion = registry.champion()
    assert champion is not None
    challenger = _register_a_worse_version(tiny_city, mlflow)
    keys = tiny_city.keys
    create_experiment(
        engine=session_engine,
        redis_client=redis_client,
        keys=keys,
        spec=ExperimentSpec(
            name="arms",
            arms=(
                ArmSpec("control", 0.4, Serves("model", "champion")),
                ArmSpec("challenger", 0.3, Serves("model", str(challenger))),
                ArmSpec("popular", 0.3, Serves("rule", "popularity")),
            ),
            start=datetime.now(UTC) - timedelta(minutes=1),
            end=datetime.now(UTC) + timedelta(days=1),
        ),
        model_registered=lambda ref: registry.resolve(ref) is not None,
    )
    with dg.DagsterInstance.local_temp(str(tiny_city.dagster_home)) as instance:
        result = dg.materialize(
            definitions_to_run(defs),
            selection=["ranked_feed", "published_arms", "published_feed"],
            resources=tiny_city.resources,
            instance=instance,
        )
    assert result.success
    with session_engine.connect() as conn:
        runs = {
            row.arm: row
            for row in conn.execute(
                sa.text(
                    "SELECT DISTINCT ON (arm) id, arm, model_version FROM recommendation_runs "
                    "WHERE status = 'published' ORDER BY arm, published_at DESC"
                )
            )
        }
        lists = {
            arm: {
                row.user_id: row.events
                for row in conn.execute(
                    sa.text(
                        "SELECT user_id, array_agg(event_id ORDER BY rank) AS events "
                        "FROM recommendations WHERE run_id = :run GROUP BY user_id"
                    ),
                    {"run": run.id},
                )
            }
            for arm, run in runs.items()
        }
    assert set(runs) == {None, "control", "challenger", "popular"}
    assert runs[None].model_version == runs["control"].model_version == str(champion.version)
    assert runs["challenger"].model_version == str(challenger)
    assert runs["popular"].model_version == "popularity"
    for arm in ("control", "challenger", "popular"):
        assert redis_client.get(keys.arm_run("arms", arm)) == runs[arm].id.encode()
    assert redis_client.get(keys.current_run()) == runs[None].id.encode()
    assert lists["control"] == lists[None]  # the champion's own version: the same lists
    assert lists["challenger"] != lists[None]  # ranked by the other version's artifacts
    assert lists["popular"] != lists[None]
    document = ServingExperiments.parse(redis_client.get(keys.experiments()))
    for user in sorted(lists[None])[:40]:
        feed = read_feed(engine=session_engine, redis_client=redis_client, keys=keys, user_id=user)
        assignment = document.assignment(user, datetime.now(UTC).timestamp())
        assert assignment is not None and feed.arm == assignment.arm
        assert feed.run_id == runs[feed.arm].id
    stop_experiment(engine=session_engine, redis_client=redis_client, keys=keys, name="arms")
    feed = read_feed(engine=session_engine, redis_client=redis_client, keys=keys, user_id=user)
    assert feed.arm is None and feed.run_id == runs[None].id


def test_the_demo_experiment_is_won_by_the_arm_worth_more_to_the_simulated_users(
    tiny_city: TinyCity,
    session_engine: sa.Engine,
    database_url: str,
    service_urls: ServiceUrls,
) -> None:
    """The demo's A/B run: every user of the city opens the app once through the API, answers
    as the simulator says, and the online table names the arm whose pages are worth more."""
    settings = Settings(
        database_url=database_url,
        redis_url=service_urls.redis_url,
        redis_prefix=tiny_city.keys.prefix,
    )
    with dg.DagsterInstance.local_temp(str(tiny_city.dagster_home)) as instance:
        demo = run_experiment(
            defs=defs, resources=tiny_city.resources, instance=instance, settings=settings
        )
    name = demo.experiment.name
    assert demo.experiment.stopped_at is not None  # everyone is back on the champion
    assert demo.users == 120 and demo.requests["feed"] == 120
    assert demo.requests["swipes"] > 0 and demo.requests["attendance"] > 0
    with session_engine.connect() as conn:
        logged = conn.execute(
            sa.text("SELECT arm, count(*) FROM impressions WHERE experiment = :e GROUP BY arm"),
            {"e": name},
        ).all()
        attributed = conn.execute(
            sa.text(
                "SELECT count(*) FROM swipes AS s JOIN impressions AS i "
                "ON i.impression_id = s.impression_id AND i.user_id = s.user_id "
                "AND i.event_id = s.event_id WHERE i.experiment = :e"
            ),
            {"e": name},
        ).scalar_one()
    by_arm = {row["arm"]: row for row in demo.tables.by_arm.iter_rows(named=True)}
    assert set(by_arm) == {"control", "popularity"} == {arm for arm, _ in logged}
    assert {arm: by_arm[arm]["impressions"] for arm in by_arm} == dict(logged)
    # Every swipe the simulated users sent carried its card's id, and the API stored it.
    assert attributed == sum(by_arm[arm]["swipes"] for arm in by_arm) > 0
    assert not demo.tables.sample_ratio["mismatch"].any()
    winner = demo.expected_winner
    loser = next(arm for arm in by_arm if arm != winner)
    shown = f"{demo.simulated}\n{demo.tables.by_arm}\n{demo.tables.tests}"
    assert demo.simulated[winner].low > demo.simulated[loser].high, shown
    # Online, through the API: the graded value per impression (like 1, superlike or going 2,
    # the simulator's grades) is higher in that arm, beyond the interval of the difference.
    metric = "value_per_impression"
    assert by_arm[winner][metric] > by_arm[loser][metric], shown
    (test,) = demo.tables.tests.filter(pl.col("metric") == metric).iter_rows(named=True)
    assert test["arm"] == "popularity" and test["control"] == "control"
    if winner == "control":
        assert test["high"] < 0, shown
    else:
        assert test["low"] > 0, shown
