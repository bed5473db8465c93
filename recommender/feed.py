"""The two-stage feed: candidates from every generator, LambdaRank scores, then re-ranking.

The nightly plug-ins of the generic two-stage core (`models.two_stage`, which `godo evaluate`
runs on any interaction file through `models.generic`): this module fits the app's generators
(`generators`) and plugs in the app's point-in-time features (`nightly_features`, i.e.
`features_at` as of now); proposing and scoring are the core's `propose` and `scored`.
I/O-free, so the asset in `pipelines/assets/ranking.py` stays a thin wrapper.
"""

from datetime import datetime

import polars as pl

from features.onboarding import onboarding_picks
from features.point_in_time import features_at
from features.tables import AppTables
from models.als import ALSModel
from models.base import CandidateModel
from models.content import ContentModel
from models.ease import EASEModel, EASEParams
from models.exploration import Exploration
from models.geo import GeoModel
from models.item_knn import ItemKNNModel, ItemKNNParams
from models.popularity import PopularityModel
from models.ranker import CANDIDATE_FEATURES, NIGHTLY_SOURCES, LambdaRanker
from models.rerank import FEED_EXPLORATION, final_feed
from models.two_stage import Featurize, Generators, propose
from models.two_stage import scored as scored_by

# Priority when several generators propose the same event: the most specific source wins.
SOURCES = NIGHTLY_SOURCES  # the order of CANDIDATE_FEATURES
SCORE_COLUMNS = CANDIDATE_FEATURES
# Users per publishing chunk: ~300 candidates each, so ~6M feature rows at a time.
CHUNK_USERS = 20_000
# EASE and item-kNN see only the events with the most users: EASE's dense items x items
# inverse costs n^3 time and 4n^2 bytes, so the cap keeps a fit at ~1.5 s and 100 MB on 20k
# events instead of minutes and 1.6 GB, and item-kNN's cosine blocks shrink alike. Events
# below the cap are left to ALS, content, geo and popularity, as events ALS never saw are.
ITEM_ITEM_EVENTS = 5_000
# Fixed per night (logged with each evaluation run): tuning them per night, as `godo evaluate`
# does per file, would refit EASE and item-kNN several times on the whole training window.
EASE_PARAMS = EASEParams(max_items=ITEM_ITEM_EVENTS)
ITEM_KNN_PARAMS = ItemKNNParams()


def most_used(interactions: pl.DataFrame, n: int) -> pl.DataFrame:
    """The interactions on the `n` events with the most distinct positive users (ties by id),
    the same cut `EASEParams.max_items` makes."""
    top = (
        interactions.filter(pl.col("weight") > 0)
        .group_by("event_id")
        .agg(users=pl.col("user_id").n_unique())
        .sort(["users", "event_id"], descending=[True, False])
        .head(n)
    )
    return interactions.join(top.select("event_id"), on="event_id", how="semi")


def generators(
    *,
    als: ALSModel,
    users: pl.DataFrame,
    events: pl.DataFrame,
    venues: pl.DataFrame,
    interactions: pl.DataFrame,
) -> dict[str, CandidateModel]:
    """Every nightly generator, in `SOURCES` order: ALS as given (a versioned artifact), the
    others fitted on `interactions` (content and geo also read `users`' onboarding picks and
    homes: per user, so fitting them on all users or a chunk gives each user the same list)."""
    located = events.select("event_id", "venue_id").join(
        venues.select("venue_id", "latitude", "longitude"), on="venue_id", how="left"
    )
    fitted: dict[str, CandidateModel] = {
        "als": als,
        "ease": EASEModel(EASE_PARAMS).fit(interactions),
        "item_knn": ItemKNNModel(ITEM_KNN_PARAMS).fit(most_used(interactions, ITEM_ITEM_EVENTS)),
        "content": ContentModel(events.select("event_id", "name", "summary", "category")).fit(
            interactions, onboarding=users
        ),
        "geo": GeoModel(
            users.select("user_id", "home_lat", "home_lon"),
            located.select("event_id", "latitude", "longitude"),
        ).fit(interactions),
        "popularity": PopularityModel().fit(interactions),
    }
    return {name: fitted[name] for name in SOURCES}


def candidates(
    *,
    als: ALSModel,
    users: pl.DataFrame,
    events: pl.DataFrame,
    venues: pl.DataFrame,
    interactions: pl.DataFrame,
    eligible: pl.DataFrame,
    per_source: int,
    fitted: Generators | None = None,
) -> pl.DataFrame:
    """Union of every generator's top `per_source`: user_id, event_id, source, score_<source>.

    `source` is the most specific generator that proposed the pair; the scores of all of
    them stay as columns. `fitted` reuses generators already fitted by `generators` (the
    publish step fits once and proposes chunk by chunk); otherwise they are fitted here.
    """
    if fitted is None:
        fitted = generators(
            als=als, users=users, events=events, venues=venues, interactions=interactions
        )
    return propose(
        fitted,
        users=users.select("user_id", "metro"),
        eligible=eligible,
        exclude=interactions.select("user_id", "event_id"),
        per_source=per_source,
    )


def nightly_features(
    *,
    now: datetime,
    swipes: pl.DataFrame,
    attendance: pl.DataFrame,
    friendships: pl.DataFrame,
    events: pl.DataFrame,
    users: pl.DataFrame,
    venues: pl.DataFrame | None = None,
) -> Featurize:
    """The app's feature plug-in: point-in-time features of every candidate as of `now`."""

    def featurize(proposed: pl.DataFrame) -> pl.DataFrame:
        return features_at(
            proposed.with_columns(as_of=pl.lit(now).dt.convert_time_zone("UTC")),
            swipes=swipes,
            attendance=attendance,
            friendships=friendships,
            events=events,
            users=users,
            venues=venues,
        )

    return featurize


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
    featurize = nightly_features(
        now=now,
        swipes=swipes,
        attendance=attendance,
        friendships=friendships,
        events=events,
        users=users,
        venues=venues,
    )
    return scored_by(proposed, featurize=featurize, ranker=ranker)


def feed(
    ranked: pl.DataFrame,
    *,
    now: datetime,
    events: pl.DataFrame,
    venues: pl.DataFrame,
    users: pl.DataFrame,
    interactions: pl.DataFrame,
    n: int,
    run_id: str,
    exploration: Exploration = FEED_EXPLORATION,
) -> pl.DataFrame:
    """Filters, diversity, explored slots and reasons: the list users see.

    `run_id` seeds the exploration draw per (user, run): the run's list is fixed once
    drawn, the next run draws afresh.
    """
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
        run_id=run_id,
        n=n,
        exploration=exploration,
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
    run_id: str,
    chunk_users: int = CHUNK_USERS,
) -> tuple[pl.DataFrame, int]:
    """Every user's final list as of `now`, `chunk_users` users at a time; (lists, candidates).

    `run_id` seeds the exploration draw (per user, so chunking does not change it).

    The generators are fitted once; users are independent after that, so chunking bounds
    memory by the chunk (about 300 candidates x ~40 feature columns per user) instead of the
    user base.
    """
    lists: list[pl.DataFrame] = []
    proposed_rows = 0
    fitted = generators(
        als=als,
        users=tables.users,
        events=tables.events,
        venues=tables.venues,
        interactions=interactions,
    )
    for users in tables.users.iter_slices(chunk_users):
        proposed = candidates(
            als=als,
            users=users,
            events=tables.events,
            venues=tables.venues,
            interactions=interactions,
            eligible=eligible,
            per_source=per_source,
            fitted=fitted,
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
                run_id=run_id,
            )
        )
    return pl.concat(lists), proposed_rows
