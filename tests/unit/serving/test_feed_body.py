"""The hand-built feed body against the documented `FeedOut` model, field by field."""

from __future__ import annotations

import dataclasses
import json

import pytest

from serving.feed_body import feed_body, with_impression_ids
from serving.schemas import EventCardOut, FeedItemOut, FeedOut, PriceOut, VenueOut
from store.cards import Venue
from store.feed import Feed, FeedItem
from tests.unit.conftest import event_card


def _feed(next_items: bool) -> Feed:
    venue = Venue(name="Harbour Hall", address="1 Pier", latitude=40.7, longitude=-74.0)
    cards = [
        event_card("ev-1", venue=venue, zone="America/New_York"),
        event_card("ev-2", venue=None, zone="UTC"),
    ]
    items = [
        FeedItem(card, rank=i + 1, score=1 / 3 + i, reason="als", friends_going=i, distance_km=d)
        for i, (card, d) in enumerate(zip(cards, [1.234, None], strict=True))
    ]
    return Feed(7, "run-1", "redis", False, items if next_items else [], has_more=next_items)


def _ids(feed: Feed) -> list[bytes]:
    """Stand-ins for minted ids (`core.impression_ids`): URL-safe base64 characters."""
    return [f"AQ-id_{item.rank}".encode() for item in feed.items]


def _expected(feed: Feed, cursor: str | None, ids: list[bytes] | None) -> FeedOut:
    """What the response model would have produced from the same feed."""
    items = []
    for position, item in enumerate(feed.items):
        card = item.card
        items.append(
            FeedItemOut(
                **EventCardOut(
                    event_id=card.event_id,
                    name=card.name,
                    category=card.category,
                    metro=card.metro,
                    start_utc=card.start_utc,
                    start_local=card.start_local,
                    timezone=card.timezone,
                    end_utc=card.end_utc,
                    venue=None if card.venue is None else VenueOut.model_validate(card.venue),
                    distance_km=item.distance_km,
                    price=PriceOut.model_validate(card.price),
                    image_url=card.image_url,
                ).model_dump(),
                rank=item.rank,
                score=item.score,
                reason=item.reason,
                friends_going=item.friends_going,
                impression_id=None if ids is None else ids[position].decode(),
            )
        )
    return FeedOut(
        user_id=feed.user_id,
        run_id=feed.run_id,
        source=feed.source,
        cold_start=feed.cold_start,
        items=items,
        next_cursor=cursor,
    )


@pytest.mark.parametrize(
    ("full", "cursor", "recorded"), [(True, "abc", True), (True, None, False), (False, None, True)]
)
def test_body_equals_the_response_model_serialization(
    full: bool, cursor: str | None, recorded: bool
) -> None:
    feed = _feed(full)
    ids = _ids(feed) if recorded else None
    body = with_impression_ids(feed_body(feed, cursor), ids)
    expected = _expected(feed, cursor, ids).model_dump_json()
    # Datetimes stay strings when parsed, so this compares their spelling too (`Z`, offsets,
    # microseconds); only the order of keys may differ.
    assert json.loads(body) == json.loads(expected)


def test_body_validates_against_the_model_and_has_no_extra_fields() -> None:
    feed = _feed(True)
    body = with_impression_ids(feed_body(feed, "abc"), _ids(feed))
    parsed = FeedOut.model_validate_json(body)
    assert len(parsed.items) == 2
    document = json.loads(body)
    assert set(document) == set(FeedOut.model_fields)
    for item in document["items"]:
        assert set(item) == set(FeedItemOut.model_fields)


def test_a_replaced_card_is_never_served_from_the_shared_documents() -> None:
    feed = _feed(True)
    first = json.loads(feed_body(feed, None))
    renamed = dataclasses.replace(feed.items[0].card, name="Renamed")
    again = Feed(7, "run-1", "redis", False, [FeedItem(renamed, 1, 0.5, "als", 0, None)])
    assert first["items"][0]["name"] != "Renamed"
    assert json.loads(feed_body(again, None))["items"][0]["name"] == "Renamed"


def test_the_template_is_the_same_whatever_ids_are_spliced_in() -> None:
    """The ETag is taken over the template, so it must not depend on the ids; the ids must
    land on their own items even when a card's text looks like the placeholder."""
    feed = _feed(True)
    tricky = dataclasses.replace(feed.items[0].card, name='"impression_id":"-"')
    feed = dataclasses.replace(feed, items=[feed.items[0]._replace(card=tricky), feed.items[1]])
    template = feed_body(feed, None)
    assert template == feed_body(feed, None)
    body = json.loads(with_impression_ids(template, [b"first", b"second"]))
    assert [i["impression_id"] for i in body["items"]] == ["first", "second"]
    assert body["items"][0]["name"] == '"impression_id":"-"'
    with pytest.raises(ValueError, match="id slots"):
        with_impression_ids(template, [b"only-one"])
