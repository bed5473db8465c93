"""The two-stage feed: candidates from every generator, LambdaRank scores, then re-ranking.

I/O-free glue between the generators in `models/`, the point-in-time features and the
re-rank step, so the asset in `pipelines/assets/ranking.py` stays a thin wrapper.
"""

from datetime import datetime

import polars as pl

from features.onboarding import onboarding_picks
from features.point_in_time import features_at
from features.tables import AppTables
from models.als import ALSModel
from models.content import ContentModel
from models.geo import GeoModel
from models.popularity import PopularityModel
from models.ranker import CANDIDATE_FEATURES, LambdaRanker
from models.rerank import final_feed

# Priority when several generators propose the same event: the most specific source wins.
SOURCES = ("als", "content", "geo", "popularity")  # the order of CANDIDATE_FEATURES
SCORE_COLUMNS = CANDIDATE_FEATURES
# Users per publishing chunk: ~300 candidates each, so ~6M feature rows at a time.
CHUNK_USERS = 20_000


def candidates(
    *,
    als: ALSModel,
    users: pl.DataFrame,
    events: pl.DataFrame,
    venues: pl.DataFrame,
    interactions: pl.DataFrame,
    eligible: pl.DataFrame,
    per_source: int,
) -> pl.DataFrame:
    """Union of every generator's top `per_source`: user_id, event_id, source, score_<source>.

    `source` is the most specific generator that proposed the pair; the scores of all of
    them stay as features, so the ranker can weigh collaborative, text, distance and
    popularity evidence against each other.
    """
    request = {
        "users": users.select("user_id", "metro"),
        "candidates": eligible,
        "exclude": interactions.select("user_id", "event_id"),
        "n": per_source,
    }
    located = events.select("event_id", "venue_id").join(
        venues.select("venue_id", "latitude", "longitude"), on="venue_id", how="left"
    )
    generators = {
        "als": als,
        "content": ContentModel(events.select("event_id", "name", "summary", "category")).fit(
            interactions, onboarding=users
        ),
        "geo": GeoModel(
            users.select("user_id", "home_lat", "home_lon"),
            located.select("event_id", "latitude", "longitude"),
        ).fit(interactions),
        "popularity": PopularityModel().fit(interactions),
    }
    proposed = [
        generators[name]
        .recommend(**request)  # type: ignore[arg-type]
        .select("user_id", "event_id", "score", pl.lit(priority).alias("priority"))
        for priority, name in enumerate(SOURCES)
    ]
    union = pl.concat(proposed)
    # Each generator's score is a ranker feature; null where that generator did not propose.
    scores = union.pivot(
        on="priority", index=["user_id", "event_id"], values="score", aggregate_function="max"
    ).rename({str(p): f"score_{name}" for p, name in enumerate(SOURCES)}, strict=False)
    for name in SOURCES:
        if f"score_{name}" not in scores.columns:
            scores = scores.with_columns(pl.lit(None, dtype=pl.Float64).alias(f"score_{name}"))
    return (
        union.sort("user_id", "event_id", "priority")
        .unique(["user_id", "event_id"], keep="first", maintain_order=True)
        .with_columns(source=pl.col("priority").replace_strict(dict(enumerate(SOURCES))))
        .drop("priority", "score")
        .join(scores, on=["user_id", "event_id"], how="left")
        .select("user_id", "event_id", "source", *SCORE_COLUMNS)
    )


def scored(
    proposed: pl.DataFrame,
    *,
    ranker: LambdaRanker,
    now: datetime,
    swipes: pl.DataFrame,
    attendance: pl.DataFrame,
    friendships: pl.DataFrame,
    events: pl.DataFrame,
    users: pl.DataFrame,
    venues: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Features as of `now` for every candidate, and the ranker's score.

    `venues` (venue_id, latitude, longitude) gives `distance_km`; without it that is null.
    """
    queries = proposed.with_columns(as_of=pl.lit(now).dt.convert_time_zone("UTC"))
    frame = features_at(
        queries,
        swipes=swipes,
        attendance=attendance,
        friendships=friendships,
        events=events,
        users=users,
        venues=venues,
    )
    return frame.with_columns(score=pl.Series(ranker.score(frame)))


def feed(
    ranked: pl.DataFrame,
    *,
    now: datetime,
    events: pl.DataFrame,
    venues: pl.DataFrame,
    users: pl.DataFrame,
    interactions: pl.DataFrame,
    n: int,
) -> pl.DataFrame:
    """Filters, diversity, an exploration slot and reasons: the list users see."""
    located = events.join(
        venues.select("venue_id", "latitude", "longitude"), on="venue_id", how="left"
    )
    liked = (
        interactions.filter(pl.col("liked"))
        .join(events.select("event_id", "category"), on="event_id")
        .group_by("user_id", "category")
        .len()
        # Ties by name, so the reason a user reads never depends on hash order.
        .sort("user_id", "len", "category", descending=[False, True, False])
        .group_by("user_id", maintain_order=True)
        .head(2)
        .select("user_id", "category")
    )
    counts = interactions.group_by("event_id").len()
    fresh = ranked.join(counts, on="event_id", how="left").filter(pl.col("len").is_null())
    return final_feed(
        ranked.select("user_id", "event_id", "score"),
        events=located.select(
            "event_id", "is_active", "start_utc", "latitude", "longitude", "category"
        ),
        users=users.select("user_id", "home_lat", "home_lon"),
        swiped=interactions.select("user_id", "event_id"),
        now=now,
        friends_going=ranked.filter(pl.col("friends_going_before") > 0).select(
            "user_id", "event_id", pl.col("friends_going_before").alias("n")
        ),
        liked_categories=liked,
        onboarding_categories=onboarding_picks(users),
        source=ranked.select("user_id", "event_id", "source"),
        pool=fresh.select("user_id", "event_id"),
        n=n,
    )


def publishable(
    *,
    als: ALSModel,
    ranker: LambdaRanker,
    tables: AppTables,
    interactions: pl.DataFrame,
    eligible: pl.DataFrame,
    now: datetime,
    per_source: int,
    n: int,
    chunk_users: int = CHUNK_USERS,
) -> tuple[pl.DataFrame, int]:
    """Every user's final list as of `now`, `chunk_users` users at a time; (lists, candidates).

    Users are independent once the generators are fitted, so chunking bounds memory by the
    chunk (about 300 candidates x ~40 feature columns per user) instead of the user base.
    """
    lists: list[pl.DataFrame] = []
    proposed_rows = 0
    for users in tables.users.iter_slices(chunk_users):
        proposed = candidates(
            als=als,
            users=users,
            events=tables.events,
            venues=tables.venues,
            interactions=interactions,
            eligible=eligible,
            per_source=per_source,
        )
        proposed_rows += proposed.height
        ranked = scored(
            proposed,
            ranker=ranker,
            now=now,
            swipes=tables.swipes,
            attendance=tables.attendance,
            friendships=tables.friendships,
            events=tables.events,
            users=users,
            venues=tables.venues,
        )
        lists.append(
            feed(
                ranked,
                now=now,
                events=tables.events,
                venues=tables.venues,
                users=users,
                interactions=interactions,
                n=n,
            )
        )
    return pl.concat(lists), proposed_rows
