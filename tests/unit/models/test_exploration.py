"""Exploration with known propensities: the logged probabilities are the draw's probabilities.

The references here are plain loops over one user's candidates (softmax written out with
`math.exp`), independent of the vectorised padded-matrix code they check.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from models.exploration import Exploration, explore, slot_uniforms

SCORES = {"a": 3.0, "b": 2.5, "c": 1.0, "d": 0.4, "e": -1.0}


def frames(
    user_scores: dict[int, dict[str, float]], listed: dict[int, list[str]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(ranked, candidates): each user's deterministic list in the given order, and every
    candidate with its score."""
    candidates = pl.DataFrame(
        [(u, e, s) for u, scores in user_scores.items() for e, s in scores.items()],
        schema={"user_id": pl.Int64, "event_id": pl.Utf8, "score": pl.Float64},
        orient="row",
    )
    ranked = pl.DataFrame(
        [
            (u, r, e, user_scores[u][e])
            for u, events in listed.items()
            for r, e in enumerate(events, start=1)
        ],
        schema={"user_id": pl.Int64, "rank": pl.Int32, "event_id": pl.Utf8, "score": pl.Float64},
        orient="row",
    )
    return ranked, candidates


def softmax_open(
    scores: dict[str, float], placed: list[str], temperature: float
) -> dict[str, float]:
    """The documented draw, written out: exp(z/T) over the open candidates, normalised."""
    values = list(scores.values())
    sd = statistics.pstdev(values) or 1.0
    top = max(values)
    weights = {
        e: math.exp((s - top) / sd / temperature) for e, s in scores.items() if e not in placed
    }
    total = sum(weights.values())
    return {e: w / total for e, w in weights.items()}


def reference(
    scores: dict[str, float],
    listed: list[str],
    exploration: Exploration,
    uniforms: dict[int, float],
) -> list[tuple[str, float]]:
    """One user's explored list by a loop: inverse CDF over the open candidates in score
    order at explored ranks, the next unplaced listed item elsewhere."""
    placed: list[str] = []
    out: list[tuple[str, float]] = []
    order = sorted(scores, key=lambda e: (-scores[e], e))
    for rank in range(1, len(listed) + 1):
        if exploration.explores(rank):
            probs = softmax_open(scores, placed, exploration.temperature)
            cumulative = 0.0
            pick = next(e for e in reversed(order) if e in probs)
            for e in order:
                if e in probs:
                    cumulative += probs[e]
                    if uniforms[rank] < cumulative:
                        pick = e
                        break
            out.append((pick, probs[pick]))
        else:
            pick = next(e for e in listed if e not in placed)
            out.append((pick, 1.0))
        placed.append(pick)
    return out


def list_probabilities(
    scores: dict[str, float], listed: list[str], exploration: Exploration
) -> dict[tuple[str, ...], float]:
    """Every list the draw can produce with its probability, by enumerating the draws."""
    result: dict[tuple[str, ...], float] = {}

    def walk(placed: list[str], prob: float) -> None:
        rank = len(placed) + 1
        if rank > len(listed):
            result[tuple(placed)] = result.get(tuple(placed), 0.0) + prob
            return
        if exploration.explores(rank):
            for e, p in softmax_open(scores, placed, exploration.temperature).items():
                walk([*placed, e], prob * p)
        else:
            walk([*placed, next(e for e in listed if e not in placed)], prob)

    walk([], 1.0)
    return result


def user_list(out: pl.DataFrame, user: int = 1) -> list[tuple[str, float]]:
    rows = out.filter(pl.col("user_id") == user).sort("rank")
    return list(zip(rows["event_id"].to_list(), rows["propensity"].to_list(), strict=True))


@pytest.mark.parametrize(
    ("share", "n", "slots"),
    [(0.1, 50, [10, 20, 30, 40, 50]), (0.25, 12, [4, 8, 12]), (0.0, 20, []), (1.0, 3, [1, 2, 3])],
)
def test_explored_slots_are_the_configured_share_evenly_spread(
    share: float, n: int, slots: list[int]
) -> None:
    assert Exploration(share=share).slots(n) == slots


@pytest.mark.parametrize("bad", [{"share": -0.1}, {"share": 1.5}, {"temperature": 0.0}])
def test_exploration_refuses_bad_settings(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Exploration(**bad)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 4.0])
@pytest.mark.parametrize("run", ["run-1", "run-2", "run-3", "nightly-7"])
def test_propensities_match_a_loop_reference(temperature: float, run: str) -> None:
    exploration = Exploration(share=0.5, temperature=temperature)
    listed = ["a", "b", "c", "d"]
    ranked, candidates = frames({1: SCORES}, {1: listed})
    out = explore(ranked, candidates=candidates, run_id=run, exploration=exploration)
    uniforms = {r: float(slot_uniforms(run, np.array([1]), r)[0]) for r in (1, 2, 3, 4)}
    expected = reference(SCORES, listed, exploration, uniforms)
    got = user_list(out)
    assert [e for e, _ in got] == [e for e, _ in expected]
    assert [p for _, p in got] == pytest.approx([p for _, p in expected], rel=1e-12)


def test_draw_frequencies_over_runs_match_the_logged_propensities() -> None:
    """Over many (user, run) seeds, each whole list appears as often as the product of its
    logged propensities says (chi-square), and that product is the enumerated probability."""
    exploration = Exploration(share=0.5, temperature=1.0)
    listed = ["a", "b", "c", "d"]
    users = range(1, 101)
    ranked, candidates = frames(dict.fromkeys(users, SCORES), dict.fromkeys(users, listed))
    expected = list_probabilities(SCORES, listed, exploration)
    assert sum(expected.values()) == pytest.approx(1.0)
    counts: Counter[tuple[str, ...]] = Counter()
    for k in range(40):
        out = explore(ranked, candidates=candidates, run_id=f"run-{k}", exploration=exploration)
        for user in users:
            got = user_list(out, user)
            events = tuple(e for e, _ in got)
            counts[events] += 1
            assert math.prod(p for _, p in got) == pytest.approx(expected[events], rel=1e-9)
    samples = sum(counts.values())
    big = sorted(e for e, p in expected.items() if p * samples >= 5)
    observed = [counts[e] for e in big] + [samples - sum(counts[e] for e in big)]
    predicted = [expected[e] * samples for e in big]
    predicted.append(samples - sum(predicted))
    if predicted[-1] < 5:  # merge a thin tail into the last cell
        tail_observed, tail_predicted = observed.pop(), predicted.pop()
        observed[-1] += tail_observed
        predicted[-1] += tail_predicted
    assert stats.chisquare(observed, predicted).pvalue > 1e-3


def test_the_first_explored_slot_frequency_matches_its_propensity() -> None:
    exploration = Exploration(share=1 / 3, temperature=0.7)
    listed = ["a", "b", "c"]
    users = range(1, 2_001)
    ranked, candidates = frames(dict.fromkeys(users, SCORES), dict.fromkeys(users, listed))
    out = explore(ranked, candidates=candidates, run_id="one run", exploration=exploration)
    third = out.filter(pl.col("rank") == 3)  # ranks 1 and 2 are a and b for everyone
    assert (out.filter(pl.col("rank") < 3)["propensity"] == 1.0).all()
    logged = dict(zip(third["event_id"], third["propensity"], strict=False))
    assert logged == pytest.approx(softmax_open(SCORES, ["a", "b"], 0.7))
    counts = third["event_id"].value_counts()
    seen = dict(zip(counts["event_id"], counts["count"], strict=True))
    cells = sorted(logged)
    result = stats.chisquare([seen.get(e, 0) for e in cells], [logged[e] * 2_000 for e in cells])
    assert result.pvalue > 1e-3


def test_same_user_and_run_gives_the_same_list_another_run_draws_again() -> None:
    scores = {f"e{i:02d}": 10.0 - i * 0.1 for i in range(40)}
    listed = sorted(scores)[:20]
    ranked, candidates = frames({7: scores, 8: scores}, {7: listed, 8: listed})
    exploration = Exploration(share=0.25, temperature=2.0)
    first = explore(ranked, candidates=candidates, run_id="run-a", exploration=exploration)
    assert first.equals(
        explore(ranked, candidates=candidates, run_id="run-a", exploration=exploration)
    )
    lists = {
        tuple(
            explore(ranked, candidates=candidates, run_id=f"run-{k}", exploration=exploration)
            .filter(pl.col("user_id") == 7)["event_id"]
            .to_list()
        )
        for k in range(10)
    }
    assert len(lists) > 1
    # two users with the same candidates draw independently within one run
    assert user_list(first, 7) != user_list(first, 8)


def test_share_zero_is_the_deterministic_list_all_certain() -> None:
    ranked, candidates = frames({1: SCORES, 2: SCORES}, {1: ["b", "a", "c"], 2: ["e", "d"]})
    out = explore(ranked, candidates=candidates, run_id="r", exploration=Exploration(share=0.0))
    assert out.select("user_id", "rank", "event_id", "score").equals(ranked.sort("user_id", "rank"))
    assert (out["propensity"] == 1.0).all()


def test_the_configured_share_of_slots_is_explored() -> None:
    scores = {f"e{i:03d}": float(np.sin(i)) for i in range(300)}
    listed = sorted(scores, key=lambda e: -scores[e])[:50]
    users = dict.fromkeys(range(1, 21), scores)
    ranked, candidates = frames(users, dict.fromkeys(users, listed))
    exploration = Exploration(share=0.1, temperature=0.5)
    out = explore(ranked, candidates=candidates, run_id="nightly", exploration=exploration)
    drawn = out.filter(pl.col("propensity") < 1.0)
    assert drawn.height == 5 * 20
    assert sorted(drawn["rank"].unique().to_list()) == [10, 20, 30, 40, 50]
    assert out.group_by("user_id").len()["len"].to_list() == [50] * 20


def test_a_cold_temperature_never_runs_dry() -> None:
    """Weights are relative to the best open item, so even T -> 0 draws something."""
    scores = {"a": 100.0, "b": 0.0, "c": -100.0}
    ranked, candidates = frames({1: scores}, {1: ["a", "b", "c"]})
    exploration = Exploration(share=1.0, temperature=1e-4)
    out = explore(ranked, candidates=candidates, run_id="r", exploration=exploration)
    assert user_list(out) == [("a", 1.0), ("b", 1.0), ("c", 1.0)]


@st.composite
def feeds(draw: st.DrawFn) -> tuple[dict[int, dict[str, float]], dict[int, list[str]]]:
    """Users with candidate scores (ties and all-equal included) and a deterministic list
    drawn from their candidates in any order."""
    users: dict[int, dict[str, float]] = {}
    listed: dict[int, list[str]] = {}
    for user in draw(st.sets(st.integers(-(2**40), 2**40), min_size=1, max_size=4)):
        n = draw(st.integers(1, 12))
        scores = draw(
            st.lists(
                st.sampled_from([0.0, 1.0, -2.5])
                | st.floats(-50, 50, allow_nan=False, allow_infinity=False),
                min_size=n,
                max_size=n,
            )
        )
        users[user] = {f"e{i}": s for i, s in enumerate(scores)}
        order = draw(st.permutations(list(users[user])))
        listed[user] = order[: draw(st.integers(1, n))]
    return users, listed


@settings(max_examples=80, deadline=None)
@given(
    feed=feeds(),
    share=st.floats(0.0, 1.0),
    temperature=st.floats(0.01, 100.0),
    run=st.text(max_size=12),
)
def test_explored_feeds_keep_their_invariants(
    feed: tuple[dict[int, dict[str, float]], dict[int, list[str]]],
    share: float,
    temperature: float,
    run: str,
) -> None:
    users, listed = feed
    ranked, candidates = frames(users, listed)
    exploration = Exploration(share=share, temperature=temperature)
    out = explore(ranked, candidates=candidates, run_id=run, exploration=exploration)
    assert out.select(pl.struct("user_id", "event_id").is_unique().all()).item()
    for user, events in listed.items():
        mine = out.filter(pl.col("user_id") == user).sort("rank")
        assert mine["rank"].to_list() == list(range(1, len(events) + 1))  # length preserved
        assert set(mine["event_id"]) <= set(users[user])  # only the user's candidates
        props = mine["propensity"]
        assert ((props > 0) & (props <= 1)).all()
        certain = [
            e for r, e in enumerate(mine["event_id"], start=1) if not exploration.explores(r)
        ]
        assert all(p == 1.0 for r, p in enumerate(props, start=1) if not exploration.explores(r))
        # deterministic slots keep the list's order
        assert certain == [e for e in events if e in set(certain)]
        # each user's draw is their own: exploring them alone changes nothing
        alone_ranked, alone_candidates = frames({user: users[user]}, {user: events})
        alone = explore(
            alone_ranked, candidates=alone_candidates, run_id=run, exploration=exploration
        )
        assert alone.equals(mine)
