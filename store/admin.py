"""What the admin pages show: experiments with their online metrics, and one user's feed.

One function per page, called by `serving.routers.admin`:

- `experiments_report`: each stored experiment's arms with the numbers of the
  `online_metrics` asset over a window ending now (impressions, users, like / superlike /
  going rates with 95% user-clustered intervals, each arm against control, the sample-ratio
  check) and the same rates per UTC day for the chart. The page must never disagree with
  what MLflow, Prometheus and the asset check report, so it reads with the asset's reader
  (`store.online.read_online_window`), weighs arms with the asset's weights
  (`store.experiments.arm_weights`) and computes with the asset's pure functions
  (`models.evaluation.online`), the daily points with its `rate_table` grouped by day too.
  That makes this the one `store` module that imports `models`: only that pure, I/O-free
  module (Polars and SciPy), which a second copy of the statistics would be worse than.
- `user_feed_report`: the feed the user would be served now (`store.feed.read_feed`, which
  records no impression, so looking does not change the metrics), which experiment and arm
  it comes from, and the user's recent impressions with the swipe and RSVP attributed to
  each (`store.online.user_impression_outcomes`, the metrics' own definition of an outcome).

Computed per request: the cost grows with the window's impressions (the whole window is read
once per page), which is why the window is capped at `MAX_WINDOW_DAYS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import polars as pl
import redis
import sqlalchemy as sa

from models.evaluation.online import (
    ARM_KEYS,
    SRM_ALPHA,
    OnlineTables,
    arms_frame,
    control_arm,
    online_tables,
    rate_table,
)
from store.experiments import Experiment, arm_weights, list_experiments
from store.feed import Feed, read_feed
from store.keys import RedisKeys
from store.live_cache import LiveCache
from store.online import read_online_window, user_impression_outcomes
from store.schema import events, users

MAX_WINDOW_DAYS: Final = 31
__all__ = ["SRM_ALPHA"]  # the page states the threshold the check uses
DAY: Final = "day"
NOT_STORED: Final = "not stored"  # status of an experiment seen in impressions only


class UnknownExperiment(LookupError):
    """No stored experiment has that name."""


class UnknownUser(LookupError):
    """No user has that id."""


@dataclass(frozen=True)
class ArmReport:
    """One arm: what it serves and its row of each online table (None: nothing served)."""

    name: str
    weight: float | None
    serves: str | None  # "model:7", "rule:popularity"; None for an arm seen only in the log
    control: bool
    metrics: dict[str, Any] | None  # the arm's `by_arm` row
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric -> `tests` row
    sample_ratio: dict[str, Any] | None = None  # the arm's `sample_ratio` row


@dataclass(frozen=True)
class ExperimentReport:
    name: str
    status: str  # running, scheduled, stopped, ended, or NOT_STORED
    stored: Experiment | None
    control: str | None
    arms: list[ArmReport]
    sample_ratio: dict[str, Any] | None  # the experiment's chi2, p_value, mismatch, ...
    daily: pl.DataFrame  # day, arm, users, counts, rates with _low/_high: `rate_table` rows


@dataclass(frozen=True)
class ExperimentsReport:
    start: datetime
    end: datetime
    days: list[date]  # every UTC day the window touches, oldest first
    experiments: list[ExperimentReport]
    outside: dict[str, Any] | None  # the `by_arm` row of traffic outside every experiment
    impressions: int


def experiments_report(
    engine: sa.Engine,
    *,
    window_days: float = 7.0,
    experiment: str | None = None,
    now: datetime | None = None,
) -> ExperimentsReport:
    """Every stored experiment (or only `experiment`) over the `window_days` before `now`.

    Raises `UnknownExperiment` for a name no stored experiment has, and `ValueError` for a
    window that is not in (0, MAX_WINDOW_DAYS].
    """
    if not 0 < window_days <= MAX_WINDOW_DAYS:
        raise ValueError(f"window_days must be in (0, {MAX_WINDOW_DAYS}], got {window_days}")
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(days=window_days)
    stored = list_experiments(engine)
    if experiment is not None:
        stored = [e for e in stored if e.name == experiment]
        if not stored:
            raise UnknownExperiment(f"No experiment named {experiment!r}.")
    with engine.connect() as conn:
        window = read_online_window(conn, start, end)
    impressions = window.impressions
    if experiment is not None:
        impressions = impressions.filter(pl.col("experiment") == experiment)
    arms = arms_frame(arm_weights(engine))
    tables = online_tables(
        impressions, arms, catalogue_size=window.catalogue_size, popularity=window.popularity
    )
    daily = rate_table(
        impressions.with_columns(pl.col("served_at").dt.date().alias(DAY)), [*ARM_KEYS, DAY]
    )
    names = [e.name for e in stored]
    if experiment is None:
        seen = tables.by_arm["experiment"].drop_nulls().unique().sort().to_list()
        names += [name for name in seen if name not in names]
    by_name = {e.name: e for e in stored}
    reports = [_experiment(name, by_name.get(name), tables, arms, daily, end) for name in names]
    outside = tables.by_arm.filter(pl.col("experiment").is_null())
    champion = None if experiment is not None or outside.is_empty() else outside.row(0, named=True)
    return ExperimentsReport(
        start=start,
        end=end,
        days=_days(start, end),
        experiments=reports,
        outside=champion,
        impressions=impressions.height,
    )


def _experiment(
    name: str,
    stored: Experiment | None,
    tables: OnlineTables,
    arms: pl.DataFrame,
    daily: pl.DataFrame,
    now: datetime,
) -> ExperimentReport:
    """One experiment's section: its stored arms in order, then arms seen only in the log."""
    mine = pl.col("experiment") == name
    by_arm = {row["arm"]: row for row in tables.by_arm.filter(mine).iter_rows(named=True)}
    srm = {row["arm"]: row for row in tables.sample_ratio.filter(mine).iter_rows(named=True)}
    tests: dict[str, dict[str, dict[str, Any]]] = {}
    for row in tables.tests.filter(mine).iter_rows(named=True):
        tests.setdefault(row["arm"], {})[row["metric"]] = row
    control = control_arm(name, arms, list(by_arm))
    listed = [] if stored is None else list(stored.arms)
    declared = {arm.name: arm for arm in listed}
    names = [*declared, *sorted(arm for arm in by_arm if arm not in declared)]
    reports = [
        ArmReport(
            name=arm,
            weight=declared[arm].weight if arm in declared else None,
            serves=str(declared[arm].serves) if arm in declared else None,
            control=arm == control,
            metrics=by_arm.get(arm),
            tests=tests.get(arm, {}),
            sample_ratio=srm.get(arm),
        )
        for arm in names
    ]
    first = next(iter(srm.values()), None)
    return ExperimentReport(
        name=name,
        status=NOT_STORED if stored is None else stored.status(now),
        stored=stored,
        control=control,
        arms=reports,
        sample_ratio=first,
        daily=daily.filter(mine).sort(DAY, "arm"),
    )


def _days(start: datetime, end: datetime) -> list[date]:
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class UserFeedReport:
    user_id: int
    display_name: str
    metro: str
    feed: Feed
    since: datetime
    history: pl.DataFrame  # `user_impression_outcomes` rows with `event_name`, newest first


def user_feed_report(
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    keys: RedisKeys,
    user_id: int,
    cache: LiveCache | None = None,
    limit: int = 50,
    history_limit: int = 100,
    history_days: int = 30,
    now: datetime | None = None,
) -> UserFeedReport:
    """The feed `user_id` would be served now and their newest impressions with outcomes.

    Raises `UnknownUser` when no user has that id. Redis down: the feed comes from Postgres,
    as the API's does.
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    since = moment - timedelta(days=history_days)
    with engine.connect() as conn:
        user = conn.execute(
            sa.select(users.c.display_name, users.c.metro).where(users.c.id == user_id)
        ).first()
        if user is None:
            raise UnknownUser(f"No user with id {user_id}.")
        history = user_impression_outcomes(conn, user_id, since, history_limit)
        history = _with_event_names(conn, history)
    feed = read_feed(
        engine=engine,
        redis_client=redis_client,
        keys=keys,
        user_id=user_id,
        limit=limit,
        now=moment,
        cache=cache,
    )
    return UserFeedReport(
        user_id=user_id,
        display_name=user.display_name,
        metro=user.metro,
        feed=feed,
        since=since,
        history=history,
    )


def _with_event_names(conn: sa.Connection, history: pl.DataFrame) -> pl.DataFrame:
    """`event_name` beside each impression (null for an event no longer in the catalogue)."""
    ids: Sequence[str] = history["event_id"].unique().to_list()
    names = conn.execute(sa.select(events.c.id, events.c.name).where(events.c.id.in_(ids))).all()
    lookup = pl.DataFrame(
        [(row.id, row.name) for row in names],
        schema={"event_id": pl.Utf8, "event_name": pl.Utf8},
        orient="row",
    )
    return history.join(lookup, on="event_id", how="left", maintain_order="left")
