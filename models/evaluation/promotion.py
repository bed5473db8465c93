"""Whether an experiment arm may become the champion: the decision of `godo experiment promote`.

Two conditions, both on the online tables of the experiment's window
(`models.evaluation.online`, the same tables the `online_metrics` asset writes):

- the arm's **going-rate gain over control** has its 95% lower bound above 0. "Going" is
  what the app is for (a like costs nothing, an RSVP is a plan), and the bound, not the point
  estimate, guards against promoting noise: the interval is the user-clustered delta-method
  one of the arm test, so a handful of eager users cannot make it look certain;
- the **sample-ratio check** passes: a mismatch means assignment or impression logging is
  broken for the experiment, so the comparison is biased in an unknown direction, whatever its
  interval says.

Pure: tables in, a verdict out; the command does the reading, the registry and the stop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import polars as pl

from models.evaluation.online import OnlineTables

PROMOTION_METRIC: Final = "going_rate"


@dataclass(frozen=True)
class PromotionVerdict:
    """What the tables say about promoting `arm`; `reason` is the sentence shown either way."""

    experiment: str
    arm: str
    promote: bool
    reason: str
    control: str | None = None
    gain: float | None = None
    low: float | None = None
    high: float | None = None
    srm_p_value: float | None = None

    def gain_text(self) -> str:
        """`+0.0123 (95% interval +0.0040 to +0.0206)`, or what is missing."""
        if self.gain is None:
            return "no gain measured"
        if self.low is None or self.high is None:
            return f"{self.gain:+.4f} (no interval: too few users)"
        return f"{self.gain:+.4f} (95% interval {self.low:+.4f} to {self.high:+.4f})"


def promotion_verdict(
    tables: OnlineTables, experiment: str, arm: str, metric: str = PROMOTION_METRIC
) -> PromotionVerdict:
    """Promote `arm` of `experiment` only when its `metric` gain over control has its lower
    bound above 0 and the experiment's users per arm follow the weights."""
    srm = tables.sample_ratio.filter(pl.col("experiment") == experiment)
    if srm.is_empty() or int(srm["users"].sum()) == 0:
        return PromotionVerdict(
            experiment, arm, False, f"experiment {experiment!r} logged no impressions in its window"
        )
    p_value = srm["p_value"][0]
    test = tables.tests.filter(
        (pl.col("experiment") == experiment) & (pl.col("arm") == arm) & (pl.col("metric") == metric)
    )
    if test.is_empty():
        controls = tables.tests.filter(pl.col("experiment") == experiment)["control"].unique()
        why = (
            f"arm {arm!r} is the control of {experiment!r}: there is nothing to compare it with"
            if arm in controls.to_list()
            else f"arm {arm!r} of {experiment!r} has no impressions in the window (or its "
            "control has none)"
        )
        return PromotionVerdict(experiment, arm, False, why, srm_p_value=p_value)
    row = test.row(0, named=True)
    verdict = PromotionVerdict(
        experiment,
        arm,
        False,
        "",
        control=row["control"],
        gain=row["diff"],
        low=row["low"],
        high=row["high"],
        srm_p_value=p_value,
    )
    gain = f"{metric.replace('_', '-')} gain over {row['control']!r}: {verdict.gain_text()}"
    mismatch = srm["mismatch"][0]
    if mismatch is None or mismatch:
        users = ", ".join(
            f"{r['arm']} {r['users']} (expected {r['expected_users'] or 0:.0f})"
            for r in srm.iter_rows(named=True)
        )
        problem = (
            "no arm weights to test the sample ratio against"
            if mismatch is None
            else f"sample-ratio mismatch (chi-square p = {p_value:.2g}; users {users}): "
            "assignment or impression logging is broken, so the comparison cannot be trusted"
        )
        return replace(verdict, reason=f"{problem}; {gain}")
    if verdict.low is None or verdict.low <= 0:
        return replace(verdict, reason=f"{gain}: its lower bound is not above 0")
    reason = f"{gain}; users per arm follow the weights (p = {p_value:.2g})"
    return replace(verdict, promote=True, reason=reason)
