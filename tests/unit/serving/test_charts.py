"""The admin chart's geometry: scale, gaps and intervals (no browser needed)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from serving.charts import Value, line_chart, nice_ceiling

DAYS = [date(2026, 1, 1) + timedelta(days=i) for i in range(4)]


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0.0, 0.01), (0.0123, 0.02), (0.2, 0.2), (0.21, 0.25), (0.26, 0.5), (0.51, 1.0)],
)
def test_the_axis_ends_on_a_round_number_above_every_value(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_a_day_without_a_value_breaks_the_line_and_bounds_become_whiskers() -> None:
    chart = line_chart(
        DAYS,
        {
            "control": {DAYS[0]: Value(0.2, 0.1, 0.3), DAYS[1]: Value(0.25), DAYS[3]: Value(0.1)},
            "treatment": {},
        },
    )
    control, treatment = chart.series
    assert [len(s) for s in control.segments] == [2, 1]  # DAYS[2] missing: two runs
    assert treatment.segments == []
    first = control.segments[0][0]
    assert first.x == chart.left and control.segments[1][0].x == chart.right
    # 0.3 is the highest bound: the axis runs to 0.5 and 0.2 sits at 40% of its height.
    assert chart.y_ticks[-1].label == "50.0%"
    height = chart.bottom - chart.top
    assert first.y == pytest.approx(chart.bottom - 0.4 * height, abs=0.01)
    assert first.low_y is not None and first.high_y is not None and first.high_y < first.low_y
    assert control.segments[0][1].low_y is None  # no interval with fewer than two users
    assert first.title == "control, 2026-01-01: 20.00% [10.00%, 30.00%]"
