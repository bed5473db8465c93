"""Exploration with known propensities: a share of each feed's slots drawn from the scores.

Why: a feed that always shows the ranker's best guess logs only what the ranker already
believes, so its impressions cannot say what any other ranking would have earned (no
off-policy estimate is unbiased where the logging policy put zero probability), and fresh
events never get the exposure that would teach the models about them. Exploring a small,
fixed share of slots buys that signal at a bounded cost, and logging the probability of
each choice makes the logs usable by `models.evaluation.off_policy` (IPS, SNIPS, DR).

The mechanism: a softmax (Plackett-Luce) draw, not epsilon-greedy. At an explored slot the
item is drawn from *every* candidate of the user not yet placed, with probability
proportional to exp(z / temperature), z being the ranker's score standardised per user. So
every candidate can appear (support for IPS), near-best items appear far more often than
poor ones (the cost grows smoothly with the temperature instead of jumping to a uniform
pick), and the propensities of the items a target policy cares about stay moderate, which
keeps importance weights, and so IPS variance, small. Epsilon-greedy's explored picks are
uniform over ~300 candidates: propensities of ~1/300 and a cost that does not depend on how
bad the picked item is. Standardising (z = (score - max) / population sd over the user's
candidates) makes the temperature mean the same for every user and every retrained model:
LambdaRank scores have no fixed scale.

Which slots: rank r (1-based) is explored when floor(r * share) > floor((r - 1) * share), so
every prefix of a list explores floor(r * share) of its slots, evenly spread (share 0.1:
ranks 10, 20, 30, ...). The positions are fixed, not drawn, so a deterministic slot is
deterministic given the items above it and its propensity is exactly 1.

What is logged (`propensity`): for a deterministic slot, 1.0. For an explored slot at rank
r, the probability that the draw picked that item at that slot given the items already
placed at ranks 1..r-1:

    p = exp(z_i / T) / sum(exp(z_j / T) for j in candidates not placed at ranks < r)

i.e. one factor of the Plackett-Luce likelihood, what a per-position IPS divides by. The
product of a list's propensities is the probability of the whole list. Deterministic slots
take the next item of the re-ranked (filtered, diversified) list not already placed, so an
item drawn early is not shown twice, and the list keeps its length.

Seeded per (user, run_id): each explored slot's uniform is a stable hash (SplitMix64, fixed
across library versions) of the run id, the user and the rank, so the published list, and
so a page, is the same on every refresh, a replay of the run gives the same draw, and
another run draws afresh. Weights are taken relative to the best item still open, so the
draw never runs dry; an item more than ~745 below it in z / T underflows and is never drawn.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_KEY = ["user_id", "event_id"]
_BLOCK_USERS = 4_096  # users per padded (users x candidates) block: bounds memory, not result
_EPS = 1e-9


@dataclass(frozen=True)
class Exploration:
    """How much of a feed is drawn, and how boldly.

    `share` of the slots (0 turns exploration off, 1 draws the whole list), `temperature`
    in units of the user's score standard deviation (small: near-greedy; large: near-uniform).
    """

    share: float = 0.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"exploration share must lie in [0, 1], got {self.share}")
        if not (self.temperature > 0.0 and math.isfinite(self.temperature)):
            raise ValueError(f"exploration temperature must be > 0, got {self.temperature}")

    def explores(self, rank: int) -> bool:
        """Whether rank `rank` (1-based) is an explored slot."""
        return math.floor(rank * self.share + _EPS) > math.floor((rank - 1) * self.share + _EPS)

    def slots(self, n: int) -> list[int]:
        """The explored ranks of a list of `n` items."""
        return [r for r in range(1, n + 1) if self.explores(r)]


def explore(
    ranked: pl.DataFrame,
    *,
    candidates: pl.DataFrame,
    run_id: str,
    exploration: Exploration,
) -> pl.DataFrame:
    """Fill the explored slots of each user's list by a seeded softmax draw; log propensities.

    `ranked` (user_id, rank, event_id, score) is the deterministic list, in rank order;
    `candidates` (user_id, event_id, score; one row per pair) is everything the draw may
    pick (the ranked items are added to it when missing). Returns user_id, rank
    (1..length), event_id, score (the item's own score) and propensity, one row per row of
    `ranked`: the same length per user, no event twice. See the module docstring for the
    slots, the draw and what `propensity` means. With `share` 0 the output is `ranked` with
    propensity 1.0 everywhere.
    """
    base = ranked.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("rank").cast(pl.Int32),
        pl.col("event_id").cast(pl.Utf8),
        pl.col("score").cast(pl.Float64),
    ).sort("user_id", "rank")
    if exploration.share == 0.0 or base.is_empty():
        return base.with_columns(
            rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32),
            propensity=pl.lit(1.0, dtype=pl.Float64),
        )
    given = candidates.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("event_id").cast(pl.Utf8),
        pl.col("score").cast(pl.Float64),
    ).join(base.select("user_id").unique(), on="user_id", how="semi")
    pool = (
        pl.concat([given, base.select(*_KEY, "score").join(given, on=_KEY, how="anti")])
        .sort(["user_id", "score", "event_id"], descending=[False, True, False])
        .with_columns(_logit=_logits(exploration.temperature))
    )
    # Both frames are sorted by user: a block of users is a contiguous slice of each.
    base_rows = base.group_by("user_id", maintain_order=True).len()
    pool_rows = pool.group_by("user_id", maintain_order=True).len()
    base_end = np.cumsum(base_rows["len"].to_numpy())
    pool_end = np.cumsum(pool_rows["len"].to_numpy())
    parts = []
    for start in range(0, base_rows.height, _BLOCK_USERS):
        stop = min(start + _BLOCK_USERS, base_rows.height)
        b0, p0 = (int(base_end[start - 1]), int(pool_end[start - 1])) if start else (0, 0)
        parts.append(
            _explore_block(
                base.slice(b0, int(base_end[stop - 1]) - b0),
                pool.slice(p0, int(pool_end[stop - 1]) - p0),
                base_rows["user_id"][start:stop].to_numpy(),
                run_id,
                exploration,
            )
        )
    return pl.concat(parts)


def _logits(temperature: float) -> pl.Expr:
    """z / T, z = (score - the user's max) / the user's population sd (1 if that is 0)."""
    sd = pl.col("score").std(ddof=0).over("user_id")
    scale = pl.when(sd > 0).then(sd).otherwise(pl.lit(1.0))
    z = (pl.col("score") - pl.col("score").max().over("user_id")) / scale
    return z / temperature


def _explore_block(
    base: pl.DataFrame,
    pool: pl.DataFrame,
    users: IntArray,
    run_id: str,
    exploration: Exploration,
) -> pl.DataFrame:
    """`explore` for one block of users, on a padded (users x candidates) matrix."""
    n_users = users.size
    pool_pos = pool.with_columns(_col=pl.int_range(pl.len()).over("user_id").cast(pl.Int64))
    row_of = pl.DataFrame({"user_id": users, "_row": np.arange(n_users, dtype=np.int64)})
    pool_pos = pool_pos.join(row_of, on="user_id")
    rows = pool_pos["_row"].to_numpy()
    cols = pool_pos["_col"].to_numpy()
    width = int(cols.max()) + 1
    logits = np.full((n_users, width), -np.inf)
    logits[rows, cols] = pool_pos["_logit"].to_numpy()
    listed = base.join(pool_pos.select(*_KEY, "_row", "_col"), on=_KEY).sort("user_id", "rank")
    lengths = np.bincount(listed["_row"].to_numpy(), minlength=n_users)
    n = int(lengths.max())
    order = np.full((n_users, n), -1, dtype=np.int64)  # the deterministic list, as columns
    slot_in_list = listed.with_columns(_slot=pl.int_range(pl.len()).over("user_id"))
    order[slot_in_list["_row"].to_numpy(), slot_in_list["_slot"].to_numpy()] = slot_in_list[
        "_col"
    ].to_numpy()

    placed = np.zeros((n_users, width), dtype=bool)
    pointer = np.zeros(n_users, dtype=np.int64)
    picks = np.full((n_users, n), -1, dtype=np.int64)
    propensity = np.ones((n_users, n))
    everyone = np.arange(n_users)
    for slot in range(n):
        active = everyone[lengths > slot]
        if exploration.explores(slot + 1):
            open_logits = np.where(placed[active], -np.inf, logits[active])
            # Relative to the best item still open: the same softmax, and never all zeros.
            weight = np.exp(open_logits - open_logits.max(axis=1, keepdims=True))
            chosen, p = _draw(weight, slot_uniforms(run_id, users[active], slot + 1))
            propensity[active, slot] = p
        else:
            chosen = _next_unplaced(order, pointer, placed, active)
        picks[active, slot] = chosen
        placed[active, chosen] = True

    filled_rows, filled_slots = np.nonzero(picks >= 0)
    event_index = pool_pos.select("_row", "_col", "event_id", "score")
    return (
        pl.DataFrame(
            {
                "_row": filled_rows.astype(np.int64),
                "_col": picks[filled_rows, filled_slots],
                "rank": (filled_slots + 1).astype(np.int32),
                "propensity": propensity[filled_rows, filled_slots],
            }
        )
        .join(event_index, on=["_row", "_col"])
        .join(row_of, on="_row")
        .sort("user_id", "rank")
        .select("user_id", "rank", "event_id", "score", "propensity")
    )


def _draw(available: FloatArray, uniforms: FloatArray) -> tuple[IntArray, FloatArray]:
    """One softmax draw per row of `available` (weights, 0 = not drawable) by inverse CDF:
    the column picked and its probability (its weight over the row's total)."""
    cdf = np.cumsum(available, axis=1)
    total = cdf[:, -1]
    target = uniforms * total
    chosen = (cdf <= target[:, None]).sum(axis=1)
    # u < 1 keeps target below the total; rounding could still step past the last drawable
    # column, so clamp to it (it is the column the remaining probability mass belongs to).
    last = available.shape[1] - 1 - np.argmax((available > 0)[:, ::-1], axis=1)
    chosen = np.minimum(chosen, last)
    rows = np.arange(available.shape[0])
    return chosen, available[rows, chosen] / total


def _next_unplaced(
    order: IntArray, pointer: IntArray, placed: npt.NDArray[np.bool_], active: IntArray
) -> IntArray:
    """The next item of each active user's deterministic list not already placed (moves the
    users' pointers past it). A list of length L always has one: explored picks consume at
    most as many of its items as there are explored slots."""
    while True:
        current = order[active, pointer[active]]
        taken = placed[active, current]
        if not taken.any():
            pointer[active] += 1
            return current
        pointer[active[taken]] += 1


def run_seed(run_id: str) -> int:
    """A stable 64-bit seed of a run id (blake2b, not `hash()`, which is salted per process)."""
    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=8).digest(), "little")


def slot_uniforms(run_id: str, users: IntArray, rank: int) -> FloatArray:
    """One uniform in [0, 1) per user for the explored slot `rank` of run `run_id`: a pure
    function of (run, user, rank), independent across users and slots."""
    key = np.uint64(run_seed(run_id)) ^ np.asarray(users, dtype=np.int64).view(np.uint64)
    mixed = splitmix64(splitmix64(key) ^ np.uint64(rank))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64 finaliser: a stable integer hash (unlike `pl.Expr.hash`, fixed across
    library versions), so a draw replays identically run after run."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)
