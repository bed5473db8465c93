"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data") as candidates.

A closed-form item x item linear model: G = XᵀX + λI, P = G⁻¹, B = -P / diag(P) with
diag(B) = 0, scores = X_u . B. One hyper-parameter (λ = `l2`) and no iterations: on
MovieLens-100K its default scores NDCG@10 0.471, level with an ALS tuned over nine fits
(0.474) and far above ALS's defaults (0.423). But B is a dense items x items matrix, so:

- Memory: G, P and B share one float32 buffer (the Gram matrix is built in row blocks and
  inverted in place by LAPACK's Cholesky potrf/potri, five times faster than
  `np.linalg.inv` at 1.7k items), so B's 1.5 GiB at 20k items is most of it: the 20k-item
  benchmark (`bench/ease_memory.py`) peaks at 2.3 GiB, scoring included.
- Size: only the `max_items` most popular items (distinct users with a positive
  interaction) enter the model; the others get no EASE score, as events unknown to ALS get
  no ALS score, and are left to the popularity, content and geo generators.
- Passes (weight <= 0) are left out, i.e. treated as 0 (see `models.item_item`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp
from scipy.linalg import get_lapack_funcs
from threadpoolctl import threadpool_limits

from models.base import ModelFitError, NotFittedError
from models.item_item import (
    History,
    ItemItemModel,
    build_history,
    params_array,
    read_params,
)

# Entries per dense temporary while building or mirroring the Gram matrix (64 MB of float32).
BLOCK_ENTRIES = 1 << 24
# OpenBLAS threads spin while they wait: on a busy 2-core machine a threaded inversion of
# 1.7k items took 10 s instead of 0.1 s. Up to this many items one thread is fast anyway
# (under a second); above it the threads pay for themselves (a 20k-item fit on a quiet
# machine: 77 s with both cores, 132 s with one).
THREADED_ITEMS = 4096


@dataclass(frozen=True)
class EASEParams:
    """`l2` = 500 scored best on MovieLens-100K's validation split (NDCG@10 0.232; 250 and
    1000 scored 0.230 and 0.232) and beats 250 on the synthetic city (0.073 against 0.067),
    whose summed weights want a far larger λ still (0.100 at 25,000): `models.tuning.tune_ease`
    finds it per dataset. float32 ranks as float64 did on MovieLens-100K (same NDCG@10) at
    half the memory."""

    l2: float = 500.0
    max_items: int = 20_000
    precision: Literal["float32", "float64"] = "float32"


class EASEModel(ItemItemModel):
    name: ClassVar[str] = "ease"

    def __init__(self, params: EASEParams | None = None) -> None:
        super().__init__()
        self.params = params or EASEParams()
        self._weights: npt.NDArray[np.floating[Any]] | None = None

    @property
    def weights(self) -> npt.NDArray[np.floating[Any]]:
        """B: items x items, zero diagonal, in the order of `history.event_ids`."""
        if self._weights is None:
            raise NotFittedError("EASEModel is not fitted")
        return self._weights

    def fit(self, interactions: pl.DataFrame) -> Self:
        if self.params.l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {self.params.l2}")
        history = build_history(interactions, self.params.max_items)
        dtype = np.dtype(self.params.precision)
        gram = gram_matrix(history.user_items, dtype)
        gram[np.diag_indices_from(gram)] += dtype.type(self.params.l2)
        threads = 1 if gram.shape[0] <= THREADED_ITEMS else None
        with threadpool_limits(limits=threads, user_api="blas"):
            precision = invert_spd_in_place(gram)
        diagonal = np.diag(precision).copy()
        np.divide(precision, -diagonal, out=precision)  # B[i, j] = -P[i, j] / P[j, j]
        np.fill_diagonal(precision, 0.0)
        if not all_finite(precision):
            raise ModelFitError("NaN or infinite values in the EASE weights")
        self._history, self._weights = history, precision
        return self

    def _score(self, rows: sp.csr_matrix, cols: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        # (chunk x all items) then the metro's columns: never copies B itself.
        full = np.asarray(rows.astype(self.weights.dtype, copy=False) @ self.weights)
        return full[:, cols].astype(np.float64)

    def _matrix_arrays(self) -> dict[str, Any]:
        return {"weights": self.weights, "params": params_array(self.params)}

    @classmethod
    def load(cls, path: Path) -> Self:
        with np.load(path, allow_pickle=False) as data:
            model = cls(EASEParams(**read_params(data)))
            model._history = History.from_arrays(data)
            model._weights = data["weights"]
        return model


def gram_matrix(user_items: sp.csr_matrix, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """XᵀX as a dense C-ordered array, built in row blocks so no sparse product holds more
    than `BLOCK_ENTRIES` entries (a whole sparse XᵀX can outgrow the dense one)."""
    x = user_items.astype(dtype)
    xt = x.T.tocsr()
    n = x.shape[1]
    gram = np.empty((n, n), dtype=dtype)
    block = max(1, BLOCK_ENTRIES // max(n, 1))
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        gram[lo:hi] = (xt[lo:hi] @ x).toarray()
    return gram


def all_finite(matrix: npt.NDArray[Any]) -> bool:
    """`np.isfinite(matrix).all()` by row blocks, without an n² boolean temporary."""
    block = max(1, BLOCK_ENTRIES // max(matrix.shape[1], 1))
    return all(np.isfinite(matrix[lo : lo + block]).all() for lo in range(0, len(matrix), block))


def invert_spd_in_place(matrix: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The inverse of a symmetric positive definite C-ordered matrix, in its own buffer.

    A symmetric C array's transpose is the same matrix in Fortran order, so LAPACK's
    potrf/potri overwrite it without a copy; they fill one triangle (the lower one in C
    order), which is mirrored block by block.
    """
    potrf, potri = get_lapack_funcs(("potrf", "potri"), (matrix,))
    factor, info = potrf(matrix.T, lower=False, clean=False, overwrite_a=True)
    if info != 0:
        raise ModelFitError(f"Gram matrix is not positive definite (potrf info {info})")
    inverse, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise ModelFitError(f"Gram matrix could not be inverted (potri info {info})")
    if not np.shares_memory(inverse, matrix):  # LAPACK copied after all: keep the result
        matrix[...] = inverse.T
    n = matrix.shape[0]
    block = max(1, BLOCK_ENTRIES // max(n, 1))
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        matrix[lo:hi, hi:] = matrix[hi:, lo:hi].T
        tile = matrix[lo:hi, lo:hi]
        matrix[lo:hi, lo:hi] = np.tril(tile) + np.tril(tile, -1).T
    return matrix
