"""`godo experiment create|list|stop` against real PostgreSQL, Redis and a SQLite MLflow
registry, through Typer's runner: every refusal, overlaps and layers, the serving document."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa
from typer.testing import CliRunner

from core.settings import get_settings
from godo.cli import app
from pipelines.tracking import ModelRegistry
from store.experiments import ServingExperiments, list_experiments
from store.impressions import create_partitions
from store.keys import RedisKeys
from store.schema import event_attendance, events, users

runner = CliRunner()


@pytest.fixture
def cli(
    engine: sa.Engine,
    cli_environment: None,
    model_registry: ModelRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> CliRunner:
    """`godo` pointed at this test's database, Redis namespace and registry."""
    monkeypatch.setenv("GODO_MLFLOW_TRACKING_URI", model_registry.tracking_uri)
    monkeypatch.setenv("GODO_MLFLOW_EXPERIMENT", model_registry.experiment)
    monkeypatch.setenv("GODO_MLFLOW_MODEL_NAME", model_registry.model_name)
    monkeypatch.setenv("COLUMNS", "200")  # messages unwrapped, so lines can be matched
    get_settings.cache_clear()
    return runner


def _create(cli: CliRunner, name: str, *args: str) -> tuple[int, str]:
    arms = ("--arm", "control=0.5:model:champion", "--arm", "challenger=0.5:model:2")
    given = args if any(a == "--arm" for a in args) else (*arms, *args)
    result = cli.invoke(app, ["experiment", "create", name, *given])
    return result.exit_code, result.output


def _serving(client: redis.Redis, keys: RedisKeys) -> ServingExperiments:
    return ServingExperiments.parse(client.get(keys.experiments()))


def test_create_list_and_stop_through_the_cli(
    cli: CliRunner, engine: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    code, output = _create(cli, "ranker-v2", "--traffic", "0:0.5", "--salt", "pepper")
    assert code == 0, output
    (stored,) = list_experiments(engine)
    assert stored.salt == "pepper" and stored.traffic == (0.0, 0.5)
    assert [(a.name, a.weight, str(a.serves)) for a in stored.arms] == [
        ("control", 0.5, "model:champion"),
        ("challenger", 0.5, "model:2"),
    ]
    assert stored.end - stored.start == timedelta(days=14)
    document = _serving(redis_client, redis_keys)
    assert [e.name for e in document.experiments] == ["ranker-v2"]
    assert document.experiments[0].arms == (("control", 0.5), ("challenger", 0.5))

    listed = cli.invoke(app, ["experiment", "list"])
    assert listed.exit_code == 0, listed.output
    assert "ranker-v2" in listed.output and "running" in listed.output
    assert "challenger 0.5 model:2" in listed.output

    stopped = cli.invoke(app, ["experiment", "stop", "ranker-v2"])
    assert stopped.exit_code == 0, stopped.output
    assert _serving(redis_client, redis_keys).experiments == ()
    assert "stopped" in cli.invoke(app, ["experiment", "list"]).output
    again = cli.invoke(app, ["experiment", "stop", "ranker-v2"])
    assert again.exit_code == 1 and "was stopped already" in again.output
    unknown = cli.invoke(app, ["experiment", "stop", "nope"])
    assert unknown.exit_code == 1 and "no experiment named 'nope'" in unknown.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--arm", "a=0.5:model:1", "--arm", "b=0.6:model:2"), "arm weights sum to 1.1"),
        (("--arm", "a=0.5:model:1", "--arm", "b=0.4:model:2"), "arm weights sum to 0.9"),
        (("--arm", "a=0.5:model:1", "--arm", "b=0.5:model:9"), "no model version or alias '9'"),
        (
            ("--arm", "a=0.5:model:champion", "--arm", "b=0.5:model:challenger"),
            "no model version or alias 'challenger'",
        ),
        (("--arm", "a=0.5:model:1", "--arm", "b=0.5:rule:random"), "unknown rule 'random'"),
        (("--arm", "a=0.5:model:1", "--arm", "a=0.5:model:2"), "duplicate arm name 'a'"),
        (("--arm", "a=1:model:1"), "at least two arms"),
        (("--arm", "a=0.5:model:1", "--arm", "b=0.5:champion"), "names nothing to serve"),
        (("--start", "2027-01-10", "--end", "2027-01-01"), "is not after start"),
        (("--start", "2027-01-10", "--end", "2027-01-10"), "is not after start"),
        (("--start", "next week"), "not an ISO-8601 time"),
        (("--traffic", "0.5:0.2"), "not a range of the layer"),
        (("--layer", "A:B"), "layer name 'A:B'"),
    ],
)
def test_the_cli_refuses_a_bad_experiment_naming_the_problem(
    cli: CliRunner,
    engine: sa.Engine,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    args: tuple[str, ...],
    message: str,
) -> None:
    code, output = _create(cli, "refused", *args)
    assert code != 0
    assert message in output, output
    assert list_experiments(engine) == []
    assert redis_client.get(redis_keys.experiments()) is None


def test_overlapping_experiments_are_refused_unless_layers_or_users_differ(
    cli: CliRunner, engine: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    start, end = "2030-01-01T00:00:00+00:00", "2030-01-15T00:00:00+00:00"
    assert _create(cli, "first", "--start", start, "--end", end)[0] == 0
    code, output = _create(cli, "second", "--start", "2030-01-10", "--end", "2030-02-01")
    assert code == 1 and "would overlap 'first'" in output and "layer 'default'" in output
    code, output = _create(cli, "half", "--start", start, "--end", end, "--traffic", "0.5:1")
    assert code == 1 and "would overlap 'first'" in output
    assert _create(cli, "first", "--start", "2031-01-01", "--end", "2031-02-01")[1].count(
        "exists already"
    )
    # Another layer, a later time, or disjoint users of one layer are fine.
    assert _create(cli, "other-layer", "--start", start, "--end", end, "--layer", "ui")[0] == 0
    assert _create(cli, "after", "--start", end, "--end", "2030-02-01")[0] == 0
    assert _create(cli, "left", "--layer", "x", "--traffic", "0:0.5")[0] == 0
    assert _create(cli, "right", "--layer", "x", "--traffic", "0.5:1")[0] == 0
    code, output = _create(cli, "middle", "--layer", "x", "--traffic", "0.4:0.6")
    assert code == 1 and "would overlap 'left', 'right'" in output
    # A stopped experiment no longer holds its users.
    assert cli.invoke(app, ["experiment", "stop", "left"]).exit_code == 0
    assert _create(cli, "middle", "--layer", "x", "--traffic", "0.2:0.4")[0] == 0
    names = {e.name for e in list_experiments(engine)}
    assert names == {"first", "other-layer", "after", "left", "right", "middle"}
    # The serving document holds what can still serve: not stopped, not ended.
    served = {e.name for e in _serving(redis_client, redis_keys).experiments}
    assert served == names - {"left"}


# --- promote: the online results of the experiment's own window decide ----------------------

EVENTS = [f"promo-{i}" for i in range(10)]
USERS = range(1, 401)


def _city(engine: sa.Engine) -> None:
    """400 users and ten upcoming events to show them."""
    start = datetime.now(UTC) + timedelta(days=5)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM impressions"))
        conn.execute(
            sa.insert(users), [{"id": u, "display_name": f"u{u}", "metro": "lisbon"} for u in USERS]
        )
        conn.execute(
            sa.insert(events),
            [
                {
                    "id": event_id,
                    "name": event_id,
                    "metro": "lisbon",
                    "category": "music",
                    "start_utc": start,
                    "timezone": "Europe/Lisbon",
                    "is_free": True,
                    "status": "live",
                    "is_active": True,
                }
                for event_id in EVENTS
            ],
        )


def _serve(
    engine: sa.Engine,
    name: str,
    going: Callable[[str, int], int],
    *,
    keep: Callable[[str, int], bool] = lambda arm, user: True,
) -> None:
    """Every user of the experiment `name` (its real assignment) is shown the ten events an
    hour ago, by their arm's version, and is "going" through the first `going(arm, user)`
    of those impressions; users `keep` rejects were never logged."""
    (experiment,) = [e for e in list_experiments(engine) if e.name == name]
    serving = experiment.serving()
    served_at = datetime.now(UTC) - timedelta(hours=1)
    versions = {arm.name: arm.serves.ref.replace("champion", "1") for arm in experiment.arms}
    with engine.begin() as conn:
        create_partitions(conn, {served_at.date()})
        for user in USERS:
            arm = serving.arm_for(user)
            if not keep(arm, user):
                continue
            for rank, event_id in enumerate(EVENTS, start=1):
                impression = uuid.uuid4()
                conn.execute(
                    sa.text(
                        "INSERT INTO impressions (impression_id, served_at, user_id, event_id, "
                        "rank, run_id, model_version, experiment, arm, propensity) VALUES "
                        "(:id, :at, :user, :event, :rank, 'run', :version, :experiment, :arm, 1)"
                    ),
                    {
                        "id": impression,
                        "at": served_at,
                        "user": user,
                        "event": event_id,
                        "rank": rank,
                        "version": versions[arm],
                        "experiment": name,
                        "arm": arm,
                    },
                )
                if rank <= going(arm, user):
                    conn.execute(
                        sa.insert(event_attendance).values(
                            user_id=user,
                            event_id=event_id,
                            status="going",
                            visibility="public",
                            impression_id=impression,
                        )
                    )


def _start(cli: CliRunner, name: str, *arms: str) -> None:
    begins = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    arm_options = [option for arm in arms for option in ("--arm", arm)]
    # A fixed salt: the assignment, and so the sample-ratio test, is the same every run.
    code, output = _create(cli, name, *arm_options, "--start", begins, "--salt", name)
    assert code == 0, output


def _champion(registry: ModelRegistry) -> int:
    champion = registry.champion()
    assert champion is not None
    return champion.version


def test_promote_refuses_an_arm_without_a_going_gain(
    cli: CliRunner, engine: sa.Engine, model_registry: ModelRegistry
) -> None:
    _city(engine)
    _start(cli, "no-gain", "control=0.5:model:champion", "challenger=0.5:model:2")
    _serve(engine, "no-gain", lambda arm, user: user % 3)  # the same going rate in both arms
    result = cli.invoke(app, ["experiment", "promote", "no-gain"])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "not promoting arm 'challenger'" in message
    assert re.search(
        r"going-rate gain over 'control': [+-]0\.\d{4} \(95% interval -0\.\d{4}", message
    )
    assert "lower bound is not above 0" in message
    assert _champion(model_registry) == 1
    (experiment,) = list_experiments(engine)
    assert experiment.stopped_at is None


def test_promote_refuses_on_a_sample_ratio_mismatch(
    cli: CliRunner, engine: sa.Engine, model_registry: ModelRegistry
) -> None:
    _city(engine)
    _start(cli, "skewed", "control=0.5:model:champion", "challenger=0.5:model:2")
    # A large gain, but two in three of the challenger's users were never logged.
    _serve(
        engine,
        "skewed",
        lambda arm, user: 4 if arm == "challenger" else 0,
        keep=lambda arm, user: arm == "control" or user % 3 == 0,
    )
    result = cli.invoke(app, ["experiment", "promote", "skewed", "--arm", "challenger"])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "sample-ratio mismatch" in message and "going-rate gain over 'control': +0.4" in message
    assert _champion(model_registry) == 1
    (experiment,) = list_experiments(engine)
    assert experiment.stopped_at is None


def test_promote_refuses_an_arm_serving_a_rule(
    cli: CliRunner, engine: sa.Engine, model_registry: ModelRegistry
) -> None:
    _city(engine)
    _start(cli, "rules", "control=0.5:model:champion", "popular=0.5:rule:popularity")
    result = cli.invoke(app, ["experiment", "promote", "rules", "--arm", "popular"])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "serves rule:popularity, a rule, not a registered model" in message
    assert _champion(model_registry) == 1


def test_promote_moves_the_champion_to_an_arm_with_a_going_gain_and_stops(
    cli: CliRunner,
    engine: sa.Engine,
    model_registry: ModelRegistry,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:
    _city(engine)
    _start(cli, "better", "control=0.5:model:champion", "challenger=0.5:model:2")
    _serve(engine, "better", lambda arm, user: user % 3 + (2 if arm == "challenger" else 0))
    try:
        result = cli.invoke(app, ["experiment", "promote", "better"])
        assert result.exit_code == 0, result.output
        assert _champion(model_registry) == 2
    finally:
        model_registry.promote(1, reason="test: the first version is the champion again")
    message = " ".join(result.output.split())
    assert (
        "Promoted version 2 (arm challenger of better) to champion, replacing version 1" in message
    )
    assert re.search(
        r"going-rate gain over 'control': \+0\.1\d{3} \(95% interval \+0\.\d{4}", message
    )
    assert "Stopped experiment better" in message
    (experiment,) = list_experiments(engine)
    assert experiment.stopped_at is not None
    assert _serving(redis_client, redis_keys).experiments == ()
    reason = model_registry.client.get_model_version(model_registry.model_name, "2").tags
    assert reason["promoted_reason"].startswith("experiment better, arm challenger: going-rate")
