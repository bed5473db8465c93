"""Interaction frames whose best model is known by construction (item-item models, tuning)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pytest

SCHEMA = {"user_id": pl.Int64, "event_id": pl.Utf8}

PairsFrame = Callable[[list[tuple[int, str]]], pl.DataFrame]


def _pairs_frame(rows: list[tuple[int, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row").with_columns(weight=pl.lit(1.0))


@pytest.fixture(scope="session")
def pairs_frame() -> PairsFrame:
    """user_id, event_id, weight 1.0 from (user, event) pairs (a fixture, so test modules
    need not import this file, which mypy would then see under two names)."""
    return _pairs_frame


@pytest.fixture(scope="session")
def bundles() -> pl.DataFrame:
    """300 users, each owning 2 whole bundles of 4 events (of 30) plus, for 90%, one
    blockbuster: knowing one event of a bundle tells the rest, so a near-exact regression
    (small l2) wins and co-occurrence counts, pulled towards the blockbuster, lose."""
    rng = np.random.default_rng(0)
    rows: list[tuple[int, str]] = []
    for user in range(300):
        for bundle in rng.choice(30, 2, replace=False):
            rows += [(user, f"b{bundle:02d}_{i}") for i in range(4)]
        if rng.random() < 0.9:
            rows.append((user, "hit"))
    return _pairs_frame(rows)


@pytest.fixture(scope="session")
def popular() -> pl.DataFrame:
    """300 users, 8 events each drawn independently from a Zipf-like popularity over 60:
    there is nothing but popularity to learn, so a heavily regularised EASE (large l2, close
    to co-occurrence counts) wins and a near-exact regression fits noise."""
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, 61)
    p /= p.sum()
    rows = [
        (user, f"i{item:02d}")
        for user in range(300)
        for item in rng.choice(60, 8, replace=False, p=p)
    ]
    return _pairs_frame(rows)
