"""The whole feed model as one MLflow pyfunc: what a registered version is, loadable anywhere.

A registered version of the feed is more than the LightGBM booster: it is the candidate
generator with learned state (ALS), the ranker and the re-rank configuration the nightly feed
runs with. `FeedModel` bundles the three as pyfunc artifacts, so a notebook can
`mlflow.pyfunc.load_model("models:/godo-feed-ranker@champion")` and score candidates with
exactly what publishes, and the version's page in MLflow shows a signature and an input
example instead of a bare booster.

What `predict` does: score each candidate row with the ranker, then re-rank per user with
the feed's category cap (`models.rerank.diversify`, `FEED_MAX_PER_CATEGORY`) and cut to `n`.
Its input is candidate rows with their point-in-time features (what `recommender.feed.scored`
sees, built by `candidate_input`); the generators without learned state and the features are
computed from live data at publish time, so they are not part of the artifact. The hard
filters (start time, radius, already swiped), the explored slots (seeded by a publish run) and
the reasons need the live catalogue and a run, so they stay in `recommender.feed.feed`; the
ALS factors are in the artifact (`unwrap_python_model().als`) to propose candidates.

Artifacts are LightGBM's text model, the ALS npz and JSON, and the model itself is logged as
code (`models/feed_pyfunc.py`, MLflow's "models from code"): loading a version unpickles
nothing. That code imports this module, so loading needs this repository's packages
importable (the notebooks' and the pipelines' environment).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Self

import lightgbm
import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
from mlflow.models import Model, ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from models.als import ALSModel
from models.ranker import NIGHTLY_SOURCES, LambdaRanker
from models.rerank import FEED_EXPLORATION, FEED_MAX_PER_CATEGORY, diversify

ALS_ARTIFACT: Final = "als"
RANKER_ARTIFACT: Final = "ranker"
RANKER_META_ARTIFACT: Final = "ranker_meta"
CONFIG_ARTIFACT: Final = "rerank"
CONFIG_FILE: Final = "rerank.json"
CODE_FILE: Final = Path(__file__).with_name("feed_pyfunc.py")  # models from code: no pickle


@dataclass(frozen=True)
class RerankConfig:
    """How the feed turns candidate scores into a list; logged with every version.

    `n` and the category cap are applied by `FeedModel.predict`; the candidate budget, the
    generator order and the exploration settings are recorded so a version says how it was
    served, and are applied by the publish step.
    """

    n: int = 20
    max_per_category: int = FEED_MAX_PER_CATEGORY
    mmr_lambda: float | None = None
    candidates_per_source: int = 100
    sources: tuple[str, ...] = field(default=NIGHTLY_SOURCES)
    exploration_share: float = FEED_EXPLORATION.share
    exploration_temperature: float = FEED_EXPLORATION.temperature

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Self:
        data = json.loads(Path(path).read_text())
        data["sources"] = tuple(data["sources"])
        return cls(**data)


def candidate_input(
    scored: pl.DataFrame, features: tuple[str, ...], categories: pl.DataFrame | None = None
) -> pd.DataFrame:
    """Candidate rows as the pyfunc takes them: user_id, event_id, category, every feature.

    Features become float64 (null → NaN) whatever their Polars type, so one signature holds
    whether or not a batch happens to have nulls; LightGBM reads floats anyway. `category`
    comes from `scored` or is joined from `categories` (event_id, category).
    """
    frame = scored
    if "category" not in frame.columns:
        if categories is None:
            frame = frame.with_columns(category=pl.lit(None, dtype=pl.Utf8))
        else:
            cats = categories.select("event_id", pl.col("category").cast(pl.Utf8))
            frame = frame.join(cats.unique("event_id", keep="first"), on="event_id", how="left")
    missing = [name for name in features if name not in frame.columns]
    frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(name) for name in missing)
    selected = frame.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("event_id").cast(pl.Utf8),
        # '' for an unknown category: the schema's string column takes no None.
        pl.col("category").cast(pl.Utf8).fill_null(""),
        *(pl.col(name).cast(pl.Float64) for name in features),
    )
    return selected.to_pandas()


def rank_candidates(
    candidates: pl.DataFrame, ranker: LambdaRanker, config: RerankConfig, n: int | None = None
) -> pl.DataFrame:
    """Score every candidate, then diversify per user: user_id, rank, event_id, score.

    The in-process twin of `FeedModel.predict` (which calls it). An empty `category` is an
    unknown one, each such event its own category, as `diversify` treats a null.
    """
    scored = candidates.with_columns(score=pl.Series(ranker.score(candidates), dtype=pl.Float64))
    categories = scored.select(
        "event_id",
        category=pl.when(pl.col("category") == "").then(None).otherwise(pl.col("category")),
    ).unique("event_id", keep="first")
    picked = diversify(
        scored.select("user_id", "event_id", "score"),
        categories=categories,
        n=config.n if n is None else n,
        max_per_category=config.max_per_category,
        mmr_lambda=config.mmr_lambda,
    )
    return picked.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("rank").cast(pl.Int64),
        "event_id",
        "score",
    ).sort("user_id", "rank")


class FeedModel(PythonModel):
    """ALS + LightGBM ranker + re-rank configuration behind `predict`."""

    als: ALSModel
    ranker: LambdaRanker
    config: RerankConfig

    def load_context(self, context: Any) -> None:
        """Load the artifacts (no pickle: LightGBM text, npz, JSON)."""
        artifacts = context.artifacts
        self.als = ALSModel.load(Path(artifacts[ALS_ARTIFACT]))
        # The ranker's JSON sidecar is copied beside its text model (same folder).
        self.ranker = LambdaRanker.load(Path(artifacts[RANKER_ARTIFACT]))
        self.config = RerankConfig.load(Path(artifacts[CONFIG_ARTIFACT]))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Candidate rows (see `candidate_input`) in, each user's ranked list out."""
        frame = pl.from_pandas(model_input)
        if "category" not in frame.columns:
            frame = frame.with_columns(category=pl.lit("", dtype=pl.Utf8))
        n = int((params or {}).get("n", self.config.n))
        return rank_candidates(frame, self.ranker, self.config, n).to_pandas()


def signature(features: tuple[str, ...], config: RerankConfig) -> ModelSignature:
    """Candidate rows in (keys required, category and features optional), ranked lists out;
    `n` (the list length) is an inference parameter."""
    inputs = Schema(
        [
            ColSpec("long", "user_id"),
            ColSpec("string", "event_id"),
            ColSpec("string", "category", required=False),
            *(ColSpec("double", name, required=False) for name in features),
        ]
    )
    outputs = Schema(
        [
            ColSpec("long", "user_id"),
            ColSpec("long", "rank"),
            ColSpec("string", "event_id"),
            ColSpec("double", "score"),
        ]
    )
    params = ParamSchema([ParamSpec("n", "long", config.n)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def save_feed_model(
    path: Path,
    *,
    als_path: Path,
    ranker_path: Path,
    config: RerankConfig,
    input_example: pd.DataFrame,
    mlflow_model: Model | None = None,
) -> None:
    """Write the pyfunc model folder at `path` (what `TrainingRun.register_feed_model` logs)."""
    ranker = LambdaRanker.load(ranker_path)
    with tempfile.TemporaryDirectory() as staging:
        config_path = Path(staging) / CONFIG_FILE
        config.save(config_path)
        mlflow.pyfunc.save_model(
            str(path),
            python_model=str(CODE_FILE),
            artifacts={
                ALS_ARTIFACT: str(als_path),
                RANKER_ARTIFACT: str(ranker_path),
                RANKER_META_ARTIFACT: str(LambdaRanker.sidecar(ranker_path)),
                CONFIG_ARTIFACT: str(config_path),
            },
            signature=signature(ranker.features, config),
            input_example=(input_example, {"n": config.n}),
            pip_requirements=[
                f"lightgbm=={lightgbm.__version__}",
                f"polars=={pl.__version__}",
                f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}",
            ],
            mlflow_model=mlflow_model,
        )
