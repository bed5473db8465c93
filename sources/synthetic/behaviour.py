"""Simulated app behaviour on a synthetic world: sessions, swipe decks, swipes and RSVPs.

Why: ranking models need logged interactions that look like the app's (a biased feed, users
who stop swiping after a few cards, likes that depend on taste, distance, price, time and
friends) *and* a ground truth to be scored against. ``true_utility`` is that ground truth;
``simulate`` produces the logs an app backend would have; ``oracle_top_n`` is the ideal feed
an offline evaluation compares a model's feed with.

The logging policy is the app's old heuristic feed: each deck is a Plackett-Luce sample
(Gumbel top-k) from a mix of a popularity-weighted and a uniform distribution over the
eligible events. ``impressions`` keeps every served card with its first-draw propensity, so
counterfactual (IPS-style) evaluation is possible later.

Everything is deterministic given ``(BehaviourConfig.seed, world.config.seed, world.config)``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl
import scipy.sparse as sp

from sources.synthetic.world import CATEGORY_INDEX, US_PER_SECOND, World

# Weights of the true utility (see ``true_utility``).
W_TASTE = 1.5
TASTE_FLOOR = 0.1
W_SOCIAL = 0.8
W_POPULARITY = 0.5
PRICE_SCALE_USD = 10.0
EARTH_RADIUS_KM = 6371.0088

SWIPE_ACTIONS = ("like", "pass", "superlike")
ATTENDANCE_STATUSES = ("going", "interested")
VISIBILITIES = ("public", "friends", "private")

UTC_DATETIME = pl.Datetime("us", "UTC")
SWIPE_SCHEMA = pl.Schema(
    {
        "swipe_id": pl.Utf8(),
        "user_id": pl.Int64(),
        "event_id": pl.Utf8(),
        "action": pl.Utf8(),
        "position": pl.Int32(),
        "created_at": UTC_DATETIME,
    }
)
ATTENDANCE_SCHEMA = pl.Schema(
    {
        "user_id": pl.Int64(),
        "event_id": pl.Utf8(),
        "status": pl.Utf8(),
        "visibility": pl.Utf8(),
        "notes": pl.Utf8(),
        "updated_at": UTC_DATETIME,
    }
)
IMPRESSION_SCHEMA = pl.Schema(
    {
        "session_id": pl.Int64(),
        "user_id": pl.Int64(),
        "event_id": pl.Utf8(),
        "position": pl.Int32(),
        "shown_at": UTC_DATETIME,
        "examined": pl.Boolean(),
        "propensity": pl.Float64(),
        "n_candidates": pl.Int32(),
    }
)
ORACLE_SCHEMA = pl.Schema(
    {
        "user_id": pl.Int64(),
        "rank": pl.Int32(),
        "event_id": pl.Utf8(),
        "utility": pl.Float64(),
    }
)


@dataclass(frozen=True)
class BehaviourConfig:
    """Knobs of the simulated users and of the logging policy that showed them cards.

    - ``sessions_per_user``: mean sessions per user over the world's past window; per-user
      activity is Gamma-distributed, so a few users are much more active than most.
    - ``position_bias``: after swiping the card at 0-based position p the user stops with
      probability ``(1 - position_bias) * (0.5 + p / 10)`` (capped at 1): the first card is
      always swiped, later cards are examined less and less. 1.0 disables early stopping.
    - ``popular_share``: weight of the popularity-weighted part of the logging policy.
    - ``like_bias`` / ``superlike_gap``: ordered-logit thresholds. A card is liked when
      ``utility + like_bias + logistic noise > 0`` and superliked when it exceeds
      ``superlike_gap``.
    - ``rsvp_bias`` / ``superlike_rsvp_bonus`` / ``going_bias``: a liked card becomes an RSVP
      with probability ``sigmoid(rsvp_bias + utility + like_bias + bonus * superliked)``; the
      RSVP is "going" with probability ``sigmoid(going_bias + 0.5 * (utility + like_bias))``,
      else "interested".
    - ``min_lead_minutes``: a card starts at least this long after the session.
    """

    seed: int = 11
    sessions_per_user: float = 6.0
    cards_per_session: int = 20
    position_bias: float = 0.8
    popular_share: float = 0.5
    like_bias: float = 1.5
    superlike_gap: float = 3.5
    rsvp_bias: float = -2.0
    superlike_rsvp_bonus: float = 1.5
    going_bias: float = 0.0
    min_lead_minutes: int = 30
    visibility_weights: tuple[float, float, float] = (0.55, 0.35, 0.10)

    def __post_init__(self) -> None:
        if self.sessions_per_user <= 0:
            raise ValueError(f"sessions_per_user must be > 0, got {self.sessions_per_user}")
        if self.cards_per_session <= 0:
            raise ValueError(f"cards_per_session must be > 0, got {self.cards_per_session}")
        if not 0.0 <= self.position_bias <= 1.0:
            raise ValueError(f"position_bias must be in [0, 1], got {self.position_bias}")
        if not 0.0 <= self.popular_share <= 1.0:
            raise ValueError(f"popular_share must be in [0, 1], got {self.popular_share}")
        if self.min_lead_minutes < 0:
            raise ValueError(f"min_lead_minutes must be >= 0, got {self.min_lead_minutes}")
        if len(self.visibility_weights) != 3 or min(self.visibility_weights) < 0:
            raise ValueError("visibility_weights must be three non-negative weights")


@dataclass(frozen=True, eq=False)
class Activity:
    """What the app's database would hold after the simulated sessions (plus impressions).

    ``swipes`` and ``attendance`` match the Postgres contract (``event_attendance``);
    ``impressions`` is every served card (swiped or not) with the logging policy's
    propensity, for counterfactual evaluation.
    """

    config: BehaviourConfig
    swipes: pl.DataFrame
    attendance: pl.DataFrame
    impressions: pl.DataFrame = field(repr=False)

    def oracle_top_n(
        self,
        world: World,
        user_ids: Sequence[int] | np.ndarray,
        n: int,
        now: datetime | None = None,
    ) -> pl.DataFrame:
        """The ideal feed for ``user_ids``; see the module-level ``oracle_top_n``."""
        return oracle_top_n(world, self, user_ids, n, now)


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Arrays:
    """World columns as aligned numpy arrays, so utilities are pure broadcasting."""

    ev_category: np.ndarray
    ev_lat: np.ndarray
    ev_lon: np.ndarray
    ev_weekend: np.ndarray
    ev_price_usd: np.ndarray
    ev_popularity: np.ndarray
    ev_metro: np.ndarray
    ev_start: np.ndarray
    ev_created: np.ndarray
    ev_active: np.ndarray
    ev_ids: np.ndarray
    us_metro: np.ndarray
    us_lat: np.ndarray
    us_lon: np.ndarray
    us_price: np.ndarray
    us_distance: np.ndarray
    us_weekend: np.ndarray
    taste: np.ndarray


def _micros(series: pl.Series) -> np.ndarray:
    return series.dt.epoch("us").to_numpy().astype(np.int64)


_ARRAYS_CACHE: weakref.WeakKeyDictionary[World, _Arrays] = weakref.WeakKeyDictionary()


def _arrays(world: World) -> _Arrays:
    """Aligned arrays of ``world`` (cached per world object: worlds are immutable)."""
    cached = _ARRAYS_CACHE.get(world)
    if cached is not None:
        return cached
    events = world.events
    metro_pos = {m: i for i, m in enumerate(world.config.metros)}
    # Local weekday/hour per event: group by timezone (a column holds one timezone).
    weekend = np.zeros(events.height, dtype=np.float64)
    tz_col = events["timezone"].to_numpy()
    for tz in np.unique(tz_col):
        rows = np.flatnonzero(tz_col == tz)
        local = events["start_utc"].gather(rows).dt.convert_time_zone(str(tz))
        wd = local.dt.weekday().to_numpy()
        hour = local.dt.hour().to_numpy()
        weekend[rows] = ((wd >= 6) | ((wd == 5) & (hour >= 17))).astype(np.float64)
    traits = world.user_traits
    coords = events.select("venue_id").join(
        world.venues.select("venue_id", "latitude", "longitude"),
        on="venue_id",
        how="left",
        maintain_order="left",
    )
    arrays = _Arrays(
        ev_category=np.array([CATEGORY_INDEX[c] for c in events["category_id"].to_list()]),
        ev_lat=np.radians(coords["latitude"].to_numpy()),
        ev_lon=np.radians(coords["longitude"].to_numpy()),
        ev_weekend=weekend,
        ev_price_usd=events["price_min_cents"].fill_null(0).to_numpy() / 100.0,
        ev_popularity=events["popularity"].to_numpy(),
        ev_metro=np.array([metro_pos[m] for m in events["metro"].to_list()]),
        ev_start=_micros(events["start_utc"]),
        ev_created=_micros(events["created"]),
        ev_active=(events["status"] != "canceled").to_numpy(),
        ev_ids=events["event_id"].to_numpy().astype(object),
        us_metro=np.array([metro_pos[m] for m in world.users["metro"].to_list()]),
        us_lat=np.radians(world.users["home_lat"].to_numpy()),
        us_lon=np.radians(world.users["home_lon"].to_numpy()),
        us_price=traits["price_sensitivity"].to_numpy(),
        us_distance=traits["distance_km_scale"].to_numpy(),
        us_weekend=traits["weekend_affinity"].to_numpy(),
        taste=world.taste,
    )
    _ARRAYS_CACHE[world] = arrays
    return arrays


def _utility(
    a: _Arrays, u: np.ndarray, e: np.ndarray, friends_going: np.ndarray | float = 0.0
) -> np.ndarray:
    """Utility of event row(s) ``e`` for user row(s) ``u``; broadcasts like numpy."""
    k = a.taste.shape[1]
    taste = W_TASTE * np.log(k * a.taste[u, a.ev_category[e]] + TASTE_FLOOR)
    dlat = a.ev_lat[e] - a.us_lat[u]
    dlon = a.ev_lon[e] - a.us_lon[u]
    h = np.sin(dlat / 2) ** 2 + np.cos(a.us_lat[u]) * np.cos(a.ev_lat[e]) * np.sin(dlon / 2) ** 2
    distance_km = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return (
        taste
        - distance_km / a.us_distance[u]
        + a.us_weekend[u] * a.ev_weekend[e]
        - a.us_price[u] * np.log1p(a.ev_price_usd[e] / PRICE_SCALE_USD)
        + W_SOCIAL * np.log1p(friends_going)
        + W_POPULARITY * a.ev_popularity[e]
    )


def _event_rows(world: World, event_ids: Sequence[str] | np.ndarray) -> np.ndarray:
    index = world.event_index
    try:
        return np.array([index[str(e)] for e in event_ids], dtype=np.int64)
    except KeyError as exc:
        raise KeyError(f"unknown event id {exc.args[0]!r}") from None


def true_utility(
    world: World,
    user_ids: np.ndarray | Sequence[int],
    event_ids: Sequence[str] | np.ndarray,
    friends_going: np.ndarray | None = None,
) -> np.ndarray:
    """Ground-truth utility matrix (len(user_ids) x len(event_ids)) of the hidden world.

    ``U(u, e) = 1.5 * log(K * taste[u, category(e)] + 0.1)``   (K = number of categories)
    ``        - distance_km(home(u), venue(e)) / distance_km_scale[u]``   (haversine)
    ``        + weekend_affinity[u] * is_weekend(e)``   (local Sat/Sun, or Friday from 17:00)
    ``        - price_sensitivity[u] * log1p(price_min_usd(e) / 10)``   (0 for free events)
    ``        + 0.8 * log1p(friends_going[u, e])``
    ``        + 0.5 * popularity(e)``   (latent, standardised)

    Higher is better; only differences matter. The simulator turns it into like / superlike /
    pass through an ordered logit (see ``BehaviourConfig``). ``friends_going`` (same shape as
    the result, or broadcastable) defaults to zero: no social term.
    """
    a = _arrays(world)
    u = world.user_index(user_ids)
    e = _event_rows(world, event_ids)
    social = 0.0 if friends_going is None else np.asarray(friends_going, dtype=np.float64)
    return _utility(a, u[:, None], e[None, :], social)


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _uuid4_strings(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random (version 4) UUID strings from ``rng``: client-style ids, reproducible."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    hex_positions = [i for i in range(36) if i not in (8, 13, 18, 23)]
    out[:, hex_positions] = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    return np.ascontiguousarray(out).view("S36").ravel().astype(str)


def _session_lengths(rng: np.random.Generator, n: int, config: BehaviourConfig) -> np.ndarray:
    """How many cards each session swipes before stopping (position-dependent hazard)."""
    cards = config.cards_per_session
    if cards == 1:
        return np.ones(n, dtype=np.int64)
    positions = np.arange(cards - 1)
    hazard = np.minimum(1.0, (1.0 - config.position_bias) * (0.5 + positions / 10.0))
    go_on = rng.random((n, cards - 1)) >= hazard
    return 1 + np.cumprod(go_on, axis=1).sum(axis=1)


@dataclass(frozen=True)
class _Decisions:
    action: np.ndarray
    rsvp: np.ndarray
    going: np.ndarray


def _decide(
    utility: np.ndarray,
    noise: np.ndarray,
    r_rsvp: np.ndarray,
    r_going: np.ndarray,
    config: BehaviourConfig,
) -> _Decisions:
    z = utility + config.like_bias
    score = z + noise
    superliked = score > config.superlike_gap
    liked = score > 0
    action = np.where(superliked, "superlike", np.where(liked, "like", "pass"))
    p_rsvp = _sigmoid(config.rsvp_bias + z + config.superlike_rsvp_bonus * superliked)
    rsvp = liked & (r_rsvp < p_rsvp)
    going = r_going < _sigmoid(config.going_bias + 0.5 * z)
    return _Decisions(action=action, rsvp=rsvp, going=going)


def _friends_going_at(world: World, swipes: pl.DataFrame, going: pl.DataFrame) -> np.ndarray:
    """For each swipe row: how many of the user's friends RSVP'd "going" before the swipe."""
    if going.height == 0 or world.friendships.height == 0:
        return np.zeros(swipes.height)
    friend_going = going.rename({"user_id": "friend_id"}).join(
        world.friendships, on="friend_id", how="inner"
    )
    counted = (
        swipes.select("row", "user_id", "event_id", "created_at")
        .join(friend_going, on=["user_id", "event_id"], how="inner")
        .filter(pl.col("updated_at") < pl.col("created_at"))
        .group_by("row")
        .len()
    )
    out = np.zeros(swipes.height)
    out[counted["row"].to_numpy()] = counted["len"].to_numpy()
    return out


def simulate(world: World, config: BehaviourConfig | None = None) -> Activity:
    """Simulate app sessions before ``world.config.now`` and return the logged activity.

    Per user (sessions in time order): the deck holds up to ``cards_per_session`` events of
    the user's metro that are not canceled, published before the session, start at least
    ``min_lead_minutes`` after it and were not swiped by this user before; the user swipes
    the first cards until stopping (``position_bias``). Decisions come from ``true_utility``
    in two passes: pass one without the social term gives "going" RSVPs; pass two adds
    ``0.8 * log1p(friends going before the swipe)`` and re-decides swipes and RSVPs with the
    same random draws, so friends can only make a card more attractive.
    """
    config = config if config is not None else BehaviourConfig()
    rng = np.random.default_rng([config.seed, world.config.seed])
    a = _arrays(world)
    now = int(world.config.now.timestamp()) * US_PER_SECOND
    window = world.config.days_back * 86_400 * US_PER_SECOND
    n_users = world.config.n_users

    # Sessions: Gamma-Poisson counts, uniform times in the past window (>= 1 h before now).
    activity = rng.gamma(2.0, 0.5, n_users)
    n_sessions = rng.poisson(config.sessions_per_user * activity)
    sess_user = np.repeat(np.arange(n_users), n_sessions)
    hour = 3_600 * US_PER_SECOND
    sess_time = now - hour - (rng.random(sess_user.size) * (window - hour)).astype(np.int64)
    sess_time = sess_time // US_PER_SECOND * US_PER_SECOND
    order = np.lexsort((sess_time, sess_user))
    sess_user, sess_time = sess_user[order], sess_time[order]
    sess_len = _session_lengths(rng, sess_user.size, config)
    bounds = np.searchsorted(sess_user, np.arange(n_users + 1))

    # Per metro: eligible events sorted by start, and the heuristic feed's popularity weights.
    feed_score = a.ev_popularity + rng.normal(0.0, 0.5, a.ev_popularity.size)
    pools = []
    for m in range(len(world.config.metros)):
        rows = np.flatnonzero((a.ev_metro == m) & a.ev_active)
        rows = rows[np.argsort(a.ev_start[rows], kind="stable")]
        pools.append((rows, a.ev_start[rows], a.ev_created[rows], np.exp(feed_score[rows])))

    lead = config.min_lead_minutes * 60 * US_PER_SECOND
    cards = config.cards_per_session
    share = config.popular_share
    chunks_session: list[np.ndarray] = []
    chunks_event: list[np.ndarray] = []
    chunks_prop: list[np.ndarray] = []
    chunks_ncand: list[np.ndarray] = []
    for u in range(n_users):
        s0, s1 = bounds[u], bounds[u + 1]
        if s0 == s1:
            continue
        rows, start, created, pop_w = pools[a.us_metro[u]]
        seen = np.zeros(rows.size, dtype=bool)
        for s in range(s0, s1):
            t = sess_time[s]
            lo = int(np.searchsorted(start, t + lead, side="right"))
            cand = lo + np.flatnonzero((created[lo:] <= t) & ~seen[lo:])
            k = min(cards, cand.size)
            if k == 0:
                continue
            w_pop = pop_w[cand]
            w = share * w_pop / w_pop.sum() + (1.0 - share) / cand.size
            keys = np.log(w) + rng.gumbel(size=cand.size)
            top = np.argpartition(-keys, k - 1)[:k] if k < cand.size else np.arange(k)
            top = top[np.argsort(-keys[top], kind="stable")]
            deck = cand[top]
            seen[deck[: min(int(sess_len[s]), k)]] = True
            chunks_session.append(np.full(k, s))
            chunks_event.append(rows[deck])
            chunks_prop.append(w[top])
            chunks_ncand.append(np.full(k, cand.size))

    if chunks_session:
        imp_session = np.concatenate(chunks_session)
        imp_event = np.concatenate(chunks_event)
        imp_prop = np.concatenate(chunks_prop)
        imp_ncand = np.concatenate(chunks_ncand)
    else:
        imp_session = imp_event = imp_ncand = np.empty(0, dtype=np.int64)
        imp_prop = np.empty(0)
    n_imp = imp_session.size
    # Position within the deck: running index minus the index where the session began.
    first = np.r_[True, imp_session[1:] != imp_session[:-1]] if n_imp else np.empty(0, bool)
    starts_at = np.maximum.accumulate(np.where(first, np.arange(n_imp), 0)) if n_imp else first
    position = np.arange(n_imp) - starts_at
    examined = position < sess_len[imp_session]
    # Card dwell time 2 s + Exp(5 s), in whole milliseconds; shown_at = session + elapsed.
    dwell = ((2.0 + rng.exponential(5.0, n_imp)) * 1000).astype(np.int64) * 1000
    elapsed = np.cumsum(dwell) - dwell
    elapsed -= elapsed[starts_at] if n_imp else 0
    imp_user = sess_user[imp_session]
    shown_at = np.minimum(
        sess_time[imp_session] + elapsed,
        np.minimum(a.ev_start[imp_event], now) - US_PER_SECOND,
    )

    impressions = pl.DataFrame(
        {
            "session_id": imp_session.astype(np.int64),
            "user_id": imp_user.astype(np.int64) + 1,
            "event_id": a.ev_ids[imp_event].tolist(),
            "position": position.astype(np.int32),
            "shown_at": shown_at,
            "examined": examined,
            "propensity": imp_prop.astype(np.float64),
            "n_candidates": imp_ncand.astype(np.int32),
        },
        schema_overrides={"shown_at": pl.Int64, "event_id": pl.Utf8},
    ).with_columns(pl.col("shown_at").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    impressions = impressions.select(list(IMPRESSION_SCHEMA)).cast(IMPRESSION_SCHEMA)

    # Swipes are the examined impressions; decide them in two passes (see docstring).
    sw = np.flatnonzero(examined)
    sw_user, sw_event, sw_time = imp_user[sw], imp_event[sw], shown_at[sw]
    n_sw = sw.size
    noise = rng.logistic(size=n_sw)
    r_rsvp, r_going, r_delay = rng.random(n_sw), rng.random(n_sw), rng.random(n_sw)
    r_vis = rng.random(n_sw)
    swipe_ids = _uuid4_strings(rng, n_sw)
    rsvp_at = np.minimum(
        sw_time + ((5 + 115 * r_delay) * US_PER_SECOND).astype(np.int64),
        np.minimum(a.ev_start[sw_event], now) - US_PER_SECOND,
    )
    rsvp_at = np.maximum(rsvp_at, sw_time)

    base_utility = _utility(a, sw_user, sw_event)
    first_pass = _decide(base_utility, noise, r_rsvp, r_going, config)
    keys = pl.DataFrame(
        {
            "row": np.arange(n_sw, dtype=np.int64),
            "user_id": sw_user.astype(np.int64) + 1,
            "event_id": a.ev_ids[sw_event].tolist(),
            "created_at": sw_time,
        },
        schema_overrides={"event_id": pl.Utf8},
    )
    going_mask = first_pass.rsvp & first_pass.going
    going = keys.filter(pl.Series(going_mask)).select(
        "user_id", "event_id", pl.col("created_at").alias("updated_at")
    )
    going = going.with_columns(pl.Series("updated_at", rsvp_at[going_mask]))
    friends = _friends_going_at(world, keys, going)
    final = _decide(base_utility + W_SOCIAL * np.log1p(friends), noise, r_rsvp, r_going, config)

    swipes = pl.DataFrame(
        {
            "swipe_id": swipe_ids,
            "user_id": keys["user_id"],
            "event_id": keys["event_id"],
            "action": final.action,
            "position": position[sw].astype(np.int32),
            "created_at": sw_time,
        },
        schema_overrides={"created_at": pl.Int64, "swipe_id": pl.Utf8, "action": pl.Utf8},
    ).with_columns(pl.col("created_at").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    swipes = swipes.cast(SWIPE_SCHEMA)

    rsvp_rows = np.flatnonzero(final.rsvp)
    vis_cdf = np.cumsum(config.visibility_weights) / sum(config.visibility_weights)
    visibility = np.asarray(VISIBILITIES)[
        np.minimum(np.searchsorted(vis_cdf, r_vis[rsvp_rows], side="right"), 2)
    ]
    attendance = pl.DataFrame(
        {
            "user_id": keys["user_id"].gather(rsvp_rows),
            "event_id": keys["event_id"].gather(rsvp_rows),
            "status": np.where(final.going[rsvp_rows], "going", "interested"),
            "visibility": visibility,
            "notes": pl.Series([None] * rsvp_rows.size, dtype=pl.Utf8),
            "updated_at": rsvp_at[rsvp_rows],
        },
        schema_overrides={"updated_at": pl.Int64, "status": pl.Utf8, "visibility": pl.Utf8},
    ).with_columns(pl.col("updated_at").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    attendance = attendance.cast(ATTENDANCE_SCHEMA).sort(["user_id", "updated_at", "event_id"])
    return Activity(config=config, swipes=swipes, attendance=attendance, impressions=impressions)


# --------------------------------------------------------------------------------------------
# Oracle
# --------------------------------------------------------------------------------------------


def oracle_top_n(
    world: World,
    activity: Activity,
    user_ids: Sequence[int] | np.ndarray,
    n: int,
    now: datetime | None = None,
) -> pl.DataFrame:
    """The ideal feed: each user's ``n`` highest-``true_utility`` unswiped events.

    Candidates are events of the user's metro that are not canceled, published at or before
    ``now`` (default ``world.config.now``) and start after it, minus every event the user has
    swiped in ``activity``. The social term counts friends whose attendance in ``activity``
    is "going" (updated at or before ``now``). Returns ``user_id, rank (1 = best), event_id,
    utility``, sorted by user_id then rank; a user gets fewer rows when fewer events qualify.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    now_dt = (now or world.config.now).astimezone(UTC)
    now_us = int(now_dt.timestamp() * 1_000_000)
    a = _arrays(world)
    u_all = np.unique(world.user_index(user_ids))
    n_users, n_events = world.config.n_users, world.events.height
    index = world.event_index

    def user_event_matrix(frame: pl.DataFrame) -> sp.csr_matrix:
        rows = frame["user_id"].to_numpy().astype(np.int64) - 1
        cols = np.array([index[e] for e in frame["event_id"].to_list()], dtype=np.int64)
        data = np.ones(rows.size)
        return sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_events))

    swiped = user_event_matrix(activity.swipes)
    swiped.data[:] = 1.0
    going = user_event_matrix(
        activity.attendance.filter((pl.col("status") == "going") & (pl.col("updated_at") <= now_dt))
    )
    going.data[:] = 1.0
    f = world.friendships
    friends = sp.csr_matrix(
        (np.ones(f.height), (f["user_id"].to_numpy() - 1, f["friend_id"].to_numpy() - 1)),
        shape=(n_users, n_users),
    )
    eligible = a.ev_active & (a.ev_start > now_us) & (a.ev_created <= now_us)

    out_user: list[np.ndarray] = []
    out_rank: list[np.ndarray] = []
    out_event: list[np.ndarray] = []
    out_util: list[np.ndarray] = []
    for m in range(len(world.config.metros)):
        users_m = u_all[a.us_metro[u_all] == m]
        events_m = np.flatnonzero(eligible & (a.ev_metro == m))
        if users_m.size == 0 or events_m.size == 0:
            continue
        for c0 in range(0, users_m.size, 512):
            uu = users_m[c0 : c0 + 512]
            social = (friends[uu] @ going[:, events_m]).toarray()
            util = _utility(a, uu[:, None], events_m[None, :], social)
            util[swiped[uu][:, events_m].toarray() > 0] = -np.inf
            k = min(n, events_m.size)
            top = np.argpartition(-util, k - 1, axis=1)[:, :k]
            top_util = np.take_along_axis(util, top, axis=1)
            sort = np.argsort(-top_util, axis=1, kind="stable")
            top = np.take_along_axis(top, sort, axis=1)
            top_util = np.take_along_axis(top_util, sort, axis=1)
            keep = np.isfinite(top_util)
            out_user.append(np.repeat(uu + 1, k).reshape(-1, k)[keep])
            out_rank.append(np.broadcast_to(np.arange(1, k + 1), top.shape)[keep])
            out_event.append(events_m[top][keep])
            out_util.append(top_util[keep])
    if not out_user:
        return pl.DataFrame(schema=ORACLE_SCHEMA)
    frame = pl.DataFrame(
        {
            "user_id": np.concatenate(out_user).astype(np.int64),
            "rank": np.concatenate(out_rank).astype(np.int32),
            "event_id": a.ev_ids[np.concatenate(out_event)].tolist(),
            "utility": np.concatenate(out_util),
        },
        schema=ORACLE_SCHEMA,
    )
    return frame.sort(["user_id", "rank"])
