"""The re-rank step between the ranker's scores and the published feed.

The ranker optimises relevance only; a feed also has to be *valid* (nothing past, inactive,
out of reach or already swiped), *varied* (not ten jazz nights in a row), leave room to
*explore* (a logged, seeded draw at a share of the slots: `models.exploration`), and say
*why* each item is there. Each concern is its own function over plain frames, so each can be
tested with hand-made tables and `final_feed` only composes them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import polars as pl

from features.geo import haversine_km
from models.exploration import Exploration, explore
from models.topn import TOPN_SCHEMA

FALLBACK_REASON = "picked for you"
LIKED_REASON = "because you liked "
ONBOARDING_REASON = "because you picked "
SOURCE_REASONS: dict[str, str] = {
    "popularity": "popular near you",
    "geo": "close to you",
    "content": "similar to events you liked",
    "als": "people like you liked this",
    "ease": "people like you liked this",
    "item_knn": "often liked with events you liked",
}
_KEY = ["user_id", "event_id"]
FEED_SCHEMA: dict[str, pl.DataType] = {**TOPN_SCHEMA, "propensity": pl.Float64()}

# Measured in simulation (`bench/quality.py`, same ranker scores, 4,000-user city, value of
# the by-score order 8.80): a cap of 3 per category cost 1.01 of value with a fixed
# exploration card at slot 5 and 0.76 without it, a cap of 5 with slot 10 cost 0.38. With a
# cap of 6 and slot 10 the re-rank costs 0.26 (8.88 by score, 8.62 served). The simulated
# users never tire of a category, so these are upper bounds on what variety costs.
FEED_MAX_PER_CATEGORY = 6
# The ranking config of exploration, the one place the nightly feed and its evaluation read:
# every 10th slot (10, 20, ...) drawn by a softmax over the user's standardised scores.
# Measured in simulation (same city, 20-card lists, so 2 drawn slots; value 8.686 with none):
# temperature 0.25 gained 0.016 (a draw ignores the category cap, and near-best items win),
# 0.5 cost 0.005, 1.0 cost 0.033, 2.0 cost 0.058; the fixed "something new" slot this
# replaced cost about 0.07. At 1.0 the smallest logged propensity was 2.4e-4 (4e-5 at 0.5):
# broad enough support for off-policy estimates at well under 1% of the value.
FEED_EXPLORATION = Exploration(share=0.1, temperature=1.0)


def _utc(column: str, dtype: pl.DataType) -> pl.Expr:
    """The column as UTC-aware datetimes, whether it was stored naive (taken as UTC) or not."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return pl.col(column).dt.replace_time_zone("UTC")
    return pl.col(column).dt.convert_time_zone("UTC")


def hard_filters(
    scored: pl.DataFrame,
    *,
    events: pl.DataFrame,
    users: pl.DataFrame,
    swiped: pl.DataFrame,
    now: datetime,
    radius_km: float = 25.0,
) -> pl.DataFrame:
    """Keep only rows a user could act on: these are rules, not preferences, so no score wins.

    A row survives when its event is active, starts strictly after `now`, lies within the
    user's radius of their home and was not swiped by the user. `users` may carry a
    `radius_km` column (null means the default `radius_km`).

    Unknown geography passes the distance rule: an event without coordinates, or a user
    without a home (or missing from `users`), cannot be shown to be far away, and dropping
    them would silently starve cold-start users and freshly imported events. Events missing
    from `events` are dropped: activity and start time cannot be verified. Only `user_id` and
    `event_id` are required in `scored`; every other column is returned unchanged.
    """
    now_utc = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    ev = events.select(
        "event_id",
        _ev_active=pl.col("is_active").fill_null(False),
        _ev_start=_utc("start_utc", events.schema["start_utc"]),
        _ev_lat=pl.col("latitude").cast(pl.Float64),
        _ev_lon=pl.col("longitude").cast(pl.Float64),
    )
    radius = (
        pl.col("radius_km").cast(pl.Float64).fill_null(radius_km)
        if "radius_km" in users.columns
        else pl.lit(radius_km, dtype=pl.Float64)
    )
    homes = users.select(
        "user_id",
        _u_lat=pl.col("home_lat").cast(pl.Float64),
        _u_lon=pl.col("home_lon").cast(pl.Float64),
        _u_radius=radius,
    ).unique("user_id", keep="first")
    joined = (
        scored.join(swiped.select(_KEY).unique(), on=_KEY, how="anti")
        .join(ev.unique("event_id", keep="first"), on="event_id", how="inner")
        .join(homes, on="user_id", how="left")
        .filter(pl.col("_ev_active") & (pl.col("_ev_start") > pl.lit(now_utc)))
    )
    coords = joined.select("_u_lat", "_u_lon", "_ev_lat", "_ev_lon").fill_null(np.nan)
    distance = haversine_km(*(coords[c].to_numpy() for c in coords.columns))
    radius_arr = joined["_u_radius"].fill_null(radius_km).to_numpy()
    # NaN distance = some coordinate unknown: passes, as documented above
    keep = np.isnan(distance) | (distance <= radius_arr)
    return joined.filter(pl.Series(keep)).select(scored.columns)


def _with_category_key(scored: pl.DataFrame, categories: pl.DataFrame) -> pl.DataFrame:
    """Join each row's category as `_cat`; an uncategorised event becomes its own category.

    Null categories must not share one bucket: "unknown" is not a genre, so capping all
    unknown events together would penalise them for missing metadata.
    """
    cats = categories.select("event_id", _cat=pl.col("category").cast(pl.Utf8)).unique(
        "event_id", keep="first"
    )
    return scored.join(cats, on="event_id", how="left").with_columns(
        _cat=pl.coalesce("_cat", pl.lit("\x00") + pl.col("event_id"))
    )


def _mmr_order(
    scores: npt.NDArray[np.float64],
    cats: npt.NDArray[np.int64],
    n: int,
    cap: int,
    lam: float,
) -> list[int]:
    """Greedy MMR over one user's candidates, already sorted by score descending.

    Similarity is 1 within a category and 0 across, so items of one category are always
    taken in score order: only each category's best remaining item (its queue head) can win
    a step. That makes a step O(categories) instead of O(candidates), and building the
    queues is one linear pass. Scores are min-max normalised first so that `lam` trades
    relevance against novelty on the same 0..1 scale whatever the ranker's score range.
    """
    span = float(scores.max() - scores.min()) if len(scores) else 0.0
    norm = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    queues: dict[int, list[int]] = {}
    for i, c in enumerate(cats.tolist()):
        queues.setdefault(c, []).append(i)
    heads = dict.fromkeys(queues, 0)
    taken = dict.fromkeys(queues, 0)
    chosen: list[int] = []
    while len(chosen) < n:
        best, best_val = -1, -np.inf
        for c, queue in queues.items():
            h = heads[c]
            if h >= len(queue) or taken[c] >= cap:
                continue
            i = queue[h]
            val = lam * norm[i] - (1.0 - lam) * (1.0 if taken[c] else 0.0)
            if val > best_val or (val == best_val and i < best):
                best, best_val = i, val
        if best < 0:
            break
        c = int(cats[best])
        heads[c] += 1
        taken[c] += 1
        chosen.append(best)
    if len(chosen) < n:  # every category capped: back-fill rather than publish a short list
        picked = set(chosen)
        chosen.extend(i for i in range(len(scores)) if i not in picked)
    return chosen[:n]


def diversify(
    scored: pl.DataFrame,
    *,
    categories: pl.DataFrame,
    n: int,
    max_per_category: int = 3,
    mmr_lambda: float | None = None,
) -> pl.DataFrame:
    """Pick `n` items per user so one category cannot crowd out the rest of the feed.

    Without `mmr_lambda`: items in score order, at most `max_per_category` per category; the
    freed places are back-filled by the next-best items of other categories. With
    `mmr_lambda` (λ): greedy MMR, each step taking the item maximising
    λ·score − (1−λ)·max_sim_to_selected (same-category similarity, normalised scores), still
    under the cap; λ=1 is pure score order, small λ interleaves categories.

    The cap yields only when nothing else is left: a user whose candidates are all jazz still
    gets a full list (overflow items at the end, in score order), because a short feed is
    worse than a repetitive one. `categories` has event_id, category. Returns the columns of
    `scored` plus `rank` (1..n, selection order).
    """
    if max_per_category < 1:
        raise ValueError("max_per_category must be >= 1")
    if mmr_lambda is not None and not 0.0 <= mmr_lambda <= 1.0:
        raise ValueError("mmr_lambda must lie in [0, 1]")
    base = _with_category_key(scored, categories).sort(
        ["user_id", "score", "event_id"], descending=[False, True, False]
    )
    if mmr_lambda is None:
        out = (
            base.with_columns(
                _over=pl.int_range(1, pl.len() + 1).over("user_id", "_cat") > max_per_category,
                _pos=pl.int_range(pl.len()).over("user_id"),
            )
            .sort("user_id", "_over", "_pos")
            .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32))
            .filter(pl.col("rank") <= n)
        )
        return out.select(*scored.columns, "rank")
    codes = base["_cat"].rank("dense").cast(pl.Int64).to_numpy()
    score_arr = base["score"].cast(pl.Float64).to_numpy()
    bounds = (
        base.with_row_index("_i")
        .group_by("user_id", maintain_order=True)
        .agg(start=pl.col("_i").min(), stop=pl.col("_i").max() + 1)
    )
    take: list[int] = []
    ranks: list[int] = []
    for start, stop in zip(bounds["start"].to_list(), bounds["stop"].to_list(), strict=True):
        order = _mmr_order(
            score_arr[start:stop], codes[start:stop], n, max_per_category, mmr_lambda
        )
        take.extend(start + i for i in order)
        ranks.extend(range(1, len(order) + 1))
    return (
        base[take]
        .with_columns(rank=pl.Series(ranks, dtype=pl.Int32))
        .select(*scored.columns, "rank")
    )


def reasons(
    ranked: pl.DataFrame,
    *,
    friends_going: pl.DataFrame,
    liked_categories: pl.DataFrame,
    source: pl.DataFrame,
    categories: pl.DataFrame | None = None,
    onboarding_categories: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Give every item one short reason, the most persuasive that is true for this user.

    Priority: "N friends going" (social proof; "1 friend going" singular), then "because you
    liked <category>" when the event's category is among the user's `liked_categories`
    (user_id, category), then, for a user with no liked category at all, "because you picked
    <category>" when it is among their `onboarding_categories` (user_id, category: what they
    ticked at signup), then what the candidate `source` (user_id, event_id, source) implies:
    popularity, geo, content, als, ease or item_knn; anything else gets "picked for you", so
    no published item lacks a reason. A reason already present in `ranked` is kept: whoever
    set it knew something these rules do not. An explored item is a candidate like any
    other and is explained by the same rules. The event's category is read from
    `ranked.category`, or joined from `categories` (event_id, category) when given.

    Onboarding only speaks for users without likes: once a user has liked something, that is
    the better and more specific explanation. For such an onboarding-only user a content
    candidate outside their picks gets "picked for you", not "similar to events you liked":
    they have liked nothing, and a reason must never claim what did not happen.
    """
    had_reason = "reason" in ranked.columns
    frame = _with_category(ranked.with_row_index("_row"), categories)
    friends = (
        friends_going.filter(pl.col("n") >= 1)
        .group_by(_KEY)
        .agg(_friends=pl.col("n").max().cast(pl.Int64))
    )
    liked = _user_categories(liked_categories, "_liked")
    picked = _onboarding_only(onboarding_categories, liked_categories)
    sources = source.select(*_KEY, _source=pl.col("source")).unique(_KEY, keep="first")
    computed = (
        pl.when(pl.col("_friends") == 1)
        .then(pl.lit("1 friend going"))
        .when(pl.col("_friends") > 1)
        .then(pl.format("{} friends going", pl.col("_friends")))
        .when(pl.col("_liked"))
        .then(pl.lit(LIKED_REASON) + pl.col("_category"))
        .when(pl.col("_picked"))
        .then(pl.lit(ONBOARDING_REASON) + pl.col("_category"))
        .when(pl.col("_onboarded") & (pl.col("_source") == "content"))
        .then(pl.lit(FALLBACK_REASON))
        .otherwise(pl.col("_source").replace_strict(SOURCE_REASONS, default=FALLBACK_REASON))
    )
    reason = pl.coalesce("reason", computed) if had_reason else computed
    out = (
        frame.join(friends, on=_KEY, how="left")
        .join(liked, on=["user_id", "_category"], how="left")
        .join(picked, on=["user_id", "_category"], how="left")
        .join(picked.select("user_id", _onboarded=pl.lit(True)).unique(), on="user_id", how="left")
        .join(sources, on=_KEY, how="left")
        .sort("_row")
        .with_columns(reason=reason)
    )
    return out.select(*(c for c in ranked.columns if c != "reason"), "reason")


def _with_category(frame: pl.DataFrame, categories: pl.DataFrame | None) -> pl.DataFrame:
    """`frame` plus `_category`: joined from `categories` when given, else its own column."""
    if categories is None:
        return frame.with_columns(_category=pl.col("category").cast(pl.Utf8))
    return frame.join(
        categories.select("event_id", _category=pl.col("category").cast(pl.Utf8)).unique(
            "event_id", keep="first"
        ),
        on="event_id",
        how="left",
    )


def _user_categories(rows: pl.DataFrame, flag: str) -> pl.DataFrame:
    """Distinct (user_id, _category) pairs with a True `flag` column, ready to left-join."""
    return (
        rows.select("user_id", _category=pl.col("category").cast(pl.Utf8))
        .unique()
        .with_columns(pl.lit(True).alias(flag))
    )


def _onboarding_only(
    onboarding_categories: pl.DataFrame | None, liked_categories: pl.DataFrame
) -> pl.DataFrame:
    """Onboarding picks of the users who have no liked category: the only ones they explain."""
    if onboarding_categories is None:
        onboarding_categories = pl.DataFrame(
            schema={"user_id": liked_categories.schema["user_id"], "category": pl.Utf8}
        )
    picks = _user_categories(onboarding_categories, "_picked")
    return picks.join(liked_categories.select("user_id").unique(), on="user_id", how="anti")


def final_feed(
    scored: pl.DataFrame,
    *,
    events: pl.DataFrame,
    users: pl.DataFrame,
    swiped: pl.DataFrame,
    now: datetime,
    friends_going: pl.DataFrame,
    liked_categories: pl.DataFrame,
    source: pl.DataFrame,
    run_id: str,
    onboarding_categories: pl.DataFrame | None = None,
    n: int = 20,
    radius_km: float = 25.0,
    max_per_category: int = FEED_MAX_PER_CATEGORY,
    mmr_lambda: float | None = None,
    exploration: Exploration = FEED_EXPLORATION,
) -> pl.DataFrame:
    """The publishable feed: filters → diversity → exploration → reasons → ranks 1..n.

    `scored` is the ranker's output (user_id, event_id, score). Exploration
    (`models.exploration.explore`) fills `exploration.share` of the slots by a draw, seeded
    per (user, `run_id`), over every valid candidate not placed above, so exploring never
    shows an invalid event; the other slots keep the diversified order.
    `onboarding_categories` (user_id, category; `features.onboarding.onboarding_picks` makes
    it from the users table) lets users without likes hear "because you picked <category>".
    Returns user_id, rank, event_id, score, reason, propensity (1.0 on deterministic slots;
    on explored ones the probability of that pick given the items above): what
    `store.publish.publish_run` takes.
    """
    valid = hard_filters(
        scored.select(*_KEY, "score"),
        events=events,
        users=users,
        swiped=swiped,
        now=now,
        radius_km=radius_km,
    )
    categories = events.select("event_id", "category")
    picked = diversify(
        valid,
        categories=categories,
        n=n,
        max_per_category=max_per_category,
        mmr_lambda=mmr_lambda,
    )
    explored = explore(picked, candidates=valid, run_id=run_id, exploration=exploration)
    explained = reasons(
        explored,
        friends_going=friends_going,
        liked_categories=liked_categories,
        source=source,
        categories=categories,
        onboarding_categories=onboarding_categories,
    )
    return (
        explained.sort("user_id", "rank")
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id"))
        .select(list(FEED_SCHEMA))
        .cast(FEED_SCHEMA)  # type: ignore[arg-type]
    )


GENERIC_MAX_PER_CATEGORY = 5
"""Per primary category in a generic top list: half of ten, so a diverse list stays mostly
relevant (a dataset's dominant genre can fill half, not all)."""


def diversify_by_category(
    scored: pl.DataFrame,
    *,
    categories: pl.DataFrame | None,
    n: int,
    max_per_category: int = GENERIC_MAX_PER_CATEGORY,
) -> pl.DataFrame:
    """The re-rank step on a public dataset: user_id, rank, event_id, score.

    Only the `diversify` cap applies there (no start times or homes exist, and nothing is
    served, so nothing is explored);
    `categories` (event_id, category: one per item) is the item file's primary category.
    Without categories it is a no-op: the ranker's order, cut at `n`.
    """
    frame = scored.select("user_id", "event_id", pl.col("score").cast(pl.Float64))
    if categories is None:
        picked = frame.sort(["user_id", "score", "event_id"], descending=[False, True, False])
        picked = picked.with_columns(
            rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32)
        ).filter(pl.col("rank") <= n)
    else:
        picked = diversify(frame, categories=categories, n=n, max_per_category=max_per_category)
    return picked.select("user_id", "rank", "event_id", "score").sort("user_id", "rank")
