"""Promoting an experiment arm: its online results, the verdict, the alias, the stop.

`godo experiment promote` (and the demo's A/B table) compute the experiment's online tables
here, from Postgres, for the experiment's own window (its start to its end, its stop or now,
whichever comes first), with the same reader and functions as the `online_metrics` asset
(`store.online`, `models.evaluation.online`): a decision to move the champion must not rest
on a table written yesterday for another window. The verdict is
`models.evaluation.promotion`'s; on a promotion the registry's `champion` alias moves to the
version the arm served and the experiment is stopped, so its users are back on the champion
from their next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import redis
import sqlalchemy as sa

from models.evaluation.online import OnlineTables, arms_frame, control_arm, online_tables
from models.evaluation.promotion import PromotionVerdict, promotion_verdict
from pipelines.tracking import ModelRegistry
from store.experiments import (
    Arm,
    Experiment,
    ExperimentError,
    get_experiment,
    stop_experiment,
)
from store.keys import RedisKeys
from store.online import read_online_window


@dataclass(frozen=True)
class Promoted:
    """What a promotion did."""

    experiment: Experiment  # as stored after the stop
    arm: Arm
    version: int
    previous: int | None  # the champion before
    verdict: PromotionVerdict
    stopped: bool  # False when the experiment had ended or stopped already


def experiment_window(experiment: Experiment, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of what the experiment served: until its end, its stop or now."""
    end = min(experiment.end, now)
    if experiment.stopped_at is not None:
        end = min(end, experiment.stopped_at)
    if end <= experiment.start:
        raise ExperimentError(
            f"experiment {experiment.name!r} has not started yet (it starts "
            f"{experiment.start.isoformat()})"
        )
    return experiment.start, end


def _arms(experiment: Experiment) -> pl.DataFrame:
    """The experiment's arms and weights as the online tables take them."""
    return arms_frame(
        [
            {"experiment": experiment.name, "arm": arm.name, "weight": arm.weight}
            for arm in experiment.arms
        ]
    )


def experiment_tables(engine: sa.Engine, experiment: Experiment, now: datetime) -> OnlineTables:
    """The online tables of the experiment's impressions in its window (arms, tests, SRM)."""
    start, end = experiment_window(experiment, now)
    with engine.connect() as conn:
        window = read_online_window(conn, start, end)
    return online_tables(
        window.impressions.filter(pl.col("experiment") == experiment.name),
        _arms(experiment),
        catalogue_size=window.catalogue_size,
        popularity=window.popularity,
    )


def _arm(experiment: Experiment, name: str | None) -> Arm:
    """The named arm, or the only arm that is not the control."""
    arms = {arm.name: arm for arm in experiment.arms}
    if name is not None:
        if name not in arms:
            raise ExperimentError(
                f"experiment {experiment.name!r} has no arm {name!r} (arms: {', '.join(arms)})"
            )
        return arms[name]
    control = control_arm(experiment.name, _arms(experiment), [])
    others = [arm for arm in experiment.arms if arm.name != control]
    if len(others) != 1:
        raise ExperimentError(
            f"name the arm to promote with --arm (arms of {experiment.name!r}: "
            f"{', '.join(arms)}; control: {control})"
        )
    return others[0]


def _served_version(registry: ModelRegistry, experiment: Experiment, arm: Arm) -> int:
    if arm.serves.kind != "model":
        raise ExperimentError(
            f"arm {arm.name!r} of {experiment.name!r} serves {arm.serves}, a rule, not a "
            "registered model: only a model version can become the champion"
        )
    info = registry.resolve(arm.serves.ref)
    if info is None:
        raise ExperimentError(
            f"arm {arm.name!r}: the registry has no model version or alias {arm.serves.ref!r} "
            "any more"
        )
    return info.version


def promote_arm(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    registry: ModelRegistry,
    name: str,
    arm: str | None = None,
    now: datetime | None = None,
) -> Promoted:
    """Move `champion` to the version `arm` of experiment `name` served, then stop the
    experiment; `ExperimentError` (nothing changed) when the verdict refuses or the arm
    cannot be promoted."""
    experiment = get_experiment(engine, name)
    if experiment is None:
        raise ExperimentError(f"no experiment named {name!r}")
    moment = now or datetime.now(UTC)
    tables = experiment_tables(engine, experiment, moment)
    chosen = _arm(experiment, arm)
    version = _served_version(registry, experiment, chosen)
    served = tables.by_arm.filter(pl.col("arm") == chosen.name)["model_versions"].to_list()
    if served and served[0] not in ("", str(version)):
        raise ExperimentError(
            f"arm {chosen.name!r} served version(s) {served[0]} in the window, but "
            f"{chosen.serves} is version {version} now: the results are not that version's"
        )
    champion = registry.champion()
    previous = None if champion is None else champion.version
    if previous == version:
        raise ExperimentError(
            f"arm {chosen.name!r} serves version {version}, which is the champion already"
        )
    verdict = promotion_verdict(tables, experiment.name, chosen.name)
    if not verdict.promote:
        raise ExperimentError(f"not promoting arm {chosen.name!r} of {name!r}: {verdict.reason}")
    registry.promote(version, reason=f"experiment {name}, arm {chosen.name}: {verdict.reason}")
    stopped = experiment.status(moment) in ("running", "scheduled")
    if stopped:
        experiment = stop_experiment(engine=engine, redis_client=redis_client, keys=keys, name=name)
    return Promoted(experiment, chosen, version, previous, verdict, stopped)
