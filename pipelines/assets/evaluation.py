"""Evaluate the challenger, gate it against the champion, move the alias.

`ranking_evaluation` serves every stage, baseline and the champion to the same holdout users in
the simulator (on the synthetic city: expected likes, superlikes, "going" and graded value per
session with 95% intervals, the oracle on top), scores them on the logged holdout beside it,
and logs the training run (params, metrics, both tables, plots, feature list, model) to MLflow,
registering a new model version. The check `beats_champion` passes when the lower 95% bound
of the challenger's gain over the champion on that unbiased value is above zero. A challenger
that does not beat the champion is a normal night, not an error: the check reports the numbers
at WARN, the run succeeds, and `champion_model` (which re-checks the same verdict, so
materializing it alone cannot bypass the gate) yields nothing, so Dagster shows it not
materialized and the alias stays. Only an evaluation that registered no challenger fails the
check at ERROR; being blocking, it then stops the run before `champion_model`. Publishing
reads the champion only.
"""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl

from models.als import ALSModel
from models.evaluation import plots
from models.feed_model import RerankConfig, candidate_input
from models.ranker import LambdaRanker
from pipelines.assets.common import app_tables, frame_output
from pipelines.assets.synthetic import city_now
from pipelines.assets.training import (
    ALS_ARTIFACT,
    CANDIDATES_PER_SOURCE,
    RANKER_ARTIFACT,
    challenger_dir,
    cutoff_of,
)
from pipelines.resources import LocalStorage, MLflowResource, SyntheticCityResource
from pipelines.tracking import GATE_TAG, ModelRegistry, TrainingRun
from pipelines.ui_metadata import plots_markdown
from recommender.feed import EASE_PARAMS, ITEM_KNN_PARAMS
from recommender.fitting import MAX_EXAMPLES, WINDOW_DAYS
from recommender.holdout import (
    CANDIDATES_TABLE,
    CHALLENGER,
    CHAMPION,
    GATE_METRIC,
    LIST_LENGTH,
    MIN_GAIN,
    ONLINE_COLUMNS,
    ORACLE,
    STAGES_TABLE,
    GateDecision,
    Holdout,
    StageModels,
    activity_buckets,
    baseline_lists,
    candidate_recall,
    feed_lists,
    gate,
    key_metrics,
    ranker_scores,
    score_table,
    simulated_online,
    split_at,
    with_online,
)
from sources.synthetic.online import SimulatedHoldout

SUMMARY_METRICS = ("ndcg@10", "recall@20", "map@10", "mrr", "coverage", "novelty", "ild@10")
ONLINE_SUMMARY = tuple(f"online_{c}" for c in ONLINE_COLUMNS)


class EvaluationConfig(dg.Config):
    max_users: int = 5000
    seed: int = 0


def load_models(directory: Path) -> StageModels:
    return StageModels(
        als=ALSModel.load(directory / ALS_ARTIFACT),
        ranker=LambdaRanker.load(directory / RANKER_ARTIFACT),
    )


def champion_models(registry: ModelRegistry, storage: LocalStorage) -> tuple[int, StageModels]:
    """The champion's version and artifacts, downloaded from the registry."""
    champion = registry.champion()
    if champion is None:
        raise dg.Failure(description="no champion model yet: run the retrain_and_evaluate job")
    return champion.version, version_models(registry, storage, champion.version)


def version_models(registry: ModelRegistry, storage: LocalStorage, version: int) -> StageModels:
    """A registered version's artifacts (the champion's, or an experiment arm's)."""
    folder = storage.folder("models", "versions", f"v{version}")
    return load_models(registry.download_bundle(version, folder))


def _markdown(table: pl.DataFrame, metrics: tuple[str, ...], sort: str) -> str:
    columns = ["model", *[c for c in metrics if c in table.columns]]
    rows = table.filter(pl.col(sort).is_not_null()).sort(sort, descending=True)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows.select(columns).iter_rows():
        cells = [row[0], *("" if v is None else f"{v:.4f}" for v in row[1:])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _summary(table: pl.DataFrame) -> str:
    """Simulated online table first (what decides), the logged holdout below it."""
    parts = []
    if table["online_value"].is_not_null().any():
        parts += [
            "**Simulated online** (one session per holdout user in the simulator; value = "
            "expected graded relevance per session, 95% bootstrap interval over users)",
            _markdown(table, ONLINE_SUMMARY, "online_value"),
        ]
    parts += [
        "**Logged holdout** (what users did with what the old app showed them after the "
        "cutoff: rewards predicting exposure, reported but not gating)",
        _markdown(table, SUMMARY_METRICS, "ndcg@10"),
    ]
    return "\n\n".join(parts)


def simulation_for(
    context: dg.AssetExecutionContext, city: SyntheticCityResource, holdout: Holdout
) -> SimulatedHoldout | None:
    """The simulator at the holdout's cutoff, or None without a synthetic city.

    The city's `now` is the one its activity was simulated at (the latest materialization),
    else the resource's configured `now` (a run on another instance, as in tests).
    """
    if not city.enabled:
        return None
    now = city_now(context) or (datetime.fromisoformat(city.now) if city.now else None)
    if now is None:
        return None
    return SimulatedHoldout.at(
        city.world(now),
        city.behaviour_config(),
        holdout.cutoff,
        holdout.users["user_id"].to_numpy(),
        holdout.swipes,
        holdout.attendance,
    )


def _plots(
    folder: Path,
    table: pl.DataFrame,
    buckets: pl.DataFrame,
    scores: pl.DataFrame,
    ranker: LambdaRanker,
) -> list[Path]:
    written = [
        plots.metric_by_model(table, "ndcg@10", folder / "ndcg_by_model.png"),
        plots.metrics_by_model(
            table, ["ndcg@10", "recall@20", "map@10", "mrr"], folder / "metrics_by_model.png"
        ),
        plots.metric_by_bucket(buckets, "ndcg@10", folder / "ndcg_by_activity.png"),
        plots.feature_importance(ranker.feature_importance(), folder / "feature_importance.png"),
    ]
    if not scores.is_empty():
        written.append(plots.score_distributions(scores, folder / "score_distributions.png"))
    return written


def _log_run(
    run: TrainingRun,
    *,
    challenger: StageModels,
    holdout: Holdout,
    recall: dict[str, float],
    figures: list[Path],
    bundle: Path,
) -> None:
    """Params, the feature list, the plots and the bundle: what is known before the version."""
    run.log_params(
        {
            **{f"als.{k}": v for k, v in vars(challenger.als.params).items()},
            **{f"ranker.{k}": v for k, v in vars(challenger.ranker.params).items()},
            **{f"ease.{k}": v for k, v in vars(EASE_PARAMS).items()},
            **{f"item_knn.{k}": v for k, v in vars(ITEM_KNN_PARAMS).items()},
            "ranker.best_iteration": challenger.ranker.best_iteration,
            "ranker.validation_ndcg@10": challenger.ranker.validation_ndcg,
            "holdout.cutoff": holdout.cutoff.isoformat(),
            "holdout.users": holdout.users.height,
            "holdout.judgements": holdout.test.height,
            "training.window_days": WINDOW_DAYS,
            "training.max_examples": MAX_EXAMPLES,
            "candidates.per_source": CANDIDATES_PER_SOURCE,
        }
    )
    run.log_table(
        pl.DataFrame(
            {"source": list(recall), "value": list(recall.values())},
            schema={"source": pl.Utf8, "value": pl.Float64},
        ).to_pandas(),
        CANDIDATES_TABLE,
    )
    run.log_dict(list(challenger.ranker.features), "features.json")
    for figure in figures:
        run.log_artifact(figure, "plots")
    run.log_bundle(bundle)


def _log_verdict(
    run: TrainingRun,
    registry: ModelRegistry,
    *,
    version: int,
    table: pl.DataFrame,
    recall: dict[str, float],
) -> GateDecision:
    """The stage table (every metric of every model), the key metrics, and the gate's
    verdict on the registered version's tags."""
    run.log_table(table.to_pandas(), STAGES_TABLE)
    run.log_metrics(key_metrics(table, recall))
    decision = gate(table, MIN_GAIN)
    registry.record_gate(
        version,
        passed=decision.passed,
        reason=decision.reason,
        numbers={
            "metric_value": decision.challenger,
            "champion_value": decision.champion,
            "gain_low": decision.gain_low,
            "gain_high": decision.gain_high,
            "champion_version": _version_of(table, CHAMPION),
        },
    )
    run.set_tags({GATE_TAG: "passed" if decision.passed else "rejected"})
    return decision


def feed_example(scored: pl.DataFrame, events: pl.DataFrame, users: int = 3) -> pl.DataFrame:
    """The candidate rows of the first `users` users: the registered model's input example."""
    first = scored["user_id"].unique().sort().head(users)
    rows = scored.filter(pl.col("user_id").is_in(first.implode()))
    return rows.join(
        events.select("event_id", "category").unique("event_id", keep="first"),
        on="event_id",
        how="left",
    )


@dg.asset(
    group_name="evaluation",
    deps=["als_model", "ranker_model"],
    kinds={"mlflow", "polars"},
)
def ranking_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    training_window: pl.DataFrame,
    app_swipes: pl.DataFrame,
    app_attendance: pl.DataFrame,
    app_friendships: pl.DataFrame,
    app_users: pl.DataFrame,
    events: pl.DataFrame,
    geocoded_venues: pl.DataFrame,
    synthetic_oracle: pl.DataFrame,
    storage: LocalStorage,
    mlflow: MLflowResource,
    city: SyntheticCityResource,
) -> dg.Output[pl.DataFrame]:
    """Every stage and baseline served in simulation and scored on the time-based holdout;
    the run is logged and registered."""
    tables = app_tables(
        app_swipes, app_attendance, events, geocoded_venues, app_users, app_friendships
    )
    holdout = split_at(
        cutoff_of(training_window), tables, max_users=config.max_users, seed=config.seed
    )
    bundle = challenger_dir(storage)
    challenger = load_models(bundle)
    lists = baseline_lists(holdout, challenger.als)
    feed = feed_lists(holdout, challenger, per_source=CANDIDATES_PER_SOURCE)
    recall = candidate_recall(feed.pop("candidates"), holdout.test)
    scored = feed.pop("scored")
    scores = ranker_scores(scored, holdout.test)
    example = feed_example(scored, holdout.events)
    del scored
    lists |= feed
    registry = mlflow.registry()
    versions: dict[str, int] = {}
    if registry.champion() is not None:
        versions[CHAMPION], champion = champion_models(registry, storage)
        lists[CHAMPION] = feed_lists(holdout, champion, per_source=CANDIDATES_PER_SOURCE)[
            CHALLENGER
        ]
    if not synthetic_oracle.is_empty():
        lists[ORACLE] = synthetic_oracle.join(holdout.users, on="user_id", how="semi").filter(
            pl.col("rank") <= LIST_LENGTH
        )
    simulation = simulation_for(context, city, holdout)
    online = None if simulation is None else simulated_online(simulation, lists, seed=config.seed)
    buckets = activity_buckets(lists, holdout)
    folder = storage.folder("evaluation", context.run.run_id)
    trained_before = holdout.cutoff.date().isoformat()
    with registry.start_run(
        f"evaluate-{trained_before}-{context.run.run_id[:8]}",
        tags={"dagster_run_id": context.run.run_id, "cutoff": holdout.cutoff.isoformat()},
    ) as run:
        figures = _plots(folder, score_table(lists, holdout), buckets, scores, challenger.ranker)
        _log_run(
            run,
            challenger=challenger,
            holdout=holdout,
            recall=recall,
            figures=figures,
            bundle=bundle,
        )
        versions[CHALLENGER] = run.register_feed_model(
            bundle,
            als_file=ALS_ARTIFACT,
            ranker_file=RANKER_ARTIFACT,
            config=RerankConfig(n=LIST_LENGTH, candidates_per_source=CANDIDATES_PER_SOURCE),
            input_example=candidate_input(example, challenger.ranker.features),
            description=f"Feed model (ALS, ranker, re-rank) trained before "
            f"{holdout.cutoff.isoformat()}",
            tags={"cutoff": holdout.cutoff.isoformat()},
        )
        table = with_online(score_table(lists, holdout, versions), online)
        decision = _log_verdict(
            run, registry, version=versions[CHALLENGER], table=table, recall=recall
        )
        run.rename(
            f"retrain-{trained_before}-v{versions[CHALLENGER]}-"
            f"{'passed' if decision.passed else 'rejected'}"
        )
        mlflow_run = run.run_id
    links = mlflow.links(registry)
    mlflow_links = {
        "mlflow_run": dg.MetadataValue.url(links.run(mlflow_run)),
        "model_version": dg.MetadataValue.url(links.model_version(versions[CHALLENGER])),
    }
    # The version registered holds the booster `ranker_model` trained: its page links there too.
    context.log_event(
        dg.AssetObservation(
            asset_key="ranker_model",
            metadata={"registered_version": versions[CHALLENGER], **mlflow_links},
        )
    )
    return frame_output(
        table,
        challenger_version=versions[CHALLENGER],
        champion_version=versions.get(CHAMPION, 0),
        mlflow_run_id=mlflow_run,
        **mlflow_links,
        holdout_users=holdout.users.height,
        cutoff=holdout.cutoff.isoformat(),
        summary=dg.MetadataValue.md(_summary(table)),
        plots=dg.MetadataValue.md(plots_markdown(figures)),
        **{k: round(v, 4) for k, v in recall.items()},
    )


@dg.asset_check(
    asset=ranking_evaluation,
    blocking=True,
    description=(
        f"The lower 95% bound of the new model's gain over the champion on the unbiased "
        f"{GATE_METRIC} (simulated online on the synthetic city) is above {MIN_GAIN}. "
        f"Not beating it is a WARN (the champion stays); no challenger at all is an ERROR."
    ),
)
def beats_champion(ranking_evaluation: pl.DataFrame) -> dg.AssetCheckResult:
    """The gate's verdict with its numbers; WARN on a rejection, ERROR on a broken evaluation.

    Why WARN: keeping the champion is the gate doing its job on most nights, and an ERROR
    would fail the run (the check is blocking) and page whoever watches failures."""
    decision = gate(ranking_evaluation, MIN_GAIN)
    registered = _version_of(ranking_evaluation, CHALLENGER) is not None
    return dg.AssetCheckResult(
        passed=decision.passed,
        severity=dg.AssetCheckSeverity.WARN if registered else dg.AssetCheckSeverity.ERROR,
        description=decision.reason if decision.passed else f"champion kept: {decision.reason}",
        metadata={
            "metric": decision.metric,
            "challenger": decision.challenger,
            "champion": decision.champion if decision.champion is not None else "none",
            "gain_low": decision.gain_low if decision.gain_low is not None else "none",
            "gain_high": decision.gain_high if decision.gain_high is not None else "none",
        },
    )


def _version_of(table: pl.DataFrame, model: str) -> int | None:
    row = table.filter(pl.col("model") == model)
    return None if row.is_empty() else row["version"].item()


@dg.asset(group_name="evaluation", kinds={"mlflow"}, output_required=False)
def champion_model(
    context: dg.AssetExecutionContext, ranking_evaluation: pl.DataFrame, mlflow: MLflowResource
) -> Iterator[dg.MaterializeResult]:
    """Move the `champion` alias to the evaluated version, if and only if it passed the gate.

    A rejected challenger materializes nothing (the step succeeds, the asset keeps its last
    materialization): the current champion stays and publishes."""
    decision = gate(ranking_evaluation, MIN_GAIN)
    if not decision.passed:
        context.log.info("champion kept: %s", decision.reason)
        return
    new = _version_of(ranking_evaluation, CHALLENGER)
    if new is None:
        raise dg.Failure(description="the evaluation registered no model version")
    registry = mlflow.registry()
    current = registry.champion()
    compared = _version_of(ranking_evaluation, CHAMPION)
    if (current.version if current else None) != compared:
        raise dg.Failure(
            description=f"the champion moved since the evaluation (evaluated against {compared}, "
            f"now {current.version if current else None}): evaluate again"
        )
    registry.promote(new, reason=decision.reason)
    yield dg.MaterializeResult(
        metadata={
            "version": new,
            "replaced": compared or 0,
            "reason": decision.reason,
            "model_version": dg.MetadataValue.url(mlflow.links(registry).model_version(new)),
        }
    )
