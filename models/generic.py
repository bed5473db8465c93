"""The project's two-stage recommender on any interaction log: `godo evaluate`'s `pipeline` row.

The same core as the nightly feed (`models.two_stage`: propose, featurize, LambdaRank), with
the plug-ins a public dataset supports:

- generators: EASE, implicit ALS, item-kNN, content (TF-IDF over the item file's title, text
  and categories, only when one is given) and popularity, every candidate proposed by any;
- features: `features.generic` (user activity, item popularity and recency, every
  generator's score and per-user rank, categories) from the history the generators saw,
  plus the TF-IDF cosine of item and user profile for every candidate when there is text;
- training without the test side: a label split is carved from the *train side* with the
  evaluation protocol itself (`carve`: a per-user random share, the latest share, or the last
  item), the generators are fitted on the rest, propose candidates, the carved part labels
  them, and LambdaRank is fitted, early-stopped on held-out users. Then the generators are
  refitted on the whole train side and the ranker orders the test users' candidates. This is
  the nightly snapshot scheme (`recommender.fitting`) with the protocol's cut in place of
  the weekly one;
- re-rank (optional): diversity by the item's primary category when there is one.

Ids: Godo's models key users by Int64 and items by string; any dataset's ids are mapped onto
that (`UserCodes`) and back, so every model runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial

import polars as pl

from features.generic import history_features
from models.als import ALSModel, ALSParams
from models.base import RECS_SCHEMA, CandidateModel, ModelFitError
from models.content import ContentModel
from models.ease import EASEModel, EASEParams
from models.evaluation.protocols import Split, leave_one_out, random_split, time_split
from models.item_knn import ItemKNNModel, ItemKNNParams
from models.popularity import PopularityModel
from models.ranker import LambdaRanker, RankerParams, user_validation_split
from models.rerank import diversify_by_category
from models.two_stage import (
    Featurize,
    Generators,
    examples,
    feature_columns,
    fit_ranker,
    propose,
    scored,
    top_n,
)

ONE_METRO = "all"  # generic datasets have no metros: one shared candidate pool
LABEL_MOMENT = datetime(1970, 1, 1, tzinfo=UTC)  # every generic query sits at one moment
PROTOCOLS = ("random", "time", "leave-one-out")
RANKER_PARAMS = RankerParams(
    num_leaves=7, n_estimators=300, early_stopping_rounds=50, lambda_l2=50.0
)
"""Small, shrunk trees. The ranker learns on generators fitted on less data than the ones it
is applied to (the carved labels are missing from their history), and on MovieLens-100K
larger trees kept improving on held-out carved users while losing on the test side: what
they learned beyond the generators' own evidence was specific to the sparser replay.
`min_data_in_leaf` is set from the row count (`LEAF_SHARE`)."""
LEAF_SHARE = 1 / 1000  # each leaf holds at least this share of the training rows (and >= 20)


# --------------------------------------------------------------------------- ids


@dataclass(frozen=True)
class UserCodes:
    """Any dataset's user ids as the Int64 codes Godo's models expect, and back."""

    table: pl.DataFrame  # user_id (original), code (Int64)

    @classmethod
    def of(cls, *frames: pl.DataFrame) -> UserCodes:
        users = pl.concat([f.select("user_id") for f in frames]).unique().sort("user_id")
        return cls(users.with_row_index("code").with_columns(pl.col("code").cast(pl.Int64)))

    def encode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """user_id -> code, item_id -> event_id (Utf8); weight 1.0 when the file has none."""
        weight = pl.col("weight").cast(pl.Float64) if "weight" in frame.columns else pl.lit(1.0)
        keep = ["timestamp"] if "timestamp" in frame.columns else []
        return frame.join(self.table, on="user_id").select(
            pl.col("code").alias("user_id"),
            pl.col("item_id").cast(pl.Utf8).alias("event_id"),
            weight.alias("weight"),
            *keep,
        )

    def decode(self, recs: pl.DataFrame, item_dtype: pl.DataType) -> pl.DataFrame:
        """user_id, item_id, rank in the dataset's own ids."""
        return recs.join(self.table, left_on="user_id", right_on="code").select(
            pl.col("user_id_right").alias("user_id"),
            pl.col("event_id").cast(item_dtype).alias("item_id"),
            "rank",
        )


def request_users(users: pl.DataFrame) -> pl.DataFrame:
    """user_id, metro: every user in the one shared pool."""
    return users.select("user_id").unique().sort("user_id").with_columns(metro=pl.lit(ONE_METRO))


def pool(history: pl.DataFrame) -> pl.DataFrame:
    """event_id, metro: every item of the history is a candidate for everyone."""
    return (
        history.select("event_id").unique().sort("event_id").with_columns(metro=pl.lit(ONE_METRO))
    )


# --------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Items:
    """An item file in the pipeline's terms (see `models.evaluation.protocols.load_items`)."""

    categories: pl.DataFrame | None  # event_id, category: long, several rows per item
    primary: pl.DataFrame | None  # event_id, category: the first one, for diversity
    documents: pl.DataFrame | None  # event_id, name, summary, category: what TF-IDF reads

    @classmethod
    def of(cls, items: pl.DataFrame) -> Items:
        """From `load_items`' frame (item_id, categories, title, text)."""
        frame = items.select(
            pl.col("item_id").cast(pl.Utf8).alias("event_id"), "categories", "title", "text"
        )
        long = (
            frame.select("event_id", "categories")
            .explode("categories")
            .drop_nulls()
            .rename({"categories": "category"})
        )
        has_categories = long.height > 0
        has_text = frame.select(
            pl.col("title").is_not_null().any() | pl.col("text").is_not_null().any()
        ).item()
        documents = frame.select(
            "event_id",
            name=pl.col("title").fill_null(""),
            summary=pl.col("text").fill_null(""),
            category=pl.col("categories").list.join(" ").fill_null(""),
        )
        return cls(
            categories=long if has_categories else None,
            primary=long.unique("event_id", keep="first", maintain_order=True)
            if has_categories
            else None,
            documents=documents if has_categories or has_text else None,
        )


# --------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the generic pipeline decides; `godo evaluate` fills the tuned parts."""

    protocol: str = "random"
    label_share: float = 0.2  # carved share (random, time); `godo evaluate` passes its test share
    carves: int = 2  # independent random carves pooled for the ranker (random protocol only)
    per_source: int = 100
    als: ALSParams = field(default_factory=ALSParams)
    ease: EASEParams = field(default_factory=EASEParams)
    item_knn: ItemKNNParams = field(default_factory=ItemKNNParams)
    ranker: RankerParams = RANKER_PARAMS
    valid_share: float = 0.2  # users held out to early-stop LambdaRank
    max_label_users: int | None = 20_000  # bounds the ranker's rows (like the nightly cap)
    chunk_users: int = 5_000  # test users ranked at a time: memory follows the chunk
    rerank: bool = False
    seed: int = 0


GeneratorSet = Callable[[pl.DataFrame], Generators]
"""Fits every generator on one history (user_id, event_id, weight[, timestamp])."""


def generators(history: pl.DataFrame, config: PipelineConfig, items: Items | None) -> Generators:
    """Every generic generator fitted on `history`, most specific first (names `source`)."""
    fitted: dict[str, CandidateModel] = {
        "ease": EASEModel(config.ease).fit(history),
        "als": ALSModel(config.als).fit(history),
        "item_knn": ItemKNNModel(config.item_knn).fit(history),
    }
    if items is not None and items.documents is not None:
        try:
            fitted["content"] = ContentModel(items.documents).fit(history)
        except ModelFitError:  # no item of the history has text: nothing to match on
            pass
    fitted["popularity"] = PopularityModel().fit(history)
    return fitted


def featurizer(history: pl.DataFrame, fitted: Generators, items: Items | None) -> Featurize:
    """The generic feature plug-in for candidates of generators fitted on `history`."""
    base = history_features(
        history,
        generators=tuple(fitted),
        item_categories=items.categories if items is not None else None,
    )
    content = fitted.get("content")

    def featurize(candidates: pl.DataFrame) -> pl.DataFrame:
        frame = base(candidates)
        if isinstance(content, ContentModel):
            frame = frame.with_columns(text_similarity=pl.Series(content.similarity(frame)))
        return frame

    return featurize


def carve(train: pl.DataFrame, protocol: str, share: float, seed: int) -> Split:
    """The label split of the train side, cut the way the test side was cut.

    `random`: a per-user random `share` (seeded apart from the test split); `time`: each
    user's latest `share`; `leave-one-out`: each user's last item. Only `train` is an
    argument, so the test side cannot leak into the ranker's labels.
    """
    if protocol == "random":
        return random_split(train, test_share=share, seed=seed + 1)
    if protocol == "time":
        return time_split(train, test_share=share)
    if protocol == "leave-one-out":
        return leave_one_out(train)
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def carves(train: pl.DataFrame, config: PipelineConfig) -> list[Split]:
    """The label splits the ranker learns from, pooled (more query groups, the same density).

    `random`: `config.carves` independently seeded carves. `leave-one-out`: `config.carves`
    carves stepping back in time, each cut from the previous one's train side (each user's
    last item, then the one before it), because one label per user is too thin for
    LambdaRank to early-stop on (MovieLens-100K: 3 trees and NDCG@10 0.038 with one carve,
    60 trees and 0.054 with two). `time`: one carve, the latest share of each user's items,
    already dense; stepping back again fits the second history further from the test
    moment (0.206 with one carve, 0.197 with two). The test side is never an argument.
    """
    if config.protocol == "random":
        return [
            carve(train, config.protocol, config.label_share, config.seed + 100 * i)
            for i in range(max(1, config.carves))
        ]
    steps = config.carves if config.protocol == "leave-one-out" else 1
    stepped: list[Split] = []
    history = train
    for _ in range(max(1, steps)):
        split = carve(history, config.protocol, config.label_share, config.seed)
        if split.test.is_empty():
            break
        stepped.append(split)
        history = split.train
    return stepped or [carve(train, config.protocol, config.label_share, config.seed)]


def label_users(labels: pl.DataFrame, max_users: int | None, seed: int) -> pl.DataFrame:
    """The users whose carved items label a query group, sampled (seeded) to `max_users`."""
    users = labels.select("user_id").unique().sort("user_id")
    if max_users is not None and users.height > max_users:
        users = users.sample(max_users, seed=seed).sort("user_id")
    return users


@dataclass(frozen=True)
class Trained:
    """The fitted ranker and what it was trained on, for reports."""

    ranker: LambdaRanker
    rows: int
    queries: int
    positives: int


def train_ranker(
    replays: list[tuple[pl.DataFrame, pl.DataFrame]],
    *,
    fit_generators: GeneratorSet,
    make_featurizer: Callable[[pl.DataFrame, Generators], Featurize],
    config: PipelineConfig,
) -> Trained:
    """LambdaRank on labelled candidates of every replay (history, labels): generators fitted
    on the history propose, the plug-in describes, each carved item a candidate reaches is a
    positive (label 1). Each replay is its own query moment, so one user's groups of two
    replays stay apart."""
    frames: list[pl.DataFrame] = []
    for moment, (history, labels) in enumerate(replays):
        fitted = fit_generators(history)
        users = label_users(labels, config.max_label_users, config.seed + moment)
        frames.append(
            examples(
                fitted,
                make_featurizer(history, fitted),
                users=request_users(users),
                eligible=pool(history),
                exclude=history.join(users, on="user_id", how="semi").select("user_id", "event_id"),
                labels=labels.select("user_id", "event_id", label=pl.lit(1, dtype=pl.Int8)),
                per_source=config.per_source,
            ).with_columns(created_at=pl.lit(LABEL_MOMENT + timedelta(days=moment)))
        )
        del fitted
    rows = pl.concat(frames, how="diagonal_relaxed").sort("user_id", "created_at", "event_id")
    if not (rows["label"] > 0).any():
        raise ModelFitError("no carved item reached the candidates: nothing to rank")
    params = replace(config.ranker, min_data_in_leaf=max(20, int(rows.height * LEAF_SHARE)))
    ranker = fit_ranker(
        rows,
        features=feature_columns(rows),
        params=params,
        valid_share=config.valid_share,
        split=partial(user_validation_split, seed=config.seed),
    )
    return Trained(
        ranker=ranker,
        rows=rows.height,
        queries=rows.select("user_id", "created_at").n_unique(),
        positives=int((rows["label"] > 0).sum()),
    )


def rank_users(
    history: pl.DataFrame,
    users: pl.DataFrame,
    *,
    ranker: LambdaRanker,
    fitted: Generators,
    featurize: Featurize,
    config: PipelineConfig,
    n: int,
    items: Items | None = None,
) -> pl.DataFrame:
    """Top `n` per user (user_id, rank, event_id, score), `config.chunk_users` at a time;
    re-ranked for diversity by primary category when `config.rerank` and categories exist."""
    eligible = pool(history)
    lists: list[pl.DataFrame] = []
    for chunk in request_users(users).iter_slices(config.chunk_users):
        proposed = propose(
            fitted,
            users=chunk,
            eligible=eligible,
            exclude=history.join(chunk, on="user_id", how="semi"),
            per_source=config.per_source,
        )
        frame = scored(proposed, featurize=featurize, ranker=ranker)
        if config.rerank:
            primary = items.primary if items is not None else None
            lists.append(diversify_by_category(frame, categories=primary, n=n))
        else:
            lists.append(top_n(frame, n))
    if not lists:
        return pl.DataFrame(schema=RECS_SCHEMA).select("user_id", "rank", "event_id", "score")
    return pl.concat(lists)


@dataclass(frozen=True)
class PipelineRun:
    """The pipeline's lists for the test users and how its ranker was trained."""

    recs: pl.DataFrame  # user_id, item_id, rank (the dataset's ids)
    trained: Trained
    features: tuple[str, ...]
    generators: tuple[str, ...]


def pipeline_recommendations(
    split: Split, k: int, *, config: PipelineConfig, items: Items | None = None
) -> PipelineRun:
    """Carve, train the ranker, refit on the whole train side, rank every test user."""
    codes = UserCodes.of(split.train, split.test)
    fit_generators: GeneratorSet = partial(generators, config=config, items=items)
    make_featurizer = partial(featurizer, items=items)
    trained = train_ranker(
        [(codes.encode(c.train), codes.encode(c.test)) for c in carves(split.train, config)],
        fit_generators=fit_generators,
        make_featurizer=make_featurizer,
        config=config,
    )
    history = codes.encode(split.train)
    fitted = fit_generators(history)
    recs = rank_users(
        history,
        codes.encode(split.test).select("user_id").unique(),
        ranker=trained.ranker,
        fitted=fitted,
        featurize=make_featurizer(history, fitted),
        config=config,
        n=k,
        items=items,
    )
    return PipelineRun(
        recs=codes.decode(recs, split.train.schema["item_id"]),
        trained=trained,
        features=trained.ranker.features,
        generators=tuple(fitted),
    )
