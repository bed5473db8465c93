# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ranking models side by side
#
# Every nightly evaluation is an MLflow run of the ranking experiment: the params of the models
# it trained, every stage and baseline scored on the same time-based holdout (the run's
# `stages.json` table: one row per stage, every metric), a few key metrics, and a registered
# model version (the whole feed as a pyfunc). This notebook puts the runs next to each other,
# says which version holds the `champion` alias (the only model that publishes), plots the
# gate metric across runs, and loads the champion to rank candidates.
#
# Reads MLflow through one `MlflowClient` on the configured store, as `pipelines.tracking`
# does: `GODO_MLFLOW_TRACKING_URI` (default: the SQLite file under `GODO_DATA_DIR`),
# `GODO_MLFLOW_EXPERIMENT` and `GODO_MLFLOW_MODEL_NAME`. `GODO_NOTEBOOK_FIGURES` also saves
# the figures as PNG (see `_shared.py`). The MLflow UI (`make mlflow`) shows the same runs
# with each run's own plots.
#
# A jupytext notebook: `make notebooks` opens it in JupyterLab, VS Code runs its cells with
# the project's kernel (`jupytext --to ipynb` writes a classic notebook), or run it as a
# script: `python3 dev.py run -- python notebooks/compare_models.py`.

# %%
from datetime import UTC, datetime

import matplotlib.pyplot as plt
import mlflow.pyfunc
import polars as pl
from _shared import Figures, mlflow_client, settings, use_mlflow_store

from pipelines.tracking import CHAMPION as CHAMPION_ALIAS
from pipelines.tracking import read_table, sanitise_key
from recommender.holdout import CHALLENGER, CHAMPION, GATE_METRIC, STAGES_TABLE

client = mlflow_client()
figures = Figures()
config = settings()
EXPERIMENT, MODEL_NAME = config.mlflow_experiment, config.mlflow_model_name
# The gate's metric is the simulated online value: column `online_value` of each run's stage
# table (`stages.json`), which holds every metric of every stage (`ndcg@10`, ...).
METRIC = sanitise_key(GATE_METRIC)
COLUMN = f"online_{GATE_METRIC}"
print(f"tracking URI: {client.tracking_uri}\nexperiment: {EXPERIMENT}, model: {MODEL_NAME}")

experiment = client.get_experiment_by_name(EXPERIMENT)
if experiment is None:
    raise LookupError(f"no MLflow experiment {EXPERIMENT!r}: has the evaluation asset run?")
experiment_id = experiment.experiment_id

# %% [markdown]
# ## The runs
# One row per evaluation run, oldest first: when it ran, which Dagster run logged it (to find
# its logs in the Dagster UI), the model version it registered, and the gate metric of the new
# feed next to the baselines it has to beat. A run whose `final_feed` does not beat the
# `champion` column (the serving model, scored on the same holdout) was kept out by the gate.

# %%
runs = client.search_runs([experiment_id], order_by=["attributes.start_time ASC"], max_results=1000)
versions_by_run: dict[str, int] = {}
for model_version in client.search_model_versions(f"name = '{MODEL_NAME}'"):
    if model_version.run_id:
        versions_by_run[model_version.run_id] = int(model_version.version)

registered = (
    client.get_registered_model(MODEL_NAME)
    if client.search_registered_models(f"name = '{MODEL_NAME}'")
    else None
)
champion_version: int | None = (
    int(registered.aliases[CHAMPION_ALIAS])
    if registered is not None and CHAMPION_ALIAS in registered.aliases
    else None
)


def stage_tables() -> dict[str, pl.DataFrame]:
    """Each evaluated run's stage table, by run id (a version registered by hand has none)."""
    tables = {run.info.run_id: read_table(client, run.info.run_id, STAGES_TABLE) for run in runs}
    return {run_id: table for run_id, table in tables.items() if table is not None}


def stage_metrics(run_id: str, column: str = COLUMN) -> dict[str, float]:
    """`{stage: value}` of one column of a run's stage table (stages without it left out)."""
    table = tables_by_run.get(run_id)
    if table is None or column not in table.columns:
        return {}
    rows = table.filter(pl.col(column).is_not_null()).select("model", column).iter_rows()
    return {stage: float(value) for stage, value in rows}


tables_by_run = stage_tables()
runs_table = pl.DataFrame(
    [
        {
            "run_name": run.info.run_name,
            "started": datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC),
            "status": run.info.status,
            "version": versions_by_run.get(run.info.run_id),
            "serving": versions_by_run.get(run.info.run_id) == champion_version,
            "dagster_run": (run.data.tags.get("dagster_run_id") or "")[:8],
            **{
                stage: stage_metrics(run.info.run_id).get(stage)
                for stage in ("random", "popularity", CHAMPION, CHALLENGER)
            },
            "candidate_recall": run.data.metrics.get("candidate_recall"),
        }
        for run in runs
    ],
    schema_overrides={"version": pl.Int64, CHAMPION: pl.Float64},
)
print(f"{METRIC} of the feed ({CHALLENGER}), the serving model ({CHAMPION}) and baselines:")
with pl.Config(tbl_cols=-1, tbl_width_chars=200):
    print(runs_table)

# %% [markdown]
# ## Every stage, run by run
# Where a gain comes from: candidate generation (ALS alone), the learned ranker, or the final
# re-ranking; and how far the feed is from the `oracle`, which ranks by the synthetic city's
# hidden utility (a ceiling that exists only in the synthetic city). Stages are rows, runs are
# columns, the values are the gate metric on each run's holdout. Holdouts move with the
# cutoff, so compare stages within a column before comparing columns.

# %%
metric_by_run: dict[str, dict[str, float]] = {
    run.info.run_id: stage_metrics(run.info.run_id) for run in runs
}
column_of = {
    run.info.run_id: f"v{versions_by_run.get(run.info.run_id, '?')} {run.info.run_name}"
    for run in runs
}
# Baselines first, then the pipeline's stages in the order they run, then the references.
STAGE_ORDER = ("random", "popularity", "als", "ranker", CHALLENGER, CHAMPION, "oracle")
logged = {stage for values in metric_by_run.values() for stage in values}
stages = [stage for stage in STAGE_ORDER if stage in logged] + sorted(logged - set(STAGE_ORDER))
stage_table = pl.DataFrame(
    {
        "stage": stages,
        **{
            column_of[run_id]: [values.get(stage) for stage in stages]
            for run_id, values in metric_by_run.items()
        },
    }
)
with pl.Config(tbl_cols=-1, tbl_width_chars=200):
    print(stage_table)

# %% [markdown]
# ## Params that changed
# The hyper-parameters and data sizes each run logged. Only the ones that differ between runs
# are kept (all of them when there is a single run): a metric that moved with no param change
# moved because the data did.

# %%
param_names = sorted({name for run in runs for name in run.data.params})
params_table = pl.DataFrame(
    {
        "param": param_names,
        **{
            column_of[run.info.run_id]: [run.data.params.get(name) for name in param_names]
            for run in runs
        },
    }
)
if len(runs) > 1:
    params_table = params_table.filter(pl.concat_list(pl.exclude("param")).list.n_unique() > 1)
with pl.Config(tbl_cols=-1, tbl_rows=-1, tbl_width_chars=200, fmt_str_lengths=40):
    print(params_table)

# %% [markdown]
# ## The champion
# Publishing only ever loads the version under the `champion` alias. Each promoted version's
# tags say when and why it was promoted (the gate's reason); the champion's run holds the
# plots training logged (`plots/`), the feature list and the model bundle.

# %%
run_names = {run.info.run_id: run.info.run_name for run in runs}
versions_table = pl.DataFrame(
    [
        {
            "version": int(v.version),
            "champion": int(v.version) == champion_version,
            "run_name": run_names.get(v.run_id or ""),
            "promoted_at": v.tags.get("promoted_at"),
            "promoted_reason": v.tags.get("promoted_reason"),
            "trained_before": v.tags.get("cutoff"),
        }
        for v in client.search_model_versions(f"name = '{MODEL_NAME}'")
    ],
    schema={
        "version": pl.Int64,
        "champion": pl.Boolean,
        "run_name": pl.Utf8,
        "promoted_at": pl.Utf8,
        "promoted_reason": pl.Utf8,
        "trained_before": pl.Utf8,
    },
).sort("version")
with pl.Config(tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=60):
    print(versions_table)

champion_run_id: str | None = None
if champion_version is None:
    print(f"{MODEL_NAME} has no {CHAMPION_ALIAS!r} alias yet: nothing can publish")
else:
    champion_run_id = client.get_model_version(MODEL_NAME, str(champion_version)).run_id
    if champion_run_id:
        plots = [artifact.path for artifact in client.list_artifacts(champion_run_id, "plots")]
        print(f"champion: version {champion_version}, run {champion_run_id}; its plots: {plots}")

# %% [markdown]
# ## The champion as a model
# A registered version is the whole feed model as an MLflow pyfunc: the ALS candidate
# generator, the LightGBM ranker and the re-rank configuration. Its signature takes candidate
# rows (user_id, event_id, category, the ranker's features: `models.feed_model.candidate_input`
# builds them from `recommender.feed.scored`'s frame) and returns each user's ranked list;
# `n` is the list length. Here it ranks its own input example (a few users' candidates from
# its evaluation). Loading reads MLflow's global URIs, so they are pointed at the store first.

# %%
champion_ranked: pl.DataFrame | None = None
champion_inputs: list[str] = []
if champion_version is not None:
    use_mlflow_store()
    feed_model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}")
    signature = feed_model.metadata.signature
    if signature is None:  # a version registered before the feed was a pyfunc
        print(f"version {champion_version} has no signature: retrain to register the feed model")
    else:
        champion_inputs = signature.inputs.input_names()
        champion_ranked = pl.from_pandas(
            feed_model.predict(feed_model.input_example, params={"n": 5})
        )
        print(f"inputs: {champion_inputs[:4]} + {len(champion_inputs) - 4} more features")
        print(champion_ranked)

# %% [markdown]
# ## The gate metric across runs
# Left: each stage's value per evaluated run, in run order (the serving version's run is
# shaded; versions registered by hand, without an evaluation, are left out). A steady
# `final_feed` line above `popularity` is what a healthy nightly retrain looks like; a drop
# shared by every stage points at the holdout (fewer users, a quiet week), not the model.
# Right: the stages of the serving version's run, where `champion` is the model it replaced.

# %%
evaluated = [run for run in runs if metric_by_run[run.info.run_id]]
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
positions = list(range(len(evaluated)))
for stage in stages:
    values = [metric_by_run[run.info.run_id].get(stage, float("nan")) for run in evaluated]
    left.plot(positions, values, marker="o", label=stage)
for index, run in enumerate(evaluated):
    if run.info.run_id == champion_run_id:
        left.axvspan(index - 0.2, index + 0.2, color="gold", alpha=0.3)
left.set_xticks(positions, [column_of[run.info.run_id] for run in evaluated])
left.tick_params(axis="x", labelrotation=30)
left.set(title=f"{METRIC} per stage, by run", ylabel=METRIC)
left.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))

shown_run = champion_run_id if champion_run_id in metric_by_run else None
if shown_run is None and evaluated:
    shown_run = evaluated[-1].info.run_id
shown = metric_by_run.get(shown_run or "", {})
right.barh(stages, [shown.get(stage, 0.0) for stage in stages], color="#357")
right.invert_yaxis()
right.set(title=f"{METRIC} by stage, {column_of.get(shown_run or '', 'no run')}", xlabel=METRIC)
figures.keep("metric_across_runs", fig)

# %% [markdown]
# ## Summary
# Plain values, for a quick look and for the tests that run this notebook on a tiny city.

# %%
run_ids = [run.info.run_id for run in runs]
trained_by = {run.info.run_id: run.data.tags.get("dagster_run_id") for run in runs}
versions = {run_id: versions_by_run.get(run_id) for run_id in run_ids}
champion_ranked_rows = None if champion_ranked is None else champion_ranked.to_dicts()
figure_names = list(figures.figures)
figure_files = [str(path) for path in figures.files]
print(f"{len(run_ids)} runs, champion: version {champion_version} (run {champion_run_id})")
