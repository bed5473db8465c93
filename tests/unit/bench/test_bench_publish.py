"""bench.publish: the psql \\copy it times writes exactly what publish_run COPYs."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from bench.publish import (
    COPY_COLUMNS,
    copy_frame_of,
    make_recs,
    psql_copy_command,
    psql_seconds,
)
from store.publish import RECOMMENDATION_COLUMNS


def test_copy_frame_holds_publish_runs_columns_with_the_run_id() -> None:
    recs = make_recs(2, 3, ["ev0", "ev1", "ev2", "ev3"])
    frame = copy_frame_of(recs, "run-x")
    assert frame.columns == [*RECOMMENDATION_COLUMNS, "run_id"] == COPY_COLUMNS
    assert frame.height == 6
    assert frame["propensity"].to_list() == [1.0] * 6  # filled as publish_run fills it
    assert frame["run_id"].unique().to_list() == ["run-x"]


def test_copy_frame_keeps_given_propensities() -> None:
    recs = make_recs(1, 2, ["ev0", "ev1"]).with_columns(propensity=pl.Series([0.5, 0.25]))
    assert copy_frame_of(recs, "r")["propensity"].to_list() == [0.5, 0.25]


def test_psql_command_times_one_copy_and_stops_on_error() -> None:
    command = psql_copy_command(
        "/usr/bin/psql", "postgresql://u@h/db", ["a", "b"], Path("/tmp/it's.csv")
    )
    assert command[:7] == [
        "/usr/bin/psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        "postgresql://u@h/db",
    ]
    assert command[7:9] == ["-c", "\\timing on"]
    assert command[9:] == [
        "-c",
        "\\copy recommendations(a, b) FROM '/tmp/it''s.csv' WITH (FORMAT csv, NULL '\\N')",
    ]


@pytest.mark.parametrize(
    ("output", "seconds"),
    [("Time: 20.036 ms\n", 0.020036), ("Time: 1234.567 ms (00:01.235)\n", 1.234567)],
)
def test_psql_timing_line(output: str, seconds: float) -> None:
    assert psql_seconds(output) == pytest.approx(seconds)


@pytest.mark.parametrize("output", ["", "Time: 1.0 ms\nTime: 2.0 ms\n"])
def test_psql_output_without_exactly_one_timing_is_refused(output: str) -> None:
    with pytest.raises(ValueError, match="one psql timing line"):
        psql_seconds(output)
