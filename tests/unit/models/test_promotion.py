"""The promotion verdict on hand-made online tables: every way it refuses, and the pass."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from models.evaluation.online import online_tables
from models.evaluation.promotion import PromotionVerdict, promotion_verdict
from tests.unit.conftest import HALF_AND_HALF, ONLINE_T0, OUTCOME_SCHEMA

T0 = ONLINE_T0
SCHEMA = OUTCOME_SCHEMA
ARMS = HALF_AND_HALF


def served(users: dict[str, range], going: dict[str, int]) -> pl.DataFrame:
    """Ten cards per user; the first `going[arm] + user % 2` of them end in "going"."""
    rows = []
    for arm, ids in users.items():
        for user in ids:
            for rank in range(1, 11):
                yes = rank <= going[arm] + user % 2
                at = T0 + timedelta(seconds=rank)
                rows.append((user, f"e{rank}", rank, at, arm, "exp", arm, "like", yes))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def verdict(frame: pl.DataFrame, arm: str = "treat") -> PromotionVerdict:
    tables = online_tables(frame, ARMS, catalogue_size=10, popularity=pl.DataFrame())
    return promotion_verdict(tables, "exp", arm)


def test_a_clear_going_gain_with_a_fair_split_is_promoted() -> None:
    result = verdict(
        served({"control": range(0, 50), "treat": range(50, 100)}, {"control": 1, "treat": 3})
    )
    assert result.promote and result.control == "control"
    assert result.gain == pytest.approx(0.2) and result.low > 0


@pytest.mark.parametrize(
    ("users", "going", "arm", "says"),
    [
        # No gain: the same going rates, the interval straddles 0.
        (
            {"control": range(0, 50), "treat": range(50, 100)},
            {"control": 2, "treat": 2},
            "treat",
            "lower bound is not above 0",
        ),
        # A gain, but 50 users against 15 on a 50/50 split.
        (
            {"control": range(0, 50), "treat": range(50, 65)},
            {"control": 1, "treat": 3},
            "treat",
            "sample-ratio mismatch",
        ),
        # The control has nothing to be compared with.
        (
            {"control": range(0, 50), "treat": range(50, 100)},
            {"control": 1, "treat": 3},
            "control",
            "is the control",
        ),
        # An arm nobody saw.
        ({"control": range(0, 50)}, {"control": 1}, "treat", "has no impressions"),
    ],
)
def test_the_verdict_refuses_and_says_why(
    users: dict[str, range], going: dict[str, int], arm: str, says: str
) -> None:
    result = verdict(served(users, going), arm)
    assert not result.promote
    assert says in result.reason


def test_nothing_served_is_refused() -> None:
    empty = pl.DataFrame(schema=SCHEMA)
    result = verdict(empty)
    assert not result.promote and "no impressions" in result.reason
