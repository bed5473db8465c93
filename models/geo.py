"""Geo-nearby candidates: upcoming events close to where the user lives.

Needs no interaction history at all, so it is one of the two ways (with content) a
brand-new event reaches users, and it gives new users something local beyond the metro
bestsellers. Scores decay with haversine distance from the user's home, `exp(-km / scale)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import polars as pl

from features.geo import haversine_km
from models.base import RECS_SCHEMA, CandidateModel, NotFittedError, ranked, top_k_block

# Popularity only breaks ties (several events at one venue share a distance); scaled this
# small it can never reorder events whose distances differ by more than a few metres.
TIE_BREAK = 1e-6


# Users scored per dense block: 4096 x 5000 events of float64 is 160 MB, whatever the metro size.
class GeoModel(CandidateModel):
    """Candidates of the user's metro by distance from home; ties go to the popular event.

    `users_home`: user_id, home_lat, home_lon. `venues_of_events`: event_id, latitude,
    longitude. Users without a home and events without coordinates are left out rather than
    guessed: a wrong location is worse than no geo candidate (popularity covers them).
    """

    name: ClassVar[str] = "geo_nearby"

    def __init__(
        self, users_home: pl.DataFrame, venues_of_events: pl.DataFrame, scale_km: float = 5.0
    ) -> None:
        if scale_km <= 0:
            raise ValueError(f"scale_km must be positive, got {scale_km}")
        self.scale_km = scale_km
        self.homes = (
            users_home.select(
                pl.col("user_id").cast(pl.Int64),
                pl.col("home_lat").cast(pl.Float64),
                pl.col("home_lon").cast(pl.Float64),
            )
            .drop_nulls()
            .unique("user_id", keep="last")
            .sort("user_id")
        )
        self.venues = (
            venues_of_events.select(
                pl.col("event_id").cast(pl.Utf8),
                pl.col("latitude").cast(pl.Float64),
                pl.col("longitude").cast(pl.Float64),
            )
            .drop_nulls()
            .unique("event_id", keep="last")
            .sort("event_id")
        )
        self._popularity: pl.DataFrame | None = None

    @property
    def popularity(self) -> pl.DataFrame:
        if self._popularity is None:
            raise NotFittedError("GeoModel is not fitted")
        return self._popularity

    def fit(self, interactions: pl.DataFrame) -> Self:
        """Only per-event popularity (positive weight summed, 0..1) is learnt, for tie-breaks."""
        pop = interactions.group_by("event_id").agg(
            popularity=pl.col("weight").clip(lower_bound=0).sum().cast(pl.Float64)
        )
        top = pop["popularity"].max() if pop.height else None
        scale = float(top) if isinstance(top, int | float) and top > 0 else 1.0
        self._popularity = pop.select(
            pl.col("event_id").cast(pl.Utf8), pl.col("popularity") / scale
        ).sort("event_id")
        return self

    def recommend(
        self, *, users: pl.DataFrame, candidates: pl.DataFrame, exclude: pl.DataFrame, n: int
    ) -> pl.DataFrame:
        """Top `n` located candidates of the user's metro, nearest first.

        Scored metro by metro, `USER_CHUNK` users at a time, so the dense distance block stays
        (chunk x events in metro).
        """
        located_users = users.select("user_id", "metro").join(self.homes, on="user_id")
        located_events = (
            candidates.select("event_id", "metro")
            .join(self.venues, on="event_id")
            .join(self.popularity, on="event_id", how="left")
            .with_columns(pl.col("popularity").fill_null(0.0))
        )
        parts: list[pl.DataFrame] = []
        for (metro,), metro_users in located_users.group_by("metro"):
            events = located_events.filter(pl.col("metro") == metro)
            if events.height == 0:
                continue
            km = haversine_km(
                metro_users["home_lat"].to_numpy()[:, None],
                metro_users["home_lon"].to_numpy()[:, None],
                events["latitude"].to_numpy()[None, :],
                events["longitude"].to_numpy()[None, :],
            )
            scores = np.exp(-km / self.scale_km) + TIE_BREAK * events["popularity"].to_numpy()
            parts.append(
                top_k_block(scores, metro_users["user_id"], events["event_id"], exclude, n)
            )
        if not parts:
            return pl.DataFrame(schema=RECS_SCHEMA)
        return ranked(pl.concat(parts), n)

    def save(self, path: Path) -> None:
        """One parquet file: homes, venues and popularity stacked, told apart by `part`."""
        parts = [
            self.homes.with_columns(part=pl.lit("home")),
            self.venues.join(self.popularity, on="event_id", how="full", coalesce=True)
            .with_columns(part=pl.lit("event"))
            .sort("event_id"),
        ]
        pl.concat(parts, how="diagonal").with_columns(scale_km=pl.lit(self.scale_km)).write_parquet(
            path
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        data = pl.read_parquet(path)
        events = data.filter(pl.col("part") == "event")
        model = cls(
            users_home=data.filter(pl.col("part") == "home"),
            venues_of_events=events.filter(pl.col("latitude").is_not_null()),
            scale_km=float(data["scale_km"][0]) if data.height else 5.0,
        )
        model._popularity = (
            events.filter(pl.col("popularity").is_not_null())
            .select("event_id", "popularity")
            .sort("event_id")
        )
        return model
