"""A benchmark's targets: a figure, a bound it must meet, and by how much it met or missed.

Shared by `bench.serve` and `bench.publish` so both print and report targets the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Target:
    """`value` must be `op` `bound` (`>=`: at least, `<=`: at most), in `unit`."""

    name: str
    value: float
    op: Literal[">=", "<="]
    bound: float
    unit: str = "x"

    @property
    def margin(self) -> float:
        """Signed distance to the bound, positive on the right side (NaN when unmeasured)."""
        return self.value - self.bound if self.op == ">=" else self.bound - self.value

    @property
    def met(self) -> bool:
        return not math.isnan(self.value) and self.margin >= 0

    def describe(self) -> str:
        """`0.42x   (target >= 0.4x: met, 0.02x to spare)`; a miss says how far off it is."""
        shown = f"{self.value:.2f}{self.unit}"
        target = f"target {self.op} {self.bound:g}{self.unit}"
        if math.isnan(self.value):
            return f"{'n/a':>8}   ({target}: not measured)"
        gap = f"{abs(self.margin):.2f}{self.unit}"
        if self.met:
            return f"{shown:>8}   ({target}: met, {gap} to spare)"
        if self.op == ">=":
            share = ratio(self.value, self.bound)
            return f"{shown:>8}   ({target}: missed, {gap} short, at {share:.0%} of it)"
        times = ratio(self.value, self.bound)
        return f"{shown:>8}   ({target}: missed, {gap} over, {times:.1f}x the bound)"

    def figures(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": figure(self.value, 4),
            "op": self.op,
            "bound": self.bound,
            "unit": self.unit,
            "met": self.met,
            "margin": figure(self.margin, 4),
        }


def figure(value: float, digits: int) -> float | None:
    """`value` rounded for a JSON report; None when it is NaN (which JSON has no word for)."""
    return None if math.isnan(value) else round(value, digits)


def ratio(numerator: float, denominator: float) -> float:
    """`numerator / denominator`, NaN when the denominator is zero or either is NaN."""
    if not denominator or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


def report(targets: Sequence[Target]) -> list[str]:
    """One line per target, names aligned."""
    width = max((len(t.name) for t in targets), default=0)
    return [f"  {t.name:<{width}}  {t.describe()}" for t in targets]
