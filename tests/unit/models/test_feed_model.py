"""The feed model as an MLflow pyfunc: trained on the tiny city, registered in a real SQLite
store under tmp_path, loaded back by `models:/<name>@champion` and compared with the
in-process model; and what the registration leaves (or must not leave) behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pyfunc
import polars as pl
import pytest

from models.feed_model import RerankConfig, candidate_input, rank_candidates
from models.two_stage import top_n
from pipelines.assets.evaluation import feed_example
from pipelines.tracking import (
    CHAMPION,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    GATE_REASON_TAG,
    GATE_TAG,
    ModelRegistry,
)
from recommender import holdout as ev

ALS_FILE, RANKER_FILE = "als_model.npz", "ranker.txt"
MODEL_NAME = "godo-feed-test"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory: whatever MLflow writes by default lands here."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def registry(tmp_path: Path, workdir: Path) -> ModelRegistry:
    data = tmp_path / "data"
    data.mkdir()
    return ModelRegistry(f"sqlite:///{data / 'mlflow.db'}", "godo-feed-tests", MODEL_NAME)


@pytest.fixture
def global_store(registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """MLflow's global URIs on the test store, as a notebook sets them; unset after (the
    setters mirror them into environment variables, which monkeypatch restores)."""
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(variable, raising=False)
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.tracking_uri)
    yield registry.tracking_uri
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None unsets it
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


@pytest.fixture
def bundle(tmp_path: Path, stage_models: ev.StageModels) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir()
    stage_models.als.save(folder / ALS_FILE)
    stage_models.ranker.save(folder / RANKER_FILE)
    return folder


def register(
    registry: ModelRegistry,
    bundle: Path,
    example: pl.DataFrame,
    config: RerankConfig,
    ranker_features: tuple[str, ...],
) -> int:
    with registry.start_run("retrain-test") as run:
        return run.register_feed_model(
            bundle,
            als_file=ALS_FILE,
            ranker_file=RANKER_FILE,
            config=config,
            input_example=candidate_input(example, ranker_features),
        )


def test_champion_pyfunc_ranks_like_the_in_process_model(
    registry: ModelRegistry,
    global_store: str,
    bundle: Path,
    workdir: Path,
    stage_models: ev.StageModels,
    holdout: ev.Holdout,
    feed_frames: dict[str, pl.DataFrame],
) -> None:
    scored = feed_frames["scored"]
    features = stage_models.ranker.features
    config = RerankConfig(n=20, max_per_category=2)
    version = register(registry, bundle, feed_example(scored, holdout.events), config, features)
    registry.promote(version, reason="test")

    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    signature = model.metadata.signature
    assert signature is not None
    assert {"user_id", "event_id", "category", *features} == set(signature.inputs.input_names())
    assert signature.outputs.input_names() == ["user_id", "rank", "event_id", "score"]
    assert model.metadata.saved_input_example_info is not None
    assert model.input_example is not None and len(model.input_example) > 0

    users = scored["user_id"].unique().sort().head(25)
    rows = scored.filter(pl.col("user_id").is_in(users.implode()))
    batch = candidate_input(rows, features, holdout.events.select("event_id", "category"))
    served = pl.from_pandas(model.predict(batch, params={"n": 10}))

    expected = rank_candidates(pl.from_pandas(batch), stage_models.ranker, config, n=10)
    assert served.select("user_id", "rank", "event_id").equals(
        expected.select("user_id", "rank", "event_id")
    )
    assert served["score"].to_list() == pytest.approx(expected["score"].to_list())
    # The cap is the re-rank: at most 2 events of a category in a user's list...
    categories = holdout.events.select("event_id", "category")
    per_category = served.join(categories, on="event_id").group_by("user_id", "category").len()
    full = rows.group_by("user_id").len().filter(pl.col("len") >= 40)["user_id"]
    assert per_category.filter(pl.col("user_id").is_in(full.implode()))["len"].max() == 2
    # ...and the scores are the ranker's own: the same score `feed_lists` computed.
    joined = served.join(rows.select("user_id", "event_id", "score"), on=["user_id", "event_id"])
    assert joined.height == served.height
    assert joined["score"].to_list() == pytest.approx(joined["score_right"].to_list())


def test_without_a_cap_the_pyfunc_is_the_rankers_order(
    registry: ModelRegistry,
    global_store: str,
    bundle: Path,
    stage_models: ev.StageModels,
    holdout: ev.Holdout,
    feed_frames: dict[str, pl.DataFrame],
) -> None:
    scored = feed_frames["scored"]
    features = stage_models.ranker.features
    config = RerankConfig(n=10, max_per_category=10_000)
    version = register(registry, bundle, feed_example(scored, holdout.events), config, features)

    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
    served = pl.from_pandas(model.predict(candidate_input(scored, features)))

    ranker_order = top_n(scored, 10)
    assert served.select("user_id", "event_id").equals(ranker_order.select("user_id", "event_id"))


def test_registration_leaves_no_default_experiment_nor_mlruns(
    registry: ModelRegistry,
    bundle: Path,
    workdir: Path,
    stage_models: ev.StageModels,
    holdout: ev.Holdout,
    feed_frames: dict[str, pl.DataFrame],
) -> None:
    example = feed_example(feed_frames["scored"], holdout.events)
    config = RerankConfig()
    first = register(registry, bundle, example, config, stage_models.ranker.features)
    registry.record_gate(first, passed=True, reason="no champion yet", numbers={"gain_low": None})
    registry.promote(first, reason="no champion yet")
    second = register(registry, bundle, example, config, stage_models.ranker.features)
    registry.record_gate(
        second,
        passed=False,
        reason="challenger does not beat champion",
        numbers={"gain_low": -0.25, "gain_high": 0.5},
    )

    client = registry.client
    # Nothing in the working directory: no ./mlruns, no ./mlflow.db of a default URI.
    assert list(workdir.iterdir()) == []
    # One experiment, in the classic ML layout; MLflow's empty `Default` is gone.
    assert [e.name for e in client.search_experiments()] == [registry.experiment]
    experiment = client.get_experiment_by_name(registry.experiment)
    assert experiment is not None
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    # Both versions say what the gate decided.
    promoted = client.get_model_version(MODEL_NAME, str(first)).tags
    assert promoted[GATE_TAG] == "promoted"
    rejected = client.get_model_version(MODEL_NAME, str(second)).tags
    assert rejected[GATE_TAG] == "rejected"
    assert rejected[GATE_REASON_TAG] == "challenger does not beat champion"
    assert (rejected["godo.gate_gain_low"], rejected["godo.gate_gain_high"]) == ("-0.25", "0.5")


def test_a_default_experiment_with_runs_is_kept(registry: ModelRegistry) -> None:
    """Somebody's runs in `Default` are their work: the registry leaves them alone."""
    client = registry.client
    run = client.create_run("0", run_name="somebody's")
    client.set_terminated(run.info.run_id)
    assert registry.experiment_id != "0"
    assert client.get_experiment("0").lifecycle_stage == "active"
