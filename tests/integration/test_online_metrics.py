"""The online metrics against real Postgres: the window reader, and the asset end to end.

Needs the contract's `impressions` table (partitioned by day on `served_at`) and the
`impression_id` columns of `swipes` and `event_attendance`, which the impressions branch's
migration adds: these tests fail until that branch is merged, by design. They create the
day partitions they write into (named as the contract says), never the tables.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import redis
import sqlalchemy as sa
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from pipelines.assets.online import online_metrics
from pipelines.resources import LocalStorage, MLflowResource, PostgresResource
from recommender.online_report import RUN_TAG, SAMPLE_RATIO_CHECK, step_of
from store.experiments import ArmSpec, ExperimentSpec, create_experiment
from store.keys import RedisKeys
from store.online import read_online_window
from store.schema import event_attendance, events, users

END = datetime.now(UTC).replace(microsecond=0)
START = END - timedelta(days=7)
EVENTS = [f"ev-{i}" for i in range(6)]


def _partition(conn: sa.Connection, day: datetime) -> None:
    """The contract's partition of `day` (UTC), unless the pipeline already made it."""
    first = day.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    after = first + timedelta(days=1)
    conn.execute(
        sa.text(
            f"CREATE TABLE IF NOT EXISTS impressions_p{first:%Y%m%d} PARTITION OF impressions "
            f"FOR VALUES FROM ('{first.isoformat()}') TO ('{after.isoformat()}')"
        )
    )


def _impression(
    conn: sa.Connection,
    user: int,
    event: str,
    served_at: datetime,
    *,
    rank: int = 1,
    arm: str | None = None,
    version: str = "7",
) -> uuid.UUID:
    _partition(conn, served_at)
    impression_id = uuid.uuid4()
    conn.execute(
        sa.text(
            "INSERT INTO impressions (impression_id, served_at, user_id, event_id, rank, run_id, "
            "model_version, experiment, arm, propensity) VALUES (:id, :at, :user, :event, "
            ":rank, 'run-1', :version, :experiment, :arm, 1.0)"
        ),
        {
            "id": impression_id,
            "at": served_at,
            "user": user,
            "event": event,
            "rank": rank,
            "version": version,
            "experiment": None if arm is None else "exp",
            "arm": arm,
        },
    )
    return impression_id


def _swipe(
    conn: sa.Connection,
    user: int,
    event: str,
    action: str,
    at: datetime,
    impression_id: uuid.UUID | None,
) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO swipes (id, user_id, event_id, action, created_at, impression_id) "
            "VALUES (:id, :user, :event, :action, :at, :impression)"
        ),
        {
            "id": uuid.uuid4(),
            "user": user,
            "event": event,
            "action": action,
            "at": at,
            "impression": impression_id,
        },
    )


@pytest.fixture
def world(engine: sa.Engine) -> sa.Engine:
    """100 users, six upcoming events, no impressions yet."""
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM impressions"))
        conn.execute(
            sa.insert(users),
            [{"id": u, "display_name": f"u{u}", "metro": "lisbon"} for u in range(1, 101)],
        )
        conn.execute(
            sa.insert(events),
            [
                {
                    "id": event_id,
                    "name": event_id,
                    "metro": "lisbon",
                    "category": "music",
                    "start_utc": END + timedelta(days=3),
                    "timezone": "Europe/Lisbon",
                    "is_free": True,
                    "status": "live",
                    "is_active": True,
                }
                for event_id in EVENTS
            ],
        )
    return engine


def test_the_reader_attributes_the_latest_swipe_and_going_rsvps(world: sa.Engine) -> None:
    at = END - timedelta(hours=2)
    with world.begin() as conn:
        first = _impression(conn, 1, "ev-0", at, rank=1, arm="control")
        second = _impression(conn, 1, "ev-1", at + timedelta(minutes=1), rank=2, arm="control")
        third = _impression(conn, 2, "ev-0", at, rank=1, arm="treat", version="8")
        _impression(conn, 3, "ev-2", START - timedelta(hours=1))  # before the window
        # User 1 liked the first card, then passed it: the latest swipe counts.
        _swipe(conn, 1, "ev-0", "like", at + timedelta(minutes=2), first)
        _swipe(conn, 1, "ev-0", "pass", at + timedelta(minutes=3), first)
        # A swipe without an impression is not attributed to anything.
        _swipe(conn, 1, "ev-1", "like", at + timedelta(minutes=4), None)
        _swipe(conn, 2, "ev-0", "superlike", at + timedelta(minutes=2), third)
        conn.execute(
            sa.insert(event_attendance),
            [
                {"user_id": 1, "event_id": "ev-1", "status": "going"},
                {"user_id": 2, "event_id": "ev-0", "status": "interested"},
            ],
        )
        conn.execute(
            sa.text(
                "UPDATE event_attendance SET impression_id = :id "
                "WHERE user_id = :user AND event_id = :event"
            ),
            [
                {"id": second, "user": 1, "event": "ev-1"},
                {"id": third, "user": 2, "event": "ev-0"},
            ],
        )
        # A like stored before the window: what novelty measures popularity by.
        _swipe(conn, 3, "ev-2", "like", START - timedelta(days=1), None)
    with world.connect() as conn:
        window = read_online_window(conn, START, END)
    rows = window.impressions.select(
        "impression_id", "user_id", "event_id", "rank", "model_version", "arm", "action", "going"
    ).rows()
    assert rows == [
        (str(first), 1, "ev-0", 1, "7", "control", "pass", False),
        (str(second), 1, "ev-1", 2, "7", "control", None, True),
        (str(third), 2, "ev-0", 1, "8", "treat", "superlike", False),  # interested: not going
    ]
    assert window.impressions.schema["served_at"] == pl.Datetime("us", "UTC")
    assert window.catalogue_size == len(EVENTS)
    assert window.popularity.rows() == [("ev-2", 1)]


def _materialize(database_url: str, data_dir: Path, **config: Any) -> dg.MaterializeResult:
    result = dg.materialize(
        [online_metrics],
        resources={
            "postgres": PostgresResource(database_url=database_url),
            "mlflow": MLflowResource(
                tracking_uri=f"sqlite:///{data_dir / 'mlflow.db'}",
                artifact_root=str(data_dir / "mlartifacts"),
                experiment="godo-online-tests",
            ),
            "storage": LocalStorage(data_dir=str(data_dir)),
        },
        run_config={"ops": {"online_metrics": {"config": {"end": END.isoformat(), **config}}}},
        raise_on_error=False,
    )
    assert result.success
    return result  # type: ignore[return-value]


def _check(result: Any) -> dg.AssetCheckEvaluation:
    (evaluation,) = [
        event.asset_check_evaluation_data
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert evaluation.check_name == SAMPLE_RATIO_CHECK
    return evaluation


def test_without_impressions_the_asset_writes_empty_tables(
    world: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    result = _materialize(database_url, tmp_path)
    (materialization,) = result.asset_materializations_for_node("online_metrics")  # type: ignore[attr-defined]
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert metadata["impressions"] == 0 and metadata["mlflow_runs"] == "none"
    assert _check(result).passed
    text = (tmp_path / "metrics" / "online_metrics.prom").read_text()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert "godo_online_window_end_timestamp_seconds" in names


def test_the_asset_logs_each_version_and_flags_a_sample_ratio_mismatch(
    world: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    at = END - timedelta(days=1)
    with world.begin() as conn:
        # 45 users in control (version 7), 15 in treatment (version 8) of a 50/50 split:
        # chi2 = 2 * 15^2 / 30 = 15, p = 1e-4 < 0.001. Each liked the first of two cards.
        for user in range(1, 61):
            arm, version = ("control", "7") if user <= 45 else ("treat", "8")
            shown = _impression(conn, user, "ev-0", at, rank=1, arm=arm, version=version)
            _impression(
                conn, user, "ev-1", at + timedelta(minutes=1), rank=2, arm=arm, version=version
            )
            _swipe(conn, user, "ev-0", "like", at + timedelta(minutes=2), shown)
    arms = [
        {"experiment": "exp", "arm": "control", "weight": 0.5},
        {"experiment": "exp", "arm": "treat", "weight": 0.5},
    ]
    result = _materialize(database_url, tmp_path, arms=arms)
    check = _check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("godo-online-tests")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id], filter_string=f"tags.{RUN_TAG} = '8'")
    assert run.data.metrics["impressions"] == 30.0  # 15 treated users, two cards each
    assert run.data.metrics["like_rate"] == pytest.approx(0.5)
    assert run.data.metrics["position.1-5.like_rate"] == pytest.approx(0.5)
    history = client.get_metric_history(run.info.run_id, "like_rate")
    assert [m.step for m in history] == [step_of(END)]
    assert run.data.metrics["srm.exp.p_value"] < 0.001
    artifacts = [f.path for f in client.list_artifacts(run.info.run_id, "online")]
    assert len(artifacts) == 1 and artifacts[0].endswith(".json")

    text = (tmp_path / "metrics" / "online_metrics.prom").read_text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("godo_online_srm_mismatch", (("experiment", "exp"),))] == 1.0
    # A second run the same day adds to the same per-version run, at the same step.
    _materialize(database_url, tmp_path, arms=arms)
    again = client.search_runs([experiment.experiment_id], filter_string=f"tags.{RUN_TAG} = '8'")
    assert [r.info.run_id for r in again] == [run.info.run_id]


def test_without_configured_arms_the_stored_experiment_weights_are_checked(
    world: sa.Engine,
    database_url: str,
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    """The daily schedule passes no arms: the weights come from `godo experiment create`."""
    at = END - timedelta(days=1)
    create_experiment(
        engine=world,
        redis_client=redis_client,
        keys=redis_keys,
        spec=ExperimentSpec(
            name="exp",
            arms=(
                ArmSpec.parse("control=0.5:rule:popularity"),
                ArmSpec.parse("treat=0.5:rule:popularity"),
            ),
            start=START,
            end=END + timedelta(days=7),
        ),
        model_registered=lambda ref: False,
    )
    with world.begin() as conn:
        for user in range(1, 61):  # 45 against 15 of a 50/50 split: p = 1e-4
            _impression(conn, user, "ev-0", at, arm="control" if user <= 45 else "treat")
    check = _check(_materialize(database_url, tmp_path))
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
