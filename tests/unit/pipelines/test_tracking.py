"""pipelines.tracking against a real MLflow with a SQLite store under tmp_path (no mocks)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import lightgbm
import mlflow
import mlflow.lightgbm
import numpy as np
import polars as pl
import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from core.settings import Settings
from pipelines.tracking import (
    BUNDLE_DIR,
    CHAMPION,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    GATE_TAG,
    MAX_PARAM_VALUE_LENGTH,
    TRUNCATION_MARKER,
    ModelRegistry,
    artifact_location,
    default_artifact_root,
    read_table,
    sanitise_key,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store for the module: MLflow's migrations take seconds per database."""
    return tmp_path_factory.mktemp("mlflow")


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}"


@pytest.fixture(scope="module")
def registry(store: Path) -> ModelRegistry:
    return ModelRegistry(
        sqlite_uri(store), "godo-tests", "ranker-default", artifact_root=str(store / "artifacts")
    )


def registry_for(registry: ModelRegistry, model_name: str) -> ModelRegistry:
    """Same store and experiment, its own registered model name (one per test)."""
    return ModelRegistry(
        registry.tracking_uri, registry.experiment, model_name, registry.artifact_location
    )


@pytest.fixture(scope="module")
def booster() -> lightgbm.Booster:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(50, 4))
    labels = rng.integers(0, 3, size=50)
    data = lightgbm.Dataset(features, label=labels, group=[10] * 5)
    params = {"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 2, "seed": 7}
    return lightgbm.train(params, data, num_boost_round=5)


@pytest.fixture
def other_global_uri(tmp_path: Path) -> Iterator[str]:
    """Point MLflow's global tracking URI somewhere else for the test, then restore it.

    `mlflow.set_tracking_uri` mirrors the URI into $MLFLOW_TRACKING_URI, so restoring means
    handing back whatever that variable held before (None unsets both).
    """
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None is accepted: it unsets


def test_run_logs_params_metrics_dict_and_bundle(
    store: Path, booster: lightgbm.Booster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    registry = ModelRegistry(
        sqlite_uri(store), "godo-logging", "unused", artifact_root=str(tmp_path / "artifacts")
    )
    bundle = tmp_path / "to-log"
    bundle.mkdir()
    (bundle / "features.json").write_text('["a", "b"]')

    with registry.start_run("logging", tags={"godo.city": "lisbon"}) as run:
        run.log_params({"num_leaves": 31, "learning_rate": 0.05, "long": "x" * 7000})
        run.log_metrics({"ndcg@10": 0.5, "loss": 1.25}, step=3)
        run.log_metrics({"nan_metric": math.nan, "none_metric": None})
        run.log_dict({"features": ["a", "b"]}, "features.json")
        run.log_bundle(bundle)
        run.register(booster)

    client = MlflowClient(tracking_uri=registry.tracking_uri)
    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "logging"
    assert logged.data.tags["godo.city"] == "lisbon"
    assert logged.data.params["num_leaves"] == "31"
    assert logged.data.params["learning_rate"] == "0.05"
    long_value = logged.data.params["long"]
    assert len(long_value) == MAX_PARAM_VALUE_LENGTH
    assert long_value.endswith(TRUNCATION_MARKER)
    assert logged.data.metrics == {"ndcg_at_10": 0.5, "loss": 1.25}
    history = client.get_metric_history(run.run_id, "loss")
    assert [m.step for m in history] == [3]
    paths = {f.path for f in client.list_artifacts(run.run_id)}
    assert paths == {"features.json", BUNDLE_DIR}
    assert {f.path for f in client.list_artifacts(run.run_id, BUNDLE_DIR)} == {
        f"{BUNDLE_DIR}/features.json"
    }
    features = Path(client.download_artifacts(run.run_id, "features.json", str(tmp_path)))
    assert features.read_text().replace(" ", "").replace("\n", "") == '{"features":["a","b"]}'

    # Artifacts (the model's too) live under the configured root, never in the working
    # directory: no ./mlruns, and no ./mlflow.db from MLflow's default tracking URI.
    experiment = client.get_experiment(registry.experiment_id)
    assert experiment.artifact_location == (tmp_path / "artifacts").resolve().as_uri()
    assert logged.info.artifact_uri.startswith(experiment.artifact_location)
    assert (tmp_path / "artifacts").is_dir()
    assert list(cwd.iterdir()) == []


def test_resume_run_finds_the_tagged_run_again(registry: ModelRegistry) -> None:
    tags = {"online_metrics_for": "12"}
    with registry.resume_run("online-12", tags) as first:
        first.set_tags({"window_end": "day-1"})
        first.log_metrics({"like_rate": 0.2}, step=1)
    with registry.resume_run("online-12", tags) as second:
        second.set_tags({"window_end": "day-2"})
        second.log_metrics({"like_rate": 0.3}, step=2)
    with registry.resume_run("online-13", {"online_metrics_for": "13"}) as other:
        pass
    assert second.run_id == first.run_id != other.run_id
    client = MlflowClient(tracking_uri=registry.tracking_uri)
    history = client.get_metric_history(first.run_id, "like_rate")
    assert [(m.step, m.value) for m in history] == [(1, 0.2), (2, 0.3)]
    logged = client.get_run(first.run_id)
    assert logged.data.tags["window_end"] == "day-2"
    assert logged.info.status == "FINISHED"
    with pytest.raises(ValueError, match="filter"):
        registry.resume_run("bad", {"online_metrics_for": "x' OR '1'='1"})


def test_existing_experiment_is_reused(registry: ModelRegistry) -> None:
    again = registry_for(registry, "ranker-reuse")
    assert again.experiment_id == registry.experiment_id


def test_register_promote_and_champion(registry: ModelRegistry, booster: lightgbm.Booster) -> None:
    registry = registry_for(registry, "ranker-promote")
    assert registry.champion() is None  # no registered model yet

    with registry.start_run("first") as first:
        first.log_metrics({"ndcg@10": 0.61})
        v1 = first.register(booster, description="first", tags={"trained_on": "2024-06"})
    with registry.start_run("second") as second:
        second.log_metrics({"ndcg@10": 0.64})
        v2 = second.register(booster)

    assert (v1, v2) == (1, 2)
    assert registry.version(1).run_id == first.run_id
    assert registry.version(2).run_id == second.run_id
    assert registry.version(1).tags["trained_on"] == "2024-06"
    assert registry.version(1).tags["run_id"] == first.run_id
    assert registry.champion() is None  # registered, but nothing promoted

    registry.promote(1, "first model")
    champion = registry.champion()
    assert champion is not None
    assert champion.version == 1
    assert champion.run_id == first.run_id
    assert champion.metrics == {"ndcg_at_10": 0.61}
    assert champion.tags["promoted_reason"] == "first model"
    assert "promoted_at" in champion.tags

    registry.promote(2, "better ndcg")
    champion = registry.champion()
    assert champion is not None
    assert (champion.version, champion.metrics) == (2, {"ndcg_at_10": 0.64})
    # The SQL store hands alias targets back as ints, a REST store as strings.
    aliases = registry.client.get_registered_model(registry.model_name).aliases
    assert {alias: int(v) for alias, v in aliases.items()} == {CHAMPION: 2}


def test_registered_model_loads_with_lightgbm_flavour(
    registry: ModelRegistry, booster: lightgbm.Booster, tmp_path: Path
) -> None:
    registry = registry_for(registry, "ranker-flavour")
    with registry.start_run("flavour") as run:
        version = run.register(booster)

    model_version = registry.client.get_model_version(registry.model_name, str(version))
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=model_version.source, dst_path=str(tmp_path)
    )
    loaded = mlflow.lightgbm.load_model(local)
    rows = np.random.default_rng(1).normal(size=(5, 4))
    np.testing.assert_allclose(loaded.predict(rows), booster.predict(rows))
    logged_model = registry.client.get_logged_model(model_version.tags["model_id"])
    assert logged_model.source_run_id == run.run_id
    assert logged_model.status == LoggedModelStatus.READY


def test_download_bundle_is_byte_identical(
    registry: ModelRegistry, booster: lightgbm.Booster, tmp_path: Path
) -> None:
    registry = registry_for(registry, "ranker-bundle")
    bundle = tmp_path / "bundle-src"
    (bundle / "nested").mkdir(parents=True)
    booster.save_model(str(bundle / "ranker.txt"))
    (bundle / "nested" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    with registry.start_run("bundle") as run:
        run.log_bundle(bundle)
        version = run.register(booster)

    destination = tmp_path / "download"
    (destination / BUNDLE_DIR).mkdir(parents=True)
    (destination / BUNDLE_DIR / "stale.txt").write_text("from an older download")
    folder = registry.download_bundle(version, destination)

    assert folder == destination / BUNDLE_DIR
    source_files = sorted(p.relative_to(bundle) for p in bundle.rglob("*") if p.is_file())
    downloaded = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    assert downloaded == source_files
    for relative in source_files:
        assert (folder / relative).read_bytes() == (bundle / relative).read_bytes()
    assert sorted(p.name for p in destination.iterdir()) == [BUNDLE_DIR]


def test_download_bundle_without_bundle_fails(
    registry: ModelRegistry, booster: lightgbm.Booster, tmp_path: Path
) -> None:
    registry = registry_for(registry, "ranker-nobundle")
    with registry.start_run("no bundle") as run:
        version = run.register(booster)
    with pytest.raises(FileNotFoundError):
        registry.download_bundle(version, tmp_path)


def test_global_mlflow_state_is_untouched(
    registry: ModelRegistry, booster: lightgbm.Booster, other_global_uri: str
) -> None:
    registry = registry_for(registry, "ranker-global")
    registry_uri_before = mlflow.get_registry_uri()
    with registry.start_run("global") as run:
        run.log_metrics({"loss": 0.1})
        version = run.register(booster)
    registry.promote(version, "check globals")
    assert registry.champion() is not None

    assert mlflow.get_tracking_uri() == other_global_uri
    assert mlflow.get_registry_uri() == registry_uri_before
    assert mlflow.active_run() is None
    # Nothing was ever written through the global URI: its database was never even created.
    assert not Path(other_global_uri.removeprefix("sqlite:///")).exists()


def test_failed_run_is_marked_failed(registry: ModelRegistry) -> None:
    with pytest.raises(RuntimeError, match="boom"), registry.start_run("doomed") as run:
        run.log_metrics({"loss": 1.0})
        raise RuntimeError("boom")
    assert registry.client.get_run(run.run_id).info.status == "FAILED"


def test_unknown_version_raises(registry: ModelRegistry) -> None:
    registry = registry_for(registry, "ranker-unknown")
    with registry.start_run("one") as run:
        run.log_params({"a": 1})
    with pytest.raises(MlflowException):
        registry.version(1)
    with pytest.raises(MlflowException):
        registry.promote(1, "does not exist")
    assert registry.champion() is None


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ndcg@10", "ndcg_at_10"),
        ("val/ndcg@5", "val/ndcg_at_5"),
        ("/lead//trail/", "lead/trail"),
        ("a/../b", "a/b"),
        ("..hidden", "_..hidden"),
        ("weird!key", "weird_key"),
        ("", "_"),
    ],
)
def test_sanitise_key(key: str, expected: str) -> None:
    assert sanitise_key(key) == expected


def test_artifact_roots(tmp_path: Path) -> None:
    assert artifact_location("s3://bucket/godo") == "s3://bucket/godo"
    # A tracking server's proxied store, in each spelling MLflow accepts.
    for proxied in ("mlflow-artifacts:/", "mlflow-artifacts:///", "mlflow-artifacts:/godo"):
        assert artifact_location(proxied) == proxied
    assert artifact_location(str(tmp_path)) == tmp_path.resolve().as_uri()
    assert default_artifact_root(f"sqlite:///{tmp_path}/mlflow.db") == str(
        tmp_path.resolve() / "mlartifacts"
    )
    assert default_artifact_root("http://mlflow:5000") is None
    assert default_artifact_root("sqlite://") is None


def test_a_tracking_server_keeps_artifacts_in_its_own_store(tmp_path: Path) -> None:
    """With a server, artifacts must not land on the pipeline container's own disk."""
    server = Settings(mlflow_tracking_uri="http://mlflow:5000", data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert server.resolved_mlflow_artifact_root is None
    local = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert local.resolved_mlflow_artifact_root == str(tmp_path / "mlartifacts")
    chosen = Settings(
        mlflow_tracking_uri="http://mlflow:5000",
        mlflow_artifact_root="mlflow-artifacts:///",
        _env_file=None,  # type: ignore[call-arg]
    )
    assert chosen.resolved_mlflow_artifact_root == "mlflow-artifacts:///"


def test_experiment_opens_in_the_classic_ml_layout(store: Path) -> None:
    """New experiments get the kind; old ones and UI guesses are corrected; a kind chosen by
    hand stays."""
    uri = sqlite_uri(store)
    new = ModelRegistry(uri, "godo-kind-new", "unused")
    client = new.client
    assert client.get_experiment(new.experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    for name, before, after in [
        ("godo-kind-old", None, EXPERIMENT_KIND),
        ("godo-kind-guessed", "genai_development_inferred", EXPERIMENT_KIND),
        ("godo-kind-chosen", "forecasting", "forecasting"),
    ]:
        created = client.create_experiment(name)
        if before is not None:
            client.set_experiment_tag(created, EXPERIMENT_KIND_TAG, before)
        registry = ModelRegistry(uri, name, "unused")
        assert registry.experiment_id == created
        assert client.get_experiment(created).tags.get(EXPERIMENT_KIND_TAG) == after, name


def test_log_table_reads_back_as_polars(registry: ModelRegistry) -> None:
    table = pl.DataFrame(
        {"model": ["random", "final_feed"], "ndcg@10": [0.01, None], "version": [None, 3]}
    )
    with registry.start_run("tables") as run:
        run.log_table(table.to_pandas(), "stages.json")
    read = read_table(registry.client, run.run_id, "stages.json")
    assert read is not None
    assert read.to_dicts() == table.to_dicts()
    assert read_table(registry.client, run.run_id, "absent.json") is None
    assert read_table(registry.client, run.run_id, "nested/absent.json") is None
    logged = registry.client.get_run(run.run_id).data.tags["mlflow.loggedArtifacts"]
    assert '"type": "table"' in logged and "stages.json" in logged


def test_rename_and_gate_tags(registry: ModelRegistry, booster: lightgbm.Booster) -> None:
    registry = registry_for(registry, "ranker-gate")
    with registry.start_run("evaluate-2026-06-01-abcd1234") as run:
        version = run.register(booster)
        run.rename(f"retrain-2026-06-01-v{version}-rejected")
    registry.record_gate(
        version,
        passed=False,
        reason="challenger does not beat champion",
        numbers={"gain_low": -0.01, "champion_version": None},
    )
    renamed = registry.client.get_run(run.run_id).info.run_name
    assert renamed == f"retrain-2026-06-01-v{version}-rejected"
    tags = registry.version(version).tags
    assert tags[GATE_TAG] == "rejected"
    assert tags["godo.gate_gain_low"] == "-0.01"
    assert tags["godo.gate_champion_version"] == "none"
    registry.promote(version, "by hand")
    assert registry.version(version).tags[GATE_TAG] == "promoted"
