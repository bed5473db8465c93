"""Off-policy estimators against obp's dense definitions, on a simulated bandit with a known
value, and their input checks."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation.off_policy import (
    LoggedBandit,
    OffPolicyEstimate,
    clipped_ips,
    direct_method,
    direct_method_interval,
    doubly_robust,
    doubly_robust_interval,
    dr_round_rewards,
    estimate_all,
    importance_weights,
    interval,
    ips,
    ips_interval,
    ips_round_rewards,
    ratio_interval,
    snips,
    snips_interval,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def softmax(scores: FloatArray) -> FloatArray:
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    result: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return result


def sample_actions(dist: FloatArray, rng: np.random.Generator) -> IntArray:
    """One action per row of `dist` (n_rounds, n_actions) by inverse CDF."""
    cumulative = dist.cumsum(axis=1)
    u = rng.random((dist.shape[0], 1))
    actions: IntArray = np.minimum((u > cumulative).sum(axis=1), dist.shape[1] - 1)
    return actions


# --------------------------------------------------------------------------- loop references
# Plain loops over rounds and actions, written from obp 0.5.7's dense definitions
# (obp/ope/estimators.py, obp/utils.py) with action_dist[i, a] and
# estimated_rewards_by_reg_model[i, a] (obp's len_list axis dropped).


def ref_ips(
    reward: FloatArray,
    action: IntArray,
    pscore: FloatArray,
    action_dist: FloatArray,
    lambda_: float = math.inf,
) -> float:
    total = 0.0
    for i in range(len(reward)):
        iw = action_dist[i, action[i]] / pscore[i]
        iw = min(iw, lambda_)  # obp: iw = np.minimum(iw, self.lambda_)
        total += reward[i] * iw
    return total / len(reward)


def ref_snips(
    reward: FloatArray, action: IntArray, pscore: FloatArray, action_dist: FloatArray
) -> float:
    weights = [action_dist[i, action[i]] / pscore[i] for i in range(len(reward))]
    mean_weight = sum(weights) / len(weights)
    # obp: (reward * iw / iw.mean()).mean()
    return sum(reward[i] * weights[i] / mean_weight for i in range(len(reward))) / len(reward)


def ref_dm_rounds(action_dist: FloatArray, q_hat: FloatArray) -> list[float]:
    rounds = []
    for i in range(action_dist.shape[0]):
        # obp: np.average(q_hat[i], weights=action_dist[i])
        numerator = sum(q_hat[i, a] * action_dist[i, a] for a in range(action_dist.shape[1]))
        denominator = sum(action_dist[i, a] for a in range(action_dist.shape[1]))
        rounds.append(numerator / denominator)
    return rounds


def ref_dm(action_dist: FloatArray, q_hat: FloatArray) -> float:
    rounds = ref_dm_rounds(action_dist, q_hat)
    return sum(rounds) / len(rounds)


def ref_dr(
    reward: FloatArray,
    action: IntArray,
    pscore: FloatArray,
    action_dist: FloatArray,
    q_hat: FloatArray,
    lambda_: float = math.inf,
) -> float:
    dm_rounds = ref_dm_rounds(action_dist, q_hat)
    total = 0.0
    for i in range(len(reward)):
        iw = min(action_dist[i, action[i]] / pscore[i], lambda_)
        total += dm_rounds[i] + iw * (reward[i] - q_hat[i, action[i]])
    return total / len(reward)


def ref_bootstrap(
    samples: FloatArray, alpha: float, n_bootstrap_samples: int, random_state: int
) -> tuple[float, float]:
    """obp.utils.estimate_confidence_interval_by_bootstrap, line for line."""
    boot_samples = []
    random_ = np.random.RandomState(random_state)
    for _ in np.arange(n_bootstrap_samples):
        boot_samples.append(np.mean(random_.choice(samples, size=samples.shape[0])))
    lower_bound = np.percentile(boot_samples, 100 * (alpha / 2))
    upper_bound = np.percentile(boot_samples, 100 * (1.0 - alpha / 2))
    return float(lower_bound), float(upper_bound)


# --------------------------------------------------------------------------- dense toy problem

N_ROUNDS, N_ACTIONS = 60, 7


@pytest.fixture(scope="module")
def toy() -> dict[str, npt.NDArray[np.float64] | IntArray]:
    rng = np.random.default_rng(20240611)
    logging_dist = softmax(rng.normal(size=(N_ROUNDS, N_ACTIONS)))
    target_dist = softmax(2.0 * rng.normal(size=(N_ROUNDS, N_ACTIONS)))
    target_dist[:, 0] = 0.0  # an action the target policy never takes
    target_dist /= target_dist.sum(axis=1, keepdims=True)
    action = sample_actions(logging_dist, rng)
    rows = np.arange(N_ROUNDS)
    return {
        "action": action,
        "reward": rng.normal(loc=1.0, size=N_ROUNDS),
        "pscore": logging_dist[rows, action],
        "action_dist": target_dist,
        "q_hat": rng.uniform(size=(N_ROUNDS, N_ACTIONS)),
    }


def sparse(toy: dict[str, npt.NDArray[np.float64] | IntArray]) -> LoggedBandit:
    """The per-round quantities, computed by hand from the dense arrays."""
    rows = np.arange(N_ROUNDS)
    action, dist, q_hat = toy["action"], toy["action_dist"], toy["q_hat"]
    return LoggedBandit(
        reward=np.asarray(toy["reward"], dtype=np.float64),
        pscore=np.asarray(toy["pscore"], dtype=np.float64),
        target_pscore=np.asarray(dist[rows, action], dtype=np.float64),
        estimated_reward=np.asarray(q_hat[rows, action], dtype=np.float64),
        target_value_dm=np.asarray((dist * q_hat).sum(axis=1), dtype=np.float64),
    )


def test_sparse_estimators_match_obp_dense_loops(
    toy: dict[str, npt.NDArray[np.float64] | IntArray],
) -> None:
    logged = sparse(toy)
    r, b, e = logged.reward, logged.pscore, logged.target_pscore
    assert logged.estimated_reward is not None and logged.target_value_dm is not None
    q_logged, q_target = logged.estimated_reward, logged.target_value_dm
    reward = np.asarray(toy["reward"], dtype=np.float64)
    action = np.asarray(toy["action"], dtype=np.int64)
    pscore = np.asarray(toy["pscore"], dtype=np.float64)
    dist = np.asarray(toy["action_dist"], dtype=np.float64)
    q_hat = np.asarray(toy["q_hat"], dtype=np.float64)

    assert ips(r, b, e) == pytest.approx(ref_ips(reward, action, pscore, dist), abs=1e-12)
    assert snips(r, b, e) == pytest.approx(ref_snips(reward, action, pscore, dist), abs=1e-12)
    assert direct_method(q_target) == pytest.approx(ref_dm(dist, q_hat), abs=1e-12)
    assert doubly_robust(r, b, e, q_logged, q_target) == pytest.approx(
        ref_dr(reward, action, pscore, dist, q_hat), abs=1e-12
    )
    weights = e / b
    for lambda_ in (0.0, 0.5, float(np.median(weights)), 3.0, math.inf):
        assert clipped_ips(r, b, e, lambda_) == pytest.approx(
            ref_ips(reward, action, pscore, dist, lambda_), abs=1e-12
        )
        assert doubly_robust(r, b, e, q_logged, q_target, lambda_) == pytest.approx(
            ref_dr(reward, action, pscore, dist, q_hat, lambda_), abs=1e-12
        )


def test_from_dense_builds_the_same_sparse_rounds(
    toy: dict[str, npt.NDArray[np.float64] | IntArray],
) -> None:
    by_hand = sparse(toy)
    built = LoggedBandit.from_dense(
        action=toy["action"],
        reward=toy["reward"],
        pscore=toy["pscore"],
        action_dist=toy["action_dist"],
        estimated_rewards_by_reg_model=toy["q_hat"],
    )
    assert built.estimated_reward is not None and built.target_value_dm is not None
    assert by_hand.estimated_reward is not None and by_hand.target_value_dm is not None
    np.testing.assert_array_equal(built.target_pscore, by_hand.target_pscore)
    np.testing.assert_array_equal(built.estimated_reward, by_hand.estimated_reward)
    np.testing.assert_allclose(built.target_value_dm, by_hand.target_value_dm, atol=1e-12)
    without_model = LoggedBandit.from_dense(
        action=toy["action"],
        reward=toy["reward"],
        pscore=toy["pscore"],
        action_dist=toy["action_dist"],
    )
    assert not without_model.has_reward_model
    with pytest.raises(ValueError, match=r"^action_dist\b.*sum to 1"):
        LoggedBandit.from_dense(
            action=toy["action"],
            reward=toy["reward"],
            pscore=toy["pscore"],
            action_dist=2 * np.asarray(toy["action_dist"]),
        )


def test_bootstrap_interval_matches_obp_loop(
    toy: dict[str, npt.NDArray[np.float64] | IntArray],
) -> None:
    logged = sparse(toy)
    assert logged.estimated_reward is not None and logged.target_value_dm is not None
    rounds = ips_round_rewards(logged.reward, logged.pscore, logged.target_pscore)
    for seed, alpha in ((0, 0.05), (7, 0.1)):
        expected = ref_bootstrap(rounds, alpha, 500, seed)
        got = interval(rounds, alpha=alpha, n_bootstrap=500, seed=seed)
        assert got == pytest.approx(expected, abs=1e-12)
    assert ips_interval(
        logged.reward, logged.pscore, logged.target_pscore, n_bootstrap=300, seed=3
    ) == pytest.approx(ref_bootstrap(rounds, 0.05, 300, 3), abs=1e-12)
    dr_rounds = dr_round_rewards(
        logged.reward,
        logged.pscore,
        logged.target_pscore,
        logged.estimated_reward,
        logged.target_value_dm,
    )
    assert doubly_robust_interval(
        logged.reward,
        logged.pscore,
        logged.target_pscore,
        logged.estimated_reward,
        logged.target_value_dm,
        n_bootstrap=300,
        seed=3,
    ) == pytest.approx(ref_bootstrap(dr_rounds, 0.05, 300, 3), abs=1e-12)
    assert direct_method_interval(logged.target_value_dm, n_bootstrap=300, seed=3) == pytest.approx(
        ref_bootstrap(logged.target_value_dm, 0.05, 300, 3), abs=1e-12
    )


def test_block_size_does_not_change_the_interval(
    monkeypatch: pytest.MonkeyPatch, toy: dict[str, npt.NDArray[np.float64] | IntArray]
) -> None:
    import models.evaluation.off_policy as off_policy

    rounds = np.asarray(toy["reward"], dtype=np.float64)
    whole = interval(rounds, n_bootstrap=250, seed=11)
    monkeypatch.setattr(off_policy, "_MAX_DRAWS_PER_BLOCK", 7 * N_ROUNDS)
    assert interval(rounds, n_bootstrap=250, seed=11) == whole


def test_snips_interval_resamples_numerator_and_denominator_together(
    toy: dict[str, npt.NDArray[np.float64] | IntArray],
) -> None:
    logged = sparse(toy)
    r, b, e = logged.reward, logged.pscore, logged.target_pscore
    w = e / b
    # reference: each replicate draws one set of rounds and uses it for both sums
    random_ = np.random.RandomState(5)
    ratios = []
    for _ in range(400):
        idx = random_.choice(N_ROUNDS, size=N_ROUNDS)
        ratios.append((r[idx] * w[idx]).sum() / w[idx].sum())
    expected = (np.percentile(ratios, 2.5), np.percentile(ratios, 97.5))
    assert snips_interval(r, b, e, n_bootstrap=400, seed=5) == pytest.approx(expected, abs=1e-12)
    low, high = snips_interval(r, b, e, n_bootstrap=400, seed=5)
    assert low < snips(r, b, e) < high


def test_ratio_interval_refuses_a_resample_with_zero_denominator() -> None:
    denominator = np.zeros(50)
    denominator[0] = 1.0  # most resamples miss the only round with weight
    with pytest.raises(ValueError, match=r"^denominator\b"):
        ratio_interval(np.ones(50), denominator, n_bootstrap=100)


# --------------------------------------------------------------------------- known true value

# 3 contexts (uniform), 5 actions, Bernoulli rewards with these means.
Q_TRUE = np.array(
    [
        [0.10, 0.30, 0.50, 0.70, 0.20],
        [0.60, 0.20, 0.40, 0.10, 0.80],
        [0.30, 0.90, 0.20, 0.50, 0.40],
    ]
)
PI_B = softmax(
    np.array([[0.5, 0.0, -0.5, 0.2, 0.1], [0.0, 0.3, 0.3, -0.2, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
)
PI_E = softmax(3.0 * Q_TRUE)  # prefers the better events
TRUE_VALUE = float((PI_E * Q_TRUE).sum(axis=1).mean())
Q_WRONG = Q_TRUE[:, ::-1].copy()  # a reward model that ranks the events backwards


def simulate(n_rounds: int, seed: int, q_hat: FloatArray = Q_TRUE) -> LoggedBandit:
    rng = np.random.default_rng(seed)
    context = rng.integers(0, 3, size=n_rounds)
    action = sample_actions(PI_B[context], rng)
    reward = (rng.random(n_rounds) < Q_TRUE[context, action]).astype(np.float64)
    return LoggedBandit(
        reward=reward,
        pscore=PI_B[context, action],
        target_pscore=PI_E[context, action],
        estimated_reward=q_hat[context, action],
        target_value_dm=(PI_E * q_hat).sum(axis=1)[context],
    )


def standard_error(rounds: FloatArray) -> float:
    return float(rounds.std(ddof=1) / math.sqrt(rounds.size))


def test_unbiased_estimators_recover_the_true_value() -> None:
    logged = simulate(100_000, seed=1, q_hat=Q_WRONG)
    r, b, e = logged.reward, logged.pscore, logged.target_pscore
    assert logged.estimated_reward is not None and logged.target_value_dm is not None
    q_logged, q_target = logged.estimated_reward, logged.target_value_dm
    w = e / b

    ips_se = standard_error(r * w)
    assert abs(ips(r, b, e) - TRUE_VALUE) < 4 * ips_se
    snips_value = snips(r, b, e)
    snips_se = standard_error(w * (r - snips_value)) / float(w.mean())  # delta method
    assert abs(snips_value - TRUE_VALUE) < 4 * snips_se
    dr_rounds = dr_round_rewards(r, b, e, q_logged, q_target)
    assert abs(doubly_robust(r, b, e, q_logged, q_target) - TRUE_VALUE) < 4 * standard_error(
        dr_rounds
    )

    # the same wrong q_hat sinks DM: its error dwarfs its own standard error
    dm_value = direct_method(q_target)
    model_bias = float((PI_E * (Q_WRONG - Q_TRUE)).sum(axis=1).mean())
    assert abs(model_bias) > 0.1
    assert abs(dm_value - TRUE_VALUE) > 20 * standard_error(q_target)
    assert dm_value - TRUE_VALUE == pytest.approx(model_bias, abs=0.01)

    # Fixed seeds keep this deterministic. Rerun over 20 other data seeds, 3 of the 60
    # ips/snips/dr intervals missed the true value, as 95% intervals should.
    estimates = {est.name: est for est in estimate_all(logged, n_bootstrap=300, seed=0)}
    assert set(estimates) == {"ips", "snips", "dm", "dr"}
    for name in ("ips", "snips", "dr"):
        assert estimates[name].low <= TRUE_VALUE <= estimates[name].high, estimates[name]
    assert not estimates["dm"].low <= TRUE_VALUE <= estimates["dm"].high
    assert estimates["ips"].value == ips(r, b, e)
    assert estimates["snips"].value == snips_value


def test_dr_with_a_correct_model_beats_ips_on_variance() -> None:
    logged = simulate(20_000, seed=2, q_hat=Q_TRUE)
    r, b, e = logged.reward, logged.pscore, logged.target_pscore
    assert logged.estimated_reward is not None and logged.target_value_dm is not None
    dr_rounds = dr_round_rewards(r, b, e, logged.estimated_reward, logged.target_value_dm)
    assert dr_rounds.std() < 0.8 * ips_round_rewards(r, b, e).std()
    assert abs(direct_method(logged.target_value_dm) - TRUE_VALUE) < 0.01


def test_ips_bootstrap_interval_covers_about_95_percent() -> None:
    covered = 0
    repetitions = 200
    for seed in range(repetitions):
        logged = simulate(1_000, seed=1_000 + seed)
        low, high = ips_interval(
            logged.reward, logged.pscore, logged.target_pscore, n_bootstrap=200, seed=seed
        )
        covered += low <= TRUE_VALUE <= high
    assert 0.88 <= covered / repetitions <= 0.99


# --------------------------------------------------------------------------- clipping


def test_clipping_caps_weights_as_obp_does() -> None:
    reward = np.array([1.0, 1.0, 0.0, 2.0])
    pscore = np.array([0.1, 0.5, 0.2, 0.8])
    target_pscore = np.array([0.9, 0.5, 1.0, 0.4])  # weights 9, 1, 5, 0.5
    np.testing.assert_allclose(importance_weights(pscore, target_pscore), [9.0, 1.0, 5.0, 0.5])
    assert clipped_ips(reward, pscore, target_pscore, math.inf) == ips(
        reward, pscore, target_pscore
    )
    assert ips(reward, pscore, target_pscore) == pytest.approx((9 + 1 + 0 + 1) / 4)
    # lambda_ = 2 caps 9 at 2 (it does not drop the round): (2*1 + 1*1 + 2*0 + 0.5*2) / 4
    assert clipped_ips(reward, pscore, target_pscore, 2.0) == pytest.approx(4.0 / 4)
    # lambda_ = 0 zeroes every weight
    assert clipped_ips(reward, pscore, target_pscore, 0.0) == 0.0
    # a cap at or above the largest weight changes nothing
    assert clipped_ips(reward, pscore, target_pscore, 9.0) == ips(reward, pscore, target_pscore)


def test_estimate_all_adds_clipped_estimators_for_a_finite_lambda() -> None:
    logged = simulate(2_000, seed=3)
    names = [est.name for est in estimate_all(logged, lambda_=2.0, n_bootstrap=50)]
    assert names == ["ips", "clipped_ips", "snips", "dm", "dr", "clipped_dr"]
    no_model = LoggedBandit(logged.reward, logged.pscore, logged.target_pscore)
    estimates = estimate_all(no_model, n_bootstrap=50)
    assert [est.name for est in estimates] == ["ips", "snips"]
    assert all(isinstance(est, OffPolicyEstimate) for est in estimates)
    assert all(est.low <= est.high for est in estimates)


# --------------------------------------------------------------------------- properties

pscores = st.floats(min_value=1e-3, max_value=1.0)
# Subnormal probabilities make r * w round (1.5 * 5e-324 == 1e-323): not a property of SNIPS.
target_pscores = st.floats(min_value=0.0, max_value=1.0, allow_subnormal=False)
rewards = st.floats(min_value=-10.0, max_value=10.0)
rounds = st.lists(st.tuples(pscores, target_pscores, rewards, rewards), min_size=1, max_size=40)


def columns(data: list[tuple[float, float, float, float]]) -> tuple[FloatArray, ...]:
    array = np.array(data, dtype=np.float64)
    return array[:, 0], array[:, 1], array[:, 2], array[:, 3]


@settings(max_examples=200, deadline=None)
@given(data=rounds, c=rewards)
def test_snips_of_a_constant_reward_is_that_constant(
    data: list[tuple[float, float, float, float]], c: float
) -> None:
    b, e, _, _ = columns(data)
    if not np.any(e > 0):
        with pytest.raises(ValueError, match=r"^target_pscore\b"):
            snips(np.full(b.size, c), b, e)
        return
    assert snips(np.full(b.size, c), b, e) == pytest.approx(c, rel=1e-12, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(data=rounds, alpha=rewards, beta=rewards)
def test_ips_and_dr_are_linear_in_reward(
    data: list[tuple[float, float, float, float]], alpha: float, beta: float
) -> None:
    b, e, r1, r2 = columns(data)
    combined = ips(alpha * r1 + beta * r2, b, e)
    scale = 1.0 + float(np.sum(np.abs(e / b) * (abs(alpha) * np.abs(r1) + abs(beta) * np.abs(r2))))
    assert combined == pytest.approx(
        alpha * ips(r1, b, e) + beta * ips(r2, b, e), abs=1e-12 * scale
    )
    # DR with q_hat equal to the observed reward has no correction term: it is DM
    assert doubly_robust(r1, b, e, r1, r2) == direct_method(r2)


@settings(max_examples=200, deadline=None)
@given(data=rounds, low=st.floats(0.0, 50.0), high=st.floats(0.0, 50.0))
def test_clipped_ips_is_monotone_in_lambda_for_nonnegative_rewards(
    data: list[tuple[float, float, float, float]], low: float, high: float
) -> None:
    b, e, r, _ = columns(data)
    r = np.abs(r)
    low, high = min(low, high), max(low, high)
    assert clipped_ips(r, b, e, low) <= clipped_ips(r, b, e, high) + 1e-12
    assert clipped_ips(r, b, e, high) <= ips(r, b, e) + 1e-12
    assert clipped_ips(r, b, e, float(np.max(e / b))) == pytest.approx(ips(r, b, e), abs=1e-12)


# --------------------------------------------------------------------------- validation


def valid() -> dict[str, FloatArray]:
    return {
        "reward": np.array([1.0, 0.0, 1.0]),
        "pscore": np.array([0.5, 0.25, 1.0]),
        "target_pscore": np.array([0.5, 0.0, 1.0]),
        "estimated_reward": np.array([0.5, 0.5, 0.5]),
        "target_value_dm": np.array([0.4, 0.4, 0.4]),
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reward", np.array([1.0, np.nan, 1.0])),
        ("reward", np.array([1.0, np.inf, 1.0])),
        ("pscore", np.array([0.5, 0.0, 1.0])),
        ("pscore", np.array([0.5, 1.5, 1.0])),
        ("pscore", np.array([0.5, -0.1, 1.0])),
        ("target_pscore", np.array([0.5, -0.1, 1.0])),
        ("target_pscore", np.array([0.5, 1.1, 1.0])),
        ("target_pscore", np.array([[0.5, 0.1, 1.0]])),
        ("target_pscore", np.array([0.5, 0.1])),
        ("estimated_reward", np.array([0.5, np.nan, 0.5])),
        ("target_value_dm", np.array([0.4, 0.4])),
    ],
)
def test_logged_bandit_names_the_bad_field(field: str, value: FloatArray) -> None:
    arrays = valid()
    arrays[field] = value
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        LoggedBandit(**arrays)


def test_length_mismatch_names_both_fields() -> None:
    arrays = valid()
    arrays["reward"] = np.array([1.0, 0.0])
    with pytest.raises(ValueError, match=r"^pscore: has 3 rounds, reward has 2"):
        LoggedBandit(**arrays)


def test_reward_model_arrays_come_together() -> None:
    arrays = valid()
    del arrays["target_value_dm"]
    with pytest.raises(ValueError, match=r"^target_value_dm\b"):
        LoggedBandit(**arrays)
    arrays = valid()
    del arrays["estimated_reward"]
    with pytest.raises(ValueError, match=r"^estimated_reward\b"):
        LoggedBandit(**arrays)


def test_logged_bandit_copies_and_freezes_its_arrays() -> None:
    arrays = valid()
    logged = LoggedBandit(**arrays)
    assert arrays["reward"].flags.writeable  # the caller's array is untouched
    with pytest.raises(ValueError):
        logged.reward[0] = 5.0
    assert logged.n_rounds == 3 and logged.has_reward_model


def test_functions_validate_their_arguments() -> None:
    arrays = valid()
    r, b, e = arrays["reward"], arrays["pscore"], arrays["target_pscore"]
    with pytest.raises(ValueError, match=r"^pscore\b"):
        ips(r, np.array([0.5, 0.0, 1.0]), e)
    with pytest.raises(ValueError, match=r"^pscore: has 3 rounds, reward has 2"):
        ips(np.array([1.0, 2.0]), b, e)
    with pytest.raises(ValueError, match=r"^lambda_\b"):
        clipped_ips(r, b, e, -1.0)
    with pytest.raises(ValueError, match=r"^lambda_\b"):
        clipped_ips(r, b, e, math.nan)
    with pytest.raises(ValueError, match=r"^alpha\b"):
        interval(r, alpha=1.5)
    with pytest.raises(ValueError, match=r"^n_bootstrap\b"):
        interval(r, n_bootstrap=0)
    with pytest.raises(ValueError, match=r"^estimator_round_rewards\b"):
        interval(np.array([]))
    with pytest.raises(ValueError, match=r"^target_pscore\b"):
        snips(r, b, np.zeros(3))
