"""The interface every candidate generator implements (after implicit's `RecommenderBase`).

Frames at the boundary keep models swappable and testable with hand-made tables:
- `fit(interactions)`: user_id, event_id, weight (positive pairs carry the signal)
- `recommend(users, candidates, exclude, n)`: users (user_id, metro), candidates (event_id,
  metro), exclude (user_id, event_id) -> user_id, rank (1..n), event_id, score
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt
import polars as pl

RECS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "rank": pl.Int32(),
    "event_id": pl.Utf8(),
    "score": pl.Float64(),
}


class ModelFitError(RuntimeError):
    """Training produced something unusable (NaN factors, no data); fail, never publish it."""


class NotFittedError(RuntimeError):
    """`recommend` or `save` was called before `fit` or `load`."""


class CandidateModel(ABC):
    name: ClassVar[str]

    @abstractmethod
    def fit(self, interactions: pl.DataFrame) -> Self: ...

    @abstractmethod
    def recommend(
        self, *, users: pl.DataFrame, candidates: pl.DataFrame, exclude: pl.DataFrame, n: int
    ) -> pl.DataFrame: ...

    @abstractmethod
    def save(self, path: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Self: ...


def ranked(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """Top `n` rows per user by score (ties broken by event id), ranks from 1."""
    return (
        frame.lazy()
        .sort(["user_id", "score", "event_id"], descending=[False, True, False])
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32))
        .filter(pl.col("rank") <= n)
        .select(list(RECS_SCHEMA))
        .collect()
        .cast(RECS_SCHEMA)  # type: ignore[arg-type]
    )


# Users scored per block, so a (users x events) matrix stays bounded in memory.
USER_CHUNK = 4096


def top_k_block(
    scores: npt.NDArray[np.float64],
    user_ids: pl.Series,
    event_ids: pl.Series,
    exclude: pl.DataFrame,
    n: int,
) -> pl.DataFrame:
    """The `n` best columns of each row of a (users x events) score block, exclusions removed.

    Shared by the dense per-metro generators (ALS, geo, content): excluded pairs are set to
    -inf and dropped after the partition.
    Returns user_id, event_id, score (unsorted; `ranked` orders and numbers them).
    """
    rows = pl.DataFrame({"user_id": user_ids}).with_row_index("row")
    cols = pl.DataFrame({"event_id": event_ids}).with_row_index("col")
    hits = exclude.select("user_id", "event_id").join(rows, on="user_id").join(cols, on="event_id")
    scores[hits["row"].to_numpy(), hits["col"].to_numpy()] = -np.inf
    k = min(n, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    e_ids = event_ids.to_numpy().astype(str)
    frame = pl.DataFrame(
        {
            "user_id": np.repeat(user_ids.to_numpy(), k),
            "event_id": e_ids[top.ravel()],
            "score": np.take_along_axis(scores, top, axis=1).ravel().astype(np.float64),
        },
        schema={"user_id": pl.Int64, "event_id": pl.Utf8, "score": pl.Float64},
    )
    return frame.filter(pl.col("score").is_finite())
