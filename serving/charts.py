"""Geometry of the admin pages' charts, drawn by the templates as inline SVG.

Why inline SVG computed here: the pages load nothing (their CSP allows no script and no
other origin), so a chart cannot come from a CDN or a JavaScript library; and computing
the coordinates in Python keeps the template to plain loops over numbers, which Jinja
escapes like any other value. A day without a value breaks the line (no interpolation
across a day an arm served nothing), and every point carries its 95% interval as a
whisker and a `<title>` tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

import polars as pl

# Colour-blind-safe (Okabe-Ito), in the order arms are listed; the control is listed first.
PALETTE: Final = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000")
WIDTH: Final = 640
HEIGHT: Final = 240
LEFT, RIGHT, TOP, BOTTOM = 56, 28, 12, 32


@dataclass(frozen=True)
class Value:
    """One day's rate with its interval (bounds None: fewer than two users)."""

    value: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    low_y: float | None
    high_y: float | None
    title: str


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    segments: list[list[Point]]  # runs of consecutive days with a value

    @property
    def points(self) -> list[Point]:
        return [point for segment in self.segments for point in segment]


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above `value` (0.01 for nothing to show)."""
    if value <= 0 or not math.isfinite(value):
        return 0.01
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        top = step * 10.0**exponent
        if top >= value * (1 - 1e-12):
            return top
    return 10.0 ** (exponent + 1)


def percent(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f}%"


def line_chart(
    days: Sequence[date],
    series: Mapping[str, Mapping[date, Value]],
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
    y_ticks: int = 4,
) -> LineChart:
    """A rate per day per series, on a y axis from 0 to a round number above every bound."""
    left, right, top, bottom = LEFT, width - RIGHT, TOP, height - BOTTOM
    highest = max(
        (
            max(v.value, v.high if v.high is not None else v.value)
            for values in series.values()
            for v in values.values()
        ),
        default=0.0,
    )
    ceiling = nice_ceiling(highest)
    span = max(len(days) - 1, 1)

    def x_of(index: int) -> float:
        if len(days) == 1:
            return (left + right) / 2
        return left + (right - left) * index / span

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * min(max(value, 0.0), ceiling) / ceiling

    drawn: list[Series] = []
    for number, (name, values) in enumerate(series.items()):
        segments: list[list[Point]] = []
        current: list[Point] = []
        for index, day in enumerate(days):
            v = values.get(day)
            if v is None or not math.isfinite(v.value):
                if current:
                    segments.append(current)
                    current = []
                continue
            interval = (
                f" [{percent(v.low, 2)}, {percent(v.high, 2)}]"
                if v.low is not None and v.high is not None
                else ""
            )
            current.append(
                Point(
                    x=round(x_of(index), 2),
                    y=round(y_of(v.value), 2),
                    low_y=None if v.low is None else round(y_of(v.low), 2),
                    high_y=None if v.high is None else round(y_of(v.high), 2),
                    title=f"{name}, {day.isoformat()}: {percent(v.value, 2)}{interval}",
                )
            )
        if current:
            segments.append(current)
        drawn.append(Series(name, PALETTE[number % len(PALETTE)], segments))
    every = max(1, math.ceil(len(days) / 8))  # at most about 8 day labels
    return LineChart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        series=drawn,
        x_ticks=[
            Tick(round(x_of(i), 2), day.strftime("%b %d"))
            for i, day in enumerate(days)
            if i % every == 0
        ],
        y_ticks=[
            Tick(round(y_of(ceiling * k / y_ticks), 2), percent(ceiling * k / y_ticks))
            for k in range(y_ticks + 1)
        ],
    )


def daily_rates_chart(
    daily: pl.DataFrame, arms: Sequence[str], days: Sequence[date], metric: str
) -> LineChart:
    """One series per arm (in `arms`' order) of `metric` per day, from `rate_table` rows
    (columns day, arm, `metric`, `metric`_low, `metric`_high)."""
    series: dict[str, dict[date, Value]] = {arm: {} for arm in arms}
    for row in daily.iter_rows(named=True):
        value = row[metric]
        if row["arm"] not in series or value is None:
            continue
        series[row["arm"]][row["day"]] = Value(value, row[f"{metric}_low"], row[f"{metric}_high"])
    return line_chart(days, series)
