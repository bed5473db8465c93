"""Split protocols and interaction loading: leakage, shares, determinism, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from models.evaluation.protocols import (
    global_time_split,
    leave_one_out,
    load_interactions,
    random_split,
    time_split,
)

T0 = datetime(2024, 1, 1)


def interactions(seed: int = 0, n_users: int = 30, n_items: int = 50) -> pl.DataFrame:
    """User u has u % 12 + 1 interactions on distinct items at random times."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        items = rng.choice(n_items, size=user % 12 + 1, replace=False)
        for item in items:
            rows.append(
                {
                    "user_id": user,
                    "item_id": int(item),
                    "timestamp": T0 + timedelta(hours=int(rng.integers(0, 24 * 60))),
                    "weight": 1.0,
                }
            )
    return pl.DataFrame(rows)


DATA = interactions()


def per_user_counts(frame: pl.DataFrame) -> dict[int, int]:
    return dict(frame.group_by("user_id").agg(pl.len()).iter_rows())


def test_time_split_holds_out_each_users_latest_share() -> None:
    split = time_split(DATA, test_share=0.2)
    assert split.protocol == "time"
    assert split.train.height + split.test.height == DATA.height
    assert split.train.columns == DATA.columns
    leaks = (
        split.train.group_by("user_id")
        .agg(train_max=pl.col("timestamp").max())
        .join(split.test.group_by("user_id").agg(test_min=pl.col("timestamp").min()), on="user_id")
        .filter(pl.col("test_min") < pl.col("train_max"))
    )
    assert leaks.height == 0
    totals = per_user_counts(DATA)
    held = per_user_counts(split.test)
    for user, n in totals.items():
        expected = 0 if n == 1 else min(max(1, int(n * 0.2 + 0.5)), n - 1)
        assert held.get(user, 0) == expected, (user, n)
    # single-interaction users stay in train
    assert all(totals[u] > 1 for u in held)


def test_time_split_is_deterministic_and_order_independent() -> None:
    a = time_split(DATA)
    b = time_split(DATA.sample(fraction=1.0, shuffle=True, seed=3))
    assert a.test.equals(b.test)
    assert a.train.equals(b.train)


def test_random_split_shares_per_user_and_seed() -> None:
    split = random_split(DATA, test_share=0.25, seed=1)
    assert split.protocol == "random"
    totals = per_user_counts(DATA)
    held = per_user_counts(split.test)
    for user, n in totals.items():
        expected = 0 if n == 1 else min(max(1, int(n * 0.25 + 0.5)), n - 1)
        assert held.get(user, 0) == expected
    shuffled = DATA.sample(fraction=1.0, shuffle=True, seed=9)
    assert random_split(shuffled, 0.25, seed=1).test.equals(split.test)
    other = random_split(DATA, 0.25, seed=2).test
    assert not other.equals(split.test)  # a different seed draws differently
    # not simply the latest ones: some test row is earlier than its user's train max
    train_max = split.train.group_by("user_id").agg(m=pl.col("timestamp").max())
    assert split.test.join(train_max, on="user_id").filter(pl.col("timestamp") < pl.col("m")).height


def test_random_split_rejects_bad_share() -> None:
    with pytest.raises(ValueError, match="test_share"):
        random_split(DATA, test_share=1.0)


def test_leave_one_out_picks_the_latest() -> None:
    split = leave_one_out(DATA)
    assert split.negatives is None
    latest = (
        DATA.filter(pl.len().over("user_id") > 1)
        .sort(["user_id", "timestamp", "item_id"])
        .group_by("user_id", maintain_order=True)
        .last()
    )
    assert split.test.select("user_id", "item_id").equals(latest.select("user_id", "item_id"))
    assert per_user_counts(split.test) == dict.fromkeys(latest["user_id"], 1)


def test_leave_one_out_negatives_are_unseen_and_counted() -> None:
    split = leave_one_out(DATA, n_negatives=20, seed=5)
    negatives = split.negatives
    assert negatives is not None
    assert set(per_user_counts(negatives).values()) == {20}
    assert set(negatives["user_id"]) == set(split.test["user_id"])
    assert negatives.unique(["user_id", "item_id"]).height == negatives.height
    seen = DATA.select("user_id", "item_id")
    assert negatives.join(seen, on=["user_id", "item_id"], how="semi").height == 0
    again = leave_one_out(DATA, n_negatives=20, seed=5).negatives
    assert again is not None and again.equals(negatives)


def test_leave_one_out_negatives_for_dense_users_and_impossible_counts() -> None:
    # 3 items; user 1 saw 2 of them -> exactly one possible negative (the exact fallback path)
    dense = pl.DataFrame(
        {
            "user_id": [1, 1, 2, 2],
            "item_id": ["a", "b", "b", "c"],
            "timestamp": [T0, T0 + timedelta(1), T0, T0 + timedelta(1)],
        }
    )
    negatives = leave_one_out(dense, n_negatives=1).negatives
    assert negatives is not None
    assert negatives.sort("user_id").rows() == [(1, "c"), (2, "a")]
    with pytest.raises(ValueError, match="n_negatives=2"):
        leave_one_out(dense, n_negatives=2)


def test_global_time_split_keeps_only_known_users() -> None:
    frame = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 3, 3],
            "item_id": ["a", "b", "a", "c", "d", "e"],
            "timestamp": [T0, T0 + timedelta(days=5), T0 + timedelta(days=6), T0, T0, T0],
        }
    ).with_columns(
        pl.when(pl.col("user_id") == 2)
        .then(pl.col("timestamp") + timedelta(days=10))
        .otherwise(pl.col("timestamp"))
    )
    cutoff = T0 + timedelta(days=3)
    split = global_time_split(frame, cutoff)
    assert split.protocol == "global-time"
    assert (split.train["timestamp"] < cutoff).all()
    # user 2 only appears after the cutoff; user 1's repeat of "a" is already known
    assert split.test.select("user_id", "item_id").rows() == [(1, "b")]
    keep = global_time_split(frame, cutoff, drop_seen_pairs=False)
    assert keep.test.select("user_id", "item_id").rows() == [(1, "b"), (1, "a")]


def test_global_time_split_with_epoch_and_aware_timestamps() -> None:
    base = pl.DataFrame({"user_id": [1, 1], "item_id": ["a", "b"], "timestamp": [100, 200]})
    cutoff = datetime.fromtimestamp(150, tz=UTC)
    assert global_time_split(base, cutoff).test["item_id"].to_list() == ["b"]
    aware = base.with_columns(
        pl.from_epoch("timestamp").dt.replace_time_zone("UTC").dt.convert_time_zone("Europe/Paris")
    )
    # 150 s after the epoch in UTC sits between the two rows whatever the column's zone
    assert global_time_split(aware, cutoff).test["item_id"].to_list() == ["b"]


@pytest.mark.parametrize("column", ["user_id", "item_id", "timestamp"])
def test_missing_or_null_columns_are_named(column: str) -> None:
    with pytest.raises(ValueError, match=repr(column)):
        time_split(DATA.drop(column))
    with_null = DATA.with_columns(pl.lit(None).cast(DATA.schema[column]).alias(column))
    with pytest.raises(ValueError, match=repr(column)):
        leave_one_out(with_null)


def test_load_interactions_csv_iso_and_parquet_epoch(tmp_path: Path) -> None:
    csv = tmp_path / "log.csv"
    csv.write_text(
        "user,item,timestamp,rating\n"
        "u1,i1,2024-01-01T10:00:00,4\n"
        "u1,i2,2024-01-02T10:00:00+02:00,5\n"
        "u2,i1,2024-01-03 00:00:00,3\n"
        "u3,i2,2024-01-04T00:00:00.5Z,2\n"
    )
    frame = load_interactions(csv, weight_col="rating")
    assert frame.columns == ["user_id", "item_id", "timestamp", "weight"]
    assert frame.schema["timestamp"] == pl.Datetime("us")
    assert frame["timestamp"].to_list() == [
        datetime(2024, 1, 1, 10),
        datetime(2024, 1, 2, 8),  # +02:00 converted to UTC
        datetime(2024, 1, 3),
        datetime(2024, 1, 4, 0, 0, 0, 500_000),
    ]
    assert frame["weight"].to_list() == [4.0, 5.0, 3.0, 2.0]

    parquet = tmp_path / "log.parquet"
    pl.DataFrame(
        {"uid": [7, 8], "movie": [1, 2], "ts": [1_700_000_000, 1_700_000_060]}
    ).write_parquet(parquet)
    loaded = load_interactions(parquet, user_col="uid", item_col="movie", time_col="ts")
    assert loaded.columns == ["user_id", "item_id", "timestamp"]
    assert loaded["timestamp"].to_list() == [
        datetime(2023, 11, 14, 22, 13, 20),
        datetime(2023, 11, 14, 22, 14, 20),
    ]

    epoch_csv = tmp_path / "epoch.csv"
    epoch_csv.write_text("user,item,timestamp\n1,10,1700000000000\n")
    ms = load_interactions(epoch_csv, epoch_unit="ms")
    assert ms["timestamp"].to_list() == [datetime(2023, 11, 14, 22, 13, 20)]
    # loaded frames go straight into a protocol
    assert time_split(frame).train.height == 3


def test_load_interactions_names_bad_columns(tmp_path: Path) -> None:
    csv = tmp_path / "log.csv"
    csv.write_text("user,item,when\nu1,i1,2024-01-01\n")
    with pytest.raises(ValueError, match="'timestamp'"):
        load_interactions(csv)
    with pytest.raises(ValueError, match="'score'"):
        load_interactions(csv, time_col="when", weight_col="score")
    bad_time = tmp_path / "bad.csv"
    bad_time.write_text("user,item,timestamp\nu1,i1,yesterday\n")
    with pytest.raises(ValueError, match="timestamp"):
        load_interactions(bad_time)
    with pytest.raises(ValueError, match="parquet"):
        load_interactions(tmp_path / "log.json")
