"""Point-in-time correct training examples: one row per swipe, features from strictly before it.

A ranker trained on features that already contain the outcome (the like it is asked to predict,
or RSVPs that arrived later) looks great offline and fails in production, where only the past
is known. So every feature here is "as of" the swipe's `created_at`, and only rows whose own
timestamp is strictly earlier count. Rows at the very same instant are excluded too: the app
cannot have known about them when it showed the card.

How: each history (swipes per user, per user x category, per event; going RSVPs per event and
per user x event through friends) is reduced to a cumulative-count table keyed by timestamp,
and `join_asof(..., allow_exact_matches=False)` picks, for each query, the last cumulative row
strictly before it. No per-row Python, and the same helpers serve any "as of" query frame
(`user_id`, `event_id`, `as_of`), e.g. scoring candidates at "now".

Assumptions, stated because they shape what "before" means:
- `attendance` is a snapshot (one current row per user and event). An RSVP is known from its
  `updated_at`; an earlier state it replaced is not in the warehouse, so it cannot be counted.
- "Likes" are likes and superlikes: both say "I want this".
- The label is the swipe action only (pass 0, like 1, superlike 2). RSVPs never feed the label
  here, so the label never depends on anything a feature could also see.
- `start_dow`/`start_hour` are in UTC: a stable code for a tree model, not a local wall clock.
- `event_going_before` counts going RSVPs of every visibility: it is an anonymous total like a
  venue's head count. Only `friends_going_before` names people, so only it filters visibility.
- `onboarding_match` reads the user's onboarding categories with no time filter. They are a
  static attribute chosen at signup, before any swipe, so they cannot carry an outcome and
  are point-in-time safe. That holds while the app does not let users edit them; if it ever
  does, they need their own timestamp and an as-of join like attendance.
"""

from __future__ import annotations

import polars as pl

from features.onboarding import onboarding_picks

UTC_US = pl.Datetime("us", "UTC")
MICROS_PER_DAY = 86_400_000_000
LABELS: dict[str, int] = {"pass": 0, "like": 1, "superlike": 2}
LIKE_ACTIONS = ("like", "superlike")
SHARED_VISIBILITY = ("public", "friends")

QUERY_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "event_id": pl.Utf8(),
    "as_of": UTC_US,
}

TRAINING_SCHEMA: dict[str, pl.DataType] = {
    "swipe_id": pl.Utf8(),
    "user_id": pl.Int64(),
    "event_id": pl.Utf8(),
    "created_at": UTC_US,
    "label": pl.Int8(),
    "user_n_swipes_before": pl.Int64(),
    "user_like_rate_before": pl.Float64(),
    "user_category_affinity_before": pl.Float64(),
    "days_since_user_created": pl.Float64(),
    "onboarding_match": pl.Int8(),
    "event_swipes_before": pl.Int64(),
    "event_likes_before": pl.Int64(),
    "event_like_rate_before": pl.Float64(),
    "event_going_before": pl.Int64(),
    "days_until_start": pl.Float64(),
    "price_min_usd": pl.Float64(),
    "is_free": pl.Boolean(),
    "fill_rate_before": pl.Float64(),
    "friends_going_before": pl.Int64(),
    "start_dow": pl.Int8(),
    "start_hour": pl.Int8(),
}


def is_like() -> pl.Expr:
    """1 for a like or superlike, else 0: the positive count every rate is built on."""
    return pl.col("action").is_in(LIKE_ACTIONS).cast(pl.Int64)


def smoothed_rate(hits: str, trials: str, prior_hits: float, prior_trials: float) -> pl.Expr:
    """(hits + prior_hits) / (trials + prior_trials): stops 1-of-1 from reading as 100%."""
    return (pl.col(hits) + prior_hits) / (pl.col(trials) + prior_trials)


def days_between(later: str, earlier: str) -> pl.Expr:
    """Signed fractional days from `earlier` to `later` (negative when `later` is earlier)."""
    return (pl.col(later) - pl.col(earlier)).dt.total_microseconds() / MICROS_PER_DAY


def price_min_usd() -> pl.Expr:
    """Lowest price in dollars; a free event without a price is $0, not unknown."""
    dollars = pl.col("price_min_cents").cast(pl.Float64) / 100
    return pl.when(pl.col("is_free") & dollars.is_null()).then(0.0).otherwise(dollars)


def cumulative_by_time(
    history: pl.LazyFrame, keys: list[str], time_col: str, counts: dict[str, pl.Expr]
) -> pl.LazyFrame:
    """Running totals per key, one row per distinct timestamp, renamed to `as_of`.

    Collapsing ties first means the "last row strictly before t" holds everything earlier
    than t and nothing at t, whatever the order of tied rows.
    """
    return (
        history.group_by(*keys, time_col)
        .agg(**{name: expr.sum() for name, expr in counts.items()})
        .sort(time_col)
        .with_columns(pl.col(name).cum_sum().over(keys) for name in counts)
        .rename({time_col: "as_of"})
    )


def join_before(
    queries: pl.LazyFrame, totals: pl.LazyFrame, keys: list[str], columns: list[str]
) -> pl.LazyFrame:
    """Attach the totals as of strictly before each query's `as_of`; no history means 0."""
    return queries.join_asof(
        totals.select(*keys, "as_of", *columns),
        on="as_of",
        by=keys,
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,  # both sides are sorted by as_of just above / below
    ).with_columns(pl.col(columns).fill_null(0))


def _queries(queries: pl.DataFrame) -> pl.LazyFrame:
    """Queries sorted by time, as join_asof needs; extra columns ride along untouched."""
    return queries.lazy().cast(QUERY_SCHEMA).sort("as_of")  # type: ignore[arg-type]


def _swipes(swipes: pl.DataFrame) -> pl.LazyFrame:
    """Swipes with the columns the histories need, in the canonical dtypes."""
    return swipes.lazy().select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("event_id").cast(pl.Utf8),
        pl.col("created_at").cast(UTC_US),
        is_like().alias("likes"),
        pl.lit(1, dtype=pl.Int64).alias("swipes"),
    )


def _going(attendance: pl.DataFrame) -> pl.LazyFrame:
    """Going RSVPs only; interested and not_going say nothing about a head count."""
    return (
        attendance.lazy()
        .filter(pl.col("status") == "going")
        .select(
            pl.col("user_id").cast(pl.Int64),
            pl.col("event_id").cast(pl.Utf8),
            pl.col("visibility"),
            pl.col("updated_at").cast(UTC_US),
            pl.lit(1, dtype=pl.Int64).alias("going"),
        )
    )


def _event_static(events: pl.DataFrame) -> pl.LazyFrame:
    """What an event is, independent of time: category, start, price, capacity."""
    return events.lazy().select(
        pl.col("event_id").cast(pl.Utf8),
        pl.col("category").cast(pl.Utf8),
        pl.col("start_utc").cast(UTC_US),
        price_min_usd().alias("price_min_usd"),
        pl.col("is_free").cast(pl.Boolean),
        pl.col("capacity").cast(pl.Int64),
    )


def user_features_at(
    queries: pl.DataFrame, swipes: pl.DataFrame, events: pl.DataFrame, users: pl.DataFrame
) -> pl.DataFrame:
    """Add the user's swipe count, like rate and category affinity as of each `as_of`, and
    whether the event's category is one the user ticked at onboarding.

    Affinity is Laplace-smoothed over the catalogue's categories, (likes in category + 1) /
    (likes + n_categories), so a user with no likes sits at the uniform share.
    `onboarding_match` is 1 when the event's category is among the user's
    `onboarding_categories`, else 0 (also when `users` has no such column); it is the one
    taste signal a user has before their first swipe, and static (see the module notes).
    """
    n_categories = max(events.get_column("category").drop_nulls().n_unique(), 1)
    category = _event_static(events).select("event_id", "category")
    history = _swipes(swipes).join(category, on="event_id", how="left")
    per_user = cumulative_by_time(
        history, ["user_id"], "created_at", {"n": pl.col("swipes"), "l": pl.col("likes")}
    )
    per_category = cumulative_by_time(
        history.filter(pl.col("category").is_not_null()),
        ["user_id", "category"],
        "created_at",
        {"cl": pl.col("likes")},
    )
    created = users.lazy().select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("created_at").cast(UTC_US).alias("user_created_at"),
    )
    picked = onboarding_picks(users).lazy().with_columns(picked=pl.lit(1, dtype=pl.Int8))
    return (
        _queries(queries)
        .join(category, on="event_id", how="left", maintain_order="left")
        .pipe(join_before, per_user, ["user_id"], ["n", "l"])
        .pipe(join_before, per_category, ["user_id", "category"], ["cl"])
        .join(created, on="user_id", how="left", maintain_order="left")
        .join(picked, on=["user_id", "category"], how="left", maintain_order="left")
        .with_columns(
            user_n_swipes_before=pl.col("n"),
            user_like_rate_before=smoothed_rate("l", "n", 1.0, 2.0),
            user_category_affinity_before=smoothed_rate("cl", "l", 1.0, float(n_categories)),
            days_since_user_created=days_between("as_of", "user_created_at"),
            onboarding_match=pl.col("picked").fill_null(0),
        )
        .drop("category", "n", "l", "cl", "user_created_at", "picked")
        .collect()
    )


def event_features_at(
    queries: pl.DataFrame, swipes: pl.DataFrame, attendance: pl.DataFrame, events: pl.DataFrame
) -> pl.DataFrame:
    """Add the event's swipes, likes, going count, fill rate and static facts as of `as_of`.

    Fill rate is null, not 0 or infinity, when capacity is unknown or not positive: the model
    must be able to tell "empty" from "we don't know".
    """
    per_event = cumulative_by_time(
        _swipes(swipes), ["event_id"], "created_at", {"es": pl.col("swipes"), "el": pl.col("likes")}
    )
    going = cumulative_by_time(
        _going(attendance), ["event_id"], "updated_at", {"eg": pl.col("going")}
    )
    return (
        _queries(queries)
        .pipe(join_before, per_event, ["event_id"], ["es", "el"])
        .pipe(join_before, going, ["event_id"], ["eg"])
        .join(_event_static(events), on="event_id", how="left", maintain_order="left")
        .with_columns(
            event_swipes_before=pl.col("es"),
            event_likes_before=pl.col("el"),
            event_like_rate_before=smoothed_rate("el", "es", 1.0, 2.0),
            event_going_before=pl.col("eg"),
            days_until_start=days_between("start_utc", "as_of"),
            fill_rate_before=pl.when(pl.col("capacity") > 0).then(
                pl.col("eg") / pl.col("capacity")
            ),
            start_dow=pl.col("start_utc").dt.weekday().cast(pl.Int8),
            start_hour=pl.col("start_utc").dt.hour().cast(pl.Int8),
        )
        .drop("es", "el", "eg", "category", "start_utc", "capacity")
        .collect()
    )


def social_features_at(
    queries: pl.DataFrame, attendance: pl.DataFrame, friendships: pl.DataFrame
) -> pl.DataFrame:
    """Add how many of the user's friends had a shared going RSVP on the event before `as_of`.

    Only public and friends-visible RSVPs count: a private RSVP must never surface in another
    user's features (it would end up in a "3 friends going" reason). Non-friends never count.
    """
    friends = (
        friendships.lazy()
        .select(pl.col("user_id").cast(pl.Int64), pl.col("friend_id").cast(pl.Int64))
        .filter(pl.col("user_id") != pl.col("friend_id"))
        .unique()
    )
    shared = (
        _going(attendance)
        .filter(pl.col("visibility").is_in(SHARED_VISIBILITY))
        .rename({"user_id": "friend_id"})
        .join(friends, on="friend_id", how="inner")
    )
    totals = cumulative_by_time(
        shared, ["user_id", "event_id"], "updated_at", {"fg": pl.col("going")}
    )
    return (
        _queries(queries)
        .pipe(join_before, totals, ["user_id", "event_id"], ["fg"])
        .rename({"fg": "friends_going_before"})
        .collect()
    )


def labels(swipes: pl.DataFrame) -> pl.DataFrame:
    """Swipes as queries: graded label from the action, `as_of` = the swipe's own time."""
    return swipes.select(
        pl.col("swipe_id").cast(pl.Utf8),
        pl.col("user_id").cast(pl.Int64),
        pl.col("event_id").cast(pl.Utf8),
        pl.col("created_at").cast(UTC_US).alias("as_of"),
        pl.col("action").replace_strict(LABELS, return_dtype=pl.Int8).alias("label"),
    )


def features_at(
    queries: pl.DataFrame,
    *,
    swipes: pl.DataFrame,
    attendance: pl.DataFrame,
    friendships: pl.DataFrame,
    events: pl.DataFrame,
    users: pl.DataFrame,
) -> pl.DataFrame:
    """User, event and social features for each (user_id, event_id, as_of) query.

    The one path both training (as_of = each swipe) and serving (as_of = now) take, so the
    ranker sees features computed the same way in both. `users` has user_id, created_at and
    optionally onboarding_categories (List(Utf8)); without it `onboarding_match` is 0.
    """
    frame = user_features_at(queries, swipes, events, users)
    frame = event_features_at(frame, swipes, attendance, events)
    return social_features_at(frame, attendance, friendships)


def training_examples(
    swipes: pl.DataFrame,
    attendance: pl.DataFrame,
    friendships: pl.DataFrame,
    events: pl.DataFrame,
    users: pl.DataFrame,
) -> pl.DataFrame:
    """One row per swipe with its label and point-in-time features (see TRAINING_SCHEMA).

    Sorted by (created_at, swipe_id) so a time-based validation split is a simple slice.
    """
    examples = features_at(
        labels(swipes),
        swipes=swipes,
        attendance=attendance,
        friendships=friendships,
        events=events,
        users=users,
    )
    return (
        examples.lazy()
        .rename({"as_of": "created_at"})
        .sort("created_at", "swipe_id")
        .select(TRAINING_SCHEMA.keys())
        .collect()
        .cast(TRAINING_SCHEMA)  # type: ignore[arg-type]
    )
