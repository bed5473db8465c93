"""The warehouse tables every training, evaluation and publishing step reads, as one value.

Six frames travel together through every step (swipes, RSVPs, events, venues, users, the friend
graph); passing them as one frozen value keeps signatures short and makes "as of" cuts one call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import polars as pl

UTC_US = pl.Datetime("us", "UTC")


def in_utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Every timezone-aware column in "UTC": DuckDB hands them back as "Etc/UTC", and Polars
    refuses to compare or join the two spellings of the same zone."""
    aware = [
        name
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
    ]
    return frame.with_columns(pl.col(aware).dt.convert_time_zone("UTC")) if aware else frame


@dataclass(frozen=True)
class AppTables:
    """Behaviour (swipes, attendance), catalogue (events, venues) and people (users, friends)."""

    swipes: pl.DataFrame
    attendance: pl.DataFrame
    events: pl.DataFrame
    venues: pl.DataFrame
    users: pl.DataFrame
    friendships: pl.DataFrame

    @classmethod
    def of(
        cls,
        *,
        swipes: pl.DataFrame,
        attendance: pl.DataFrame,
        events: pl.DataFrame,
        venues: pl.DataFrame,
        users: pl.DataFrame,
        friendships: pl.DataFrame,
    ) -> AppTables:
        """The tables with every timestamp in UTC, whatever zone name the store returned."""
        return cls(
            swipes=in_utc(swipes),
            attendance=in_utc(attendance),
            events=in_utc(events),
            venues=venues,
            users=in_utc(users),
            friendships=friendships,
        )

    def before(self, end: datetime) -> AppTables:
        """Only the behaviour strictly before `end`; the catalogue and people stay whole."""
        limit = pl.lit(end).cast(UTC_US)
        return replace(
            self,
            swipes=self.swipes.filter(pl.col("created_at").cast(UTC_US) < limit),
            attendance=self.attendance.filter(pl.col("updated_at").cast(UTC_US) < limit),
        )
