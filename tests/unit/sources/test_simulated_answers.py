"""Simulated users answering served pages (`sources.synthetic.sessions`): their draws are the
simulator's, so averaged over many sessions they meet `SimulatedHoldout.outcomes`."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sources.synthetic.online import NO_CARD, SimulatedHoldout
from sources.synthetic.sessions import answer_pages, page_decks


def _pages(simulation: SimulatedHoldout, lists: pl.DataFrame) -> dict[int, list[str]]:
    """Each user's showable list in rank order, as the feed would page it."""
    decks = simulation.decks(lists)
    ids = simulation.world.events["event_id"].to_list()
    return {
        int(user): [ids[e] for e in deck if e != NO_CARD]
        for user, deck in zip(simulation.user_ids, decks, strict=True)
    }


def _grade() -> pl.Expr:
    """Like 1, superlike or going 2: the grades of `SimulatedHoldout.outcomes`."""
    liked = pl.col("action").is_in(["like", "superlike"]).fill_null(False)
    strong = (pl.col("action") == "superlike").fill_null(False) | (pl.col("rsvp") == "going")
    return pl.when(strong).then(2).when(liked).then(1).otherwise(0)


def test_answers_average_to_the_expected_value_of_the_pages(
    simulation: SimulatedHoldout, policy_lists: dict[str, pl.DataFrame]
) -> None:
    pages = _pages(simulation, policy_lists["popularity"])
    decks = page_decks(simulation, pages)
    np.testing.assert_array_equal(decks, simulation.decks(policy_lists["popularity"]))
    expected = simulation.outcomes(decks).value.sum()
    realised = [
        answer_pages(simulation, decks, seed).select(_grade().sum()).item() for seed in range(60)
    ]
    assert np.mean(realised) == pytest.approx(expected, rel=0.03)


def test_a_user_swipes_a_prefix_of_the_page_and_only_rsvps_to_liked_cards(
    simulation: SimulatedHoldout, policy_lists: dict[str, pl.DataFrame]
) -> None:
    decks = page_decks(simulation, _pages(simulation, policy_lists["als"]))
    answers = answer_pages(simulation, decks, seed=1)
    assert answers.height == int((decks != NO_CARD).sum())
    per_user = answers.group_by("user_id").agg(
        swiped=pl.col("examined").sum(),
        first_unswiped=pl.col("rank").filter(~pl.col("examined")).min(),
    )
    assert (per_user["swiped"] >= 1).all()  # the first card is always swiped
    gaps = per_user.filter(pl.col("first_unswiped").is_not_null())
    assert (gaps["first_unswiped"] == gaps["swiped"] + 1).all()  # swiped cards come first
    assert answers.filter(~pl.col("examined"))["action"].is_null().all()
    rsvps = answers.filter(pl.col("rsvp").is_not_null())
    assert rsvps.height > 0 and rsvps["action"].is_in(["like", "superlike"]).all()
    assert answers.equals(answer_pages(simulation, decks, seed=1))  # seeded
