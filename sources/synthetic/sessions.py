"""Simulated users answering real feed pages: what the A/B demo's users do with what the API
served them.

The pages come from the API (each user's arm, with impression ids); this module only decides,
with the simulator's hidden truth, what each user does with theirs in one session, exactly as
`behaviour.simulate` decides for the old app's decks: the user swipes the first cards until
stopping (the session-length hazard of `BehaviourConfig.position_bias`), each swiped card is a
like, superlike or pass by the ordered logit of its true utility (the social term counts the
friends going at the session), and a liked card may become an RSVP, "going" or "interested".

`SimulatedHoldout.outcomes` of the same decks is the expectation of these draws (value = like
1, superlike or going 2): the arm whose pages have the higher expected value is the one that
should win the online comparison, and the demo checks that it does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from sources.synthetic.behaviour import _decide, _session_lengths
from sources.synthetic.online import NO_CARD, IntArray, SimulatedHoldout

# Utility given to a card the simulator says could not be shown (another metro, started):
# low enough that it is always passed, finite so the logit stays free of NaN.
UNSHOWABLE = -50.0

ANSWER_SCHEMA = pl.Schema(
    {
        "user_id": pl.Int64(),
        "rank": pl.Int32(),  # 1-based position on the page
        "event_id": pl.Utf8(),
        "examined": pl.Boolean(),
        "action": pl.Utf8(),  # like, pass, superlike; null when not examined
        "rsvp": pl.Utf8(),  # going, interested; null when none
    }
)


def page_decks(simulation: SimulatedHoldout, pages: Mapping[int, Sequence[str]]) -> IntArray:
    """(simulation users x deck length) world event rows of each user's page, in page order
    (events the world does not know, and users without a page, are `NO_CARD`)."""
    index = simulation.world.event_index
    decks = np.full((simulation.user_ids.size, simulation.deck_length), NO_CARD, dtype=np.int64)
    for row, user in enumerate(simulation.user_ids.tolist()):
        for slot, event_id in enumerate(pages.get(int(user), ())[: simulation.deck_length]):
            decks[row, slot] = index.get(str(event_id), NO_CARD)
    return decks


def answer_pages(simulation: SimulatedHoldout, decks: IntArray, seed: int) -> pl.DataFrame:
    """One session per user over their deck: ANSWER_SCHEMA rows, one per card shown."""
    config = simulation.config
    rng = np.random.default_rng([seed, 4_243])
    lengths = _session_lengths(rng, decks.shape[0], config)
    users, slots = np.nonzero(decks != NO_CARD)
    events = decks[users, slots]
    utility = simulation.utility(users, events)
    utility = np.where(np.isfinite(utility), utility, UNSHOWABLE)
    decided = _decide(
        utility,
        rng.logistic(size=users.size),
        rng.random(users.size),
        rng.random(users.size),
        config,
    )
    # Position in the deck is its slot: the first card is always examined (length >= 1).
    examined = slots < lengths[users]
    rsvp = examined & decided.rsvp
    world_ids = simulation.world.events["event_id"].to_numpy()
    status = np.where(decided.going, "going", "interested")
    return (
        pl.DataFrame(
            {
                "user_id": simulation.user_ids[users],
                "rank": (slots + 1).astype(np.int32),
                "event_id": world_ids[events].astype(str),
                "examined": examined,
                "action": decided.action.astype(str),
                "rsvp": status,
                "_rsvp": rsvp,
            }
        )
        .with_columns(
            action=pl.when("examined").then("action"),
            rsvp=pl.when("_rsvp").then("rsvp"),
        )
        .drop("_rsvp")
        .cast(ANSWER_SCHEMA)
    )
