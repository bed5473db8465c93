"""What EASE and item-kNN share: a user's history times an items x items matrix.

Both score `scores = X_u . M` with X the user x item matrix of positive weights kept from the
fit, so the history lives in the model (as ALS keeps its user factors) and `recommend` needs
only ids. Passes and other weight <= 0 rows are left out (treated as 0): in a linear
item-to-item model a zero already means "no evidence", and a pass says less about the
neighbours of an event than a like does. Repeated (user, event) rows add up, as in ALS.

Saved as one `.npz` of plain arrays (ids, CSR parts, the item matrix), so loading needs no
pickle.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

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
class History:
    """The positive interactions kept from the fit, in the item order of the item matrix."""

    user_ids: npt.NDArray[np.int64]  # sorted; row i of user_items
    event_ids: npt.NDArray[np.str_]  # sorted; column j of user_items, row/column j of M
    user_items: sp.csr_matrix  # float32 summed positive weights

    def arrays(self) -> dict[str, Any]:
        m = self.user_items
        return {
            "user_ids": self.user_ids,
            "event_ids": self.event_ids.astype(np.str_),
            "history_data": m.data,
            "history_indices": m.indices,
            "history_indptr": m.indptr,
            "history_shape": np.array(m.shape),
        }

    @classmethod
    def from_arrays(cls, data: Any) -> History:
        matrix = sp.csr_matrix(
            (data["history_data"], data["history_indices"], data["history_indptr"]),
            shape=tuple(data["history_shape"]),
        )
        return cls(data["user_ids"], data["event_ids"], matrix)


def build_history(interactions: pl.DataFrame, max_items: int | None = None) -> History:
    """The user x item matrix of positive weights, optionally cut to the most popular items.

    Popularity is the number of distinct users with a positive interaction (ties by event
    id), so the cut is deterministic. Users left with nothing after the cut are dropped: they
    would score every candidate 0.
    """
    positive = (
        interactions.lazy()
        .filter(pl.col("weight") > 0)
        .select(pl.col("user_id").cast(pl.Int64), pl.col("event_id").cast(pl.Utf8), "weight")
        .group_by("user_id", "event_id")
        .agg(pl.col("weight").sum().cast(pl.Float32))
        .collect()
    )
    if positive.height == 0:
        raise ModelFitError("no positive interactions to learn from")
    if max_items is not None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        popular = (
            positive.group_by("event_id")
            .agg(users=pl.len())
            .sort(["users", "event_id"], descending=[True, False])
            .head(max_items)
        )
        positive = positive.join(popular.select("event_id"), on="event_id", how="semi")
    user_ids = np.sort(positive["user_id"].unique().to_numpy()).astype(np.int64)
    event_ids = np.sort(positive["event_id"].unique().to_numpy().astype(np.str_))
    rows = np.searchsorted(user_ids, positive["user_id"].to_numpy())
    cols = np.searchsorted(event_ids, positive["event_id"].to_numpy().astype(np.str_))
    matrix = sp.csr_matrix(
        (positive["weight"].to_numpy(), (rows, cols)),
        shape=(len(user_ids), len(event_ids)),
        dtype=np.float32,
    )
    matrix.sort_indices()
    return History(user_ids, event_ids, matrix)


# Scores per dense block: `USER_CHUNK` users, fewer when the model has many items, so a
# 20k-item EASE block is ~800 users (128 MB of float64) rather than 4096 (650 MB, and
# `top_k_block` copies it twice more).
BLOCK_SCORES = 1 << 24


class ItemItemModel(CandidateModel):
    """`recommend`, `save` and history handling for models scoring `X_u . M`."""

    def __init__(self) -> None:
        self._history: History | None = None

    @property
    def history(self) -> History:
        if self._history is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted")
        return self._history

    @abstractmethod
    def _score(self, rows: sp.csr_matrix, cols: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        """(users x cols) scores for the history `rows`; -inf marks "never recommend"."""

    @abstractmethod
    def _matrix_arrays(self) -> dict[str, Any]:
        """The item matrix and params as plain arrays for `save`."""

    def recommend(
        self, *, users: pl.DataFrame, candidates: pl.DataFrame, exclude: pl.DataFrame, n: int
    ) -> pl.DataFrame:
        """Top `n` candidates of the user's metro that the model knows, by `X_u . M`.

        Scored metro by metro, at most `USER_CHUNK` users at a time and at most
        `BLOCK_SCORES` scores per block, so memory stays bounded whatever the number of users.
        """
        h = self.history
        chunk_size = max(1, min(USER_CHUNK, BLOCK_SCORES // max(len(h.event_ids), 1)))
        known_users = users.select(pl.col("user_id").cast(pl.Int64), "metro").filter(
            pl.col("user_id").is_in(h.user_ids.tolist())
        )
        known_events = candidates.select(pl.col("event_id").cast(pl.Utf8), "metro").filter(
            pl.col("event_id").is_in(h.event_ids.tolist())
        )
        parts: list[pl.DataFrame] = []
        for (metro,), metro_users in known_users.group_by("metro"):
            metro_events = known_events.filter(pl.col("metro") == metro)["event_id"].unique().sort()
            if metro_events.len() == 0:
                continue
            e_idx = np.searchsorted(h.event_ids, metro_events.to_numpy().astype(np.str_))
            for chunk in metro_users.unique("user_id").iter_slices(chunk_size):
                u_idx = np.searchsorted(h.user_ids, chunk["user_id"].to_numpy())
                scores = self._score(h.user_items[u_idx], e_idx)
                parts.append(top_k_block(scores, chunk["user_id"], metro_events, exclude, n))
        if not parts:
            return pl.DataFrame(schema=RECS_SCHEMA)
        return ranked(pl.concat(parts), n)

    def save(self, path: Path) -> None:
        arrays = self.history.arrays() | self._matrix_arrays()
        with path.open("wb") as handle:  # a handle, so numpy does not append ".npz"
            # Uncompressed: a dense EASE matrix barely compresses and zlib would take minutes.
            np.savez(handle, **arrays)


def params_array(params: Any) -> npt.NDArray[np.str_]:
    """Dataclass params as a JSON string array, readable with `allow_pickle=False`."""
    return np.array(json.dumps(asdict(params)))


def read_params(data: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(str(data["params"]))
    return loaded
