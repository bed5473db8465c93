"""Bootstrap intervals over users, shared by every policy of one comparison.

Why one resample for all policies: each policy is scored on the same users, so drawing the
same users for every policy (common random numbers over the resampling) keeps the
between-user variation out of the differences. The paired interval of (challenger − champion)
is what the champion gate reads; two separate intervals that overlap say nothing about it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

ALPHA = 0.05
N_BOOTSTRAP = 1000

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Interval:
    """A mean with its percentile bootstrap interval at level 1 − alpha."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def resample_indices(
    n_units: int, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> npt.NDArray[np.int64]:
    """(n_bootstrap, n_units) unit indices drawn with replacement; reuse them across policies."""
    if n_units <= 0:
        raise ValueError("nothing to resample: no units")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_units, size=(n_bootstrap, n_units))


def mean_interval(
    per_unit: FloatArray, indices: npt.NDArray[np.int64], alpha: float = ALPHA
) -> Interval:
    """Mean of `per_unit` and the percentile interval of its resampled means."""
    values = np.asarray(per_unit, dtype=np.float64)
    if values.ndim != 1 or values.size != indices.shape[1]:
        raise ValueError(f"per_unit has {values.size} values, the resample {indices.shape[1]}")
    means = values[indices].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(values.mean()), float(low), float(high))


def paired_difference(
    challenger: FloatArray,
    champion: FloatArray,
    indices: npt.NDArray[np.int64],
    alpha: float = ALPHA,
) -> Interval:
    """Mean of (challenger − champion) per unit, with its paired bootstrap interval."""
    diff = np.asarray(challenger, dtype=np.float64) - np.asarray(champion, dtype=np.float64)
    return mean_interval(diff, indices, alpha)


def policy_table(
    outcomes: dict[str, dict[str, FloatArray]],
    *,
    value: str = "value",
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    alpha: float = ALPHA,
) -> pl.DataFrame:
    """One row per policy: `value` with its interval (`low`, `high`), then every other
    outcome's mean, best value first. Every policy is resampled over the same users."""
    if not outcomes:
        raise ValueError("no policies to tabulate")
    sizes = {name: columns[value].size for name, columns in outcomes.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"policies were scored on different users: {sizes}")
    indices = resample_indices(next(iter(sizes.values())), n_bootstrap, seed)
    rows = []
    for name, columns in outcomes.items():
        interval = mean_interval(columns[value], indices, alpha)
        others = {k: float(np.mean(v)) for k, v in columns.items() if k != value}
        rows.append(
            {
                "model": name,
                value: interval.value,
                "low": interval.low,
                "high": interval.high,
                **others,
            }
        )
    return pl.DataFrame(rows).sort(value, descending=True)
