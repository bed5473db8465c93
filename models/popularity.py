"""Popularity by metro: the baseline every personalised model must beat, and the cold start."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

import polars as pl

from models.base import CandidateModel, NotFittedError, ranked


class PopularityModel(CandidateModel):
    """Scores an event by the summed interaction weight it received from everyone."""

    name: ClassVar[str] = "popularity"

    def __init__(self) -> None:
        self._scores: pl.DataFrame | None = None

    @property
    def scores(self) -> pl.DataFrame:
        if self._scores is None:
            raise NotFittedError("PopularityModel is not fitted")
        return self._scores

    def fit(self, interactions: pl.DataFrame) -> Self:
        self._scores = (
            interactions.lazy()
            .group_by("event_id")
            .agg(score=pl.col("weight").clip(lower_bound=0).sum().cast(pl.Float64))
            .sort("event_id")
            .collect()
        )
        return self

    def by_metro(self, candidates: pl.DataFrame, n: int) -> pl.DataFrame:
        """The top `n` candidates of each metro: metro, rank, event_id, score."""
        return (
            self._scored(candidates)
            .sort(["metro", "score", "event_id"], descending=[False, True, False])
            .with_columns(rank=pl.int_range(1, pl.len() + 1).over("metro").cast(pl.Int32))
            .filter(pl.col("rank") <= n)
            .select("metro", "rank", "event_id", "score")
        )

    def overall(self, candidates: pl.DataFrame, n: int) -> pl.DataFrame:
        """The top `n` candidates anywhere: the list for users the run knows nothing about."""
        return (
            self._scored(candidates)
            .sort(["score", "event_id"], descending=[True, False])
            .head(n)
            .with_columns(rank=pl.int_range(1, pl.len() + 1).cast(pl.Int32))
            .select("rank", "event_id", "score")
        )

    def recommend(
        self, *, users: pl.DataFrame, candidates: pl.DataFrame, exclude: pl.DataFrame, n: int
    ) -> pl.DataFrame:
        per_user_seen = exclude.group_by("user_id").len().select(pl.col("len").max()).item()
        shortlist = self.by_metro(candidates, n + int(per_user_seen or 0))
        per_user = (
            users.select("user_id", "metro")
            .join(shortlist, on="metro", how="inner")
            .join(exclude.select("user_id", "event_id"), on=["user_id", "event_id"], how="anti")
        )
        return ranked(per_user, n)

    def _scored(self, candidates: pl.DataFrame) -> pl.DataFrame:
        return (
            candidates.select("event_id", "metro")
            .join(self.scores, on="event_id", how="left")
            .with_columns(pl.col("score").fill_null(0.0))
        )

    def save(self, path: Path) -> None:
        self.scores.write_parquet(path)

    @classmethod
    def load(cls, path: Path) -> Self:
        model = cls()
        model._scores = pl.read_parquet(path)
        return model
