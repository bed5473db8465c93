"""Small helpers shared by the asset modules."""

from typing import Any

import dagster as dg
import polars as pl


def frame_output(frame: pl.DataFrame, **metadata: Any) -> dg.Output[pl.DataFrame]:
    """An output with the row count the UI and the demo report show."""
    return dg.Output(frame, metadata={"dagster/row_count": frame.height, **metadata})
