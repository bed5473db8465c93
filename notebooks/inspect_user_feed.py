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
# # One user's feed, up close
#
# Aggregate metrics say whether a model is better on average; they do not say whether a feed
# makes sense to the person reading it. This notebook takes one user and puts side by side
# what they did (recent swipes, their friends' plans) and what the published run gives them
# (ranks, scores, the reason the app prints under each card), then traces the feed back to
# the Dagster run that published it and the model version that ranked it.
#
# The feed is read exactly as the API reads it (`store.feed.read_feed`: Redis first, Postgres
# when Redis has nothing), from the stores and key layout the publishing asset writes to.
# `GODO_NOTEBOOK_USER` picks the user (default: the one with the most swipes); `DATABASE_URL`,
# `REDIS_URL`, `GODO_REDIS_PREFIX` and `DAGSTER_HOME` say where to look, and
# `GODO_NOTEBOOK_FIGURES` also saves the figures as PNG (see `_shared.py`).
#
# A jupytext notebook: `make notebooks` opens it in JupyterLab, VS Code runs its cells with
# the project's kernel (`jupytext --to ipynb` writes a classic notebook), or run it as a
# script: `python3 dev.py run -- python notebooks/inspect_user_feed.py`.

# %%
import os
import re
from datetime import UTC, datetime

import dagster as dg
import matplotlib.pyplot as plt
import polars as pl
import sqlalchemy as sa
from _shared import Figures, app_stores, dagster_instance, postgres_frame, settings

from store.app_data import most_active_user
from store.cards import load_friends_going, load_live_cards
from store.feed import read_feed
from store.friends import friend_lists

stores = app_stores()
engine, redis_client, keys = stores.engine, stores.redis_client, stores.keys
figures = Figures()
now = datetime.now(UTC)

# %% [markdown]
# ## Whose feed
# The most active user has the richest history to judge the feed against; set
# `GODO_NOTEBOOK_USER` to look at someone else (a new user shows the cold-start path).

# %%
with engine.connect() as conn:
    chosen = os.environ.get("GODO_NOTEBOOK_USER")
    user_id = int(chosen) if chosen else most_active_user(conn)
    if user_id is None:
        raise LookupError("no swipes in Postgres: run the pipeline (`godo demo`) first")
    user = (
        conn.execute(
            sa.text(
                "SELECT id, display_name, metro, home_lat, home_lon, created_at, "
                "onboarding_categories FROM users WHERE id = :id"
            ),
            {"id": user_id},
        )
        .mappings()
        .one()
    )
print(dict(user))
home = (user["home_lat"], user["home_lon"]) if user["home_lat"] is not None else None

# %% [markdown]
# ## The published feed
# What the app shows right now: the run's ranked list minus what became unshowable since it
# was published (started, cancelled or full events, and anything the user swiped since).
# `source` says whether Redis served it (the normal path) or Postgres did (Redis down or
# expired); `cold_start` means the run had no list for this user and the popular fallback
# stands in. Distances are from the user's home. `propensity` is 1 for a slot the ranking
# decided and below 1 for an explored slot (drawn from the ranker's scores,
# `models.exploration`): the probability of that draw, which impressions log.

# %%
feed = read_feed(
    engine=engine,
    redis_client=redis_client,
    keys=keys,
    user_id=user_id,
    limit=settings().feed_size,
    now=now,
    origin=home,
)
print(f"run {feed.run_id} from {feed.source}, cold start: {feed.cold_start}")
feed_table = pl.DataFrame(
    [
        {
            "rank": item.rank,
            "score": item.score,
            "reason": item.reason,
            "event": item.card.name,
            "category": item.card.category,
            "starts": item.card.start_local.strftime("%a %d %b %H:%M"),
            "venue": item.card.venue.name if item.card.venue else None,
            "km": item.distance_km,
            "friends_going": item.friends_going,
            "propensity": item.propensity,
            "event_id": item.event_id,
        }
        for item in feed.items
    ],
    schema_overrides={
        "score": pl.Float64,
        "km": pl.Float64,
        "venue": pl.Utf8,
        "propensity": pl.Float64,
    },
)
with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=220, fmt_str_lengths=45):
    print(feed_table)

# %% [markdown]
# What the run stored for this user (Postgres keeps every published list) against what is
# served: the difference is what read-time filtering removed. Many removals mean the run is
# stale (events starting before the next publish) or the ranker favours events that sell out.

# %%
stored = postgres_frame(
    engine,
    "SELECT rank, event_id, score, reason FROM recommendations "
    "WHERE run_id = :run_id AND user_id = :user_id ORDER BY rank",
    {"rank": pl.Int64, "event_id": pl.Utf8, "score": pl.Float64, "reason": pl.Utf8},
    run_id=feed.run_id,
    user_id=user_id,
)
run_reasons = postgres_frame(
    engine,
    "SELECT reason, count(*) AS n FROM recommendations WHERE run_id = :run_id GROUP BY reason",
    {"reason": pl.Utf8, "n": pl.Int64},
    run_id=feed.run_id,
)
removed = stored.join(feed_table.select("event_id"), on="event_id", how="anti")
print(f"stored {stored.height}, served {feed_table.height}, removed at read time {removed.height}")
with engine.connect() as conn:
    removed_cards = load_live_cards(conn, removed["event_id"].to_list())


def why_removed(event_id: str) -> str:
    card = removed_cards.get(event_id)
    if card is None:
        return "gone from the catalogue"
    if card.cancelled:
        return "cancelled"
    if card.full:
        return f"full ({card.going_count}/{card.capacity} going)"
    if card.start_utc <= now:
        return "started"
    return "swiped since the publish"


print(removed.with_columns(why=pl.col("event_id").map_elements(why_removed, pl.Utf8)))


def reason_kind(reason: str) -> str:
    """A reason without its particulars, so "2 friends going" and "1 friend going" group."""
    reason = re.sub(r"\d+", "N", reason)
    return re.sub(r"^because you (liked|picked) .*", r"because you \1 …", reason)


kinds = (
    run_reasons.with_columns(kind=pl.col("reason").map_elements(reason_kind, pl.Utf8))
    .group_by("kind")
    .agg(everyone=pl.col("n").sum() / run_reasons["n"].sum())
    .join(
        feed_table.with_columns(kind=pl.col("reason").map_elements(reason_kind, pl.Utf8))
        .group_by("kind")
        .agg(this_user=pl.len() / max(feed_table.height, 1)),
        on="kind",
        how="full",
        coalesce=True,
    )
    .fill_null(0.0)
    .sort("everyone", descending=True)
)
print(kinds)

# %% [markdown]
# Scores fall with rank (the re-ranking may swap neighbours for diversity); the colour is the
# kind of reason the user reads. On the right, this user's mix of reasons next to everyone's
# in the run: a feed made only of "similar to events you liked" is a filter bubble, one
# without any is ignoring the user's history.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
for kind, rows in feed_table.with_columns(
    kind=pl.col("reason").map_elements(reason_kind, pl.Utf8)
).group_by("kind"):
    left.scatter(rows["rank"].to_list(), rows["score"].to_list(), label=str(kind[0]), s=18)
left.set(title=f"User {user_id}: score by rank", xlabel="rank", ylabel="ranker score")
left.legend(fontsize=7)
positions = list(range(kinds.height))
right.barh([p - 0.2 for p in positions], kinds["everyone"].to_list(), height=0.4, label="everyone")
right.barh(
    [p + 0.2 for p in positions], kinds["this_user"].to_list(), height=0.4, label=f"user {user_id}"
)
right.set_yticks(positions, kinds["kind"].to_list())
right.invert_yaxis()
right.set(title="Reasons in the run", xlabel="share of feed items")
right.legend(fontsize=8)
figures.keep("feed_scores_and_reasons", fig)

# %% [markdown]
# ## What they did recently
# The newest swipes (with the deck position they were shown at) and the categories the user
# likes most, next to the categories of the feed. A feed whose categories look nothing like
# the likes is either exploring on purpose (slots with a propensity below 1) or missing the
# user's taste.

# %%
RECENT = 20
swipes = postgres_frame(
    engine,
    "SELECT s.created_at, s.action, s.position, e.name AS event, e.category, s.event_id "
    "FROM swipes AS s JOIN events AS e ON e.id = s.event_id "
    "WHERE s.user_id = :user_id ORDER BY s.created_at DESC, s.id",
    {
        "created_at": pl.Datetime("us", "UTC"),
        "action": pl.Utf8,
        "position": pl.Int64,
        "event": pl.Utf8,
        "category": pl.Utf8,
        "event_id": pl.Utf8,
    },
    user_id=user_id,
)
recent_swipes = swipes.head(RECENT)
with pl.Config(tbl_rows=-1, tbl_width_chars=200, fmt_str_lengths=45):
    print(recent_swipes)

taste = (
    swipes.group_by("category")
    .agg(
        swipes=pl.len(),
        likes=pl.col("action").is_in(["like", "superlike"]).sum(),
    )
    .join(feed_table.group_by("category").agg(in_feed=pl.len()), on="category", how="full")
    .with_columns(pl.coalesce("category", "category_right").alias("category"))
    .drop("category_right")
    .fill_null(0)
    .sort("likes", "in_feed", descending=True)
)
print(taste)

fig, ax = plt.subplots(figsize=(10, 0.4 * taste.height + 1.5))
positions = list(range(taste.height))
ax.barh([p - 0.2 for p in positions], taste["likes"].to_list(), height=0.4, label="likes")
ax.barh([p + 0.2 for p in positions], taste["in_feed"].to_list(), height=0.4, label="in the feed")
ax.set_yticks(positions, taste["category"].to_list())
ax.invert_yaxis()
ax.set(title=f"User {user_id}: what they like and what they are shown", xlabel="events")
ax.legend()
figures.keep("likes_and_feed_by_category", fig)

# %% [markdown]
# ## Friends going
# Friends' RSVPs are the strongest reason an event fits (the ranker sees them as features and
# the app says "2 friends going"). Per feed item, which friends are going (only what they
# share with friends, never private RSVPs); then the friends' upcoming plans that did *not*
# make the feed, which is where a social signal was lost or outweighed.

# %%
friends = friend_lists(engine, user_id).friends
print(f"{len(friends)} friends: {', '.join(f.display_name for f in friends[:15])}")
friends_going: dict[str, list[int]] = {}
names_going: dict[str, list[str]] = {}
with engine.connect() as conn:
    for item in feed.items:
        if going := load_friends_going(conn, item.event_id, viewer_id=user_id):
            friends_going[item.event_id] = [friend.user_id for friend in going]
            names_going[item.event_id] = [friend.display_name for friend in going]
print(
    pl.DataFrame(
        [
            {"rank": item.rank, "event": item.card.name, "friends": ", ".join(names)}
            for item in feed.items
            if (names := names_going.get(item.event_id))
        ],
        schema={"rank": pl.Int64, "event": pl.Utf8, "friends": pl.Utf8},
    )
)

# Mutual friends' shared "going" RSVPs to upcoming active events, however they were ranked.
plans = postgres_frame(
    engine,
    """
    SELECT e.id AS event_id, e.name AS event, e.start_utc, count(*) AS friends
    FROM event_attendance AS ea
    JOIN friendships AS mine ON mine.user_id = :user_id AND mine.friend_id = ea.user_id
    JOIN friendships AS theirs ON theirs.user_id = ea.user_id AND theirs.friend_id = :user_id
    JOIN events AS e ON e.id = ea.event_id
    WHERE ea.status = 'going' AND ea.visibility IN ('public', 'friends')
      AND e.is_active AND e.start_utc > :now
    GROUP BY e.id, e.name, e.start_utc
    ORDER BY friends DESC, e.start_utc
    """,
    {
        "event_id": pl.Utf8,
        "event": pl.Utf8,
        "start_utc": pl.Datetime("us", "UTC"),
        "friends": pl.Int64,
    },
    user_id=user_id,
    now=now,
)
feed_event_ids = [item.event_id for item in feed.items]
missed_plans = plans.filter(~pl.col("event_id").is_in(feed_event_ids)).with_columns(
    swiped=pl.col("event_id").is_in(swipes["event_id"].to_list())
)
print("friends' upcoming plans not in the feed (events the user swiped are left out on purpose):")
print(missed_plans)

# %% [markdown]
# ## Which run published it
# The published run id is the id of the Dagster run whose `published_feed` step wrote it
# (Redis's `feed:current` pointer and Postgres's `recommendation_runs` both hold it), so the
# run's logs, timings and the `ranked_feed` materialization (with the model version that
# ranked it) are one lookup away in the Dagster instance.

# %%
with engine.connect() as conn:
    run_row = (
        conn.execute(
            sa.text(
                "SELECT id, status, model, n_users, n_rows, created_at, published_at "
                "FROM recommendation_runs WHERE id = :id"
            ),
            {"id": feed.run_id},
        )
        .mappings()
        .one_or_none()
    )
pointer = redis_client.get(keys.current_run())
print(f"Redis pointer: {pointer.decode() if pointer else None}")
print(f"Postgres: {dict(run_row) if run_row else None}")

instance = dagster_instance()
record = instance.get_run_record_by_id(feed.run_id) if feed.run_id else None
published_by: dict[str, str | None] = {}
model_version: int | None = None
if record is None:
    print(f"run {feed.run_id} is not in the Dagster instance at {instance.root_directory}")
else:
    run = record.dagster_run

    def when(timestamp: float | None) -> str | None:
        return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()

    published_by = {
        "dagster_run_id": run.run_id,
        "job_name": run.job_name,
        "status": run.status.value,
        "started": when(record.start_time),
        "ended": when(record.end_time),
    }
    materializations = instance.all_logs(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    materialized = {
        entry.dagster_event.asset_key.to_user_string(): entry.asset_materialization.metadata
        for entry in materializations
        if entry.dagster_event and entry.dagster_event.asset_key and entry.asset_materialization
    }
    print(published_by)
    for asset, metadata in materialized.items():
        print(asset, {key: value.value for key, value in metadata.items()})
    # The ranked list comes from the latest `ranked_feed` materialized up to the publish (the
    # same run in the scheduled `publish_feed` job; the run before it in `godo demo`).
    ranked = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("ranked_feed"), before_timestamp=record.end_time
        ),
        limit=1,
    ).records
    if ranked and ranked[0].asset_materialization:
        version = ranked[0].asset_materialization.metadata.get("model_version")
        model_version = version.value if version and isinstance(version.value, int) else None
        print(f"ranked by model version {model_version} in Dagster run {ranked[0].run_id}")

# %% [markdown]
# ## Summary
# Plain values, for a quick look and for the tests that run this notebook on a tiny city.

# %%
run_id = feed.run_id
feed_source = feed.source
cold_start = feed.cold_start
feed_ranks = [item.rank for item in feed.items]
feed_reasons = [item.reason for item in feed.items]
stored_event_ids = stored["event_id"].to_list()
recent_swipe_event_ids = recent_swipes["event_id"].to_list()
friend_ids = sorted(friend.user_id for friend in friends)
figure_names = list(figures.figures)
figure_files = [str(path) for path in figures.files]
print(f"user {user_id}: {len(feed_event_ids)} items from run {run_id} ({feed_source})")
