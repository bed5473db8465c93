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
- `distance_km` reads the user's home and the venue's coordinates with no time filter, on the
  same argument: they are static facts of the catalogue and the profile, not behaviour. A home
  the user later edits is read as it is now (the warehouse keeps no history of it).
- Windows and decay are anchored on `as_of` itself: "the last 7 days" is [as_of - 7d, as_of),
  and a like's decay weight is 2^-((as_of - t) / 14 days). Both are differences of, or
  rescaled, cumulative tables read strictly before their instant, so nothing at or after
  `as_of` enters.
- `friends_interested_before` filters visibility exactly like `friends_going_before`: only
  public and friends-visible RSVPs of friends count; private ones never do.
"""

from __future__ import annotations

import polars as pl

from features.geo import haversine_km
from features.onboarding import onboarding_picks

UTC_US = pl.Datetime("us", "UTC")
MICROS_PER_DAY = 86_400_000_000
AFFINITY_HALF_LIFE_DAYS = 14.0
TRENDING_WINDOW_DAYS = 7
HOUR_BUCKET = 3  # start hours 0-2, 3-5, ... share a bucket for `hour_match`
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
    "user_category_affinity_decayed": pl.Float64(),
    "weekday_match": pl.Float64(),
    "hour_match": pl.Float64(),
    "price_ratio": pl.Float64(),
    "days_since_user_created": pl.Float64(),
    "onboarding_match": pl.Int8(),
    "event_swipes_before": pl.Int64(),
    "event_likes_before": pl.Int64(),
    "event_like_rate_before": pl.Float64(),
    "event_trending_7d": pl.Int64(),
    "event_likes_7d": pl.Int64(),
    "event_going_before": pl.Int64(),
    "days_until_start": pl.Float64(),
    "price_min_usd": pl.Float64(),
    "is_free": pl.Boolean(),
    "fill_rate_before": pl.Float64(),
    "friends_going_before": pl.Int64(),
    "friends_interested_before": pl.Int64(),
    "distance_km": pl.Float64(),
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


def decay_weight(time_col: str, half_life_days: float) -> pl.Expr:
    """2^((t - t_min) / half_life): a weight that doubles every half-life after the earliest row.

    Its running sum up to an instant, times 2^-((as_of - t_min) / half_life), is the
    exponentially decayed sum as of `as_of`. Anchoring at the frame's minimum keeps every
    exponent >= 0 and the values finite: a year of history is 2^26 (~7e7) at a 14-day
    half-life, and float64 only overflows after ~1,000 half-lives (39 years at 14 days).
    """
    elapsed = (pl.col(time_col) - pl.col(time_col).min()).dt.total_microseconds()
    return pl.lit(2.0, dtype=pl.Float64).pow(elapsed / (half_life_days * MICROS_PER_DAY))


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
    queries: pl.LazyFrame,
    totals: pl.LazyFrame,
    keys: list[str],
    columns: list[str],
    at: str = "as_of",
) -> pl.LazyFrame:
    """Attach the totals as of strictly before each query's `at` (default `as_of`, the query
    time; any column not after it, e.g. the start of a window); no history means 0."""
    return queries.join_asof(
        totals.select(*keys, pl.col("as_of").alias(at), *columns),
        on=at,
        by=keys,
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,  # both sides are sorted by time just above / below
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


def _rsvps(attendance: pl.DataFrame, statuses: tuple[str, ...]) -> pl.LazyFrame:
    """RSVPs of the given statuses, each with a 0/1 column per status named after it."""
    return (
        attendance.lazy()
        .filter(pl.col("status").is_in(statuses))
        .select(
            pl.col("user_id").cast(pl.Int64),
            pl.col("event_id").cast(pl.Utf8),
            pl.col("visibility"),
            pl.col("updated_at").cast(UTC_US),
            *((pl.col("status") == status).cast(pl.Int64).alias(status) for status in statuses),
        )
    )


def _going(attendance: pl.DataFrame) -> pl.LazyFrame:
    """Going RSVPs only; interested and not_going say nothing about a head count."""
    return _rsvps(attendance, ("going",))


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


def _event_taste_keys(events: pl.DataFrame) -> pl.LazyFrame:
    """What a user's taste is matched on: category, UTC start weekday, 3-hour bucket, price."""
    start = pl.col("start_utc")
    return _event_static(events).select(
        "event_id",
        "category",
        start.dt.weekday().cast(pl.Int8).alias("dow"),
        (start.dt.hour() // HOUR_BUCKET).cast(pl.Int8).alias("bucket"),
        pl.col("price_min_usd").alias("price"),
    )


def share_or_zero(part: str, whole: str) -> pl.Expr:
    """part / whole, 0 when there is no history (whole == 0)."""
    return pl.when(pl.col(whole) > 0).then(pl.col(part) / pl.col(whole)).otherwise(0.0)


def user_features_at(
    queries: pl.DataFrame, swipes: pl.DataFrame, events: pl.DataFrame, users: pl.DataFrame
) -> pl.DataFrame:
    """Add the user's swipe count, like rate and category affinities as of each `as_of`, how
    the event's start and price compare with what the user liked, and whether the event's
    category is one the user ticked at onboarding.

    Affinity is Laplace-smoothed over the catalogue's categories, (likes in category + 1) /
    (likes + n_categories), so a user with no likes sits at the uniform share.
    `onboarding_match` is 1 when the event's category is among the user's
    `onboarding_categories`, else 0 (also when `users` has no such column); it is the one
    taste signal a user has before their first swipe, and static (see the module notes).

    - `user_category_affinity_decayed`: likes in the event's category over all swipes, each
      weighted 2^-((as_of - t) / 14 days); 0 without history. Helps because taste drifts:
      last week's likes say more about today than the lifetime count, which a long-time user
      has diluted. The as_of rescaling of numerator and denominator cancels in the ratio.
    - `weekday_match` / `hour_match`: share of the user's likes (of events with a known start)
      whose event started on this event's UTC weekday / 3-hour UTC bucket of the start hour;
      0 without such likes, null when this event's start is unknown. Helps because when a
      user can go out (weekends, evenings) constrains what they like as much as topic does.
    - `price_ratio`: the event's price over the mean price of the events the user liked
      (free = $0, unknown prices skipped); null without priced likes, when that mean is 0, or
      when this event's price is unknown. Helps because price sensitivity is per user: $40
      is "usual" for one and "five times what I pay" for another.
    """
    n_categories = max(events.get_column("category").drop_nulls().n_unique(), 1)
    taste = _event_taste_keys(events)
    likes = pl.col("likes")
    history = (
        _swipes(swipes)
        .join(taste, on="event_id", how="left")
        .with_columns(w=decay_weight("created_at", AFFINITY_HALF_LIFE_DAYS))
    )
    per_user = cumulative_by_time(
        history,
        ["user_id"],
        "created_at",
        {
            "n": pl.col("swipes"),
            "l": likes,
            "dw": pl.col("w"),
            "lt": likes * pl.col("dow").is_not_null().cast(pl.Int64),
            "lp": likes * pl.col("price").is_not_null().cast(pl.Int64),
            "ps": likes * pl.col("price").fill_null(0.0),
        },
    )
    per_category = cumulative_by_time(
        history.filter(pl.col("category").is_not_null()),
        ["user_id", "category"],
        "created_at",
        {"cl": likes, "cdw": likes * pl.col("w")},
    )
    liked = history.filter(likes > 0)
    per_dow = cumulative_by_time(
        liked.filter(pl.col("dow").is_not_null()), ["user_id", "dow"], "created_at", {"dl": likes}
    )
    per_bucket = cumulative_by_time(
        liked.filter(pl.col("bucket").is_not_null()),
        ["user_id", "bucket"],
        "created_at",
        {"hl": likes},
    )
    created = users.lazy().select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("created_at").cast(UTC_US).alias("user_created_at"),
    )
    picked = onboarding_picks(users).lazy().with_columns(picked=pl.lit(1, dtype=pl.Int8))
    mean_liked_price = pl.col("ps") / pl.col("lp")
    return (
        _queries(queries)
        .join(taste, on="event_id", how="left", maintain_order="left")
        .pipe(join_before, per_user, ["user_id"], ["n", "l", "dw", "lt", "lp", "ps"])
        .pipe(join_before, per_category, ["user_id", "category"], ["cl", "cdw"])
        .pipe(join_before, per_dow, ["user_id", "dow"], ["dl"])
        .pipe(join_before, per_bucket, ["user_id", "bucket"], ["hl"])
        .join(created, on="user_id", how="left", maintain_order="left")
        .join(picked, on=["user_id", "category"], how="left", maintain_order="left")
        .with_columns(
            user_n_swipes_before=pl.col("n"),
            user_like_rate_before=smoothed_rate("l", "n", 1.0, 2.0),
            user_category_affinity_before=smoothed_rate("cl", "l", 1.0, float(n_categories)),
            user_category_affinity_decayed=share_or_zero("cdw", "dw"),
            weekday_match=pl.when(pl.col("dow").is_not_null()).then(share_or_zero("dl", "lt")),
            hour_match=pl.when(pl.col("bucket").is_not_null()).then(share_or_zero("hl", "lt")),
            price_ratio=pl.when((pl.col("lp") > 0) & (pl.col("ps") > 0)).then(
                pl.col("price") / mean_liked_price
            ),
            days_since_user_created=days_between("as_of", "user_created_at"),
            onboarding_match=pl.col("picked").fill_null(0),
        )
        .drop(
            *("category", "dow", "bucket", "price", "n", "l", "dw", "lt", "lp", "ps"),
            *("cl", "cdw", "dl", "hl", "user_created_at", "picked"),
        )
        .collect()
    )


def event_features_at(
    queries: pl.DataFrame, swipes: pl.DataFrame, attendance: pl.DataFrame, events: pl.DataFrame
) -> pl.DataFrame:
    """Add the event's swipes, likes, going count, fill rate and static facts as of `as_of`.

    Fill rate is null, not 0 or infinity, when capacity is unknown or not positive: the model
    must be able to tell "empty" from "we don't know".

    `event_trending_7d` / `event_likes_7d` count the event's swipes / likes in the 7 days
    before `as_of`, [as_of - 7d, as_of): the cumulative count strictly before `as_of` minus
    the one strictly before `as_of - 7d`. Helps because momentum is not popularity: an event
    swiped a lot this week is hot now, while lifetime counts favour whatever was listed first.
    """
    per_event = cumulative_by_time(
        _swipes(swipes), ["event_id"], "created_at", {"es": pl.col("swipes"), "el": pl.col("likes")}
    )
    earlier = per_event.rename({"es": "es_w", "el": "el_w"})
    going = cumulative_by_time(
        _going(attendance), ["event_id"], "updated_at", {"eg": pl.col("going")}
    )
    return (
        _queries(queries)
        .with_columns(window_start=pl.col("as_of") - pl.duration(days=TRENDING_WINDOW_DAYS))
        .pipe(join_before, per_event, ["event_id"], ["es", "el"])
        .pipe(join_before, earlier, ["event_id"], ["es_w", "el_w"], at="window_start")
        .pipe(join_before, going, ["event_id"], ["eg"])
        .join(_event_static(events), on="event_id", how="left", maintain_order="left")
        .with_columns(
            event_swipes_before=pl.col("es"),
            event_likes_before=pl.col("el"),
            event_like_rate_before=smoothed_rate("el", "es", 1.0, 2.0),
            event_trending_7d=pl.col("es") - pl.col("es_w"),
            event_likes_7d=pl.col("el") - pl.col("el_w"),
            event_going_before=pl.col("eg"),
            days_until_start=days_between("start_utc", "as_of"),
            fill_rate_before=pl.when(pl.col("capacity") > 0).then(
                pl.col("eg") / pl.col("capacity")
            ),
            start_dow=pl.col("start_utc").dt.weekday().cast(pl.Int8),
            start_hour=pl.col("start_utc").dt.hour().cast(pl.Int8),
        )
        .drop("es", "el", "es_w", "el_w", "window_start", "eg", "category", "start_utc", "capacity")
        .collect()
    )


def social_features_at(
    queries: pl.DataFrame, attendance: pl.DataFrame, friendships: pl.DataFrame
) -> pl.DataFrame:
    """Add how many of the user's friends had a shared going, and a shared interested, RSVP
    on the event before `as_of`.

    Only public and friends-visible RSVPs count: a private RSVP must never surface in another
    user's features (it would end up in a "3 friends going" reason). Non-friends never count.
    `friends_interested_before` helps beside the going count because "interested" is the
    softer, earlier and more common signal: friends mark interest long before they commit.
    """
    friends = (
        friendships.lazy()
        .select(pl.col("user_id").cast(pl.Int64), pl.col("friend_id").cast(pl.Int64))
        .filter(pl.col("user_id") != pl.col("friend_id"))
        .unique()
    )
    shared = (
        _rsvps(attendance, ("going", "interested"))
        .filter(pl.col("visibility").is_in(SHARED_VISIBILITY))
        .rename({"user_id": "friend_id"})
        .join(friends, on="friend_id", how="inner")
    )
    totals = cumulative_by_time(
        shared,
        ["user_id", "event_id"],
        "updated_at",
        {"fg": pl.col("going"), "fi": pl.col("interested")},
    )
    return (
        _queries(queries)
        .pipe(join_before, totals, ["user_id", "event_id"], ["fg", "fi"])
        .rename({"fg": "friends_going_before", "fi": "friends_interested_before"})
        .collect()
    )


def distance_features_at(
    queries: pl.DataFrame,
    events: pl.DataFrame,
    users: pl.DataFrame,
    venues: pl.DataFrame | None,
) -> pl.DataFrame:
    """Add `distance_km`, the great-circle distance from the user's home to the event's venue.

    Helps because distance is the cost of going: the same concert is a yes across town and a
    no across the bay, and the generators' geo score is only there for geo's own candidates.
    Static facts (see the module notes), so point-in-time trivially. Null when anything is
    unknown: no `venues`, no home or venue column, or a null home, venue or coordinate.
    """
    has_columns = {"home_lat", "home_lon"} <= set(users.columns) and "venue_id" in events.columns
    if venues is None or not has_columns:
        return queries.with_columns(distance_km=pl.lit(None, dtype=pl.Float64))
    homes = users.lazy().select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("home_lat").cast(pl.Float64).alias("d_user_lat"),
        pl.col("home_lon").cast(pl.Float64).alias("d_user_lon"),
    )
    places = (
        events.lazy()
        .select(pl.col("event_id").cast(pl.Utf8), pl.col("venue_id").cast(pl.Utf8))
        .join(
            venues.lazy().select(
                pl.col("venue_id").cast(pl.Utf8),
                pl.col("latitude").cast(pl.Float64).alias("d_event_lat"),
                pl.col("longitude").cast(pl.Float64).alias("d_event_lon"),
            ),
            on="venue_id",
            how="left",
        )
        .drop("venue_id")
    )
    ends = ["d_user_lat", "d_user_lon", "d_event_lat", "d_event_lon"]
    frame = (
        queries.lazy()
        .join(homes, on="user_id", how="left", maintain_order="left")
        .join(places, on="event_id", how="left", maintain_order="left")
        .collect()
    )
    # Nulls become NaN in numpy, NaN propagates through the formula, and back to null here.
    km = haversine_km(*(frame.get_column(name).to_numpy() for name in ends))
    return frame.with_columns(distance_km=pl.Series(km, dtype=pl.Float64).fill_nan(None)).drop(ends)


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
    venues: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """User, event, social and distance features for each (user_id, event_id, as_of) query.

    The one path both training (as_of = each swipe) and serving (as_of = now) take, so the
    ranker sees features computed the same way in both. `users` has user_id, created_at and
    optionally onboarding_categories (List(Utf8)); without it `onboarding_match` is 0. It may
    carry home_lat/home_lon, and `events` venue_id, which with `venues` (venue_id, latitude,
    longitude) give `distance_km`; without any of them it is null.
    """
    frame = user_features_at(queries, swipes, events, users)
    frame = event_features_at(frame, swipes, attendance, events)
    frame = social_features_at(frame, attendance, friendships)
    return distance_features_at(frame, events, users, venues)


def training_examples(
    swipes: pl.DataFrame,
    attendance: pl.DataFrame,
    friendships: pl.DataFrame,
    events: pl.DataFrame,
    users: pl.DataFrame,
    *,
    venues: pl.DataFrame | None = None,
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
        venues=venues,
    )
    return (
        examples.lazy()
        .rename({"as_of": "created_at"})
        .sort("created_at", "swipe_id")
        .select(TRAINING_SCHEMA.keys())
        .collect()
        .cast(TRAINING_SCHEMA)  # type: ignore[arg-type]
    )
