"""Online metrics of what the app served: per experiment arm and per model version.

Input: one row per logged impression (the `impressions` table) with what the user did with
it: `action` is the latest swipe attributed to the impression (like, pass, superlike; null
when not swiped) and `going` whether an RSVP "going" was attributed to it. Required columns:
user_id, event_id, rank (1-based), served_at, model_version, experiment, arm (null experiment
and arm: outside every experiment, i.e. the champion), action, going.

Why the intervals are clustered by user: a user contributes many impressions and their
outcomes are correlated (an eager swiper likes many cards), so the impressions are not
independent draws and a binomial interval over impressions is too narrow (in the 200 A/A
experiments of `tests/unit/models/test_online.py` it rejects 22% of them, this test 6%). Users are
the unit of randomisation, so every rate is a ratio of per-user sums, sum(y_u) / sum(x_u), and
its variance is the delta-method (cluster-robust) one for a ratio of means (Deng, Knoblich and
Lu, "Applying the Delta Method in Metric Analytics", KDD 2018):

    var(R) = sum_u (y_u - R x_u)^2 / ((n - 1) n xbar^2)

chosen over a bootstrap over users because it is closed-form (one pass over per-user sums for
every arm, version, position bucket and metric; the unit tests hold it to a bootstrap over
users) and gives the standard error the arm-vs-control z-test needs. Intervals are R ± 1.96 se,
clipped to [0, 1] for rates. Arms hold different users, so the difference of two arms has the
variance var_t + var_c (independent samples); the p-value is the two-sided normal one.

Coverage and novelty reuse the offline definitions (`models.evaluation.metrics`): distinct
events shown over the eligible catalogue, and mean self-information -log2 p(event) of what
each user was shown (p from the likes before the window), averaged over users. They have no
interval, and coverage grows with traffic: compare it between arms of equal weight only.

The sample-ratio-mismatch check (Kohavi, Tang and Xu, "Trustworthy Online Controlled
Experiments", ch. 21) is a chi-square test of the distinct users seen per arm against the
arms' weights; below `SRM_ALPHA` (0.001, so a daily check of a healthy experiment false-alarms
about once in three years) the experiment's comparisons should not be trusted.

CUPED (a pre-period rate per user as covariate) is left out: it needs users with impressions
before the experiment, which new users of an events app mostly lack, and the linearised ratio
version doubles the statistics for a variance cut that is unknown until real logs exist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import polars as pl
from scipy import stats

from models.evaluation.metrics import catalogue_coverage, novelty

ALPHA: Final = 0.05
Z: Final = float(stats.norm.ppf(1 - ALPHA / 2))
SRM_ALPHA: Final = 0.001
SESSION_GAP: Final = timedelta(minutes=30)  # a gap this long or longer starts a new session

ARM_KEYS: Final = ("experiment", "arm")
VERSION_KEYS: Final = ("model_version",)
POSITION: Final = "position"
# (last rank in the bucket, label); None = open-ended.
RANK_BUCKETS: Final[tuple[tuple[int | None, str], ...]] = (
    (5, "1-5"),
    (10, "6-10"),
    (20, "11-20"),
    (None, "21+"),
)
CONTROL_NAMES: Final = ("control", "champion")

# Per-user counts each ratio is built from: metric -> (numerator, denominator).
COUNTS: Final = ("impressions", "sessions", "swipes", "likes", "superlikes", "going", "value")
RATIOS: Final[dict[str, tuple[str, str]]] = {
    "swipe_rate": ("swipes", "impressions"),
    "like_rate": ("likes", "impressions"),
    "superlike_rate": ("superlikes", "impressions"),
    "going_rate": ("going", "impressions"),
    "value_per_impression": ("value", "impressions"),
    "swipes_per_session": ("swipes", "sessions"),
}
RATES: Final = ("swipe_rate", "like_rate", "superlike_rate", "going_rate")
TESTED: Final = (
    "like_rate",
    "superlike_rate",
    "going_rate",
    "value_per_impression",
    "swipes_per_session",
)
REQUIRED: Final = (
    "user_id",
    "event_id",
    "rank",
    "served_at",
    "model_version",
    "experiment",
    "arm",
    "action",
    "going",
)
TEST_SCHEMA: Final[dict[str, pl.DataType]] = {
    "experiment": pl.Utf8(),
    "arm": pl.Utf8(),
    "control": pl.Utf8(),
    "metric": pl.Utf8(),
    "control_value": pl.Float64(),
    "arm_value": pl.Float64(),
    "diff": pl.Float64(),
    "low": pl.Float64(),
    "high": pl.Float64(),
    "p_value": pl.Float64(),
}
SRM_SCHEMA: Final[dict[str, pl.DataType]] = {
    "experiment": pl.Utf8(),
    "arm": pl.Utf8(),
    "users": pl.Int64(),
    "weight": pl.Float64(),
    "expected_users": pl.Float64(),
    "chi2": pl.Float64(),
    "p_value": pl.Float64(),
    "mismatch": pl.Boolean(),
    "users_in_several_arms": pl.Int64(),
}


@dataclass(frozen=True)
class OnlineTables:
    """Every table of one window; each is empty (with its columns) when nothing was served."""

    by_arm: pl.DataFrame  # experiment, arm, model_versions, counts, rates with intervals, ...
    by_version: pl.DataFrame  # model_version, the same columns
    arm_positions: pl.DataFrame  # experiment, arm, position, rates by rank bucket
    version_positions: pl.DataFrame  # model_version, position, rates by rank bucket
    tests: pl.DataFrame  # each arm against its experiment's control, per tested metric
    sample_ratio: pl.DataFrame  # users per arm against the weights, chi-square per experiment

    def as_dict(self) -> dict[str, list[dict[str, object]]]:
        """Every table as a list of rows (JSON-ready apart from NaN/inf floats)."""
        return {name: getattr(self, name).to_dicts() for name in self.__dataclass_fields__}


def check_columns(impressions: pl.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in impressions.columns]
    if missing:
        raise ValueError(f"impressions is missing columns {missing} (has {impressions.columns})")


def with_sessions(impressions: pl.DataFrame, gap: timedelta = SESSION_GAP) -> pl.DataFrame:
    """`session`: 1, 2, ... per user, a new one whenever `gap` or more passed since the user's
    previous impression (the contract's definition: gaps < 30 minutes stay in one session)."""
    starts = (pl.col("served_at").diff() >= gap).fill_null(True).cast(pl.Int64)
    return impressions.sort("user_id", "served_at", "rank").with_columns(
        session=starts.cum_sum().over("user_id")
    )


def rank_bucket(rank: pl.Expr) -> pl.Expr:
    """The label of the RANK_BUCKETS bucket holding `rank`."""
    *bounded, (_, last_label) = RANK_BUCKETS
    expr = pl.lit(last_label)
    for last, label in reversed(bounded):
        expr = pl.when(rank <= last).then(pl.lit(label)).otherwise(expr)
    return expr


def user_totals(impressions: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """keys, user_id and the user's COUNTS in each group (sessions: distinct sessions with an
    impression in the group)."""
    check_columns(impressions)
    action = pl.col("action")
    return (
        with_sessions(impressions)
        .group_by(*keys, "user_id")
        .agg(
            impressions=pl.len().cast(pl.Int64),
            sessions=pl.col("session").n_unique().cast(pl.Int64),
            swipes=action.is_not_null().sum().cast(pl.Int64),
            likes=(action == "like").sum().cast(pl.Int64),
            superlikes=(action == "superlike").sum().cast(pl.Int64),
            going=pl.col("going").fill_null(False).sum().cast(pl.Int64),
            value=_grade(action, pl.col("going").fill_null(False)).sum().cast(pl.Int64),
        )
    )


def _grade(action: pl.Expr, going: pl.Expr) -> pl.Expr:
    """The graded relevance of an impression, as the offline and simulated evaluations grade
    a card: like 1, superlike or "going" 2, else 0."""
    liked = action.is_in(["like", "superlike"]).fill_null(False)
    strong = (action == "superlike").fill_null(False) | going
    return pl.when(strong).then(2).when(liked).then(1).otherwise(0)


def ratio_table(
    per_user: pl.DataFrame, keys: Sequence[str], ratios: dict[str, tuple[str, str]]
) -> pl.DataFrame:
    """Per group: users, the summed counts, and for each ratio its value, delta-method `_se`
    and 95% `_low` / `_high` (null with fewer than two users: no variance to estimate)."""
    keys = list(keys)
    counts = [c for c in COUNTS if c in per_user.columns]
    centred = per_user.with_columns(
        (
            pl.col(num).sum().cast(pl.Float64).over(keys)
            / pl.col(den).sum().cast(pl.Float64).over(keys)
        ).alias(f"_{name}")
        for name, (num, den) in ratios.items()
    )
    n = pl.len().cast(pl.Float64)
    aggregations: list[pl.Expr] = [pl.len().cast(pl.Int64).alias("users")]
    aggregations += [pl.col(c).sum().cast(pl.Int64) for c in counts]
    for name, (num, den) in ratios.items():
        y, x, r = pl.col(num).cast(pl.Float64), pl.col(den).cast(pl.Float64), pl.col(f"_{name}")
        value = y.sum() / x.sum()
        squares = ((y - r * x) ** 2).sum()
        variance = squares * n / ((n - 1.0) * x.sum() ** 2)
        aggregations += [
            value.alias(name),
            pl.when(n > 1).then(variance.sqrt()).otherwise(None).alias(f"{name}_se"),
        ]
    table = centred.group_by(keys).agg(aggregations)
    bounds = []
    for name in ratios:
        value, se = pl.col(name), pl.col(f"{name}_se")
        upper = 1.0 if name in RATES else None
        bounds += [
            (value - Z * se).clip(0.0, upper).alias(f"{name}_low"),
            (value + Z * se).clip(0.0, upper).alias(f"{name}_high"),
        ]
    ordered = [*keys, "users", *counts]
    for name in ratios:
        ordered += [name, f"{name}_se", f"{name}_low", f"{name}_high"]
    return table.with_columns(bounds).select(ordered).sort(keys, nulls_last=False)


def rate_table(impressions: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Counts, rates and swipes per session per group, each with its interval."""
    return ratio_table(user_totals(impressions, keys), keys, RATIOS)


def position_table(impressions: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """The rates per rank bucket (`position`: 1-5, 6-10, 11-20, 21+) within each group."""
    check_columns(impressions)
    bucketed = impressions.with_columns(rank_bucket(pl.col("rank")).alias(POSITION))
    grouped = [*keys, POSITION]
    rates = {name: RATIOS[name] for name in RATES}
    order = {label: i for i, (_, label) in enumerate(RANK_BUCKETS)}
    table = ratio_table(user_totals(bucketed, grouped), grouped, rates).drop("sessions")
    return (
        table.with_columns(_order=pl.col(POSITION).replace_strict(order, return_dtype=pl.Int64))
        .sort([*keys, "_order"], nulls_last=False)
        .drop("_order")
    )


def exposure_table(
    impressions: pl.DataFrame,
    keys: Sequence[str],
    catalogue_size: int,
    popularity: pl.DataFrame,
) -> pl.DataFrame:
    """keys, coverage, novelty of what each group showed (see the module docstring).

    `popularity`: event_id, count (likes before the window). Coverage is null without a
    catalogue, novelty null without any like to measure popularity by.
    """
    keys = list(keys)
    schema = pl.Schema(
        {
            **{k: impressions.schema[k] for k in keys},
            "coverage": pl.Float64(),
            "novelty": pl.Float64(),
        }
    )
    known_popularity = popularity.height > 0 and float(popularity["count"].sum()) > 0
    rows = []
    for group_keys, shown in impressions.partition_by(
        keys, as_dict=True, maintain_order=True
    ).items():
        recs = shown.select("user_id", "event_id", "rank")
        rows.append(
            {
                **dict(zip(keys, group_keys, strict=True)),
                "coverage": catalogue_coverage(recs, catalogue_size)
                if catalogue_size > 0
                else None,
                "novelty": novelty(recs, popularity) if known_popularity else None,
            }
        )
    return pl.DataFrame(rows, schema=schema)


def served_versions(impressions: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """keys, model_versions: the distinct versions each group served, comma-separated."""
    return impressions.group_by(list(keys)).agg(
        model_versions=pl.col("model_version").drop_nulls().unique().sort().str.join(",")
    )


def summary_table(
    impressions: pl.DataFrame,
    keys: Sequence[str],
    catalogue_size: int,
    popularity: pl.DataFrame,
) -> pl.DataFrame:
    """`rate_table` with coverage and novelty (and, when grouped by arm, the versions served)."""
    keys = list(keys)
    table = rate_table(impressions, keys).join(
        exposure_table(impressions, keys, catalogue_size, popularity),
        on=keys,
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    if "model_version" in keys:
        return table
    table = table.join(
        served_versions(impressions, keys),
        on=keys,
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    return table.select(*keys, "model_versions", pl.exclude(*keys, "model_versions"))


def arms_frame(rows: Sequence[dict[str, object]] = ()) -> pl.DataFrame:
    """experiment, arm, weight (and optional control) rows as the frame the tests take."""
    schema = {"experiment": pl.Utf8, "arm": pl.Utf8, "weight": pl.Float64, "control": pl.Boolean}
    return pl.DataFrame(list(rows), schema=schema)


def control_arm(experiment: str, arms: pl.DataFrame, present: Sequence[str]) -> str | None:
    """The experiment's control: the arm flagged `control` in `arms`, else one named
    "control" or "champion", else the first arm `arms` lists; None when none is known."""
    listed = arms.filter(pl.col("experiment") == experiment)
    if "control" in listed.columns:
        flagged = listed.filter(pl.col("control").fill_null(False))["arm"].to_list()
        if flagged:
            return str(flagged[0])
    names = [*listed["arm"].to_list(), *present]
    for name in CONTROL_NAMES:
        if name in names:
            return name
    return str(listed["arm"][0]) if listed.height else None


def arm_tests(
    by_arm: pl.DataFrame, arms: pl.DataFrame, metrics: Sequence[str] = TESTED
) -> pl.DataFrame:
    """Each arm against its experiment's control: difference, its 95% interval, p-value.

    Arms are disjoint sets of users, so the difference's variance is the sum of the two
    delta-method variances; the p-value is the two-sided z-test's. Rows without a standard
    error (fewer than two users in either arm) carry null intervals and p-values.
    """
    rows: list[dict[str, object]] = []
    experiments = by_arm.filter(pl.col("experiment").is_not_null())
    for (experiment,), table in experiments.partition_by("experiment", as_dict=True).items():
        present = table["arm"].drop_nulls().to_list()
        control = control_arm(str(experiment), arms, present)
        base = table.filter(pl.col("arm") == control)
        if control is None or base.is_empty():
            continue
        reference = base.row(0, named=True)
        for arm in table.filter(pl.col("arm") != control).iter_rows(named=True):
            for metric in metrics:
                rows.append(
                    {
                        "experiment": experiment,
                        "arm": arm["arm"],
                        "control": control,
                        "metric": metric,
                        **difference(
                            arm[metric],
                            arm[f"{metric}_se"],
                            reference[metric],
                            reference[f"{metric}_se"],
                        ),
                    }
                )
    return pl.DataFrame(rows, schema=TEST_SCHEMA).sort("experiment", "arm", "metric")


def difference(
    value: float | None, se: float | None, control: float | None, control_se: float | None
) -> dict[str, float | None]:
    """value − control with its normal 95% interval and two-sided p-value (independent arms)."""
    if value is None or control is None:
        diff = None
    else:
        diff = value - control
    result: dict[str, float | None] = {
        "control_value": control,
        "arm_value": value,
        "diff": diff,
        "low": None,
        "high": None,
        "p_value": None,
    }
    if diff is None or se is None or control_se is None:
        return result
    spread = math.sqrt(se**2 + control_se**2)
    result["low"], result["high"] = diff - Z * spread, diff + Z * spread
    if spread > 0:
        result["p_value"] = float(2 * stats.norm.sf(abs(diff) / spread))
    else:
        result["p_value"] = 1.0 if diff == 0 else 0.0
    return result


def sample_ratio(
    impressions: pl.DataFrame, arms: pl.DataFrame, alpha: float = SRM_ALPHA
) -> pl.DataFrame:
    """Per experiment and arm: distinct users seen, the users its weight expects, and the
    experiment's chi-square test of the counts against the weights.

    An arm seen in the impressions but missing from `arms` (or weighted 0) is a mismatch by
    itself. An experiment without any weight in `arms` cannot be tested: its p-value and
    `mismatch` are null. `users_in_several_arms` counts users seen in more than one arm of
    the experiment, which deterministic assignment never does.
    """
    check_columns(impressions)
    served = impressions.filter(pl.col("experiment").is_not_null())
    observed = served.group_by("experiment", "arm").agg(
        users=pl.col("user_id").n_unique().cast(pl.Int64)
    )
    several = (
        served.group_by("experiment", "user_id")
        .agg(n=pl.col("arm").n_unique())
        .group_by("experiment")
        .agg(users_in_several_arms=(pl.col("n") > 1).sum().cast(pl.Int64))
    )
    weights = arms.select("experiment", "arm", pl.col("weight").cast(pl.Float64))
    table = (
        weights.join(observed, on=["experiment", "arm"], how="full", coalesce=True)
        .with_columns(pl.col("users").fill_null(0))
        .join(several, on="experiment", how="left")
        .with_columns(pl.col("users_in_several_arms").fill_null(0))
    )
    frames = [
        _chi_square(group, alpha)
        for _, group in table.partition_by("experiment", as_dict=True).items()
    ]
    if not frames:
        return pl.DataFrame(schema=SRM_SCHEMA)
    return pl.concat([f.select(list(SRM_SCHEMA)).cast(pl.Schema(SRM_SCHEMA)) for f in frames]).sort(
        "experiment", "arm"
    )


def _chi_square(group: pl.DataFrame, alpha: float) -> pl.DataFrame:
    """One experiment's rows with expected users, chi2, p_value and mismatch filled in."""
    users = group["users"].cast(pl.Float64).to_numpy()
    weights = group["weight"].fill_null(0.0).to_numpy()
    total = float(users.sum())
    chi2: float | None = None
    p_value: float | None = None
    mismatch: bool | None = None  # None: no weights known, the experiment cannot be tested
    expected = None
    if weights.sum() > 0:
        expected = total * weights / weights.sum()
        kept = weights > 0
        if total == 0:
            mismatch = False  # nothing served in the window: nothing to test
        elif (users[~kept] > 0).any():
            chi2, p_value, mismatch = math.inf, 0.0, True  # users where the weights send none
        elif kept.sum() < 2:
            chi2, p_value, mismatch = 0.0, 1.0, False  # one weighted arm: any count fits
        else:
            result = stats.chisquare(users[kept], f_exp=expected[kept])
            chi2, p_value = float(result.statistic), float(result.pvalue)
            mismatch = p_value < alpha
    return group.with_columns(
        expected_users=pl.Series(expected, dtype=pl.Float64)
        if expected is not None
        else pl.lit(None, dtype=pl.Float64),
        chi2=pl.lit(chi2, dtype=pl.Float64),
        p_value=pl.lit(p_value, dtype=pl.Float64),
        mismatch=pl.lit(mismatch, dtype=pl.Boolean),
    )


def online_tables(
    impressions: pl.DataFrame,
    arms: pl.DataFrame,
    *,
    catalogue_size: int,
    popularity: pl.DataFrame,
) -> OnlineTables:
    """Every online table of one window of impressions (see the module docstring)."""
    by_arm = summary_table(impressions, ARM_KEYS, catalogue_size, popularity)
    return OnlineTables(
        by_arm=by_arm,
        by_version=summary_table(impressions, VERSION_KEYS, catalogue_size, popularity),
        arm_positions=position_table(impressions, ARM_KEYS),
        version_positions=position_table(impressions, VERSION_KEYS),
        tests=arm_tests(by_arm, arms),
        sample_ratio=sample_ratio(impressions, arms),
    )
