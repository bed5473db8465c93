"""`godo experiment create | list | stop | promote`: the terminal face of `store.experiments`.

The commands reach the configured (or embedded) Postgres and Redis, as the other commands
do, and the MLflow registry of `GODO_MLFLOW_TRACKING_URI`, where a model arm's version or
alias must exist. Every refusal is a red line naming the problem and exit code 1.
Heavy modules (SQLAlchemy, MLflow) are imported inside the commands, so registering this app
costs `godo token` nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings
from godo.console import new_table, show

if TYPE_CHECKING:
    import redis
    import sqlalchemy as sa

    from store.experiments import Experiment
    from store.keys import RedisKeys

experiment_app = typer.Typer(
    help="A/B experiments: which share of users each model version or rule serves.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused experiment is the operator's to fix: its message, not a traceback."""
    from store.experiments import ExperimentError

    try:
        yield
    except ExperimentError as error:
        errors.print(f"[red bold]Refused:[/] {error}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None


@contextmanager
def _stores() -> Iterator[tuple[Settings, sa.Engine, redis.Redis, RedisKeys]]:
    """The app's Postgres (migrated) and Redis, closed afterwards."""
    import redis

    from godo.cli import connect
    from store.db import make_engine
    from store.keys import RedisKeys

    settings, urls = connect()
    engine = make_engine(urls.database_url)
    client = redis.Redis.from_url(urls.redis_url)
    try:
        yield settings, engine, client, RedisKeys(prefix=settings.redis_prefix)
    finally:
        client.close()
        engine.dispose()


def _moment(text: str | None, option: str) -> datetime | None:
    """An ISO-8601 time (UTC when it names no zone), or None when not given."""
    from store.experiments import ExperimentError, utc

    if text is None:
        return None
    try:
        return utc(datetime.fromisoformat(text))
    except ValueError:
        raise ExperimentError(f"{option} {text!r} is not an ISO-8601 time") from None


def _traffic(text: str) -> tuple[float, float]:
    from store.experiments import ExperimentError

    low, colon, high = text.partition(":")
    try:
        if not colon:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        raise ExperimentError(f"--traffic {text!r}: write FROM:TO, e.g. 0:0.5") from None


@experiment_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Unique name: lower-case letters, digits, - _.")],
    arm: Annotated[
        list[str],
        typer.Option(
            help="An arm, repeated: NAME=WEIGHT:model:<version or alias> or "
            "NAME=WEIGHT:rule:popularity, e.g. control=0.5:model:champion. Weights sum to 1."
        ),
    ],
    start: Annotated[
        str | None, typer.Option(help="ISO-8601 start (UTC unless a zone is given); default now.")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="ISO-8601 end; default 14 days after the start.")
    ] = None,
    layer: Annotated[
        str,
        typer.Option(help="Layer: experiments of one layer never share users at the same time."),
    ] = "default",
    traffic: Annotated[
        str, typer.Option(help="Range FROM:TO of the layer's users in the experiment.")
    ] = "0:1",
    salt: Annotated[
        str | None, typer.Option(help="Salt of the assignment hash; default: a random one.")
    ] = None,
) -> None:
    """Create an experiment; refused when an arm, a weight, the times or an overlap is wrong."""
    from pipelines.tracking import ModelRegistry
    from store.experiments import (
        DEFAULT_DURATION,
        ArmSpec,
        ExperimentSpec,
        create_experiment,
    )

    with _refusals():
        arms = tuple(ArmSpec.parse(text) for text in arm)
        begins = _moment(start, "--start") or datetime.now(UTC)
        spec = ExperimentSpec(
            name=name,
            arms=arms,
            start=begins,
            end=_moment(end, "--end") or begins + DEFAULT_DURATION,
            layer=layer,
            traffic=_traffic(traffic),
            salt=salt or "",
        )
        with _stores() as (settings, engine, client, keys):
            registry = ModelRegistry(
                settings.resolved_mlflow_uri,
                settings.mlflow_experiment,
                settings.mlflow_model_name,
                settings.resolved_mlflow_artifact_root,
            )
            created = create_experiment(
                engine=engine,
                redis_client=client,
                keys=keys,
                spec=spec,
                model_registered=lambda ref: registry.resolve(ref) is not None,
            )
    console.print(f"Created experiment [bold]{created.name}[/].")
    show(console, _table([created]))


@experiment_app.command("list")
def list_() -> None:
    """Every experiment with its status, layer, users, times and arms."""
    from store.experiments import list_experiments

    with _stores() as (_, engine, _client, _keys):
        found = list_experiments(engine)
    if not found:
        console.print("No experiments.")
        return
    show(console, _table(found))


@experiment_app.command("stop")
def stop(name: Annotated[str, typer.Argument(help="The experiment to stop.")]) -> None:
    """Stop an experiment now: its users get the champion from their next request."""
    from store.experiments import stop_experiment

    with _refusals(), _stores() as (_, engine, client, keys):
        stopped = stop_experiment(engine=engine, redis_client=client, keys=keys, name=name)
    console.print(
        f"Stopped experiment [bold]{stopped.name}[/]: its users get the champion from now on."
    )


@experiment_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="The experiment whose arm to promote.")],
    arm: Annotated[
        str | None,
        typer.Option(help="The arm to promote; default: the only arm that is not the control."),
    ] = None,
) -> None:
    """Make the version an arm serves the champion, only when its going-rate gain over control
    has its 95% lower bound above 0 and the sample-ratio check passes; then stop the
    experiment. Refused (exit 1, with the gain and its interval) otherwise."""
    from godo.promotion import promote_arm
    from pipelines.tracking import ModelRegistry

    with _refusals(), _stores() as (settings, engine, client, keys):
        registry = ModelRegistry(
            settings.resolved_mlflow_uri,
            settings.mlflow_experiment,
            settings.mlflow_model_name,
            settings.resolved_mlflow_artifact_root,
        )
        done = promote_arm(
            engine=engine, redis_client=client, keys=keys, registry=registry, name=name, arm=arm
        )
    before = "none" if done.previous is None else f"version {done.previous}"
    console.print(
        f"Promoted [bold]version {done.version}[/] (arm {done.arm.name} of {name}) to "
        f"champion, replacing {before}: {done.verdict.reason}.",
        soft_wrap=True,
        highlight=False,
    )
    if done.stopped:
        console.print(
            f"Stopped experiment [bold]{name}[/]: its users get the champion's published feed "
            f"from their next request; the next publish ranks everyone with version "
            f"{done.version}.",
            soft_wrap=True,
        )
    else:
        console.print(f"Experiment {name} had already {done.experiment.status(datetime.now(UTC))}.")


def _table(found: list[Experiment]) -> Table:
    now = datetime.now(UTC)
    times = ("start (UTC)", "end (UTC)")
    table = new_table(
        ("name", "status", "layer", "traffic", *times, "arms"), title="Experiments", unbroken=times
    )
    for experiment in found:
        end = experiment.end if experiment.stopped_at is None else experiment.stopped_at
        table.add_row(
            experiment.name,
            experiment.status(now),
            experiment.layer,
            f"{experiment.traffic[0]:g}:{experiment.traffic[1]:g}",
            _shown(experiment.start),
            _shown(end),
            "\n".join(f"{a.name} {a.weight:g} {a.serves}" for a in experiment.arms),
        )
    return table


def _shown(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
