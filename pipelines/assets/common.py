"""Small helpers shared by the asset modules."""

from typing import Any

import dagster as dg
import polars as pl


def frame_output(frame: pl.DataFrame, **metadata: Any) -> dg.Output[pl.DataFrame]:
    """An output with the row count the UI and the demo report show."""
    return dg.Output(frame, metadata={"dagster/row_count": frame.height, **metadata})


def as_utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Every timezone-aware column in "UTC": DuckDB hands them back as "Etc/UTC", and Polars
    refuses to compare or join the two spellings of the same zone."""
    aware = [
        name
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
    ]
    return frame.with_columns(pl.col(aware).dt.convert_time_zone("UTC")) if aware else frame
