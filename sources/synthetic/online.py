"""Simulated online evaluation: serve each policy's deck to the holdout users and score what
they would do, knowing the hidden truth.

Why: the logged holdout only judges events the old app happened to show (half of each deck was
drawn by popularity), so it rewards predicting exposure; on it a model can beat the oracle.
Here each holdout user gets one session at the cutoff with the policy's list as the deck, and
the simulator's own behaviour model says what happens:

- the user examines position p with probability ``exam[p]`` (the session-length hazard of
  ``BehaviourConfig.position_bias``: the first card always, later ones less and less);
- an examined card is liked with ``sigmoid(z)``, superliked with ``sigmoid(z - gap)``, where
  ``z = true_utility + like_bias`` (the ordered logit of ``behaviour._decide``), and becomes a
  "going" RSVP with the RSVP and going probabilities of the same function.

Outcomes are *expected* values (the limit of infinitely many simulated sessions per user with
common random numbers), so two policies differ only where their decks differ, never by
simulation noise; ``sample_sessions`` draws real sessions with common random numbers and is
how the tests check the expectation against the simulator's decision code.

The value of a session is its expected graded relevance, the grades the holdout uses: like 1,
superlike or going 2. Every grade probability rises with utility and ``exam`` falls with
position, so the deck of the highest-utility events in utility order (the oracle) is the
ceiling of every policy drawing from the same pool (rearrangement inequality): no policy can
beat it except by noise, and there is none here. NDCG@10 uses the expected grade as the gain,
with the oracle's deck as the ideal.

A deck is the policy's list with the events a user could not be shown at the cutoff removed
(another metro, cancelled, started, or already swiped), truncated to ``cards_per_session``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from sources.synthetic.behaviour import (
    BehaviourConfig,
    _arrays,
    _decide,
    _session_lengths,
    _sigmoid,
    _utility,
)
from sources.synthetic.world import World

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NDCG_K = 10
NO_CARD = -1
USER_CHUNK = 512
OUTCOMES = ("value", "likes", "superlikes", "going", "ndcg@10")


@dataclass(frozen=True)
class GradeProbabilities:
    """Per card: P(like or superlike), P(superlike), P(going), and the expected grade."""

    like: FloatArray
    superlike: FloatArray
    going: FloatArray
    grade: FloatArray


def grade_probabilities(utility: FloatArray, config: BehaviourConfig) -> GradeProbabilities:
    """Closed form of `behaviour._decide` for an examined card (logistic noise).

    Grade 2 when superliked or "going", 1 when only liked: E[grade] = P(like) + P(superlike
    or going). Cards with utility -inf (not showable) get all zeros.
    """
    z = np.asarray(utility, dtype=np.float64) + config.like_bias
    with np.errstate(over="ignore", invalid="ignore"):
        like = _sigmoid(z)
        superlike = _sigmoid(z - config.superlike_gap)
        rsvp_like = _sigmoid(config.rsvp_bias + z)
        rsvp_super = _sigmoid(config.rsvp_bias + z + config.superlike_rsvp_bonus)
        going_given_rsvp = _sigmoid(config.going_bias + 0.5 * z)
    like_only = like - superlike
    going = (like_only * rsvp_like + superlike * rsvp_super) * going_given_rsvp
    grade = like + superlike + like_only * rsvp_like * going_given_rsvp
    showable = np.isfinite(z)
    zero = np.zeros_like(z)
    return GradeProbabilities(
        like=np.where(showable, like, zero),
        superlike=np.where(showable, superlike, zero),
        going=np.where(showable, going, zero),
        grade=np.where(showable, grade, zero),
    )


def exam_probabilities(config: BehaviourConfig) -> FloatArray:
    """P(the user reaches position p) for p < cards_per_session (`_session_lengths`' hazard)."""
    cards = config.cards_per_session
    positions = np.arange(cards - 1)
    hazard = np.minimum(1.0, (1.0 - config.position_bias) * (0.5 + positions / 10.0))
    return np.concatenate([[1.0], np.cumprod(1.0 - hazard)])


@dataclass(frozen=True)
class PolicyOutcomes:
    """Per holdout user (aligned with `SimulatedHoldout.user_ids`), the expected outcomes."""

    value: FloatArray
    likes: FloatArray
    superlikes: FloatArray
    going: FloatArray
    ndcg: FloatArray

    def column(self, name: str) -> FloatArray:
        return {
            "value": self.value,
            "likes": self.likes,
            "superlikes": self.superlikes,
            "going": self.going,
            "ndcg@10": self.ndcg,
        }[name]


@dataclass(frozen=True, eq=False)
class SimulatedHoldout:
    """The hidden world as it stood at `cutoff` for `user_ids`: who could be shown what.

    `swipes` and `attendance` are the app's tables *before* the cutoff (the simulator's
    columns: user_id, event_id, created_at / status, updated_at).
    """

    world: World
    config: BehaviourConfig
    cutoff: datetime
    user_ids: IntArray
    swipes: pl.DataFrame
    attendance: pl.DataFrame

    @classmethod
    def at(
        cls,
        world: World,
        config: BehaviourConfig,
        cutoff: datetime,
        user_ids: npt.ArrayLike,
        swipes: pl.DataFrame,
        attendance: pl.DataFrame,
    ) -> SimulatedHoldout:
        users = np.unique(np.asarray(user_ids, dtype=np.int64))
        world.user_index(users)  # raises on ids outside the world
        cutoff = cutoff.astimezone(UTC)
        utc = pl.lit(cutoff).dt.convert_time_zone("UTC")
        return cls(
            world=world,
            config=config,
            cutoff=cutoff,
            user_ids=users,
            swipes=swipes.filter(pl.col("created_at").dt.convert_time_zone("UTC") < utc),
            attendance=attendance.filter(pl.col("updated_at").dt.convert_time_zone("UTC") <= utc),
        )

    @property
    def deck_length(self) -> int:
        return self.config.cards_per_session

    @cached_property
    def exam(self) -> FloatArray:
        return exam_probabilities(self.config)

    @cached_property
    def _rows(self) -> IntArray:
        return self.world.user_index(self.user_ids)

    def _pairs(self, frame: pl.DataFrame) -> sp.csr_matrix:
        """(holdout users x events) 0/1 matrix of `frame`'s (user_id, event_id) pairs."""
        index = self.world.event_index
        position = {int(u): i for i, u in enumerate(self.user_ids)}
        keep = frame.filter(pl.col("user_id").is_in(self.user_ids.tolist()))
        rows = np.array([position[int(u)] for u in keep["user_id"].to_list()], dtype=np.int64)
        cols = np.array([index.get(str(e), -1) for e in keep["event_id"].to_list()], dtype=np.int64)
        known = cols >= 0
        shape = (self.user_ids.size, self.world.events.height)
        matrix = sp.csr_matrix((np.ones(int(known.sum())), (rows[known], cols[known])), shape=shape)
        matrix.data[:] = 1.0
        return matrix

    @cached_property
    def swiped(self) -> sp.csr_matrix:
        return self._pairs(self.swipes)

    @cached_property
    def friends_going(self) -> sp.csr_matrix:
        """(holdout users x events): how many friends are "going" at the cutoff."""
        going = self.attendance.filter(pl.col("status") == "going").select("user_id", "event_id")
        friendships = self.world.friendships
        n_users, n_events = self.world.config.n_users, self.world.events.height
        index = self.world.event_index
        going_matrix = sp.csr_matrix(
            (
                np.ones(going.height),
                (
                    going["user_id"].to_numpy().astype(np.int64) - 1,
                    np.array([index[e] for e in going["event_id"].to_list()], dtype=np.int64),
                ),
            ),
            shape=(n_users, n_events),
        )
        going_matrix.data[:] = 1.0
        friends = sp.csr_matrix(
            (
                np.ones(friendships.height),
                (
                    friendships["user_id"].to_numpy() - 1,
                    friendships["friend_id"].to_numpy() - 1,
                ),
            ),
            shape=(n_users, n_users),
        )
        return sp.csr_matrix(friends[self._rows] @ going_matrix)

    @cached_property
    def event_categories(self) -> IntArray:
        """Category code of every world event row: public, what a reward model may use."""
        return np.asarray(_arrays(self.world).ev_category, dtype=np.int64)

    @cached_property
    def showable(self) -> npt.NDArray[np.bool_]:
        """Events anyone could be shown at the cutoff: not cancelled and not yet started.

        The warehouse keeps no publish time, so the models rank events published after the
        cutoff too (`recommender.holdout.catalogue_at`); the oracle faces that same pool, so
        the ceiling is the ceiling of what the policies could choose from.
        """
        a = _arrays(self.world)
        now_us = int(self.cutoff.timestamp() * 1_000_000)
        return np.asarray(a.ev_active & (a.ev_start > now_us))

    def utility(self, holdout_rows: IntArray, events: IntArray) -> FloatArray:
        """True utility of (holdout user row, event row) pairs, -inf where not showable."""
        a = _arrays(self.world)
        rows = np.asarray(holdout_rows, dtype=np.int64)
        events = np.asarray(events, dtype=np.int64)
        users = self._rows[rows]
        social = np.asarray(self.friends_going[rows, events]).ravel()
        utility = _utility(a, users, events, social)
        swiped = np.asarray(self.swiped[rows, events]).ravel() > 0
        blocked = (~self.showable[events]) | (a.ev_metro[events] != a.us_metro[users]) | swiped
        return np.where(blocked, -np.inf, utility)

    def decks(self, lists: pl.DataFrame) -> IntArray:
        """(holdout users x deck length) event rows of each user's deck, `NO_CARD` padded.

        The list (user_id, rank, event_id) in rank order, minus what the user could not be
        shown at the cutoff, truncated to the deck length.
        """
        index = self.world.event_index
        position = {int(u): i for i, u in enumerate(self.user_ids)}
        frame = lists.filter(pl.col("user_id").is_in(self.user_ids.tolist())).sort(
            "user_id", "rank"
        )
        rows = np.array([position[int(u)] for u in frame["user_id"].to_list()], dtype=np.int64)
        events = np.array(
            [index.get(str(e), -1) for e in frame["event_id"].to_list()], dtype=np.int64
        )
        known = events >= 0
        rows, events = rows[known], events[known]
        shown = np.isfinite(self.utility(rows, events)) if rows.size else np.zeros(0, bool)
        rows, events = rows[shown], events[shown]
        decks = np.full((self.user_ids.size, self.deck_length), NO_CARD, dtype=np.int64)
        if rows.size == 0:
            return decks
        first = np.r_[True, rows[1:] != rows[:-1]]
        starts = np.maximum.accumulate(np.where(first, np.arange(rows.size), 0))
        slot = np.arange(rows.size) - starts
        fits = slot < self.deck_length
        decks[rows[fits], slot[fits]] = events[fits]
        return decks

    def oracle_decks(self) -> IntArray:
        """Each user's showable events by true utility, best first: the ceiling."""
        a = _arrays(self.world)
        decks = np.full((self.user_ids.size, self.deck_length), NO_CARD, dtype=np.int64)
        user_metro = a.us_metro[self._rows]
        for metro in np.unique(user_metro):
            pool = np.flatnonzero(self.showable & (a.ev_metro == metro))
            members = np.flatnonzero(user_metro == metro)
            if pool.size == 0:
                continue
            for c0 in range(0, members.size, USER_CHUNK):
                chunk = members[c0 : c0 + USER_CHUNK]
                rows = np.repeat(chunk, pool.size)
                events = np.tile(pool, chunk.size)
                util = self.utility(rows, events).reshape(chunk.size, pool.size)
                k = min(self.deck_length, pool.size)
                top = np.argpartition(-util, k - 1, axis=1)[:, :k]
                top_util = np.take_along_axis(util, top, axis=1)
                order = np.argsort(-top_util, axis=1, kind="stable")
                top = np.take_along_axis(top, order, axis=1)
                best = np.where(
                    np.isfinite(np.take_along_axis(top_util, order, axis=1)), pool[top], NO_CARD
                )
                decks[chunk, :k] = best
        return decks

    def deck_frame(self, decks: IntArray) -> pl.DataFrame:
        """A deck matrix as a list frame: user_id, rank, event_id."""
        users, slots = np.nonzero(decks != NO_CARD)
        return pl.DataFrame(
            {
                "user_id": self.user_ids[users],
                "rank": (slots + 1).astype(np.int32),
                "event_id": _arrays(self.world).ev_ids[decks[users, slots]].tolist(),
            },
            schema={"user_id": pl.Int64, "rank": pl.Int32, "event_id": pl.Utf8},
        )

    def grades(self, decks: IntArray) -> GradeProbabilities:
        """Grade probabilities of every deck slot (zeros on empty slots)."""
        users, slots = np.nonzero(decks != NO_CARD)
        shape = decks.shape
        out = {name: np.zeros(shape) for name in ("like", "superlike", "going", "grade")}
        if users.size:
            probs = grade_probabilities(self.utility(users, decks[users, slots]), self.config)
            for name in out:
                out[name][users, slots] = getattr(probs, name)
        return GradeProbabilities(**out)

    @cached_property
    def ideal_dcg(self) -> FloatArray:
        """DCG@10 of the oracle's deck: the normaliser of every policy's NDCG."""
        return _dcg(self.grades(self.oracle_decks()).grade)

    def outcomes(self, decks: IntArray) -> PolicyOutcomes:
        """Expected outcomes of one session per user with these decks."""
        probs = self.grades(decks)
        exam = self.exam[: decks.shape[1]]
        ideal = self.ideal_dcg
        dcg = _dcg(probs.grade)
        ndcg = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
        return PolicyOutcomes(
            value=probs.grade @ exam,
            likes=probs.like @ exam,
            superlikes=probs.superlike @ exam,
            going=probs.going @ exam,
            ndcg=ndcg,
        )

    def sample_sessions(self, decks: IntArray, sessions: int, seed: int) -> FloatArray:
        """Mean realised grade per user over `sessions` simulated sessions per user.

        Common random numbers: the session lengths depend only on (seed, session, user) and
        each card's noise only on (seed, session, user, event), so two policies showing the
        same card to the same user in the same session get the same reaction.
        """
        n_users, cards = decks.shape
        rng = np.random.default_rng(seed)
        lengths = _session_lengths(rng, sessions * n_users, self.config).reshape(sessions, -1)
        n_events = self.world.events.height
        totals = np.zeros(n_users)
        users, slots = np.nonzero(decks != NO_CARD)
        events = decks[users, slots]
        utility = self.utility(users, events)
        for s in range(sessions):
            draws = _pair_uniforms(seed, s, users * n_events + events, 4)
            noise = np.log(draws[0]) - np.log1p(-draws[0])  # logistic
            decided = _decide(utility, noise, draws[1], draws[2], self.config)
            liked = decided.action != "pass"
            grade = liked.astype(np.float64) + (
                (decided.action == "superlike") | (decided.rsvp & decided.going)
            )
            examined = slots < lengths[s, users]
            np.add.at(totals, users, np.where(examined, grade, 0.0))
        return totals / sessions


@dataclass(frozen=True)
class LoggedCards:
    """First cards of sessions served by the old app's logging policy, with what users did.

    The first card of a Plackett-Luce deck is a single draw from the policy's weights, so its
    logged propensity is exact (`Activity.impressions` keeps it as `propensity`). `exam` is the
    share of logged sessions that reached each position, what an analyst reads off the
    impressions' `examined` flags; nothing here tells the estimators the hidden truth.
    """

    user_rows: IntArray  # row in SimulatedHoldout.user_ids
    events: IntArray  # world event row
    pscore: FloatArray
    reward: FloatArray  # realised grade: like 1, superlike or going 2, else 0
    exam: FloatArray


def logged_first_cards(
    simulation: SimulatedHoldout, sessions: int, seed: int, popular_share: float | None = None
) -> LoggedCards:
    """`sessions` sessions per holdout user at the cutoff, served by the simulator's logging
    policy (popularity-weighted mixed with uniform over the user's showable pool)."""
    if sessions <= 0:
        raise ValueError(f"sessions must be > 0, got {sessions}")
    config = simulation.config
    share = config.popular_share if popular_share is None else popular_share
    a = _arrays(simulation.world)
    rng = np.random.default_rng([seed, 7_919])
    feed_score = a.ev_popularity + rng.normal(0.0, 0.5, a.ev_popularity.size)
    user_metro = a.us_metro[simulation._rows]
    parts: list[tuple[IntArray, IntArray, FloatArray]] = []
    for metro in np.unique(user_metro):
        pool = np.flatnonzero(simulation.showable & (a.ev_metro == metro))
        members = np.flatnonzero(user_metro == metro)
        if pool.size == 0:
            continue
        weight = np.exp(feed_score[pool])
        for c0 in range(0, members.size, USER_CHUNK):
            chunk = members[c0 : c0 + USER_CHUNK]
            open_ = np.asarray(simulation.swiped[chunk][:, pool].toarray() == 0)
            counts = open_.sum(axis=1, keepdims=True)
            popular = np.where(open_, weight, 0.0)
            w = share * popular / np.maximum(popular.sum(axis=1, keepdims=True), 1e-300)
            w += (1.0 - share) * open_ / np.maximum(counts, 1)
            cdf = np.cumsum(w, axis=1)
            cdf /= cdf[:, -1:]
            draws = rng.random((chunk.size, sessions))
            picks = np.empty((chunk.size, sessions), dtype=np.int64)
            for i in range(chunk.size):
                picks[i] = np.minimum(
                    np.searchsorted(cdf[i], draws[i], side="right"), pool.size - 1
                )
            has_pool = counts[:, 0] > 0
            rows = np.repeat(chunk[has_pool], sessions)
            chosen = picks[has_pool].ravel()
            pscore = w[has_pool][np.arange(int(has_pool.sum())).repeat(sessions), chosen]
            parts.append((rows, pool[chosen], pscore))
    rows = np.concatenate([p[0] for p in parts])
    events = np.concatenate([p[1] for p in parts])
    pscore = np.concatenate([p[2] for p in parts])
    utility = simulation.utility(rows, events)
    noise = rng.logistic(size=rows.size)
    decided = _decide(utility, noise, rng.random(rows.size), rng.random(rows.size), config)
    reward = (decided.action != "pass").astype(np.float64) + (
        (decided.action == "superlike") | (decided.rsvp & decided.going)
    )
    lengths = _session_lengths(rng, rows.size, config)
    exam = (lengths[:, None] > np.arange(config.cards_per_session)[None, :]).mean(axis=0)
    return LoggedCards(rows, events, pscore, reward, exam)


def _pair_uniforms(seed: int, session: int, keys: IntArray, n: int) -> FloatArray:
    """`n` uniforms in (0, 1) per key, a pure function of (seed, session, key)."""
    out = np.empty((n, keys.size))
    for j in range(n):
        salt = (((seed * 1_000_003 + session) * 4 + j) * 0xBF58476D1CE4E5B9) % 2**64
        mixed = np.asarray(keys, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        mixed ^= np.uint64(salt)
        mixed ^= mixed >> np.uint64(31)
        mixed *= np.uint64(0x94D049BB133111EB)
        mixed ^= mixed >> np.uint64(29)
        out[j] = ((mixed >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    return out


def _dcg(gains: FloatArray, k: int = NDCG_K) -> FloatArray:
    top = gains[:, :k]
    discount = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    return np.asarray(top @ discount, dtype=np.float64)


__all__ = [
    "NO_CARD",
    "OUTCOMES",
    "GradeProbabilities",
    "LoggedCards",
    "PolicyOutcomes",
    "SimulatedHoldout",
    "exam_probabilities",
    "grade_probabilities",
    "logged_first_cards",
]
