"""Off-policy evaluation (OPE): the value a new ranking policy would have had on logged traffic.

Why: an A/B test is the only unbiased way to compare two feed policies, but it costs weeks of
users' attention. The logs of the current (logging) policy already say which event it showed,
with which probability, and whether the user engaged. Re-weighting those rounds by how likely
the evaluation policy is to show the same event estimates the evaluation policy's mean reward
without deploying it. These estimators need the logging propensities, so the serving side must
log `pscore` = pi_b(a_i | x_i) for the action actually shown.

Definitions follow Open Bandit Pipeline (Saito et al., "Open Bandit Dataset and Pipeline:
Towards Realistic and Reproducible Off-Policy Evaluation", NeurIPS 2021 Datasets & Benchmarks),
release 0.5.7, `obp/ope/estimators.py` and `obp/utils.py`:

- IPS (`InverseProbabilityWeighting`): V = E_n[w_i r_i], w_i = pi_e(a_i|x_i) / pi_b(a_i|x_i).
  Unbiased when pi_b is known and pi_b > 0 wherever pi_e > 0 (Horvitz & Thompson 1952;
  Strehl et al., "Learning from Logged Implicit Exploration Data", NeurIPS 2010).
- Clipped IPS (`InverseProbabilityWeighting(lambda_=...)`): w_i is replaced by
  min(w_i, lambda_). This is obp's convention: `iw = np.minimum(iw, self.lambda_)` in
  `InverseProbabilityWeighting._estimate_round_rewards` (the "weight clipping" comment there),
  i.e. large weights are *capped* at lambda_, not set to 0. Capping trades a downward bias
  (for non-negative rewards) for bounded variance. Zeroing the weights above a threshold and
  falling back to the direct method for those rounds is a different estimator (obp's
  `SwitchDoublyRobust`, indicator `iw <= lambda_`), not offered here.
- SNIPS (`SelfNormalizedInverseProbabilityWeighting`): V = E_n[w_i r_i] / E_n[w_i]
  (Swaminathan & Joachims, "The Self-Normalized Estimator for Counterfactual Learning",
  NeurIPS 2015). Biased but consistent; it is invariant to adding a constant to every reward and
  never leaves the range of the observed rewards, which tames the variance of IPS.
- DM (`DirectMethod`): V = E_n[sum_a pi_e(a|x_i) q_hat(x_i, a)]. Only as good as the reward
  model q_hat: a misspecified q_hat gives a biased estimate however many rounds are logged.
- DR (`DoublyRobust`): V = E_n[q_hat(x_i, pi_e) + w_i (r_i - q_hat(x_i, a_i))] (Dudik, Langford
  & Li, "Doubly Robust Policy Evaluation and Learning", ICML 2011). Unbiased if either the
  propensities or q_hat are right; the model term is a control variate that lowers the
  variance of IPS when q_hat is good. `lambda_` caps w_i as in IPS (obp's `DoublyRobust`
  does the same `np.minimum`; Su et al., "Doubly Robust Off-Policy Evaluation with Shrinkage",
  ICML 2020, call it pessimistic shrinkage).

Sparse inputs. obp takes dense `action_dist[i, a]` and `estimated_rewards_by_reg_model[i, a]`
arrays of shape (n_rounds, n_actions). With hundreds to tens of thousands of events that is
too large, and every estimator above only reads two things from them per round, which the
caller computes from its own (sparse) policy:

- `target_pscore[i]` = pi_e(a_i | x_i) = `action_dist[i, action[i]]`,
- `estimated_reward[i]` = q_hat(x_i, a_i) = `estimated_rewards_by_reg_model[i, action[i]]`,
- `target_value_dm[i]` = sum_a pi_e(a|x_i) q_hat(x_i, a). obp computes this with
  `np.average(q_hat, weights=pi_e, axis=1)`, which divides by sum_a pi_e(a|x_i); obp's
  `check_ope_inputs` requires that sum to be 1, so the two agree. Callers with a truncated
  (top-k) target policy must renormalise it themselves.

`LoggedBandit.from_dense` builds these from obp-shaped arrays for small action sets and tests.

Confidence intervals follow obp's `estimate_confidence_interval_by_bootstrap`: the percentile
bootstrap over rounds of the per-round estimates (`_estimate_round_rewards`), with
`alpha=0.05`, `n_bootstrap_samples=10000` and the same random stream (`RandomState(seed)`;
`random_.choice(samples, size=n)` draws `randint(0, n, n)`), so for IPS, clipped IPS, DM and DR
the bounds equal obp's to rounding. Two deliberate differences:

- SNIPS is a ratio. obp bootstraps `r_i w_i / mean(w)` with the denominator fixed at the full
  sample's mean, which ignores the denominator's own variability. Here each replicate resamples
  rounds and recomputes both sums on the same rounds (`ratio_interval`).
- `seed` defaults to 0 (obp: `random_state=None`), so reports are reproducible; pass None for
  fresh entropy. Every estimator of one `estimate_all` call uses the same seed and therefore
  the same resampled rounds, which keeps their intervals comparable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ALPHA = 0.05
N_BOOTSTRAP = 10_000  # obp's default n_bootstrap_samples
DEFAULT_SEED = 0

# Resampled indices are drawn in blocks of whole replicates of at most this many indices, so a
# log of 10^6 rounds does not need n_bootstrap x 10^6 integers at once. The legacy RandomState
# stream does not depend on the block size, so the result is the same as one big draw.
_MAX_DRAWS_PER_BLOCK = 2_000_000


# --------------------------------------------------------------------------- validation


def _vector(name: str, values: npt.ArrayLike) -> FloatArray:
    """`values` as a 1-D float64 array of finite numbers; ValueError names the field."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: not numeric ({error})") from error
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: no rounds")
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{name}: non-finite value {array[bad]} at round {bad}")
    return array


def _check_range(
    name: str, array: FloatArray, low: float, high: float, *, low_open: bool = False
) -> None:
    """Raise ValueError naming the field and the first round outside [low, high] / (low, high]."""
    outside = (array <= low if low_open else array < low) | (array > high)
    if np.any(outside):
        bad = int(np.flatnonzero(outside)[0])
        bracket = "(" if low_open else "["
        raise ValueError(
            f"{name}: value {array[bad]} at round {bad} is outside {bracket}{low}, {high}]"
        )


def _pscore(values: npt.ArrayLike) -> FloatArray:
    array = _vector("pscore", values)
    _check_range("pscore", array, 0.0, 1.0, low_open=True)
    return array


def _target_pscore(values: npt.ArrayLike) -> FloatArray:
    array = _vector("target_pscore", values)
    _check_range("target_pscore", array, 0.0, 1.0)
    return array


def _same_length(reference: str, arrays: dict[str, FloatArray]) -> None:
    n = arrays[reference].size
    for name, array in arrays.items():
        if array.size != n:
            raise ValueError(f"{name}: has {array.size} rounds, {reference} has {n}")


def _check_lambda(lambda_: float) -> float:
    """obp's check: a number >= 0 and not NaN (inf, the default, means no clipping)."""
    if isinstance(lambda_, bool) or not isinstance(lambda_, int | float | np.floating):
        raise ValueError(f"lambda_: expected a number, got {type(lambda_).__name__}")
    value = float(lambda_)
    if math.isnan(value) or value < 0:
        raise ValueError(f"lambda_: must be >= 0 and not NaN, got {lambda_}")
    return value


def _check_bootstrap_arguments(alpha: float, n_bootstrap: int, seed: int | None) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer):
        raise ValueError(f"n_bootstrap: expected an int, got {type(n_bootstrap).__name__}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap: must be >= 1, got {n_bootstrap}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise ValueError(f"seed: expected an int or None, got {type(seed).__name__}")


# --------------------------------------------------------------------------- logged data


@dataclass(frozen=True)
class LoggedBandit:
    """Logged rounds in the sparse form the estimators read (see the module docstring).

    `reward`, `pscore` (pi_b of the logged action, in (0, 1]) and `target_pscore` (pi_e of the
    logged action, in [0, 1]) are required. `estimated_reward` (q_hat at the logged action) and
    `target_value_dm` (q_hat averaged over pi_e) come together and enable DM and DR. Arrays are
    converted to float64 on construction; ValueError names the offending field.
    """

    reward: FloatArray
    pscore: FloatArray
    target_pscore: FloatArray
    estimated_reward: FloatArray | None = None
    target_value_dm: FloatArray | None = None

    def __post_init__(self) -> None:
        arrays = {
            "reward": _vector("reward", self.reward),
            "pscore": _pscore(self.pscore),
            "target_pscore": _target_pscore(self.target_pscore),
        }
        if (self.estimated_reward is None) != (self.target_value_dm is None):
            missing = "estimated_reward" if self.estimated_reward is None else "target_value_dm"
            raise ValueError(
                f"{missing}: estimated_reward and target_value_dm must be given together"
            )
        if self.estimated_reward is not None and self.target_value_dm is not None:
            arrays["estimated_reward"] = _vector("estimated_reward", self.estimated_reward)
            arrays["target_value_dm"] = _vector("target_value_dm", self.target_value_dm)
        _same_length("reward", arrays)
        for name, array in arrays.items():
            array = array.copy()  # never freeze (or alias) the caller's array
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @property
    def n_rounds(self) -> int:
        return int(self.reward.size)

    @property
    def has_reward_model(self) -> bool:
        return self.estimated_reward is not None

    @classmethod
    def from_dense(
        cls,
        action: npt.ArrayLike,
        reward: npt.ArrayLike,
        pscore: npt.ArrayLike,
        action_dist: npt.ArrayLike,
        estimated_rewards_by_reg_model: npt.ArrayLike | None = None,
    ) -> LoggedBandit:
        """Build from obp-shaped inputs: `action_dist` and `estimated_rewards_by_reg_model`
        of shape (n_rounds, n_actions) (obp's `len_list` axis dropped), `action` the logged
        action index per round. Rows of `action_dist` must sum to 1, as obp requires."""
        actions = np.asarray(action)
        if actions.ndim != 1 or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"action: expected a 1-D integer array, got {actions.dtype}")
        dist = np.asarray(action_dist, dtype=np.float64)
        if dist.ndim != 2 or dist.shape[0] != actions.size:
            raise ValueError(
                f"action_dist: expected shape ({actions.size}, n_actions), got {dist.shape}"
            )
        if np.any((actions < 0) | (actions >= dist.shape[1])):
            raise ValueError(f"action: indices must be in [0, {dist.shape[1]})")
        if not np.allclose(dist.sum(axis=1), 1.0):
            raise ValueError("action_dist: every row must sum to 1")
        rows = np.arange(actions.size)
        rewards, pscores = _vector("reward", reward), _vector("pscore", pscore)
        if estimated_rewards_by_reg_model is None:
            return cls(reward=rewards, pscore=pscores, target_pscore=dist[rows, actions])
        q_hat = np.asarray(estimated_rewards_by_reg_model, dtype=np.float64)
        if q_hat.shape != dist.shape:
            raise ValueError(
                f"estimated_rewards_by_reg_model: shape {q_hat.shape} != action_dist {dist.shape}"
            )
        return cls(
            reward=rewards,
            pscore=pscores,
            target_pscore=dist[rows, actions],
            estimated_reward=q_hat[rows, actions],
            target_value_dm=np.einsum("ia,ia->i", dist, q_hat),
        )


# --------------------------------------------------------------------------- per-round terms


def importance_weights(
    pscore: npt.ArrayLike, target_pscore: npt.ArrayLike, lambda_: float = math.inf
) -> FloatArray:
    """w_i = pi_e(a_i|x_i) / pi_b(a_i|x_i), capped at `lambda_` (obp: `np.minimum(iw, lambda_)`)."""
    cap = _check_lambda(lambda_)
    b = _pscore(pscore)
    e = _target_pscore(target_pscore)
    _same_length("pscore", {"pscore": b, "target_pscore": e})
    return np.minimum(e / b, cap)


def ips_round_rewards(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    target_pscore: npt.ArrayLike,
    lambda_: float = math.inf,
) -> FloatArray:
    """Per-round IPS terms w_i r_i (obp `InverseProbabilityWeighting._estimate_round_rewards`)."""
    r = _vector("reward", reward)
    w = importance_weights(pscore, target_pscore, lambda_)
    _same_length("reward", {"reward": r, "pscore": w})
    return r * w


def dm_round_rewards(target_value_dm: npt.ArrayLike) -> FloatArray:
    """Per-round DM terms: q_hat(x_i, pi_e), which the caller computed (obp `DirectMethod`)."""
    return _vector("target_value_dm", target_value_dm)


def dr_round_rewards(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    target_pscore: npt.ArrayLike,
    estimated_reward: npt.ArrayLike,
    target_value_dm: npt.ArrayLike,
    lambda_: float = math.inf,
) -> FloatArray:
    """Per-round DR terms q_hat(x_i, pi_e) + w_i (r_i - q_hat(x_i, a_i)) (obp `DoublyRobust`)."""
    r = _vector("reward", reward)
    w = importance_weights(pscore, target_pscore, lambda_)
    q_logged = _vector("estimated_reward", estimated_reward)
    q_target = _vector("target_value_dm", target_value_dm)
    _same_length(
        "reward",
        {"reward": r, "pscore": w, "estimated_reward": q_logged, "target_value_dm": q_target},
    )
    return q_target + w * (r - q_logged)


# --------------------------------------------------------------------------- point estimates


def ips(reward: npt.ArrayLike, pscore: npt.ArrayLike, target_pscore: npt.ArrayLike) -> float:
    """Inverse propensity scoring, E_n[w_i r_i]: unbiased, high variance when w is large."""
    return float(ips_round_rewards(reward, pscore, target_pscore).mean())


def clipped_ips(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    target_pscore: npt.ArrayLike,
    lambda_: float,
) -> float:
    """IPS with weights capped, E_n[min(w_i, lambda_) r_i] (obp's `lambda_` convention)."""
    return float(ips_round_rewards(reward, pscore, target_pscore, lambda_).mean())


def snips(reward: npt.ArrayLike, pscore: npt.ArrayLike, target_pscore: npt.ArrayLike) -> float:
    """Self-normalised IPS, sum_i w_i r_i / sum_i w_i (Swaminathan & Joachims 2015).

    Raises ValueError when every weight is 0 (the target policy never picks a logged action):
    the ratio is then undefined, and obp would return NaN.
    """
    r = _vector("reward", reward)
    w = importance_weights(pscore, target_pscore)
    _same_length("reward", {"reward": r, "pscore": w})
    total_weight = w.sum()
    if total_weight <= 0.0:
        raise ValueError("target_pscore: every logged action has probability 0 under pi_e")
    return float((r * w).sum() / total_weight)


def direct_method(target_value_dm: npt.ArrayLike) -> float:
    """Direct method, E_n[sum_a pi_e(a|x_i) q_hat(x_i, a)]: low variance, biased if q_hat is."""
    return float(dm_round_rewards(target_value_dm).mean())


def doubly_robust(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    target_pscore: npt.ArrayLike,
    estimated_reward: npt.ArrayLike,
    target_value_dm: npt.ArrayLike,
    lambda_: float = math.inf,
) -> float:
    """Doubly robust (Dudik et al. 2011): DM plus an IPS-weighted correction of q_hat's
    residual at the logged action; unbiased if either pi_b or q_hat is right."""
    return float(
        dr_round_rewards(
            reward, pscore, target_pscore, estimated_reward, target_value_dm, lambda_
        ).mean()
    )


# --------------------------------------------------------------------------- bootstrap


def _bootstrap_replicates(
    n_rounds: int,
    statistic: Callable[[IntArray], FloatArray],
    n_bootstrap: int,
    seed: int | None,
) -> FloatArray:
    """`statistic` of each of `n_bootstrap` resamples of the rounds (with replacement).

    Indices come from `RandomState(seed).randint(0, n_rounds, ...)`, the stream obp's
    `random_.choice(samples, size=n)` draws, replicate after replicate."""
    random_state = np.random.RandomState(seed)
    replicates = np.empty(n_bootstrap, dtype=np.float64)
    block = max(1, _MAX_DRAWS_PER_BLOCK // n_rounds)
    for start in range(0, n_bootstrap, block):
        stop = min(n_bootstrap, start + block)
        indices = random_state.randint(0, n_rounds, size=(stop - start, n_rounds))
        replicates[start:stop] = statistic(indices)
    return replicates


def _percentiles(replicates: FloatArray, alpha: float) -> tuple[float, float]:
    low = np.percentile(replicates, 100 * (alpha / 2))
    high = np.percentile(replicates, 100 * (1.0 - alpha / 2))
    return float(low), float(high)


def interval(
    estimator_round_rewards: npt.ArrayLike,
    alpha: float = ALPHA,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap (low, high) of the mean of per-round estimates at level 1 - alpha.

    obp's `estimate_confidence_interval_by_bootstrap`: resample rounds with replacement, take
    the mean, report the alpha/2 and 1 - alpha/2 percentiles of the means. Use it with
    `ips_round_rewards`, `dm_round_rewards` or `dr_round_rewards`; SNIPS needs `ratio_interval`.
    """
    _check_bootstrap_arguments(alpha, n_bootstrap, seed)
    samples = _vector("estimator_round_rewards", estimator_round_rewards)

    def mean_of(indices: IntArray) -> FloatArray:
        means: FloatArray = samples[indices].mean(axis=1)
        return means

    return _percentiles(_bootstrap_replicates(samples.size, mean_of, n_bootstrap, seed), alpha)


def ratio_interval(
    numerator: npt.ArrayLike,
    denominator: npt.ArrayLike,
    alpha: float = ALPHA,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap of sum(numerator) / sum(denominator), resampling rounds as pairs.

    Why pairs: for SNIPS (numerator w_i r_i, denominator w_i) a round with a large weight moves
    both sums; resampling them separately, or fixing the denominator as obp does, misstates the
    spread. Raises ValueError if a resample's denominator sums to 0 (too few rounds where the
    target policy agrees with the log for the ratio to be estimated).
    """
    _check_bootstrap_arguments(alpha, n_bootstrap, seed)
    top = _vector("numerator", numerator)
    bottom = _vector("denominator", denominator)
    _same_length("numerator", {"numerator": top, "denominator": bottom})

    def ratio_of(indices: IntArray) -> FloatArray:
        sums = bottom[indices].sum(axis=1)
        if np.any(sums == 0.0):
            raise ValueError("denominator: a bootstrap resample has a zero denominator")
        ratios: FloatArray = top[indices].sum(axis=1) / sums
        return ratios

    return _percentiles(_bootstrap_replicates(top.size, ratio_of, n_bootstrap, seed), alpha)


def ips_interval(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    target_pscore: npt.ArrayLike,
    lambda_: float = math.inf,
    alpha: float = ALPHA,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> tuple[float, float]:
    """Bootstrap interval of (clipped, if `lambda_` is finite) IPS."""
    rounds = ips_round_rewards(reward, pscore, target_pscore, lambda_)
    return interval(rounds, alpha, n_bootstrap, seed)


def snips_interval(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    target_pscore: npt.ArrayLike,
    alpha: float = ALPHA,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> tuple[float, float]:
    """Bootstrap interval of SNIPS, numerator and denominator resampled together."""
    r = _vector("reward", reward)
    w = importance_weights(pscore, target_pscore)
    _same_length("reward", {"reward": r, "pscore": w})
    return ratio_interval(r * w, w, alpha, n_bootstrap, seed)


def direct_method_interval(
    target_value_dm: npt.ArrayLike,
    alpha: float = ALPHA,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> tuple[float, float]:
    """Bootstrap interval of DM over contexts. It reflects only the sampling of contexts, not
    the error of q_hat, so a biased reward model gets a confidently wrong interval."""
    return interval(dm_round_rewards(target_value_dm), alpha, n_bootstrap, seed)


def doubly_robust_interval(
    reward: npt.ArrayLike,
    pscore: npt.ArrayLike,
    target_pscore: npt.ArrayLike,
    estimated_reward: npt.ArrayLike,
    target_value_dm: npt.ArrayLike,
    lambda_: float = math.inf,
    alpha: float = ALPHA,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> tuple[float, float]:
    """Bootstrap interval of DR (q_hat is held fixed, as in obp)."""
    rounds = dr_round_rewards(
        reward, pscore, target_pscore, estimated_reward, target_value_dm, lambda_
    )
    return interval(rounds, alpha, n_bootstrap, seed)


# --------------------------------------------------------------------------- all at once


@dataclass(frozen=True)
class OffPolicyEstimate:
    """One estimator's point estimate with its bootstrap interval at level 1 - alpha."""

    name: str
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | str]:
        return {"name": self.name, "value": self.value, "low": self.low, "high": self.high}


def estimate_all(
    logged: LoggedBandit,
    *,
    lambda_: float = math.inf,
    alpha: float = ALPHA,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> list[OffPolicyEstimate]:
    """Every estimator the logged data supports, each with its bootstrap interval.

    Always `ips` and `snips`; `clipped_ips` when `lambda_` is finite; `dm` and `dr` (and
    `clipped_dr` when `lambda_` is finite) when `logged` carries a reward model. All intervals
    use the same seed, hence the same resampled rounds.
    """
    cap = _check_lambda(lambda_)
    _check_bootstrap_arguments(alpha, n_bootstrap, seed)
    r, b, e = logged.reward, logged.pscore, logged.target_pscore

    def summarise(name: str, rounds: FloatArray) -> OffPolicyEstimate:
        low, high = interval(rounds, alpha, n_bootstrap, seed)
        return OffPolicyEstimate(name, float(rounds.mean()), low, high)

    estimates = [summarise("ips", ips_round_rewards(r, b, e))]
    if math.isfinite(cap):
        estimates.append(summarise("clipped_ips", ips_round_rewards(r, b, e, cap)))
    low, high = snips_interval(r, b, e, alpha, n_bootstrap, seed)
    estimates.append(OffPolicyEstimate("snips", snips(r, b, e), low, high))
    if logged.estimated_reward is not None and logged.target_value_dm is not None:
        q_logged, q_target = logged.estimated_reward, logged.target_value_dm
        estimates.append(summarise("dm", dm_round_rewards(q_target)))
        estimates.append(summarise("dr", dr_round_rewards(r, b, e, q_logged, q_target)))
        if math.isfinite(cap):
            clipped = dr_round_rewards(r, b, e, q_logged, q_target, cap)
            estimates.append(summarise("clipped_dr", clipped))
    return estimates
