"""Content-based candidates: TF-IDF over event text, matched against what a user liked.

An event is scored by its text alone, so one that nobody has swiped yet can still reach the
users whose liked events read like it: the cold-start path for new events (issue 4).

- Item vectors: TF-IDF (unigrams + bigrams, sublinear tf) over name, summary, format and
  the category repeated `category_weight` times, so two events of one category stay close
  even when their blurbs share no words. Rows are L2-normalised.
- User profile: the weight-averaged vectors of the events liked (weight > 0), minus
  `pass_share` times the mean vector of the events passed (weight <= 0), L2-normalised.
  Passes only nudge: a pass says "not this one", far weaker than a like says "more of this".
- Cold-start profile: a user with no like but with onboarding categories (ticked at signup)
  gets the mean of their categories' vectors, each category written the way `event_text`
  writes an event's category (repeated `category_weight` times), so its unigrams and bigrams
  are the very terms event documents carry. A user with neither gets no profile: popularity
  serves them. This is the cold-start path for new users.
- Users with likes keep their like-based profile. `onboarding_prior` > 0 adds that multiple
  of the (unit) onboarding profile before normalising; the default 0 leaves it out, because
  once a user has swiped, what they liked is better evidence than what they said at signup,
  and the ranker's `onboarding_match` feature already weighs the stated taste by what the
  data shows it is worth.
- Score: cosine of profile and candidate; only candidates with a positive score are kept.

Saved as one `.npz` (vocabulary, idf, item and profile matrices as CSR parts, id arrays), so
loading needs no pickle; `add_events` vectorises events created after the fit with the
stored vocabulary and idf.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from features.onboarding import onboarding_picks
from models.base import (
    RECS_SCHEMA,
    USER_CHUNK,
    CandidateModel,
    ModelFitError,
    NotFittedError,
    ranked,
    top_k_block,
)


@dataclass(frozen=True)
class ContentParams:
    category_weight: int = 3  # times the category is repeated in each event's document
    pass_share: float = 0.25  # weight of the passed-events mean subtracted from the likes mean
    max_features: int | None = 200_000  # caps vocabulary (bigrams explode) and the artifact size
    onboarding_prior: float = 0.0  # weight of the onboarding profile added to a liker's profile


@dataclass(frozen=True)
class _Fitted:
    vocabulary: np.ndarray  # str, term of column j
    idf: np.ndarray  # float64, idf of column j
    event_ids: np.ndarray  # str, sorted, row i of items
    items: sp.csr_matrix  # events x terms, rows L2-normalised
    user_ids: np.ndarray  # int64, sorted, row i of profiles
    profiles: sp.csr_matrix  # users x terms, rows L2-normalised


def event_text(events: pl.DataFrame, category_weight: int) -> pl.DataFrame:
    """event_id and the one document TF-IDF sees per event (nulls read as empty)."""
    parts = [pl.col("name").fill_null(""), pl.col("summary").fill_null("")]
    if "format" in events.columns:
        parts.append(pl.col("format").fill_null(""))
    category = pl.col("category").fill_null("")
    parts.extend([category] * category_weight)
    return events.select(
        pl.col("event_id").cast(pl.Utf8),
        text=pl.concat_str(parts, separator=" ").str.strip_chars(),
    )


def category_text(category: str, category_weight: int) -> str:
    """A category alone, written as `event_text` writes it inside an event's document.

    Repeating it `category_weight` times gives the same bigrams ("music music") the events
    carry; at least once, so a zero weight still says which category was picked.
    """
    return " ".join([category] * max(category_weight, 1))


def _vectorizer(params: ContentParams, vocabulary: np.ndarray | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(
        ngram_range=(1, 2),
        sublinear_tf=True,
        min_df=1,
        max_features=None if vocabulary is not None else params.max_features,
        vocabulary=None if vocabulary is None else {str(t): i for i, t in enumerate(vocabulary)},
        dtype=np.float64,
    )


def _no_profiles(n_terms: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """No user ids and a 0 x terms matrix: what a profile builder returns for nobody."""
    return np.zeros(0, dtype=np.int64), sp.csr_matrix((0, n_terms), dtype=np.float64)


def _drop_empty(user_ids: np.ndarray, profiles: sp.csr_matrix) -> tuple[np.ndarray, sp.csr_matrix]:
    """Only the users whose profile has a non-zero term (the others would score nothing)."""
    profiles = sp.csr_matrix(profiles)
    profiles.eliminate_zeros()
    keep = np.diff(profiles.indptr) > 0
    return user_ids[keep].astype(np.int64), sp.csr_matrix(profiles[keep])


def _spread(profiles: sp.csr_matrix, ids: np.ndarray, onto: np.ndarray) -> sp.csr_matrix:
    """The rows of `profiles` (one per sorted `ids`) placed at their ids' rows of `onto`
    (a sorted superset); every other row is zero."""
    rows = np.searchsorted(onto, ids)
    placement = sp.csr_matrix(
        (np.ones(len(ids)), (rows, np.arange(len(ids)))), shape=(len(onto), len(ids))
    )
    return sp.csr_matrix(placement @ profiles)


class ContentModel(CandidateModel):
    """Cosine between a user's taste profile and each candidate's text; see module doc."""

    name: ClassVar[str] = "content"

    def __init__(self, events: pl.DataFrame, params: ContentParams | None = None) -> None:
        self.params = params or ContentParams()
        self.events = events
        self._fitted: _Fitted | None = None

    @property
    def fitted(self) -> _Fitted:
        if self._fitted is None:
            raise NotFittedError("ContentModel is not fitted")
        return self._fitted

    def fit(self, interactions: pl.DataFrame, onboarding: pl.DataFrame | None = None) -> Self:
        """Vectorise the events, then profile every user with a like or an onboarding pick.

        `onboarding` has user_id and onboarding_categories (List(Utf8)); a frame without that
        column (e.g. older users tables) counts as nobody having answered.
        Raises ModelFitError when no user ends up with a profile.
        """
        docs = (
            event_text(self.events, self.params.category_weight)
            .filter(pl.col("text") != "")
            .unique("event_id", keep="last")
            .sort("event_id")
        )
        if docs.height == 0:
            raise ModelFitError("no event has any text to vectorise")
        vectorizer = _vectorizer(self.params)
        try:
            items = sp.csr_matrix(vectorizer.fit_transform(docs["text"].to_list()))
        except ValueError as error:  # sklearn: "empty vocabulary" (stop words / punctuation)
            raise ModelFitError(f"event text yields no terms: {error}") from error
        event_ids = docs["event_id"].to_numpy().astype(str)
        vocabulary = vectorizer.get_feature_names_out().astype(str)
        idf = np.asarray(vectorizer.idf_, dtype=np.float64)

        liked_ids, liked = self._profiles(interactions, event_ids, items)
        picked_ids, picked = self._onboarding_profiles(onboarding, vectorizer)
        user_ids, profiles = self._combine(liked_ids, liked, picked_ids, picked)
        if len(user_ids) == 0:
            raise ModelFitError(
                "no positive interaction with an event that has text, "
                "and no onboarding category in the vocabulary"
            )
        if not (np.isfinite(items.data).all() and np.isfinite(profiles.data).all()):
            raise ModelFitError("NaN or infinite values in TF-IDF vectors or profiles")
        self._fitted = _Fitted(vocabulary, idf, event_ids, items, user_ids, profiles)
        return self

    def _profiles(
        self, interactions: pl.DataFrame, event_ids: np.ndarray, items: sp.csr_matrix
    ) -> tuple[np.ndarray, sp.csr_matrix]:
        """Users x terms: liked mean minus `pass_share` x passed mean, L2-normalised.

        Users whose profile comes out empty (liked only text-less events, or passes cancel
        everything) are dropped: they get nothing here, popularity serves them.
        """
        known = interactions.select(
            pl.col("user_id").cast(pl.Int64), pl.col("event_id").cast(pl.Utf8), "weight"
        ).filter(pl.col("event_id").is_in(event_ids.tolist()))
        liked = known.filter(pl.col("weight") > 0)
        if liked.height == 0:
            return _no_profiles(items.shape[1])
        user_ids = np.sort(liked["user_id"].unique().to_numpy())
        known = known.filter(pl.col("user_id").is_in(user_ids.tolist()))
        rows = np.searchsorted(user_ids, known["user_id"].to_numpy())
        cols = np.searchsorted(event_ids, known["event_id"].to_numpy().astype(str))
        weight = known["weight"].to_numpy().astype(np.float64)
        positive = weight > 0
        shape = (len(user_ids), len(event_ids))
        likes = sp.csr_matrix((weight[positive], (rows[positive], cols[positive])), shape=shape)
        passes = sp.csr_matrix(
            (np.ones(int((~positive).sum())), (rows[~positive], cols[~positive])), shape=shape
        )
        # Row-normalise to means (l1 over non-negative weights), then mix and project.
        mix = normalize(likes, norm="l1") - self.params.pass_share * normalize(passes, norm="l1")
        profiles = sp.csr_matrix(normalize(sp.csr_matrix(mix @ items), norm="l2"))
        return _drop_empty(user_ids, profiles)

    def _onboarding_profiles(
        self, onboarding: pl.DataFrame | None, vectorizer: TfidfVectorizer
    ) -> tuple[np.ndarray, sp.csr_matrix]:
        """Users x terms: the mean of the picked categories' vectors, L2-normalised.

        Each distinct category is vectorised once with the fitted vocabulary and idf; a
        category whose words no event uses yields nothing, and a user left with nothing is
        dropped.
        """
        n_terms = len(vectorizer.vocabulary_)
        picks = onboarding_picks(onboarding) if onboarding is not None else None
        if picks is None or picks.height == 0:
            return _no_profiles(n_terms)
        categories = np.sort(picks["category"].unique().to_numpy().astype(str))
        weight = self.params.category_weight
        vectors = sp.csr_matrix(
            vectorizer.transform([category_text(c, weight) for c in categories.tolist()])
        )
        user_ids = np.sort(picks["user_id"].unique().to_numpy())
        rows = np.searchsorted(user_ids, picks["user_id"].to_numpy())
        cols = np.searchsorted(categories, picks["category"].to_numpy().astype(str))
        chosen = sp.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(user_ids), len(categories))
        )
        profiles = sp.csr_matrix(normalize(sp.csr_matrix(normalize(chosen, norm="l1") @ vectors)))
        return _drop_empty(user_ids, profiles)

    def _combine(
        self,
        liked_ids: np.ndarray,
        liked: sp.csr_matrix,
        picked_ids: np.ndarray,
        picked: sp.csr_matrix,
    ) -> tuple[np.ndarray, sp.csr_matrix]:
        """One profile per user: likes first, onboarding for users without a like.

        A liker's onboarding profile is added with weight `onboarding_prior` (0 by default:
        left out); a user known only from onboarding takes it with weight 1.
        """
        user_ids = np.union1d(liked_ids, picked_ids).astype(np.int64)
        if len(user_ids) == 0:
            return _no_profiles(liked.shape[1])
        has_like = np.isin(user_ids, liked_ids)
        scale = sp.diags(np.where(has_like, self.params.onboarding_prior, 1.0))
        mixed = _spread(liked, liked_ids, user_ids) + scale @ _spread(picked, picked_ids, user_ids)
        return _drop_empty(user_ids, sp.csr_matrix(normalize(sp.csr_matrix(mixed))))

    def add_events(self, events: pl.DataFrame) -> Self:
        """Vectorise events the fit did not see with the stored vocabulary and idf.

        Profiles stay as fitted; this only lets a loaded model score events created since.
        Events already known are replaced; words outside the vocabulary are ignored.
        """
        f = self.fitted
        docs = (
            event_text(events, self.params.category_weight)
            .filter(pl.col("text") != "")
            .unique("event_id", keep="last")
        )
        if docs.height == 0:
            return self
        vectorizer = _vectorizer(self.params, f.vocabulary)
        vectorizer.idf_ = f.idf
        new = sp.csr_matrix(vectorizer.transform(docs["text"].to_list()))
        keep = ~np.isin(f.event_ids, docs["event_id"].to_numpy().astype(str))
        ids = np.concatenate([f.event_ids[keep], docs["event_id"].to_numpy().astype(str)])
        stacked = sp.csr_matrix(sp.vstack([f.items[keep], new]))
        order = np.argsort(ids, kind="stable")
        items = sp.csr_matrix(stacked[order])
        self._fitted = _Fitted(f.vocabulary, f.idf, ids[order], items, f.user_ids, f.profiles)
        return self

    def recommend(
        self, *, users: pl.DataFrame, candidates: pl.DataFrame, exclude: pl.DataFrame, n: int
    ) -> pl.DataFrame:
        """Top `n` candidates of the user's metro by cosine to the user's profile.

        Candidates without text and users without a profile are skipped. Scored metro by
        metro, `USER_CHUNK` users at a time, so the dense block stays (chunk x metro events).
        """
        f = self.fitted
        known_users = users.select(pl.col("user_id").cast(pl.Int64), "metro").filter(
            pl.col("user_id").is_in(f.user_ids.tolist())
        )
        known_events = candidates.select(pl.col("event_id").cast(pl.Utf8), "metro").filter(
            pl.col("event_id").is_in(f.event_ids.tolist())
        )
        parts: list[pl.DataFrame] = []
        for (metro,), metro_users in known_users.group_by("metro"):
            metro_events = known_events.filter(pl.col("metro") == metro)["event_id"].unique().sort()
            if metro_events.len() == 0:
                continue
            e_idx = np.searchsorted(f.event_ids, metro_events.to_numpy().astype(str))
            items_t = sp.csc_matrix(f.items[e_idx].T)
            for chunk in metro_users.iter_slices(USER_CHUNK):
                u_idx = np.searchsorted(f.user_ids, chunk["user_id"].to_numpy())
                scores = np.asarray((f.profiles[u_idx] @ items_t).toarray())
                scores[scores <= 0] = -np.inf  # nothing in common, or only with passes
                parts.append(top_k_block(scores, chunk["user_id"], metro_events, exclude, n))
        if not parts:
            return pl.DataFrame(schema=RECS_SCHEMA)
        return ranked(pl.concat(parts), n)

    def similarity(self, pairs: pl.DataFrame) -> np.ndarray:
        """Cosine of profile and item text for every (user_id, event_id) row, in row order.

        NaN where the user has no profile or the event no text: a ranker feature for every
        candidate, not only the ones this generator proposed (unknown stays unknown).
        """
        f = self.fitted
        users = pairs.get_column("user_id").cast(pl.Int64).to_numpy()
        events = pairs.get_column("event_id").cast(pl.Utf8).to_numpy().astype(str)
        u_idx = np.clip(np.searchsorted(f.user_ids, users), 0, max(len(f.user_ids) - 1, 0))
        e_idx = np.clip(np.searchsorted(f.event_ids, events), 0, max(len(f.event_ids) - 1, 0))
        known = np.zeros(len(users), dtype=bool)
        if len(f.user_ids) and len(f.event_ids):
            known = (f.user_ids[u_idx] == users) & (f.event_ids[e_idx] == events)
        out = np.full(len(users), np.nan)
        if known.any():
            rows = f.profiles[u_idx[known]]
            cols = f.items[e_idx[known]]
            out[known] = np.asarray(rows.multiply(cols).sum(axis=1)).ravel()
        return out

    def save(self, path: Path) -> None:
        f = self.fitted
        arrays: dict[str, Any] = {
            "vocabulary": f.vocabulary.astype(np.str_),
            "idf": f.idf,
            "event_ids": f.event_ids.astype(np.str_),
            "user_ids": f.user_ids,
            "params": np.array(json.dumps(asdict(self.params))),
        }
        for key, matrix in (("items", f.items), ("profiles", f.profiles)):
            arrays |= {
                f"{key}_data": matrix.data,
                f"{key}_indices": matrix.indices,
                f"{key}_indptr": matrix.indptr,
                f"{key}_shape": np.array(matrix.shape),
            }
        with path.open("wb") as handle:  # a handle, so numpy does not append ".npz"
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> Self:
        """The text frame is not saved: a loaded model scores the events it was fitted on
        (plus any given to `add_events`)."""
        with np.load(path, allow_pickle=False) as data:

            def csr(key: str) -> sp.csr_matrix:
                parts = (data[f"{key}_data"], data[f"{key}_indices"], data[f"{key}_indptr"])
                return sp.csr_matrix(parts, shape=tuple(data[f"{key}_shape"]))

            model = cls(pl.DataFrame(), ContentParams(**json.loads(str(data["params"]))))
            model._fitted = _Fitted(
                data["vocabulary"],
                data["idf"],
                data["event_ids"],
                csr("items"),
                data["user_ids"],
                csr("profiles"),
            )
        return model
