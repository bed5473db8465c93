"""The champion gate in a Dagster run: a rejection is a successful run with a WARN, not a failure.

The real check (`beats_champion`) and the real promotion (`champion_model`) run against a real
MLflow registry (SQLite under tmp_path); only the evaluation table is given, by an asset of
the same key, so each verdict is exact and the run takes a second rather than a pipeline.
"""

from __future__ import annotations

import dagster as dg
import lightgbm
import numpy as np
import polars as pl
import pytest

from godo.run_cli import check_warnings
from pipelines.assets.evaluation import beats_champion, champion_model
from pipelines.resources import MLflowResource
from pipelines.tracking import ModelRegistry


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> MLflowResource:
    store = tmp_path_factory.mktemp("gate-mlflow")
    return MLflowResource(
        tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
        artifact_root=str(store / "artifacts"),
        experiment="gate-tests",
        model_name="gate-ranker",
        ui_url="http://mlflow.example:5000/",
    )


def _register(registry: ModelRegistry) -> int:
    rng = np.random.default_rng(7)
    data = lightgbm.Dataset(
        rng.normal(size=(40, 3)), label=rng.integers(0, 3, size=40), group=[10] * 4
    )
    params = {"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 2, "seed": 7}
    booster = lightgbm.train(params, data, num_boost_round=3)
    with registry.start_run("gate-test") as run:
        return run.register(booster)


def _evaluation(challenger: int, champion: int, gain_low: float) -> pl.DataFrame:
    """What `ranking_evaluation` returns, reduced to what the gate reads."""
    return pl.DataFrame(
        {
            "model": ["final_feed", "champion"],
            "version": [challenger, champion],
            "online_value": [0.50 + gain_low + 0.01, 0.50],
            "gain": [gain_low + 0.01, None],
            "gain_low": [gain_low, None],
            "gain_high": [gain_low + 0.02, None],
        }
    )


def _gate_run(table: pl.DataFrame, mlflow: MLflowResource) -> dg.ExecuteInProcessResult:
    @dg.asset(name="ranking_evaluation", group_name="evaluation")
    def given_evaluation() -> pl.DataFrame:
        """The evaluation table under test."""
        return table

    return dg.materialize(
        [given_evaluation, beats_champion, champion_model],
        resources={"mlflow": mlflow},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _the_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "beats_champion"
    ]
    return evaluation


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        e.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }


def test_a_rejected_challenger_is_a_successful_run_that_keeps_the_champion(
    mlflow: MLflowResource,
) -> None:
    registry = mlflow.registry()
    champion = _register(registry)
    registry.promote(champion, reason="test: the current champion")
    challenger = _register(registry)

    result = _gate_run(_evaluation(challenger, champion, gain_low=-0.01), mlflow)

    assert result.success
    check = _the_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description is not None and check.description.startswith("champion kept:")
    assert check.metadata["gain_low"].value == pytest.approx(-0.01)
    assert check.metadata["gain_high"].value == pytest.approx(0.01)
    assert check.metadata["champion"].value == pytest.approx(0.50)
    # The promotion step ran and succeeded, but materialized nothing: the alias stayed.
    assert "champion_model" in {e.step_key for e in result.get_step_success_events()}
    assert _materialized(result) == {"ranking_evaluation"}
    assert registry.champion().version == champion  # type: ignore[union-attr]
    assert not result.get_step_failure_events()
    # `godo run retrain_and_evaluate` says so under its "succeeded" line.
    (line,) = check_warnings(result)
    assert line.startswith("beats_champion on ranking_evaluation warned: champion kept:")


def test_a_winning_challenger_is_promoted_and_links_to_its_version(
    mlflow: MLflowResource,
) -> None:
    registry = mlflow.registry()
    champion = _register(registry)
    registry.promote(champion, reason="test: the current champion")
    challenger = _register(registry)

    result = _gate_run(_evaluation(challenger, champion, gain_low=0.02), mlflow)

    assert result.success
    check = _the_check(result)
    assert check.passed and check.description is not None
    assert "beats champion" in check.description
    assert check_warnings(result) == []
    assert _materialized(result) == {"ranking_evaluation", "champion_model"}
    (promotion,) = result.asset_materializations_for_node("champion_model")
    assert promotion.metadata["version"].value == challenger
    assert promotion.metadata["replaced"].value == champion
    assert promotion.metadata["model_version"] == dg.MetadataValue.url(
        f"http://mlflow.example:5000/#/models/gate-ranker/versions/{challenger}"
    )
    assert registry.champion().version == challenger  # type: ignore[union-attr]


def test_an_evaluation_without_a_challenger_fails_the_run_before_the_promotion(
    mlflow: MLflowResource,
) -> None:
    registry = mlflow.registry()
    champion = _register(registry)
    registry.promote(champion, reason="test: the current champion")
    broken = _evaluation(0, champion, gain_low=0.5).filter(pl.col("model") != "final_feed")

    result = _gate_run(broken, mlflow)

    assert not result.success
    check = _the_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    # Blocking at ERROR: the promotion never ran.
    assert "champion_model" not in {e.step_key for e in result.get_step_success_events()}
    assert _materialized(result) == {"ranking_evaluation"}
    assert registry.champion().version == champion  # type: ignore[union-attr]
