"""Simulated online evaluation and off-policy estimates on the tiny offline city.

The simulator is the judge here, so these tests hold it to its own decision code
(`behaviour._decide`, `_session_lengths`), check the oracle is the ceiling, and that the
off-policy estimators recover the simulated value from the old app's log.
"""

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.rerank import FEED_EXPLORATION
from recommender import holdout as ev
from sources.synthetic.behaviour import BehaviourConfig, _decide, _session_lengths
from sources.synthetic.online import (
    NO_CARD,
    SimulatedHoldout,
    exam_probabilities,
    grade_probabilities,
    logged_first_cards,
)


def test_grade_probabilities_are_the_closed_form_of_the_simulators_decisions() -> None:
    config = BehaviourConfig()
    rng = np.random.default_rng(0)
    n = 400_000
    for utility in (-3.0, -1.0, 0.0, 1.5, 3.0):
        u = np.full(n, utility)
        decided = _decide(u, rng.logistic(size=n), rng.random(n), rng.random(n), config)
        liked = decided.action != "pass"
        superliked = decided.action == "superlike"
        going = decided.rsvp & decided.going
        grade = liked.astype(float) + (superliked | going)
        expected = grade_probabilities(np.array([utility]), config)
        assert liked.mean() == pytest.approx(expected.like[0], abs=0.004)
        assert superliked.mean() == pytest.approx(expected.superlike[0], abs=0.004)
        assert going.mean() == pytest.approx(expected.going[0], abs=0.004)
        assert grade.mean() == pytest.approx(expected.grade[0], abs=0.006)


def test_exam_probabilities_match_the_simulated_session_lengths() -> None:
    config = BehaviourConfig()
    lengths = _session_lengths(np.random.default_rng(1), 200_000, config)
    reached = (lengths[:, None] > np.arange(config.cards_per_session)).mean(axis=0)
    exam = exam_probabilities(config)
    assert exam[0] == 1.0 and np.all(np.diff(exam) <= 0)
    np.testing.assert_allclose(reached, exam, atol=0.005)


def test_unshowable_cards_leave_the_deck(simulation: SimulatedHoldout) -> None:
    user = int(simulation.user_ids[0])
    swiped = simulation.swipes.filter(pl.col("user_id") == user)["event_id"].to_list()
    best = simulation.deck_frame(simulation.oracle_decks()).filter(pl.col("user_id") == user)
    good = best["event_id"].to_list()[:3]
    listed = pl.DataFrame(
        {
            "user_id": [user] * 5,
            "rank": [1, 2, 3, 4, 5],
            "event_id": [swiped[0], good[0], "no-such-event", good[1], good[2]],
        }
    )
    deck = simulation.decks(listed)
    row = int(np.flatnonzero(simulation.user_ids == user)[0])
    index = simulation.world.event_index
    assert deck[row, :4].tolist() == [index[good[0]], index[good[1]], index[good[2]], NO_CARD]
    assert (deck[np.arange(deck.shape[0]) != row] == NO_CARD).all()


def test_expected_value_is_what_simulated_sessions_average_to(
    simulation: SimulatedHoldout, policy_lists: dict[str, pl.DataFrame]
) -> None:
    decks = simulation.decks(policy_lists["popularity"])
    expected = simulation.outcomes(decks).value
    sampled = simulation.sample_sessions(decks, sessions=400, seed=3)
    assert sampled.mean() == pytest.approx(expected.mean(), rel=0.03)
    assert np.corrcoef(sampled, expected)[0, 1] > 0.9


def test_common_random_numbers_only_differ_where_the_decks_differ(
    simulation: SimulatedHoldout, policy_lists: dict[str, pl.DataFrame]
) -> None:
    decks = simulation.decks(policy_lists["als"])
    changed = decks.copy()
    changed[0] = simulation.oracle_decks()[0]
    first = simulation.sample_sessions(decks, sessions=20, seed=5)
    again = simulation.sample_sessions(changed, sessions=20, seed=5)
    np.testing.assert_array_equal(first[1:], again[1:])


def test_the_oracle_is_the_ceiling_of_every_policy(
    simulation: SimulatedHoldout, policy_lists: dict[str, pl.DataFrame]
) -> None:
    online = ev.simulated_online(simulation, policy_lists)
    table = online.table
    assert table["model"][0] == ev.ORACLE
    oracle = table.filter(pl.col("model") == ev.ORACLE).row(0, named=True)
    assert oracle["ndcg@10"] == pytest.approx(1.0)
    for row in table.filter(pl.col("model") != ev.ORACLE).iter_rows(named=True):
        assert row["value"] <= oracle["high"], row["model"]
        assert row["low"] <= row["value"] <= row["high"]
    per_user = online.per_user
    for name, values in per_user.items():
        assert np.all(values <= per_user[ev.ORACLE] + 1e-9), name
    means = dict(zip(table["model"], table["value"], strict=True))
    assert means["final_feed"] > means["random"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 30))
def test_no_list_of_showable_events_beats_the_oracle(
    simulation: SimulatedHoldout, seed: int, length: int
) -> None:
    """Any ordering of any showable events, per user: never above the oracle's deck."""
    rng = np.random.default_rng(seed)
    pool = simulation.world.events.filter(pl.Series(simulation.showable))["event_id"].to_numpy()
    users = simulation.user_ids
    picks = rng.choice(pool, size=(users.size, min(length, pool.size)))
    listed = pl.DataFrame(
        {
            "user_id": np.repeat(users, picks.shape[1]),
            "rank": np.tile(np.arange(1, picks.shape[1] + 1), users.size),
            "event_id": picks.ravel().tolist(),
        }
    )
    value = simulation.outcomes(simulation.decks(listed)).value
    ceiling = simulation.outcomes(simulation.oracle_decks()).value
    assert np.all(value <= ceiling + 1e-9)


def test_the_final_feed_is_scored_as_published_with_its_explored_slots(
    simulation: SimulatedHoldout, policy_lists: dict[str, pl.DataFrame]
) -> None:
    """`final_feed` carries the draws the nightly run would make; `no_exploration` is the
    same feed with every slot deterministic, so what exploring costs is two rows apart."""
    final, plain = policy_lists[ev.CHALLENGER], policy_lists[ev.NO_EXPLORATION]
    drawn = final.filter(pl.col("propensity") < 1.0)
    assert drawn.height > 0
    assert set(drawn["rank"].to_list()) <= set(FEED_EXPLORATION.slots(ev.LIST_LENGTH))
    assert (plain["propensity"] == 1.0).all()
    assert not final.select("user_id", "rank", "event_id").equals(
        plain.select("user_id", "rank", "event_id")
    )
    lengths = final.group_by("user_id").len().sort("user_id")
    assert lengths.equals(plain.group_by("user_id").len().sort("user_id"))
    table = ev.simulated_online(simulation, policy_lists).table
    assert {ev.CHALLENGER, ev.NO_EXPLORATION} <= set(table["model"].to_list())


def test_a_tie_has_a_gain_of_exactly_zero(
    simulation: SimulatedHoldout, policy_lists: dict[str, pl.DataFrame]
) -> None:
    lists = policy_lists | {ev.CHAMPION: policy_lists[ev.CHALLENGER]}
    online = ev.simulated_online(simulation, lists)
    gain = online.gain(ev.CHALLENGER, ev.CHAMPION)
    assert gain is not None and gain.value == gain.low == gain.high == 0.0
    better = ev.simulated_online(simulation, policy_lists | {ev.CHAMPION: policy_lists["random"]})
    decision = ev.gate(ev.with_online(pl.DataFrame({"model": list(lists)}), better))
    assert decision.passed and decision.gain_low is not None and decision.gain_low > 0


def test_the_logged_propensities_are_the_first_draws_probabilities(
    simulation: SimulatedHoldout,
) -> None:
    logged = logged_first_cards(simulation, sessions=300, seed=2)
    row = 0
    mine = logged.user_rows == row
    counts = (
        pl.DataFrame({"e": logged.events[mine], "p": logged.pscore[mine]})
        .group_by("e")
        .agg(n=pl.len(), p=pl.col("p").first())
    )
    assert counts["p"].sum() <= 1.0 + 1e-9
    shares = counts["n"] / mine.sum()
    assert np.abs(shares.to_numpy() - counts["p"].to_numpy()).max() < 0.05
    assert logged.exam[0] == 1.0 and np.all(np.diff(logged.exam) <= 0)


def test_off_policy_estimates_fall_inside_the_simulated_interval(
    simulation: SimulatedHoldout, policy_lists: dict[str, pl.DataFrame]
) -> None:
    """For random, popularity, ALS, the feed and the oracle: IPS, SNIPS and DR recover the
    value the simulator computes from the hidden truth, from the log alone."""
    online = ev.simulated_online(simulation, policy_lists).table
    estimates = ev.off_policy(simulation, policy_lists, sessions=400, n_bootstrap=200)
    truth = dict(zip(online["model"], zip(online["low"], online["high"], strict=True), strict=True))
    for model in ("random", "popularity", "als", "final_feed", ev.ORACLE):
        rows = estimates.filter(pl.col("model") == model)
        for name in ("ips", "snips", "dr"):
            value = rows.filter(pl.col("estimator") == name)["value"].item()
            low, high = truth[model]
            assert low <= value <= high, (model, name, value, low, high)
