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
# # A first look at the warehouse
#
# What the pipeline left in DuckDB after `godo demo`: how much behaviour there is, how strongly
# the deck position shapes swipes (the position bias every ranking model must correct for),
# and what the published lists are made of. Open with `jupytext --to ipynb` or run as a script;
# `GODO_WAREHOUSE` points it at another warehouse file.

# %%
import os
from pathlib import Path

import duckdb
import polars as pl

from godo.settings import get_settings

WAREHOUSE = Path(os.environ.get("GODO_WAREHOUSE", get_settings().warehouse_path))
con = duckdb.connect(str(WAREHOUSE), read_only=True)


def table(name: str) -> pl.DataFrame:
    return con.sql(f"SELECT * FROM godo.{name}").pl()


# %%
swipes = table("app_swipes")
counts = {
    name: table(name).height
    for name in ("app_users", "events", "app_swipes", "app_attendance", "ranked_feed")
}
print(counts)

# %% [markdown]
# ## Position bias: later cards are swiped less, and liked less

# %%
by_position = (
    swipes.group_by("position")
    .agg(
        swipes=pl.len(),
        like_rate=pl.col("action").is_in(["like", "superlike"]).mean(),
    )
    .sort("position")
)
print(by_position.head(10))
assert by_position["swipes"][0] > by_position["swipes"][-1], "position bias should be visible"

# %% [markdown]
# ## What the published lists are made of

# %%
top_n = table("ranked_feed")
print(top_n.group_by("reason").agg(rows=pl.len(), users=pl.col("user_id").n_unique()))
print(
    top_n.join(table("events").select("event_id", "category"), on="event_id")
    .group_by("category")
    .len()
    .sort("len", descending=True)
)

# %% [markdown]
# ## How the stages compare on the holdout
# `ranking_evaluation` scores every stage and baseline on the newest days of swipes; the same
# table, with plots, is in the MLflow UI under the `godo-ranking` experiment.

# %%
evaluation = table("ranking_evaluation")
print(evaluation.select("model", "version", "ndcg@10", "recall@20", "coverage", "novelty"))
assert evaluation.filter(pl.col("model") == "random")["ndcg@10"].item() < max(
    evaluation.filter(pl.col("model") != "random")["ndcg@10"]
), "some model should beat random"
