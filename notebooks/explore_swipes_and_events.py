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
# # Swipes and events in the warehouse
#
# What the pipeline left in DuckDB: how much behaviour there is and when it happened, how
# strongly the deck position shapes swipes (the position bias every ranking model has to live
# with), and what the catalogue is made of per metro and category.
#
# Reads the warehouse file read-only, so it can stay open while the pipeline runs. Where it
# looks comes from Godo's settings: `GODO_WAREHOUSE` (or `GODO_DATA_DIR`) points it at another
# warehouse, `GODO_NOTEBOOK_FIGURES` also saves every figure there as PNG (see `_shared.py`).
#
# A jupytext notebook: `make notebooks` opens it in JupyterLab, VS Code runs its cells with
# the project's kernel (`jupytext --to ipynb` writes a classic notebook), or run it as a
# script: `python3 dev.py run -- python notebooks/explore_swipes_and_events.py`.

# %%
import matplotlib.pyplot as plt
import polars as pl
from _shared import Figures, open_warehouse, read_table, row_count, warehouse_path

con = open_warehouse()
figures = Figures()
print(f"warehouse: {warehouse_path()}")

# %% [markdown]
# ## How much is there
# A first sanity check after a pipeline run: a table far smaller than yesterday's means an
# extract or an ingest partition went missing, and the sizes decide whether an analysis can
# run on everything or needs a sample.

# %%
TABLES = (
    "app_users",
    "app_friendships",
    "events",
    "venues",
    "app_swipes",
    "app_attendance",
    "ranked_feed",
)
counts: dict[str, int] = {name: row_count(con, name) for name in TABLES}
print(pl.DataFrame({"table": list(counts), "rows": list(counts.values())}))

# %%
swipes = read_table(con, "app_swipes")
events = read_table(con, "events")
window = read_table(con, "training_window")
cutoff = window["cutoff"].item() if window.height else None
first, last = swipes["created_at"].min(), swipes["created_at"].max()
print(f"{swipes.height} swipes from {first!s} to {last!s}")
print(f"training cutoff: {cutoff} (later swipes are the evaluation holdout)")

# %% [markdown]
# ## Swipes per day
# Gaps or sudden drops are data problems (an app outage, an extract that lost a day) before
# they are behaviour. The dashed line is the training cutoff: models learn from the days
# before it and are scored on the days after, so a thin holdout makes every metric noisy.

# %%
daily = (
    swipes.with_columns(day=pl.col("created_at").dt.date())
    .group_by("day")
    .agg(
        swipes=pl.len(),
        likes=pl.col("action").is_in(["like", "superlike"]).sum(),
        users=pl.col("user_id").n_unique(),
    )
    .sort("day")
)
print(daily.tail(10))

fig, ax = plt.subplots(figsize=(10, 3.5))
ax.bar(daily["day"].to_list(), daily["swipes"].to_list(), color="#9ab", label="swipes")
ax.bar(daily["day"].to_list(), daily["likes"].to_list(), color="#357", label="likes")
if cutoff is not None:
    ax.axvline(cutoff, color="black", linestyle="--", linewidth=1, label="training cutoff")
ax.set(title="Swipes per day (UTC)", ylabel="swipes")
ax.legend()
figures.keep("swipes_per_day", fig)

# %% [markdown]
# ## Position bias
# Cards further down the deck are seen by fewer people and liked less often, whatever they
# are. A like at position 0 is weaker evidence than a like at position 20: a model trained on
# raw likes learns "what we used to show first", and offline metrics computed on logged swipes
# inherit the same bias. How steep these curves are says how much that matters.

# %%
by_position = (
    swipes.filter(pl.col("position").is_not_null())
    .group_by("position")
    .agg(
        swipes=pl.len(),
        like_rate=pl.col("action").is_in(["like", "superlike"]).mean(),
    )
    .sort("position")
)
print(by_position.head(10))

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
left.bar(by_position["position"].to_list(), by_position["swipes"].to_list(), color="#9ab")
left.set(title="Swipes by deck position", xlabel="position", ylabel="swipes")
right.plot(by_position["position"].to_list(), by_position["like_rate"].to_list(), marker=".")
right.set(title="Like rate by deck position", xlabel="position", ylabel="likes / swipes")
right.set_ylim(bottom=0)
figures.keep("position_bias", fig)

# %% [markdown]
# ## Events per category and metro
# The catalogue the models choose from. A category with a handful of events cannot fill many
# feeds however much users like it; a metro with few events gets more repetitive feeds and a
# stronger popularity baseline. The like rate per category shows what users respond to, next
# to what there is.

# %%
per_category_metro = events.group_by("metro", "category").agg(events=pl.len())
print(
    per_category_metro.pivot(on="metro", index="category", values="events")
    .fill_null(0)
    .sort("category")
)

categories = events.group_by("category").len().sort("len", descending=True)["category"]
metros = sorted(events["metro"].unique().to_list())
fig, ax = plt.subplots(figsize=(10, 0.35 * len(categories) + 1.5))
left_edge = [0] * len(categories)
for metro in metros:
    counts_in_metro = dict(
        per_category_metro.filter(pl.col("metro") == metro).select("category", "events").rows()
    )
    widths = [counts_in_metro.get(category, 0) for category in categories]
    ax.barh(categories.to_list(), widths, left=left_edge, label=metro)
    left_edge = [a + b for a, b in zip(left_edge, widths, strict=True)]
ax.invert_yaxis()
ax.set(title="Events per category and metro", xlabel="events")
ax.legend()
figures.keep("events_per_category_metro", fig)

# %%
category_likes = (
    swipes.join(events.select("event_id", "category"), on="event_id", how="inner")
    .group_by("category")
    .agg(swipes=pl.len(), like_rate=pl.col("action").is_in(["like", "superlike"]).mean())
    .sort("like_rate", descending=True)
)
print(category_likes)

fig, ax = plt.subplots(figsize=(10, 0.35 * category_likes.height + 1.5))
ax.barh(category_likes["category"].to_list(), category_likes["like_rate"].to_list(), color="#357")
ax.invert_yaxis()
ax.set(title="Like rate per category", xlabel="likes / swipes")
figures.keep("like_rate_per_category", fig)

# %% [markdown]
# ## Summary
# Plain values, for a quick look and for the tests that run this notebook on a tiny city.

# %%
swipes_per_day: dict[str, int] = {
    day.isoformat(): n for day, n in daily.select("day", "swipes").rows()
}
like_rate_by_position: dict[int, float] = dict(by_position.select("position", "like_rate").rows())
events_per_metro_category: dict[str, dict[str, int]] = {}
for metro, category, n in per_category_metro.select("metro", "category", "events").rows():
    events_per_metro_category.setdefault(metro, {})[category] = n
figure_names = list(figures.figures)
figure_files = [str(path) for path in figures.files]
con.close()
print(counts, f"{len(swipes_per_day)} days", figure_names, sep="\n")
