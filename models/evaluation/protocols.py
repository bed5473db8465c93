"""Offline evaluation protocols: how an interaction log is cut into train and test.

Every protocol takes the standard interaction frame (`user_id`, `item_id`, `timestamp`, optional
`weight`) and returns a `Split`. All are deterministic: ties on time are broken by item id,
random draws come from `numpy.random.default_rng(seed)` over a canonically sorted frame, so the
same input (in any row order) and seed give the same split.

- `global_time_split` is the pipeline default: one cutoff for everyone, which is what a nightly
  retrain actually faces (no training on tomorrow's behaviour of other users), as argued in
  Meng et al., "Exploring Data Splitting Strategies for the Evaluation of Recommendation
  Models" (RecSys 2020) and Ji et al., "A Critical Study on Data Leakage in Recommender System
  Offline Evaluation" (TOIS 2023).
- `time_split` / `random_split` / `leave_one_out` are the per-user protocols that published
  tables on public datasets use, so `godo evaluate --interactions FILE` can be compared with
  them. `leave_one_out` with `n_negatives` reproduces the sampled protocol of He et al.,
  "Neural Collaborative Filtering" (WWW 2017); Krichene & Rendle, "On Sampled Metrics for Item
  Recommendation" (KDD 2020) show sampled metrics can reorder models, which is why full
  ranking stays the default everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

REQUIRED_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "timestamp")

# ISO-8601 shapes tried in order, each value taking the first that fits (Polars otherwise infers
# one format from the first value, and real exports mix offsets and fractional seconds).
ISO_FORMATS: tuple[str, ...] = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
)


@dataclass(frozen=True)
class Split:
    """A train/test cut of one interaction frame.

    `negatives` (user_id, item_id) is only set by `leave_one_out(n_negatives=...)`: items each
    test user never interacted with, to be ranked together with the held-out item.
    """

    train: pl.DataFrame
    test: pl.DataFrame
    negatives: pl.DataFrame | None
    protocol: str


# --------------------------------------------------------------------------- validation


def validate_interactions(interactions: pl.DataFrame) -> pl.DataFrame:
    """Check the standard columns exist and hold no nulls; raise a ValueError naming the column.

    Returns the frame unchanged so it can be used inline.
    """
    if not isinstance(interactions, pl.DataFrame):
        raise TypeError(f"interactions must be a polars DataFrame, got {type(interactions)!r}")
    for column in REQUIRED_COLUMNS:
        if column not in interactions.columns:
            raise ValueError(
                f"interactions is missing column {column!r} (has {interactions.columns})"
            )
        nulls = interactions[column].null_count()
        if nulls:
            raise ValueError(f"interactions column {column!r} has {nulls} null values")
    dtype = interactions.schema["timestamp"]
    if not (dtype.is_temporal() or dtype.is_numeric()):
        raise ValueError(
            f"interactions column 'timestamp' must be a datetime or epoch number, got {dtype}"
        )
    if "weight" in interactions.columns and not interactions.schema["weight"].is_numeric():
        raise ValueError(
            f"interactions column 'weight' must be numeric, got {interactions.schema['weight']}"
        )
    return interactions


def _check_share(test_share: float) -> None:
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")


def _canonical(interactions: pl.DataFrame) -> pl.DataFrame:
    """Sort by user, time, item (stable) and add `_pos`: 1-based chronological index per user."""
    return (
        validate_interactions(interactions)
        .sort(["user_id", "timestamp", "item_id"], maintain_order=True)
        .with_columns(
            _pos=pl.int_range(1, pl.len() + 1).over("user_id"),
            _n=pl.len().over("user_id"),
        )
    )


def _n_test(test_share: float) -> pl.Expr:
    """Held-out count per user: round(n * share), at least 1, leaving at least 1 in train.

    Users with a single interaction keep it in train (0 held out): they are still useful to fit
    on, and a user with nothing in train cannot be evaluated fairly by a collaborative model.
    """
    n = pl.col("_n")
    wanted = (n.cast(pl.Float64) * test_share + 0.5).floor().cast(pl.Int64)
    return pl.when(n < 2).then(0).otherwise(wanted.clip(1, n - 1))


def _cut(frame: pl.DataFrame, is_test: pl.Expr, protocol: str) -> Split:
    tagged = frame.with_columns(_test=is_test)
    keep = [c for c in frame.columns if not c.startswith("_")]
    train = tagged.filter(~pl.col("_test")).select(keep)
    test = tagged.filter(pl.col("_test")).select(keep)
    return Split(train=train, test=test, negatives=None, protocol=protocol)


# --------------------------------------------------------------------------- protocols


def time_split(interactions: pl.DataFrame, test_share: float = 0.2) -> Split:
    """Per user, hold out the latest `test_share` of their interactions (by timestamp).

    Each user's test timestamps are >= their train timestamps (equal only on exact ties, which
    are broken by item id). Other users' later events may still be in train: that is the
    per-user "leave latest out" protocol of the literature, not a global cut.
    """
    _check_share(test_share)
    frame = _canonical(interactions)
    return _cut(frame, pl.col("_pos") > pl.col("_n") - _n_test(test_share), "time")


def random_split(interactions: pl.DataFrame, test_share: float = 0.2, seed: int = 0) -> Split:
    """Per user, hold out a uniformly random `test_share` of their interactions (stratified).

    Stratifying per user keeps every user's train/test ratio close to the share, unlike one
    global random cut where light users often land entirely on one side.
    """
    _check_share(test_share)
    frame = _canonical(interactions)
    rng = np.random.default_rng(seed)
    frame = frame.with_columns(_key=pl.Series(rng.random(frame.height), dtype=pl.Float64))
    frame = frame.with_columns(_order=pl.col("_key").rank("ordinal").over("user_id"))
    return _cut(frame, pl.col("_order") <= _n_test(test_share), "random")


def leave_one_out(
    interactions: pl.DataFrame, n_negatives: int | None = None, seed: int = 0
) -> Split:
    """Hold out each user's latest interaction; optionally sample negatives for it.

    Users with a single interaction stay in train. With `n_negatives`, every test user gets
    exactly that many distinct items, drawn uniformly from the items present in `interactions`,
    that the user never interacted with (in train or test) - the NCF protocol (He et al. 2017:
    1 held-out item ranked among 99 or 100 sampled negatives). Raises ValueError when a user
    has fewer than `n_negatives` items left to draw from.
    """
    frame = _canonical(interactions)
    split = _cut(frame, (pl.col("_pos") == pl.col("_n")) & (pl.col("_n") >= 2), "leave-one-out")
    if n_negatives is None:
        return split
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1 or None, got {n_negatives}")
    negatives = _sample_negatives(
        frame.select("user_id", "item_id"), split.test["user_id"].unique().sort(), n_negatives, seed
    )
    return Split(train=split.train, test=split.test, negatives=negatives, protocol=split.protocol)


def _sample_negatives(
    seen: pl.DataFrame, users: pl.Series, n: int, seed: int, rounds: int = 4
) -> pl.DataFrame:
    """`n` distinct never-seen items per user: rejection sampling, exact fallback for dense users.

    Each round draws 2n + 8 candidate items per still-short user at once (vectorised), drops
    seen and duplicate draws, and keeps the first ones in draw order. Users still short after
    `rounds` rounds (they have seen most of the catalogue) get an exact draw from their
    complement. Loops run over rounds, never over users.
    """
    item_dtype = seen.schema["item_id"]
    user_dtype = seen.schema["user_id"]
    schema = {"user_id": user_dtype, "item_id": item_dtype}
    items = seen["item_id"].unique().sort()
    seen = seen.unique()
    per_user = seen.group_by("user_id").agg(n_seen=pl.len())
    short = (
        pl.DataFrame({"user_id": users})
        .join(per_user, on="user_id", how="left")
        .filter(items.len() - pl.col("n_seen").fill_null(0) < n)
    )
    if short.height:
        first = short.row(0, named=True)
        raise ValueError(
            f"user {first['user_id']!r} has only {items.len() - first['n_seen']} unseen items, "
            f"cannot sample n_negatives={n}"
        )
    rng = np.random.default_rng(seed)
    item_values = items.to_numpy()
    chosen = pl.DataFrame(schema=schema)
    pending = users
    draws = 2 * n + 8
    for _ in range(rounds):
        if pending.len() == 0:
            break
        idx = rng.integers(0, len(item_values), size=(pending.len(), draws))
        have = chosen.group_by("user_id").agg(_have=pl.len())
        candidates = (
            pl.DataFrame(
                {
                    "user_id": pending.to_numpy().repeat(draws),
                    "item_id": item_values[idx.ravel()],
                    "_draw": np.arange(pending.len() * draws),
                },
                schema_overrides=schema,
            )
            .join(seen, on=["user_id", "item_id"], how="anti")
            .join(chosen, on=["user_id", "item_id"], how="anti")
            .group_by("user_id", "item_id")
            .agg(pl.col("_draw").min())  # first draw wins, whatever order the joins left
            .sort("_draw")
            .join(have, on="user_id", how="left")
            .with_columns(_have=pl.col("_have").fill_null(0))
            .filter(pl.int_range(pl.len()).over("user_id") < n - pl.col("_have"))
            .select("user_id", "item_id")
        )
        chosen = pl.concat([chosen, candidates])
        counts = chosen.group_by("user_id").agg(_have=pl.len())
        pending = (
            pl.DataFrame({"user_id": pending})
            .join(counts, on="user_id", how="left")
            .filter(pl.col("_have").fill_null(0) < n)["user_id"]
        )
    if pending.len():
        have = chosen.group_by("user_id").agg(_have=pl.len())
        complement = (
            pl.DataFrame({"user_id": pending})
            .join(pl.DataFrame({"item_id": items}), how="cross")
            .join(seen, on=["user_id", "item_id"], how="anti")
            .join(chosen, on=["user_id", "item_id"], how="anti")
            .sort(["user_id", "item_id"])
        )
        complement = (
            complement.with_columns(_key=pl.Series(rng.random(complement.height)))
            .join(have, on="user_id", how="left")
            .with_columns(_have=pl.col("_have").fill_null(0))
            .filter(pl.col("_key").rank("ordinal").over("user_id") <= n - pl.col("_have"))
            .select("user_id", "item_id")
        )
        chosen = pl.concat([chosen, complement])
    return chosen.sort(["user_id", "item_id"])


def _cutoff_literal(dtype: pl.DataType, cutoff: datetime) -> pl.Expr:
    """`cutoff` as a literal comparable with a timestamp column of `dtype`.

    Naive datetimes are read as UTC on both sides; integer/float columns are epoch seconds.
    """
    aware = cutoff if cutoff.tzinfo is not None else cutoff.replace(tzinfo=UTC)
    if dtype.is_numeric():
        return pl.lit(aware.timestamp())
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return pl.lit(aware.astimezone(UTC).replace(tzinfo=None)).cast(dtype)
        return pl.lit(aware).dt.convert_time_zone(dtype.time_zone).cast(dtype)
    if isinstance(dtype, pl.Date):
        return pl.lit(aware.astimezone(UTC).date())
    raise ValueError(f"interactions column 'timestamp' has unsupported type {dtype}")


def global_time_split(
    interactions: pl.DataFrame, cutoff: datetime, drop_seen_pairs: bool = True
) -> Split:
    """Train on everything before `cutoff`; test on what users already in train did after it.

    Users first seen after the cutoff are dropped from test: they are the cold-start problem,
    evaluated separately, and would otherwise score 0 for every collaborative model alike.
    Items first seen after the cutoff stay (new events are exactly what content and geo
    candidates must reach). With `drop_seen_pairs`, test rows whose (user, item) pair is already
    in train are dropped too: recommenders exclude what a user already swiped, so those rows
    could never be hit and would only lower every model's recall by the same amount.
    """
    frame = validate_interactions(interactions)
    is_train = pl.col("timestamp") < _cutoff_literal(frame.schema["timestamp"], cutoff)
    train = frame.filter(is_train).sort(["user_id", "timestamp", "item_id"], maintain_order=True)
    test = (
        frame.filter(~is_train)
        .join(train.select("user_id").unique(), on="user_id", how="semi")
        .sort(["user_id", "timestamp", "item_id"], maintain_order=True)
    )
    if drop_seen_pairs:
        test = test.join(
            train.select("user_id", "item_id").unique(), on=["user_id", "item_id"], how="anti"
        )
    return Split(train=train, test=test, negatives=None, protocol="global-time")


# --------------------------------------------------------------------------- loading


def load_interactions(
    path: Path,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str = "timestamp",
    weight_col: str | None = None,
    epoch_unit: Literal["s", "ms"] = "s",
) -> pl.DataFrame:
    """Read a CSV or Parquet interaction file into the standard columns.

    Timestamps may be epoch numbers (seconds by default, `epoch_unit="ms"` for milliseconds) or
    ISO-8601 strings (with or without an offset); they come out as naive UTC `Datetime("us")`.
    `weight_col` (a weight or a rating) becomes a Float64 `weight` column.
    """
    path = Path(path)
    raw = _read_table(path)
    wanted = {user_col: "user_id", item_col: "item_id", time_col: "timestamp"}
    if weight_col is not None:
        wanted[weight_col] = "weight"
    for source in wanted:
        if source not in raw.columns:
            raise ValueError(f"{path}: missing column {source!r} (has {raw.columns})")
    frame = raw.select([pl.col(src).alias(dst) for src, dst in wanted.items()])
    frame = frame.with_columns(timestamp=_parse_time(frame["timestamp"], epoch_unit))
    if weight_col is not None:
        try:
            frame = frame.with_columns(pl.col("weight").cast(pl.Float64))
        except pl.exceptions.InvalidOperationError as error:
            raise ValueError(f"{path}: column {weight_col!r} is not numeric") from error
    try:
        return validate_interactions(frame)
    except ValueError as error:
        renamed = {dst: src for src, dst in wanted.items()}
        message = str(error)
        for dst, src in renamed.items():
            message = message.replace(f"'{dst}'", f"'{src}' ({dst})")
        raise ValueError(f"{path}: {message}") from error


ITEM_COLUMNS: tuple[str, ...] = ("category", "title", "text")
CATEGORY_SEPARATOR = "|"


def _read_table(path: Path, *, infer_schema: bool = True) -> pl.DataFrame:
    """A CSV (`,`), TSV (tab) or Parquet file as a frame; the suffix says which."""
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return pl.read_parquet(path)
    if suffix in {".csv", ".tsv", ".txt"}:
        return pl.read_csv(
            path,
            separator="\t" if suffix == ".tsv" else ",",
            try_parse_dates=False,
            infer_schema=infer_schema,
        )
    raise ValueError(f"{path}: expected a .csv, .tsv or .parquet file, got {suffix!r}")


def load_items(path: Path, item_col: str = "item") -> pl.DataFrame:
    """Read an item file: item_id (as a string), categories (List(Utf8)), title, text.

    Expected columns: the item id under `item_col` (the same name as in the interaction file)
    and any of `category` (one category, or several separated by `|`, the MovieLens genre
    style; the first is the item's primary category), `title` and `text` (free text such as
    a description). Missing optional columns come back null; other columns are ignored.
    Every value is read as text, so ids match however the interaction file spells them.
    """
    path = Path(path)
    raw = _read_table(path, infer_schema=False)
    if item_col not in raw.columns:
        raise ValueError(f"{path}: missing item column {item_col!r} (has {raw.columns})")
    present = [c for c in ITEM_COLUMNS if c in raw.columns]
    if not present:
        raise ValueError(
            f"{path}: an item file needs at least one of {list(ITEM_COLUMNS)} (has {raw.columns})"
        )
    text = {c: pl.col(c).cast(pl.Utf8).str.strip_chars() for c in present}
    frame = raw.select(pl.col(item_col).cast(pl.Utf8).str.strip_chars().alias("item_id"), **text)
    for column in ITEM_COLUMNS:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(column))
    categories = (
        pl.col("category")
        .str.split(CATEGORY_SEPARATOR)
        .list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
    )
    return (
        frame.filter(pl.col("item_id").is_not_null() & (pl.col("item_id") != ""))
        .unique("item_id", keep="first", maintain_order=True)
        .select("item_id", categories.alias("categories"), "title", "text")
    )


def _parse_time(column: pl.Series, epoch_unit: Literal["s", "ms"]) -> pl.Series:
    """Epoch numbers or ISO strings (or native datetimes) -> naive UTC Datetime("us")."""
    target = pl.Datetime("us")
    dtype = column.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return column.cast(target)
    if isinstance(dtype, pl.Date):
        return column.cast(target)
    if dtype == pl.Utf8:
        as_number = column.str.strip_chars().cast(pl.Float64, strict=False)
        if as_number.null_count() == column.null_count():
            return _from_epoch(as_number, epoch_unit)
        text = column.str.strip_chars().str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
        parsed = pl.select(
            pl.coalesce(
                text.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")
                for fmt in ISO_FORMATS
            )
        ).to_series()
        bad = text.filter(parsed.is_null() & text.is_not_null())
        if bad.len():
            raise ValueError(
                f"column 'timestamp' holds {bad[0]!r}, neither an epoch number nor ISO-8601"
            )
        return parsed.dt.replace_time_zone(None).alias(column.name)
    if dtype.is_numeric():
        return _from_epoch(column.cast(pl.Float64), epoch_unit)
    raise ValueError(f"column 'timestamp' has unsupported type {dtype}")


def _from_epoch(seconds_or_ms: pl.Series, epoch_unit: Literal["s", "ms"]) -> pl.Series:
    scale = 1_000_000 if epoch_unit == "s" else 1_000
    micros = (seconds_or_ms * scale).round(0).cast(pl.Int64)
    return micros.cast(pl.Datetime("us"))
